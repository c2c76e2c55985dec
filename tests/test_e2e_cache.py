"""End to end: the same image is never sent to the API twice, across restarts and expired API results."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from bot.storage import Store
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, astronaut_jpeg, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

GROUP = -100_555


def resend(telegram: FakeTelegram, user: int, message: dict[str, Any]) -> dict[str, Any]:
    """The user sends an earlier photo or file again, as a forward does: same file_id, same file_unique_id.

    The stand-in has no public "forward", so the same content goes through its incoming-message path.
    """
    content = {key: message[key] for key in ("photo", "document") if key in message}
    resent: dict[str, Any] = telegram._incoming(user, None, "private", content, None)
    return resent


def answered(telegram: FakeTelegram, count: int, chat_id: int = USER) -> list[bytes]:
    """Wait for ``count`` PNG answers in the chat; return their bytes."""
    calls = telegram.wait_for_call(
        "sendDocument", count=count, timeout=15, where=lambda c: int(c.params["chat_id"]) == chat_id
    )
    return [next(iter(call.files.values())) for call in calls]


def sticker_sends(telegram: FakeTelegram) -> list[str]:
    """What each sendSticker carried: "upload" or the file_id of a sticker Telegram already holds."""
    return ["upload" if call.files else call.params["sticker"] for call in telegram.calls_to("sendSticker")]


def png_document(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(variant_jpeg(seed))).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_same_photo_sent_again_is_answered_without_the_api_or_a_download(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env) as bot:
        photo = telegram.send_photo(USER, astronaut_jpeg())
        first_png = answered(telegram, 1)[0]
        assert len(picwish.requests) == 1 and len(telegram.calls_to("getFile")) == 1

        again = resend(telegram, USER, photo)
        assert again["photo"][-1]["file_unique_id"] == photo["photo"][-1]["file_unique_id"]
        second_png = answered(telegram, 2)[1]
        assert bot.service.stats.cache_hits == 1

    assert len(picwish.requests) == 1, "the second answer cost no API request"
    assert len(telegram.calls_to("getFile")) == 1, "nor a download"
    assert second_png == first_png
    first_sticker = telegram.calls_to("sendSticker")[0].result["sticker"]["file_id"]
    assert sticker_sends(telegram) == ["upload", first_sticker]
    replies = [c.decoded["reply_parameters"]["message_id"] for c in telegram.calls_to("sendSticker")]
    assert replies == [photo["message_id"], again["message_id"]]


def test_asking_twice_for_the_same_group_photo_costs_one_api_request(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        photo = telegram.send_photo(USER, astronaut_jpeg(), chat_id=GROUP, chat_type="supergroup")
        for count, asker in enumerate((USER, OTHER_USER), start=1):
            telegram.send_text(
                asker,
                "/cutout",
                chat_id=GROUP,
                chat_type="supergroup",
                reply_to_message_id=photo["message_id"],
            )
            answered(telegram, count, chat_id=GROUP)
    assert len(picwish.requests) == 1
    assert len(telegram.calls_to("getFile")) == 1


def test_the_same_bytes_as_a_new_file_hit_the_content_hash(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    data = png_document(1)
    with BotThread(env):
        first = telegram.send_document(USER, data, file_name="me.png", mime_type="image/png")
        first_png = answered(telegram, 1)[0]
        second = telegram.send_document(USER, data, file_name="copy.png", mime_type="image/png")
        assert second["document"]["file_unique_id"] != first["document"]["file_unique_id"]
        second_png = answered(telegram, 2)[1]
    assert len(picwish.creates()) == 1 and len(picwish.requests) == 1
    assert second_png == first_png
    assert len(telegram.calls_to("getFile")) == 2, "a new file_unique_id is downloaded to be hashed"


def test_the_cache_outlives_a_restart_and_the_api_result_urls(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    data = png_document(2)
    with BotThread(env):
        document = telegram.send_document(USER, data, file_name="me.png", mime_type="image/png")
        first_png = answered(telegram, 1)[0]
    assert len(picwish.requests) == 1
    stored = list((Path(env["DATA_DIR"]) / "cutouts").rglob("*.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == first_png

    picwish.expire_results()  # the API's result URLs are gone: only our copy under DATA_DIR is left
    with BotThread(env) as bot:
        resend(telegram, USER, document)  # known file_unique_id
        telegram.send_document(USER, data, file_name="again.png", mime_type="image/png")  # known content
        later = answered(telegram, 3)[1:]
        assert bot.service.stats.cache_hits == 2
    assert later == [first_png, first_png]
    assert len(picwish.requests) == 1
    assert picwish.downloads and all(
        d.at < telegram.calls_to("sendDocument")[0].at for d in picwish.downloads
    )


def test_two_identical_photos_at_the_same_time_cost_one_api_request(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.set_latency(0.5)  # both jobs are in flight together
    photo = astronaut_jpeg()
    with BotThread(env):
        telegram.send_photo(USER, photo)
        telegram.send_photo(OTHER_USER, photo)
        answered(telegram, 1, chat_id=USER)
        answered(telegram, 1, chat_id=OTHER_USER)
    assert len(picwish.creates()) == 1
    assert len(telegram.calls_to("getFile")) == 2


def test_a_cleaned_up_copy_is_made_again_rather_than_failing(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    data = Path(env["DATA_DIR"])
    with BotThread(env):
        photo = telegram.send_photo(USER, astronaut_jpeg())
        answered(telegram, 1)
        # Renders cleaned away: made again from the API's kept result, at no cost.
        for stored in (data / "cutouts").rglob("*.*"):
            stored.unlink()
        resend(telegram, USER, photo)
        answered(telegram, 2)
        assert len(picwish.creates()) == 1
        # The whole cache cleaned away: fetched back from the sticker Telegram holds, at no cost.
        def clean_all() -> None:
            for folder in ("cutouts", "results"):
                for stored in (data / folder).rglob("*.*"):
                    stored.unlink()

        clean_all()
        resend(telegram, USER, photo)
        answered(telegram, 3)
        assert len(picwish.creates()) == 1
        # ...and when Telegram cannot serve that sticker either: made again from the API, once.
        clean_all()
        telegram.fail_next("getFile", error_code=400, description="Bad Request: wrong file_id or the file is temporarily unavailable")
        resend(telegram, USER, photo)
        answered(telegram, 4)
    assert len(picwish.creates()) == 2, "made again from the API, once"


def test_a_stored_sticker_file_id_telegram_refuses_is_replaced_by_an_upload(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env) as bot:
        photo = telegram.send_photo(USER, astronaut_jpeg())
        answered(telegram, 1)
        # As after a new bot token on the old DATA_DIR: Telegram no longer knows the stored file_id.
        store = Store(Path(env["DATA_DIR"]) / "bot.sqlite3")
        cutout_id = store.recent_stickers(USER)[0][0]
        store.remember_sent_sticker(USER, cutout_id, "CAACAgIAAxkBAAIstale", "stale")
        store.close()
        resend(telegram, USER, photo)
        answered(telegram, 2)
        assert bot.service.stats.cache_hits == 1
    assert sticker_sends(telegram) == ["upload", "CAACAgIAAxkBAAIstale", "upload"]
    assert len(picwish.requests) == 1


def test_a_photo_that_failed_for_good_is_not_paid_for_again(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    from bot.texts import text

    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 200, 200)).save(blank, "PNG")  # no face: the API says -14
    no_face = text("no_face")

    def no_face_answers() -> int:
        return sum(1 for m in telegram.messages_in(USER) if m.get("text") == no_face)

    with BotThread(env):
        photo = telegram.send_photo(USER, blank.getvalue())
        telegram.wait_for(lambda t: no_face_answers() == 1)
        assert len(picwish.creates()) == 1

        resend(telegram, USER, photo)  # same file_unique_id
        same_bytes = telegram.file_bytes(photo["photo"][-1]["file_id"])  # a new file_unique_id, same content
        telegram.send_document(USER, same_bytes, file_name="blank.jpg", mime_type="image/jpeg")
        telegram.wait_for(lambda t: no_face_answers() == 3)
    assert len(picwish.requests) == 1, "the known failure was answered without the API"
