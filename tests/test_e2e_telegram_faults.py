"""Telegram-side faults over the real bot: sends are retried, errors are told, and the bot keeps going.

RetryAfter, 5xx and network trouble on sending are retried; a 4xx is final. A handler that raises
reaches the global error handler, which logs it and tells the user; a user who blocked the bot costs
one attempt per answer and never stops the workers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import API_KEY, BotThread, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import Call, FakeTelegram

BLOCKED = "Forbidden: bot was blocked by the user"


def ok_calls(telegram: FakeTelegram, method: str, chat_id: int = USER) -> list[Call]:
    return [c for c in telegram.calls_to(method) if c.ok and c.decoded["chat_id"] == chat_id]


def bot_texts(telegram: FakeTelegram, chat_id: int = USER) -> list[str]:
    return [m["text"] for m in telegram.messages_in(chat_id) if "text" in m]


@pytest.mark.parametrize("method", ["sendSticker", "sendDocument"])
@pytest.mark.parametrize(
    ("error_code", "description", "retry_after"),
    [
        (429, "Too Many Requests: retry after 1", 1),
        (500, "Internal Server Error", None),
        (502, "Bad Gateway", None),
    ],
    ids=["retry-after", "500", "502"],
)
def test_a_failed_send_is_retried_and_delivered_once(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    env: dict[str, str],
    method: str,
    error_code: int,
    description: str,
    retry_after: int | None,
) -> None:
    telegram.fail_next(method, error_code=error_code, description=description, retry_after=retry_after)
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(1))
        telegram.wait_for(lambda t: ok_calls(t, "sendDocument"), 20)
    calls = telegram.calls_to(method)
    assert [c.ok for c in calls] == [False, True]
    if retry_after:
        assert calls[1].at - calls[0].at >= retry_after, "waited as long as Telegram asked"
    assert len(ok_calls(telegram, "sendSticker")) == 1 and len(ok_calls(telegram, "sendDocument")) == 1
    assert bot_texts(telegram) == []  # no error was shown: the status message gave way to the result


def test_a_handler_that_raises_is_logged_and_the_user_told(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="handlers.errors")
    with BotThread(env):
        # The hint's reply fails: the handler raises and the update ends in the global error handler.
        telegram.fail_next("sendMessage", error_code=500, description="Internal Server Error")
        telegram.send_text(USER, "hello")
        telegram.wait_for(lambda t: text("error_generic") in bot_texts(t), 20)
        # One bad update never stops the bot: the next photo is answered as usual.
        telegram.send_photo(USER, variant_jpeg(2))
        telegram.wait_for(lambda t: ok_calls(t, "sendDocument"), 20)
    (record,) = [r for r in caplog.records if r.name == "handlers.errors"]
    assert f"chat {USER}" in record.getMessage() and f"user {USER}" in record.getMessage()
    assert record.exc_info is not None, "logged with the traceback"
    assert [c.params["text"] for c in ok_calls(telegram, "sendMessage")].count(text("error_generic")) == 1


def test_a_photo_telegram_will_not_hand_over_gets_an_apology(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    telegram.fail_next(
        "getFile", error_code=400, description="Bad Request: wrong file identifier/HTTP URL specified"
    )
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(3))
        telegram.wait_for(lambda t: text("error_generic") in bot_texts(t), 20)
    assert picwish.requests == []


def test_a_user_who_blocked_the_bot_never_stops_the_workers(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    photos = 8  # more than the workers there are, so a worker lost per photo would leave none
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", USER_MAX_PENDING=str(photos))
    # The user blocks the bot once their photos are in: the answer and the apology are both refused.
    telegram.fail_next("sendSticker", error_code=403, description=BLOCKED, count=photos)
    telegram.fail_next("sendMessage", error_code=403, description=BLOCKED, count=1000)
    with BotThread(env) as bot:
        for seed in range(photos):
            telegram.send_photo(USER, variant_jpeg(10 + seed))
        telegram.wait_for(
            lambda t: len([c for c in t.calls_to("sendSticker") if c.error == BLOCKED]) == photos, 30
        )
        telegram.wait_for(lambda _: bot.service.pending(USER) == 0, 10)

        telegram.send_photo(OTHER_USER, variant_jpeg(30))
        telegram.wait_for(lambda t: ok_calls(t, "sendDocument", OTHER_USER), 20)
    # One attempt per answer (a 403 is final), and no answer left open to be tried again at restart.
    assert len(telegram.calls_to("sendSticker")) == photos + 1
    assert not ok_calls(telegram, "sendDocument")


def test_answers_wait_while_telegram_is_unreachable_and_go_out_once_each_when_it_is_back(
    telegram: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    photos = 3
    picwish = FakePicWish(API_KEY, qps=2, latency=3.0)  # the cutouts are at the API when Telegram goes away
    picwish.start()
    try:
        with caplog.at_level(logging.WARNING), BotThread(bot_env(telegram.url, picwish.url, tmp_path / "data")) as bot:
            sent = [telegram.send_photo(USER, variant_jpeg(40 + n)) for n in range(photos)]
            picwish.wait_for(lambda: len(picwish.creates()) == photos, timeout=20)
            telegram.go_offline()
            # Unreachable: the answers must wait in line, not fail.
            deadline = time.monotonic() + 60
            while "the chat side is unreachable" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "the chat side is unreachable" in caplog.text
            telegram.come_back()
            stickers = telegram.wait_for_call("sendSticker", count=photos, timeout=60)
            telegram.wait_for_call("sendDocument", count=photos, timeout=30)
            later = telegram.send_photo(USER, variant_jpeg(50))  # polling resumed by itself
            telegram.wait_for_call("sendDocument", count=photos + 1, timeout=60)
            stats = bot.service.stats
        creates = len(picwish.creates())
    finally:
        picwish.stop()

    answered_to = [c.decoded["reply_parameters"]["message_id"] for c in ok_calls(telegram, "sendSticker")]
    print(f"telegram unreachable: accepted {stats.accepted}, answered {stats.answered}, "
          f"lost {stats.accepted - stats.answered}, paid twice {creates - photos - 1}")
    assert sorted(answered_to) == sorted(m["message_id"] for m in [*sent, later]), "each photo answered once"
    assert [c.decoded["reply_parameters"]["message_id"] for c in stickers] == [m["message_id"] for m in sent]
    assert (stats.accepted, stats.answered, stats.failed) == (photos + 1, photos + 1, 0)
    assert creates == photos + 1, "nothing paid twice"
