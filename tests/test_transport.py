"""The cutout API's httpx transport (httpcore's, bot/transport.py): a body joined into one write, or streamed
when large, arrives as sent; a connection the server hung up is not reused; a big download arrives whole."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpcore
import httpx
import pytest
from aiohttp import BodyPartReader, web

from bot import transport
from bot.transport import OneWriteTransport
from tests.harness import AnswerOnceThenHangUp

BIG = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32 + 7)  # 3 MB and a bit: many reads
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)


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


async def _post_form(url: str, sticker: bytes) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient(transport=OneWriteTransport(limits=LIMITS), timeout=10) as client:
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


async def test_a_multipart_upload_joined_into_one_write_arrives_field_for_field(echo_server: str) -> None:
    sticker = bytes(range(256)) * 800  # 200 KB: under the limit, so joined
    assert len(sticker) < transport.JOIN_LIMIT
    assert await _post_form(echo_server, sticker) == _expected(sticker)


async def test_a_body_over_the_limit_streams_and_arrives_whole(
    echo_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "JOIN_LIMIT", 64 * 1024)
    sticker = bytes(range(256)) * 4096  # 1 MB, over the lowered limit: sent as httpx streams it
    assert await _post_form(echo_server, sticker) == _expected(sticker)


async def test_a_connection_the_server_hung_up_is_dropped_and_the_next_request_gets_a_new_one() -> None:
    """httpcore asks each pooled connection whether its socket is readable before reusing it; an idle
    connection that reads as readable is one the server closed.
    Answered wrongly, the second request would go out on the dead connection and fail."""
    server_side = AnswerOnceThenHangUp(b"ok")
    server = await asyncio.start_server(server_side, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=OneWriteTransport(limits=LIMITS), timeout=5) as client:
            first = await client.get(f"http://127.0.0.1:{port}/")
            await asyncio.wait_for(server_side.hung_up.wait(), 5)
            second = await client.get(f"http://127.0.0.1:{port}/")
        assert (first.text, second.text, server_side.accepted) == ("ok", "ok", 2)
    finally:
        server.close()
        await server.wait_closed()


def test_the_pool_asks_its_connections_through_the_quick_readability_check() -> None:
    """A guard for upgrades: httpx builds httpcore's pool itself, and the check is hooked in there."""
    pool = OneWriteTransport(limits=LIMITS)._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, transport._QuickReadability)


async def test_a_download_bigger_than_any_one_read_arrives_whole(echo_server: str) -> None:
    async with httpx.AsyncClient(transport=OneWriteTransport(limits=LIMITS), timeout=10) as client:
        response = await client.get(f"{echo_server}/big")
    assert response.status_code == 200
    assert response.content == BIG
