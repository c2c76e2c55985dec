"""Running it for months: structured logs that follow a photo, and tables that stay bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from bot.domain import JobState
from bot.storage import Store, cache
from tests.conftest import USER
from tests.harness import API_KEY, BOT_TOKEN, BotProcess, BotThread, astronaut_jpeg, bot_env, open_image
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram


def test_json_logs_parse_line_by_line_follow_the_photo_by_job_id_and_hold_no_secret(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    bot = BotProcess(env, tmp_path)
    try:
        telegram.wait_for_call("getUpdates", timeout=30)
        telegram.send_photo(USER, astronaut_jpeg())
        telegram.wait_for_call("sendDocument", timeout=30)
        bot.terminate()
        assert bot.wait(timeout=15) == 0
    finally:
        bot.close()
    output = bot.output
    assert BOT_TOKEN not in output and API_KEY not in output and BOT_TOKEN.split(":")[1] not in output
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    job_ids = {r["job_id"] for r in records if r.get("job_id")}
    assert len(job_ids) == 1, "one photo, one job id on its lines"
    (job_id,) = job_ids
    mine = [r["message"] for r in records if r.get("job_id") == job_id and r["level"] == "INFO"]
    assert any("picture from user" in m for m in mine), "arrival"
    assert any("to picwish" in m for m in mine), "sent to the API"
    assert any("answered in" in m for m in mine), "answered, with its time"


def test_old_answered_jobs_are_pruned_and_open_ones_kept(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    store = Store(Path(env["DATA_DIR"]) / "bot.sqlite3")
    common = {"user_id": USER, "chat_id": USER, "chat_type": "private", "file_id": "f", "file_unique_id": "u"}
    old = store.new_job(message_id=1, origin_message_id=1, **common)
    store.update_job(old, state=JobState.DONE)
    recent = store.new_job(message_id=2, origin_message_id=2, **common)
    store.update_job(recent, state=JobState.FAILED)
    store._db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (time.time() - 31 * 86400, old.id))
    store.close()
    with BotThread(env) as bot:
        telegram.wait_for(lambda _: bot.service.store.job_for_origin(USER, 1) is None, timeout=10)
        assert bot.service.store.job_for_origin(USER, 2) is not None, "younger than JOB_RETENTION_DAYS"


def test_a_photo_evicted_from_the_cache_is_answered_again_from_the_sticker_telegram_holds(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    photo = astronaut_jpeg()
    with BotThread(env):
        telegram.send_photo(USER, photo)
        first_png = telegram.wait_for_call("sendDocument", timeout=30)[0]
        first_sticker = telegram.wait_for_call("sendSticker", timeout=30)[0]
        files, _ = cache.evict(Path(env["DATA_DIR"]), 0)  # what CACHE_MAX_MB does to the oldest entries
        assert files >= 3, "the API's result, the sticker and the PNG are gone from disk"

        telegram.send_photo(USER, photo)
        second_png = telegram.wait_for_call("sendDocument", count=2, timeout=30)[1]
        second_sticker = telegram.wait_for_call("sendSticker", count=2, timeout=30)[1]

    assert len(picwish.creates()) == 1, "no API call: the sticker Telegram holds was fetched back"
    sticker_id = first_sticker.result["sticker"]["file_id"]
    assert second_sticker.params["sticker"] == sticker_id, "the same sticker, sent by its file id"
    before = open_image(telegram.file_bytes(first_png.result["document"]["file_id"]))
    after = open_image(telegram.file_bytes(second_png.result["document"]["file_id"]))
    assert after.mode == "RGBA" and after.size == before.size
    # The same picture: every alpha, and every colour that shows (a clear pixel's colour is not kept).
    assert after.getchannel("A").tobytes() == before.getchannel("A").tobytes()
    shown = before.getchannel("A").point(lambda a: 255 if a else 0)
    black = Image.new("RGBA", before.size)
    assert Image.composite(after, black, shown).tobytes() == Image.composite(before, black, shown).tobytes()
