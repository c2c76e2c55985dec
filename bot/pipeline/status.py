"""Status messages: what each waiting photo (or album) shows while it waits, kept in step with the line.

A single photo has its own status message; the photos of a batch (an album, or the links of one
message) share one, which shows how many are done. Edits are spaced out per message and capped per
tick, so status messages never crowd out answers in Telegram's budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bot.storage import JobRecord

#: Edits sent per tick at most: stay well inside Telegram's ~30 messages/s for everything else.
EDITS_PER_TICK = 10


@dataclass(frozen=True)
class Status:
    """What a status message says: ``received``, ``queued`` (with ``position``), ``outage`` (waiting for
    the API to come back), ``working``, or for a batch ``progress`` (``done`` of ``total`` finished)."""

    kind: str
    position: int | None = None
    done: int = 0
    total: int = 1


RECEIVED = Status("received")


@dataclass
class _Message:
    """One status message and the open jobs it speaks for."""

    job: JobRecord  # whose chat and status_message_id it edits
    batch: bool
    members: dict[str, Status] = field(default_factory=dict)
    finished: int = 0
    shown: Status = RECEIVED
    last_edit: float = 0.0
    edit: asyncio.Future[None] | None = None  # the edit in flight, awaited before the answer goes out

    @property
    def wanted(self) -> Status:
        statuses = list(self.members.values())
        if not self.batch:
            return statuses[0] if statuses else self.shown
        total = len(statuses) + self.finished
        if any(s.kind == "outage" for s in statuses):
            return Status("outage", total=total)
        if self.finished or any(s.kind == "working" for s in statuses):
            return Status("progress", done=self.finished, total=total)
        positions = [s.position for s in statuses if s.position is not None]
        if positions:
            return Status("queued", position=min(positions), total=total)
        return Status("received", total=total)


class StatusBoard:
    """Every status message in use, keyed by batch id (shared) or job id (a single photo)."""

    def __init__(
        self,
        show: Callable[[JobRecord, Status], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Future[None]],
    ) -> None:
        self._show = show
        self._spawn = spawn
        self._messages: dict[str, _Message] = {}
        #: What a photo waiting in line is shown: ``queued`` (its place), or ``outage`` while the API is down.
        self.line_status = "queued"

    @staticmethod
    def _key(job: JobRecord) -> str:
        return job.batch_id or job.id

    def track(self, job: JobRecord) -> None:
        """Show ``job`` on its status message (its batch's, shared, or its own)."""
        message = self._messages.get(self._key(job))
        if message is None:
            message = self._messages[self._key(job)] = _Message(job, batch=job.batch_id is not None)
        message.members.setdefault(job.id, RECEIVED)

    def want(self, job: JobRecord, kind: str, position: int | None = None) -> None:
        message = self._messages.get(self._key(job))
        if message is not None and job.id in message.members:
            if kind == "queued" and self.line_status == "outage":
                kind, position = "outage", None  # told once; its place means nothing until the API is back
            message.members[job.id] = Status(kind, position)

    def status_message_id(self, job: JobRecord) -> int | None:
        """The status message a batch already has, for its later members."""
        message = self._messages.get(self._key(job))
        return message.job.status_message_id if message is not None else None

    async def settle(self, job: JobRecord) -> bool:
        """``job`` is being answered: stop speaking for it. True when its status message now speaks
        for nobody (the caller may retire it); an edit in flight lands before the answer, not after."""
        message = self._messages.get(self._key(job))
        if message is None or message.members.pop(job.id, None) is None:
            return False
        message.finished += 1
        if message.members:
            return False
        del self._messages[self._key(job)]
        if message.edit is not None and not message.edit.done():
            await asyncio.wait([message.edit], timeout=2.0)
            message.edit.cancel()  # still held back by a rate limiter: it must not land after the answer
        return True

    def forget(self, job: JobRecord) -> None:
        message = self._messages.get(self._key(job))
        if message is not None:
            message.members.pop(job.id, None)
            if not message.members:
                del self._messages[self._key(job)]

    async def run(self, positions: Callable[[], dict[JobRecord, int]], tick: float = 0.5) -> None:
        """Keep status messages in step with the line, each edited at most once per interval."""
        while True:
            await asyncio.sleep(tick)
            for job, position in positions().items():
                self.want(job, "queued", position)
            now = time.monotonic()
            edits = 0
            for message in list(self._messages.values()):
                wanted = message.wanted
                if wanted == message.shown or message.job.status_message_id is None:
                    continue
                if message.edit is not None and not message.edit.done():
                    continue
                if now - message.last_edit < edit_interval(message.job, wanted):
                    continue
                message.shown = wanted
                message.edit = self._spawn(self._edit(message, wanted))
                edits += 1
                if edits >= EDITS_PER_TICK:
                    break

    async def _edit(self, message: _Message, status: Status) -> None:
        try:
            await self._show(message.job, status)
        finally:
            # Counted from when the edit is done: Telegram never sees two closer than the interval,
            # however long the rate limiter held this one back.
            message.last_edit = time.monotonic()


def edit_interval(job: JobRecord, wanted: Status) -> float:
    """Seconds between edits of one status message: 2 s near the front, rarer far back and in groups."""
    position = wanted.position or 0
    interval = 2.0 if wanted.kind != "queued" or position <= 5 else 5.0 if position <= 20 else 10.0
    return interval if job.is_private else max(interval, 6.0)
