"""The bot token and the API key never show: not in a log line at any level, a message or an exception text.

Proved by running the bot at DEBUG through success and failure paths (a rejected key, Telegram errors,
connection resets) and searching everything it wrote, as ``python -m bot`` and in-process.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.logsetup import REDACTED
from bot.texts import text
from tests.conftest import USER
from tests.harness import API_KEY, BOT_TOKEN, BotProcess, BotThread, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram

ADMIN = 1003


def secret_forms(*secrets: str) -> list[str]:
    """Each secret as written, percent-encoded, and (for the token) the part after the bot id."""
    forms: list[str] = []
    for secret in secrets:
        forms += [secret, quote(secret, safe="")]
        if ":" in secret:
            forms.append(secret.split(":", 1)[1])
    return forms


SECRETS = secret_forms(BOT_TOKEN, API_KEY)


def assert_clean(where: str, haystack: str) -> None:
    leaked = [s for s in SECRETS if s in haystack]
    assert not leaked, f"{where} contains a secret"


def user_texts(telegram: FakeTelegram) -> str:
    """Everything the bot sent to any chat: texts, captions, buttons."""
    return "\n".join(str(call.params) for call in telegram.calls)


def drive_failures(telegram: FakeTelegram, picwish: FakePicWish) -> None:
    """Success, a rejected key, resets, malformed answers, Telegram 500/429/400: each user-visible."""
    telegram.add_user(ADMIN, "Admin")
    telegram.send_photo(USER, variant_jpeg(1))
    telegram.wait_for_call("sendDocument", timeout=20)

    picwish.script(Outcome.http(401))
    telegram.send_photo(USER, variant_jpeg(2))
    telegram.wait_for(
        lambda t: any(m.get("text") == text("service_unavailable") for m in t.messages_in(USER)), 20
    )
    telegram.wait_for_call("sendMessage", where=lambda c: c.decoded["chat_id"] == ADMIN)

    picwish.script(Outcome.reset(), Outcome.malformed())
    telegram.fail_next("sendSticker", error_code=500, description="Internal Server Error")
    telegram.fail_next(
        "sendDocument", error_code=429, description="Too Many Requests: retry after 1", retry_after=1
    )
    telegram.send_photo(USER, variant_jpeg(3))
    telegram.wait_for_call("sendDocument", count=2, timeout=30, where=lambda c: bool(c.ok))

    telegram.fail_next(
        "getFile", error_code=400, description="Bad Request: wrong file identifier/HTTP URL specified"
    )
    telegram.send_photo(USER, variant_jpeg(4))
    telegram.wait_for(lambda t: any(m.get("text") == text("error_generic") for m in t.messages_in(USER)), 20)

    telegram.fail_next("sendMessage", error_code=400, description="Bad Request: chat not found")
    telegram.send_text(USER, "hello")  # the handler's reply fails: the global error handler logs it
    telegram.wait_for(
        lambda t: [m.get("text") for m in t.messages_in(USER)].count(text("error_generic")) == 2, 20
    )


def test_python_m_bot_at_debug_never_prints_a_secret(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", LOG_LEVEL="DEBUG", ADMIN_USER_IDS=str(ADMIN))
    bot = BotProcess(env, tmp_path)
    try:
        drive_failures(telegram, picwish)
        bot.terminate()
        assert bot.wait(timeout=10) == 0
        output = bot.output
    finally:
        bot.close()
    assert REDACTED in output, "the token was on its way into the log and was caught"
    assert "DEBUG" in output and "Traceback" in output, "the failure paths were logged in full"
    assert_clean("the bot's output", output)
    assert_clean("what users were sent", user_texts(telegram))


def test_a_rejected_bot_token_is_not_printed(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    wrong = "987654321:WRONG-token_abcdefghijklmnopqrstuv"
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", TELEGRAM_BOT_TOKEN=wrong, LOG_LEVEL="DEBUG")
    bot = BotProcess(env, tmp_path)
    try:
        assert bot.wait(timeout=30) == 2
        output = bot.output
    finally:
        bot.close()
    assert "Telegram rejected TELEGRAM_BOT_TOKEN" in output
    assert not [s for s in secret_forms(wrong) if s in output]


def test_in_process_logs_at_debug_hold_no_secret(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", ADMIN_USER_IDS=str(ADMIN))
    with BotThread(env):
        drive_failures(telegram, picwish)

    records = caplog.records
    assert any(r.name == "httpx" for r in records), "httpx logged its request URLs, which carry the token"
    assert any(r.levelno == logging.DEBUG for r in records) and any(r.exc_info for r in records)
    assert REDACTED in caplog.text
    assert_clean("the captured log", caplog.text)
    for record in records:
        assert_clean(f"a {record.name} record", record.getMessage() + (record.exc_text or ""))
        if record.exc_info and record.exc_info[1] is not None:
            # The exception objects themselves, their causes included, not just the redacted text.
            assert_clean(
                f"an exception logged by {record.name}",
                "".join(traceback.format_exception(record.exc_info[1])),
            )
    assert_clean("what users were sent", user_texts(telegram))
