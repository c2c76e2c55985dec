"""The cutout service: accepted photos in, answers out, nothing lost on the way.

    submit() -> intake (download, validate, cache) -> scheduler (fair line, workers, QPS budget)
    -> maker (the API's full-resolution result, cached; the variants the job asks for) -> answer
    (Messenger.send_*(), part by part) or the failure's text

This module knows nothing of Telegram. It talks to the chat side through
:class:`bot.pipeline.contracts.Messenger`, which ``handlers/`` implements. Every accepted job is in
SQLite until it is answered, and open jobs are resumed at start-up. While the chat side cannot be
reached, answers wait (per chat, in the order they waited) and go out once it can.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bot import errors
from bot.admission import UserLimits
from bot.backends.base import CutoutBackend
from bot.budget import QpsBudget
from bot.domain import JobState, Part
from bot.fairqueue import FairSlots
from bot.imaging import prepare_upload
from bot.logsetup import job_context
from bot.observability import Metrics
from bot.pipeline.batches import Batches
from bot.pipeline.contracts import JobSpec, Messenger, PropFile, SentSticker, Sticker, quietly
from bot.pipeline.imagework import in_image_thread
from bot.pipeline.keeper import Keeper
from bot.pipeline.maker import ApiDown, CutoutMaker, NotCached, RetryPolicy, result_key, url_key
from bot.pipeline.scheduler import Scheduler, tagged
from bot.pipeline.status import Status, StatusBoard
from bot.storage import JobRecord, Store, usage
from bot.storage.disk import DiskSpace

log = logging.getLogger(__name__)
T = TypeVar("T")

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
#: Seconds a chat action shows in the chat (Telegram: 5 s or until the bot sends a message).
CHAT_ACTION_LASTS = 4.5


@dataclass
class ServiceStats:
    accepted: int = 0
    answered: int = 0
    failed: int = 0
    cache_hits: int = 0


@dataclass
class _Line:
    """A chat's answers that waited for the chat side: they go out one at a time, oldest photo first."""

    waiting: list[tuple[float, str]] = field(default_factory=list)  # (created_at, job id), oldest first
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    busy: bool = False


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
        chat_action_every: float = CHAT_ACTION_LASTS,
        metrics: Metrics | None = None,
        disk: DiskSpace | None = None,
        outage_hold: float = 0.0,
        outage_probe: float = 30.0,
    ) -> None:
        self.store = store
        self.limits = limits
        self.stats = ServiceStats()
        self.metrics = metrics or Metrics()
        self._keeper = Keeper(store, data_dir, disk or DiskSpace(data_dir, 0), self._alert_disk)
        self._board = StatusBoard(
            post=self._post_status,
            show=self._show_status,
            posted=self._status_posted,
            retire=self._retire_status,
            spawn=self._spawn,
        )
        self._scheduler = Scheduler(
            board=self._board,
            process=self._process,
            expire=self._expire,
            workers=workers,
            budget=budget,
            metrics=self.metrics,
            engine=backend.name,
            outage_hold=outage_hold,
            outage_probe=outage_probe,
        )
        self._maker = CutoutMaker(
            store=store,
            keeper=self._keeper,
            scheduler=self._scheduler,
            backend=backend,
            fallback=fallback,
            retry=retry or RetryPolicy(),
            messenger=lambda: self.messenger,
        )
        # Downloads and checks, user by user in turn: a single photo is not held back by another's burst.
        self._intake_slots = FairSlots(intake_concurrency)
        self._chat_action_every = chat_action_every
        self._batches = Batches()
        self._acted: dict[int, float] = {}  # per chat: when its last chat action went out
        self._tasks: set[asyncio.Task[None]] = set()
        self._status_loop: asyncio.Task[None] | None = None
        self._messenger: Messenger | None = None
        self._closing = False
        self._started_at: dict[str, float] = {}
        self._chat_up = asyncio.Event()  # cleared while the chat side cannot be reached
        self._chat_up.set()
        self._chat_down_since = 0.0
        self._resume_lines: dict[int, _Line] = {}  # per chat: answers that waited go out in turn

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self, messenger: Messenger) -> None:
        """Start the workers and resume every job that was accepted but not answered."""
        self._messenger = messenger
        self._closing = False
        self._scheduler.start()
        self._status_loop = asyncio.create_task(
            self._board.run(self._scheduler.positions), name="cutout-status"
        )
        resumed = self.store.open_jobs()
        for job in resumed:
            self._board.track(job)
            if job.batch_id is not None:
                self._batches.join(job, complete=True)  # its stragglers arrived long ago, or never will
        for job in resumed:
            if job.state is JobState.DELIVERING:
                self._spawn(self._finish_delivery(job), job)
            elif (
                job.state in (JobState.QUEUED, JobState.WORKING) and self._keeper.incoming_path(job).exists()
            ):
                self._scheduler.enqueue(job)
            else:
                self._spawn(self._intake(job), job)
        if resumed:
            log.info("resumed %d unanswered job(s)", len(resumed))

    async def stop(self, grace: float = 7.0) -> None:
        """Stop taking work, let jobs in flight finish within ``grace`` seconds; the rest stay in SQLite."""
        self._closing = True
        loops = self._scheduler.stop()
        if self._status_loop is not None:
            self._status_loop.cancel()
            loops.append(self._status_loop)
        pending = self._tasks | self._scheduler.working
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
                log.info("%d job(s) left unanswered for the next start", len(still))
        await asyncio.gather(*loops, return_exceptions=True)
        await self._keeper.close()

    @property
    def messenger(self) -> Messenger:
        if self._messenger is None:
            raise RuntimeError("CutoutService.start() was not called")
        return self._messenger

    # --- accepting photos ---------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> JobRecord:
        """Accept a photo or raise: :class:`errors.Refused` (limits, restarting, a full disk) or a BadInput
        known up front.

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
        self._admit(spec)
        job = self._keeper.new_job(**spec.__dict__)
        self.stats.accepted += 1
        self.metrics.photos_received.inc()
        self._keeper.tally(usage.PHOTOS, str(job.user_id))
        self._board.track(job)
        if not self._scheduler.idle():
            self._board.will_wait(job)
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
        return self._scheduler.now()

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
        self._keeper.save(job, state=JobState.QUEUED)
        self._scheduler.enqueue(job)

    async def _take_in(self, job: JobRecord) -> str | None:
        if self._scheduler.idle():  # it will start at once: a chat action says so, no status message
            self._spawn(self._chat_action(job))
        return await self._cached_key(job)

    async def _cached_key(self, job: JobRecord) -> str | None:
        """Check the photo (downloading it if needed) and return its cache key when the cache can answer
        it; otherwise leave it ready for the API (its prepared upload on disk)."""
        maker = self._maker
        if job.url is not None:
            key = url_key(job.url, job.options)
            self._keeper.save(job, cache_key=key)
            return key if await maker.cache_answers(job, key) else None
        options = maker.file_options(job)
        known = self.store.key_for_file(job.file_unique_id, options)
        if known is not None and await maker.cache_answers(job, known):
            return known
        async with self._intake_slots.slot(job.user_id):
            raw = await self.messenger.download(job)
            prepared = await in_image_thread(prepare_upload, raw, telegram_photo=job.is_telegram_photo)
            del raw
            key = result_key(prepared.sha256, job.options, maker.backend.name)
            self._keeper.save(job, cache_key=key)
            self._keeper.db(partial(self.store.remember_file, job.file_unique_id, options, key))
            if key != known and await maker.cache_answers(job, key):  # the same key was just asked
                return key
            await self._keeper.write({self._keeper.incoming_path(job): prepared.data}, hand_over=True)
            self._keeper.save(job, file_name=prepared.filename, mime=prepared.mime)
        return None

    # --- a job's turn -------------------------------------------------------------------------
    async def _process(self, job: JobRecord) -> None:
        """Cut the job out (a worker runs this) and answer it; in an API outage it goes back in line."""
        self._keeper.save(job, state=JobState.WORKING)
        probe = self._scheduler.in_outage  # the user keeps seeing that the service is down
        if not probe:
            self._board.want(job, "working")
        # A photo without a status message shows the bot at work while it is cut out (not while it waits).
        action = (
            asyncio.create_task(self._chat_action_loop(job))
            if not probe and not self._board.has_message(job)
            else None
        )
        key = job.cache_key
        assert key is not None
        error: errors.CutoutError | None = None
        try:
            key = (await self._maker.result(job, key)).cache_key  # another key: the fallback made it
        except asyncio.CancelledError:
            raise
        except ApiDown:
            self._keeper.save(job, state=JobState.QUEUED)
            self._scheduler.enqueue(job)
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

    def _expire(self, job: JobRecord, error: errors.CutoutError) -> None:
        """The job waited out its hold in an API outage: tell its user."""
        self._spawn(self._conclude(job, None, error), job)

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
        retire = self._board.settle(job)
        if from_cache:
            self._cache_hit()
        await self._reaching_chat(job, lambda: self._deliver(job, key))
        self._keeper.save(job, state=JobState.DONE, cache_key=key)
        self.stats.answered += 1
        self.metrics.photos_answered.inc()
        self._keeper.tally(usage.CUTOUTS)
        if (started := self._started_at.pop(job.id, None)) is not None:
            log.info(
                "job %s answered in %.1f s%s",
                job.id,
                time.monotonic() - started,
                " (cached)" if from_cache else "",
            )
        await self._leave(job, retire)

    async def _fail(self, job: JobRecord, error: errors.CutoutError) -> None:
        known = isinstance(error, errors.KnownFailure)
        if known:
            self._cache_hit()  # answered from what the image failed with before, at no cost
        if job.url is not None:
            error.text_key = error.link_text_key or error.text_key  # the link was the trouble
        elif error.final and not known and (cache_key := job.cache_key):
            text_key = error.text_key
            self._keeper.db(lambda: self.store.remember_failure(cache_key, text_key))
        await self._batches.turn(job)
        alone = self._board.alone(job)
        retire = self._board.settle(job)
        log.info("job %s failed: %s (%s)", job.id, type(error).__name__, error.text_key)
        self.stats.failed += 1
        self.metrics.photos_failed.labels(error.text_key).inc()
        self._keeper.tally(usage.FAILURES, error.text_key)
        # Its own status message becomes the reason; one it shares with other photos is not its to take.
        told = job if alone else replace(job, status_message_id=None)
        try:
            await self._reaching_chat(job, lambda: self.messenger.fail(told, error))
        except asyncio.CancelledError:
            raise  # still open in SQLite: the next start tells them
        except Exception as exc:  # blocked by the user, chat gone, Telegram down past every retry
            log.warning("could not tell the user job %s failed: %s", job.id, type(exc).__name__)
        self._keeper.save(job, state=JobState.FAILED, error=type(error).__name__)
        self._started_at.pop(job.id, None)
        # Its own status message now says what went wrong; a shared one goes with its last photo.
        await self._leave(job, retire and not alone)

    def _cache_hit(self) -> None:
        self.stats.cache_hits += 1
        self.metrics.cache_hits.inc()
        self._keeper.tally(usage.CACHE_HITS)

    async def _leave(self, job: JobRecord, retire: bool) -> None:
        """The job is finished: the next photo of its batch may go; its status message may retire."""
        self._batches.leave(job)
        if retire:
            await self._retire_status(job)
        self._board.forget(job)
        self._scheduler.forget(job)
        self._keeper.forget_upload(job)

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
        offline = self._maker.fallback is not None and job.cache_key is not None and key != job.cache_key
        parts = self._parts(job)
        sticker: Sticker | None = None  # the 512 px render the sticker and the PNG share
        while job.parts_sent < len(parts):
            part = parts[job.parts_sent]
            if part in (Part.STICKER, Part.PNG) and sticker is None:
                sticker = await self._maker.sticker(job, key)
            try:
                await self._send_part(
                    job, key, part, sticker, pack_button=Part.STICKER not in parts, offline=offline
                )
            except errors.StickersRefused:
                log.info("chat %s refuses stickers: answering there without them", job.chat_id)
                settings = replace(self.store.chat_settings(job.chat_id), no_stickers=True)
                self._keeper.db(partial(self.store.save_chat_settings, settings))
                parts = self._parts(job)
                continue
            self._keeper.save(job, state=JobState.DELIVERING, parts_sent=job.parts_sent + 1, cache_key=key)

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
                self._keeper.db(partial(self._remember_sticker, job.user_id, cutout_id, sent))
        elif part is Part.PNG:
            assert sticker is not None
            await self.messenger.send_png(job, sticker, pack_button=pack_button, offline=offline)
        elif part is Part.JPG:
            await self.messenger.send_jpg(job, await self._maker.jpg(key), offline=offline)
        else:
            prop: PropFile = await self._maker.prop(job, key)
            await self.messenger.send_prop(job, prop)
            self._keeper.db(partial(self.store.add_prop, job.chat_id, job.id, str(prop.path), prop.file_name))

    def _remember_sticker(self, user_id: int, cutout_id: int, sent: SentSticker) -> None:
        self.store.remember_sent_sticker(user_id, cutout_id, sent.file_id, sent.file_unique_id)

    async def _finish_delivery(self, job: JobRecord) -> None:
        """A job whose answer was partly sent before a restart: send the rest, never a part again."""
        retire = self._board.settle(job)
        try:
            if (key := job.cache_key) is not None:
                await self._reaching_chat(job, lambda: self._deliver(job, key))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the first part is their answer; the rest is best effort
            log.warning("could not finish answering job %s: %s", job.id, type(exc).__name__)
        self._keeper.save(job, state=JobState.DONE)
        self.stats.answered += 1
        self.metrics.photos_answered.inc()
        self._keeper.tally(usage.CUTOUTS)
        await self._leave(job, retire)

    # --- the chat side unreachable -------------------------------------------------------------
    async def _reaching_chat(self, job: JobRecord, send: Callable[[], Awaitable[T]]) -> T:
        """Run ``send`` (it talks to the job's chat); while the chat side is unreachable, wait until it is
        back and run it again: answers are kept, not failed, and go out one at a time per chat, the
        oldest photo's first."""
        if self._chat_up.is_set() and job.chat_id not in self._resume_lines:  # else: after those that waited
            try:
                return await send()
            except errors.ChatUnreachable as exc:
                self._chat_down(exc)
        line = self._resume_lines.setdefault(job.chat_id, _Line())
        me = (job.created_at, job.id)
        bisect.insort(line.waiting, me)
        try:
            while True:
                await self._chat_up.wait()
                async with line.changed:
                    await line.changed.wait_for(lambda: not line.busy and line.waiting[0] == me)
                    line.busy = True
                try:
                    return await send()
                except errors.ChatUnreachable as exc:
                    self._chat_down(exc)
                finally:
                    async with line.changed:
                        line.busy = False
                        line.changed.notify_all()
        finally:
            line.waiting.remove(me)
            if not line.waiting:
                del self._resume_lines[job.chat_id]
            else:
                async with line.changed:
                    line.changed.notify_all()

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

    # --- feedback -----------------------------------------------------------------------------
    async def _post_status(self, job: JobRecord, status: Status, wanted: Callable[[], bool]) -> int | None:
        try:
            return await self.messenger.post_status(job, status, wanted=wanted)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the photo is still answered; only the news that it waits is lost
            log.warning("could not post a status message in chat %s: %s", job.chat_id, type(exc).__name__)
            return None

    def _status_posted(self, jobs: list[JobRecord], message_id: int) -> None:
        for job in jobs:
            self._keeper.save(job, status_message_id=message_id)

    async def _show_status(self, job: JobRecord, status: Status, urgent: bool) -> None:
        await quietly(self.messenger.show_status(job, status, urgent=urgent))

    async def _retire_status(self, job: JobRecord) -> None:
        await quietly(self.messenger.finish(job))

    async def _chat_action_loop(self, job: JobRecord) -> None:
        while True:
            await self._chat_action(job)
            await asyncio.sleep(self._chat_action_every)

    async def _chat_action(self, job: JobRecord) -> None:
        """Show the bot at work in the job's chat, unless a chat action there still shows."""
        now = time.monotonic()
        if now - self._acted.get(job.chat_id, -CHAT_ACTION_LASTS) < CHAT_ACTION_LASTS:
            return
        self._acted[job.chat_id] = now
        if len(self._acted) > 10_000:
            self._acted = {chat: at for chat, at in self._acted.items() if now - at < CHAT_ACTION_LASTS}
        await quietly(self.messenger.chat_action(job))

    async def _alert_disk(self, text_key: str, free_mb: int) -> None:
        await quietly(self.messenger.alert_admins(text_key, None, free_mb=free_mb))

    def _spawn(self, coro: Coroutine[Any, Any, None], job: JobRecord | None = None) -> asyncio.Task[None]:
        """Run ``coro`` as a task the service waits for at a stop; a job's task tags its log lines."""
        task = asyncio.create_task(coro, context=tagged(job, None) if job else None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _as_cutout_error(exc: BaseException, job: JobRecord, what: str) -> errors.CutoutError:
    """An error as the user hears of it: ours as it is, anything else logged and told as generic."""
    if isinstance(exc, errors.CutoutError):
        return exc
    if isinstance(exc, NotCached):
        log.warning("%s of job %s: its cached result is gone", what, job.id)
    else:
        log.error("%s of job %s failed", what, job.id, exc_info=exc)
    return errors.CutoutError(type(exc).__name__)


__all__ = ["CutoutService"]
