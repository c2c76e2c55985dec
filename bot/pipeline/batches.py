"""Batches: photos answered together, in order (an album, or the links of one message).

Telegram delivers an album as separate messages, not always in order, with no "album complete"
signal: a batch closes after a short quiet period with no new member. Each member is answered only
when it is the earliest open member of its closed batch, so answers go out in album order even when
the API finishes them out of order; a member that failed takes its turn like any other and holds the
rest back no longer than its own retries.

Admission is per batch too: once a batch's first photo is taken, its later photos are taken whole,
so a user within their limits never loses part of an album; once it is refused, the rest is too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot import errors
from bot.storage import JobRecord

#: Seconds without a new member after which an album is taken to be complete.
QUIET = 1.0
#: Seconds an admission decision is remembered for the batch's stragglers.
DECISION_TTL = 60.0


@dataclass
class _Batch:
    open: dict[str, int] = field(default_factory=dict)  # job id -> its order in the batch
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced by a fresh one on each change
    timer: asyncio.TimerHandle | None = None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Batches:
    def __init__(self, quiet: float = QUIET) -> None:
        self._quiet = quiet
        self._batches: dict[str, _Batch] = {}
        self._decisions: dict[str, tuple[float, errors.Refused | None]] = {}

    # --- admission ------------------------------------------------------------------------------
    def decided(self, batch_id: str) -> tuple[bool, errors.Refused | None]:
        """(whether the batch was already decided, the refusal if it was refused)."""
        now = time.monotonic()
        for key, (at, _) in list(self._decisions.items()):
            if now - at > DECISION_TTL:
                del self._decisions[key]
        if batch_id not in self._decisions:
            return False, None
        return True, self._decisions[batch_id][1]

    def decide(self, batch_id: str, refusal: errors.Refused | None) -> None:
        self._decisions[batch_id] = (time.monotonic(), refusal)

    # --- order ----------------------------------------------------------------------------------
    def join(self, job: JobRecord, *, complete: bool = False) -> None:
        """Count ``job`` in its batch; ``complete``: no more members will come (links, a restart)."""
        assert job.batch_id is not None
        batch = self._batches.setdefault(job.batch_id, _Batch())
        batch.open[job.id] = job.batch_index
        if batch.timer is not None:
            batch.timer.cancel()
        if complete:
            batch.closed = True
        elif not batch.closed:
            batch.timer = asyncio.get_running_loop().call_later(self._quiet, self._close, job.batch_id)

    def close(self, batch_id: str) -> None:
        """No more members will come."""
        batch = self._batches.get(batch_id)
        if batch is not None and batch.timer is not None:
            batch.timer.cancel()
        self._close(batch_id)

    def _close(self, batch_id: str) -> None:
        batch = self._batches.get(batch_id)
        if batch is not None:
            batch.closed = True
            batch.notify()

    async def turn(self, job: JobRecord) -> None:
        """Wait until ``job`` is the earliest open member of its closed batch."""
        batch = self._batches.get(job.batch_id) if job.batch_id else None
        if batch is None:
            return
        while not (batch.closed and _first(batch) == job.id):
            await batch.changed.wait()

    def leave(self, job: JobRecord) -> None:
        """``job`` is answered (or failed): the next member's turn."""
        batch = self._batches.get(job.batch_id) if job.batch_id else None
        if batch is None or batch.open.pop(job.id, None) is None:
            return
        if not batch.open and batch.closed:
            del self._batches[job.batch_id]  # type: ignore[arg-type]
        batch.notify()


def _first(batch: _Batch) -> str | None:
    return min(batch.open, key=lambda job_id: batch.open[job_id]) if batch.open else None
