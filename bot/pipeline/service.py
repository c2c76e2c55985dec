"""The cutout service: accepted photos in, answers out, nothing lost on the way.

    submit() -> intake (download, validate, cache) -> fair queue -> workers (QPS-budgeted API calls,
    retries) -> the API's full-resolution result, cached -> render what the job's options ask for
    (sticker, PNG, JPG, print-ready prop) -> Messenger.send_*()

This module knows nothing of Telegram. It talks to the chat side through :class:`Messenger`, which
``handlers/`` implements. Every accepted job is in SQLite until it is answered, and open jobs are
resumed at start-up.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import hashlib
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot import errors
from bot.admission import UserLimits
from bot.backends.base import CutoutBackend, CutoutRequest
from bot.budget import QpsBudget, Reservation, handed_over
from bot.domain import CutoutOptions, JobState, Part
from bot.fairqueue import FairQueue
from bot.imaging import (
    RenderedCutout,
    prepare_upload,
    render_from_sticker,
    render_jpg_photo,
    render_prop,
    render_sticker,
    result_size,
)
from bot.logsetup import JOB_ID, job_context
from bot.observability import Metrics
from bot.pipeline.batches import Batches
from bot.pipeline.status import Status, StatusBoard
from bot.props import prop_file_name
from bot.storage import JobRecord, ResultRecord, Store, cache, usage
from bot.storage.disk import RECHECK_SECONDS, DiskSpace, HeldWrites, is_disk_full
from bot.storage.store import set_job

log = logging.getLogger(__name__)
T = TypeVar("T")

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
#: The API keeps a result an hour; a link's picture may change after that, so its cache entry does not last.
LINK_CACHE_SECONDS = 3600.0
#: A task made before a restart is resumed while the API surely still keeps it (results live an hour).
TASK_RESUME_SECONDS = 3000.0


@dataclass(frozen=True)
class JobSpec:
    """What the chat side knows about a photo when it arrives."""

    user_id: int
    chat_id: int
    chat_type: str
    message_id: int
    file_id: str
    file_unique_id: str
    origin_message_id: int | None = None  # the message that asked; one job per message, ever
    file_size: int | None = None
    file_name: str | None = None
    mime: str | None = None
    thread_id: int | None = None
    lang: str | None = None
    options: CutoutOptions = field(default_factory=CutoutOptions)
    source_name: str | None = None  # the user's file name, for naming props; None for a camera photo
    url: str | None = None  # a link to the picture: the API fetches it (file_id is then empty)
    batch_id: str | None = None  # answered together with the rest of its batch, in batch_index order
    batch_index: int = 0
    origin_part: int = 0  # which of the message's requests this is (several links in one message)


@dataclass(frozen=True)
class SentSticker:
    """The chat side's ids of a sticker it sent: reused for the next send, for inline mode and packs."""

    file_id: str
    file_unique_id: str


@dataclass(frozen=True)
class Sticker:
    """A job's 512 px cutout, as a sticker (WEBP) and a transparent PNG of the same picture."""

    cutout_id: int | None  # its id in the store (pack buttons, inline mode); None while it could not be recorded
    webp: bytes = field(repr=False)
    png: bytes = field(repr=False)


@dataclass(frozen=True)
class PropFile:
    """A print-ready prop on disk, ready to send as a document."""

    path: Path
    file_name: str
    width: int
    height: int
    scale: float  # 1.0 at the API's full resolution; less when shrunk under the upload limit


class _NotCached(Exception):
    """The cache cannot answer this job: the API's result is not (or no longer) on disk."""


@dataclass
class _Line:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class _HeldForOutage(Exception):
    """The API is down past every retry: the job goes back in line until it is back (or its hold ends)."""


