"""python-telegram-bot's requests over aiohttp: every Bot API call and every file download.

python-telegram-bot's own ``HTTPXRequest`` goes through httpx's client and httpcore, h11 and anyio,
all pure Python; aiohttp parses HTTP in C. Measured on this 2-core machine (the loop's CPU per call,
300 calls against a local aiohttp server in another process, python-telegram-bot's own work such as
reading the answer into a ``Message`` included): sendChatAction and getFile 0.47-0.62 ms here,
against 0.88-1.04 ms through httpx over an aiohttp transport (this bot's way before); a 200 KB
sendSticker 1.55-1.66 ms against 2.0-2.4. A photo makes about six such calls.

Timeouts are python-telegram-bot's: ``connect`` to open a connection (``pool`` more to wait for a
free one), ``read`` between two pieces of the answer; aiohttp has no write timeout, so the wait for
the answer's head is bounded by all four together, and an upload that stalls still ends. An upload
with files gets ``media_write_timeout`` for its write, as ``HTTPXRequest`` does.

A failure is python-telegram-bot's :class:`~telegram.error.TimedOut` or
:class:`~telegram.error.NetworkError`, worded without the URL (a Telegram URL holds the bot's token)
and with no exception chain (aiohttp's own text quotes the URL). A connection that could not be
opened is :class:`TelegramUnreachable`: nothing was sent.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

#: A multipart body up to this size goes out in one piece: aiohttp writes each part as four pieces, each
#: a system call (on loopback 0.15-0.3 ms of the loop for a sticker's upload)
JOIN_LIMIT = 1024 * 1024

_Proxy = tuple[URL | None, aiohttp.BasicAuth | None]
_Body = bytes | aiohttp.FormData | aiohttp.Payload | None


class TelegramUnreachable(NetworkError):
    """No connection to Telegram could be opened: the request was not sent."""


class TelegramRequest(BaseRequest):
    """Requests over one aiohttp session of ``connections`` connections, each kept open ``keepalive``
    seconds after its last request (a burst of answers opens no connections of its own).

    The proxy from the environment (``HTTPS_PROXY``, ``NO_PROXY``..., as httpx and aiohttp read them)
    is looked up once a server: aiohttp's ``trust_env`` reads the environment again for every
    request, 0.3 ms of the loop's CPU each.
    """

    def __init__(
        self,
        *,
        connections: int,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
        keepalive: float = 5.0,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self._connections = connections
        self._timeouts = (connect_timeout, read_timeout, write_timeout, pool_timeout)
        self._media_write_timeout = media_write_timeout
        self._keepalive = keepalive
        self._ssl = verify or _certifi_context()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[tuple[str, str | None, int | None], _Proxy] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts[1]

    async def initialize(self) -> None:
        self._open_session()

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        """The session of the running loop: made at the first request (aiohttp binds it to its loop),
        and again after :meth:`shutdown` (an application started a second time)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._connections, limit_per_host=0, keepalive_timeout=self._keepalive, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # the Bot API sets none
                headers={"User-Agent": self.USER_AGENT},
            )
            self._loop = loop
        return self._session

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._open_session()
        files = request_data is not None and request_data.contains_files
        default_connect, default_read, default_write, default_pool = self._timeouts
        connect = _chosen(connect_timeout, default_connect)
        read = _chosen(read_timeout, default_read)
        write = _chosen(write_timeout, self._media_write_timeout if files else default_write)
        pool = _chosen(pool_timeout, default_pool)
        bound = None
        if connect is not None and read is not None and write is not None and pool is not None:
            bound = connect + read + write + pool
        target = URL(url, encoded=True)
        proxy, proxy_auth = self._proxy(target)
        body, headers = await _body(request_data)
        with _as_telegram_errors():
            async with asyncio.timeout(bound):
                answer = await session.request(
                    method,
                    target,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    proxy=proxy,
                    proxy_auth=proxy_auth,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=None if connect is None or pool is None else connect + pool,
                        sock_connect=connect,
                        sock_read=read,
                    ),
                )
            async with answer:
                return answer.status, await answer.read()

    def _proxy(self, url: URL) -> _Proxy:
        origin = (url.scheme, url.host, url.port)
        if origin not in self._proxies:
            try:
                self._proxies[origin] = get_env_proxy_for_url(url)
            except LookupError:  # none set, or NO_PROXY names the host
                self._proxies[origin] = (None, None)
        return self._proxies[origin]


@functools.cache
def _certifi_context() -> ssl.SSLContext:
    """certifi's roots, as python-telegram-bot's: loaded once (~50 ms), shared by the bot's two requests."""
    return httpx.create_ssl_context()


def _chosen(given: object, default: float | None) -> float | None:
    """A timeout the call gave, or this request's default when it gave none."""
    if given is BaseRequest.DEFAULT_NONE:
        return default
    if given is not None and not isinstance(given, int | float):
        raise TypeError(f"a timeout is a number of seconds or None, not {type(given).__name__}")
    return given


async def _body(request_data: RequestData | None) -> tuple[_Body, dict[str, str] | None]:
    """The parameters as a form, and the headers it needs: multipart when a file goes with them (up to
    ``JOIN_LIMIT`` joined into one piece), else URL-encoded."""
    if request_data is None:
        return None, None
    form = aiohttp.FormData(request_data.json_parameters)
    if not request_data.contains_files:
        return form, None
    for name, (filename, content, mime) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime)
    multipart = form()
    if multipart.size is None or multipart.size > JOIN_LIMIT:
        return multipart, None
    return await multipart.as_bytes(), {"Content-Type": multipart.content_type}


@contextmanager
def _as_telegram_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError:
        raise TimedOut("Timed out opening a connection to Telegram: nothing was sent") from None
    except aiohttp.SocketTimeoutError:
        raise TimedOut("Timed out waiting for Telegram's answer") from None
    except TimeoutError:  # the bound on the whole exchange: the upload stalled
        raise TimedOut("Timed out sending the request to Telegram") from None
    except aiohttp.ClientConnectorError as exc:
        raise TelegramUnreachable(f"Cannot connect to Telegram: {_reason(exc.os_error)}") from None
    except aiohttp.ServerDisconnectedError:
        raise NetworkError("Telegram closed the connection without an answer") from None
    except aiohttp.ClientPayloadError:
        raise NetworkError("Telegram's answer was cut short") from None
    except aiohttp.ClientResponseError as exc:  # its text quotes the URL: the message alone
        raise NetworkError(f"A malformed answer from Telegram: {exc.message}") from None
    except aiohttp.InvalidURL:
        raise NetworkError("An invalid Telegram URL") from None
    except aiohttp.ClientOSError as exc:
        raise NetworkError(f"The connection to Telegram failed: {_reason(exc)}") from None
    except aiohttp.ClientError as exc:
        raise NetworkError(f"Telegram request failed: {type(exc).__name__}") from None


def _reason(exc: OSError | None) -> str:
    return (exc.strerror if exc is not None else None) or "no reason given"
