"""What status messages say: none for a photo that starts at once, one per waiting photo, one shared by a
batch, or by the photos a user sends one by one, that counts what is done; posted once a photo waits, edited only when what it says changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bot.domain import JobState
from bot.pipeline.status import (
    PLACE_ONLY_AFTER,
    POST_WHEN_QUEUED,
    POST_WHEN_RECEIVED,
    POST_WHEN_RECEIVED_BEHIND,
    Status,
    StatusBoard,
)
from bot.storage import JobRecord


def job(
    job_id: str,
    batch: str | None = None,
    index: int = 0,
    status_message_id: int | None = None,
    user: int = 1,
) -> JobRecord:
    return JobRecord(
        id=job_id,
        user_id=user,
        chat_id=1,
        chat_type="private",
        message_id=index,
        file_id="f",
        file_unique_id="u",
        state=JobState.QUEUED,
        status_message_id=status_message_id,
        batch_id=batch,
        batch_index=index,
    )


class Chat:
    """What the chat sees: posts, edits and deletions of status messages."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, Status]] = []
        self.shown: list[tuple[str, Status]] = []
        self.urgent: list[Status] = []  # the edits that showed a place first
        self.retired: list[int | None] = []
        self.tasks: list[asyncio.Future[None]] = []
        self.next_id = 500
        self.wanted: list[Callable[[], bool]] = []  # of each post, as Telegram's limiter asks it
        self.turn: asyncio.Event | None = None  # when set: posts wait for it, as for their turn

    async def post(self, j: JobRecord, status: Status, wanted: Callable[[], bool]) -> int | None:
        self.wanted.append(wanted)
        if self.turn is not None:
            await self.turn.wait()
            if not wanted():
                return None  # dropped unsent
        self.posted.append((j.id, status))
        self.next_id += 1
        return self.next_id

    async def show(self, j: JobRecord, status: Status, urgent: bool) -> None:
        self.shown.append((j.id, status))
        if urgent:
            self.urgent.append(status)

    def record(self, jobs: list[JobRecord], message_id: int) -> None:
        for j in jobs:
            j.status_message_id = message_id

    async def retire(self, j: JobRecord) -> None:
        self.retired.append(j.status_message_id)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def settled(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.tasks), timeout=5)


def message_of(statuses: StatusBoard, j: JobRecord) -> Any:
    return statuses._messages[statuses._key(j)]


def board() -> tuple[StatusBoard, Chat]:
    chat = Chat()
    return StatusBoard(
        post=chat.post, show=chat.show, posted=chat.record, retire=chat.retire, spawn=chat.spawn
    ), chat


async def test_a_photo_that_starts_at_once_gets_no_status_message() -> None:
    statuses, chat = board()
    single = job("a")
    statuses.track(single)
    statuses.want(single, "queued", 1)
    start = message_of(statuses, single).since
    statuses.want(single, "working")  # picked up at once
    statuses.refresh(start + 10)
    await chat.settled()
    assert chat.posted == [] and chat.shown == []
    assert statuses.settle(single) is True
    assert single.status_message_id is None


async def test_a_photo_that_waits_in_line_gets_its_place_once_it_has_waited_a_second() -> None:
    statuses, chat = board()
    single = job("a")
    statuses.track(single)
    statuses.want(single, "queued", 3)
    since = message_of(statuses, single).queued_since
    assert since is not None
    statuses.refresh(since + POST_WHEN_QUEUED / 2)
    assert chat.posted == []
    statuses.refresh(since + POST_WHEN_QUEUED)
    await chat.settled()
    assert chat.posted == [("a", Status("queued", 3))]
    assert single.status_message_id == 501
    statuses.refresh(since + 60)  # nothing changed: nothing to edit
    statuses.want(single, "queued", 2)
    statuses.refresh(since + 60)
    await chat.settled()
    assert chat.shown == [("a", Status("queued", 2))]


async def test_a_photo_still_being_fetched_after_two_seconds_gets_a_status_message() -> None:
    statuses, chat = board()
    single = job("a")
    statuses.track(single)
    since = message_of(statuses, single).since
    statuses.refresh(since + POST_WHEN_RECEIVED - 0.1)
    assert chat.posted == []
    statuses.refresh(since + POST_WHEN_RECEIVED)
    await chat.settled()
    assert chat.posted == [("a", Status("received"))]


async def test_a_status_message_answered_while_it_was_posted_is_deleted_on_arrival() -> None:
    statuses, chat = board()
    single = job("a")
    statuses.track(single)
    statuses.want(single, "queued", 4)
    since = message_of(statuses, single).queued_since
    assert since is not None
    statuses.refresh(since + POST_WHEN_QUEUED)
    assert statuses.settle(single) is False  # answered before the post came back: not the caller's to delete
    await chat.settled()
    assert chat.retired == [501], "deleted once, on arrival"


