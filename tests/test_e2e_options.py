"""End to end: /settings, /props and /zip, checked on the images a user gets back."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from PIL import Image

from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, astronaut_jpeg, in_chat, open_image, say
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import Call, FakeTelegram
from tests.test_e2e_cutout import assert_head_cutout, assert_sticker_rules

GROUP = -100_900_100


def big_portrait(width: int, height: int, quality: int = 90) -> bytes:
    """The astronaut resized to ``width`` x ``height``, as a JPEG file from a camera roll."""
    image = Image.open(io.BytesIO(astronaut_jpeg())).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def press(telegram: FakeTelegram, user: int, message: dict[str, Any], data: str) -> Call:
    """Press a settings button as ``user``; return the bot's answerCallbackQuery call."""
    query_id = telegram.press_button(user, message, data)
    answer = telegram.wait_for_call(
        "answerCallbackQuery", where=lambda c: c.params["callback_query_id"] == query_id
    )[0]
    assert answer.ok, answer.error
    return answer


def set_options(telegram: FakeTelegram, user: int, *presses: str, chat_id: int | None = None) -> None:
    keyboard = say(telegram, user, "/settings", chat_id=chat_id).result
    for data in presses:
        answer = press(telegram, user, keyboard, data)
        assert answer.params["text"].startswith("✅"), answer.params


def document_named(telegram: FakeTelegram, name: str, *, count: int = 1, timeout: float = 30) -> Call:
    calls = telegram.wait_for_call(
        "sendDocument", count=count, where=lambda c: c.result and _file_name(c) == name, timeout=timeout
    )
    return calls[count - 1]


def _file_name(call: Call) -> str:
    return str(call.result.get("document", {}).get("file_name", ""))


def uploaded(call: Call) -> bytes:
    return next(iter(call.files.values()))


def white_run_from_left(image: Image.Image, y: int) -> int:
    """Along row ``y``: how many opaque white pixels come first after the transparent margin and the
    antialiased outer edge."""
    rgba = image.convert("RGBA")
    x = 0
    while x < rgba.width and rgba.getpixel((x, y))[3] < 255:
        x += 1
    run = 0
    while x < rgba.width and rgba.getpixel((x, y)) == (255, 255, 255, 255):
        run, x = run + 1, x + 1
    return run


