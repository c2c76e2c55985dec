"""Client for the PicWish Face Cutout API (spec: shared/reference/picwish-face-cutout-api.md).

One ``httpx.AsyncClient`` (one connection pool) lives as long as the client. Every API request
(create, query) books a start in the QPS budget before it takes a connection, and takes that start
once the connection is open, right before its first byte leaves; result downloads are not API
requests and don't. Failures become :mod:`bot.errors`; their texts are built from HTTP status, the
body's ``status``, ``message`` and ``data.state`` only, never from headers, URLs or the request,
so the API key cannot leak through an exception or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bot import errors
from bot.backends.base import CutoutRequest
from bot.observability import Metrics
from bot.transport import OneWriteTransport

if TYPE_CHECKING:
    from bot.budget import QpsBudget, Reservation

log = logging.getLogger(__name__)

TASKS_PATH = "/api/tasks/visual/self-face-cutout"
_API_KEY_HEADER = "X-API-KEY"

_DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_SYNC_CREATE_READ_TIMEOUT = 190.0  # a sync create may be held for up to 180 s of processing
_DOWNLOAD_TOTAL_TIMEOUT = 120.0  # a bound on the whole download, not just on each read
_MAX_REDIRECTS = 3

# The API counts requests per second: a second after a 429, the window that refused it has passed.
_RATE_LIMIT_PAUSE = 1.0
_MAX_RATE_LIMIT_PAUSE = 60.0
_MESSAGE_CHARS = 200
# Consecutive transient query failures a poll loop rides out: giving up would throw away a paid task.
_POLL_FAILURES_TOLERATED = 3
# Answers saying "succeeded" without a result URL before the task counts as lost (and is redone).
_MISSING_IMAGE_TOLERATED = 2
_TRANSIENT: tuple[type[errors.ApiError], ...] = (
    errors.RateLimited,
    errors.ServerError,
    errors.NetworkError,
    errors.ApiTimeout,
    errors.MalformedResponse,
)
_EXPIRED_STATUSES = frozenset({403, 404, 410})
# httpcore's trace events around writing a request's headers: the connection is open by then, and the
# bytes leave right after "started" returns, with nothing awaited in between.
_HEADERS_STARTED = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})
_HEADERS_SENT = frozenset({"http11.send_request_headers.complete", "http2.send_request_headers.complete"})

# data.state < 0 -> (text key, worth retrying). These codes are PicWish's: they never leave this module.
TASK_STATES: dict[int, tuple[str, bool]] = {
    -17: ("api_failed", False),
    -16: ("content_refused", False),
    -15: ("service_trouble", True),
    -14: ("no_face", False),
    -13: ("service_trouble", True),
    -11: ("no_face", False),
    -10: ("content_refused", False),
    -9: ("service_trouble", True),
    -8: ("too_slow", False),
    -7: ("corrupt_image", False),
    -5: ("image_too_large", False),
    -3: ("api_failed", False),
    -2: ("service_trouble", True),
    -1: ("api_failed", False),
}
#: States the same image will fail with again: remembered, so a re-sent photo costs nothing.
FINAL_STATES = frozenset({-16, -14, -11, -10, -7})
#: States that mean the service could not fetch or read what a link gave.
_LINK_TEXTS = {-3: "link_unreachable", -5: "link_too_large", -7: "link_not_image"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class TaskResult:
    """The ``data`` of a create or query answer. ``state`` is never negative (that raises)."""

    task_id: str
    state: int
    progress: int | None
    image: str | None
    mask: str | None

    @property
    def done(self) -> bool:
        return self.state == 1 and bool(self.image)


class PicWishClient:
    """The PicWish Face Cutout API as a :class:`bot.backends.base.CutoutBackend`."""

    name = "picwish"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://techhk.aoscdn.com",
        budget: QpsBudget | None = None,
        timeout: httpx.Timeout | None = None,
        poll_interval: float = 1.5,
        max_wait: float = 180.0,
        max_result_bytes: int = 30 * 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
        connections: int = 20,
    ) -> None:
        """``connections``: requests in flight at once (the service's workers); as many stay open between
        requests, so a request rarely waits for a new connection after its QPS start was granted."""
        if not api_key:
            raise ValueError("PicWishClient needs an API key")
        self._api_key = api_key  # kept only to scrub it from server messages
        self._budget = budget
        self._metrics = metrics or Metrics()
        self._poll_interval = poll_interval
        self._max_wait = max_wait
        self._max_result_bytes = max_result_bytes
        self._timeout = timeout or _DEFAULT_TIMEOUT
        self._sync_create_timeout = _with_read_at_least(self._timeout, _SYNC_CREATE_READ_TIMEOUT)
        self._api_origin = _origin(httpx.URL(base_url))
        # httpx's own transport (httpcore) reports when a request is written; another one (a test's
        # MockTransport) does not, so the start is taken just before the request is handed to it.
        self._on_the_wire = transport is None or isinstance(transport, httpx.AsyncHTTPTransport)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={_API_KEY_HEADER: api_key},
            timeout=self._timeout,
            transport=transport
            or OneWriteTransport(
                limits=httpx.Limits(
                    max_connections=max(100, 2 * connections), max_keepalive_connections=max(20, connections)
                )
            ),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"PicWishClient(base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> PicWishClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the backend interface -------------------------------------------------------------------
    async def cutout(self, request: CutoutRequest) -> bytes:
        """Create a sync task; poll if it is not finished yet; download the result at once. A task from
        before a restart (``resume_task``) is waited for instead, while the API still has it."""
        if request.resume_task is not None:
            try:
                return await self._fetch_result(
                    await self.wait_for_task(await self.query_task(request.resume_task))
                )
            except (errors.NotFound, errors.ResultExpired):
                log.debug("task_id=%s is gone; making the cutout again", request.resume_task)
        if request.prefer_async:
            return await self.cutout_async(request)
        task = await self.create_task(
            **_source(request),
            sync=True,
            crop=request.crop,
            output_format=request.output_format,
            on_created=request.on_created,
        )
        if not task.done:
            _note_task(request, task)
            task = await self.wait_for_task(task)
        return await self._fetch_result(task)

    async def cutout_async(self, request: CutoutRequest) -> bytes:
        """The fallback: an async task (``sync=0``) and polling."""
        task = await self.create_task(
            **_source(request),
            sync=False,
            crop=request.crop,
            output_format=request.output_format,
            on_created=request.on_created,
        )
        _note_task(request, task)
        task = await self.wait_for_task(task)
        return await self._fetch_result(task)

    # --- the endpoints ---------------------------------------------------------------------------
    async def create_task(
        self,
        *,
        image_file: tuple[str, bytes, str] | None = None,
        image_url: str | None = None,
        sync: bool = True,
        crop: bool = True,
        output_format: str = "png",
        on_created: Callable[[], None] | None = None,
    ) -> TaskResult:
        """POST a task with exactly one of ``image_file`` (filename, bytes, mime) and ``image_url``;
        ``on_created`` is called when the API made the task (paid for, even if it then failed)."""
        form = {"sync": _flag(sync), "crop": _flag(crop), "output_format": output_format}
        part: tuple[str | None, bytes | str, str | None]
        if image_file is not None and image_url is None:
            field, part = "image_file", image_file
        elif image_url is not None and image_file is None:
            # A part without filename is a plain form field; it keeps the body multipart/form-data.
            field, part = "image_url", (None, image_url, None)
        else:
            raise ValueError("pass exactly one of image_file and image_url")
        files = {field: part}
        timeout = self._sync_create_timeout if sync else self._timeout
        request = self._http.build_request("POST", TASKS_PATH, data=form, files=files, timeout=timeout)
        started = time.monotonic()
        response = await self._send_api(request, "create")
        try:
            task = await self._task_from(response, "create", state_required=sync)
        except errors.TaskFailed:
            if on_created is not None:
                on_created()  # the task was made, and failed (no face, refused content...)
            raise
        if on_created is not None:
            on_created()
        log.debug(
            "create task_id=%s sync=%s state=%d in %.2fs",
            task.task_id,
            _flag(sync),
            task.state,
            time.monotonic() - started,
        )
        return task

    async def query_task(self, task_id: str) -> TaskResult:
        """GET the task's current state."""
        request = self._http.build_request("GET", f"{TASKS_PATH}/{quote(task_id, safe='')}")
        started = time.monotonic()
        response = await self._send_api(request, "query")
        task = await self._task_from(response, "query", known_task_id=task_id)
        log.debug(
            "query task_id=%s state=%d progress=%s in %.2fs",
            task.task_id,
            task.state,
            task.progress,
            time.monotonic() - started,
        )
        return task

    async def wait_for_task(self, first: TaskResult) -> TaskResult:
        """Poll every ``poll_interval`` s until the task succeeded; ApiTimeout after ``max_wait`` s."""
        task = first
        started = time.monotonic()
        deadline = started + self._max_wait
        failures = missing_image = 0
        while not task.done:
            if task.state == 1:
                missing_image += 1
                if missing_image > _MISSING_IMAGE_TOLERATED:
                    raise errors.ResultExpired(f"task {task.task_id} succeeded without a result URL", state=1)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.ApiTimeout(
                    f"task {task.task_id} not finished after {self._max_wait:g} s (state {task.state})",
                    state=task.state,
                )
            await asyncio.sleep(min(self._poll_interval, remaining))
            try:
                task = await self.query_task(task.task_id)
            except _TRANSIENT:
                failures += 1
                if failures > _POLL_FAILURES_TOLERATED:
                    raise
                continue
            failures = 0
        log.debug("task_id=%s finished after %.2fs of polling", task.task_id, time.monotonic() - started)
        return task

    async def download(self, url: str) -> bytes:
        """Fetch a result image: https or the API's own host only, size- and time-bounded."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(_DOWNLOAD_TOTAL_TIMEOUT):
                data = await self._download(url)
        except TimeoutError:
            raise errors.ApiTimeout(f"download: took longer than {_DOWNLOAD_TOTAL_TIMEOUT:g} s") from None
        log.debug("download %d bytes in %.2fs", len(data), time.monotonic() - started)
        return data

    # --- internals -------------------------------------------------------------------------------
    async def _fetch_result(self, task: TaskResult) -> bytes:
        """Download the result; if the URL expired, query the task once for a fresh one."""
        try:
            return await self.download(_result_url(task))
        except errors.ResultExpired:
            log.debug("task_id=%s result expired; querying again", task.task_id)
        # Outside the except block: a NotFound from the query tells the caller to redo the task.
        fresh = await self.query_task(task.task_id)
        return await self.download(_result_url(fresh))

    async def _send_api(self, request: httpx.Request, what: str) -> httpx.Response:
        wire: _StartOnTheWire | None = None
        if self._budget is not None:
            # Booked before a connection is taken, so a long wait holds none; the start is taken later.
            booking = await self._budget.reserve()
            if self._on_the_wire:
                wire = _StartOnTheWire(self._budget, booking)
                request.extensions["trace"] = wire
            else:
                await self._budget.acquire(booking)
        started = time.monotonic()
        status = "error"  # no answer: a timeout, a reset, a refused connection
        try:
            response = await self._send(request, what)
            status = str(response.status_code)
            if wire is not None and wire.left_at is None:
                await wire.missed()
            return response
        finally:
            if wire is not None and wire.left_at is not None:
                started = wire.left_at  # the budget's wait is not the API's time
            self._metrics.api_requests.labels(what, status).inc()
            self._metrics.api_seconds.labels(what).observe(time.monotonic() - started)

    async def _send(self, request: httpx.Request, what: str, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.RequestError as exc:
            error = _request_error(exc, what)
        # Raised outside the except block, so no __context__ holds the httpx error and its request
        # (whose headers carry the API key).
        raise error

    async def _task_from(
        self,
        response: httpx.Response,
        what: str,
        *,
        state_required: bool = True,
        known_task_id: str | None = None,
    ) -> TaskResult:
        """Check the HTTP status, the body's ``status`` and ``data.state``, in that order."""
        code = response.status_code
        body = _json_object(response)
        status = _as_int(body.get("status")) if body is not None else None
        message = self._message(body)
        detail = f"{what}: HTTP {code}"
        if status is not None:
            detail += f", status {status}"

        if not response.is_success:
            if code == 404 and what == "create":
                # A 404 on a query means the task is gone (redo it); on a create, the URL is wrong.
                raise errors.EndpointNotFound(_with_message(detail, message), http_status=code)
            raise await self._failure(code, _with_message(detail, message), response)
        if body is None:
            raise errors.MalformedResponse(f"{detail}: the body is not a JSON object", http_status=code)
        if status is None:
            raise errors.MalformedResponse(f"{detail}: no numeric status in the body", http_status=code)
        if status != 200:
            raise await self._failure(status, _with_message(detail, message), response)

        data = body.get("data")
        if not isinstance(data, dict):
            raise errors.MalformedResponse(f"{detail}: no data object", http_status=code)
        task_id = data.get("task_id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id:
            if known_task_id is None:
                raise errors.MalformedResponse(f"{detail}: no data.task_id", http_status=code)
            task_id = known_task_id
        state = _as_int(data.get("state"))
        if state is None:
            if state_required:
                raise errors.MalformedResponse(f"{detail}: no numeric data.state", http_status=code)
            state = 0  # an async create answers with the task id only: the task is queued
        if state < 0:
            log.debug("%s task_id=%s failed with state %d", what, task_id, state)
            raise task_failed(state, _with_message(f"{what}: task {task_id} failed, state {state}", message))
        return TaskResult(
            task_id=task_id,
            state=state,
            progress=_as_int(data.get("progress")),
            image=_as_url(data.get("image")),
            mask=_as_url(data.get("mask")),
        )

    async def _failure(self, status: int, detail: str, response: httpx.Response) -> errors.ApiError:
        error = errors.for_http_status(status, detail)
        if isinstance(error, errors.RateLimited):
            error.retry_after = _retry_after(response)
            if self._budget is not None:
                log.debug("rate limited; pausing the budget for %.2fs", error.retry_after)
                await self._budget.pause(error.retry_after)
        return error

    def _message(self, body: dict[str, Any] | None) -> str:
        """The body's ``message``, on one line, without the key, at most ~200 characters."""
        message = body.get("message") if body is not None else None
        if not isinstance(message, str):
            return ""
        message = " ".join(message.replace(self._api_key, "[redacted]").split())
        return message if len(message) <= _MESSAGE_CHARS else message[: _MESSAGE_CHARS - 1] + "…"

    async def _download(self, url: str) -> bytes:
        target = self._safe_url(url)
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._http.build_request("GET", target)
            # Result URLs live on a storage host: the API key has no business travelling there.
            del request.headers[_API_KEY_HEADER]
            response = await self._send(request, "download", stream=True)
            try:
                code = response.status_code
                if response.is_redirect and "Location" in response.headers:
                    target = self._safe_url(response.url.join(response.headers["Location"]))
                    continue
                if code in _EXPIRED_STATUSES:
                    raise errors.ResultExpired(f"download: HTTP {code}", http_status=code)
                if not response.is_success:
                    raise errors.for_http_status(code, f"download: HTTP {code}")
                return await self._read_bounded(response)
            finally:
                await response.aclose()
        raise errors.ApiError(f"download: more than {_MAX_REDIRECTS} redirects")

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        limit = self._max_result_bytes
        # Not retryable: the same task would give the same oversized result and cost another credit.
        too_big = errors.ApiError(
            f"download: result larger than {limit} bytes", http_status=response.status_code
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
        except httpx.RequestError as exc:
            error = _request_error(exc, "download")
        else:
            if size == 0:
                raise errors.MalformedResponse("download: empty result", http_status=response.status_code)
            return b"".join(chunks)
        raise error  # outside the except block, for the same reason as in _send

    def _safe_url(self, url: str | httpx.URL) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise errors.UnsafeResultUrl("download: the result URL is not a valid URL") from None
        if parsed.host and (parsed.scheme == "https" or _origin(parsed) == self._api_origin):
            return parsed
        raise errors.UnsafeResultUrl("download: the result URL is neither https nor on the API host")


class _StartOnTheWire:
    """httpcore's ``trace`` hook for one API request: its QPS start is taken once the connection is
    open, right before the first byte leaves, so connection set-up and event-loop delays come before
    the start rather than between the start and the API's count. A request that never got a
    connection spends no start."""

    def __init__(self, budget: QpsBudget, booking: Reservation) -> None:
        self._budget = budget
        self._booking = booking
        self.left_at: float | None = None
        self._told_sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event in _HEADERS_STARTED and self.left_at is None and info["request"].method != b"CONNECT":
            await self._budget.acquire(self._booking)
            self.left_at = time.monotonic()
        elif event in _HEADERS_SENT and self.left_at is not None and not self._told_sent:
            self._told_sent = True
            await self._budget.sent(self._booking)

    async def missed(self) -> None:
        """An answer came without the hook seeing its request leave: count the start late, not never."""
        log.warning("the HTTP transport did not report an API request leaving; its QPS start counts late")
        await self._budget.acquire(self._booking)


def _note_task(request: CutoutRequest, task: TaskResult) -> None:
    """Tell the caller which task to resume if this process stops before the task is done."""
    if request.on_task is not None:
        request.on_task(task.task_id)


def _source(request: CutoutRequest) -> dict[str, Any]:
    """``image_url`` for a link (the service fetches it; we never download it), else ``image_file``."""
    if request.image_url is not None:
        return {"image_url": request.image_url}
    return {"image_file": (request.filename, request.image, request.mime)}


def task_failed(state: int, detail: str = "") -> errors.TaskFailed:
    """The engine-neutral error for a failed task state: its text, retry policy and finality."""
    text_key, retryable = TASK_STATES.get(state, ("api_failed", False))
    return errors.TaskFailed(
        detail or f"task failed with state {state}",
        text_key=text_key,
        retryable=retryable,
        final=state in FINAL_STATES,
        link_text_key=_LINK_TEXTS.get(state),
        state=state,
    )


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _with_read_at_least(timeout: httpx.Timeout, read: float) -> httpx.Timeout:
    longer = None if timeout.read is None else max(timeout.read, read)
    return httpx.Timeout(connect=timeout.connect, read=longer, write=timeout.write, pool=timeout.pool)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _request_error(exc: httpx.RequestError, what: str) -> errors.ApiError:
    """Map an httpx error by its type only: its message and request are not ours to repeat."""
    if isinstance(exc, httpx.TimeoutException):
        return errors.ApiTimeout(f"{what}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.DecodingError):
        return errors.MalformedResponse(f"{what}: undecodable body")
    return errors.NetworkError(f"{what}: {type(exc).__name__}")


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # not JSON, or not UTF-8
        return None
    return body if isinstance(body, dict) else None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _as_url(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _with_message(detail: str, message: str) -> str:
    return f"{detail}: {message}" if message else detail


def _result_url(task: TaskResult) -> str:
    if task.state != 1 or not task.image:
        raise errors.ResultExpired(
            f"task {task.task_id} has no result (state {task.state})", state=task.state
        )
    return task.image


def _retry_after(response: httpx.Response) -> float:
    """Seconds from a Retry-After header (seconds or HTTP date), else a short default; capped."""
    value = response.headers.get("Retry-After", "").strip()
    seconds: float | None = None
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds is None or not math.isfinite(seconds):
        return _RATE_LIMIT_PAUSE
    return min(max(seconds, 0.0), _MAX_RATE_LIMIT_PAUSE)
