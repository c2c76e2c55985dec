"""End to end: the bot speaks the user's language, in private and in groups, and publishes its menu per language."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image

from bot.i18n import translator
from tests.harness import BotThread, astronaut_jpeg, in_chat, next_message, say
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

GROUP = -100_555_000


def next_text(telegram: FakeTelegram, chat_id: int, action: Callable[[], object]) -> str:
    return str(next_message(telegram, chat_id, action).params["text"])


def blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (120, 120, 120)).save(buffer, "JPEG")  # no face: the API answers -14
    return buffer.getvalue()


def test_users_are_answered_in_their_telegram_language(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    users = {2001: ("es", "es"), 2002: ("ru", "ru"), 2003: ("zh-hans", "zh_Hans"), 2004: ("pt-br", "pt_BR"), 2005: ("fr", "en")}
    for user, (code, _) in users.items():
        telegram.add_user(user, f"U{user}", language_code=code)
    with BotThread(env):
        for user, (_, language) in users.items():
            t = translator(language)
            assert next_text(telegram, user, lambda u=user: telegram.send_text(u, "/start")) == t("start", name=f"U{user}")
            assert next_text(telegram, user, lambda u=user: telegram.send_text(u, "hola")) == t("hint_send_photo")
        # A failure, then a result with its caption and button, each in the user's language.
        for user, language in ((2001, "es"), (2002, "ru"), (2003, "zh_Hans")):
            t = translator(language)
            telegram.send_photo(user, blank_jpeg())
            failed = telegram.wait_for_call("sendMessage", where=in_chat(user), count=3, timeout=20)[-1]
            assert failed.params["text"] == t("no_face")
            telegram.send_photo(user, astronaut_jpeg())
            sticker = telegram.wait_for_call("sendSticker", where=in_chat(user), timeout=20)[0]
            png = telegram.wait_for_call("sendDocument", where=in_chat(user), timeout=20)[0]
            assert sticker.decoded["reply_markup"]["inline_keyboard"][0][0]["text"] == t("button_add_to_pack")
            assert png.params["caption"] == t("png_caption")


def test_lang_overrides_telegram_and_a_group_speaks_its_admins_choice(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    telegram.add_user(2101, "Olga", language_code="ru")
    telegram.add_user(2102, "Juan", language_code="es")
    telegram.set_admin(GROUP, 2101)
    with BotThread(env):
        chooser = say(telegram, 2101, "/lang")
        assert chooser.params["text"] == translator("ru")("lang_choose", language=translator("ru")("lang_auto"))
        query = telegram.press_button(2101, chooser.result, "lang:es")
        answer = telegram.wait_for_call("answerCallbackQuery", where=lambda c: c.params["callback_query_id"] == query)[0]
        assert answer.params["text"] == translator("es")("lang_set", language="Español")
        assert next_text(telegram, 2101, lambda: telegram.send_text(2101, "/help")).startswith(
            translator("es")("help", bot="cutout_test_bot", max_pending=5, per_minute=10)[:20]
        )
        # In the group, each asker's language until an admin chooses one for the group.
        assert next_text(telegram, GROUP, lambda: telegram.send_text(2102, "/start", chat_id=GROUP, chat_type="supergroup")) == translator("es")("start_group")
        assert next_text(telegram, GROUP, lambda: telegram.send_text(2101, "/start", chat_id=GROUP, chat_type="supergroup")) == translator("es")("start_group")
        group_chooser = say(telegram, 2101, "/lang", chat_id=GROUP)
        query = telegram.press_button(2101, group_chooser.result, "lang:ru")
        telegram.wait_for_call("answerCallbackQuery", where=lambda c: c.params["callback_query_id"] == query)
        assert next_text(telegram, GROUP, lambda: telegram.send_text(2102, "/start", chat_id=GROUP, chat_type="supergroup")) == translator("ru")("start_group")
        # A member who is not an admin cannot change it.
        query = telegram.press_button(2102, group_chooser.result, "lang:es")
        refused = telegram.wait_for_call("answerCallbackQuery", where=lambda c: c.params["callback_query_id"] == query)[0]
        assert refused.params["text"] == translator("ru")("admins_only")


def test_menu_and_descriptions_are_published_per_language_and_not_again_after_a_restart(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    publishing = ("setMyCommands", "setMyDescription", "setMyShortDescription")
    with BotThread(env):
        pass
    assert sorted(telegram.commands) == ["default/", "default/es", "default/pt", "default/ru", "default/zh"]
    assert telegram.commands["default/ru"][0]["description"] == translator("ru")("menu_start")
    assert [c["command"] for c in telegram.commands["default/"]] == [
        "start", "help", "settings", "props", "zip", "pack", "lang", "cutout", "id",
    ]
    first = {m: len(telegram.calls_to(m)) for m in publishing}
    assert first == {m: 5 for m in publishing}
    with BotThread(env):
        pass
    assert {m: len(telegram.calls_to(m)) for m in publishing} == first, "nothing changed: nothing published"