def test_outline_sticker_has_an_opaque_white_ring_and_still_obeys_the_sticker_rules(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        keyboard = say(telegram, USER, "/settings").result
        assert "White outline: off" in keyboard["text"]
        answer = press(telegram, USER, keyboard, "set:outline:1")
        assert answer.params["text"] == "✅ White outline: on"
        edited = telegram.wait_for_call("editMessageText")[0]
        assert "White outline: on" in edited.params["text"]

        telegram.send_photo(USER, astronaut_jpeg())
        sticker_call = telegram.wait_for_call("sendSticker")[0]
        png_call = telegram.wait_for_call("sendDocument")[0]
    sticker, png = open_image(uploaded(sticker_call)), open_image(uploaded(png_call))
    assert_sticker_rules(sticker, len(uploaded(sticker_call)))
    for image in (sticker, png):
        width, height = image.size
        # About 3 % of 512 px: a ring at least 10 px thick at the head's left and right edges...
        assert white_run_from_left(image, height // 2) >= 10
        assert white_run_from_left(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), height // 2) >= 10
        # ...that stays inside the sticker: its border is still transparent.
        alpha = image.getchannel("A")
        assert all(alpha.getpixel((x, 0)) == 0 for x in range(width))
        assert all(alpha.getpixel((0, y)) == 0 for y in range(height))
    assert len(picwish.creates()) == 1


def test_jpg_output_comes_as_a_photo_without_alpha_and_without_a_sticker(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        set_options(telegram, USER, "set:output:jpg")
        photo = telegram.send_photo(USER, astronaut_jpeg())
        sent = telegram.wait_for_call("sendPhoto")[0]
        assert sent.ok, sent.error
        assert sent.decoded["reply_parameters"]["message_id"] == photo["message_id"]
        assert not telegram.calls_to("sendSticker") and not telegram.calls_to("sendDocument")
    jpg = open_image(uploaded(sent))
    assert jpg.format == "JPEG" and jpg.mode == "RGB"
    assert picwish.creates()[0].fields["output_format"] == "jpg"


def test_prop_of_a_3000px_file_is_full_resolution_transparent_300_dpi_and_named_after_it(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        on = say(telegram, USER, "/props")
        assert on.params["text"] == text("props_on")
        telegram.send_document(USER, big_portrait(3000, 3000), file_name="guest-0001.jpg", mime_type="image/jpeg")
        prop_call = document_named(telegram, "guest-0001-prop.png")
        assert "300 DPI" in prop_call.params["caption"]
        # The sticker and the 512 px PNG still come, before the prop.
        assert telegram.calls_to("sendSticker") and document_named(telegram, "cutout.png").at < prop_call.at

        camera = telegram.send_photo(USER, astronaut_jpeg())
        document_named(telegram, f"photo-{camera['message_id']}-prop.png")
    prop = open_image(uploaded(prop_call))
    assert prop.format == "PNG" and prop.mode == "RGBA"
    assert max(prop.size) >= 1200, prop.size
    width, height = prop.size
    alpha = prop.getchannel("A")
    for corner in [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)]:
        assert alpha.getpixel(corner) == 0
    assert alpha.getpixel((width // 2, height // 2)) == 255
    assert tuple(round(v) for v in prop.info["dpi"]) == (300, 300)


def test_changing_outline_or_props_costs_no_api_call_changing_crop_costs_one(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    source = big_portrait(1500, 1000)

    def send_and_wait_for(name: str, count: int = 1) -> Call:
        telegram.send_document(USER, source, file_name="family.jpg", mime_type="image/jpeg")
        return document_named(telegram, name, count=count)

    with BotThread(env):
        send_and_wait_for("cutout.png")
        assert len(picwish.creates()) == 1
        assert picwish.creates()[0].fields["crop"] == "1"

        set_options(telegram, USER, "set:outline:1", "set:props:1")
        tight = send_and_wait_for("family-prop.png")
        assert len(picwish.creates()) == 1, "outline and props are rendered from the cached result"
        outlined = open_image(uploaded(document_named(telegram, "cutout.png", count=2)))
        assert white_run_from_left(outlined, outlined.height // 2) >= 10

        set_options(telegram, USER, "set:crop:0")
        whole = send_and_wait_for("family-prop.png", count=2)
        assert len(picwish.creates()) == 2 and picwish.creates()[1].fields["crop"] == "0"
    tight_prop, whole_prop = open_image(uploaded(tight)), open_image(uploaded(whole))
    # The whole canvas keeps the source's size (plus the cutting margin); the head crop is tighter.
    assert whole_prop.width >= 1500 and whole_prop.height >= 1000
    assert tight_prop.width < whole_prop.width and tight_prop.height < whole_prop.height


def test_group_settings_and_prop_mode_belong_to_the_group_admins(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    telegram.set_admin(GROUP, USER)
    with BotThread(env):
        keyboard = say(telegram, OTHER_USER, "/settings", chat_id=GROUP).result
        assert "Only the group's admins" in keyboard["text"]
        refused = press(telegram, OTHER_USER, keyboard, "set:outline:1")
        assert refused.params["text"] == text("admins_only") and refused.decoded.get("show_alert") is True
        assert not telegram.calls_to("editMessageText")
        assert say(telegram, OTHER_USER, "/props", chat_id=GROUP).params["text"] == text("admins_only")

        accepted = press(telegram, USER, keyboard, "set:outline:1")
        assert accepted.params["text"] == "✅ White outline: on"
        assert say(telegram, USER, "/props", chat_id=GROUP).params["text"] == text(
            "props_on", brief=True
        )
        # A member's own settings in private are theirs, untouched by the group's.
        assert "White outline: off" in say(telegram, OTHER_USER, "/settings").params["text"]
        telegram.send_photo(OTHER_USER, astronaut_jpeg(), chat_id=GROUP, chat_type="supergroup", caption="/cutout")
        prop = telegram.wait_for_call("sendDocument", count=2, where=in_chat(GROUP), timeout=30)[1]
        assert _file_name(prop).endswith("-prop.png")


def test_zip_holds_exactly_the_props_made_in_the_chat_each_readable(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    telegram.set_admin(GROUP, USER, owner=True)
    with BotThread(env):
        say(telegram, USER, "/props", chat_id=GROUP)
        for number in (1, 2):
            telegram.send_document(
                OTHER_USER,
                big_portrait(600 + number, 600),
                file_name=f"guest-000{number}.jpg",
                mime_type="image/jpeg",
                chat_id=GROUP,
                chat_type="supergroup",
                caption="/cutout",
            )
            document_named(telegram, f"guest-000{number}-prop.png")
        camera = telegram.send_photo(
            OTHER_USER, big_portrait(640, 600), chat_id=GROUP, chat_type="supergroup", caption="/cutout"
        )
        document_named(telegram, f"photo-{camera['message_id']}-prop.png")
        # A prop made elsewhere is not this group's.
        say(telegram, USER, "/props")
        mine = telegram.send_photo(USER, astronaut_jpeg())
        document_named(telegram, f"photo-{mine['message_id']}-prop.png")
        props = {
            _file_name(c): uploaded(c)
            for c in telegram.calls_to("sendDocument")
            if _file_name(c).endswith("-prop.png") and int(c.params["chat_id"]) == GROUP
        }

        assert say(telegram, OTHER_USER, "/zip", chat_id=GROUP).params["text"] == text("admins_only")
        telegram.send_text(USER, "/zip", chat_id=GROUP, chat_type="supergroup")
        archive_call = telegram.wait_for_call(
            "sendDocument", where=lambda c: _file_name(c).endswith(".zip"), timeout=30
        )[0]
        assert archive_call.params["caption"] == text("zip_caption", count=3)
        assert say(telegram, USER, "/zip", chat_id=GROUP).params["text"] == text("zip_none")
    with zipfile.ZipFile(io.BytesIO(uploaded(archive_call))) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == sorted(props)
        for name, data in props.items():
            assert archive.read(name) == data
            assert open_image(archive.read(name)).size == open_image(data).size


def test_settings_keyboard_still_works_after_a_restart(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        keyboard = say(telegram, USER, "/settings").result
    with BotThread(env):
        answer = press(telegram, USER, keyboard, "set:crop:0")
        assert answer.params["text"] == "✅ Crop: whole photo"
        edited = telegram.wait_for_call("editMessageText")[0]
        assert edited.ok and "Crop: whole photo" in edited.params["text"]
        telegram.send_photo(USER, astronaut_jpeg())
        telegram.wait_for_call("sendDocument")
    assert picwish.creates()[0].fields["crop"] == "0"


def test_pack_sticker_gets_the_emoji_chosen_in_settings(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        set_options(telegram, USER, "set:emoji:4")
        telegram.send_photo(USER, astronaut_jpeg())
        sticker = telegram.wait_for_call("sendSticker")[0].result
        telegram.press_button(USER, sticker, sticker["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        create = telegram.wait_for_call("createNewStickerSet")[0]
    assert create.decoded["stickers"][0]["emoji_list"] == ["🎉"]


def test_png_only_carries_the_pack_button_and_no_sticker(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        set_options(telegram, USER, "set:output:png")
        telegram.send_photo(USER, astronaut_jpeg())
        png_call = document_named(telegram, "cutout.png")
        assert not telegram.calls_to("sendSticker")
    assert png_call.decoded["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith("pack:")
    assert_head_cutout(open_image(uploaded(png_call)))
