"""Metrics and health: what a Prometheus scrape of /metrics and a probe of /healthz see, over real HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import ConfigError, load_settings
from bot.observability import Health
from bot.storage import Store
from tests.conftest import USER
from tests.harness import BOT_TOKEN, BotProcess, BotThread, astronaut_jpeg, bot_env
from tests.redis_server import NOT_INSTALLED, find_redis_server, running_redis_server
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metrics_env(env: dict[str, str], **extra: str) -> tuple[dict[str, str], str]:
    """The bot's environment with /metrics and /healthz on a free loopback port, and their base URL."""
    port = _free_port()
    metrics = {"METRICS_PORT": str(port), "METRICS_LISTEN": "127.0.0.1"}
    return {**env, **metrics, **extra}, f"http://127.0.0.1:{port}"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    """Every sample of /metrics, by name and labels."""
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_until(telegram: FakeTelegram, base: str, name: str, expected: float, **labels: str) -> Samples:
    """Scrape /metrics until ``name`` reaches ``expected`` (the bot counts after its last call)."""

    def reached(_: FakeTelegram) -> Samples | None:
        samples = scrape(base)
        return samples if value(samples, name, **labels) >= expected else None

    return telegram.wait_for(reached, timeout=20)


def test_metrics_count_a_photo_its_api_request_and_telegram_calls(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    metrics_env, base = _metrics_env(env)
    with BotThread(metrics_env):
        before = scrape(base)
        assert value(before, "cutout_photos_received_total") == 0
        assert value(before, "cutout_photos_answered_total") == 0
        assert ("cutout_queue_depth", frozenset()) in before

        telegram.send_photo(USER, astronaut_jpeg())
        telegram.wait_for_call("sendDocument", timeout=30)
        after = scrape_until(telegram, base, "cutout_photos_answered_total", 1)
        assert value(after, "cutout_photos_received_total") == 1
        assert value(after, "cutout_photos_failed_total", reason="no_face") == 0
        assert value(after, "cutout_api_requests_total", kind="create", status="200") == 1
        assert value(after, "cutout_api_request_duration_seconds_count", kind="create") == 1
        assert value(after, "cutout_qps_budget_starts_total") >= 1
        assert value(after, "cutout_telegram_calls_total", method="sendSticker") == 1
        assert value(after, "cutout_telegram_calls_total", method="sendDocument") == 1
        assert value(after, "cutout_queue_depth") == 0
        # No label carries a user's or a chat's id.
        labels = {v for (_, pairs) in after for _, v in pairs}
        assert str(USER) not in labels

        # The same photo again: answered from the cache, no API request.
        telegram.send_photo(USER, astronaut_jpeg())
        cached = scrape_until(telegram, base, "cutout_photos_answered_total", 2)
        assert value(cached, "cutout_cache_hits_total") == 1
        assert value(cached, "cutout_api_requests_total", kind="create", status="200") == 1


def test_metrics_count_api_errors_by_status_failures_by_reason_and_telegram_429s(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    metrics_env, base = _metrics_env(env)
    picwish.script(Outcome.http(500), Outcome.state(-14))  # a retried server error, then no face
    telegram.fail_next(
        "sendMessage", error_code=429, description="Too Many Requests: retry after 1", retry_after=1
    )
    with BotThread(metrics_env):
        telegram.send_photo(USER, astronaut_jpeg())
        # The failure's text is the first message to the chat: Telegram refuses it once, it goes again.
        scrape_until(telegram, base, "cutout_photos_failed_total", 1, reason="no_face")
        samples = scrape_until(telegram, base, "cutout_telegram_calls_total", 2, method="sendMessage")
        assert value(samples, "cutout_api_requests_total", kind="create", status="500") == 1
        assert value(samples, "cutout_api_requests_total", kind="create", status="200") == 1
        assert value(samples, "cutout_photos_answered_total") == 0
        assert value(samples, "cutout_telegram_rate_limited_total", method="sendMessage") == 1
        # The 429 was waited out and sent again: both attempts count as calls.
        assert value(samples, "cutout_telegram_calls_total", method="sendMessage") >= 2


def test_healthz_is_ok_while_redis_answers_and_503_once_it_stops(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    if find_redis_server() is None:
        pytest.skip(NOT_INSTALLED)
    with running_redis_server() as redis_url:
        metrics_env, base = _metrics_env(env, REDIS_URL=redis_url)
        bot = BotThread(metrics_env).start()
        try:
            ok = httpx.get(f"{base}/healthz", timeout=10)
            assert (ok.status_code, ok.text) == (200, "ok")
        except BaseException:
            bot.stop()
            raise
    try:
        down = httpx.get(f"{base}/healthz", timeout=10)
        assert (down.status_code, down.text) == (503, "redis")
        assert "redis://" not in down.text
    finally:
        bot.stop()


async def test_health_names_a_database_that_does_not_answer_and_a_stopped_bot(tmp_path: Path) -> None:
    store = Store(tmp_path / "bot.sqlite3")
    running = True
    health = Health(running=lambda: running, store=store, redis_url=None)
    assert await health.problem() is None
    running = False
    assert await health.problem() == "stopped"
    running = True
    store.close()
    assert await health.problem() == "database"
    await health.close()


def test_no_web_server_without_metrics_port(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env) as bot:
        assert "web" not in bot.app.bot_data


@pytest.mark.parametrize("raw", ["0", "65536", "http", "9100.5"])
def test_a_bad_metrics_port_stops_start_up_with_one_line(raw: str, tmp_path: Path) -> None:
    env = bot_env("http://127.0.0.1:1", "http://127.0.0.1:2", tmp_path, METRICS_PORT=raw)
    with pytest.raises(ConfigError) as caught:
        load_settings(env, dotenv=False)
    assert "METRICS_PORT" in str(caught.value) and "\n" not in str(caught.value)


def test_webhook_port_defaults_to_the_platforms_port(tmp_path: Path) -> None:
    webhook = {"WEBHOOK_URL": "https://bot.example.com/telegram", "WEBHOOK_SECRET": "s" * 32}
    env = {"TELEGRAM_BOT_TOKEN": BOT_TOKEN, "CUTOUT_BACKEND": "local", **webhook}
    assert load_settings(env, dotenv=False).webhook_port == 8080
    assert load_settings({**env, "PORT": "5123"}, dotenv=False).webhook_port == 5123
    assert load_settings({**env, "PORT": "5123", "WEBHOOK_PORT": "8443"}, dotenv=False).webhook_port == 8443
    assert load_settings(env, dotenv=False).metrics_port is None


def test_a_metrics_port_in_use_stops_start_up_with_one_line(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = BotProcess({**env, "METRICS_PORT": str(port), "METRICS_LISTEN": "127.0.0.1"}, tmp_path)
        try:
            assert bot.wait(timeout=30) == 2
        finally:
            bot.close()
    assert f"configuration error: cannot listen on 127.0.0.1:{port}" in bot.output
    assert "set METRICS_PORT to a free port" in bot.output
    assert "Traceback" not in bot.output
