"""End to end in groups, with privacy mode on: which messages the bot answers, and how."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, astronaut_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import Call, FakeTelegram

GROUP = -100_200_300
SMALL_GROUP = -4242


def in_chat(chat_id: int) -> Any:
    return lambda call: int(call.params["chat_id"]) == chat_id


def assert_threaded_answer(telegram: FakeTelegram, chat_id: int, photo: dict[str, Any]) -> Call:
    """The sticker (with its pack button) and the PNG both reply to the photo; returns the sticker call."""
    sticker = telegram.wait_for_call("sendSticker", where=in_chat(chat_id))[0]
    document = telegram.wait_for_call("sendDocument", where=in_chat(chat_id))[0]
    for call in (sticker, document):
        assert call.ok, call.error
        assert call.decoded["reply_parameters"]["message_id"] == photo["message_id"]
    assert "caption" not in document.params, "groups get the PNG without the long caption"
    buttons = sticker.decoded["reply_markup"]["inline_keyboard"][0]
    assert buttons[0]["callback_data"].startswith("pack:")
    return sticker


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(astronaut_jpeg())).save(buffer, "PNG")
    return buffer.getvalue()


def test_cutout_command_replying_to_a_group_photo_is_answered_threaded_to_it(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        photo = telegram.send_photo(OTHER_USER, astronaut_jpeg(), chat_id=GROUP, chat_type="supergroup")
        telegram.send_text(
            USER, "/cutout", chat_id=GROUP, chat_type="supergroup", reply_to_message_id=photo["message_id"]
        )
        assert_threaded_answer(telegram, GROUP, photo)
    assert len(picwish.creates()) == 1


def test_cutout_at_bot_replying_to_an_image_document_is_answered(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        document = telegram.send_document(
            USER,
            png_bytes(),
            file_name="me.png",
            mime_type="image/png",
            chat_id=SMALL_GROUP,
            chat_type="group",
        )
        telegram.send_text(
            USER,
            "/cutout@cutout_test_bot",
            chat_id=SMALL_GROUP,
            chat_type="group",
            reply_to_message_id=document["message_id"],
        )
        assert_threaded_answer(telegram, SMALL_GROUP, document)
    assert len(picwish.creates()) == 1


def test_group_photo_captioned_cutout_or_mentioning_the_bot_is_answered(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        first = telegram.send_photo(
            USER, astronaut_jpeg(), chat_id=GROUP, chat_type="supergroup", caption="/cutout"
        )
        assert_threaded_answer(telegram, GROUP, first)
        telegram.clear_calls()
        second = telegram.send_photo(
            USER,
            astronaut_jpeg(quality=80),
            chat_id=GROUP,
            chat_type="supergroup",
            caption="cut me out please @cutout_test_bot",
        )
        assert_threaded_answer(telegram, GROUP, second)
    assert len(picwish.creates()) == 2


def test_group_photos_not_addressed_to_the_bot_are_ignored_without_a_word_or_a_download(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env) as bot:
        group = {"chat_id": GROUP, "chat_type": "supergroup"}
        plain = telegram.send_photo(USER, astronaut_jpeg(), **group)
        telegram.send_photo(USER, astronaut_jpeg(), caption="look at this /cutout", **group)
        telegram.send_photo(USER, astronaut_jpeg(), caption="/cutout@other_bot", **group)
        telegram.send_photo(USER, astronaut_jpeg(), caption="hi @cutout_test_botany", **group)
        telegram.send_text(USER, "/cutout@other_bot", reply_to_message_id=plain["message_id"], **group)
        telegram.send_text(USER, "nice photo", reply_to_message_id=plain["message_id"], **group)
        # The one message addressed to the bot: /cutout replying to text, which gets a brief hint.
        telegram.send_text(USER, "hello")
        hello = telegram.send_text(USER, "no photo here", **group)
        telegram.send_text(USER, "/cutout", reply_to_message_id=hello["message_id"], **group)

        hint = telegram.wait_for_call("sendMessage", where=in_chat(GROUP))[0]
        assert hint.params["text"] == text("group_reply_to_photo", brief=True)
        assert hint.decoded["reply_parameters"]["message_id"] == hello["message_id"] + 1
        telegram.wait_for_call("sendMessage", where=in_chat(USER))  # the private hint: all updates seen
        telegram.wait_for(lambda tg: tg.pending_update_count == 0)
        assert bot.service.stats.accepted == 0

    assert not telegram.calls_to("getFile")
    assert not telegram.calls_to("sendSticker") and not telegram.calls_to("sendChatAction")
    assert len(telegram.calls_to("sendMessage")) == 2  # the group hint and the private one
    assert picwish.requests == []


def test_group_errors_are_brief_and_threaded_to_the_photo(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.state(-14))
    with BotThread(env):
        photo = telegram.send_photo(
            USER, astronaut_jpeg(), chat_id=GROUP, chat_type="supergroup", caption="/cutout"
        )
        brief = text("no_face", brief=True)
        shown = telegram.wait_for(
            lambda tg: [m for m in tg.messages_in(GROUP) if m.get("text") == brief], timeout=15
        )
        assert shown[0]["reply_to_message"]["message_id"] == photo["message_id"]
        assert brief != text("no_face")
    assert not telegram.calls_to("sendSticker")
    assert len(picwish.creates()) == 1


def test_editing_a_cutout_caption_does_not_answer_twice(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env) as bot:
        photo = telegram.send_photo(
            USER, astronaut_jpeg(), chat_id=GROUP, chat_type="supergroup", caption="/cutout"
        )
        assert_threaded_answer(telegram, GROUP, photo)
        # The stand-in has no public "edit": queue the edited message as Telegram would.
        telegram._queue_update(
            "edited_message", {**photo, "caption": "/cutout now", "edit_date": photo["date"] + 1}
        )
        other = telegram.send_text(USER, "no photo", chat_id=GROUP, chat_type="supergroup")
        telegram.send_text(
            USER, "/cutout", chat_id=GROUP, chat_type="supergroup", reply_to_message_id=other["message_id"]
        )
        telegram.wait_for_call(
            "sendMessage", where=lambda c: c.params["text"] == text("group_reply_to_photo", brief=True)
        )
        telegram.wait_for(lambda tg: tg.pending_update_count == 0)
        assert bot.service.stats.accepted == 1
    assert len(telegram.calls_to("sendSticker")) == 1
    assert len(picwish.creates()) == 1
