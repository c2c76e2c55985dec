"""Webhook mode: Telegram posts updates with the secret header; anything without it is refused, and
refused before its body is read."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import USER
from tests.harness import BotProcess, astronaut_jpeg, bot_env
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

SECRET = "webhook-secret-0123456789abcdef"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
PATH = "/telegram-updates"
MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_webhook_mode_answers_photos_and_refuses_requests_without_the_secret(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram-updates"
    env = bot_env(
        telegram.url,
        picwish.url,
        tmp_path / "data",
        WEBHOOK_URL=url,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
    )
    bot = BotProcess(env, tmp_path)
    try:
        set_webhook = telegram.wait_for_call("setWebhook", timeout=30)[0]
        assert set_webhook.params["url"] == url
        assert set_webhook.params["secret_token"] == SECRET

        forged = httpx.post(url, json={"update_id": 1, "message": {}}, timeout=10)
        assert forged.status_code == 403
        wrong = httpx.post(url, json={"update_id": 1}, headers={SECRET_HEADER: SECRET[:-1] + "0"}, timeout=10)
        assert wrong.status_code == 403
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert (health.status_code, health.text) == (200, "ok")

        telegram.send_photo(USER, astronaut_jpeg())
        telegram.wait_for_call("sendSticker", timeout=30)
        telegram.wait_for_call("sendDocument", timeout=30)
        assert not telegram.calls_to("getUpdates")
        assert not telegram.webhook_errors

        bot.terminate()
        assert bot.wait(timeout=10) == 0
    finally:
        bot.close()
    assert SECRET not in bot.output


@dataclass
class WebhookBot:
    process: BotProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def rss(self) -> int:
        return int(psutil.Process(self.process.proc.pid).memory_info().rss)


@pytest.fixture
def webhook_bot(telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path) -> Iterator[WebhookBot]:
    """``python -m bot`` in webhook mode on a free loopback port, its webhook registered."""
    port = _free_port()
    env = bot_env(
        telegram.url,
        picwish.url,
        tmp_path / "data",
        WEBHOOK_URL=f"http://127.0.0.1:{port}{PATH}",
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
    )
    bot = BotProcess(env, tmp_path)
    try:
        telegram.wait_for_call("setWebhook", timeout=30)
        yield WebhookBot(bot, port)
        bot.terminate()
        assert bot.wait(timeout=10) == 0
    finally:
        bot.close()
    assert SECRET not in bot.output


def _start_update(update_id: int) -> dict[str, object]:
    user = {"id": USER, "is_bot": False, "first_name": "Webhook"}
    message = {
        "message_id": 7001,
        "date": int(time.time()),
        "chat": {"id": USER, "type": "private", "first_name": "Webhook"},
        "from": user,
        "text": "/start",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    }
    return {"update_id": update_id, "message": message}


def test_an_update_with_the_secret_gets_200_and_is_handled(
    telegram: FakeTelegram, webhook_bot: WebhookBot
) -> None:
    answer = httpx.post(
        webhook_bot.url, json=_start_update(90001), headers={SECRET_HEADER: SECRET}, timeout=10
    )
    assert answer.status_code == 200

    greeted = telegram.wait_for_call("sendMessage", where=lambda c: "Webhook" in str(c.params.get("text")))
    assert int(greeted[0].params["chat_id"]) == USER
    metrics = httpx.get(f"http://127.0.0.1:{webhook_bot.port}/metrics", timeout=10).text
    assert 'cutout_webhook_requests_total{status="200"}' in metrics


def _post_head_first(port: int, headers: dict[str, str], body_bytes: int) -> tuple[int, int]:
    """POST a ``body_bytes`` body the way a client streams one: send the head, read the answer the
    server gives before the body, then offer the body. Returns the status and how many body bytes
    the socket took before the server closed the connection."""
    head = [
        f"POST {PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {body_bytes}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n" not in answer and len(answer) < 4096:
            received = sock.recv(4096)
            assert received, "the server closed the connection without an answer"
            answer += received
        status = int(answer.split(b" ", 2)[1])
        chunk = b" " * (256 * 1024)
        sent = 0
        try:
            while sent < body_bytes:
                sent += sock.send(chunk[: body_bytes - sent])
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server: what a refusal should do
        # A socket.timeout here would mean the server neither read the body nor closed: it fails the test.
    return status, sent


@pytest.mark.parametrize(
    "headers", [{}, {SECRET_HEADER: "not-the-secret-0123456789"}], ids=["missing secret", "wrong secret"]
)
def test_a_request_without_the_secret_is_refused_before_its_50mb_body_is_read(
    webhook_bot: WebhookBot, headers: dict[str, str]
) -> None:
    before = webhook_bot.rss()
    status, sent = _post_head_first(webhook_bot.port, headers, 50 * MB)
    assert status == 403
    grown = webhook_bot.rss() - before
    print(f"wrong secret, 50 MB body: 403, {sent >> 10} KB taken by the server, RSS +{grown / MB:.1f} MB")
    assert sent < 10 * MB, f"the server took {sent} bytes of a refused body"
    assert grown < 20 * MB

    # Still serving: a forged request costs nothing lasting.
    assert httpx.get(f"http://127.0.0.1:{webhook_bot.port}/healthz", timeout=10).status_code == 200


def test_an_update_over_1mb_gets_413(webhook_bot: WebhookBot) -> None:
    # Declared too large: refused from its Content-Length, the body never read.
    status, sent = _post_head_first(webhook_bot.port, {SECRET_HEADER: SECRET}, 2 * MB)
    assert status == 413
    assert sent < 2 * MB

    # Sent without a length (chunked): the read stops at 1 MB.
    def chunks() -> Iterator[bytes]:
        for _ in range(32):
            yield b" " * (64 * 1024)

    with httpx.Client(timeout=10) as client:
        answer = client.post(webhook_bot.url, content=chunks(), headers={SECRET_HEADER: SECRET})
    assert answer.status_code == 413
