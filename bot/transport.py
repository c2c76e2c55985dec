"""The httpx transports of the bot: Telegram's carried by aiohttp, the cutout API's by httpcore.

Telegram's requests (every python-telegram-bot call, and the file downloads) go through
:class:`AiohttpTransport`: httpx stays the client (its API, its proxies from the environment, which
it mounts on transports of its own), and aiohttp carries the request. httpcore, h11 and anyio are
pure Python; aiohttp parses HTTP in C. On this 2-core machine a small form post costs the event loop
1.35 ms through httpcore and 0.78 ms through aiohttp (0.33 ms for aiohttp alone: the rest is httpx's
client), a 190 KB sticker upload 1.4 and 1.0 ms, a download 1.1 and 0.5 ms; a photo makes six such
calls (bench/latency.py has the whole photo's figure). aiohttp sends a body in one write, notices a
connection the server closed by itself, and reads all the socket has.

The cutout API's requests keep httpcore (:class:`OneWriteTransport`): their QPS start is taken from
httpcore's trace, right before the request's first byte leaves (bot/backends/picwish.py), which no
hook of aiohttp's offers (it reports headers once they are written).

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

import asyncio
import select
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpcore
import httpx
from yarl import URL

JOIN_LIMIT = 8 * 1024 * 1024
_READ_SIZE = 1024 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's requests carried by an aiohttp session of ``connections`` connections, all kept open
    between requests for ``keepalive`` seconds (a burst of answers never opens and closes connections
    of its own). Redirects, cookies and decoding stay httpx's.

    Timeouts as httpx's: ``connect`` to open a connection (``pool`` more to wait for a free one),
    ``read`` between two pieces of the answer. aiohttp has no write timeout: the wait for the answer's
    head is bounded by all four together, so an upload that stalls still ends. Errors are httpx's,
    worded without the URL (a Telegram URL holds the bot's token): a connection that cannot be opened
    is a :class:`httpx.ConnectError`, which tells a caller that nothing was sent.
    """

    def __init__(
        self, *, connections: int, keepalive: float = 5.0, verify: ssl.SSLContext | None = None
    ) -> None:
        self._connections = connections
        self._keepalive = keepalive
        self._ssl = verify or httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        """The session of the running loop: made at the first request (aiohttp binds it to its loop),
        and again after :meth:`aclose` (python-telegram-bot reopens a client it shut down)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._connections, limit_per_host=0, keepalive_timeout=self._keepalive, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                auto_decompress=False,  # httpx decodes
                skip_auto_headers=_HTTPX_SETS,
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open_session()
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        body: bytes | AsyncIterable[bytes] | None
        if isinstance(request.stream, httpx.ByteStream) or _length(request) <= JOIN_LIMIT:
            body = await request.aread() or None
        else:  # streamed as httpx makes it (an async client's stream is an async iterable)
            assert isinstance(request.stream, httpx.AsyncByteStream)
            body = request.stream
            headers = [(name, value) for name, value in headers if name.lower() != "transfer-encoding"]
        timeout = request.extensions.get("timeout", {})
        connect, read, write, pool = (timeout.get(k) for k in ("connect", "read", "write", "pool"))
        bound = None if None in (connect, read, write, pool) else connect + read + write + pool
        with _as_httpx_errors(request):
            async with asyncio.timeout(bound):
                answer = await session.request(
                    request.method,
                    URL(str(request.url), encoded=True),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=None if connect is None or pool is None else connect + pool,
                        sock_connect=connect,
                        sock_read=read,
                    ),
                )
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            stream=_AnswerStream(answer, request),
            extensions={
                "http_version": f"HTTP/{answer.version.major}.{answer.version.minor}".encode()
                if answer.version
                else b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


# httpx puts these on every request; aiohttp would add its own where one is missing
_HTTPX_SETS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class _AnswerStream(httpx.AsyncByteStream):
    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for piece in self._answer.content.iter_any():
                yield piece

    async def aclose(self) -> None:
        self._answer.release()  # back to the pool once read whole; closed otherwise


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError:
        raise httpx.ConnectTimeout("timed out opening a connection", request=request) from None
    except aiohttp.SocketTimeoutError:
        raise httpx.ReadTimeout("timed out waiting for the answer", request=request) from None
    except TimeoutError:  # the bound on the whole exchange: the upload stalled
        raise httpx.WriteTimeout("timed out sending the request", request=request) from None
    except aiohttp.ClientConnectorError as exc:  # nothing was sent
        raise httpx.ConnectError(f"cannot connect: {_reason(exc.os_error)}", request=request) from None
    except aiohttp.ServerDisconnectedError:
        raise httpx.RemoteProtocolError(
            "the server closed the connection without an answer", request=request
        ) from None
    except aiohttp.ClientPayloadError:
        raise httpx.RemoteProtocolError("the answer was cut short", request=request) from None
    except aiohttp.ClientResponseError as exc:  # its text quotes the URL: the message alone
        raise httpx.RemoteProtocolError(f"a malformed answer: {exc.message}", request=request) from None
    except aiohttp.InvalidURL:
        raise httpx.UnsupportedProtocol("an invalid URL", request=request) from None
    except aiohttp.ClientOSError as exc:
        raise httpx.ReadError(f"the connection failed: {_reason(exc)}", request=request) from None
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(type(exc).__name__, request=request) from None


def _reason(exc: OSError | None) -> str:
    return (exc.strerror if exc is not None else None) or "no reason given"


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