async def test_a_status_message_answered_before_its_turn_is_never_posted() -> None:
    # Telegram's limit for the chat holds the post back; the photo is answered meanwhile.
    statuses, chat = board()
    chat.turn = asyncio.Event()
    single = job("a")
    statuses.track(single)
    statuses.want(single, "queued", 4)
    since = message_of(statuses, single).queued_since
    assert since is not None
    statuses.refresh(since + POST_WHEN_QUEUED)
    await asyncio.sleep(0)
    assert [wanted() for wanted in chat.wanted] == [True]
    assert statuses.settle(single) is False
    assert [wanted() for wanted in chat.wanted] == [False]
    chat.turn.set()
    await chat.settled()
    assert chat.posted == [] and chat.retired == [] and single.status_message_id is None


async def test_a_batch_shares_one_message_that_counts_what_is_done() -> None:
    statuses, chat = board()
    album = [job(f"j{i}", "album:1:7", i) for i in range(3)]
    for member in album[:2]:
        statuses.track(member)
    message = message_of(statuses, album[0])
    assert message.wanted == Status("received", total=2)
    statuses.want(album[1], "queued", 5)
    statuses.refresh(message.since + 5)
    await chat.settled()
    assert [m.status_message_id for m in album[:2]] == [501, 501]
    statuses.track(album[2])  # a straggler joins the message already posted
    assert album[2].status_message_id == 501
    statuses.want(album[2], "queued", 2)
    assert message.wanted == Status("queued", position=2, total=3), "the front-most place in line"
    statuses.want(album[0], "working")
    assert message.wanted == Status("progress", done=0, total=3)
    assert statuses.settle(album[0]) is False
    # Some done, the rest in line: how many are done, and where the next one stands.
    assert message.wanted == Status("queued", position=2, done=1, total=3)
    statuses.want(album[2], "working")
    assert message.wanted == Status("queued", position=5, done=1, total=3), "one being made, one in line"
    assert statuses.settle(album[1]) is False
    assert message.wanted == Status("progress", done=2, total=3), "none left in line: only the count"
    assert statuses.settle(album[2]) is True, "the last photo retires the shared message"
    assert len(chat.posted) == 1


async def test_a_status_message_from_before_a_restart_is_kept() -> None:
    statuses, chat = board()
    resumed = job("a", status_message_id=77)
    statuses.track(resumed)
    assert statuses.has_message(resumed)
    statuses.want(resumed, "queued", 2)
    statuses.refresh(message_of(statuses, resumed).since + 30)
    await chat.settled()
    assert chat.posted == [] and chat.shown == [("a", Status("queued", 2))]


async def test_a_photo_that_came_while_others_wait_shows_its_place_as_soon_as_it_is_in_line() -> None:
    statuses, chat = board()
    late = job("late")
    statuses.track(late)
    statuses.will_wait(late)  # others are in line: it will wait
    await chat.settled()
    assert chat.posted == []  # still being fetched: its place is not known yet
    statuses.want(late, "queued", 37)
    await chat.settled()
    assert chat.posted == [("late", Status("queued", 37))]


async def test_photos_a_user_sends_one_by_one_share_one_message_that_counts() -> None:
    statuses, chat = board()
    first, second, third = job("a", index=1), job("b", index=2), job("c", index=3)
    other_user = job("x", index=4, user=2)
    for j in (first, second, other_user):
        statuses.track(j)
    assert statuses.alone(other_user) and not statuses.alone(first)
    statuses.want(first, "working")  # started at once
    statuses.will_wait(second)
    statuses.want(second, "queued", 4)
    await chat.settled()
    assert chat.posted == [("a", Status("progress", done=0, total=2))], "one message, for both photos"
    assert first.status_message_id == second.status_message_id == 501
    statuses.track(third)  # a third photo joins the message already posted
    assert third.status_message_id == 501
    assert statuses.settle(first) is False
    statuses.forget(first)
    message = message_of(statuses, second)
    assert message.wanted == Status("queued", position=4, done=1, total=3), "the rest: done, and in line"
    assert statuses.settle(second) is False
    statuses.forget(second)
    assert statuses.settle(third) is True, "the last photo retires the shared message"
    statuses.forget(third)
    later = job("d", index=5)
    statuses.track(later)
    assert statuses.alone(later) and later.status_message_id is None, "a new round gets a message of its own"
    assert message_of(statuses, other_user) is not message_of(statuses, later), "each user has their own"


