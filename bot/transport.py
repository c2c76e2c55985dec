"""The httpx transport for every HTTP client of the bot: Telegram's and the cutout API's.

httpx hands a multipart body to the socket piece by piece: each form field's header, its value and
a line break, then the closing boundary. A sticker upload with three fields is 17 writes, each a
system call and a trip through anyio on the event loop (about 0.1 ms apiece on loopback). A body up
to ``JOIN_LIMIT`` is joined first and goes out in one write: 1.3 ms of the loop's CPU for a 200 KB
upload instead of 3.1 (bench/latency.py has the whole photo's figure). Larger bodies (a print prop,
a document) keep streaming: the copy would cost memory, and the extra writes are noise beside them.
"""

from __future__ import annotations

import httpx

JOIN_LIMIT = 8 * 1024 * 1024


class OneWriteTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (connection pool, timeouts, traces), sending a body in one write."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream) and _length(request) <= JOIN_LIMIT:
            await request.aread()  # the pieces joined; the request's stream becomes that one piece
        return await super().handle_async_request(request)


def pool_limits(connections: int) -> httpx.Limits:
    """As many connections kept open between requests as may be in flight at once: a burst of
    answers never has to open (and then close) connections of its own."""
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


def _length(request: httpx.Request) -> float:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):  # a stream of unknown length: left as it is
        return float("inf")
