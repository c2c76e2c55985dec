"""End to end: every way a picture arrives (albums, bursts, links, HEIC, stickers, tiny photos), groups that
restrict the bot, and commands wherever they are typed, as a user sees the answers."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import re
import threading
from collections.abc import Iterator

import pytest
from PIL import Image

from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, astronaut_jpeg, in_chat, next_message, open_image, say, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

GROUP = -100_300_400


def replies(telegram: FakeTelegram, method: str, chat_id: int = USER) -> list[int]:
    """The message ids that the bot's successful ``method`` calls replied to, in the order sent."""
    return [
        c.decoded["reply_parameters"]["message_id"]
        for c in telegram.calls_to(method)
        if c.ok and int(c.params["chat_id"]) == chat_id and "reply_parameters" in c.decoded
    ]


def texts_to(telegram: FakeTelegram, chat_id: int = USER) -> list[str]:
    return [c.params["text"] for c in telegram.calls_to("sendMessage") if int(c.params["chat_id"]) == chat_id]


# --- albums and bursts -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [4, 10])
def test_album_is_answered_in_album_order_under_one_status_message(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], size: int
) -> None:
    # Later photos finish first at the API: the order must come from the bot, not from luck.
    picwish.set_latency(lambda: 0.05)
    with BotThread(env):
        album = telegram.send_album(
            USER, [("photo", variant_jpeg(i)) for i in range(size)], shuffle=True, seed=size
        )
        ids = [m["message_id"] for m in album]
        telegram.wait_for_call("sendDocument", count=size, where=in_chat(USER), timeout=60)
        telegram.wait_for(lambda t: len(t.calls_to("deleteMessage")) == len(texts_to(t)), timeout=10)
    assert replies(telegram, "sendSticker") == ids, "one sticker per photo, in album order"
    assert replies(telegram, "sendDocument") == ids
    # Photos of the album wait their turn (two API starts a second): one status message says so, for
    # all of them (four may all start within the second a photo waits before it gets one).
    statuses = texts_to(telegram)
    assert len(statuses) <= 1, statuses
    if size == 10:
        assert len(statuses) == 1, "ten photos at two a second: most of them wait"
    assert all(re.search(r"#1 in line|Done: \d+ of " + str(size), status) for status in statuses), statuses
    assert len(picwish.creates()) == size, "an album of up to 10 is taken whole, within the limits"


