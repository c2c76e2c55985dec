"""The scheduler end to end: the real bot under load against the strict PicWish stand-in.

Never over the API's QPS (creates and polls alike, across processes through Redis), fair to every
user, per-user limits that say when to try again, and status messages that follow the line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

from tests.harness import BOT_TOKEN, BotProcess, BotThread, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish, Outcome
from tests.standins.telegram_api import Call, FakeTelegram

QPS = 2
IN_LINE = re.compile(r"#(\d+) in line")
WORKING = "Cutting out"
DONE = re.compile(r"Done: \d+ of \d+")
DONE_COUNT = re.compile(r"Done: (\d+) of")
FAILURE = "face"  # the no-face text names what is missing
STATUS_EDIT_INTERVAL = 2.0  # seconds: the most often one status message may be edited


# --- helpers ---------------------------------------------------------------------------------------
class Photos:
    """Distinct photos, so the bot's dedup cache never hides an API call."""

    def __init__(self, first_seed: int = 0) -> None:
        self._seed = first_seed

    def next(self) -> bytes:
        self._seed += 1
        return variant_jpeg(self._seed)


def add_users(telegram: FakeTelegram, users: range) -> None:
    for user in users:
        telegram.add_user(user, f"User{user}")


def to_chat(chat_id: int) -> Callable[[Call], bool]:
    return lambda call: call.decoded.get("chat_id") == chat_id


def results(telegram: FakeTelegram, chat_id: int) -> list[Call]:
    """The PNGs delivered to a chat (the last part of every answer)."""
    return [c for c in telegram.calls_to("sendDocument") if c.ok and to_chat(chat_id)(c)]


def wait_for_results(telegram: FakeTelegram, expected: dict[int, int], timeout: float) -> None:
    telegram.wait_for(
        lambda t: all(len(results(t, user)) >= n for user, n in expected.items()), timeout=timeout
    )


def texts_to(telegram: FakeTelegram, chat_id: int) -> list[str]:
    """Every text the bot sent or edited into the chat, in order."""
    return [
        str(c.params.get("text", ""))
        for c in telegram.calls
        if c.method in ("sendMessage", "editMessageText") and to_chat(chat_id)(c)
    ]


def status_edits(telegram: FakeTelegram) -> dict[tuple[int, int], list[Call]]:
    """The edits of every status message, by (chat, message id), in arrival order."""
    edits: dict[tuple[int, int], list[Call]] = {}
    for call in telegram.calls_to("editMessageText"):
        edits.setdefault((call.decoded["chat_id"], call.decoded["message_id"]), []).append(call)
    return edits


def status_moved_on(telegram: FakeTelegram, chat_id: int) -> set[int]:
    """Ids of the chat's messages the bot has edited or deleted since sending them."""
    return {
        c.decoded["message_id"]
        for c in telegram.calls
        if c.method in ("editMessageText", "deleteMessage") and to_chat(chat_id)(c)
    }


def assert_within_qps(picwish: FakePicWish) -> None:
    assert picwish.count_429 == 0, [r for r in picwish.requests if r.status == 429]
    assert picwish.max_in_window() <= QPS