async def test_a_users_message_speaks_for_one_photo_until_a_second_joins() -> None:
    statuses, _ = board()
    first, second = job("a", index=1), job("b", index=2)
    statuses.track(first)
    statuses.want(first, "queued", 3)
    message = message_of(statuses, first)
    assert message.wanted == Status("queued", 3), "alone, it speaks for one photo"
    statuses.track(second)
    statuses.want(second, "queued", 4)
    assert message.wanted == Status("queued", position=3, total=2)


async def test_a_photo_that_came_while_others_wait_is_acknowledged_sooner_while_it_is_fetched() -> None:
    statuses, chat = board()
    late, alone = job("late", user=1), job("alone", user=2)
    for j in (late, alone):
        statuses.track(j)
    statuses.will_wait(late)  # others are in line, and the bot is still taking in their photos
    since = message_of(statuses, late).since
    statuses.refresh(since + POST_WHEN_RECEIVED_BEHIND - 0.1)
    assert chat.posted == []
    statuses.refresh(since + POST_WHEN_RECEIVED_BEHIND)
    await chat.settled()
    assert chat.posted == [("late", Status("received"))], "only the photo that will wait, and only once"


async def test_a_message_that_said_received_shows_the_first_place_as_urgently_as_a_first_status() -> None:
    statuses, chat = board()
    single = job("a")
    statuses.track(single)
    since = message_of(statuses, single).since
    statuses.refresh(since + POST_WHEN_RECEIVED)  # still being fetched: "received"
    await chat.settled()
    statuses.want(single, "queued", 39)  # far back, where edits are rare
    statuses.refresh(since + POST_WHEN_RECEIVED + 1.0)  # its place, a second after "received"
    await chat.settled()
    statuses.want(single, "queued", 4)
    statuses.refresh(since + 20)
    await chat.settled()
    assert chat.shown == [("a", Status("queued", 39)), ("a", Status("queued", 4))]
    assert chat.urgent == [Status("queued", 39)], "only the first place shown is urgent"


async def album_with_one_done(count: int, first_place: int) -> tuple[StatusBoard, Chat, list[JobRecord], Any]:
    """An album of ``count`` photos in line from ``first_place``, its status message posted once they
    waited, and its first photo answered."""
    statuses, chat = board()
    album = [job(f"j{i}", "album:1:9", i) for i in range(count)]
    for member in album:
        statuses.track(member)
        statuses.want(member, "queued", first_place + member.batch_index)
    message = message_of(statuses, album[0])
    statuses.refresh(message.since + POST_WHEN_QUEUED + 0.1)
    await chat.settled()
    assert chat.posted == [("j0", Status("queued", position=first_place, total=count))]
    statuses.want(album[0], "working")
    statuses.settle(album[0])
    return statuses, chat, album, message


async def test_the_next_photos_place_alone_is_edited_rarely_and_the_count_as_it_changes() -> None:
    statuses, chat, album, message = await album_with_one_done(3, first_place=20)
    statuses.want(album[1], "queued", 4)
    statuses.refresh(message.last_edit + 2.0)  # the count changed: edited as often as any status
    await chat.settled()
    assert chat.shown[-1] == ("j1", Status("queued", position=4, done=1, total=3))
    edited = message.last_edit
    statuses.want(album[1], "queued", 2)  # only the place moved
    statuses.refresh(edited + 2.0)
    statuses.refresh(edited + PLACE_ONLY_AFTER - 0.1)
    await chat.settled()
    assert len(chat.shown) == 1, "the place alone waits its longer interval"
    statuses.refresh(edited + PLACE_ONLY_AFTER)
    await chat.settled()
    assert chat.shown[-1] == ("j1", Status("queued", position=2, done=1, total=3))


async def test_the_place_shown_never_jumps_back_while_the_next_photo_is_made() -> None:
    statuses, chat, album, message = await album_with_one_done(4, first_place=2)
    statuses.want(album[1], "queued", 1)
    statuses.want(album[2], "queued", 3)
    statuses.refresh(message.since + 10)
    await chat.settled()
    assert chat.shown == [("j1", Status("queued", position=1, done=1, total=4))]
    statuses.want(album[1], "working")  # the next one is being made: the one after it is #3
    statuses.refresh(message.since + 30)
    await chat.settled()
    assert len(chat.shown) == 1, "not edited from #1 back to #3 with the count unchanged"
    statuses.want(album[2], "queued", 2)
    statuses.refresh(message.since + 50)
    await chat.settled()
    assert len(chat.shown) == 1
    statuses.settle(album[1])  # done: the count and the place go together
    statuses.refresh(message.since + 70)
    await chat.settled()
    assert chat.shown[-1] == ("j2", Status("queued", position=2, done=2, total=4))
