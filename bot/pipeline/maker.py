"""The cutout maker: the API's full-resolution result for a job's image, paid for at most once, and
every variant rendered from it (512 px sticker and PNG, JPG on white, print-ready prop).

A result comes from the cache, from an identical job already in flight, or from the backend (with
retries, the async task API as the fallback for a struggling sync endpoint, and the offline engine
when the API fails for good and ``FALLBACK`` is set). The API's answer is kept whole: every local
variant is rendered from it, so a different outline or a prop costs no API call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot import errors
from bot.backends.base import CutoutBackend, CutoutRequest
from bot.domain import CutoutOptions, Part
from bot.imaging import (
    RenderedCutout,
    render_from_sticker,
    render_jpg_photo,
    render_prop,
    render_sticker,
    result_size,
)
from bot.pipeline.contracts import Messenger, PropFile, Sticker, quietly
from bot.pipeline.imagework import in_image_thread
from bot.pipeline.keeper import Keeper, read_used
from bot.pipeline.scheduler import Scheduler
from bot.props import prop_file_name
from bot.storage import PHOTO_FILE_NAME, JobRecord, ResultRecord, Store, usage

log = logging.getLogger(__name__)

#: The API keeps a result an hour; a link's picture may change after that, so its cache entry does not last.
LINK_CACHE_SECONDS = 3600.0
#: A task made before a restart is resumed while the API surely still keeps it (results live an hour).
TASK_RESUME_SECONDS = 3000.0


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in total time before the user hears anything."""

    base: float = 1.0
    cap: float = 15.0
    total: float = 90.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.base / 2, min(self.cap, self.base * 2**attempt))


class NotCached(Exception):
    """The cache cannot answer this job: the API's result is not (or no longer) on disk."""


class ApiDown(Exception):
    """The API is down past every retry: the job goes back in line until it is back (or its hold ends)."""


