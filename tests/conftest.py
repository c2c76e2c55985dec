"""Shared fixtures: the two stand-ins on free loopback ports, and the environment the bot reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import API_KEY, BOT_TOKEN, bot_env
from tests.redis_server import NOT_INSTALLED, RedisServer, find_redis_server, running_redis_server
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

USER = 1001
OTHER_USER = 1002


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(BOT_TOKEN)
    fake.start()
    fake.add_user(USER, "Ada")
    fake.add_user(OTHER_USER, "Grace")
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def picwish() -> Iterator[FakePicWish]:
    fake = FakePicWish(API_KEY, qps=2, latency=0.05)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def env(telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path) -> dict[str, str]:
    return bot_env(telegram.url, picwish.url, tmp_path / "data")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port, one per test module."""
    if find_redis_server() is None:
        pytest.skip(NOT_INSTALLED)
    with running_redis_server() as url:
        yield url


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Makes redis-servers a test starts, stops and starts again on one port; each is created stopped
    (``password=`` to require one) and stopped at the end."""
    if find_redis_server() is None:
        pytest.skip(NOT_INSTALLED)
    made: list[RedisServer] = []

    def make(*, password: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path, password=password)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()
