"""Restarts lose nothing: ``python -m bot`` killed or stopped mid-queue, then started on the same DATA_DIR.

Every photo the bot accepted gets exactly one answer across both runs, counted the way the user sees
it: stickers and PNGs sent in reply to each original message.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.texts import text
from tests.conftest import USER
from tests.harness import BotProcess, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram

SLOW = 30.0  # API latency while the first run is stopped: nothing it started can finish


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(telegram: FakeTelegram, picwish: FakePicWish, data_dir: Path) -> dict[str, str]:
    return bot_env(telegram.url, picwish.url, data_dir, USER_MAX_PENDING="20", USER_PER_MINUTE="100")


@contextlib.contextmanager
def running(env: dict[str, str], workdir: Path) -> Iterator[BotProcess]:
    bot = BotProcess(env, workdir)
    try:
        yield bot
    finally:
        bot.close()


def answers(telegram: FakeTelegram, method: str) -> Counter[int]:
    """How many successful ``method`` calls replied to each of the user's messages."""
    return Counter(
        c.decoded["reply_parameters"]["message_id"]
        for c in telegram.calls_to(method)
        if c.ok and c.decoded["chat_id"] == USER
    )


def open_jobs(data_dir: Path) -> dict[int, str]:
    """message_id -> state of every job SQLite holds as not yet answered."""
    uri = f"file:{data_dir / 'bot.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT message_id, state FROM jobs WHERE state NOT IN ('done', 'failed')")
        return {int(message_id): str(state) for message_id, state in rows}


def wait_for_answers(telegram: FakeTelegram, message_ids: list[int], timeout: float = 40) -> None:
    telegram.wait_for(
        lambda t: all(answers(t, "sendSticker")[m] and answers(t, "sendDocument")[m] for m in message_ids),
        timeout,
    )


def assert_answered_exactly_once(telegram: FakeTelegram, message_ids: list[int]) -> None:
    stickers, pngs = answers(telegram, "sendSticker"), answers(telegram, "sendDocument")
    assert {m: (stickers[m], pngs[m]) for m in message_ids} == {m: (1, 1) for m in message_ids}


def stop_and_wait(bot: BotProcess) -> None:
    """SIGTERM, then the exit: after it the bot can send nothing more, so counts are final."""
    bot.terminate()
    assert bot.wait(timeout=10) == 0