# --- the QPS cap -------------------------------------------------------------------------------------
def test_many_users_photos_and_polls_never_exceed_the_qps(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    users = range(2001, 2006)
    add_users(telegram, users)
    picwish.set_latency(0.3)
    # Some sync answers come back unfinished: their polls share the same budget.
    picwish.script(*[Outcome.processing()] * 4)
    photos = Photos()
    per_user = 3
    with BotThread(env):
        for _ in range(per_user):
            for user in users:
                telegram.send_photo(user, photos.next())
        wait_for_results(telegram, dict.fromkeys(users, per_user), timeout=60)

    assert len(picwish.creates()) == len(users) * per_user
    assert len(picwish.queries()) >= 4
    assert_within_qps(picwish)
    for user in users:
        assert not [t for t in texts_to(telegram, user) if "went wrong" in t or "busy" in t]


# --- fairness ----------------------------------------------------------------------------------------
def test_a_single_photo_is_not_stuck_behind_another_users_album(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    album_user, single_user = 2101, 2102
    add_users(telegram, range(album_user, single_user + 1))
    picwish.set_qps(1)
    env = bot_env(
        telegram.url,
        picwish.url,
        tmp_path / "data",
        PICWISH_QPS="1",
        USER_MAX_PENDING="10",
        USER_PER_MINUTE="30",
    )
    photos = Photos(100)
    album = 5
    with BotThread(env):
        for _ in range(album):
            telegram.send_photo(album_user, photos.next())
        # Every photo of the album is in line (or already being cut out) before the other user sends one:
        # the bot has taken every update, the first photo started at once, and the others wait behind it
        # (one status message speaks for all of them).
        telegram.wait_for(lambda t: t.pending_update_count == 0)
        telegram.wait_for_call("sendMessage", where=to_chat(album_user))
        telegram.send_photo(single_user, photos.next())
        wait_for_results(telegram, {album_user: album, single_user: 1}, timeout=60)

    stickers = [c.decoded["chat_id"] for c in telegram.calls_to("sendSticker")]
    after_single = stickers[stickers.index(single_user) + 1 :]
    assert after_single.count(album_user) >= 3, stickers
    assert_within_qps(picwish)


# --- per-user limits ---------------------------------------------------------------------------------
def is_status(text: str) -> bool:
    return "Got " in text or IN_LINE.search(text) is not None or WORKING in text or DONE.search(text) is not None


def acknowledged(telegram: FakeTelegram, user: int) -> set[int]:
    """The user's photos the bot accepted: each was answered with a sticker in reply."""
    return {
        c.decoded["reply_parameters"]["message_id"]
        for c in telegram.calls_to("sendSticker")
        if to_chat(user)(c)
    }


def refusals(telegram: FakeTelegram, user: int) -> list[str]:
    """Every text message the bot sent the user that is not a status message."""
    return [
        str(c.params["text"])
        for c in telegram.calls_to("sendMessage")
        if to_chat(user)(c) and not is_status(str(c.params["text"]))
    ]


def test_the_sixth_waiting_photo_is_refused_with_when_to_retry(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    user = 2201
    add_users(telegram, range(user, user + 1))
    picwish.set_latency(2.0)  # the first five are still waiting when the sixth arrives
    photos = Photos(200)
    with BotThread(env):
        sent = [telegram.send_photo(user, photos.next()) for _ in range(6)]
        telegram.wait_for(lambda t: refusals(t, user), timeout=20)
        wait_for_results(telegram, {user: 5}, timeout=60)

    [refusal] = refusals(telegram, user)
    assert "5 photos waiting" in refusal and "again when one of them is done" in refusal
    assert acknowledged(telegram, user) == {photo["message_id"] for photo in sent[:5]}
    assert len(telegram.calls_to("getFile")) == 5
    assert len(picwish.creates()) == 5
    assert len(results(telegram, user)) == 5


def test_the_eleventh_photo_in_a_minute_is_refused_with_when_to_retry(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    user = 2301
    add_users(telegram, range(user, user + 1))
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", USER_MAX_PENDING="20")
    photos = Photos(300)
    with BotThread(env):
        sent = [telegram.send_photo(user, photos.next()) for _ in range(11)]
        telegram.wait_for(lambda t: refusals(t, user), timeout=20)
        wait_for_results(telegram, {user: 10}, timeout=60)

    [refusal] = refusals(telegram, user)
    assert acknowledged(telegram, user) == {photo["message_id"] for photo in sent[:10]}
    seconds = re.search(r"more than 10 photos in a minute\. Please send this one again in (\d+) s", refusal)
    assert seconds is not None, refusal
    assert 1 <= int(seconds.group(1)) <= 60
    assert len(telegram.calls_to("getFile")) == 10
    assert len(picwish.creates()) == 10


# --- feedback ----------------------------------------------------------------------------------------
def test_status_messages_follow_the_line_then_say_working_then_give_way(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    users = range(2401, 2413)  # the last users wait seconds for their first start: their place moves up
    add_users(telegram, users)
    picwish.set_latency(3.5)  # long enough for "Done: 0 of 2" to be shown before the result
    photos = Photos(400)
    per_user = 2
    # Sent before the bot starts, they come in one batch and the whole line forms at once. (While
    # photos are still arriving a place can grow: a newcomer's first photo goes before an album's rest.)
    for _ in range(per_user):
        for user in users:
            telegram.send_photo(user, photos.next())
    with BotThread(env):
        wait_for_results(telegram, dict.fromkeys(users, per_user), timeout=60)
        telegram.wait_for(
            lambda t: len(t.calls_to("deleteMessage")) == len(t.calls_to("sendMessage")) > 0, timeout=20
        )

    # Each user's photos waited in line behind the first ones the budget started: one status message
    # each, which counts them all.
    statuses = telegram.calls_to("sendMessage")
    assert sorted(c.decoded["chat_id"] for c in statuses) == list(users), "one status message per user"
    edits = status_edits(telegram)
    moved = worked = 0
    for status in statuses:
        key = (status.decoded["chat_id"], status.result["message_id"])
        calls = [status, *edits.get(key, [])]
        texts = [c.params["text"] for c in calls]
        positions = [int(m.group(1)) for t in texts if (m := IN_LINE.search(t))]
        # A place only moves up the line while the same photo is the next one: once one is done, the
        # place shown is the next photo's, further back (the other users' photos go between).
        places_by_done: dict[int, list[int]] = {}
        for t in texts:
            if m := IN_LINE.search(t):
                done = int(d.group(1)) if (d := DONE_COUNT.search(t)) else 0
                places_by_done.setdefault(done, []).append(int(m.group(1)))
        for places in places_by_done.values():
            assert places == sorted(places, reverse=True), texts
            assert len(set(places)) == len(places), f"edited only when what it says changes: {texts}"
        assert all(a != b for a, b in itertools.pairwise(texts)), f"edited only when what it says changes: {texts}"
        moved += len(set(positions)) > 1
        # "Done: k of 3" is shown when the chat has room for it: answers in the same chat go first.
        worked += any(f"of {per_user}" in t for t in texts)
        assert all(f"{per_user} photos" in t or f"of {per_user}" in t for t in texts), texts
        gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
        assert all(gap >= STATUS_EDIT_INTERVAL for gap in gaps), (texts, gaps)
    assert moved, "no status message followed its photos up the line"
    assert worked, "no status message counted the photos done"
    # The status messages gave way to the results.
    for user in users:
        assert not [m for m in telegram.messages_in(user) if "text" in m]
    assert_within_qps(picwish)


def test_photos_a_user_sends_one_by_one_share_one_status_message_and_a_failure_is_its_own_reply(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    user = 2451
    add_users(telegram, range(user, user + 1))
    picwish.set_qps(1)  # the second and third photos wait for the first
    # The first is slow to make: the status message is posted while the chat has room, before any
    # answer (one still waiting for its turn when the last photo is answered is never posted).
    picwish.script(Outcome.slow(2.0), Outcome.state(-14))  # the second has no face the API can find
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", PICWISH_QPS="1")
    photos = Photos(450)
    with BotThread(env):
        sent = [telegram.send_photo(user, photos.next())["message_id"] for _ in range(3)]
        wait_for_results(telegram, {user: 2}, timeout=30)
        telegram.wait_for_call("deleteMessage", where=to_chat(user), timeout=20)

    [status] = [c for c in telegram.calls_to("sendMessage") if to_chat(user)(c) and FAILURE not in c.params["text"]]
    status_id = status.result["message_id"]
    texts = [status.params["text"], *(c.params["text"] for c in status_edits(telegram).get((user, status_id), []))]
    assert all(DONE.search(t) or "3 photos" in t for t in texts), f"it speaks for the three photos: {texts}"
    assert not [t for t in texts if FAILURE in t], "the shared message is not taken over by one photo's failure"
    [failure] = [c for c in telegram.calls_to("sendMessage") if FAILURE in c.params["text"]]
    assert failure.decoded["reply_parameters"]["message_id"] == sent[1], "the failure answers its own photo"
    answered = sorted(c.decoded["reply_parameters"]["message_id"] for c in results(telegram, user))
    assert answered == [sent[0], sent[2]]
    [deleted] = [c for c in telegram.calls_to("deleteMessage") if to_chat(user)(c)]
    assert deleted.decoded["message_id"] == status_id, "it gave way once the last photo was answered"
    assert [m["text"] for m in telegram.messages_in(user) if "text" in m] == [failure.params["text"]]


# --- another client on the same key ------------------------------------------------------------------
def test_a_429_pauses_everyone_and_is_retried_without_the_user_noticing(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    first, second = 2501, 2502
    add_users(telegram, range(first, second + 1))
    picwish.script(Outcome.http(429))
    photos = Photos(500)
    with BotThread(env):
        telegram.send_photo(first, photos.next())
        picwish.wait_for(lambda: picwish.count_429 == 1, timeout=20)
        telegram.send_photo(second, photos.next())
        wait_for_results(telegram, {first: 1, second: 1}, timeout=30)

    requests = picwish.requests
    [refused] = [r for r in requests if r.status == 429]
    after = [r.at - refused.at for r in requests if r.at > refused.at]
    # Nobody's request went out during the pause (1 s without a Retry-After header).
    assert min(after) >= 1.0, after
    assert [r.status for r in picwish.creates()].count(200) == 2
    for user in (first, second):
        texts = texts_to(telegram, user)
        assert all(is_status(t) for t in texts), texts


# --- two processes, one key --------------------------------------------------------------------------
def test_two_bot_processes_share_one_qps_budget_through_redis(
    picwish: FakePicWish, redis_url: str, tmp_path: Path
) -> None:
    users = range(2601, 2604)
    per_user = 3
    picwish.set_latency(0.3)
    picwish.script(*[Outcome.processing()] * 2)
    photos = Photos(600)
    telegrams = [FakeTelegram(BOT_TOKEN), FakeTelegram(BOT_TOKEN)]
    bots: list[BotProcess] = []
    try:
        for n, telegram in enumerate(telegrams):
            telegram.start()
            add_users(telegram, users)
            env = bot_env(
                telegram.url, picwish.url, tmp_path / f"data{n}", REDIS_URL=redis_url, LOG_LEVEL="INFO"
            )
            bots.append(BotProcess(env, tmp_path))
        for telegram in telegrams:
            telegram.wait_for_call("getUpdates", timeout=30)
        for _ in range(per_user):
            for user in users:
                for telegram in telegrams:
                    telegram.send_photo(user, photos.next())
        for telegram in telegrams:
            wait_for_results(telegram, dict.fromkeys(users, per_user), timeout=60)
    finally:
        for bot in bots:
            bot.terminate()
        for bot in bots:
            bot.wait()
            bot.close()
        for telegram in telegrams:
            telegram.stop()

    assert_within_qps(picwish)
    assert len(picwish.creates()) == 2 * len(users) * per_user
    assert len(picwish.queries()) >= 2