def test_a_group_album_captioned_cutout_is_cut_out_whole_in_order(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        album = telegram.send_album(
            OTHER_USER,
            [("photo", variant_jpeg(40 + i)) for i in range(4)],
            chat_id=GROUP,
            chat_type="supergroup",
            caption="/cutout",
            shuffle=True,
            seed=3,
        )
        telegram.wait_for_call("sendDocument", count=4, where=in_chat(GROUP), timeout=60)
        # Another album with no caption is not the bot's business: nothing downloaded, nothing spent.
        telegram.send_album(
            OTHER_USER, [("photo", variant_jpeg(50)), ("photo", variant_jpeg(51))], chat_id=GROUP,
            chat_type="supergroup",
        )
        before = len(telegram.calls_to("sendMessage"))
        telegram.send_text(USER, "/help", chat_id=GROUP, chat_type="supergroup")
        telegram.wait_for_call("sendMessage", count=before + 1)
    assert replies(telegram, "sendSticker", GROUP) == [m["message_id"] for m in album]
    assert len(picwish.creates()) == 4 and len(telegram.calls_to("getFile")) == 4


def test_a_failed_album_photo_gets_its_reason_in_its_place_and_the_rest_still_come(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    blank = io.BytesIO()
    Image.new("RGB", (400, 400), (128, 128, 128)).save(blank, "JPEG")  # no face: the API answers -14
    with BotThread(env):
        album = telegram.send_album(
            USER, [("photo", variant_jpeg(1)), ("photo", blank.getvalue()), ("photo", variant_jpeg(2))]
        )
        ids = [m["message_id"] for m in album]
        telegram.wait_for_call("sendDocument", count=2, where=in_chat(USER), timeout=30)
        failure = telegram.wait_for_call(
            "sendMessage", where=lambda c: in_chat(USER)(c) and c.params["text"] == text("no_face")
        )[0]
    assert failure.decoded["reply_parameters"]["message_id"] == ids[1]
    assert failure.params["text"] == text("no_face")
    assert replies(telegram, "sendSticker") == [ids[0], ids[2]]
    assert failure.at < telegram.calls_to("sendSticker")[1].at, "the reason comes in the failed photo's place"


def test_a_burst_beyond_the_limits_gets_one_refusal_that_says_how_many(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.set_latency(1.0)  # the first five are still waiting when the rest arrive
    with BotThread(env):
        sent = [telegram.send_photo(USER, variant_jpeg(100 + i))["message_id"] for i in range(12)]
        refusal = telegram.wait_for_call(
            "sendMessage", where=lambda c: in_chat(USER)(c) and "couldn't take" in c.params["text"]
        )[0]
        telegram.wait_for_call("sendDocument", count=5, where=in_chat(USER), timeout=60)
    assert refusal.params["text"] == text("too_many_pending_many", count=7, max_pending=5)
    assert refusal.decoded["reply_parameters"]["message_id"] == sent[5], "it replies to the first refused photo"
    assert sum("couldn't take" in t for t in texts_to(telegram)) == 1
    assert sorted(replies(telegram, "sendSticker")) == sent[:5]
    assert len(picwish.creates()) == 5


# --- links -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def picture_server(files: dict[str, bytes]) -> Iterator[str]:
    """A web server on 127.0.0.1 serving ``files``: where the API stand-in fetches a link from."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path.lstrip("/"))
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=functools.partial(server.serve_forever, 0.1), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_links_go_to_the_api_as_image_url_and_are_answered_in_order(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with picture_server({"me.jpg": variant_jpeg(7), "us.jpg": variant_jpeg(8)}) as site, BotThread(env):
        message = telegram.send_text(USER, f"look {site}/me.jpg and {site}/us.jpg")
        telegram.wait_for_call("sendDocument", count=2, where=in_chat(USER), timeout=30)
        # The same link again within the hour: answered from the cache.
        telegram.send_text(USER, f"{site}/me.jpg")
        telegram.wait_for_call("sendDocument", count=3, where=in_chat(USER), timeout=30)
    creates = picwish.creates()
    assert [c.fields.get("image_url") for c in creates] == [f"{site}/me.jpg", f"{site}/us.jpg"]
    assert all(c.file_name is None and c.fields.get("sync") == "1" for c in creates)
    assert not telegram.calls_to("getFile"), "the bot never downloads a link itself"
    assert replies(telegram, "sendSticker")[:2] == [message["message_id"]] * 2
    sticker = open_image(next(iter(telegram.calls_to("sendSticker")[0].files.values())))
    assert sticker.size[1] == 512 or sticker.size[0] == 512


def test_a_link_the_api_cannot_fetch_gets_its_own_text_and_others_cost_nothing(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        assert say(telegram, USER, "ftp://files.example.org/me.jpg").params["text"] == text("link_not_picture")
        assert say(telegram, USER, "https://example.org/about.html").params["text"] == text("link_not_picture")
        assert picwish.requests == []
        telegram.send_text(USER, "https://photos.example.org/me.jpg")
        failure = telegram.wait_for_call(
            "sendMessage", where=lambda c: c.params["text"] == text("link_unreachable"), timeout=20
        )[0]
    assert failure.ok
    assert [c.fields.get("image_url") for c in picwish.creates()] == ["https://photos.example.org/me.jpg"]


# --- more inputs -----------------------------------------------------------------------------------
def test_an_iphone_heic_file_is_cut_out_and_goes_up_as_jpeg(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    heic = io.BytesIO()
    image = Image.open(io.BytesIO(astronaut_jpeg()))
    pillow_heif.from_pillow(image).save(heic, quality=90)
    with BotThread(env):
        telegram.send_document(USER, heic.getvalue(), file_name="IMG_0042.HEIC", mime_type="image/heic")
        telegram.wait_for_call("sendDocument", where=in_chat(USER), timeout=30)
    assert telegram.calls_to("sendSticker")[0].ok
    upload = picwish.creates()[0]
    assert upload.file_name is not None and upload.file_name.endswith(".jpg")


def test_a_static_sticker_is_cut_out_and_moving_pictures_get_one_hint(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    webp = io.BytesIO()
    Image.open(io.BytesIO(astronaut_jpeg())).save(webp, "WEBP")
    with BotThread(env):
        telegram.send_sticker(USER, webp.getvalue())
        telegram.wait_for_call("sendDocument", where=in_chat(USER), timeout=30)
        assert next_message(telegram, USER, lambda: telegram.send_sticker(USER, b"tgs", kind="animated")).params["text"] == text(
            "not_still"
        )
        assert next_message(telegram, USER, lambda: telegram.send_animation(USER, b"mp4")).params["text"] == text("not_still")
        assert next_message(telegram, USER, lambda: telegram.send_voice(USER, b"ogg")).params["text"] == text("not_still")
    assert len(picwish.creates()) == 1


def test_a_tiny_photo_is_refused_with_its_size_and_costs_nothing(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    tiny = io.BytesIO()
    Image.open(io.BytesIO(astronaut_jpeg())).resize((40, 40)).save(tiny, "JPEG")
    with BotThread(env):
        said = next_message(telegram, USER, lambda: telegram.send_photo(USER, tiny.getvalue())).params["text"]
        telegram.send_document(USER, tiny.getvalue(), file_name="t.jpg", mime_type="image/jpeg")
        told = telegram.wait_for_call("sendMessage", count=2, timeout=20)[1]
    assert said == text("image_too_small", width=40, height=40)
    assert told.params["text"] == said, "a file's size is known once downloaded, still before the API"
    assert picwish.requests == []
    assert len(telegram.calls_to("getFile")) == 1, "a photo's size is known before any download"


# --- groups that restrict the bot --------------------------------------------------------------------
def test_a_group_that_forbids_stickers_gets_the_png_and_later_answers_skip_the_sticker(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    telegram.restrict_chat(GROUP, stickers=False)
    with BotThread(env):
        for seed in (1, 2):
            telegram.send_photo(
                OTHER_USER, variant_jpeg(seed), chat_id=GROUP, chat_type="supergroup", caption="/cutout"
            )
            png = telegram.wait_for_call("sendDocument", count=seed, where=in_chat(GROUP), timeout=30)[-1]
            assert png.ok and png.decoded["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith(
                "pack:"
            )
    assert len(telegram.calls_to("sendSticker")) == 1, "refused once, then remembered"
    assert not any("went wrong" in t for t in texts_to(telegram, GROUP))


def test_a_group_that_forbids_all_media_is_told_in_one_line_what_right_is_needed(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    telegram.restrict_chat(GROUP, stickers=False, documents=False, photos=False)
    with BotThread(env):
        telegram.send_photo(OTHER_USER, variant_jpeg(3), chat_id=GROUP, chat_type="supergroup", caption="/cutout")
        told = telegram.wait_for_call(
            "sendMessage", where=lambda c: c.params["text"] == text("chat_restricted", brief=True), timeout=30
        )[0]
    assert told.ok
    assert not any("went wrong" in t for t in texts_to(telegram, GROUP))


# --- commands wherever they are typed -------------------------------------------------------------------
def test_commands_answer_wherever_they_are_typed(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        assert say(telegram, USER, "/start", chat_id=GROUP).params["text"] == text("start_group")
        assert say(telegram, USER, "/help", chat_id=GROUP).params["text"].startswith("In this group")
        assert say(telegram, USER, "/cutout").params["text"] == text("cutout_alone")
        assert say(telegram, USER, "/frobnicate").params["text"] == text("unknown_command")
        assert say(telegram, USER, "/frobnicate@cutout_test_bot", chat_id=GROUP).params["text"] == text("unknown_command")

        mine = telegram.send_photo(USER, variant_jpeg(20))
        telegram.wait_for_call("sendDocument", where=in_chat(USER), timeout=30)
        telegram.send_text(USER, "/cutout", reply_to_message_id=mine["message_id"])
        telegram.wait_for_call("sendDocument", count=2, where=in_chat(USER), timeout=30)

        photo = telegram.send_photo(OTHER_USER, variant_jpeg(21), chat_id=GROUP, chat_type="supergroup")
        telegram.send_text(
            USER, "@cutout_test_bot this one please", chat_id=GROUP, chat_type="supergroup",
            reply_to_message_id=photo["message_id"],
        )
        sticker = telegram.wait_for_call("sendSticker", where=in_chat(GROUP), timeout=30)[0]
    assert sticker.decoded["reply_parameters"]["message_id"] == photo["message_id"]
    assert len(picwish.creates()) == 2, "the private photo was cut out once: the reply reused the cache"
