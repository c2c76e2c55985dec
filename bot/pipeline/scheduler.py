"""Who goes next: the fair line, the workers, the API's QPS budget, and the line's life in an outage.

Jobs wait in a :class:`bot.fairqueue.FairQueue` (round-robin across users). A worker takes the next job
only once the budget has a start free for it, so the API sees the round-robin order. When the API is
down past every retry, the line stops: photos wait in it (told so once, by the status board), one job
at a time tries the API once per interval as a probe, and a photo that waited ``OUTAGE_HOLD_MINUTES``
fails with the outage's text.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bot import errors
from bot.budget import QpsBudget, Reservation, handed_over
from bot.fairqueue import FairQueue
from bot.logsetup import JOB_ID
from bot.observability import Metrics
from bot.pipeline.status import StatusBoard
from bot.storage import JobRecord

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        *,
        board: StatusBoard,
        process: Callable[[JobRecord], Coroutine[Any, Any, None]],
        expire: Callable[[JobRecord, errors.CutoutError], None],
        workers: int,
        budget: QpsBudget | None,
        metrics: Metrics,
        engine: str,
        outage_hold: float = 0.0,
        outage_probe: float = 30.0,
    ) -> None:
        self._board = board
        self._process = process  # cuts a job out and answers it (or puts it back in line)
        self._expire = expire  # fails a job that waited out its hold
        self._workers = workers
        self._budget = budget
        self._engine = engine
        self._queue: FairQueue[JobRecord] = FairQueue()
        metrics.queue_depth.set_function(self._queue.__len__)
        self._dispatch = asyncio.Lock()  # one worker at a time picks the next job
        self._queued = asyncio.Event()  # set whenever a job joins the line
        self._loops: list[asyncio.Task[None]] = []
        #: Jobs being cut out now (a stop lets them finish within its grace).
        self.working: set[asyncio.Task[None]] = set()
        self._closing = False
        self.outage_hold = outage_hold
        self._outage_probe = outage_probe
        self._outage: errors.CutoutError | None = None
        self._outage_began = 0.0
        self._api_up = asyncio.Event()
        self._api_up.set()
        self._held_since: dict[str, tuple[JobRecord, float]] = {}
        self._probe_task: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._closing = False
        for n in range(self._workers):
            self._loops.append(asyncio.create_task(self._worker(), name=f"cutout-worker-{n}"))

    def stop(self) -> list[asyncio.Task[None]]:
        """Stop taking jobs; the loops to wait for (jobs already taken go on: see :attr:`working`)."""
        self._closing = True
        loops = [*self._loops, *([self._probe_task] if self._probe_task else [])]
        for task in loops:
            task.cancel()
        self._loops.clear()
        return loops

    # --- the line -----------------------------------------------------------------------------
    def enqueue(self, job: JobRecord) -> None:
        self._queue.put(job.user_id, job)
        self._queued.set()
        if self._outage is not None:
            self._held_since.setdefault(job.id, (job, time.monotonic()))
        self._board.want(job, "queued", self._queue.position(job))

    def positions(self) -> dict[JobRecord, int]:
        return self._queue.positions()

    def forget(self, job: JobRecord) -> None:
        self._held_since.pop(job.id, None)

    def idle(self) -> bool:
        """Whether a job joining the line now would start at once: nobody waits and a worker is free."""
        return not self._queue and len(self.working) < self._workers

    def now(self) -> tuple[int, int]:
        """(jobs waiting in line, jobs being cut out now)."""
        return len(self._queue), len(self.working)

    # --- workers ------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while not self._closing:
            job, context = await self._next_job()
            task = self._run(job, context, name=f"cutout-job-{job.id[:8]}")
            try:
                # Shielded: a stop() lets the job finish within its grace period instead of killing it.
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():
                    raise
            except Exception:  # process() answers its own failures; a worker must outlive any job
                log.exception("job %s escaped its error handling", job.id)

    def _run(self, job: JobRecord, context: contextvars.Context | None, *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._process(job), name=name, context=tagged(job, context))
        self.working.add(task)
        task.add_done_callback(self.working.discard)
        return task

    async def _next_job(self) -> tuple[JobRecord, contextvars.Context | None]:
        """The next job in fair order, taken from the line only once the API budget can start it.

        Taking jobs sooner would let one user's album fill every worker, each waiting on the budget,
        ahead of everyone else. So one worker at a time reserves a start, then takes whoever is first
        in line at that moment; the job's first API request spends that start (``handed_over``).
        """
        async with self._dispatch:
            while True:
                if self._outage is not None:
                    await self._api_up.wait()  # the probe alone sends requests meanwhile
                    continue
                if not self._queue:
                    self._queued.clear()
                    await self._queued.wait()
                    continue
                reservation = await self._reserve_start()
                # Only an outage (its probe, a hold running out) takes jobs besides this worker: the start
                # then goes unused, which never costs a request.
                if self._queue and self._outage is None:
                    job = await self._queue.get()
                    return job, handed_over(reservation) if reservation is not None else None

    async def _reserve_start(self) -> Reservation | None:
        if self._budget is None:
            return None
        try:
            return await self._budget.reserve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job's own request meets the same trouble and says so
            log.warning("could not reserve an API start: %s", type(exc).__name__)
            return None

    # --- an API outage ------------------------------------------------------------------------
    @property
    def in_outage(self) -> bool:
        """The API is down: a request now is a probe (one try, then the job waits in line again)."""
        return self._outage is not None

    def api_down(self, failure: errors.CutoutError, retried_for: float) -> None:
        """The API failed past every retry: every photo in line waits (and is told so, once) while one
        request every ``outage_probe`` seconds checks whether it is back."""
        if self._outage is not None:
            return
        self._outage, self._outage_began = failure, time.monotonic()
        self._api_up.clear()
        self._board.line_status = "outage"
        for job in self._queue.positions():
            self._held_since.setdefault(job.id, (job, self._outage_began))
            self._board.want(job, "queued")
        log.warning(
            "%s is down (%s) past %g s of retries: photos wait in line for up to %g min; "
            "one request every %g s checks whether it is back",
            self._engine,
            type(failure).__name__,
            retried_for,
            self.outage_hold / 60,
            self._outage_probe,
        )
        self._probe_task = asyncio.create_task(self._probe(), name="outage-probe")

    def api_back(self) -> None:
        if self._outage is None:
            return
        log.warning(
            "%s is back after %.0f s: %d waiting photo(s) go ahead",
            self._engine,
            time.monotonic() - self._outage_began,
            len(self._queue),
        )
        self._outage = None
        self._board.line_status = "queued"
        self._held_since.clear()
        self._api_up.set()

    async def _probe(self) -> None:
        """One job at a time, in fair order, tries the API once per interval; its success ends the outage."""
        while self._outage is not None and not self._closing:
            await asyncio.sleep(self._outage_probe)
            if self._outage is None:
                break
            self._expire_held(self._outage)
            if self._queue:
                await asyncio.wait([self._run(await self._queue.get(), None, name="outage-probe-job")])

    def _expire_held(self, outage: errors.CutoutError) -> None:
        """Photos that waited out OUTAGE_HOLD_MINUTES fail with the text the outage's error has."""
        now = time.monotonic()
        for job_id, (job, since) in list(self._held_since.items()):
            if now - since >= self.outage_hold and self._queue.remove(job):
                del self._held_since[job_id]
                log.error("job %s waited %.0f min for %s: giving up", job.id, (now - since) / 60, self._engine)
                self._expire(job, copy.copy(outage))  # a copy: the failure path may adjust its text


def tagged(job: JobRecord, context: contextvars.Context | None) -> contextvars.Context:
    """``context`` (or a copy of the current one) in which log lines carry the job's id."""
    result = context if context is not None else contextvars.copy_context()
    result.run(JOB_ID.set, job.id)
    return result
