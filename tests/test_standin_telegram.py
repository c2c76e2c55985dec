"""The Telegram Bot API stand-in answers like Telegram, over real HTTP, to httpx and to PTB's own Bot."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import telegram
from PIL import Image
from telegram.error import BadRequest, RetryAfter

from tests.standins.telegram_api import FakeTelegram

TOKEN = "123456:TEST-token_abc"
USER = 42
STRANGER = 43  # knows the bot but never opened a private chat with it
SET_NAME = "cutouts_42_by_cutout_test_bot"


def image_bytes(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    color = (200, 30, 30, 255)[: len(mode)]
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


WEBP_512 = image_bytes((512, 512), "WEBP", "RGBA")


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as fake:
        fake.add_user(USER, "Ada", username="ada")
        fake.add_user(STRANGER, "Bob", started=False)
        yield fake
        assert fake.internal_errors == []


@pytest.fixture
def api(tg: FakeTelegram) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{tg.url}/bot{TOKEN}", timeout=10) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 and body["ok"] is True, body
    return body["result"]


def error(response: httpx.Response, code: int) -> str:
    body = response.json()
    assert response.status_code == code, body
    assert body["ok"] is False and body["error_code"] == code, body
    return str(body["description"])


def sticker_upload(api: httpx.Client, data: bytes = WEBP_512, chat_id: int = USER) -> httpx.Response:
    return api.post("/sendSticker", data={"chat_id": str(chat_id)}, files={"sticker": ("s.webp", data)})


# --- basics and error shapes --------------------------------------------------------------------------
def test_get_me_answers_under_any_case_of_the_method_name(api: httpx.Client) -> None:
    assert ok(api.post("/getMe"))["username"] == "cutout_test_bot"
    assert ok(api.get("/GETME"))["is_bot"] is True


def test_wrong_token_unknown_method_and_unknown_path_answer_like_telegram(
    tg: FakeTelegram, api: httpx.Client
) -> None:
    assert error(httpx.post(f"{tg.url}/bot999:wrong/getMe"), 401) == "Unauthorized"
    assert error(api.post("/sendPigeon"), 404) == "Not Found"
    assert error(httpx.get(f"{tg.url}/somewhere/else"), 404) == "Not Found"
    assert [call.method for call in tg.calls] == ["sendPigeon"]


def test_wait_for_call_times_out_with_a_message_naming_the_method(tg: FakeTelegram) -> None:
    with pytest.raises(TimeoutError, match="sendSticker"):
        tg.wait_for_call("sendSticker", timeout=0.2)


# --- updates ------------------------------------------------------------------------------------------
def test_long_poll_wakes_as_soon_as_an_update_is_queued(tg: FakeTelegram, api: httpx.Client) -> None:
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        poll = pool.submit(api.post, "/getUpdates", data={"timeout": "8"})
        tg.wait_for(lambda t: t.calls_to("getUpdates"))
        tg.send_text(USER, "hello")
        updates = ok(poll.result(timeout=5))
    assert time.monotonic() - started < 4
    assert [u["message"]["text"] for u in updates] == ["hello"]


def test_long_poll_without_updates_ends_after_the_requested_timeout(api: httpx.Client) -> None:
    started = time.monotonic()
    assert ok(api.post("/getUpdates", data={"timeout": "1"})) == []
    assert 0.9 <= time.monotonic() - started < 3


def test_offset_confirms_earlier_updates(tg: FakeTelegram, api: httpx.Client) -> None:
    for text in ("one", "two", "three"):
        tg.send_text(USER, text)
    first = ok(api.post("/getUpdates", data={"limit": "2"}))
    assert [u["message"]["text"] for u in first] == ["one", "two"]
    rest = ok(api.post("/getUpdates", data={"offset": str(first[-1]["update_id"] + 1)}))
    assert [u["message"]["text"] for u in rest] == ["three"]
    assert ok(api.post("/getUpdates", data={"offset": str(rest[-1]["update_id"] + 1)})) == []
    assert tg.pending_update_count == 0


def test_a_newer_poll_terminates_an_older_one_with_409(tg: FakeTelegram, api: httpx.Client) -> None:
    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(api.post, "/getUpdates", data={"timeout": "8"})
        tg.wait_for(lambda t: t.calls_to("getUpdates"))
        assert ok(api.post("/getUpdates", data={"timeout": "0"})) == []
        assert "terminated by other getUpdates request" in error(older.result(timeout=5), 409)


def test_photo_arrives_as_a_jpeg_ladder_no_larger_than_the_original(
    tg: FakeTelegram, api: httpx.Client
) -> None:
    message = tg.send_photo(USER, image_bytes((500, 300), "PNG", "RGBA"))
    sizes = message["photo"]
    assert [(p["width"], p["height"]) for p in sizes] == [(90, 54), (320, 192), (500, 300)]
    largest = sizes[-1]
    path = ok(api.post("/getFile", data={"file_id": largest["file_id"]}))["file_path"]
    download = httpx.get(f"{tg.url}/file/bot{TOKEN}/{path}")
    assert download.content == tg.file_bytes(largest["file_id"])
    assert Image.open(io.BytesIO(download.content)).format == "JPEG"
    assert len(download.content) == largest["file_size"]


def test_a_photo_prepared_ahead_arrives_as_the_same_ladder_and_its_largest_size_is_returned(
    tg: FakeTelegram,
) -> None:
    image = image_bytes((500, 300), "PNG", "RGBA")
    plain = tg.send_photo(USER, image)["photo"]
    [largest] = tg.prepare_photos([image])
    prepared = tg.send_photo(USER, image)["photo"]
    assert [(p["width"], p["height"], p["file_size"]) for p in prepared] == [
        (p["width"], p["height"], p["file_size"]) for p in plain
    ]
    assert [tg.file_bytes(p["file_id"]) for p in prepared] == [tg.file_bytes(p["file_id"]) for p in plain]
    assert largest == tg.file_bytes(prepared[-1]["file_id"])


def test_files_over_20_mb_and_unknown_file_ids_cannot_be_fetched(tg: FakeTelegram, api: httpx.Client) -> None:
    big = tg.send_document(USER, b"tiny", file_name="huge.png", mime_type="image/png", declared_size=25 << 20)
    assert big["document"]["file_size"] == 25 << 20
    assert error(api.post("/getFile", data={"file_id": big["document"]["file_id"]}), 400) == (
        "Bad Request: file is too big"
    )
    assert error(api.post("/getFile", data={"file_id": "nope"}), 400) == "Bad Request: invalid file_id"


def test_commands_and_mentions_get_their_entities_in_groups(tg: FakeTelegram) -> None:
    text = tg.send_text(USER, "/cutout@cutout_test_bot now", chat_id=-100500, chat_type="supergroup")
    assert text["chat"] == {"id": -100500, "type": "supergroup", "title": "Test group 100500"}
    assert text["entities"] == [{"type": "bot_command", "offset": 0, "length": 23}]
    photo = tg.send_photo(
        USER,
        image_bytes((64, 64), "JPEG"),
        chat_id=-100500,
        chat_type="supergroup",
        caption="hi @Cutout_Test_Bot",
    )
    assert photo["caption_entities"] == [{"type": "mention", "offset": 3, "length": 16}]


def test_a_reply_carries_the_full_replied_to_message(tg: FakeTelegram) -> None:
    photo = tg.send_photo(USER, image_bytes((64, 64), "JPEG"), chat_id=-7, chat_type="group")
    command = tg.send_text(
        USER, "/cutout", chat_id=-7, chat_type="group", reply_to_message_id=photo["message_id"]
    )
    assert command["reply_to_message"] == photo


# --- what users send: albums, stickers, GIFs, links ---------------------------------------------------
def download(tg: FakeTelegram, api: httpx.Client, file_id: str) -> tuple[str, bytes]:
    path = ok(api.post("/getFile", data={"file_id": file_id}))["file_path"]
    response = httpx.get(f"{tg.url}/file/bot{TOKEN}/{path}")
    assert response.status_code == 200
    return str(path), response.content


def test_an_album_arrives_as_messages_sharing_a_media_group_id(tg: FakeTelegram, api: httpx.Client) -> None:
    photos = [("photo", image_bytes((64 + i, 64), "JPEG")) for i in range(3)]
    album = tg.send_album(USER, photos, chat_id=-100500, chat_type="supergroup", caption="/cutout all")
    updates = ok(api.post("/getUpdates"))
    messages = [u["message"] for u in updates]
    assert messages == album
    [group_id] = {m["media_group_id"] for m in messages}
    assert group_id.isdigit()
    first = messages[0]["message_id"]
    assert [m["message_id"] for m in messages] == [first, first + 1, first + 2]
    assert [m.get("caption") for m in messages] == ["/cutout all", None, None]
    assert messages[0]["caption_entities"] == [{"type": "bot_command", "offset": 0, "length": 7}]
    assert [m["photo"][-1]["width"] for m in messages] == [64, 65, 66]
    other = tg.send_album(USER, photos[:2], chat_id=-100500, chat_type="supergroup")
    assert other[0]["media_group_id"] != group_id


def test_a_shuffled_album_changes_the_update_order_but_not_the_message_ids(
    tg: FakeTelegram, api: httpx.Client
) -> None:
    photos = [("photo", image_bytes((64, 64), "JPEG"))] * 5
    album = tg.send_album(USER, photos, caption="five", shuffle=True, seed=3)
    updates = ok(api.post("/getUpdates"))
    delivered = [u["message"]["message_id"] for u in updates]
    in_album_order = [m["message_id"] for m in album]
    assert delivered != in_album_order and sorted(delivered) == in_album_order
    assert in_album_order == list(range(in_album_order[0], in_album_order[0] + 5))
    assert [u["update_id"] for u in updates] == sorted(u["update_id"] for u in updates)
    assert next(u["message"] for u in updates if "caption" in u["message"]) == album[0]
    # The same seed gives the same order: a failing test can be replayed.
    again = tg.send_album(USER, photos, shuffle=True, seed=3)
    later = ok(api.post("/getUpdates", data={"offset": str(updates[-1]["update_id"] + 1)}))
    first = again[0]["message_id"]
    assert [u["message"]["message_id"] - first for u in later] == [
        i - album[0]["message_id"] for i in delivered
    ]
    # Two items shuffled can only come reversed.
    pair = tg.send_album(USER, photos[:2], shuffle=True)
    last = ok(api.post("/getUpdates", data={"offset": str(later[-1]["update_id"] + 1)}))
    assert [u["message"]["message_id"] for u in last] == [pair[1]["message_id"], pair[0]["message_id"]]


def test_albums_outside_telegrams_limits_are_refused(tg: FakeTelegram) -> None:
    photo = ("photo", image_bytes((64, 64), "JPEG"))
    document = ("document", b"%PDF-1.4", "a.pdf", "application/pdf")
    for items in ([photo], [photo] * 11, [photo, document], [photo, ("video", b"")]):
        with pytest.raises(ValueError):
            tg.send_album(USER, items)
    assert tg.pending_update_count == 0


def test_a_document_album_and_single_items_with_a_media_group_id(tg: FakeTelegram, api: httpx.Client) -> None:
    png = image_bytes((40, 40), "PNG", "RGBA")
    album = tg.send_album(USER, [("document", png, "a.png", "image/png"), ("document", png, "b.png", None)])
    assert [m["document"]["file_name"] for m in album] == ["a.png", "b.png"]
    assert album[0]["document"]["mime_type"] == "image/png" and "mime_type" not in album[1]["document"]
    assert download(tg, api, album[1]["document"]["file_id"])[1] == png
    # Finer-grained: the items of one album, sent one by one (say, with another message in between).
    photo = tg.send_photo(USER, image_bytes((64, 64), "JPEG"), media_group_id="777")
    tg.send_text(USER, "hello")
    document = tg.send_document(USER, png, file_name="c.png", mime_type="image/png", media_group_id="777")
    assert photo["media_group_id"] == document["media_group_id"] == "777"
    assert "media_group_id" not in tg.send_photo(USER, image_bytes((64, 64), "JPEG"))


def test_a_users_static_sticker_is_a_webp_fetchable_with_get_file(
    tg: FakeTelegram, api: httpx.Client
) -> None:
    wide = image_bytes((512, 300), "WEBP", "RGBA")
    message = tg.send_sticker(USER, wide, emoji="😎", set_name="cats_by_someone_bot")
    sticker = message["sticker"]
    assert sticker["type"] == "regular" and sticker["emoji"] == "😎"
    assert (sticker["width"], sticker["height"]) == (512, 300)
    assert (sticker["is_animated"], sticker["is_video"]) == (False, False)
    assert sticker["file_size"] == len(wide) and sticker["set_name"] == "cats_by_someone_bot"
    path, data = download(tg, api, sticker["file_id"])
    assert path.startswith("stickers/") and path.endswith(".webp")
    assert data == wide and Image.open(io.BytesIO(data)).format == "WEBP"
    [update] = ok(api.post("/getUpdates"))
    assert update["message"] == message
    with pytest.raises(ValueError, match="WEBP"):
        tg.send_sticker(USER, image_bytes((512, 512), "PNG"))


def test_animated_and_video_stickers_carry_their_flags(tg: FakeTelegram, api: httpx.Client) -> None:
    tgs, webm = b"\x1f\x8b\x08\x00lottie", b"\x1a\x45\xdf\xa3webm"
    animated = tg.send_sticker(USER, tgs, kind="animated")["sticker"]
    video = tg.send_sticker(USER, webm, kind="video", chat_id=-7, chat_type="group")["sticker"]
    assert (animated["is_animated"], animated["is_video"], animated["emoji"]) == (True, False, "🙂")
    assert (video["is_animated"], video["is_video"]) == (False, True)
    tgs_path, tgs_data = download(tg, api, animated["file_id"])
    webm_path, webm_data = download(tg, api, video["file_id"])
    assert (tgs_path.endswith(".tgs"), tgs_data) == (True, tgs)
    assert (webm_path.endswith(".webm"), webm_data) == (True, webm)
    # The bot may send a sticker a user sent back by file_id; it stays what it was.
    again = ok(api.post("/sendSticker", data={"chat_id": str(USER), "sticker": animated["file_id"]}))
    assert again["sticker"] == animated
    with pytest.raises(ValueError, match="kind"):
        tg.send_sticker(USER, tgs, kind="lottie")


def test_a_gif_arrives_as_an_animation_and_a_document(tg: FakeTelegram, api: httpx.Client) -> None:
    message = tg.send_animation(USER, b"mp4 bytes", file_name="dance.gif.mp4", caption="cut me")
    animation, document = message["animation"], message["document"]
    assert animation["file_id"] == document["file_id"]
    assert animation["mime_type"] == document["mime_type"] == "video/mp4"
    assert {"width", "height", "duration"} <= animation.keys() and "duration" not in document
    assert message["caption"] == "cut me" and "photo" not in message
    path, data = download(tg, api, animation["file_id"])
    assert path.startswith("animations/") and data == b"mp4 bytes"


def test_videos_and_voice_notes_arrive_with_their_own_fields(tg: FakeTelegram, api: httpx.Client) -> None:
    video = tg.send_video(USER, b"video", width=1280, height=720, duration=9)["video"]
    assert (video["width"], video["height"], video["duration"], video["mime_type"]) == (
        1280,
        720,
        9,
        "video/mp4",
    )
    voice = tg.send_voice(USER, b"OggS voice", duration=4)["voice"]
    assert (voice["duration"], voice["mime_type"], voice["file_size"]) == (4, "audio/ogg", 10)
    assert download(tg, api, voice["file_id"])[0].startswith("voice/")


def test_links_get_url_entities_counted_in_utf16_units(tg: FakeTelegram) -> None:
    text = "🙂 see https://example.com/cat.jpg, t.me/cats and (http://127.0.0.1:8080/a?b=1)."
    entities = tg.send_text(USER, text)["entities"]
    assert entities == [
        {"type": "url", "offset": 7, "length": 27},  # the emoji counts as 2 units
        {"type": "url", "offset": 36, "length": 9},
        {"type": "url", "offset": 51, "length": 27},  # without the closing ")."
    ]
    utf16 = text.encode("utf-16-le")
    shown = [utf16[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le") for e in entities]
    assert shown == ["https://example.com/cat.jpg", "t.me/cats", "http://127.0.0.1:8080/a?b=1"]
    # File names, versions and e-mail addresses are not links.
    assert "entities" not in tg.send_text(USER, "photo.jpg v1.2 ada@example.com")
    command = tg.send_text(USER, "/cutout https://example.com/me.png")
    assert command["entities"] == [
        {"type": "bot_command", "offset": 0, "length": 7},
        {"type": "url", "offset": 8, "length": 26},
    ]
    photo = tg.send_photo(USER, image_bytes((64, 64), "JPEG"), caption="👋🏽 www.example.org")
    assert photo["caption_entities"] == [{"type": "url", "offset": 5, "length": 15}]


# --- messages -----------------------------------------------------------------------------------------
def test_the_bot_cannot_write_first_to_someone_who_never_started_it(api: httpx.Client) -> None:
    assert error(api.post("/sendMessage", data={"chat_id": str(STRANGER), "text": "hi"}), 403) == (
        "Forbidden: bot can't initiate conversation with a user"
    )
    assert error(api.post("/sendMessage", data={"chat_id": "999", "text": "hi"}), 400) == (
        "Bad Request: chat not found"
    )


def test_edits_and_deletes_show_in_the_chat_and_refuse_no_op_edits(
    tg: FakeTelegram, api: httpx.Client
) -> None:
    markup = json.dumps({"inline_keyboard": [[{"text": "Again", "callback_data": "again"}]]})
    sent = ok(
        api.post("/sendMessage", data={"chat_id": str(USER), "text": "Working…", "reply_markup": markup})
    )
    edit = {
        "chat_id": str(USER),
        "message_id": str(sent["message_id"]),
        "text": "Working…",
        "reply_markup": markup,
    }
    assert error(api.post("/editMessageText", data=edit), 400).startswith(
        "Bad Request: message is not modified: "
    )
    # An edit without reply_markup drops the keyboard, as on Telegram.
    done = {"chat_id": str(USER), "message_id": str(sent["message_id"]), "text": "<b>Done</b>"}
    ok(api.post("/editMessageText", data={**done, "parse_mode": "HTML"}))
    [shown] = tg.messages_in(USER)
    assert shown["text"] == "Done" and "reply_markup" not in shown
    assert error(api.post("/editMessageText", data={**edit, "message_id": "999"}), 400) == (
        "Bad Request: message to edit not found"
    )
    ok(api.post("/deleteMessage", data={"chat_id": str(USER), "message_id": str(sent["message_id"])}))
    assert tg.messages_in(USER) == []


def test_unescaped_html_is_refused_like_telegram_does(api: httpx.Client) -> None:
    for text in ("1 < 2", "<br>", "<b>open"):
        sent = api.post("/sendMessage", data={"chat_id": str(USER), "text": text, "parse_mode": "HTML"})
        assert error(sent, 400).startswith("Bad Request: can't parse entities: ")


def test_reply_parameters_keep_the_replied_message(tg: FakeTelegram, api: httpx.Client) -> None:
    asked = tg.send_text(USER, "/start")
    reply = json.dumps({"message_id": asked["message_id"]})
    sent = ok(api.post("/sendMessage", data={"chat_id": str(USER), "text": "hi", "reply_parameters": reply}))
    assert sent["reply_to_message"] == asked
    missing = json.dumps({"message_id": 999})
    refused = api.post("/sendMessage", data={"chat_id": str(USER), "text": "hi", "reply_parameters": missing})
    assert error(refused, 400) == "Bad Request: message to be replied not found"


def test_a_pressed_button_becomes_a_callback_query_answered_once(tg: FakeTelegram, api: httpx.Client) -> None:
    markup = json.dumps({"inline_keyboard": [[{"text": "PNG", "callback_data": "png:1"}]]})
    sent = ok(api.post("/sendMessage", data={"chat_id": str(USER), "text": "Here", "reply_markup": markup}))
    query_id = tg.press_button(USER, sent, "png:1")
    [update] = ok(api.post("/getUpdates"))
    assert update["callback_query"]["data"] == "png:1"
    assert update["callback_query"]["message"]["message_id"] == sent["message_id"]
    assert ok(api.post("/answerCallbackQuery", data={"callback_query_id": query_id})) is True
    assert "query is too old" in error(
        api.post("/answerCallbackQuery", data={"callback_query_id": query_id}), 400
    )
    with pytest.raises(ValueError, match="no button"):
        tg.press_button(USER, sent, "nope")


# --- stickers -----------------------------------------------------------------------------------------
def test_send_sticker_accepts_only_a_512_webp(tg: FakeTelegram, api: httpx.Client) -> None:
    sticker = ok(sticker_upload(api))["sticker"]
    assert (sticker["width"], sticker["height"], sticker["type"]) == (512, 512, "regular")
    assert tg.file_bytes(sticker["file_id"]) == WEBP_512
    wide = image_bytes((512, 300), "WEBP", "RGBA")
    assert ok(sticker_upload(api, wide))["sticker"]["height"] == 300
    assert error(sticker_upload(api, image_bytes((600, 600), "WEBP")), 400) == (
        "Bad Request: STICKER_PNG_DIMENSIONS"
    )
    assert (
        error(sticker_upload(api, image_bytes((512, 512), "PNG")), 400) == "Bad Request: STICKER_FILE_INVALID"
    )
    again = ok(api.post("/sendSticker", data={"chat_id": str(USER), "sticker": sticker["file_id"]}))
    assert again["sticker"]["file_id"] == sticker["file_id"]
    assert "wrong file identifier" in error(
        api.post("/sendSticker", data={"chat_id": str(USER), "sticker": "bogus"}), 400
    )


def create_set(
    api: httpx.Client, *, user_id: int = USER, name: str = SET_NAME, title: str = "Cutouts"
) -> Any:
    stickers = json.dumps([{"sticker": "attach://s0", "format": "static", "emoji_list": ["🙂"]}])
    return api.post(
        "/createNewStickerSet",
        data={"user_id": str(user_id), "name": name, "title": title, "stickers": stickers},
        files={"s0": ("s0.webp", WEBP_512)},
    )


def test_sticker_set_names_titles_and_owners_are_checked(api: httpx.Client) -> None:
    for name in (
        "cutouts",
        "9cutouts_by_cutout_test_bot",
        "cut__outs_by_cutout_test_bot",
        "x" * 50 + SET_NAME,
    ):
        assert error(create_set(api, name=name), 400) == "Bad Request: invalid sticker set name is specified"
    assert error(create_set(api, title="t" * 65), 400).startswith("Bad Request: ")
    assert error(create_set(api, user_id=STRANGER), 400) == "Bad Request: PEER_ID_INVALID"
    assert ok(create_set(api, name="Cutouts_42_BY_Cutout_Test_Bot")) is True
    assert error(create_set(api, name="cutouts_42_by_cutout_test_bot"), 400) == (
        "Bad Request: sticker set name is already occupied"
    )


def test_a_sticker_set_holds_at_most_120_stickers(tg: FakeTelegram, api: httpx.Client) -> None:
    assert ok(create_set(api)) is True
    file_id = tg.sticker_sets[SET_NAME]["stickers"][0]["file_id"]
    add = {"user_id": str(USER), "name": SET_NAME}
    by_file_id = json.dumps({"sticker": file_id, "format": "static", "emoji_list": ["😀"]})
    for _ in range(118):
        assert ok(api.post("/addStickerToSet", data={**add, "sticker": by_file_id})) is True
    upload = json.dumps({"sticker": "attach://one", "format": "static", "emoji_list": ["😎"]})
    assert ok(
        api.post("/addStickerToSet", data={**add, "sticker": upload}, files={"one": ("1.webp", WEBP_512)})
    )
    assert error(api.post("/addStickerToSet", data={**add, "sticker": by_file_id}), 400) == (
        "Bad Request: STICKERS_TOO_MUCH"
    )
    sticker_set = ok(api.post("/getStickerSet", data={"name": SET_NAME}))
    assert len(sticker_set["stickers"]) == 120 and sticker_set["stickers"][-1]["emoji"] == "😎"
    assert tg.sticker_sets[SET_NAME]["owner"] == USER
    assert error(api.post("/getStickerSet", data={"name": "nope_by_cutout_test_bot"}), 400) == (
        "Bad Request: STICKERSET_INVALID"
    )


def test_inline_answers_may_only_use_stickers_the_bot_has_sent(tg: FakeTelegram, api: httpx.Client) -> None:
    file_id = ok(sticker_upload(api))["sticker"]["file_id"]

    def answer(results: list[dict[str, Any]]) -> httpx.Response:
        query_id = tg.inline_query(USER, "cat")
        return api.post(
            "/answerInlineQuery", data={"inline_query_id": query_id, "results": json.dumps(results)}
        )

    def cached(result_id: str, sticker: str = file_id) -> dict[str, Any]:
        return {"type": "sticker", "id": result_id, "sticker_file_id": sticker}

    assert "wrong file identifier" in error(answer([cached("1", "unknown")]), 400)
    assert error(answer([cached("1"), cached("1")]), 400) == "Bad Request: RESULT_ID_DUPLICATE"
    assert error(answer([cached(str(i)) for i in range(51)]), 400) == "Bad Request: RESULTS_TOO_MUCH"
    assert ok(answer([cached("a"), cached("b")])) is True
    assert [r["id"] for r in tg.inline_answers[-1]["results"]] == ["a", "b"]


# --- restricted groups --------------------------------------------------------------------------------
def test_a_group_without_sticker_rights_refuses_stickers_but_accepts_texts(
    tg: FakeTelegram, api: httpx.Client
) -> None:
    group = -100500
    asked = tg.send_text(USER, "/cutout", chat_id=group, chat_type="supergroup")
    tg.restrict_chat(group, stickers=False)
    assert error(sticker_upload(api, chat_id=group), 400) == (
        "Bad Request: not enough rights to send stickers to the chat"
    )
    png = {"document": ("cutout.png", image_bytes((64, 64), "PNG", "RGBA"), "image/png")}
    ok(api.post("/sendDocument", data={"chat_id": str(group)}, files=png))
    sent = ok(
        api.post(
            "/sendMessage",
            data={
                "chat_id": str(group),
                "text": "Stickers are off here",
                "reply_to_message_id": str(asked["message_id"]),
            },
        )
    )
    assert ok(sticker_upload(api, chat_id=USER))["chat"]["id"] == USER  # other chats are unaffected
    tg.restrict_chat(group, stickers=False, documents=False, photos=False, messages=False)
    jpeg = {"photo": ("p.jpg", image_bytes((64, 64), "JPEG"), "image/jpeg")}
    refusals = {
        "documents": api.post("/sendDocument", data={"chat_id": str(group)}, files=png),
        "photos": api.post("/sendPhoto", data={"chat_id": str(group)}, files=jpeg),
        "messages": api.post("/sendMessage", data={"chat_id": str(group), "text": "hi"}),
    }
    assert {kind: error(answer, 400) for kind, answer in refusals.items()} == {
        "documents": "Bad Request: not enough rights to send documents to the chat",
        "photos": "Bad Request: not enough rights to send photos to the chat",
        "messages": "Bad Request: not enough rights to send text messages to the chat",
    }
    # The bot's own messages can still be edited and deleted.
    where = {"chat_id": str(group), "message_id": str(sent["message_id"])}
    assert (
        ok(api.post("/editMessageText", data={**where, "text": "Sent as a file"}))["text"] == "Sent as a file"
    )
    assert ok(api.post("/deleteMessage", data=where)) is True
    tg.restrict_chat(group)
    assert ok(sticker_upload(api, chat_id=group))["chat"]["id"] == group
    with pytest.raises(ValueError):
        tg.restrict_chat(USER, stickers=False)


# --- fault injection and webhooks ---------------------------------------------------------------------
def test_fail_next_answers_429_with_retry_after_then_recovers(tg: FakeTelegram, api: httpx.Client) -> None:
    tg.fail_next(
        "sendsticker", error_code=429, description="Too Many Requests: retry after 3", retry_after=3, count=2
    )
    for _ in range(2):
        refused = sticker_upload(api)
        assert error(refused, 429) == "Too Many Requests: retry after 3"
        assert refused.json()["parameters"] == {"retry_after": 3}
    ok(sticker_upload(api))
    assert [call.ok for call in tg.wait_for_call("sendSticker", count=3)] == [False, False, True]


def test_a_webhook_receives_updates_with_its_secret(tg: FakeTelegram, api: httpx.Client) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers.get("X-Telegram-Bot-Api-Secret-Token"), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        ok(api.post("/setWebhook", data={"url": url, "secret_token": "s3cret"}))
        assert "webhook is active" in error(api.post("/getUpdates"), 409)
        tg.send_text(USER, "via webhook")
        tg.wait_for(lambda t: received and t.pending_update_count == 0)
        assert received[0][0] == "s3cret" and received[0][1]["message"]["text"] == "via webhook"
        assert ok(api.post("/getWebhookInfo"))["url"] == url
        ok(api.post("/deleteWebhook"))
        assert ok(api.post("/getUpdates")) == []
    finally:
        server.shutdown()
        server.server_close()


# --- PTB's own client ---------------------------------------------------------------------------------
async def test_ptb_bot_talks_to_the_stand_in(tg: FakeTelegram) -> None:
    bot = telegram.Bot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot")
    async with bot:
        assert (await bot.get_me()).username == "cutout_test_bot"
        photo = tg.send_photo(USER, image_bytes((400, 400), "JPEG"))
        message = await bot.send_message(USER, "Got it", reply_to_message_id=photo["message_id"])
        assert message.text == "Got it" and message.reply_to_message is not None
        assert message.reply_to_message.photo[-1].width == 400

        file = await bot.get_file(photo["photo"][-1]["file_id"])
        assert bytes(await file.download_as_bytearray()) == tg.file_bytes(photo["photo"][-1]["file_id"])

        sent = await bot.send_sticker(USER, WEBP_512)
        assert sent.sticker is not None and sent.sticker.width == 512
        with pytest.raises(BadRequest, match=r"(?i)sticker_png_dimensions"):  # PTB recapitalizes
            await bot.send_sticker(USER, image_bytes((600, 600), "WEBP"))

        tg.fail_next(
            "sendMessage", error_code=429, description="Too Many Requests: retry after 5", retry_after=5
        )
        with pytest.raises(RetryAfter):
            await bot.send_message(USER, "too fast")

    assert [m.get("text") for m in tg.messages_in(USER)] == ["Got it", None]


async def test_ptb_maps_missing_rights_to_bad_request_and_parses_what_users_send(tg: FakeTelegram) -> None:
    bot = telegram.Bot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot")
    async with bot:
        tg.send_text(USER, "hello", chat_id=-100500, chat_type="supergroup")  # the bot now knows the group
        tg.restrict_chat(-100500, stickers=False)
        with pytest.raises(BadRequest) as refused:
            await bot.send_sticker(-100500, WEBP_512)
        # PTB drops the "Bad Request: " prefix and capitalizes the rest.
        assert refused.value.message == "Not enough rights to send stickers to the chat"
        assert (await bot.send_message(-100500, "Here it is as a file instead")).text

        tg.send_album(USER, [("photo", image_bytes((64, 64), "JPEG"))] * 2, caption="two", shuffle=True)
        tg.send_sticker(USER, b"\x1f\x8b lottie", kind="animated")
        tg.send_animation(USER, b"mp4")
        tg.send_video(USER, b"mp4")
        tg.send_voice(USER, b"ogg")
        tg.send_text(USER, "🙂 https://example.com/x.png")
        # PTB parses every object: a field the Bot API requires and the stand-in left out would raise here.
        updates = await bot.get_updates()
        messages = [u.message for u in updates if u.message is not None and u.message.chat.id == USER]
        album = [m for m in messages if m.media_group_id]  # in delivery order: two items, reversed
        assert [m.caption for m in album] == [None, "two"] and album[0].message_id > album[1].message_id
        sticker, gif, video, voice, text = messages[2:]
        assert sticker.sticker is not None and sticker.sticker.is_animated
        assert (
            gif.animation is not None
            and gif.document is not None
            and gif.effective_attachment == gif.animation
        )
        assert video.video is not None and voice.voice is not None and voice.voice.mime_type == "audio/ogg"
        assert text.parse_entities([telegram.MessageEntity.URL]).popitem()[1] == "https://example.com/x.png"
