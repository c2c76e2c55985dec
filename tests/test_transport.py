"""The bot's httpx transports (Telegram's over aiohttp, the cutout API's over httpcore): a body joined into
one write, or streamed when large, arrives as sent; a failure is httpx's, and never quotes the URL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import httpx
import pytest
from aiohttp import BodyPartReader, web

from bot import transport
from bot.transport import AiohttpTransport, OneWriteTransport

BIG = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32 + 7)  # 3 MB and a bit: many reads
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)
SECRET = "123456:TOKEN-never-in-an-error"  # Telegram's URLs hold the bot's token


def _transports() -> dict[str, Callable[[], httpx.AsyncBaseTransport]]:
    return {
        "aiohttp": lambda: AiohttpTransport(connections=4),
        "httpcore": lambda: OneWriteTransport(limits=LIMITS),
    }


@pytest.fixture(params=sorted(_transports()))
def make_transport(request: pytest.FixtureRequest) -> Callable[[], httpx.AsyncBaseTransport]:
    return _transports()[request.param]


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """A server on loopback: /form answers with the fields it parsed (name, size, digest), /big sends BIG."""

    async def parse(request: web.Request) -> web.Response:
        fields = {}
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader)
            data = await part.read()
            fields[part.name] = {
                "filename": part.filename,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        return web.json_response(fields)

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=BIG, content_type="image/png")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/form", parse)
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _post_form(
    url: str, sticker: bytes, make_transport: Callable[[], httpx.AsyncBaseTransport]
) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient(transport=make_transport(), timeout=10) as client:
        response = await client.post(
            f"{url}/form",
            data={"chat_id": "42", "emoji": "🙂"},
            files={"sticker": ("sticker.webp", sticker, "image/webp")},
        )
        response.raise_for_status()
        fields: dict[str, dict[str, object]] = response.json()
        return fields


def _expected(sticker: bytes) -> dict[str, dict[str, object]]:
    def field(data: bytes, filename: str | None = None) -> dict[str, object]:
        return {"filename": filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    return {
        "chat_id": field(b"42"),
        "emoji": field("🙂".encode()),
        "sticker": field(sticker, "sticker.webp"),
    }


async def test_a_multipart_upload_joined_into_one_write_arrives_field_for_field(
    echo_server: str, make_transport: Callable[[], httpx.AsyncBaseTransport]
) -> None:
    sticker = bytes(range(256)) * 800  # 200 KB: under the limit, so joined
    assert len(sticker) < transport.JOIN_LIMIT
    assert await _post_form(echo_server, sticker, make_transport) == _expected(sticker)


async def test_a_body_over_the_limit_streams_and_arrives_whole(
    echo_server: str, monkeypatch: pytest.MonkeyPatch, make_transport: Callable[[], httpx.AsyncBaseTransport]
) -> None:
    monkeypatch.setattr(transport, "JOIN_LIMIT", 64 * 1024)
    sticker = bytes(range(256)) * 4096  # 1 MB, over the lowered limit: sent as httpx streams it
    assert await _post_form(echo_server, sticker, make_transport) == _expected(sticker)


async def test_a_connection_the_server_hung_up_is_dropped_and_the_next_request_gets_a_new_one(
    make_transport: Callable[[], httpx.AsyncBaseTransport],
) -> None:
    """httpcore asks each pooled connection whether its socket is readable before reusing it; an idle
    connection that reads as readable is one the server closed (aiohttp is told by the event loop).
    Answered wrongly, the second request would go out on the dead connection and fail."""
    accepted = 0
    hung_up = asyncio.Event()

    async def answer_once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
        await writer.drain()
        writer.close()  # a keep-alive the server does not keep
        await writer.wait_closed()
        hung_up.set()

    server = await asyncio.start_server(answer_once_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=make_transport(), timeout=5) as client:
            first = await client.get(f"http://127.0.0.1:{port}/")
            await asyncio.wait_for(hung_up.wait(), 5)
            second = await client.get(f"http://127.0.0.1:{port}/")
        assert (first.text, second.text, accepted) == ("ok", "ok", 2)
    finally:
        server.close()
        await server.wait_closed()


def test_the_pool_asks_its_connections_through_the_quick_readability_check() -> None:
    """A guard for upgrades: httpx builds httpcore's pool itself, and the check is hooked in there."""
    pool = OneWriteTransport(limits=LIMITS)._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, transport._QuickReadability)


async def test_a_download_bigger_than_any_one_read_arrives_whole(
    echo_server: str, make_transport: Callable[[], httpx.AsyncBaseTransport]
) -> None:
    async with httpx.AsyncClient(transport=make_transport(), timeout=10) as client:
        response = await client.get(f"{echo_server}/big")
    assert response.status_code == 200
    assert response.content == BIG


# --- Telegram's transport: aiohttp under httpx --------------------------------------------------------


async def _serve(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _url(server: asyncio.Server) -> str:
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/bot{SECRET}/sendSticker"


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with a small JSON body until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            body = b'{"ok":true,"result":true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def test_requests_one_after_another_share_one_connection_and_a_reopened_client_works_again() -> None:
    """python-telegram-bot closes its httpx client at shutdown and builds a new one, with the same
    transport, when the application starts again."""
    connections = 0

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _answer_ok(reader, writer)

    server = await _serve(counting)
    shared = AiohttpTransport(connections=4)
    try:
        for _ in range(2):  # started, shut down, started again
            async with httpx.AsyncClient(transport=shared, timeout=5) as client:
                answers = [await client.post(_url(server), data={"chat_id": "1"}) for _ in range(3)]
            assert [a.json() for a in answers] == [{"ok": True, "result": True}] * 3
        assert connections == 2  # one a start
    finally:
        server.close()
        await server.wait_closed()


async def _failure(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> httpx.HTTPError:
    server = await _serve(handle)
    try:
        async with httpx.AsyncClient(transport=AiohttpTransport(connections=4), timeout=0.5) as client:
            with pytest.raises(httpx.HTTPError) as caught:
                await client.post(_url(server), data={"chat_id": "1"})
        return caught.value
    finally:
        server.close()
        await server.wait_closed()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(5)  # never answers within the client's 0.5 s
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def _cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"ok":')
    await writer.drain()
    writer.close()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"this is not HTTP\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        (_silent, httpx.ReadTimeout),
        (_hang_up, httpx.RemoteProtocolError),
        (_cut_short, httpx.RemoteProtocolError),
        (_garbage, httpx.RemoteProtocolError),
    ],
    ids=["no-answer", "hung-up", "cut-short", "not-http"],
)
async def test_a_failed_exchange_is_httpx_s_error_and_never_quotes_the_url(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], expected: type[Exception]
) -> None:
    error = await _failure(handle)
    assert type(error) is expected
    assert SECRET not in str(error) and "TOKEN" not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__  # aiohttp's own text quotes the URL


async def test_a_server_that_cannot_be_reached_is_a_connect_error_so_nothing_was_sent() -> None:
    """What tells handlers/messenger.py that Telegram is unreachable (the answer waits in its chat's line)."""
    server = await _serve(_answer_ok)
    url = _url(server)
    server.close()
    await server.wait_closed()  # the port is free again: connecting is refused
    async with httpx.AsyncClient(transport=AiohttpTransport(connections=4), timeout=2) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post(url, data={"chat_id": "1"})
    assert SECRET not in str(caught.value)
