"""The store upgrades a database made by an earlier release in place, with nothing lost."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import CutoutOptions, JobState
from bot.storage import Store
from bot.storage.migrations import SCHEMA_VERSION, SchemaTooNew
from tests.harness import ROOT, bot_env
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

# Built by the store as released before migrations (schema 1), with jobs in every state, two cached
# cutouts, a remembered failure and file key, inline history for two users and a two-volume pack.
V1 = Path(__file__).parent / "fixtures" / "store-v1.sqlite3"


@pytest.fixture
def upgraded(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "bot.sqlite3"
    shutil.copy(V1, path)
    store = Store(path)
    yield store
    store.close()


def test_a_schema_1_database_is_upgraded_in_place_with_every_row_kept(upgraded: Store) -> None:
    assert upgraded.upgraded_from == 0
    version = sqlite3.connect(upgraded.path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION

    # Jobs: the open ones resume, with the default options and their states as the enum.
    open_jobs = upgraded.open_jobs()
    assert [(j.state, j.lang, j.file_unique_id) for j in open_jobs] == [
        (JobState.QUEUED, "es", "U-queued"),
        (JobState.DELIVERING, "ru", "U-deliv"),
    ]
    queued, delivering = open_jobs
    assert queued.file_name == "guest-0001.jpg" and queued.file_size == 12345 and queued.cache_key == "b" * 64
    assert queued.options == CutoutOptions() and queued.parts_sent == 0
    # A job that was "delivering" had sent its sticker, the first part: a restart sends only the rest.
    assert delivering.parts_sent == 1 and delivering.thread_id == 3 and delivering.chat_type == "supergroup"
    done = upgraded.job_for_origin(1001, 5)
    assert done is not None and done.state is JobState.DONE and done.status_message_id == 6
    failed = upgraded.job_for_origin(1002, 2)
    assert failed is not None and failed.state is JobState.FAILED and failed.error == "TaskFailed"
    assert upgraded.count_open_jobs(1001) == 1 and upgraded.count_open_jobs(1002) == 1

    # The cache: cutouts, a remembered failure, a file key.
    first, second = upgraded.cutout_by_id(1), upgraded.cutout_by_id(2)
    assert first is not None and (first.cache_key, first.width, first.height) == ("a" * 64, 418, 512)
    assert second is not None and (second.cache_key, second.width, second.height) == ("c" * 64, 512, 400)
    assert first.sticker_path.endswith("a" * 64 + ".webp") and first.png_path.endswith("a" * 64 + ".png")
    assert upgraded.failed_text("d" * 64) == "no_face", "a PicWish state of schema 1 becomes its text"
    assert upgraded.key_for_file("U-done", CutoutOptions().api_key) == "a" * 64

    # Inline history, newest first, and the packs with what is in them.
    assert upgraded.recent_stickers(1001) == [(2, "CAAC-sticker-2"), (1, "CAAC-sticker-1")]
    assert upgraded.recent_stickers(1002) == [(1, "CAAC-sticker-3")]
    assert upgraded.sticker_file_id(1) == "CAAC-sticker-3"
    packs = upgraded.packs(1001)
    assert [(p.volume, p.name, p.title, p.count) for p in packs] == [
        (1, "cutouts_1001_by_cutout_test_bot", "Ada's cutouts", 2),
        (2, "cutouts_1001_2_by_cutout_test_bot", "Ada's cutouts (2)", 0),
    ]
    assert upgraded.pack_of_sticker(1001, 2) == "cutouts_1001_by_cutout_test_bot"

    # The new tables work on the upgraded database.
    settings = upgraded.chat_settings(1001)
    assert settings.options == CutoutOptions() and settings.emoji == "🙂"


def test_opening_an_upgraded_database_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    shutil.copy(V1, path)
    Store(path).close()
    again = Store(path)
    try:
        assert again.upgraded_from == SCHEMA_VERSION
        assert len(again.open_jobs()) == 2
    finally:
        again.close()


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew):
        Store(path)


def test_the_bot_refuses_a_newer_database_with_one_clear_line_and_exit_code_2(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "bot.sqlite3")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_"))}
    env.update(bot_env(telegram.url, picwish.url, data), PYTHONPATH=str(ROOT), ENV_FILE="")
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "bot.sqlite3 was made by a newer release" in done.stderr and "Traceback" not in done.stderr
