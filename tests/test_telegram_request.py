"""python-telegram-bot's requests over aiohttp (bot/telegram_request.py), against servers on loopback: what
is sent arrives as python-telegram-bot meant it; connections are kept and replaced; a failure is
python-telegram-bot's error, worded without the token; a server that cannot be reached says so."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import BodyPartReader, web
from telegram import Bot, InputFile
from telegram.error import NetworkError, TimedOut

from bot.telegram_request import TelegramRequest, TelegramUnreachable
from tests.harness import AnswerOnceThenHangUp

SECRET = "123456:TOKEN-never-in-an-error"  # Telegram's URLs hold the bot's token
BIG = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32 + 7)  # 3 MB and a bit: many reads

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MESSAGE = {"message_id": 7, "date": 1_700_000_000, "chat": {"id": 42, "type": "private"}}
DOCUMENT = {"file_id": "f", "file_unique_id": "u", "file_path": "documents/prop.png"}
ME = {"id": 1, "is_bot": True, "first_name": "Cutout", "username": "cutout_bot"}


@dataclass
class Api:
    """A Bot API on loopback: every method records the fields it parsed and answers a message (after
    ``delay`` seconds, when the call asks for it); a file download sends BIG."""

    url: str
    received: list[dict[str, object]] = field(default_factory=list)

    def bot(self, request: TelegramRequest) -> Bot:
        return Bot(SECRET, base_url=f"{self.url}/bot", base_file_url=f"{self.url}/file/bot", request=request)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async def method(request: web.Request) -> web.Response:
        if request.match_info["method"] == "getMe":  # python-telegram-bot asks as it starts
            return web.json_response({"ok": True, "result": ME})
        if request.match_info["method"] == "getFile":
            return web.json_response({"ok": True, "result": DOCUMENT})
        fields: dict[str, object] = {
            "method": request.match_info["method"],
            "content_type": request.content_type,
            "user_agent": request.headers.get("User-Agent", ""),
        }
        if request.content_type.startswith("multipart/"):
            async for part in await request.multipart():
                assert isinstance(part, BodyPartReader)
                data = await part.read()
                fields[part.name or ""] = (
                    (part.filename, len(data), _digest(data)) if part.filename else data.decode()
                )
        else:
            fields.update(await request.post())
        found.received.append(fields)
        await asyncio.sleep(float(str(fields.get("delay", 0))))
        return web.json_response(
            {"ok": True, "result": True if fields["method"] == "sendChatAction" else MESSAGE}
        )

    async def file(_: web.Request) -> web.Response:
        return web.Response(body=BIG, content_type="application/octet-stream")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(f"/bot{SECRET}/{{method}}", method)
    app.router.add_get(f"/file/bot{SECRET}/documents/prop.png", file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found = Api(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield found
    finally:
        await runner.cleanup()


async def test_a_sticker_upload_arrives_field_for_field(api: Api) -> None:
    sticker = bytes(range(256)) * 800  # 200 KB
    async with api.bot(TelegramRequest(connections=4)) as bot:
        sent = await bot.send_sticker(42, InputFile(sticker, filename="cutout.webp"), emoji="🙂")
    assert sent.message_id == 7
    assert api.received == [
        {
            "method": "sendSticker",
            "content_type": "multipart/form-data",
            "user_agent": TelegramRequest.USER_AGENT,
            "chat_id": "42",
            "emoji": "🙂",
            "sticker": ("cutout.webp", len(sticker), _digest(sticker)),
        }
    ]


async def test_a_call_without_a_file_is_a_url_encoded_form(api: Api) -> None:
    async with api.bot(TelegramRequest(connections=4)) as bot:
        await bot.send_message(42, "Fertig ✂️ — 100 % & more")
    assert api.received == [
        {
            "method": "sendMessage",
            "content_type": "application/x-www-form-urlencoded",
            "user_agent": TelegramRequest.USER_AGENT,
            "chat_id": "42",
            "text": "Fertig ✂️ — 100 % & more",
        }
    ]


async def test_a_big_upload_and_a_download_bigger_than_any_one_read_arrive_whole(api: Api) -> None:
    async with api.bot(TelegramRequest(connections=4)) as bot:
        await bot.send_document(1, InputFile(BIG, filename="prop.png"))
        downloaded = await (await bot.get_file("f")).download_as_bytearray()
    assert api.received[0]["document"] == ("prop.png", len(BIG), _digest(BIG))
    assert downloaded == BIG


async def test_a_call_s_own_read_timeout_replaces_the_default(api: Api) -> None:
    """python-telegram-bot passes a call's timeouts (getUpdates' long poll, a big upload's write)."""
    async with api.bot(TelegramRequest(connections=4, read_timeout=0.2)) as bot:
        with pytest.raises(TimedOut):
            await bot.send_chat_action(42, "typing", api_kwargs={"delay": 0.6})
        assert await bot.send_chat_action(42, "typing", api_kwargs={"delay": 0.6}, read_timeout=5) is True
    assert len(api.received) == 2


