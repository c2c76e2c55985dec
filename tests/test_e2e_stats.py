"""/stats: an admin sees today's and the week's work and spend; nobody else does."""

from __future__ import annotations

import time
from pathlib import Path

from bot.storage import Store
from bot.storage.usage import API_TASKS, CUTOUTS, FAILURES, PHOTOS, usage_report
from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import ROOT, BotThread, bot_env, say, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram
from tests.test_e2e_languages import blank_jpeg

ADMIN = 3001
REGULAR = 777  # a user of three days ago, seeded in the database
GROUP = -100_777_000
DAY = 86400.0


def test_stats_gives_an_admin_today_the_week_failures_spend_and_busiest_users(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    telegram.add_user(ADMIN, "Admin")
    telegram.add_user(OTHER_USER, "Bo")
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", ADMIN_USER_IDS=str(ADMIN))
    seeded = Store(Path(env["DATA_DIR"]) / "bot.sqlite3")
    three_days_ago, ten_days_ago = time.time() - 3 * DAY, time.time() - 10 * DAY
    for _ in range(2):
        seeded.count(PHOTOS, str(REGULAR), at=three_days_ago)
        seeded.count(CUTOUTS, at=three_days_ago)
        seeded.count(API_TASKS, at=three_days_ago)
    seeded.count(FAILURES, "too_big", at=ten_days_ago)  # older than the week: not shown
    seeded.count(PHOTOS, str(OTHER_USER), at=ten_days_ago)
    seeded.close()

    with BotThread(env) as bot:
        service = bot.service
        for picture in (variant_jpeg(1), variant_jpeg(2), blank_jpeg()):
            telegram.send_photo(USER, picture)
        telegram.wait_for(lambda _: service.stats.answered + service.stats.failed == 3, timeout=30)
        telegram.send_photo(OTHER_USER, variant_jpeg(1))  # the same picture again: from the cache
        telegram.wait_for(lambda _: service.stats.answered + service.stats.failed == 4, timeout=30)

        answer = say(telegram, ADMIN, "/stats").params["text"]
        refused = say(telegram, USER, "/stats").params["text"]
        telegram.set_admin(GROUP, ADMIN)
        in_group = say(telegram, ADMIN, "/stats", chat_id=GROUP).params["text"]

    creates = len(picwish.creates())
    assert creates == 3, "two distinct photos and the faceless one; the repeat cost nothing"
    assert answer == text(
        "stats_answer",
        photos_today=4,
        photos_week=6,
        cutouts_today=3,
        cutouts_week=5,
        failures_today=1,
        failures_week=1,
        cache_today=1,
        cache_week=1,
        tasks_today=creates,
        tasks_week=creates + 2,
        reasons="no_face 1",
        users=f"{USER}: 3, {REGULAR}: 2, {OTHER_USER}: 1",
        waiting=0,
        working=0,
        open=0,
    )
    assert refused == text("stats_admins_only")
    assert in_group == text("stats_private"), "it names users: never in a group"
    menus = telegram.commands
    assert "stats" in [c["command"] for c in menus[f"chat:{ADMIN}/"]], "the admin's own menu has /stats"
    assert "stats" not in [c["command"] for c in menus["default/"]], "nobody else's does"
    assert "`/stats`" in (ROOT / "README.md").read_text()


def test_an_admin_who_never_opened_the_bot_does_not_stop_start_up(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    telegram.add_user(ADMIN, "Admin", started=False)
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", ADMIN_USER_IDS=str(ADMIN))
    with BotThread(env):
        assert "id" in [c["command"] for c in telegram.commands["default/"]]
        telegram.send_photo(USER, variant_jpeg(3))
        telegram.wait_for_call("sendDocument", timeout=30)
    refused = [c for c in telegram.calls_to("setMyCommands") if not c.ok]
    assert len(refused) == 1 and "chat not found" in (refused[0].error or "")


def test_usage_report_counts_utc_days_and_ranks_reasons_and_users(tmp_path: Path) -> None:
    store = Store(tmp_path / "bot.sqlite3")
    now = 1_764_633_600.0 + 60  # 2025-12-02 00:01 UTC
    just_before_midnight = now - 120  # yesterday, UTC
    store.count(PHOTOS, "5", at=now)
    store.count(PHOTOS, "6", at=just_before_midnight)
    store.count(PHOTOS, "6", at=now - 6 * DAY)  # the seventh day back still counts
    store.count(PHOTOS, "7", at=now - 7 * DAY)  # the eighth does not
    for reason in ("no_face", "no_face", "bad_image"):
        store.count(FAILURES, reason, at=now)

    report = usage_report(store, now=now)

    assert (report.today.photos, report.week.photos) == (1, 3)
    assert (report.today.failures, report.week.failures) == (3, 3)
    assert report.failures == [("no_face", 2), ("bad_image", 1)]
    assert report.busiest == [(6, 2), (5, 1)]
