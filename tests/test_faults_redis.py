"""Redis, which shares the PicWish QPS budget, down at start-up or restarted during the day: no photo
fails, the photos wait in line (their status says so), the log names the Redis once without its
password, and everything is answered once Redis is back, with no restart and nothing paid twice.

A real redis-server on a fixed port, stopped and started again (skipped with the reason when
redis-server is not installed), the real bot over real HTTP, and the Telegram and PicWish stand-ins.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.texts import text
from tests.conftest import USER
from tests.harness import BotThread, in_chat, variant_jpeg
from tests.redis_server import RedisServer
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

PASSWORD = "s3cret"
IN_LINE = re.compile(r"#\d+ in line")
FAILURE_TEXTS = ("Something went wrong", text("error_generic"), text("api_failed_brief"))

RedisServers = Callable[..., RedisServer]


def texts_to_user(telegram: FakeTelegram) -> list[str]:
    """Every text the bot sent or edited into the user's chat, in order."""
    return [
        str(c.params.get("text", ""))
        for c in telegram.calls
        if c.method in ("sendMessage", "editMessageText") and in_chat(USER)(c)
    ]


def shown_in_line(telegram: FakeTelegram) -> int:
    """The most photos the user's status message said were waiting in line (one message speaks for the
    photos a user sends one by one)."""
    counts = [0]
    for c in telegram.calls:
        if c.method in ("sendMessage", "editMessageText") and c.ok and in_chat(USER)(c):
            text = str(c.params.get("text", ""))
            if IN_LINE.search(text):
                photos = re.search(r"(\d+) photos", text)
                counts.append(int(photos.group(1)) if photos else 1)
    return max(counts)


def answers(telegram: FakeTelegram, method: str) -> int:
    return len([c for c in telegram.calls_to(method) if c.ok and in_chat(USER)(c)])


def wait_answered(telegram: FakeTelegram, bot: BotThread, count: int, timeout: float = 60.0) -> None:
    """Until ``count`` photos got their sticker and PNG, and the service has counted them answered."""
    telegram.wait_for(
        lambda t: answers(t, "sendSticker") >= count
        and answers(t, "sendDocument") >= count
        and bot.service.stats.answered >= count,
        timeout=timeout,
    )


def assert_nothing_failed(telegram: FakeTelegram, bot: BotThread) -> None:
    said = texts_to_user(telegram)
    assert not [t for t in said if any(failure in t for failure in FAILURE_TEXTS)], said
    assert bot.service.stats.failed == 0


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_redis_down_at_start_photos_wait_in_line_and_are_answered_once_it_starts(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    env: dict[str, str],
    redis_servers: RedisServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_servers(password=PASSWORD)  # created stopped: its port refuses connections
    shown = f"redis://:***@127.0.0.1:{server.port}/0"
    with caplog.at_level(logging.DEBUG), BotThread({**env, "REDIS_URL": server.url}) as bot:
        for seed in range(3):
            telegram.send_photo(USER, variant_jpeg(100 + seed))
        telegram.wait_for(lambda t: shown_in_line(t) == 3, timeout=30)
        time.sleep(1.0)  # Redis stays down a while longer: nothing may fail, nothing may start
        assert picwish.creates() == []
        assert answers(telegram, "sendDocument") == 0
        assert_nothing_failed(telegram, bot)

        server.start()  # the same port, now with the password the URL carries
        wait_answered(telegram, bot, 3)
        assert_nothing_failed(telegram, bot)
        stats = bot.service.stats

    named = [line for line in messages(caplog) if shown in line]
    assert len(named) == 1, named
    assert "unreachable" in named[0] and "wait" in named[0]
    assert not [line for line in messages(caplog) if PASSWORD in line]
    assert PASSWORD not in caplog.text
    assert len(picwish.creates()) == 3
    assert (stats.accepted, stats.answered, stats.failed) == (3, 3, 0)


def test_redis_restarted_during_the_day_loses_and_repays_nothing(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    env: dict[str, str],
    redis_servers: RedisServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_servers()
    server.start()
    photos = 6
    with caplog.at_level(logging.INFO), BotThread({**env, "REDIS_URL": server.url}) as bot:
        for seed in range(2):
            telegram.send_photo(USER, variant_jpeg(200 + seed))
        wait_answered(telegram, bot, 2)

        server.stop()
        for seed in range(2, photos):
            telegram.send_photo(USER, variant_jpeg(200 + seed))
        telegram.wait_for(lambda t: bot.service.stats.accepted == photos and shown_in_line(t) >= 4, timeout=30)
        time.sleep(2.0)  # Redis stays down a few seconds
        assert len(picwish.creates()) == 2, "no API request while Redis, which holds the budget, is down"
        assert_nothing_failed(telegram, bot)

        server.start()  # the same port, empty: the shared budget starts afresh
        wait_answered(telegram, bot, photos)
        assert_nothing_failed(telegram, bot)
        stats: Any = bot.service.stats

    creates = len(picwish.creates())
    accepted, answered = stats.accepted, stats.answered
    print(
        f"redis restart: accepted {accepted}, answered {answered}, lost {accepted - answered}, "
        f"paid twice {creates - photos}"
    )
    assert (accepted, answered, stats.failed) == (photos, photos, 0)
    assert creates == photos
    down = [r for r in caplog.records if "is unreachable" in r.getMessage()]
    assert [r.levelno for r in down] == [logging.WARNING], "one line when Redis goes, not one per photo"
    assert f"Redis at {server.url} is unreachable" in down[0].getMessage()
    assert len([line for line in messages(caplog) if "Redis answers again" in line]) == 1
