"""The cutout API's httpx transport: httpcore's, with fewer writes, reads and readability checks.

The cutout API's requests keep httpx and httpcore (Telegram's go over aiohttp:
bot/telegram_request.py): their QPS start is taken from httpcore's trace, right before the request's
first byte leaves (bot/backends/picwish.py), which no hook of aiohttp's offers (it reports headers
once they are written).

httpx hands a multipart body to the socket piece by piece: each form field's header, its value and
a line break, then the closing boundary. A sticker upload with three fields is 17 writes, each a
system call and a trip through anyio on the event loop (about 0.1 ms apiece on loopback). A body up
to ``JOIN_LIMIT`` is joined first and goes out in one write: 1.3 ms of the loop's CPU for a 200 KB
upload instead of 3.1. Larger bodies (a print prop, a document) keep streaming: the copy would cost
memory, and the extra writes are noise beside them.

Before each request, and again when its answer is closed, httpcore asks every pooled connection
whether its server has hung up ("is the socket readable?"). Through anyio that question costs
10.5 µs on this 2-core machine, 9 of them in building a dict of the socket's attributes (with a
``getpeername`` call) only to take the socket out of it; with 30 connections open at QPS 20, half
a millisecond of the loop per request. The streams here answer it with one ``poll`` (1.4 µs).

A download over plain HTTP (a local Bot API server, the benchmarks' stand-ins) is read in pieces of
all the socket has, up to 1 MiB, not httpcore's 64 KiB. Over TLS a read is one TLS record (16 KiB
at most) whatever is asked, so there it changes nothing.
"""

from __future__ import annotations

import select
import socket
from typing import Any

import httpcore
import httpx

JOIN_LIMIT = 8 * 1024 * 1024
_READ_SIZE = 1024 * 1024


class OneWriteTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (connection pool, timeouts, traces), sending a body in one write."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # httpx builds httpcore's pool without a say in its network backend: wrapped where it is kept
        pool = getattr(self, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend):
            pool._network_backend = _QuickReadability(backend)  # type: ignore[union-attr]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream) and _length(request) <= JOIN_LIMIT:
            await request.aread()  # the pieces joined; the request's stream becomes that one piece
        return await super().handle_async_request(request)


def _length(request: httpx.Request) -> float:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):  # a stream of unknown length: left as it is
        return float("inf")


class _QuickReadability(httpcore.AsyncNetworkBackend):
    """A network backend whose streams tell whether their socket is readable with one poll."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._backend.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._backend.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")  # TLS keeps the same one

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's)
        # All the socket has, up to 1 MiB: asked for httpcore's 64 KiB, anyio cuts each 256 KiB that
        # asyncio reads into four, copying the rest each time, and re-arms the socket in epoll for each.
        return await self._stream.read(max(max_bytes, _READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


def _readable(sock: socket.socket) -> bool:
    """Whether a read would return at once: data, or the end a server that hung up leaves; a closed
    socket counts as readable, so the pool drops its connection."""
    fd = sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
