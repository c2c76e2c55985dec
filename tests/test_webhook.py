"""Webhook mode: Telegram posts updates with the secret header; anything without it is refused."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.conftest import USER
from tests.harness import BotProcess, astronaut_jpeg, bot_env
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

SECRET = "webhook-secret-0123456789abcdef"


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
