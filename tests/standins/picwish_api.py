"""A strict local stand-in of the PicWish Face Cutout API, served over real HTTP.

It follows ``/work/shared/reference/picwish-face-cutout-api.md``: the two endpoints, ``X-API-KEY``
auth, the QPS limit (exact, by arrival time), sync and async modes, the task states, the upload limits,
and result URLs that expire. It cannot detect faces, so its "head" is a fixed ellipse in the upper
middle of the picture (see :func:`head_ellipse`); a near-uniform picture has "no face" (state -14).

The server runs in its own thread and event loop, so it serves a bot running in-process, a bot
running as a subprocess (``PICWISH_API_URL=fake.url``) and a load benchmark alike::

    with FakePicWish("key", qps=2, latency=0.5) as fake:
        ...  # point the bot at fake.url
        fake.wait_for(lambda: len(fake.creates()) == 1)
        assert fake.max_in_window() <= 2

Every inspection and driving method is thread-safe; ``wait_for`` blocks the calling thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import email.parser
import functools
import hashlib
import io
import logging
import math
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from aiohttp import web
from PIL import Image, ImageOps, ImageStat

log = logging.getLogger(__name__)

CREATE_PATH = "/api/tasks/visual/self-face-cutout"
QUERY_PATH = CREATE_PATH + "/{task_id}"
RESULTS_PREFIX = "/results/"
MAX_FILE_BYTES = 20 * 1024 * 1024  # image_file limit (answered with HTTP 413)
MAX_BODY_BYTES = MAX_FILE_BYTES + (1 << 20)  # a bigger body is refused (413) without parsing it
MAX_URL_BYTES = 30 * 1024 * 1024  # image_url limit (task state -5)
MAX_SIDE = 4096
UNIFORM_STDDEV = 2.0  # below this (every channel) the picture has "no face": state -14
# Pillow's names for the formats the spec lists (jpg, png, bmp, webp, tiff, ...).
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "DIB", "WEBP", "TIFF"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
OUTPUT_TYPE = 1
STATE_DONE = 1
STATE_QUEUED, STATE_PREPARING, STATE_PROCESSING = 0, 2, 4
STATUS_PENDING = 0  # ApiRequest.status while the answer is being prepared
STATUS_DROPPED = -1  # ApiRequest.status when the connection was closed without an answer

MESSAGES = {
    400: "Wrong parameter passed by the client",
    401: "Unauthorized API key",
    404: "The requested URL or resource does not exist",
    413: "The uploaded file exceeds the allowed size",
    429: "Request frequency exceeds the QPS limit",
    500: "Server-side exception",
}

Kind = Literal["create", "query"]
ScriptTarget = Literal["create", "query", "any"]
OutcomeKind = Literal[
    "http", "body_status", "state", "malformed", "reset", "slow", "processing", "no_image", "expired_result"
]
Latency = float | Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True)
class ApiRequest:
    """One API request (create or query) as the stand-in saw it."""

    method: str
    path: str
    at: float  # time.monotonic() at arrival
    fields: dict[str, str]  # form fields other than image_file (creates only)
    file_name: str | None
    file_size: int | None
    status: int  # HTTP status answered; STATUS_PENDING (0) until then, STATUS_DROPPED (-1) for a reset
    kind: Kind
    task_id: str | None = None
    accepted: bool = False  # passed auth and the QPS gate, so it counts toward the QPS window


@dataclass(frozen=True)
class Download:
    """One download of a result or mask file (not an API request: no auth, no QPS)."""

    path: str
    at: float
    status: int


@dataclass(frozen=True)
class Outcome:
    """A scripted answer for one API request; build it with the constructors below."""

    kind: OutcomeKind
    status: int = 200
    task_state: int = 0
    seconds: float = 0.0

    @staticmethod
    def http(status: int) -> Outcome:
        """Answer with that HTTP status and the documented error body."""
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        return Outcome("http", status=status)

    @staticmethod
    def body_status(status: int) -> Outcome:
        """HTTP 200 whose body says ``status``: the service may report a failure either way."""
        return Outcome("body_status", status=status)

    @staticmethod
    def state(state: int) -> Outcome:
        """On a create: the task fails with that state. On a query: that one answer shows it."""
        if state >= 0:
            raise ValueError(f"a failure state is negative, got {state}")
        return Outcome("state", task_state=state)

    @staticmethod
    def malformed() -> Outcome:
        """HTTP 200, ``Content-Type: application/json``, body not JSON (cut short)."""
        return Outcome("malformed")

    @staticmethod
    def reset() -> Outcome:
        """Read the request, then close the connection without answering."""
        return Outcome("reset")

    @staticmethod
    def slow(seconds: float) -> Outcome:
        """Answer normally, but only after ``seconds``."""
        return Outcome("slow", seconds=seconds)

    @staticmethod
    def processing() -> Outcome:
        """A sync create answers at once with state 4 and no image (the client must poll).

        On a query: that one answer shows state 4.
        """
        return Outcome("processing")

    @staticmethod
    def no_image() -> Outcome:
        """State 1 without an ``image`` field (for the task on a create, one answer on a query)."""
        return Outcome("no_image")

    @staticmethod
    def expired_result() -> Outcome:
        """The task succeeds, but its result and mask URLs are expired from the start."""
        return Outcome("expired_result")


# --- image work (pure functions, run in the executor) --------------------------------------------


def head_ellipse(width: int, height: int) -> tuple[float, float, float, float]:
    """The stand-in's "head": centre x, centre y, half width, half height, in pixels."""
    return width / 2, height * 0.40, width * 0.225, height * 0.275


