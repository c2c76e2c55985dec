"""Running it for months: structured logs that follow a photo, and tables that stay bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bot.domain import JobState
from bot.storage import Store
from tests.conftest import USER
from tests.harness import API_KEY, BOT_TOKEN, BotProcess, BotThread, astronaut_jpeg, bot_env
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
        telegram.wait_for_call("deleteMessage", timeout=30)
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