class Messenger(Protocol):
    """The chat side of a job. Implemented in ``handlers/``; every method may raise on network trouble."""

    async def acknowledge(self, job: JobRecord) -> int | None:
        """Show that the photo was received; return the id of the status message, if one was sent."""

    async def download(self, job: JobRecord) -> bytes: ...

    async def ping(self) -> None:
        """Raise unless the chat side answers (asked while it is unreachable, to know when it is back)."""

    async def fetch_sticker(self, file_id: str) -> bytes:
        """The bytes of a sticker sent earlier, by the chat side's id of it (it outlives our cache)."""

    async def show_status(self, job: JobRecord, status: Status) -> None:
        """Edit the job's (or its batch's) status message."""

    async def chat_action(self, job: JobRecord) -> None: ...

    async def send_sticker(self, job: JobRecord, sticker: Sticker, known_id: str | None) -> SentSticker | None:
        """Send the sticker (re-using ``known_id``, the chat side's id of it, when it still works)."""

    async def send_png(self, job: JobRecord, sticker: Sticker, *, pack_button: bool, offline: bool) -> None:
        """Send the transparent 512 px PNG (with the pack button when no sticker carries it); ``offline``:
        say that the fallback engine made it."""

    async def send_jpg(self, job: JobRecord, jpg: bytes, *, offline: bool) -> None:
        """Send the cutout on white as a photo."""

    async def send_prop(self, job: JobRecord, prop: PropFile) -> None:
        """Send the print-ready prop as a document."""

    async def finish(self, job: JobRecord) -> None:
        """Every part is sent (of every photo of its batch): retire the status message."""

    async def fail(self, job: JobRecord, error: errors.CutoutError) -> None: ...

    async def alert_admins(self, text_key: str, lang: str | None, **values: Any) -> None:
        """Tell the bot's admins (in the language of the job that ran into it, if one did)."""


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in total time before the user hears anything."""

    base: float = 1.0
    cap: float = 15.0
    total: float = 90.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.base / 2, min(self.cap, self.base * 2**attempt))


@dataclass
class ServiceStats:
    accepted: int = 0
    answered: int = 0
    failed: int = 0
    cache_hits: int = 0
    api_calls: int = 0


class CutoutService:
    def __init__(
        self,
        *,
        store: Store,
        backend: CutoutBackend,
        data_dir: Path,
        fallback: CutoutBackend | None = None,
        limits: UserLimits,
        workers: int = 4,
        budget: QpsBudget | None = None,
        intake_concurrency: int = 4,
        retry: RetryPolicy | None = None,
        chat_action_every: float = 4.0,
        metrics: Metrics | None = None,
        disk: DiskSpace | None = None,
        outage_hold: float = 0.0,
        outage_probe: float = 30.0,
    ) -> None:
        self.store = store
        self.backend = backend
        self.fallback = fallback  # answers, and says so, while the backend fails for good
        self.limits = limits
        self.retry = retry or RetryPolicy()
        self.stats = ServiceStats()
        self.metrics = metrics or Metrics()
        self.disk = disk or DiskSpace(data_dir, 0)
        self._held = HeldWrites()  # what a full disk could not take yet; answered from memory meanwhile
        self._held_results: dict[str, ResultRecord] = {}
        self._held_renders: dict[str, Sticker] = {}
        self._disk_watch: asyncio.Task[None] | None = None
        # An outage: the API failed past every retry. Jobs wait in line (up to outage_hold seconds each)
        # while one request every outage_probe seconds checks whether it is back.
        self._outage_hold = outage_hold
        self._outage_probe = outage_probe
        self._outage: errors.CutoutError | None = None
        self._outage_began = 0.0
        self._api_up = asyncio.Event()
        self._api_up.set()
        self._held_since: dict[str, tuple[JobRecord, float]] = {}
        self._probe_task: asyncio.Task[None] | None = None
        self._chat_up = asyncio.Event()  # cleared while the chat side cannot be reached
        self._chat_up.set()
        self._chat_down_since = 0.0
        self._resume_lines: dict[int, _Line] = {}  # per chat: answers that waited go out in turn
        self._incoming = data_dir / "incoming"
        self._cutouts = data_dir / "cutouts"
        self._results = data_dir / "results"
        self._props = data_dir / "props"
        for folder in (self._incoming, self._cutouts, self._results, self._props):
            folder.mkdir(parents=True, exist_ok=True)
        self._workers = workers
        self._intake_slots = asyncio.Semaphore(intake_concurrency)
        self._chat_action_every = chat_action_every
        self._queue: FairQueue[JobRecord] = FairQueue()
        self.metrics.queue_depth.set_function(self._queue.__len__)
        self._budget = budget
        self._dispatch = asyncio.Lock()  # one worker at a time picks the next job
        self._queued = asyncio.Event()  # set whenever a job joins the line
        self._board = StatusBoard(self._show_status, self._spawn)
        self._batches = Batches()
        self._acks: dict[str, asyncio.Future[int | None]] = {}  # a batch's shared status message
        self._inflight: dict[str, asyncio.Future[ResultRecord]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._working: set[asyncio.Task[None]] = set()
        self._messenger: Messenger | None = None
        self._closing = False
        self._key_incident = False
        self._started_at: dict[str, float] = {}

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self, messenger: Messenger) -> None:
        """Start the workers and resume every job that was accepted but not answered."""
        self._messenger = messenger
        self._closing = False
        for n in range(self._workers):
            self._loops.append(asyncio.create_task(self._worker(), name=f"cutout-worker-{n}"))
        self._loops.append(asyncio.create_task(self._board.run(self._queue.positions), name="cutout-status"))
        resumed = self.store.open_jobs()
        for job in resumed:
            self._board.track(job)
            if job.batch_id is not None:
                self._batches.join(job, complete=True)  # its stragglers arrived long ago, or never will
        for job in resumed:
            if job.state is JobState.DELIVERING:
                self._spawn(self._finish_delivery(job), job)
            elif job.state in (JobState.QUEUED, JobState.WORKING) and self._incoming_path(job).exists():
                self._enqueue(job)
            else:
                self._spawn(self._intake(job), job)
        if resumed:
            log.info("resumed %d unanswered job(s)", len(resumed))

    async def stop(self, grace: float = 7.0) -> None:
        """Stop taking work, let jobs in flight finish within ``grace`` seconds; the rest stay in SQLite."""
        self._closing = True
        for task in self._loops:
            task.cancel()
        pending = self._tasks | self._working
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
                log.info("%d job(s) left unanswered for the next start", len(still))
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        for watcher in (self._disk_watch, self._probe_task):
            if watcher is not None:
                watcher.cancel()
        if self._held and not await self._flush_held():
            log.error("the disk is still full: %d write(s) held in memory are lost at exit", len(self._held))

    @property
    def messenger(self) -> Messenger:
        if self._messenger is None:
            raise RuntimeError("CutoutService.start() was not called")
        return self._messenger

    # --- accepting photos ---------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> JobRecord:
        """Accept a photo or raise: :class:`errors.Refused` (limits, restarting) or a BadInput known up front.

        On success the job is in SQLite and will be answered, whatever happens to this process.
        """
        if spec.origin_message_id is not None and (
            seen := self.store.job_for_origin(spec.chat_id, spec.origin_message_id, spec.origin_part)
        ):
            log.info(
                "message %s in chat %s asked before (job %s): not a new job",
                spec.origin_message_id,
                spec.chat_id,
                seen.id,
            )
            return seen
        if self._closing:
            raise errors.Refused("shutting_down")
        if spec.file_size is not None and spec.file_size > TELEGRAM_DOWNLOAD_LIMIT:
            raise errors.FileTooBig(f"{spec.file_size} bytes")
        if spec.file_size == 0:
            raise errors.EmptyFile()
        if self._disk_watch is not None or self.disk.low():
            self._out_of_space()
            raise errors.Refused("disk_full")
        self._admit(spec)
        try:
            job = self.store.new_job(**spec.__dict__)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            raise errors.Refused("disk_full") from None
        self.stats.accepted += 1
        self.metrics.photos_received.inc()
        self._tally(usage.PHOTOS, str(job.user_id))
        self._board.track(job)
        if job.batch_id is not None:
            self._batches.join(job)
        self._started_at[job.id] = time.monotonic()
        with job_context(job.id):
            kind = "link" if job.url else "picture"
            log.info("job %s: a %s from user %s in chat %s", job.id, kind, job.user_id, job.chat_id)
        self._spawn(self._intake(job), job)
        return job

    def _admit(self, spec: JobSpec) -> None:
        """The per-user limits; a batch is decided once, by its first photo, and taken or refused whole."""
        if spec.batch_id is not None:
            decided, refusal = self._batches.decided(spec.batch_id)
            if refusal is not None:
                raise refusal
            if decided:
                self.limits.record(spec.user_id)
                return
        admission = self.limits.try_admit(spec.user_id, self.store.count_open_jobs(spec.user_id))
        refusal = None if admission.ok else errors.Refused(admission.reason or "busy", admission.retry_after)
        if spec.batch_id is not None:
            self._batches.decide(spec.batch_id, refusal)
        if refusal is not None:
            raise refusal

    def close_batch(self, batch_id: str) -> None:
        """Every photo of the batch is submitted (the links of one message): no need to wait for more."""
        self._batches.close(batch_id)

    def pending(self, user_id: int) -> int:
        return self.store.count_open_jobs(user_id)

    def queue_now(self) -> tuple[int, int]:
        """(jobs waiting in line for the API, jobs being cut out now)."""
        return len(self._queue), len(self._working)

    def _tally(self, name: str, label: str = "") -> None:
        """Count an event for /stats (held with the rest while the disk is full); never fails the photo."""
        try:
            self._db(partial(self.store.count, name, label, at=time.time()))
        except sqlite3.Error as exc:
            log.warning("could not count %s: %s", name, exc)

    # --- intake: download, validate, cache --------------------------------------------------------
    async def _intake(self, job: JobRecord) -> None:
        try:
            key = await self._reaching_chat(job, lambda: self._take_in(job))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._conclude(job, None, _as_cutout_error(exc, job, "intake"))
            return
        if key is not None:
            await self._conclude(job, key, None, from_cache=True)
            return
        self._save(job, state=JobState.QUEUED)
        self._enqueue(job)

    async def _take_in(self, job: JobRecord) -> str | None:
        if job.status_message_id is None:
            status_id = await self._acknowledge(job)
            self._save(job, status_message_id=status_id)
        return await self._cached_key(job)

    def _file_options(self, job: JobRecord) -> str:
        """What a Telegram file's cache entry depends on besides the file: the options and the engine."""
        engine = "" if self.backend.name == "picwish" else f";engine={self.backend.name}"
        return job.options.api_key + engine

    async def _acknowledge(self, job: JobRecord) -> int | None:
        """The status message: one per photo, or one shared by a whole batch."""
        if job.batch_id is None:
            return await self.messenger.acknowledge(job)
        shared = self._acks.get(job.batch_id)
        if shared is None or (shared.done() and (shared.cancelled() or shared.exception() is not None)):
            shared = self._acks[job.batch_id] = asyncio.ensure_future(self.messenger.acknowledge(job))
        return await asyncio.shield(shared)

    async def _cached_key(self, job: JobRecord) -> str | None:
        """Check the photo (downloading it if needed) and return its cache key when the cache can answer
        it; otherwise leave it ready for the API (its prepared upload on disk)."""
        if job.url is not None:
            key = url_key(job.url, job.options)
            self._save(job, cache_key=key)
            return key if await self._cache_answers(job, key) else None
        known = self.store.key_for_file(job.file_unique_id, self._file_options(job))
        if known is not None and await self._cache_answers(job, known):
            return known
        async with self._intake_slots:
            raw = await self.messenger.download(job)
            prepared = await asyncio.to_thread(prepare_upload, raw)
            del raw
            key = result_key(prepared.sha256, job.options, self.backend.name)
            self._save(job, cache_key=key)
            options = self._file_options(job)
            self._db(lambda: self.store.remember_file(job.file_unique_id, options, key))
            if key != known and await self._cache_answers(job, key):  # the same key was just asked
                return key
            await self._write({self._incoming_path(job): prepared.data})
            self._save(job, file_name=prepared.filename, mime=prepared.mime)
        return None

    async def _cache_answers(self, job: JobRecord, key: str) -> bool:
        """Whether the cache holds what the job asks for; raise a failure remembered for the image."""
        self._raise_known_failure(key)
        if self._fresh_result(job, key) is None and not await self._render_answers(job, key):
            return False
        try:
            if job.options.needs_sticker:
                await self._sticker(job, key)  # rendered now, so a vanished file is still a plain miss
        except _NotCached:
            return False
        return True

    def _fresh_result(self, job: JobRecord, key: str) -> ResultRecord | None:
        """The cached API result; a link's only for the hour the picture behind it is taken to stay."""
        result = self._held_results.get(key) or self.store.result_by_key(key)
        if (
            result is not None
            and job.url is not None
            and time.time() - result.created_at > LINK_CACHE_SECONDS
        ):
            return None
        return result

    async def _render_answers(self, job: JobRecord, key: str) -> bool:
        """Without the API's result (evicted, or a cache made before results were kept), a job that asks
        for the 512 px sticker and PNG only is answered by their render: on disk, or fetched back from the
        chat side, which still holds the sticker it was sent."""
        if not set(job.options.parts) <= {Part.STICKER, Part.PNG}:
            return False
        variant = sticker_key(key, job.options)
        if self.store.cutout_by_key(variant) is not None:
            return True
        return job.url is None and await self._restore_from_chat(variant)

    async def _restore_from_chat(self, variant: str) -> bool:
        """Rebuild an evicted 512 px render from the sticker the chat side holds (lossless, so the PNG made
        from it is the same picture): no API call."""
        record = self.store.cutout_record(variant)
        file_id = self.store.sticker_file_id(record.id) if record is not None else None
        if record is None or file_id is None:
            return False
        try:
            rendered = await asyncio.to_thread(render_from_sticker, await self.messenger.fetch_sticker(file_id))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # gone from the chat side too, or unreadable: the API makes it again
            log.info("could not restore cutout %d from its sticker: %s", record.id, type(exc).__name__)
            return False
        await self._keep_render(variant, rendered)
        log.info("cutout %d restored from the sticker the chat holds, at no API cost", record.id)
        return True

    def _raise_known_failure(self, cache_key: str) -> None:
        """The same image already failed for good (no face, refused): answer so again, at no cost."""
        if (text_key := self.store.failed_text(cache_key)) is not None:
            self.stats.cache_hits += 1
            self.metrics.cache_hits.inc()
            self._tally(usage.CACHE_HITS)
            raise errors.KnownFailure(text_key)

    def _enqueue(self, job: JobRecord) -> None:
        self._queue.put(job.user_id, job)
        self._queued.set()
        if self._outage is not None:
            self._held_since.setdefault(job.id, (job, time.monotonic()))
        self._board.want(job, "queued", self._queue.position(job))

    # --- workers ------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while not self._closing:
            job, context = await self._next_job()
            task = asyncio.create_task(
                self._process(job), name=f"cutout-job-{job.id[:8]}", context=_tagged(job, context)
            )
            self._working.add(task)
            try:
                # Shielded: a stop() lets the job finish within its grace period instead of killing it.
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():
                    raise
            except Exception:  # _process answers its own failures; a worker must outlive any job
                log.exception("job %s escaped its error handling", job.id)
            finally:
                if task.done():
                    self._working.discard(task)
                else:
                    task.add_done_callback(self._working.discard)

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
        except Exception as exc:  # Redis unreachable: the job's own request meets the same error and says so
            log.warning("could not reserve an API start: %s", type(exc).__name__)
            return None

    async def _process(self, job: JobRecord) -> None:
        self._save(job, state=JobState.WORKING)
        probe = self._outage is not None  # the user keeps seeing that the service is down
        if not probe:
            self._board.want(job, "working")
        action = asyncio.create_task(self._chat_action_loop(job)) if not probe else None
        key = job.cache_key
        assert key is not None
        error: errors.CutoutError | None = None
        try:
            key = (await self._cutout_once(job, key)).cache_key  # another key: the fallback made it
        except asyncio.CancelledError:
            raise
        except _HeldForOutage:
            self._save(job, state=JobState.QUEUED)
            self._enqueue(job)
            return
        except Exception as exc:
            error = _as_cutout_error(exc, job, "cutout")
        finally:
            if action is not None:
                action.cancel()
        if job.batch_id is None:
            await self._conclude(job, key, error)
        else:  # it may wait for its turn in the batch: not on a worker, which the earlier photos need
            self._spawn(self._conclude(job, key, error))

    async def _cutout_once(self, job: JobRecord, key: str) -> ResultRecord:
        """The API's result for this job's image: from the cache, from an identical job in flight, or the API."""
        if (cached := self._fresh_result(job, key)) is not None:
            return cached
        if (twin := self._inflight.get(key)) is not None:
            return await asyncio.shield(twin)
        future: asyncio.Future[ResultRecord] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            record = await self._make_cutout(job, key)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else errors.CutoutError("cancelled"))
                future.exception()  # mark retrieved: twins may not exist
            raise
        else:
            future.set_result(record)
            return record
        finally:
            self._inflight.pop(key, None)

    async def _make_cutout(self, job: JobRecord, key: str) -> ResultRecord:
        """One paid API call; its full-resolution answer is kept, every variant is rendered from it."""
        data = b"" if job.url else await self._read(self._incoming_path(job))
        log.info("job %s: to %s (%s)", job.id, self.backend.name, job.options.api_key)
        fresh = job.task_id is not None and time.time() - (job.task_at or 0.0) < TASK_RESUME_SECONDS
        request = CutoutRequest(
            image=data,
            filename=job.file_name or "photo.jpg",
            mime=job.mime or "image/jpeg",
            image_url=job.url,
            crop=job.options.crop,
            output_format=job.options.output.api_format,
            resume_task=job.task_id if fresh else None,
            on_task=lambda task_id: self._save(job, task_id=task_id, task_at=time.time()),
            on_created=lambda: self._tally(usage.API_TASKS),
        )
        try:
            result = await self._call_with_retries(request, job.lang)
        except errors.CutoutError as exc:
            if self.fallback is not None and job.url is None and _persistent(exc):
                return await self._fall_back(job, key, request, exc)
            if exc.outage and self._outage_hold > 0:
                self._api_down(exc)
                raise _HeldForOutage() from exc
            raise
        return await self._keep(key, result, job.options.output.api_format)

    async def _fall_back(
        self, job: JobRecord, key: str, request: CutoutRequest, failure: errors.CutoutError
    ) -> ResultRecord:
        """The backend failed for good (a rejected key, an outage past the retries): the fallback engine
        cuts the photo out instead, under a key of its own, so its result is never served as the API's."""
        assert self.fallback is not None
        offline_key = hashlib.sha256(f"{key}|engine={self.fallback.name}".encode()).hexdigest()
        if (cached := self.store.result_by_key(offline_key)) is not None:
            return cached
        log.warning(
            "job %s: %s failed for good (%s); using the %s engine",
            job.id,
            self.backend.name,
            type(failure).__name__,
            self.fallback.name,
        )
        result = await self.fallback.cutout(request)
        return await self._keep(offline_key, result, job.options.output.api_format)

    async def _keep(self, key: str, result: bytes, extension: str) -> ResultRecord:
        """Keep the API's answer (paid for): on disk, or in memory while the disk is full."""
        path = self._results / key[:2] / f"{key}.{extension}"
        width, height = await asyncio.to_thread(result_size, result)
        record = ResultRecord(key, str(path), width, height, time.time())
        held = not await self._write({path: result})
        held |= not self._db(lambda: self.store.add_result(key, str(path), width, height))
        if held:
            self._held_results[key] = record
        return record

    # --- rendering: every variant from the one result -------------------------------------------
    async def _sticker(self, job: JobRecord, key: str) -> Sticker:
        """The 512 px sticker and PNG for the job's render options, rendered once and kept."""
        variant = sticker_key(key, job.options)
        if (held := self._held_renders.get(variant)) is not None:
            return held
        if (cached := self.store.cutout_by_key(variant)) is not None:
            try:
                webp, png = await asyncio.to_thread(_read_used_pair, cached.sticker_path, cached.png_path)
                return Sticker(cached.id, webp, png)
            except FileNotFoundError:
                pass  # evicted since: rendered again
        result = await self._result_bytes(key)
        rendered = await asyncio.to_thread(
            render_sticker, result, crop=job.options.crop, outline=job.options.outline
        )
        return await self._keep_render(variant, rendered)

    async def _keep_render(self, variant: str, rendered: RenderedCutout) -> Sticker:
        """Keep a 512 px render: on disk and in the store, or in memory while the disk is full."""
        sticker_path, png_path = self._cutout_paths(variant)
        written = await self._write({sticker_path: rendered.sticker_webp, png_path: rendered.png})
        try:
            record = self.store.add_cutout(
                variant, str(sticker_path), str(png_path), rendered.width, rendered.height
            )
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            self._held.row(
                lambda: self.store.add_cutout(
                    variant, str(sticker_path), str(png_path), rendered.width, rendered.height
                )
            )
            written, record = False, None
        sticker = Sticker(record.id if record else None, rendered.sticker_webp, rendered.png)
        if not written:
            self._held_renders[variant] = sticker
        return sticker

    async def _prop(self, job: JobRecord, key: str) -> PropFile:
        """The print-ready prop at the API's full resolution, written under DATA_DIR/props for /zip."""
        result = await self._result_bytes(key)
        prop = await asyncio.to_thread(
            render_prop, result, crop=job.options.crop, outline=job.options.outline
        )
        del result
        path = self._props / str(job.chat_id) / f"{job.id}.{prop.extension}"
        await self._write({path: prop.data})
        name = prop_file_name(job.source_name, job.message_id, prop.extension)
        return PropFile(path, name, prop.width, prop.height, prop.scale)

    async def _result_bytes(self, key: str) -> bytes:
        result = self._held_results.get(key) or self.store.result_by_key(key)
        if result is None:
            raise _NotCached(key)
        try:
            return await self._read(Path(result.path))
        except FileNotFoundError:
            raise _NotCached(key) from None

    async def _call_with_retries(self, request: CutoutRequest, lang: str | None) -> bytes:
        deadline = time.monotonic() + self.retry.total
        attempt = 0
        while True:
            try:
                self.stats.api_calls += 1
                result = await self.backend.cutout(request)
            except errors.Unauthorized:
                await self._key_rejected(lang)
                raise
            except errors.CutoutError as exc:
                # A 429's Retry-After is a floor: the QPS budget is paused that long anyway.
                delay = max(self.retry.delay(attempt), getattr(exc, "retry_after", 0.0))
                # In an outage a request is a probe: one try, then the job waits in line again.
                if not exc.retryable or time.monotonic() + delay > deadline or self._outage is not None:
                    raise
                attempt += 1
                log.warning("cutout attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
                await asyncio.sleep(delay)
                if isinstance(exc, errors.ApiTimeout | errors.NetworkError | errors.ServerError):
                    # The sync endpoint is struggling: the async task API is the documented fallback.
                    request = CutoutRequest(**{**request.__dict__, "prefer_async": True})
            else:
                self._api_back()
                await self._key_accepted(lang)
                return result

    # --- the chat side unreachable -------------------------------------------------------------
    async def _reaching_chat(self, job: JobRecord, send: Callable[[], Awaitable[T]]) -> T:
        """Run ``send`` (it talks to the job's chat); while the chat side is unreachable, wait until it is
        back and run it again: answers are kept, not failed, and go out one at a time per chat, in the
        order they waited."""
        if self._chat_up.is_set():
            try:
                return await send()
            except errors.ChatUnreachable as exc:
                self._chat_down(exc)
        line = self._resume_lines.setdefault(job.chat_id, _Line())
        line.users += 1
        try:
            async with line.lock:
                while True:
                    await self._chat_up.wait()
                    try:
                        return await send()
                    except errors.ChatUnreachable as exc:
                        self._chat_down(exc)
        finally:
            line.users -= 1
            if not line.users:
                del self._resume_lines[job.chat_id]

    def _chat_down(self, failure: errors.ChatUnreachable) -> None:
        if not self._chat_up.is_set():
            return
        self._chat_up.clear()
        self._chat_down_since = time.monotonic()
        log.warning("the chat side is unreachable (%s): answers wait until it is back", failure)
        self._spawn(self._watch_chat())

    async def _watch_chat(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.messenger.ping()
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = min(delay * 2, 30.0)
        log.warning("the chat side is back after %.0f s", time.monotonic() - self._chat_down_since)
        self._chat_up.set()

    # --- an API outage ------------------------------------------------------------------------
    def _api_down(self, failure: errors.CutoutError) -> None:
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
            self.backend.name,
            type(failure).__name__,
            self.retry.total,
            self._outage_hold / 60,
            self._outage_probe,
        )
        self._probe_task = asyncio.create_task(self._probe(), name="outage-probe")

    def _api_back(self) -> None:
        if self._outage is None:
            return
        log.warning(
            "%s is back after %.0f s: %d waiting photo(s) go ahead",
            self.backend.name,
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
            self._expire_held()
            if not self._queue:
                continue
            job = await self._queue.get()
            task = asyncio.create_task(self._process(job), name="outage-probe-job", context=_tagged(job, None))
            self._working.add(task)
            task.add_done_callback(self._working.discard)
            await asyncio.wait([task])

    def _expire_held(self) -> None:
        """Photos that waited out OUTAGE_HOLD_MINUTES fail with the text the outage's error has."""
        assert self._outage is not None
        now = time.monotonic()
        for job_id, (job, since) in list(self._held_since.items()):
            if now - since >= self._outage_hold and self._queue.remove(job):
                del self._held_since[job_id]
                log.error("job %s waited %.0f min for %s: giving up", job.id, (now - since) / 60, self.backend.name)
                self._spawn(self._conclude(job, None, copy.copy(self._outage)), job)

    async def _key_rejected(self, lang: str | None) -> None:
        if not self._key_incident:
            self._key_incident = True
            log.error("PicWish rejected the API key (HTTP 401); alerting admins")
            await _quietly(self.messenger.alert_admins("admin_key_rejected", lang))

    async def _key_accepted(self, lang: str | None) -> None:
        if self._key_incident:
            self._key_incident = False
            await _quietly(self.messenger.alert_admins("admin_key_recovered", lang))

    # --- answers ------------------------------------------------------------------------------
    async def _conclude(
        self, job: JobRecord, key: str | None, error: errors.CutoutError | None, *, from_cache: bool = False
    ) -> None:
        """Answer the job, or tell its user why not; a failure while answering is told too."""
        if error is None and key is not None:
            try:
                await self._answer(job, key, from_cache=from_cache)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = _as_cutout_error(exc, job, "answer")
        await self._fail(job, error or errors.CutoutError("no cache key"))

    async def _answer(self, job: JobRecord, key: str, *, from_cache: bool) -> None:
        await self._batches.turn(job)
        retire = await self._board.settle(job)
        if from_cache:
            self.stats.cache_hits += 1
            self.metrics.cache_hits.inc()
            self._tally(usage.CACHE_HITS)
        await self._reaching_chat(job, lambda: self._deliver(job, key))
        self._save(job, state=JobState.DONE, cache_key=key)
        self.stats.answered += 1
        self.metrics.photos_answered.inc()
        self._tally(usage.CUTOUTS)
        if (started := self._started_at.pop(job.id, None)) is not None:
            log.info(
                "job %s answered in %.1f s%s",
                job.id,
                time.monotonic() - started,
                " (cached)" if from_cache else "",
            )
        await self._leave(job, retire)

    async def _fail(self, job: JobRecord, error: errors.CutoutError) -> None:
        if job.url is not None:
            error.text_key = error.link_text_key or error.text_key  # the link was the trouble
        elif error.final and job.cache_key and not isinstance(error, errors.KnownFailure):
            cache_key, text_key = job.cache_key, error.text_key
            self._db(lambda: self.store.remember_failure(cache_key, text_key))
        await self._batches.turn(job)
        retire = await self._board.settle(job)
        log.info("job %s failed: %s (%s)", job.id, type(error).__name__, error.text_key)
        self.stats.failed += 1
        self.metrics.photos_failed.labels(error.text_key).inc()
        self._tally(usage.FAILURES, error.text_key)
        try:
            await self._reaching_chat(job, lambda: self.messenger.fail(job, error))
        except asyncio.CancelledError:
            raise  # still open in SQLite: the next start tells them
        except Exception as exc:  # blocked by the user, chat gone, Telegram down past every retry
            log.warning("could not tell the user job %s failed: %s", job.id, type(exc).__name__)
        self._save(job, state=JobState.FAILED, error=type(error).__name__)
        self._started_at.pop(job.id, None)
        # A single photo's status message now says what went wrong; a batch's shared one goes.
        await self._leave(job, retire and job.batch_id is not None)

    async def _leave(self, job: JobRecord, retire: bool) -> None:
        """The job is finished: the next photo of its batch may go; its status message may retire."""
        self._batches.leave(job)
        if retire:
            if job.batch_id is not None:
                self._acks.pop(job.batch_id, None)
            await _quietly(self.messenger.finish(job))
        self._forget(job)

    def _parts(self, job: JobRecord) -> tuple[Part, ...]:
        """The parts of the job's answer; in a chat that refuses stickers, the PNG stands in for them."""
        parts = job.options.parts
        if Part.STICKER in parts and self.store.chat_settings(job.chat_id).no_stickers:
            parts = tuple(p for p in parts if p is not Part.STICKER)
            if Part.PNG not in parts:
                parts = (Part.PNG, *parts)
        return parts

    async def _deliver(self, job: JobRecord, key: str) -> None:
        """Send the parts of the answer not sent yet, in order; each sent part is recorded at once,
        so a restart sends only the rest, never a part twice."""
        offline = self.fallback is not None and job.cache_key is not None and key != job.cache_key
        parts = self._parts(job)
        sticker: Sticker | None = None  # the 512 px render the sticker and the PNG share
        while job.parts_sent < len(parts):
            part = parts[job.parts_sent]
            if part in (Part.STICKER, Part.PNG) and sticker is None:
                sticker = await self._sticker(job, key)
            try:
                await self._send_part(
                    job, key, part, sticker, pack_button=Part.STICKER not in parts, offline=offline
                )
            except errors.StickersRefused:
                log.info("chat %s refuses stickers: answering there without them", job.chat_id)
                settings = replace(self.store.chat_settings(job.chat_id), no_stickers=True)
                self._db(partial(self.store.save_chat_settings, settings))
                parts = self._parts(job)
                continue
            self._save(job, state=JobState.DELIVERING, parts_sent=job.parts_sent + 1, cache_key=key)

    async def _send_part(
        self,
        job: JobRecord,
        key: str,
        part: Part,
        sticker: Sticker | None,
        *,
        pack_button: bool,
        offline: bool,
    ) -> None:
        if part is Part.STICKER:
            assert sticker is not None
            cutout_id = sticker.cutout_id
            known = self.store.sticker_file_id(cutout_id) if cutout_id is not None else None
            sent = await self.messenger.send_sticker(job, sticker, known)
            if sent is not None and cutout_id is not None:
                self._db(
                    lambda: self.store.remember_sent_sticker(
                        job.user_id, cutout_id, sent.file_id, sent.file_unique_id
                    )
                )
        elif part is Part.PNG:
            assert sticker is not None
            await self.messenger.send_png(job, sticker, pack_button=pack_button, offline=offline)
        elif part is Part.JPG:
            jpg = await asyncio.to_thread(render_jpg_photo, await self._result_bytes(key))
            await self.messenger.send_jpg(job, jpg, offline=offline)
        else:
            prop = await self._prop(job, key)
            await self.messenger.send_prop(job, prop)
            self._db(lambda: self.store.add_prop(job.chat_id, job.id, str(prop.path), prop.file_name))

    async def _finish_delivery(self, job: JobRecord) -> None:
        """A job whose answer was partly sent before a restart: send the rest, never a part again."""
        retire = await self._board.settle(job)
        try:
            if (key := job.cache_key) is not None:
                await self._reaching_chat(job, lambda: self._deliver(job, key))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the first part is their answer; the rest is best effort
            log.warning("could not finish answering job %s: %s", job.id, type(exc).__name__)
        self._save(job, state=JobState.DONE)
        self.stats.answered += 1
        self.metrics.photos_answered.inc()
        self._tally(usage.CUTOUTS)
        await self._leave(job, retire)

    def _forget(self, job: JobRecord) -> None:
        self._board.forget(job)
        self._held_since.pop(job.id, None)
        self._held.discard(self._incoming_path(job))
        self._incoming_path(job).unlink(missing_ok=True)

    # --- feedback -----------------------------------------------------------------------------
    async def _show_status(self, job: JobRecord, status: Status) -> None:
        await _quietly(self.messenger.show_status(job, status))

    async def _chat_action_loop(self, job: JobRecord) -> None:
        while True:
            await _quietly(self.messenger.chat_action(job))
            await asyncio.sleep(self._chat_action_every)

    # --- files --------------------------------------------------------------------------------
    def _incoming_path(self, job: JobRecord) -> Path:
        return self._incoming / f"{job.id}.img"


    async def _write(self, files: dict[Path, bytes]) -> bool:
        """Write files off the loop; True if they are on disk, False if the disk is full and they are held
        in memory until it is not (they are read from there meanwhile)."""
        try:
            await asyncio.to_thread(_write_files, files)
            return True
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            for path, data in files.items():
                self._held.file(path, data)
            return False

    async def _read(self, path: Path) -> bytes:
        """A file's bytes, held in memory or on disk (a cached file read is marked used: evicted last)."""
        held = self._held.read(path)
        return held if held is not None else await asyncio.to_thread(_read_used, path)

    def _db(self, write: Callable[[], object]) -> bool:
        """Run one store write; True if done, False if the disk is full and it waits for room (in order)."""
        if self._held.rows_waiting:
            self._held.row(write)
            return False
        try:
            write()
            return True
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            self._held.row(write)
            return False

    def _save(self, job: JobRecord, **values: Any) -> None:
        """Record a job's progress: in memory at once, in the store now or once there is room."""
        self._db(partial(self.store.write_job, job.id, set_job(job, **values)))

    # --- a full disk --------------------------------------------------------------------------
    def _out_of_space(self, failure: BaseException | None = None) -> None:
        """The disk is (nearly) full: new photos pause, one ERROR line and one admin alert per incident,
        and a watcher resumes intake (and writes what is held) once there is room again."""
        if failure is not None:
            self.disk.ran_out()
        if self._disk_watch is not None:
            return
        free_mb = self.disk.free() >> 20
        log.error(
            "the disk under DATA_DIR is full (%d MB free, DISK_MIN_FREE_MB is %d%s): new photos are "
            "refused until there is room; photos already taken are still answered",
            free_mb,
            self.disk.min_free >> 20,
            f"; a write failed: {failure.__class__.__name__}" if failure is not None else "",
        )
        self._disk_watch = asyncio.get_running_loop().create_task(self._watch_disk(), name="disk-watch")
        self._spawn(_quietly(self.messenger.alert_admins("admin_disk_full", None, free_mb=free_mb)))

    async def _watch_disk(self) -> None:
        try:
            # Free space has no event to wait on: it is polled, every few seconds, during an incident only.
            while self.disk.low() or not await self._flush_held():  # noqa: ASYNC110
                await asyncio.sleep(RECHECK_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("writing what the full disk held failed")
        self._held_results.clear()
        self._held_renders.clear()
        self._disk_watch = None
        free_mb = self.disk.free() >> 20
        log.warning("the disk has room again (%d MB free): taking new photos", free_mb)
        await _quietly(self.messenger.alert_admins("admin_disk_recovered", None, free_mb=free_mb))

    async def _flush_held(self) -> bool:
        """Write what the full disk held: files off the loop, then the store writes in their order."""
        return await asyncio.to_thread(self._held.flush_files, _write_file) and self._held.flush_rows()

    def _cutout_paths(self, key: str) -> tuple[Path, Path]:
        folder = self._cutouts / key[:2]
        return folder / f"{key}.webp", folder / f"{key}.png"

    def _spawn(self, coro: Coroutine[Any, Any, None], job: JobRecord | None = None) -> asyncio.Task[None]:
        """Run ``coro`` as a task the service waits for at a stop; a job's task tags its log lines."""
        task = asyncio.create_task(coro, context=_tagged(job, None) if job else None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def result_key(image_sha256: str, options: CutoutOptions, engine: str = "picwish") -> str:
    """The cache key of a backend's result: the image, the API parameters and the engine (PicWish's keys
    predate the others), nothing rendered locally."""
    suffix = "" if engine == "picwish" else f"|engine={engine}"
    return hashlib.sha256(f"{image_sha256}|{options.api_key}{suffix}".encode()).hexdigest()


def _persistent(error: errors.CutoutError) -> bool:
    """A failure the backend will not get past soon: a rejected key or URL, or a fault past every retry."""
    return isinstance(error, errors.Unauthorized | errors.EndpointNotFound) or error.retryable


def url_key(url: str, options: CutoutOptions) -> str:
    """The cache key of the API's result for a link (the picture behind it may change: kept an hour)."""
    return hashlib.sha256(f"url:{url}|{options.api_key}".encode()).hexdigest()


def sticker_key(result: str, options: CutoutOptions) -> str:
    """The key of a 512 px render of a result; the plain one keeps the result's key (as caches made
    before render options existed did)."""
    return hashlib.sha256(f"{result}|outline".encode()).hexdigest() if options.outline else result


def _tagged(job: JobRecord, context: contextvars.Context | None) -> contextvars.Context:
    """``context`` (or a copy of the current one) in which log lines carry the job's id."""
    tagged = context if context is not None else contextvars.copy_context()
    tagged.run(JOB_ID.set, job.id)
    return tagged


def _as_cutout_error(exc: BaseException, job: JobRecord, what: str) -> errors.CutoutError:
    """An error as the user hears of it: ours as it is, anything else logged and told as generic."""
    if isinstance(exc, errors.CutoutError):
        return exc
    log.error("%s of job %s failed", what, job.id, exc_info=exc)
    return errors.CutoutError(type(exc).__name__)


def _read_used(path: str | Path) -> bytes:
    """A cached file's bytes; reading it marks it used, so it is the last to be evicted."""
    data = Path(path).read_bytes()
    cache.touch(path)
    return data


def _read_used_pair(first: str, second: str) -> tuple[bytes, bytes]:
    return _read_used(Path(first)), _read_used(Path(second))


def _write_files(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        _write_file(path, data)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two jobs may write the same cached file at once.
    tmp = path.with_suffix(f"{path.suffix}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file would keep the disk full
        raise


async def _quietly(awaitable: Awaitable[None]) -> None:
    """Run a best-effort chat call (a status edit, a chat action): log failures, never raise."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("best-effort call failed: %s", type(exc).__name__)


__all__ = ["CutoutService", "JobSpec", "Messenger", "PropFile", "RetryPolicy", "SentSticker", "Sticker"]