def head_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The ellipse's bounding box (left, top, right, bottom), clipped to the image: what crop=1 keeps."""
    cx, cy, a, b = head_ellipse(width, height)
    return (
        max(0, math.floor(cx - a)),
        max(0, math.floor(cy - b)),
        min(width, math.ceil(cx + a)),
        min(height, math.ceil(cy + b)),
    )


def head_mask(width: int, height: int) -> Image.Image:
    """255 inside the ellipse, 0 outside, about one pixel of anti-aliased edge."""
    cx, cy, a, b = head_ellipse(width, height)
    left, top, right, bottom = head_box(width, height)
    mask = Image.new("L", (width, height), 0)
    if right <= left or bottom <= top:
        return mask
    xs = (np.arange(left, right, dtype=np.float32) + 0.5 - cx) / a
    ys = (np.arange(top, bottom, dtype=np.float32) + 0.5 - cy) / b
    radius = np.sqrt(xs[np.newaxis, :] ** 2 + ys[:, np.newaxis] ** 2)
    # (1 - radius) * min(a, b) approximates the distance to the edge in pixels.
    coverage = np.clip((1.0 - radius) * min(a, b) + 0.5, 0.0, 1.0)
    patch = (coverage * 255.0 + 0.5).astype(np.uint8)
    mask.paste(Image.fromarray(patch, "L"), (left, top))
    return mask


