"""A full disk, injected while photos are in flight: no photo lost, none paid twice, the user told the truth.

DATA_DIR sits on a small tmpfs mounted for the test (root only; skipped with the reason otherwise), and a
filler file takes its free space away, as another program filling the disk would.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.storage import Store
from bot.texts import text
from tests.conftest import USER
from tests.harness import API_KEY, BotThread, bot_env, next_message, variant_jpeg
from tests.mounts import tmpfs
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

ADMIN = 3001
DISK_MB = 24


class SmallDisk:
    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler"

    def fill(self, leave: int = 0) -> None:
        """Take the free space away, leaving ``leave`` bytes (0: every write fails)."""
        with self.filler.open("ab") as out:
            while (free := shutil.disk_usage(self.mount).free) > leave:
                try:
                    out.write(b"\0" * min(free - leave, 1 << 20))
                    out.flush()
                except OSError:
                    break

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with tmpfs(tmp_path / "disk", DISK_MB) as mount:
        yield SmallDisk(mount)


def admin_texts(telegram: FakeTelegram) -> list[str]:
    return [c.params["text"] for c in telegram.calls_to("sendMessage") if int(c.params["chat_id"]) == ADMIN]


def test_a_full_disk_pauses_intake_with_a_busy_reply_and_no_api_call_then_resumes_by_itself(
    telegram: FakeTelegram, picwish: FakePicWish, disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.add_user(ADMIN, "Admin")
    env = bot_env(
        telegram.url, picwish.url, disk.mount / "data", DISK_MIN_FREE_MB="4", ADMIN_USER_IDS=str(ADMIN)
    )
    with caplog.at_level(logging.ERROR), BotThread(env) as bot:
        disk.fill(leave=2 << 20)
        for n in (1, 2):
            reply = next_message(telegram, USER, lambda n=n: telegram.send_photo(USER, variant_jpeg(n)))
            assert reply.params["text"] == text("disk_full")
        assert picwish.creates() == [], "no API call while the disk is full"
        telegram.wait_for(lambda t: any("is full" in m for m in admin_texts(t)), timeout=10)

        disk.free_up()
        telegram.wait_for(lambda t: any("room again" in m for m in admin_texts(t)), timeout=30)
        telegram.send_photo(USER, variant_jpeg(1))
        telegram.wait_for_call("sendDocument", timeout=30)
        stats = bot.service.stats

    full_lines = [r for r in caplog.records if "the disk under DATA_DIR is full" in r.getMessage()]
    assert len(full_lines) == 1, "one ERROR line per incident, not one per photo"
    assert API_KEY not in caplog.text
    assert (stats.accepted, stats.answered, stats.failed) == (1, 1, 0)
    assert len(picwish.creates()) == 1


def test_cutouts_paid_for_while_the_disk_fills_are_answered_from_memory_and_written_once_there_is_room(
    telegram: FakeTelegram, disk: SmallDisk
) -> None:
    telegram.add_user(ADMIN, "Admin")
    photos = 4
    picwish = FakePicWish(API_KEY, qps=2, latency=4.0)  # long enough to fill the disk meanwhile
    picwish.start()
    try:
        env = bot_env(
            telegram.url, picwish.url, disk.mount / "data", DISK_MIN_FREE_MB="1", ADMIN_USER_IDS=str(ADMIN)
        )
        data = Path(env["DATA_DIR"])
        with BotThread(env) as bot:
            for n in range(photos):
                telegram.send_photo(USER, variant_jpeg(10 + n))
            picwish.wait_for(lambda: len(picwish.creates()) == photos, timeout=20)
            disk.fill(leave=0)  # every write from now on fails: the results, the renders, the database

            telegram.wait_for_call("sendDocument", count=photos, timeout=60)
            stickers = telegram.wait_for_call("sendSticker", count=photos, timeout=30)
            assert all(call.ok for call in stickers)
            telegram.wait_for(lambda t: any("is full" in m for m in admin_texts(t)), timeout=10)

            disk.free_up()
            telegram.wait_for(lambda t: any("room again" in m for m in admin_texts(t)), timeout=30)
            telegram.send_photo(USER, variant_jpeg(10))  # the same picture again: from the written cache
            telegram.wait_for_call("sendDocument", count=photos + 1, timeout=30)
            stats = bot.service.stats
        creates = len(picwish.creates())
    finally:
        picwish.stop()

    accepted, answered, lost = stats.accepted, stats.answered, stats.accepted - stats.answered
    print(f"full disk: accepted {accepted}, answered {answered}, lost {lost}, paid twice {creates - photos}")
    assert (accepted, answered, lost, stats.failed) == (photos + 1, photos + 1, 0, 0)
    assert creates == photos, "nothing paid twice, and the repeat came from the cache written after"
    assert len(list((data / "results").rglob("*.png"))) == photos, "the held results were written"
    store = Store(data / "bot.sqlite3")
    try:
        assert store.open_jobs() == [], "every job's answer was recorded once there was room"
    finally:
        store.close()
