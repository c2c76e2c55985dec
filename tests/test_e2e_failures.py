"""API faults over the real bot: every documented status and failure state ends in its own friendly text.

Retryable faults (429, 5xx, resets, malformed bodies, states -2/-9/-13/-15) are retried with backoff
before the user hears anything: a transient one ends in the cutout, a lasting one in its text. The
rest go straight to their text with a single API request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import API_KEY, BotThread, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram

ADMIN = 1003
#: A short retry budget, so a lasting fault reaches the user in a second (production default: 90 s).
SHORT_RETRY = "1"
#: A 429 without Retry-After pauses 1.5 s: the budget must hold at least one such pause.
SHORT_RETRY_429 = "2"

# Every negative data.state in the spec -> the text the user gets, and whether it is worth retrying.
SPEC_STATES: dict[int, tuple[str, bool]] = {
    -17: ("api_failed", False),  # invalid prompt
    -16: ("content_refused", False),  # third-party review: prohibited content
    -15: ("service_trouble", True),  # insufficient resources
    -14: ("no_face", False),  # the image content does not meet the requirements
    -13: ("service_trouble", True),  # canceled due to an exception
    -11: ("no_face", False),  # the result is empty
    -10: ("content_refused", False),  # internal review: prohibited content
    -9: ("service_trouble", True),  # internal loop failure
    -8: ("too_slow", False),  # timed out after 180 s
    -7: ("corrupt_image", False),  # corrupted image or incorrect format
    -5: ("image_too_large", False),  # image_url over 30 MB
    -3: ("api_failed", False),  # the server could not download the image
    -2: ("service_trouble", True),  # the upload of the result failed
    -1: ("api_failed", False),  # processing failed
}
# Every HTTP status in the spec, on create. A 404 there means the API URL is wrong: not retried
# (a 404 on a query means the task is gone, and it is redone: see the test below).
SPEC_STATUSES: dict[int, tuple[str, bool]] = {
    400: ("api_bad_request", False),
    401: ("service_unavailable", False),
    404: ("service_unavailable", False),
    413: ("image_too_large", False),
    429: ("busy", True),
    500: ("service_trouble", True),
}


def _cases() -> Iterator[tuple[str, Outcome, str, bool]]:
    for state, (key, retryable) in SPEC_STATES.items():
        yield f"state{state}", Outcome.state(state), key, retryable
    for status, (key, retryable) in SPEC_STATUSES.items():
        yield f"http{status}", Outcome.http(status), key, retryable
    yield "body-status500", Outcome.body_status(500), "service_trouble", True
    yield "body-status400", Outcome.body_status(400), "api_bad_request", False
    yield "malformed", Outcome.malformed(), "service_trouble", True
    yield "reset", Outcome.reset(), "service_trouble", True


CASES = [pytest.param(*case[1:], id=case[0]) for case in _cases()]
# One transient case per distinct retry path (the other retryable states take the path of -2).
TRANSIENT = ("state-2", "http429", "http500", "malformed", "reset")
TRANSIENT_CASES = [pytest.param(*case[1:], id=case[0]) for case in _cases() if case[0] in TRANSIENT]


def bot_texts(telegram: FakeTelegram, chat_id: int = USER) -> list[str]:
    """The texts the bot shows in the chat now (status messages with their edits applied)."""
    return [m["text"] for m in telegram.messages_in(chat_id) if "text" in m]


def wait_for_text(telegram: FakeTelegram, expected: str, chat_id: int = USER, timeout: float = 20) -> None:
    telegram.wait_for(lambda t: expected in bot_texts(t, chat_id), timeout)


def stickers_to(telegram: FakeTelegram, chat_id: int = USER) -> int:
    return len([c for c in telegram.calls_to("sendSticker") if c.ok and c.decoded["chat_id"] == chat_id])


@pytest.mark.parametrize(("outcome", "text_key", "retryable"), CASES)
def test_a_lasting_fault_ends_in_its_own_text(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    tmp_path: Path,
    outcome: Outcome,
    text_key: str,
    retryable: bool,
) -> None:
    picwish.script(*[outcome] * 20)
    budget = SHORT_RETRY_429 if text_key == "busy" else SHORT_RETRY
    # OUTAGE_HOLD_MINUTES=0: past the retries the user hears at once (waiting out an outage: test_faults_outage).
    env = bot_env(
        telegram.url, picwish.url, tmp_path / "data", PICWISH_RETRY_SECONDS=budget, OUTAGE_HOLD_MINUTES="0"
    )
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(1))
        wait_for_text(telegram, text(text_key))

    creates = picwish.creates()
    if retryable:
        assert len(creates) >= 2, "a retryable fault is retried before the user hears of it"
    else:
        assert len(creates) == 1, "a fault not worth retrying goes straight to its text"
    assert stickers_to(telegram) == 0
    # The user sees one message: the status message, turned into the friendly text.
    assert bot_texts(telegram) == [text(text_key)]


@pytest.mark.parametrize(("outcome", "text_key", "retryable"), TRANSIENT_CASES)
def test_a_transient_fault_is_retried_into_the_cutout(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    env: dict[str, str],
    outcome: Outcome,
    text_key: str,
    retryable: bool,
) -> None:
    picwish.script(outcome)
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(2))
        telegram.wait_for_call("sendDocument", timeout=20)
    assert len(picwish.creates()) == 2
    assert stickers_to(telegram) == 1
    assert text(text_key) not in bot_texts(telegram)


def test_a_burst_of_429s_is_waited_out(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(*[Outcome.http(429)] * 2)
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(3))
        telegram.wait_for_call("sendDocument", timeout=30)
    creates = picwish.creates()
    assert [c.status for c in creates] == [429, 429, 200]
    # Backed off: each retry waited out the 429's pause (1 s without a Retry-After: the API counts per
    # second), not fired at once.
    assert creates[1].at - creates[0].at >= 1.0 - 0.05 and creates[2].at - creates[1].at >= 1.0 - 0.05


def test_a_failure_state_while_polling_gets_its_text(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.processing())
    picwish.script(Outcome.state(-14), on="query")
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(4))
        wait_for_text(telegram, text("no_face"))
    assert len(picwish.creates()) == 1 and len(picwish.queries()) == 1
    assert "facing the camera" in text("no_face"), "the text says what kind of photo works"


def test_api_down_ends_in_the_service_trouble_text(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    dead = FakePicWish(API_KEY)
    dead.start()
    dead_url = dead.url
    dead.stop()  # nothing listens there any more: every request is refused at connect
    env = bot_env(
        telegram.url, dead_url, tmp_path / "data", PICWISH_RETRY_SECONDS=SHORT_RETRY, OUTAGE_HOLD_MINUTES="0"
    )
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(5))
        wait_for_text(telegram, text("service_trouble"))
    assert stickers_to(telegram) == 0


def test_a_task_the_api_no_longer_knows_is_redone(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.processing())
    picwish.script(Outcome.http(404), on="query")
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(14))
        telegram.wait_for_call("sendDocument", timeout=30)
    assert [q.status for q in picwish.queries()][:1] == [404]
    assert len(picwish.creates()) == 2, "the lost task was created again"
    assert stickers_to(telegram) == 1


# --- result URLs -------------------------------------------------------------------------------------
def test_an_expired_result_url_is_queried_again_then_redone(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.expired_result())
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(6))
        telegram.wait_for_call("sendDocument", timeout=20)
    assert [d.status for d in picwish.downloads] == [403, 403, 200]  # result, result after a query, redo
    assert len(picwish.queries()) == 1 and len(picwish.creates()) == 2
    assert stickers_to(telegram) == 1


def test_results_expired_while_polling_are_redone(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.processing())
    picwish.script(Outcome.expired_result(), on="query")
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(7))
        telegram.wait_for_call("sendDocument", timeout=20)
    assert len(picwish.creates()) == 2
    assert stickers_to(telegram) == 1


def test_a_success_without_a_result_url_is_redone(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    picwish.script(Outcome.no_image())
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(8))
        telegram.wait_for_call("sendDocument", timeout=30)
    assert len(picwish.creates()) == 2
    assert stickers_to(telegram) == 1


def test_a_result_url_off_the_api_host_and_not_https_is_never_fetched(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    # The stand-in's result URLs name 127.0.0.1; configured as "localhost" the API is another origin.
    api_url = picwish.url.replace("127.0.0.1", "localhost")
    env = bot_env(telegram.url, api_url, tmp_path / "data")
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(9))
        wait_for_text(telegram, text("service_bad_answer"))
    assert len(picwish.creates()) == 1, "reached the API through localhost"
    assert picwish.downloads == []


# --- a rejected key ------------------------------------------------------------------------------------
def admin_texts(telegram: FakeTelegram) -> list[str]:
    return [
        c.params["text"] for c in telegram.calls_to("sendMessage") if c.decoded["chat_id"] == ADMIN and c.ok
    ]


def test_a_rejected_key_alerts_admins_once_per_incident(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    telegram.add_user(ADMIN, "Admin")
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", ADMIN_USER_IDS=str(ADMIN))
    unavailable = text("service_unavailable")
    with BotThread(env):
        picwish.script(*[Outcome.http(401)] * 3)
        telegram.send_photo(USER, variant_jpeg(10))
        telegram.send_photo(USER, variant_jpeg(11))
        telegram.send_photo(OTHER_USER, variant_jpeg(12))
        telegram.wait_for(
            lambda t: bot_texts(t).count(unavailable) == 2 and unavailable in bot_texts(t, OTHER_USER)
        )
        assert len(picwish.creates()) == 3, "a rejected key is not retried"
        assert admin_texts(telegram) == [text("admin_key_rejected")]

        # The key works again: one all-clear, then the next rejection is a new incident.
        telegram.send_photo(USER, variant_jpeg(13))
        telegram.wait_for_call("sendDocument")
        telegram.wait_for(lambda t: len(admin_texts(t)) == 2)
        picwish.script(Outcome.http(401))
        telegram.send_photo(OTHER_USER, variant_jpeg(14))
        telegram.wait_for(lambda t: bot_texts(t, OTHER_USER).count(unavailable) == 2)
        telegram.wait_for(lambda t: len(admin_texts(t)) == 3)
    assert admin_texts(telegram) == [
        text("admin_key_rejected"),
        text("admin_key_recovered"),
        text("admin_key_rejected"),
    ]
    assert ADMIN not in {c.decoded["chat_id"] for c in telegram.calls_to("sendSticker")}