def probe_size(data: bytes) -> tuple[int, int] | None:
    """The picture's size from its header, or None if Pillow cannot open it."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Image.DecompressionBombError:
        return (MAX_SIDE + 1, MAX_SIDE + 1)
    except Exception:
        return None


def render_cutout(data: bytes, *, crop: bool, output_format: str) -> tuple[bytes, bytes] | int:
    """(result file, mask PNG) for an uploaded picture, or the failing task state."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ALLOWED_FORMATS or max(img.size) > MAX_SIDE:
                return -7
            img.load()
            rgba = ImageOps.exif_transpose(img).convert("RGBA")
    except Exception:
        return -7
    if max(ImageStat.Stat(rgba.convert("RGB")).stddev) < UNIFORM_STDDEV:
        return -14
    pixels = np.array(rgba)
    ellipse = np.asarray(head_mask(*rgba.size), dtype=np.uint16)
    alpha = (pixels[..., 3].astype(np.uint16) * ellipse // 255).astype(np.uint8)
    pixels[..., 3] = alpha
    pixels[alpha == 0] = 0  # fully transparent pixels carry no colour, as real cutouts do
    result = Image.fromarray(pixels, "RGBA")
    mask = Image.fromarray(alpha, "L")
    if crop:
        box = head_box(*rgba.size)
        result, mask = result.crop(box), mask.crop(box)
    out = io.BytesIO()
    if output_format == "jpg":
        white = Image.new("RGBA", result.size, (255, 255, 255, 255))
        Image.alpha_composite(white, result).convert("RGB").save(out, "JPEG", quality=90)
    else:
        result.save(out, "PNG")
    mask_out = io.BytesIO()
    mask.save(mask_out, "PNG")
    return out.getvalue(), mask_out.getvalue()


# --- server-side state ---------------------------------------------------------------------------


@dataclass
class _Task:
    task_id: str
    crop: bool
    output_format: str
    latency: float
    created_wall: float
    created_mono: float
    finished: asyncio.Event
    fail_state: int | None = None
    no_image: bool = False
    expired: bool = False
    done: bool = False
    state: int = STATE_QUEUED
    completed_wall: float = 0.0
    image_url: str | None = None
    mask_url: str | None = None


@dataclass
class _StoredFile:
    data: bytes
    content_type: str
    expires_at: float  # time.monotonic()
    expired: bool = False


@dataclass
class _Form:
    fields: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None
    file_name: str | None = None
    file_size: int | None = None
    error: str | None = None  # answered 400
    too_large: str | None = None  # answered 413


def _parse_form_data(body: bytes, content_type: str) -> _Form:
    """Parse a multipart/form-data body (RFC 7578).

    Not aiohttp's streaming reader: it warns from inside aiohttp (unread_data() is deprecated),
    which would turn into server errors under ``-W error``.
    """
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return _Form(error="multipart boundary missing")
    chunks = body.split(b"--" + boundary.encode("latin-1"))
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        return _Form(error="malformed multipart body: no closing boundary")
    form = _Form()
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            return _Form(error="malformed multipart body")
        head, separator, value = chunk[2:-2].partition(b"\r\n\r\n")
        if not separator:
            if not chunk[2:].startswith(b"\r\n"):
                return _Form(error="malformed multipart part headers")
            head, value = b"", chunk[4:-2]
        part = email.parser.HeaderParser().parsestr(head.decode("utf-8", "replace"))
        name = part.get_param("name", header="content-disposition")
        filename = part.get_param("filename", header="content-disposition")
        if not isinstance(name, str) or not name:
            return _Form(error="multipart part without a name")
        if name != "image_file":
            form.fields[name] = value.decode("utf-8", "replace")
            continue
        if form.file_size is not None:
            form.error = "image_file given more than once"
        form.file_size, form.file = len(value), value
        form.file_name = filename if isinstance(filename, str) else None
    return form


def _error(status: int, message: str | None = None, *, http_status: int | None = None) -> web.Response:
    body = {"status": status, "message": message or MESSAGES.get(status, "error")}
    return web.json_response(body, status=status if http_status is None else http_status)


def _object_storage_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>\n"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


async def _drain(request: web.Request) -> None:
    async for _ in request.content.iter_chunked(1 << 16):
        pass


def _primed_key(upload: bytes, crop: bool, output_format: str) -> tuple[bytes, bool, str]:
    """What :meth:`FakePicWish.prime` files a cutout under: the upload's digest and the options."""
    return hashlib.sha256(upload).digest(), crop, output_format


class FakePicWish:
    """The PicWish Face Cutout API on 127.0.0.1, in a background thread. See the module docstring."""

    def __init__(
        self,
        api_key: str,
        *,
        qps: float = 2,
        latency: Latency = 0.0,
        sync_wait_limit: float = 30.0,
        result_ttl: float = 3600.0,
        fetch_timeout: float = 10.0,
    ) -> None:
        if qps < 1:
            raise ValueError("qps must be at least 1")
        self.api_key = api_key
        self.url = ""
        self._qps = qps
        self._latency = latency
        self._sync_wait_limit = sync_wait_limit
        self._result_ttl = result_ttl
        self._fetch_timeout = fetch_timeout
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._requests: list[ApiRequest] = []
        self._downloads: list[Download] = []
        self._window: deque[float] = deque()
        self._accepted_at: list[float] = []
        self._count_429 = 0
        self._script: list[tuple[ScriptTarget, Outcome]] = []
        self._down: Outcome | None = None
        self._tasks: dict[str, _Task] = {}
        self._files: dict[str, _StoredFile] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._primed: dict[tuple[bytes, bool, str], tuple[bytes, bytes] | int] = {}
        self.cut_while_serving = 0  # tasks whose cutout was made when asked, not primed

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakePicWish already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name="FakePicWish", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakePicWish did not start within 10 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        self._thread = None
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> FakePicWish:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post(CREATE_PATH, self._handle_create)
        app.router.add_get(QUERY_PATH, self._handle_query, allow_head=False)
        app.router.add_get(RESULTS_PREFIX + "{name}", self._handle_download)
        # A short shutdown_timeout: stop() should not wait for a sync request still in flight.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._fetch_timeout))

    async def _shutdown(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- inspection ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[ApiRequest]:
        """Every API request (create and query), in arrival order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def creates(self) -> list[ApiRequest]:
        return [r for r in self.requests if r.kind == "create"]

    def queries(self) -> list[ApiRequest]:
        return [r for r in self.requests if r.kind == "query"]

    @property
    def downloads(self) -> list[Download]:
        """Every result/mask download, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._downloads)

    @property
    def count_429(self) -> int:
        with self._lock:
            return self._count_429

    @property
    def scripted_left(self) -> int:
        """How many scripted outcomes no request has consumed yet."""
        with self._lock:
            return len(self._script)

    def max_in_window(self, window: float = 1.0) -> int:
        """The most accepted API requests whose arrival fell in any window of that length."""
        with self._lock:
            times = list(self._accepted_at)
        best = start = 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def task_state(self, task_id: str) -> int:
        """The data.state a query for that task would show now (KeyError if unknown)."""
        with self._lock:
            return int(self._task_data(self._tasks[task_id])["state"])

    def task_done(self, task_id: str) -> bool:
        """Whether the task has finished (succeeded or failed)."""
        with self._lock:
            task = self._tasks.get(task_id)
            return task is not None and task.done

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Block until predicate() is truthy and return its value, or raise TimeoutError.

        The predicate runs under the stand-in's lock: it may call the inspection methods, but must
        not make HTTP requests to the stand-in. It is re-checked on every change and every 50 ms.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s; {self._summary()}")
                self._cond.wait(min(remaining, 0.05))

    async def async_wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:  # noqa: ASYNC109
        """wait_for for async tests: waits in a worker thread, so the caller's loop keeps running."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def _summary(self) -> str:
        statuses = Counter(r.status for r in self._requests)
        kinds = Counter(r.kind for r in self._requests)
        tasks = Counter("done" if t.done else "running" for t in self._tasks.values())
        last = self._requests[-3:]
        return (
            f"{len(self._requests)} API requests {dict(kinds)}, statuses {dict(statuses)}, "
            f"tasks {dict(tasks)}, {len(self._downloads)} downloads, last: {last}"
        )

    # --- driving ---------------------------------------------------------------------------------

    def prime(self, uploads: list[bytes], *, crop: bool = True, output_format: str = "png") -> None:
        """Cut these uploads out ahead of time: a task for one of them (with these options) then answers
        what it would have made, without making it. A benchmark does this before it measures, so that
        the API's CPU is not taken from the bot on the machine they share; latency, QPS and the
        answers' expiry are as for any task."""
        cut = functools.partial(render_cutout, crop=crop, output_format=output_format)
        with ThreadPoolExecutor(max_workers=2) as pool:  # numpy and Pillow's encoder run without the GIL
            answers = list(pool.map(cut, uploads))
        with self._lock:
            for upload, answer in zip(uploads, answers, strict=True):
                self._primed[_primed_key(upload, crop, output_format)] = answer

    def script(self, *outcomes: Outcome, on: ScriptTarget = "create") -> None:
        """Queue outcomes, consumed in order by the next accepted API requests of that kind.

        A request consumes the first queued outcome whose ``on`` matches it ("any" matches both);
        requests refused with 401 or 429 consume nothing.
        """
        if on not in ("create", "query", "any"):
            raise ValueError(f"on must be 'create', 'query' or 'any', not {on!r}")
        with self._cond:
            self._script.extend((on, outcome) for outcome in outcomes)
            self._cond.notify_all()

    def expire_results(self) -> None:
        """Every result and mask file produced so far now answers as expired."""
        with self._cond:
            for stored in self._files.values():
                stored.expired, stored.data = True, b""
            self._cond.notify_all()

    def set_down(self, outcome: Outcome | None) -> None:
        """An outage: every accepted request gets ``outcome`` (e.g. ``Outcome("http", status=500)``)
        until ``set_down(None)``; scripted outcomes wait meanwhile."""
        with self._lock:
            self._down = outcome

    def set_latency(self, latency: Latency) -> None:
        """Processing time of tasks created from now on (seconds, or a callable drawn per task)."""
        with self._lock:
            self._latency = latency

    def set_qps(self, qps: float) -> None:
        if qps < 1:
            raise ValueError("qps must be at least 1")
        with self._lock:
            self._qps = qps

    # --- request bookkeeping ---------------------------------------------------------------------

    def _admit(self, request: web.Request, kind: Kind) -> tuple[int, Outcome | None, web.Response | None]:
        """Record the request; decide auth, QPS and the scripted outcome at arrival."""
        with self._cond:
            now = time.monotonic()
            index = len(self._requests)
            outcome: Outcome | None = None
            refusal: web.Response | None = None
            accepted = False
            if request.headers.get("X-API-KEY") != self.api_key:
                refusal = _error(401)
            else:
                while self._window and now - self._window[0] >= 1.0:
                    self._window.popleft()
                if len(self._window) + 1 > self._qps:
                    refusal = _error(429)
                else:
                    outcome = self._down or self._pop_script(kind)
                    # A scripted 429 is a refusal too: it must not use up the QPS budget.
                    if outcome is None or (outcome.kind, outcome.status) != ("http", 429):
                        accepted = True
                        self._window.append(now)
                        self._accepted_at.append(now)
            self._requests.append(
                ApiRequest(
                    method=request.method,
                    path=request.path,
                    at=now,
                    fields={},
                    file_name=None,
                    file_size=None,
                    status=STATUS_PENDING,
                    kind=kind,
                    task_id=request.match_info.get("task_id"),
                    accepted=accepted,
                )
            )
            self._cond.notify_all()
        return index, outcome, refusal

    def _pop_script(self, kind: Kind) -> Outcome | None:
        for i, (on, outcome) in enumerate(self._script):
            if on in (kind, "any"):
                del self._script[i]
                return outcome
        return None

    def _update(self, index: int, **changes: Any) -> None:
        with self._cond:
            self._requests[index] = replace(self._requests[index], **changes)
            if changes.get("status") == 429:
                self._count_429 += 1
            self._cond.notify_all()

    async def _answer(
        self, index: int, response: web.Response, outcome: Outcome | None, task_id: str | None = None
    ) -> web.Response:
        if outcome is not None and outcome.kind == "slow":
            await asyncio.sleep(outcome.seconds)
        changes: dict[str, Any] = {"status": response.status}
        if task_id is not None:
            changes["task_id"] = task_id
        self._update(index, **changes)
        return response

    def _scripted_response(self, outcome: Outcome) -> web.Response | None:
        if outcome.kind == "http":
            return _error(outcome.status)
        if outcome.kind == "body_status":
            return _error(outcome.status, http_status=200)
        if outcome.kind == "malformed":
            return web.Response(
                status=200, text='{"status": 200, "message": "succ', content_type="application/json"
            )
        return None

    def _reset(self, request: web.Request, index: int) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        self._update(index, status=STATUS_DROPPED)
        # Writing to the closed transport fails; aiohttp then drops the connection quietly.
        return web.Response(status=500)

    # --- handlers --------------------------------------------------------------------------------

    async def _handle_create(self, request: web.Request) -> web.Response:
        index, outcome, refusal = self._admit(request, "create")
        if refusal is not None:
            return await self._answer(index, refusal, None)
        try:
            return await self._create(request, index, outcome)
        except Exception:
            log.exception("FakePicWish create failed")
            return await self._answer(index, _error(500), None)

    async def _create(self, request: web.Request, index: int, outcome: Outcome | None) -> web.Response:
        form = await self._read_form(request)
        self._update(index, fields=dict(form.fields), file_name=form.file_name, file_size=form.file_size)
        if outcome is not None and outcome.kind == "reset":
            return self._reset(request, index)
        if outcome is not None and (scripted := self._scripted_response(outcome)) is not None:
            return await self._answer(index, scripted, outcome)
        problem = self._check_form(form)
        if problem is not None:
            return await self._answer(index, _error(*problem), outcome)
        if form.file is not None:
            size = await asyncio.get_running_loop().run_in_executor(None, probe_size, form.file)
            if size is not None and max(size) > MAX_SIDE:
                message = f"image resolution {size[0]}x{size[1]} exceeds {MAX_SIDE}x{MAX_SIDE}"
                return await self._answer(index, _error(400, message), outcome)

        task = self._new_task(form, outcome)
        if form.fields.get("sync", "0") == "0":
            body = {"status": 200, "message": "success", "data": {"task_id": task.task_id}}
            return await self._answer(index, web.json_response(body), outcome, task.task_id)
        if outcome is None or outcome.kind != "processing":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task.finished.wait(), timeout=self._sync_wait_limit)
        with self._lock:
            still_processing = not task.done or (outcome is not None and outcome.kind == "processing")
            data = self._task_data(task, force_processing=still_processing)
        if data["state"] == STATE_DONE:
            data["output_type"] = OUTPUT_TYPE
        body = {"status": 200, "message": "success", "data": data}
        return await self._answer(index, web.json_response(body), outcome, task.task_id)

    async def _handle_query(self, request: web.Request) -> web.Response:
        index, outcome, refusal = self._admit(request, "query")
        if refusal is not None:
            return await self._answer(index, refusal, None)
        if outcome is not None and outcome.kind == "reset":
            return self._reset(request, index)
        if outcome is not None and (scripted := self._scripted_response(outcome)) is not None:
            return await self._answer(index, scripted, outcome)
        task_id = request.match_info["task_id"]
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None:
                if outcome is not None and outcome.kind == "expired_result":
                    task.expired = True
                    self._expire_task_files(task)
                data = self._task_data(task, outcome=outcome)
        if task is None:
            return await self._answer(index, _error(404, f"task {task_id} not found"), outcome)
        body = {"status": 200, "message": "success", "data": data}
        return await self._answer(index, web.json_response(body), outcome)

    async def _handle_download(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        with self._cond:
            now = time.monotonic()
            stored = self._files.get(name)
            if stored is None:
                response = _object_storage_error(404, "NoSuchKey", "The specified key does not exist.")
            elif stored.expired or now >= stored.expires_at:
                stored.expired, stored.data = True, b""
                response = _object_storage_error(403, "AccessDenied", "Request has expired.")
            else:
                response = web.Response(body=stored.data, content_type=stored.content_type)
            self._downloads.append(Download(path=request.path, at=now, status=response.status))
            self._cond.notify_all()
        return response

    # --- create: form, task, processing ----------------------------------------------------------

    async def _read_form(self, request: web.Request) -> _Form:
        """Read the whole body (up to a cap) and parse it; the result says what was wrong, if anything."""
        if request.content_type != "multipart/form-data":
            await _drain(request)
            return _Form(error="Content-Type must be multipart/form-data")
        body, total = bytearray(), 0
        async for chunk in request.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total <= MAX_BODY_BYTES:
                body += chunk
        if total > MAX_BODY_BYTES:
            return _Form(too_large=f"request body is {total} bytes, over {MAX_FILE_BYTES}")
        return _parse_form_data(bytes(body), request.headers.get("Content-Type", ""))

    @staticmethod
    def _check_form(form: _Form) -> tuple[int, str] | None:
        if form.too_large is not None:
            return 413, form.too_large
        if form.file_size is not None and form.file_size > MAX_FILE_BYTES:
            return 413, f"image_file is {form.file_size} bytes, over {MAX_FILE_BYTES}"
        if form.error is not None:
            return 400, form.error
        has_url = bool(form.fields.get("image_url", "").strip())
        has_file = form.file_size is not None
        if has_url and has_file:
            return 400, "image_url and image_file are mutually exclusive"
        if not has_url and not has_file:
            return 400, "one of image_url or image_file is required"
        for name, allowed in (("sync", ("0", "1")), ("crop", ("0", "1")), ("output_format", ("png", "jpg"))):
            if name in form.fields and form.fields[name] not in allowed:
                return 400, f"{name} must be one of {', '.join(allowed)}"
        return None

    def _new_task(self, form: _Form, outcome: Outcome | None) -> _Task:
        with self._cond:
            latency = self._latency
            drawn = latency() if callable(latency) else latency
            task = _Task(
                task_id=str(uuid.uuid4()),
                crop=form.fields.get("crop", "0") == "1",
                output_format=form.fields.get("output_format", "png"),
                latency=max(0.0, float(drawn)),
                created_wall=time.time(),
                created_mono=time.monotonic(),
                finished=asyncio.Event(),
            )
            if outcome is not None:
                if outcome.kind == "state":
                    task.fail_state = outcome.task_state
                task.no_image = outcome.kind == "no_image"
                task.expired = outcome.kind == "expired_result"
            self._tasks[task.task_id] = task
            self._cond.notify_all()
        image_url = form.fields.get("image_url", "").strip() or None
        job = asyncio.get_running_loop().create_task(self._process(task, form.file, image_url))
        self._background.add(job)
        job.add_done_callback(self._background.discard)
        return task

    async def _process(self, task: _Task, upload: bytes | None, image_url: str | None) -> None:
        try:
            state, files = await self._outcome_of(task, upload, image_url)
            delay = task.created_mono + task.latency - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            with self._cond:
                self._finish_task(task, state, files)
                self._cond.notify_all()
        finally:
            # Also on cancellation at stop(): a sync create waiting on it then answers "processing".
            task.finished.set()

    async def _outcome_of(
        self, task: _Task, upload: bytes | None, image_url: str | None
    ) -> tuple[int, tuple[bytes, bytes] | None]:
        if task.fail_state is not None:
            return task.fail_state, None
        try:
            source = await self._fetch(image_url) if image_url is not None else upload or b""
            if isinstance(source, int):
                return source, None
            with self._lock:
                primed = self._primed.get(_primed_key(source, task.crop, task.output_format))
            if primed is not None:
                result = primed
            else:
                self.cut_while_serving += 1
                render = functools.partial(
                    render_cutout, source, crop=task.crop, output_format=task.output_format
                )
                result = await asyncio.get_running_loop().run_in_executor(None, render)
        except Exception:
            log.exception("FakePicWish task %s failed", task.task_id)
            return -1, None
        return (STATE_DONE, result) if isinstance(result, tuple) else (result, None)

    async def _fetch(self, url: str) -> bytes | int:
        """The image at a local URL, or the failing state (-3 download failed, -5 too big)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
            return -3
        assert self._session is not None
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return -3
                buffer = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    buffer += chunk
                    if len(buffer) > MAX_URL_BYTES:
                        return -5
                return bytes(buffer)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return -3

    def _finish_task(self, task: _Task, state: int, files: tuple[bytes, bytes] | None) -> None:
        """Mark the task done and publish its files (the lock is held)."""
        task.done, task.state, task.completed_wall = True, state, time.time()
        if files is None:
            return
        token = secrets.token_hex(16)
        extension, content_type = (
            ("jpg", "image/jpeg") if task.output_format == "jpg" else ("png", "image/png")
        )
        expires_at = time.monotonic() + self._result_ttl
        signature = f"Expires={int(task.completed_wall + self._result_ttl)}&Signature={secrets.token_hex(8)}"
        for name, data, kind in (
            (f"{token}.{extension}", files[0], content_type),
            (f"{token}_mask.png", files[1], "image/png"),
        ):
            self._files[name] = _StoredFile(data=data, content_type=kind, expires_at=expires_at)
        task.image_url = f"{self.url}{RESULTS_PREFIX}{token}.{extension}?{signature}"
        task.mask_url = f"{self.url}{RESULTS_PREFIX}{token}_mask.png?{signature}"
        if task.expired:
            self._expire_task_files(task)

    def _expire_task_files(self, task: _Task) -> None:
        for url in (task.image_url, task.mask_url):
            if url is not None:
                name = urlsplit(url).path.removeprefix(RESULTS_PREFIX)
                stored = self._files[name]
                stored.expired, stored.data = True, b""

    def _task_data(
        self, task: _Task, *, outcome: Outcome | None = None, force_processing: bool = False
    ) -> dict[str, Any]:
        """The ``data`` object of an answer about this task, as of now (the lock is held)."""
        data: dict[str, Any] = {"task_id": task.task_id, "created_at": str(int(task.created_wall))}
        processed_at = str(int(task.created_wall + 0.3 * task.latency))
        if outcome is not None and outcome.kind == "state":
            completed = str(int(time.time()))
            data.update(
                processed_at=processed_at, completed_at=completed, progress=100, state=outcome.task_state
            )
            return data
        show_processing = force_processing or (outcome is not None and outcome.kind == "processing")
        if task.done and not show_processing:
            data.update(
                processed_at=processed_at,
                completed_at=str(int(task.completed_wall)),
                progress=100,
                state=task.state,
            )
            if task.state == STATE_DONE:
                hide_image = task.no_image or (outcome is not None and outcome.kind == "no_image")
                if not hide_image:
                    data["image"] = task.image_url
                data["mask"] = task.mask_url
            return data
        elapsed = time.monotonic() - task.created_mono
        fraction = elapsed / task.latency if task.latency > 0 else 1.0
        if show_processing or fraction >= 0.3:
            state = STATE_PROCESSING
        elif fraction >= 0.15:
            state = STATE_PREPARING
        else:
            state = STATE_QUEUED
        if state == STATE_PROCESSING:
            data["processed_at"] = processed_at
        data.update(progress=max(0, min(99, int(fraction * 100))), state=state)
        return data
