"""A PicWish outage longer than the retries, compressed by settings: photos wait, are told so once, and are
answered when the API is back; one probe request per interval meanwhile; nothing paid twice."""

from __future__ import annotations

import time
from pathlib import Path

from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import FakeTelegram

PROBE_SECONDS = 2.0


def outage_env(telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path, hold_minutes: str) -> dict[str, str]:
    return bot_env(
        telegram.url,
        picwish.url,
        tmp_path / "data",
        PICWISH_RETRY_SECONDS="2",
        OUTAGE_PROBE_SECONDS=str(PROBE_SECONDS),
        OUTAGE_HOLD_MINUTES=hold_minutes,
    )


def status_texts(telegram: FakeTelegram) -> list[tuple[tuple[int, int], str]]:
    """((chat id, status message id), text) of every message the bot posted or edited."""
    return [
        (
            (int(c.params["chat_id"]), int(c.params["message_id"] if c.method == "editMessageText" else c.result["message_id"])),
            c.params["text"],
        )
        for c in telegram.calls
        if c.method in ("sendMessage", "editMessageText") and c.ok
    ]


def test_photos_wait_out_an_api_outage_are_told_once_and_answered_when_it_is_back(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    telegram.add_user(OTHER_USER, "Bo")
    # Bo's one photo is told about in the singular; the user's three share one message, in the plural.
    told = {
        text("status_outage", minutes=5),
        text("status_outage_batch", total=3, minutes=5),
    }
    senders = [USER, USER, USER, OTHER_USER]
    with BotThread(outage_env(telegram, picwish, tmp_path, "5")) as bot:
        picwish.set_down(Outcome.http(500))
        for n, user in enumerate(senders):
            telegram.send_photo(user, variant_jpeg(20 + n))
        telegram.wait_for(lambda t: {said for _, said in status_texts(t)} >= told, timeout=30)
        down_since = time.monotonic()
        time.sleep(4 * PROBE_SECONDS)  # the outage goes on for a while (the fault's length, not a wait)
        during = [r for r in picwish.creates() if r.at >= down_since]
        picwish.set_down(None)
        telegram.wait_for_call("sendDocument", count=len(senders), timeout=30)
        telegram.wait_for_call("sendSticker", count=len(senders), timeout=30)
        stats = bot.service.stats

    assert len(during) <= 4 + 1, f"one probe per {PROBE_SECONDS} s while down, not every job: {len(during)}"
    paid = [r for r in picwish.creates() if r.status == 200]
    accepted, answered = stats.accepted, stats.answered
    print(f"api outage: accepted {accepted}, answered {answered}, lost {accepted - answered}, "
          f"paid twice {len(paid) - len(senders)}, requests while down {len(during)}")
    assert (accepted, answered, stats.failed) == (len(senders), len(senders), 0)
    assert len(paid) == len(senders), "each photo paid once"
    edits = status_texts(telegram)
    outage_edits = [m for m, said in edits if said in told]
    # A user's photos share one status message: each user is told once, whatever their photos.
    assert len(outage_edits) == len(set(outage_edits)) == len(set(senders)), "each user told once"
    failures = {text("service_trouble"), text("api_failed")}
    said = [c.params["text"] for c in telegram.calls_to("sendMessage")] + [t for _, t in edits]
    assert not failures & set(said), "nobody was told their photo failed"


def test_a_photo_waits_no_longer_than_outage_hold_minutes_then_fails_with_the_usual_text(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    with BotThread(outage_env(telegram, picwish, tmp_path, "0.1")) as bot:  # 6 s
        picwish.set_down(Outcome.http(500))
        telegram.send_photo(USER, variant_jpeg(30))
        telegram.wait_for(lambda t: any(said == text("status_outage", minutes=0) for _, said in status_texts(t)), 30)
        telegram.wait_for(lambda t: any(said == text("service_trouble") for _, said in status_texts(t)), 30)
        stats = bot.service.stats
    assert (stats.accepted, stats.answered, stats.failed) == (1, 0, 1)
    assert not [r for r in picwish.creates() if r.status == 200]