def test_sigkill_mid_queue_then_restart_answers_every_photo_exactly_once(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    with running(env, tmp_path) as first:
        done = telegram.send_photo(USER, variant_jpeg(100))["message_id"]
        wait_for_answers(telegram, [done])
        picwish.script(Outcome.state(-14))
        no_face = telegram.send_photo(USER, variant_jpeg(101))["message_id"]
        telegram.wait_for(lambda t: any(m.get("text") == text("no_face") for m in t.messages_in(USER)))

        picwish.set_latency(SLOW)
        queued = [telegram.send_photo(USER, variant_jpeg(110 + i))["message_id"] for i in range(9)]
        # Mid-queue: some photos are at the API, the others wait in line for a worker.
        picwish.wait_for(lambda: len(picwish.creates()) >= 2 + 4, timeout=20)
        telegram.wait_for(
            lambda _: sorted(open_jobs(data_dir)) == queued and "queued" in open_jobs(data_dir).values()
        )
        first.kill()
        first.wait()
    states = open_jobs(data_dir)
    assert set(states.values()) >= {"working", "queued"}, states

    picwish.set_latency(0.05)
    with running(env, tmp_path) as second:
        wait_for_answers(telegram, queued)
        stop_and_wait(second)

    assert_answered_exactly_once(telegram, [done, *queued])
    assert answers(telegram, "sendSticker")[no_face] == 0
    no_face_texts = [m for m in telegram.messages_in(USER) if m.get("text") == text("no_face")]
    assert len(no_face_texts) == 1, "an answered failure is not answered again"
    assert open_jobs(data_dir) == {}


def test_sigterm_exits_within_10_s_and_the_unfinished_photos_are_answered_after_restart(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    picwish.set_latency(SLOW)
    with running({**env, "STOP_GRACE_SECONDS": "5"}, tmp_path) as first:
        in_flight = [telegram.send_photo(USER, variant_jpeg(200 + i))["message_id"] for i in range(4)]
        picwish.wait_for(lambda: len(picwish.creates()) == 4, timeout=20)
        started = time.monotonic()
        first.terminate()
        late = telegram.send_photo(USER, variant_jpeg(210))["message_id"]  # arrives while it stops
        assert first.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        assert "left unanswered for the next start" in first.output
    assert set(open_jobs(data_dir)) >= set(in_flight)
    assert not answers(telegram, "sendSticker")

    picwish.set_latency(0.05)
    with running(env, tmp_path) as second:
        wait_for_answers(telegram, [*in_flight, late])
        stop_and_wait(second)
    assert_answered_exactly_once(telegram, [*in_flight, late])


def test_sigterm_waits_for_cutouts_already_requested_so_none_is_paid_twice(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    picwish.set_latency(10.0)  # each cutout takes 10 s at the API: longer than any short grace
    with running(env, tmp_path) as first:
        photos = [telegram.send_photo(USER, variant_jpeg(220 + i))["message_id"] for i in range(4)]
        picwish.wait_for(lambda: len(picwish.creates()) == 4, timeout=20)
        stopping = time.monotonic()
        first.terminate()
        assert first.wait(timeout=40) == 0  # within STOP_GRACE_SECONDS (30) and its shutdown
        print(f"SIGTERM with 4 cutouts of 10 s at the API: exited 0 after {time.monotonic() - stopping:.1f} s")
    # The cutouts already requested were received, stored and answered before the exit.
    assert_answered_exactly_once(telegram, photos)
    assert not open_jobs(data_dir)
    polls = len(telegram.calls_to("getUpdates"))
    with running(env, tmp_path) as second:
        telegram.wait_for_call("getUpdates", count=polls + 1, timeout=30)
        stop_and_wait(second)
    assert_answered_exactly_once(telegram, photos)
    print(f"answered {len(photos)} of {len(photos)}, API creates {len(picwish.creates())}")
    assert len(picwish.creates()) == 4, "every cutout paid for once"


def test_killed_while_the_api_works_on_a_task_resumes_that_task_instead_of_paying_again(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    picwish.set_latency(6.0)
    picwish.script(Outcome.processing())  # the sync create answers "still working": the bot polls the task
    with running(env, tmp_path) as first:
        photo = telegram.send_photo(USER, variant_jpeg(240))["message_id"]
        picwish.wait_for(lambda: len(picwish.queries()) >= 1, timeout=20)
        first.kill()
        first.wait()
    uri = f"file:{data_dir / 'bot.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        (task_id,) = db.execute("SELECT task_id FROM jobs WHERE message_id = ?", (photo,)).fetchone()
    assert task_id == picwish.creates()[0].task_id, "the task id was kept"
    with running(env, tmp_path) as second:
        wait_for_answers(telegram, [photo])
        stop_and_wait(second)
    assert_answered_exactly_once(telegram, [photo])
    assert len(picwish.creates()) == 1, "the restart waited for the same task"


def test_killed_between_sticker_and_png_sends_only_the_png_after_restart(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    # Telegram holds the PNG back for 30 s: the bot is caught with the sticker sent and the PNG not.
    telegram.fail_next(
        "sendDocument", error_code=429, description="Too Many Requests: retry after 30", retry_after=30
    )
    with running(env, tmp_path) as first:
        photo = telegram.send_photo(USER, variant_jpeg(300))["message_id"]
        telegram.wait_for_call("sendDocument", timeout=20)
        assert answers(telegram, "sendSticker")[photo] == 1
        first.kill()
        first.wait()
    assert open_jobs(data_dir) == {photo: "delivering"}

    with running(env, tmp_path) as second:
        wait_for_answers(telegram, [photo])
        stop_and_wait(second)
    assert_answered_exactly_once(telegram, [photo])
    assert len(picwish.creates()) == 1


def test_killed_before_the_prop_went_out_sends_only_the_prop_after_restart(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    with running(env, tmp_path) as first:
        telegram.send_text(USER, "/settings")
        keyboard = telegram.wait_for_call("sendMessage", timeout=30)[0].result
        for data in ("set:output:sticker", "set:props:1"):
            telegram.press_button(USER, keyboard, data)
        telegram.wait_for_call("answerCallbackQuery", count=2)
        # Telegram holds the prop back for 30 s: the bot is caught with the sticker sent and the prop not.
        telegram.fail_next(
            "sendDocument", error_code=429, description="Too Many Requests: retry after 30", retry_after=30
        )
        photo = telegram.send_photo(USER, variant_jpeg(301))["message_id"]
        telegram.wait_for_call("sendDocument", timeout=20)
        assert answers(telegram, "sendSticker")[photo] == 1
        first.kill()
        first.wait()
    assert open_jobs(data_dir) == {photo: "delivering"}

    with running(env, tmp_path) as second:
        wait_for_answers(telegram, [photo])
        stop_and_wait(second)
    assert_answered_exactly_once(telegram, [photo])
    prop = next(c for c in telegram.calls_to("sendDocument") if c.ok)
    assert prop.result["document"]["file_name"] == f"photo-{photo}-prop.png"
    assert len(picwish.creates()) == 1


def test_killed_during_intake_resumes_it_without_a_second_acknowledgement(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    telegram.fail_next(
        "getFile", error_code=429, description="Too Many Requests: retry after 30", retry_after=30
    )
    with running(env, tmp_path) as first:
        photo = telegram.send_photo(USER, variant_jpeg(400))["message_id"]
        telegram.wait_for_call("getFile", timeout=20)
        # Still fetching it two seconds on: the user is told it was received.
        telegram.wait_for_call("sendMessage", where=lambda c: c.params["text"] == text("status_received"))
        first.kill()
        first.wait()
    assert open_jobs(data_dir) == {photo: "accepted"}

    with running(env, tmp_path) as second:
        wait_for_answers(telegram, [photo])
        stop_and_wait(second)
    assert_answered_exactly_once(telegram, [photo])
    acknowledgements = [
        c for c in telegram.calls_to("sendMessage") if c.params["text"] == text("status_received")
    ]
    assert len(acknowledgements) == 1


def test_a_message_delivered_again_after_a_crash_is_not_answered_twice(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    from tests.harness import BotThread

    env = bot_env(telegram.url, picwish.url, tmp_path / "data")
    with BotThread(env):
        photo = telegram.send_photo(USER, variant_jpeg(40))
        telegram.wait_for_call("sendDocument")
    # The bot died before confirming the update: Telegram delivers the same message to the next start.
    with BotThread(env):
        telegram.redeliver(photo)
        marker = telegram.send_photo(USER, variant_jpeg(41))  # updates are handled in order
        telegram.wait_for_call("sendDocument", count=2)
        telegram.wait_for(lambda t: not t.pending_update_count)
    replies = Counter(c.decoded["reply_parameters"]["message_id"] for c in telegram.calls_to("sendSticker"))
    assert replies == {photo["message_id"]: 1, marker["message_id"]: 1}
    assert len(picwish.creates()) == 2