async def _serve(handle: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/bot{SECRET}/sendChatAction"


async def _stop(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


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


async def _answer_ok_once(writer: asyncio.StreamWriter) -> None:
    body = b'{"ok":true,"result":true}'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


async def test_calls_one_after_another_share_one_connection_and_a_restarted_request_works_again() -> None:
    """python-telegram-bot shuts its requests down when the application stops, and initializes them
    again when it starts again."""
    connections = 0

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _answer_ok(reader, writer)

    server, url = await _serve(counting)
    request = TelegramRequest(connections=4)
    try:
        for _ in range(2):  # started, shut down, started again
            await request.initialize()
            answers = [await request.post(url) for _ in range(3)]
            await request.shutdown()
            assert answers == [True] * 3
        assert connections == 2  # one a start
    finally:
        await _stop(server)


async def test_a_connection_the_server_hung_up_is_dropped_and_the_next_call_gets_a_new_one() -> None:
    server_side = AnswerOnceThenHangUp(b'{"ok":true,"result":true}')
    server, url = await _serve(server_side)
    request = TelegramRequest(connections=4)
    try:
        first = await request.post(url)
        await asyncio.wait_for(server_side.hung_up.wait(), 5)
        second = await request.post(url)
        assert (first, second, server_side.accepted) == (True, True, 2)
    finally:
        await request.shutdown()
        await _stop(server)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(5)  # never answers within the request's 0.5 s
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
    [(_silent, TimedOut), (_hang_up, NetworkError), (_cut_short, NetworkError), (_garbage, NetworkError)],
    ids=["no-answer", "hung-up", "cut-short", "not-http"],
)
async def test_a_failed_exchange_is_python_telegram_bot_s_error_and_never_quotes_the_token(
    handle: Handler, expected: type[Exception]
) -> None:
    server, url = await _serve(handle)
    request = TelegramRequest(connections=4, read_timeout=0.5, connect_timeout=0.5, write_timeout=0.5)
    try:
        with pytest.raises(NetworkError) as caught:
            await request.post(url)
    finally:
        await request.shutdown()
        await _stop(server)
    error = caught.value
    assert type(error) is expected
    assert not isinstance(error, TelegramUnreachable)  # the request may have been read: not "nothing sent"
    assert "TOKEN" not in str(error) and "TOKEN" not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__  # aiohttp's own text quotes the URL


async def test_a_server_that_cannot_be_reached_is_telegram_unreachable_so_nothing_was_sent() -> None:
    """What tells handlers/messenger.py that Telegram is unreachable (the answer waits in its chat's line)."""
    server, url = await _serve(_answer_ok)
    await _stop(server)  # the port is free again: connecting is refused
    request = TelegramRequest(connections=4, connect_timeout=2)
    try:
        with pytest.raises(TelegramUnreachable) as caught:
            await request.post(url)
    finally:
        await request.shutdown()
    assert "TOKEN" not in str(caught.value) and caught.value.__cause__ is None


async def test_the_environment_s_proxy_carries_the_calls_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As with python-telegram-bot's httpx request: HTTP(S)_PROXY is used, NO_PROXY exempts a host."""
    through_proxy: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        through_proxy.append(head.split(b"\r\n")[0])  # a proxy is asked for the absolute URL
        await _answer_ok_once(writer)

    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    direct_server, url = await _serve(_answer_ok)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_server.sockets[0].getsockname()[1]}")
    for name in ("http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        proxied = TelegramRequest(connections=4)
        assert await proxied.post(url) is True
        await proxied.shutdown()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = TelegramRequest(connections=4)
        assert await direct.post(url) is True
        await direct.shutdown()
    finally:
        await _stop(proxy_server)
        await _stop(direct_server)
    assert through_proxy == [f"POST {url} HTTP/1.1".encode()]