class CutoutMaker:
    def __init__(
        self,
        *,
        store: Store,
        keeper: Keeper,
        scheduler: Scheduler,
        backend: CutoutBackend,
        fallback: CutoutBackend | None,
        retry: RetryPolicy,
        messenger: Callable[[], Messenger],
    ) -> None:
        self.store = store
        self.backend = backend
        self.fallback = fallback  # answers, and says so, while the backend fails for good
        self.retry = retry
        self._keeper = keeper
        self._scheduler = scheduler
        self._messenger = messenger
        self._inflight: dict[str, asyncio.Future[ResultRecord]] = {}
        self._key_incident = False

    # --- what the cache can answer --------------------------------------------------------------
    def file_options(self, job: JobRecord) -> str:
        """What a Telegram file's cache entry depends on besides the file: the options and the engine."""
        engine = "" if self.backend.name == "picwish" else f";engine={self.backend.name}"
        return job.options.api_key + engine

    async def cache_answers(self, job: JobRecord, key: str) -> bool:
        """Whether the cache holds what the job asks for; raise a failure remembered for the image."""
        if (text_key := self.store.failed_text(key)) is not None:
            raise errors.KnownFailure(text_key)  # it failed for good before (no face): so again, at no cost
        if self.fresh_result(job, key) is None and not await self._render_answers(job, key):
            return False
        try:
            if job.options.needs_sticker:
                await self.sticker(job, key)  # rendered now, so a vanished file is still a plain miss
        except NotCached:
            return False
        return True

    def fresh_result(self, job: JobRecord, key: str) -> ResultRecord | None:
        """The cached API result; a link's only for the hour the picture behind it is taken to stay."""
        result = self._keeper.held_results.get(key) or self.store.result_by_key(key)
        if result is not None and job.url is not None and time.time() - result.created_at > LINK_CACHE_SECONDS:
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
            sticker = await self._messenger().fetch_sticker(file_id)
            rendered = await in_image_thread(render_from_sticker, sticker)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # gone from the chat side too, or unreadable: the API makes it again
            log.info("could not restore cutout %d from its sticker: %s", record.id, type(exc).__name__)
            return False
        await self._keep_render(variant, rendered)
        log.info("cutout %d restored from the sticker the chat holds, at no API cost", record.id)
        return True

    # --- the result, paid for once ----------------------------------------------------------------
    async def result(self, job: JobRecord, key: str) -> ResultRecord:
        """The API's result for this job's image: from the cache, from an identical job in flight, or the
        API. Raises :class:`ApiDown` when the API is down past every retry and photos wait for it."""
        if (cached := self.fresh_result(job, key)) is not None:
            return cached
        if (twin := self._inflight.get(key)) is not None:
            return await asyncio.shield(twin)
        future: asyncio.Future[ResultRecord] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            record = await self._make(job, key)
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

    async def _make(self, job: JobRecord, key: str) -> ResultRecord:
        """One paid API call; its full-resolution answer is kept, every variant is rendered from it."""
        data = b"" if job.url else await self._keeper.read(self._keeper.incoming_path(job))
        log.info("job %s: to %s (%s)", job.id, self.backend.name, job.options.api_key)
        fresh = job.task_id is not None and time.time() - (job.task_at or 0.0) < TASK_RESUME_SECONDS
        request = CutoutRequest(
            image=data,
            filename=job.file_name or PHOTO_FILE_NAME,
            mime=job.mime or "image/jpeg",
            image_url=job.url,
            crop=job.options.crop,
            output_format=job.options.output.api_format,
            resume_task=job.task_id if fresh else None,
            on_task=lambda task_id: self._keeper.save(job, task_id=task_id, task_at=time.time()),
            on_created=lambda: self._keeper.tally(usage.API_TASKS),
        )
        try:
            result = await self._call_with_retries(request, job.lang)
        except errors.CutoutError as exc:
            if self.fallback is not None and job.url is None and _persistent(exc):
                return await self._fall_back(job, key, request, exc)
            if exc.outage and self._scheduler.outage_hold > 0:
                self._scheduler.api_down(exc, self.retry.total)
                raise ApiDown() from exc
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
        path = self._keeper.result_path(key, extension)
        width, height = result_size(result)  # its header: 20-35 us, a fraction of a hop to a thread
        record = ResultRecord(key, str(path), width, height, time.time())
        held = not await self._keeper.write({path: result}, hand_over=True)  # rendered next, from memory
        held |= not self._keeper.db(lambda: self.store.add_result(key, str(path), width, height))
        if held:
            self._keeper.held_results[key] = record
        return record

    async def _call_with_retries(self, request: CutoutRequest, lang: str | None) -> bytes:
        deadline = time.monotonic() + self.retry.total
        attempt = 0
        while True:
            try:
                result = await self.backend.cutout(request)
            except errors.Unauthorized:
                await self._key_rejected(lang)
                raise
            except errors.CutoutError as exc:
                # A 429's Retry-After is a floor: the QPS budget is paused that long anyway.
                delay = max(self.retry.delay(attempt), getattr(exc, "retry_after", 0.0))
                # In an outage a request is a probe: one try, then the job waits in line again.
                if not exc.retryable or time.monotonic() + delay > deadline or self._scheduler.in_outage:
                    raise
                attempt += 1
                log.warning("cutout attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
                await asyncio.sleep(delay)
                if isinstance(exc, errors.ApiTimeout | errors.NetworkError | errors.ServerError):
                    # The sync endpoint is struggling: the async task API is the documented fallback.
                    request = CutoutRequest(**{**request.__dict__, "prefer_async": True})
            else:
                self._scheduler.api_back()
                await self._key_accepted(lang)
                return result

    async def _key_rejected(self, lang: str | None) -> None:
        if not self._key_incident:
            self._key_incident = True
            log.error("PicWish rejected the API key (HTTP 401); alerting admins")
            await quietly(self._messenger().alert_admins("admin_key_rejected", lang))

    async def _key_accepted(self, lang: str | None) -> None:
        if self._key_incident:
            self._key_incident = False
            await quietly(self._messenger().alert_admins("admin_key_recovered", lang))

    # --- rendering: every variant from the one result -------------------------------------------
    async def sticker(self, job: JobRecord, key: str) -> Sticker:
        """The 512 px sticker and PNG for the job's render options, rendered once and kept."""
        variant = sticker_key(key, job.options)
        if (held := self._keeper.held_renders.get(variant)) is not None:
            return held
        if (cached := self.store.cutout_by_key(variant)) is not None:
            try:
                webp, png = await asyncio.to_thread(_read_pair, cached.sticker_path, cached.png_path)
                return Sticker(cached.id, webp, png)
            except FileNotFoundError:
                pass  # evicted since: rendered again
        result = await self._result_bytes(key)
        rendered = await in_image_thread(render_sticker, result, crop=job.options.crop, outline=job.options.outline)
        return await self._keep_render(variant, rendered)

    async def _keep_render(self, variant: str, rendered: RenderedCutout) -> Sticker:
        """Keep a 512 px render: on disk and in the store, or in memory while the disk is full."""
        sticker_path, png_path = self._keeper.cutout_paths(variant)
        written = await self._keeper.write({sticker_path: rendered.sticker_webp, png_path: rendered.png})
        record = self._keeper.db_result(
            lambda: self.store.add_cutout(variant, str(sticker_path), str(png_path), rendered.width, rendered.height)
        )
        sticker = Sticker(record.id if record else None, rendered.sticker_webp, rendered.png)
        if not written or record is None:
            self._keeper.held_renders[variant] = sticker
        return sticker

    async def prop(self, job: JobRecord, key: str) -> PropFile:
        """The print-ready prop at the API's full resolution, written under DATA_DIR/props for /zip."""
        result = await self._result_bytes(key)
        prop = await in_image_thread(render_prop, result, crop=job.options.crop, outline=job.options.outline)
        del result
        path = self._keeper.prop_path(job, prop.extension)
        await self._keeper.write({path: prop.data})
        name = prop_file_name(job.source_name, job.message_id, prop.extension)
        return PropFile(path, name, prop.width, prop.height, prop.scale)

    async def jpg(self, key: str) -> bytes:
        """The cutout on white, as a photo."""
        return await in_image_thread(render_jpg_photo, await self._result_bytes(key))

    async def _result_bytes(self, key: str) -> bytes:
        result = self._keeper.held_results.get(key) or self.store.result_by_key(key)
        if result is None:
            raise NotCached(key)
        try:
            return await self._keeper.read(Path(result.path))
        except FileNotFoundError:
            raise NotCached(key) from None


def result_key(image_sha256: str, options: CutoutOptions, engine: str = "picwish") -> str:
    """The cache key of a backend's result: the image, the API parameters and the engine (PicWish's keys
    predate the others), nothing rendered locally."""
    suffix = "" if engine == "picwish" else f"|engine={engine}"
    return hashlib.sha256(f"{image_sha256}|{options.api_key}{suffix}".encode()).hexdigest()


def url_key(url: str, options: CutoutOptions) -> str:
    """The cache key of the API's result for a link (the picture behind it may change: kept an hour)."""
    return hashlib.sha256(f"url:{url}|{options.api_key}".encode()).hexdigest()


def sticker_key(result: str, options: CutoutOptions) -> str:
    """The key of a 512 px render of a result; the plain one keeps the result's key (as caches made
    before render options existed did)."""
    return hashlib.sha256(f"{result}|outline".encode()).hexdigest() if options.outline else result


def _persistent(error: errors.CutoutError) -> bool:
    """A failure the backend will not get past soon: a rejected key or URL, or a fault past every retry."""
    return isinstance(error, errors.Unauthorized | errors.EndpointNotFound) or error.retryable


def _read_pair(first: str, second: str) -> tuple[bytes, bytes]:
    return read_used(first), read_used(second)


__all__ = ["ApiDown", "CutoutMaker", "NotCached", "RetryPolicy", "result_key", "sticker_key", "url_key"]
