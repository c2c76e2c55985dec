"""What status messages say: one per photo, one shared by a batch that counts what is done."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from bot.domain import JobState
from bot.pipeline.status import Status, StatusBoard
from bot.storage import JobRecord


def job(job_id: str, batch: str | None = None, index: int = 0) -> JobRecord:
    return JobRecord(
        id=job_id, user_id=1, chat_id=1, chat_type="private", message_id=index, file_id="f",
        file_unique_id="u", state=JobState.QUEUED, status_message_id=99, batch_id=batch, batch_index=index,
    )


def board() -> tuple[StatusBoard, list[tuple[str, Status]]]:
    shown: list[tuple[str, Status]] = []

    async def show(j: JobRecord, status: Status) -> None:
        shown.append((j.id, status))

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        return asyncio.ensure_future(coro)

    return StatusBoard(show, spawn), shown


async def test_a_single_photo_shows_its_own_place_then_work() -> None:
    statuses, _ = board()
    single = job("a")
    statuses.track(single)
    statuses.want(single, "queued", 3)
    assert statuses._messages["a"].wanted == Status("queued", 3)
    statuses.want(single, "working")
    assert statuses._messages["a"].wanted == Status("working")
    assert await statuses.settle(single) is True, "its message speaks for nobody now: retire it"


async def test_a_batch_shares_one_message_that_counts_what_is_done() -> None:
    statuses, _ = board()
    album = [job(f"j{i}", "album:1:7", i) for i in range(3)]
    for member in album:
        statuses.track(member)
    message = statuses._messages["album:1:7"]
    assert message.wanted == Status("received", total=3)
    statuses.want(album[1], "queued", 5)
    statuses.want(album[2], "queued", 2)
    assert message.wanted == Status("queued", position=2, total=3), "the front-most place in line"
    statuses.want(album[0], "working")
    assert message.wanted == Status("progress", done=0, total=3)
    assert await statuses.settle(album[0]) is False
    assert message.wanted == Status("progress", done=1, total=3)
    assert await statuses.settle(album[1]) is False
    assert await statuses.settle(album[2]) is True, "the last photo retires the shared message"
    assert statuses.status_message_id(album[0]) is None
