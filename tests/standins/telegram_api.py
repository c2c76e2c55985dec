"""A strict local stand-in of the Telegram Bot API, served over real HTTP on 127.0.0.1.

The server runs in its own thread with its own event loop, so it serves a bot running in the test's
loop, in another thread or in a subprocess alike::

    with FakeTelegram(TOKEN) as tg:
        tg.add_user(42)
        app = ApplicationBuilder().token(TOKEN).base_url(f"{tg.url}/bot").base_file_url(f"{tg.url}/file/bot")
        tg.send_photo(42, jpeg_bytes)
        tg.wait_for_call("sendSticker")

It answers like Telegram does, errors included (HTTP status = ``error_code``, body
``{"ok": false, "error_code": N, "description": "..."}``), and refuses what Telegram would refuse:
stickers of the wrong size, bad sticker set names, unknown file ids, unparsable HTML, edits that change
nothing. Everything is kept in memory. Every inspection method is thread-safe; from inside an event loop
that also runs the bot, use the ``*_async`` variants so the loop keeps serving the bot while the test waits.

Users can send what a Telegram client sends a bot: texts (with command, mention and url entities), photos,
files, albums (one message per item sharing a ``media_group_id``, optionally delivered out of order),
stickers (static WEBP, animated TGS, video WEBM), GIFs (as ``animation`` plus ``document``), videos and
voice notes. Groups can forbid the bot stickers, documents, photos or texts with
:meth:`FakeTelegram.restrict_chat`.

Deliberate simplifications: group privacy mode is off (every group message is delivered, so the bot's own
filters are what is tested), there is no flood control (inject 429s with :meth:`FakeTelegram.fail_next`),
the bot uploads and packs static stickers only, and the bot is never an admin of a restricted group.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import io
import itertools
import json
import logging
import mimetypes
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, TypeVar

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from PIL import Image, ImageOps, UnidentifiedImageError

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # sendDocument
MAX_PHOTO_UPLOAD_BYTES = 10 * 1024 * 1024  # sendPhoto
MAX_STICKER_BYTES = 512_000
STICKER_SIDE = 512
MAX_STICKERS_PER_SET = 120
MAX_INLINE_RESULTS = 50
PHOTO_LADDER = (90, 320, 800, 1280)  # long sides Telegram keeps for a compressed photo

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
WRONG_FILE_ID = "Bad Request: wrong file identifier/HTTP URL specified"
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
STICKERSET_INVALID = "Bad Request: STICKERSET_INVALID"
PEER_ID_INVALID = "Bad Request: PEER_ID_INVALID"
# What the bot is refused in a group that forbids it a kind of message (see FakeTelegram.restrict_chat).
NOT_ENOUGH_RIGHTS = {
    "stickers": "Bad Request: not enough rights to send stickers to the chat",
    "documents": "Bad Request: not enough rights to send documents to the chat",
    "photos": "Bad Request: not enough rights to send photos to the chat",
    "messages": "Bad Request: not enough rights to send text messages to the chat",
}
MIN_ALBUM_ITEMS = 2
MAX_ALBUM_ITEMS = 10

_CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)
_BUTTON_KINDS = tuple(
    [
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ]
)
# Parameters PTB sends as JSON strings; decoded when a request is read.
_JSON_FIELDS = frozenset(
    [
        "reply_markup",
        "reply_parameters",
        "results",
        "stickers",
        "allowed_updates",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "link_preview_options",
        "button",
        "emoji_list",
        "keywords",
        "mask_position",
        "media",
    ]
)
# Free-text parameters that must stay strings even when they look like numbers.
_TEXT_FIELDS = frozenset(
    [
        "text",
        "caption",
        "title",
        "name",
        "callback_query_id",
        "inline_query_id",
        "inline_message_id",
        "file_id",
        "next_offset",
        "url",
        "secret_token",
        "parse_mode",
        "emoji",
        "description",
        "short_description",
        "action",
        "photo",
        "document",
        "language_code",
        "ip_address",
        "business_connection_id",
        "message_effect_id",
        "custom_emoji_id",
        "sticker_format",
        "sticker_type",
    ]
)
_INT_RE = re.compile(r"-?\d+")
_FLOAT_RE = re.compile(r"-?\d+\.\d+")
_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?")
_BOT_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_SET_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
# A link as Telegram's clients spot it: with an http(s) scheme, or a bare domain ending in a known TLD.
_URL_RE = re.compile(
    r"(?<![\w@./-])(?:https?://[^\s<>\"]+|(?:[\w-]+\.)+(?P<tld>[\w-]+)(?::\d{1,5})?(?:[/?#][^\s<>\"]*)?)",
    re.IGNORECASE,
)
# Enough of the TLD list for tests: "photo.jpg" or "v1.2" must not turn into links.
_LINK_TLDS = frozenset(
    [
        *("com", "net", "org", "info", "biz", "io", "me", "co", "ai", "app", "dev", "xyz", "site", "online"),
        *("ru", "ua", "de", "uk", "fr", "it", "es", "nl", "eu", "us", "ca", "au", "in", "jp", "cn", "br"),
        *("pl", "ly", "gl", "to", "tv", "tr", "kz", "by", "su", "cc", "news", "blog", "store", "shop"),
        *("link", "page", "pro", "рф"),
    ]
)
_URL_TRAILING = ".,:;!?'\""


class ApiError(Exception):
    """An error answer, shaped like Telegram's."""

    def __init__(self, error_code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class Call:
    """One API request the stand-in received.

    ``method`` is Telegram's spelling (``sendSticker``) for known methods, the requested one otherwise;
    ``params`` are the values as they came over the wire (form values are strings, nested values JSON
    text); ``decoded`` holds the same with numbers as int, booleans as bool and JSON decoded; ``files``
    are the uploaded multipart parts by part name; ``at`` is ``time.monotonic()`` on arrival (before the
    body is read: what rate limits count); ``response`` is the JSON body answered, ``None`` while the
    call is still being served (a long poll).
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    decoded: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] | None = None

    @property
    def ok(self) -> bool | None:
        return None if self.response is None else bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return None if self.response is None else self.response.get("result")

    @property
    def error(self) -> str | None:
        """The error description, if this call was refused."""
        return None if self.response is None else self.response.get("description")


@dataclass
class _Upload:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class _StoredFile:
    data: bytes
    unique_id: str
    kind: str  # "photo" | "document" | "sticker" | "animation" | "video" | "voice"
    size: int
    ext: str
    path: str | None = None


@dataclass
class _User:
    user: dict[str, Any]
    started: bool
    blocked: bool = False


@dataclass
class _StickerSet:
    title: str
    owner: int
    stickers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Injected:
    error: ApiError
    remaining: int


class _Params:
    """A request's decoded parameters and uploaded parts, with Telegram-style validation errors."""

    def __init__(
        self,
        values: dict[str, Any],
        uploads: dict[str, _Upload],
        client_gone: Callable[[], bool] = lambda: False,
    ) -> None:
        self.values = values
        self.uploads = uploads
        self.client_gone = client_gone

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _bad(f"{name} is empty")
            return None
        return str(value)

    def int(self, name: str, *, required: bool = False) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _bad(f"{name} is empty")
            return None
        if isinstance(value, bool):
            raise _bad(f"wrong parameter {name} in request")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INT_RE.fullmatch(value):
            return int(value)
        raise _bad(f"invalid {name} specified")

    def number(self, name: str, default: float) -> float:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad(f"wrong parameter {name} in request") from None

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        return value is True or value == "true"

    def json(self, name: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad(f"can't parse {name} JSON object") from None
        return value


def _decode_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS or (name == "sticker" and value.startswith("{")):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in _TEXT_FIELDS or name == "sticker":
        return value
    if _INT_RE.fullmatch(value):
        return int(value)
    if _FLOAT_RE.fullmatch(value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


async def _read_request(request: web.Request) -> tuple[dict[str, Any], dict[str, _Upload]]:
    raw: dict[str, Any] = dict(request.query)
    uploads: dict[str, _Upload] = {}
    if request.content_type == "application/json" and request.can_read_body:
        body = await request.json()
        if not isinstance(body, dict):
            raise _bad("can't parse request JSON object")
        raw.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                uploads[key] = _Upload(value.filename, value.content_type, value.file.read())
            else:
                raw[key] = value
    return raw, uploads


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- formatted text --------------------------------------------------------------------------------
_HTML_TAGS = frozenset(
    [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
        "tg-time",
    ]
)


class _HtmlText(HTMLParser):
    """Checks Telegram's HTML subset and collects the plain text a user sees."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.parts: list[str] = []

    def _fail(self, why: str) -> None:
        raise _bad(f"can't parse entities: {why}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            self._fail(f'Unsupported start tag "{tag}"')
        if tag == "span" and dict(attrs).get("class") != "tg-spoiler":
            self._fail('Tag "span" must have class "tg-spoiler"')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f'Unsupported start tag "{tag}"')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self._fail(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or "&" in data:
            self._fail("unescaped '<' or '&' in text; use &lt; and &amp;")
        self.parts.append(data)

    def handle_entityref(self, name: str) -> None:
        self.parts.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.parts.append(html.unescape(f"&#{name};"))

    def plain(self, source: str) -> str:
        self.feed(source)
        self.close()
        if self.stack:
            self._fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1]}"')
        return "".join(self.parts)


def _markdown_v2_plain(source: str) -> str:
    """The plain text of a MarkdownV2 message; unescaped reserved characters are refused as Telegram does."""

    def fail(why: str) -> ApiError:
        return _bad(f"can't parse entities: {why}")

    out: list[str] = []
    open_markers: set[str] = set()
    link_open = False
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            if i + 1 >= n:
                raise fail("text must not end with an escape character")
            out.append(source[i + 1])
            i += 2
        elif c == "`":
            fence = "```" if source.startswith("```", i) else "`"
            j, buf = i + len(fence), []
            while j < n and not source.startswith(fence, j):
                if source[j] == "\\" and j + 1 < n:
                    buf.append(source[j + 1])
                    j += 2
                else:
                    buf.append(source[j])
                    j += 1
            if j >= n:
                raise fail("Can't find end of Pre/Code entity")
            code = "".join(buf)
            if fence == "```" and "\n" in code:
                code = code.split("\n", 1)[1]  # the first line names the language
            out.append(code)
            i = j + len(fence)
        elif c in "*_~" or source.startswith("||", i):
            marker = "__" if source.startswith("__", i) else "||" if c == "|" else c
            open_markers ^= {marker}
            i += len(marker)
        elif c == "[":
            link_open = True
            i += 1
        elif c == "]" and link_open:
            link_open = False
            if source.startswith("(", i + 1):
                end = source.find(")", i + 2)
                if end < 0:
                    raise fail("Can't find end of a URL")
                i = end + 1
            else:
                i += 1
        elif c == ">" and (i == 0 or source[i - 1] == "\n"):
            i += 1  # blockquote
        elif c in "_*[]()~`>#+-=|{}.!":
            raise fail(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        else:
            out.append(c)
            i += 1
    if open_markers or link_open:
        raise fail("Can't find end of the entity")
    return "".join(out)


def _plain_text(source: str, parse_mode: str | None) -> str:
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _HtmlText().plain(source)
    if mode == "markdownv2":
        return _markdown_v2_plain(source)
    if mode == "markdown":
        return re.sub(r"[*_`]", "", source)
    if mode:
        raise _bad(f"unsupported parse_mode {parse_mode!r}")
    return source


# --- images ----------------------------------------------------------------------------------------
def _open_image(data: bytes, *, failure: str) -> Image.Image:
    if not data:
        raise _bad("file must be non-empty")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise _bad(failure) from None
    return image


def _check_static_sticker(data: bytes, *, formats: tuple[str, ...]) -> tuple[int, int]:
    """Width and height of a valid static sticker file, else the error Telegram gives."""
    image = _open_image(data, failure="STICKER_FILE_INVALID")
    if image.format not in formats or getattr(image, "is_animated", False):
        raise _bad("STICKER_FILE_INVALID")
    width, height = image.size
    if max(width, height) != STICKER_SIDE or min(width, height) < 1:
        raise _bad("STICKER_PNG_DIMENSIONS")
    if len(data) > MAX_STICKER_BYTES:
        raise _bad("file is too big")
    return width, height


def _ladder_of(image: bytes) -> list[tuple[bytes, int, int]]:
    with Image.open(io.BytesIO(image)) as opened:
        return _jpeg_ladder(opened)


def _jpeg_ladder(image: Image.Image) -> list[tuple[bytes, int, int]]:
    """The JPEG sizes Telegram keeps for a compressed photo, smallest first."""
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        background = Image.new("RGB", image.size, "white")
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    long_side = max(image.size)
    sides = [side for side in PHOTO_LADDER if side < long_side]
    if long_side <= PHOTO_LADDER[-1]:
        sides.append(long_side)
    ladder = []
    for side in sides:
        scale = side / long_side
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resized = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        resized.save(buffer, format="JPEG", quality=87)
        ladder.append((buffer.getvalue(), size[0], size[1]))
    return ladder


# --- the stand-in ----------------------------------------------------------------------------------
class FakeTelegram:
    """The Bot API for one bot, on ``http://127.0.0.1:<free port>``."""

    def __init__(
        self,
        token: str,
        *,
        bot_id: int = 7000001,
        bot_username: str = "cutout_test_bot",
        bot_name: str = "Cutout Test Bot",
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        self.url = ""
        self._cond = threading.Condition(threading.RLock())
        self._version = 0  # bumped on every state change, so waiters never miss one
        self._calls: list[Call] = []
        self._users: dict[int, _User] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._admins: dict[int, dict[int, str]] = {}  # group id -> user id -> "creator" | "administrator"
        self._forbidden: dict[int, frozenset[str]] = {}  # group id -> kinds the bot may not send there
        self._messages: dict[int, dict[int, dict[str, Any]]] = {}
        self._bot_messages: set[tuple[int, int]] = set()
        self._formatting: dict[tuple[int, int], str] = {}
        self._next_message_id: dict[int, int] = {}
        self._pending: list[dict[str, Any]] = []
        self._update_ids = itertools.count(100_001)
        self._query_ids = itertools.count(int(time.time()) * 1000)
        self._file_counter = itertools.count(1)
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, str] = {}
        self._photo_ladders: dict[str, list[dict[str, Any]]] = {}
        self._prepared: dict[bytes, list[tuple[bytes, int, int]]] = {}  # photo -> its JPEG ladder
        self._user_stickers: dict[str, dict[str, Any]] = {}  # file_id -> sticker object, as a user sent it
        self._media_group_ids = itertools.count(13_589_349_713_592_613, 7919)
        self._callback_queries: dict[str, bool] = {}  # id -> answered
        self._inline_queries: dict[str, bool] = {}
        self._inline_answers: list[dict[str, Any]] = []
        self._sets: dict[str, _StickerSet] = {}
        self._commands: dict[str, list[dict[str, Any]]] = {}
        self._injected: dict[str, list[_Injected]] = {}
        self._webhook: dict[str, Any] = {}
        self._webhook_errors: list[str] = []
        self._internal_errors: list[str] = []
        self._poll_generation = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = 0
        self._update_event: asyncio.Event | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._startup_error: BaseException | None = None
        self._handlers: dict[str, Callable[[_Params], Any]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setMyDescription": self._set_my_description,
            "setMyShortDescription": self._set_my_short_description,
            "close": self._true,
            "logOut": self._true,
            "getFile": self._get_file,
            "getChatMember": self._get_chat_member,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "sendSticker": self._send_sticker,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "answerCallbackQuery": self._answer_callback_query,
            "answerInlineQuery": self._answer_inline_query,
            "uploadStickerFile": self._upload_sticker_file,
            "createNewStickerSet": self._create_new_sticker_set,
            "addStickerToSet": self._add_sticker_to_set,
            "getStickerSet": self._get_sticker_set,
            "deleteStickerFromSet": self._delete_sticker_from_set,
            "deleteStickerSet": self._delete_sticker_set,
        }
        self._method_names = {name.lower(): name for name in self._handlers}

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Serve on a free port of 127.0.0.1; returns once :attr:`url` answers."""
        if self._thread is not None:
            raise RuntimeError("FakeTelegram is already started")
        started = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="fake-telegram", daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("FakeTelegram did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("FakeTelegram could not start") from self._startup_error

    def stop(self) -> None:
        """Answer pending long polls, close the server and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = self._loop = None

    def go_offline(self) -> None:
        """Telegram unreachable: stop listening and drop every open connection (a long poll included);
        :meth:`come_back` listens again on the same port. Users, chats and files are kept."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._go_offline(), self._loop).result(10)

    def come_back(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._come_back(), self._loop).result(10)

    async def _go_offline(self) -> None:
        assert self._runner is not None and self._site is not None
        await self._site.stop()
        self._wake_pollers()
        server = self._runner.server
        for connection in list(server.connections if server is not None else []):
            connection.force_close()

    async def _come_back(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
        await self._site.start()

    def __enter__(self) -> FakeTelegram:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _startup(self) -> None:
        self._update_event = asyncio.Event()
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self._port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self._port}"

    async def _shutdown(self) -> None:
        self._stopping = True
        self._wake_pollers()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- users and chats ---------------------------------------------------------------------------
    def add_user(
        self,
        user_id: int,
        first_name: str = "Ada",
        *,
        username: str | None = None,
        started: bool = True,
        language_code: str | None = "en",
    ) -> None:
        """A Telegram user. ``started=False``: they never opened a private chat with the bot."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        with self._cond:
            self._users[user_id] = _User(user, started)
            chat = {"id": user_id, "type": "private", "first_name": first_name}
            if username:
                chat["username"] = username
            self._chats[user_id] = chat

    def set_admin(self, chat_id: int, user_id: int, *, owner: bool = False) -> None:
        """Make a user an admin (or the owner) of a group; everyone else who posts there is a member."""
        with self._cond:
            self._user(user_id, started=False)
            self._admins.setdefault(chat_id, {})[user_id] = "creator" if owner else "administrator"

    def block_bot(self, user_id: int) -> None:
        """The user blocks the bot: sending to them gives 403 "Forbidden: bot was blocked by the user"."""
        with self._cond:
            self._user(user_id, started=False).blocked = True

    def restrict_chat(
        self,
        chat_id: int,
        *,
        stickers: bool = True,
        documents: bool = True,
        photos: bool = True,
        messages: bool = True,
    ) -> None:
        """A group's admins forbid members, the bot included, some kinds of messages (``False`` = forbidden).

        The bot's sendSticker, sendDocument, sendPhoto or sendMessage there then answers 400 with
        :data:`NOT_ENOUGH_RIGHTS`; edits and deletions of its own messages stay allowed. Calling again
        replaces the rules; all ``True`` lifts them.
        """
        if chat_id >= 0:
            raise ValueError("only groups (negative chat ids) can restrict what members send")
        allowed = {"stickers": stickers, "documents": documents, "photos": photos, "messages": messages}
        with self._cond:
            self._forbidden[chat_id] = frozenset(kind for kind, ok in allowed.items() if not ok)
            self._changed()

    # --- incoming updates --------------------------------------------------------------------------
    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a text message; commands, mentions of the bot and links get their entities."""
        content: dict[str, Any] = {"text": text}
        entities = self._entities(text)
        if entities:
            content["entities"] = entities
        return self._incoming(user_id, chat_id, chat_type, content, reply_to_message_id)

    def send_photo(
        self,
        user_id: int,
        image: bytes,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        caption: str | None = None,
        reply_to_message_id: int | None = None,
        media_group_id: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a compressed photo: it arrives as a ladder of JPEG sizes, smallest first.

        ``media_group_id`` makes it one item of an album; :meth:`send_album` sends a whole one.
        """
        content = self._photo_content(image)
        self._add_caption(content, caption)
        return self._incoming(user_id, chat_id, chat_type, content, reply_to_message_id, media_group_id)

    def prepare_photos(self, images: list[bytes]) -> list[bytes]:
        """Re-encode photos a user will send, ahead of time: :meth:`send_photo` then stores the JPEG
        ladder made here. A benchmark does this before it measures, so that Telegram's CPU is not taken
        from the bot on the machine they share. Returns each photo's largest size, the file a bot
        downloads (and which :meth:`FakePicWish.prime` can cut out ahead of time too)."""
        with ThreadPoolExecutor(max_workers=2) as pool:  # Pillow's resize and encoder run without the GIL
            ladders = list(pool.map(_ladder_of, images))
        with self._cond:
            self._prepared.update(zip(images, ladders, strict=True))
        return [ladder[-1][0] for ladder in ladders]

    def send_document(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str | None,
        chat_id: int | None = None,
        chat_type: str = "private",
        caption: str | None = None,
        declared_size: int | None = None,
        reply_to_message_id: int | None = None,
        media_group_id: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a file uncompressed; ``declared_size`` fakes a big file without storing it."""
        content = self._document_content(data, file_name, mime_type, declared_size)
        self._add_caption(content, caption)
        return self._incoming(user_id, chat_id, chat_type, content, reply_to_message_id, media_group_id)

    def send_album(
        self,
        user_id: int,
        items: list[tuple[Any, ...]],
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        caption: str | None = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        """The user sends an album: each item arrives as its own message, all sharing one ``media_group_id``.

        ``items`` holds 2 to 10 ``("photo", jpeg_bytes)`` or ``("document", data, file_name, mime_type)``
        tuples; as on Telegram, documents are grouped only with documents. Message ids follow album order
        and the caption rides on the first item. ``shuffle=True`` queues the updates in an order that is not
        the album's (a permutation drawn from ``seed``, never the sorted one), as Telegram sometimes
        delivers them. Returns the messages in album order.
        """
        if not MIN_ALBUM_ITEMS <= len(items) <= MAX_ALBUM_ITEMS:
            raise ValueError(f"an album holds {MIN_ALBUM_ITEMS} to {MAX_ALBUM_ITEMS} items, not {len(items)}")
        kinds = set()
        for item in items:
            if not (
                (len(item) == 2 and item[0] == "photo" and isinstance(item[1], bytes))
                or (len(item) == 4 and item[0] == "document" and isinstance(item[1], bytes))
            ):
                raise ValueError(
                    f"album items are ('photo', bytes) or ('document', bytes, file_name, mime_type), "
                    f"not {item[:1]!r}"
                )
            kinds.add(item[0])
        if len(kinds) > 1:
            raise ValueError("documents can be grouped in an album only with other documents")
        contents = [
            self._photo_content(item[1]) if item[0] == "photo" else self._document_content(*item[1:])
            for item in items
        ]
        self._add_caption(contents[0], caption)
        order = list(range(len(items)))
        if shuffle:
            random.Random(seed).shuffle(order)
            if order == sorted(order):
                order.reverse()
        with self._cond:
            media_group_id = str(next(self._media_group_ids))
            messages = [
                self._incoming_message(user_id, chat_id, chat_type, content, None, media_group_id)
                for content in contents
            ]
            for index in order:
                self._queue_update("message", messages[index])
            return copy.deepcopy(messages)

    def send_sticker(
        self,
        user_id: int,
        data: bytes,
        *,
        kind: str = "static",
        emoji: str | None = "🙂",
        set_name: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a sticker: ``kind`` "static" (a WEBP image), "animated" (TGS) or "video" (WEBM).

        The file is stored as given and can be fetched with getFile; a static sticker must be a WEBP.
        """
        if kind == "static":
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image_format, (width, height) = image.format, image.size
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError("a static sticker is a WEBP image") from exc
            if image_format != "WEBP":
                raise ValueError(f"a static sticker is a WEBP image, not {image_format}")
            ext = "webp"
        elif kind in ("animated", "video"):
            width = height = STICKER_SIDE
            ext = "tgs" if kind == "animated" else "webm"
        else:
            raise ValueError(f"sticker kind is 'static', 'animated' or 'video', not {kind!r}")
        file_id, _ = self._store_file(data, "sticker", ext)
        with self._cond:
            sticker = self._sticker_object(
                file_id, width, height, is_animated=kind == "animated", is_video=kind == "video"
            )
            if emoji:
                sticker["emoji"] = emoji
            if set_name:
                sticker["set_name"] = set_name
            self._user_stickers[file_id] = copy.deepcopy(sticker)
        return self._incoming(user_id, chat_id, chat_type, {"sticker": sticker}, reply_to_message_id)

    def send_animation(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str = "animation.mp4",
        width: int = 320,
        height: int = 240,
        duration: int = 2,
        chat_id: int | None = None,
        chat_type: str = "private",
        caption: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a GIF: Telegram delivers it as an MP4 ``animation``, repeated as ``document``."""
        file_id, unique_id = self._store_file(data, "animation", _ext(file_name, "video/mp4"))
        common = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "file_name": file_name,
            "mime_type": "video/mp4",
            "file_size": len(data),
        }
        animation = {**common, "width": width, "height": height, "duration": duration}
        content: dict[str, Any] = {"animation": animation, "document": dict(common)}
        self._add_caption(content, caption)
        return self._incoming(user_id, chat_id, chat_type, content, reply_to_message_id)

    def send_video(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str = "video.mp4",
        width: int = 640,
        height: int = 360,
        duration: int = 3,
        chat_id: int | None = None,
        chat_type: str = "private",
        caption: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a video: it arrives as ``message.video`` (MP4)."""
        file_id, unique_id = self._store_file(data, "video", _ext(file_name, "video/mp4"))
        video = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "width": width,
            "height": height,
            "duration": duration,
            "file_name": file_name,
            "mime_type": "video/mp4",
            "file_size": len(data),
        }
        content: dict[str, Any] = {"video": video}
        self._add_caption(content, caption)
        return self._incoming(user_id, chat_id, chat_type, content, reply_to_message_id)

    def send_voice(
        self,
        user_id: int,
        data: bytes,
        *,
        duration: int = 2,
        chat_id: int | None = None,
        chat_type: str = "private",
        caption: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user records a voice note: it arrives as ``message.voice`` (OGG/Opus)."""
        file_id, unique_id = self._store_file(data, "voice", "oga")
        voice = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        content: dict[str, Any] = {"voice": voice}
        self._add_caption(content, caption)
        return self._incoming(user_id, chat_id, chat_type, content, reply_to_message_id)

    def press_button(
        self, user_id: int, message: dict[str, Any], callback_data: str, *, chat_id: int | None = None
    ) -> str:
        """The user presses an inline button of a message the bot shows; returns the callback query id."""
        chat_id = message["chat"]["id"] if chat_id is None else chat_id
        with self._cond:
            user = self._user(user_id, started=False)
            current = self._messages.get(chat_id, {}).get(message["message_id"])
            if current is None or (chat_id, current["message_id"]) not in self._bot_messages:
                raise ValueError(f"message {message['message_id']} is not shown by the bot in chat {chat_id}")
            buttons = [
                button.get("callback_data")
                for row in current.get("reply_markup", {}).get("inline_keyboard", [])
                for button in row
            ]
            if callback_data not in buttons:
                raise ValueError(f"no button with callback_data {callback_data!r} on that message: {buttons}")
            query_id = str(next(self._query_ids))
            self._callback_queries[query_id] = False
            query = {
                "id": query_id,
                "from": user.user,
                "message": current,
                "chat_instance": str(-abs(hash((chat_id, self.bot_id)))),
                "data": callback_data,
            }
            self._queue_update("callback_query", query)
        return query_id

    def inline_query(self, user_id: int, query: str = "", offset: str = "") -> str:
        """The user types ``@bot query`` in any chat; returns the inline query id."""
        with self._cond:
            user = self._user(user_id, started=False)
            query_id = str(next(self._query_ids))
            self._inline_queries[query_id] = False
            self._queue_update(
                "inline_query", {"id": query_id, "from": user.user, "query": query, "offset": offset}
            )
        return query_id

    # --- inspection --------------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        wanted = method.lower()
        with self._cond:
            return [call for call in self._calls if call.method.lower() == wanted]

    def clear_calls(self) -> None:
        with self._cond:
            self._calls.clear()

    @property
    def pending_update_count(self) -> int:
        """Updates queued and not yet confirmed by the bot."""
        with self._cond:
            return len(self._pending)

    @property
    def internal_errors(self) -> list[str]:
        """Exceptions inside the stand-in itself (answered as HTTP 500); a test should expect none."""
        with self._cond:
            return list(self._internal_errors)

    def wait_for(self, predicate: Callable[[FakeTelegram], T | bool | None], timeout: float = 10.0) -> T:
        """Block until ``predicate(self)`` returns something truthy, and return it.

        The predicate runs without the lock held, so it may call any inspection method (or look at
        state outside the stand-in, re-checked every 50 ms).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._version
            result = predicate(self)
            if result:
                return result  # type: ignore[return-value]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                name = getattr(predicate, "__qualname__", repr(predicate))
                raise TimeoutError(f"{name} still false after {timeout:g} s; {self._recent_calls()}")
            with self._cond:
                if self._version == seen:
                    self._cond.wait(min(remaining, 0.05))

    def wait_for_call(
        self,
        method: str,
        *,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Block until ``count`` calls to ``method`` (matching ``where``) have been answered; return them."""

        def matching(_: FakeTelegram) -> list[Call] | None:
            found = [
                call
                for call in self.calls_to(method)
                if call.response is not None and (where is None or where(call))
            ]
            return found if len(found) >= count else None

        try:
            return self.wait_for(matching, timeout)
        except TimeoutError:
            seen = len([c for c in self.calls_to(method) if where is None or where(c)])
            raise TimeoutError(
                f"expected {count} call(s) to {method} within {timeout:g} s, saw {seen}; "
                + self._recent_calls()
            ) from None

    # The waiting happens in a worker thread, which needs its own timeout: hence the parameter.
    async def wait_for_async(
        self,
        predicate: Callable[[FakeTelegram], T | bool | None],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> T:
        """:meth:`wait_for` without blocking the calling event loop (for a bot running in the same loop)."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    async def wait_for_call_async(
        self,
        method: str,
        *,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """:meth:`wait_for_call` without blocking the calling event loop."""
        return await asyncio.to_thread(
            lambda: self.wait_for_call(method, count=count, timeout=timeout, where=where)
        )

    def messages_in(self, chat_id: int, *, include_user_messages: bool = False) -> list[dict[str, Any]]:
        """What the bot currently shows in the chat: its messages, minus deleted ones, edits applied."""
        with self._cond:
            messages = self._messages.get(chat_id, {})
            return [
                copy.deepcopy(message)
                for message_id, message in sorted(messages.items())
                if include_user_messages or (chat_id, message_id) in self._bot_messages
            ]

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes of any file the bot uploaded or a user sent."""
        with self._cond:
            stored = self._files.get(file_id)
            if stored is None:
                raise KeyError(f"unknown file_id {file_id!r}")
            return stored.data

    @property
    def sticker_sets(self) -> dict[str, dict[str, Any]]:
        """name -> {"title", "owner", "stickers": [sticker dict, ...]} (a copy)."""
        with self._cond:
            return {
                name: {"title": s.title, "owner": s.owner, "stickers": copy.deepcopy(s.stickers)}
                for name, s in self._sets.items()
            }

    @property
    def inline_answers(self) -> list[dict[str, Any]]:
        """The parameters of each accepted answerInlineQuery call."""
        with self._cond:
            return copy.deepcopy(self._inline_answers)

    @property
    def commands(self) -> dict[str, list[dict[str, Any]]]:
        """Commands set with setMyCommands, keyed by "<scope type>/<language code>" ("default/"); a chat's
        scope is keyed with its id ("chat:42/")."""
        with self._cond:
            return copy.deepcopy(self._commands)

    @property
    def webhook_errors(self) -> list[str]:
        """Why webhook deliveries failed (non-2xx answers, connection errors)."""
        with self._cond:
            return list(self._webhook_errors)

    # --- fault injection ---------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        *,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls to ``method`` with this error instead of serving them."""
        with self._cond:
            queue = self._injected.setdefault(method.lower(), [])
            queue.append(_Injected(ApiError(error_code, description, retry_after=retry_after), count))

    # --- HTTP --------------------------------------------------------------------------------------
    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return _json_response(ApiError(404, "Not Found").body())

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _json_response(ApiError(401, "Unauthorized").body())
        with self._cond:
            file_id = self._paths.get(request.match_info["path"])
            stored = self._files.get(file_id) if file_id else None
        if stored is None:
            return _json_response(ApiError(404, "Not Found").body())
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _handle_api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()  # what Telegram's rate limits count: the request, not its upload's end
        if request.match_info["token"] != self.token:
            return _json_response(ApiError(401, "Unauthorized").body())
        requested = request.match_info["method"]
        name = self._method_names.get(requested.lower())
        early: ApiError | None = None
        try:
            values, uploads = await _read_request(request)
        except ApiError as exc:
            values, uploads, early = {}, {}, exc
        except ValueError:
            values, uploads, early = {}, {}, _bad("can't parse request body")
        decoded = {key: _decode_value(key, value) for key, value in values.items()}
        files = {key: upload.data for key, upload in uploads.items()}
        call = Call(name or requested, values, files, arrived, decoded)
        with self._cond:
            self._calls.append(call)
            self._changed()

        def client_gone() -> bool:
            return request.transport is None or request.transport.is_closing()

        body = await self._serve_call(requested, name, _Params(decoded, uploads, client_gone), early)
        with self._cond:
            call.response = body
            self._changed()
        return _json_response(body)

    async def _serve_call(
        self, requested: str, name: str | None, params: _Params, early: ApiError | None
    ) -> dict[str, Any]:
        try:
            if early is not None:
                raise early
            with self._cond:
                injected = self._injected.get(requested.lower())
                if injected:
                    first = injected[0]
                    first.remaining -= 1
                    if first.remaining <= 0:
                        injected.pop(0)
                    raise first.error
            if name is None:
                raise ApiError(404, "Not Found")
            handler = self._handlers[name]
            if name == "getUpdates":
                result = await handler(params)
            else:
                with self._cond:
                    result = handler(params)
                    self._changed()
        except ApiError as exc:
            return exc.body()
        except Exception as exc:  # a bug in the stand-in: make it loud, not a silent hang
            log.exception("FakeTelegram failed to serve %s", name)
            with self._cond:
                self._internal_errors.append(f"{name}: {exc!r}")
            return {"ok": False, "error_code": 500, "description": f"Internal Server Error: {exc!r}"}
        return {"ok": True, "result": result}

    # --- state helpers (callers hold the lock) -----------------------------------------------------
    def _changed(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _recent_calls(self) -> str:
        with self._cond:
            recent = self._calls[-12:]
        if not recent:
            return "no API calls received"
        shown = [f"{c.method}({'ok' if c.ok else c.error or 'pending'})" for c in recent]
        return "last calls: " + ", ".join(shown)

    def _user(self, user_id: int, *, started: bool) -> _User:
        if user_id not in self._users:
            self.add_user(user_id, f"User{user_id}", started=started)
        return self._users[user_id]

    def redeliver(self, message: dict[str, Any]) -> dict[str, Any]:
        """Queue an incoming message again, as Telegram does when the bot died before confirming it."""
        return self._queue_update("message", message)

    def _queue_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            update = {"update_id": next(self._update_ids), kind: copy.deepcopy(payload)}
            self._pending.append(update)
            self._changed()
        self._wake_pollers()
        return update

    def _wake_pollers(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set_update_event)

    def _set_update_event(self) -> None:
        # A fresh event per wake-up: every waiter grabbed the old one before checking the queue.
        event, self._update_event = self._update_event, asyncio.Event()
        if event is not None:
            event.set()

    def _entities(self, text: str) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        command = _COMMAND_RE.match(text)
        command_end = 0
        if command:
            command_end = command.end()
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command.group())})
        mention = re.compile(rf"(?<![\w@])@{re.escape(self.bot_username)}\b", re.IGNORECASE)
        for found in mention.finditer(text, command_end):
            entities.append(
                {
                    "type": "mention",
                    "offset": _utf16_len(text[: found.start()]),
                    "length": _utf16_len(found.group()),
                }
            )
        taken = [(e["offset"], e["offset"] + e["length"]) for e in entities]
        for found in _URL_RE.finditer(text):
            tld = found.group("tld")
            if tld is not None and tld.lower() not in _LINK_TLDS:
                continue
            url = _trim_url(found.group())
            offset, length = _utf16_len(text[: found.start()]), _utf16_len(url)
            if not any(offset < end and start < offset + length for start, end in taken):
                entities.append({"type": "url", "offset": offset, "length": length})
        return sorted(entities, key=lambda entity: entity["offset"])

    def _add_caption(self, content: dict[str, Any], caption: str | None) -> None:
        if caption is None:
            return
        content["caption"] = caption
        entities = self._entities(caption)
        if entities:
            content["caption_entities"] = entities

    def _photo_content(self, image: bytes) -> dict[str, Any]:
        with self._cond:
            prepared = self._prepared.pop(image, None)
        return {"photo": self._store_ladder(prepared if prepared is not None else _ladder_of(image))}

    def _document_content(
        self, data: bytes, file_name: str, mime_type: str | None, declared_size: int | None = None
    ) -> dict[str, Any]:
        size = len(data) if declared_size is None else declared_size
        file_id, unique_id = self._store_file(data, "document", _ext(file_name, mime_type), size=size)
        document: dict[str, Any] = {"file_id": file_id, "file_unique_id": unique_id, "file_name": file_name}
        if mime_type:
            document["mime_type"] = mime_type
        document["file_size"] = size
        return {"document": document}

    def _incoming(
        self,
        user_id: int,
        chat_id: int | None,
        chat_type: str,
        content: dict[str, Any],
        reply_to_message_id: int | None,
        media_group_id: str | None = None,
    ) -> dict[str, Any]:
        with self._cond:
            message = self._incoming_message(
                user_id, chat_id, chat_type, content, reply_to_message_id, media_group_id
            )
            self._queue_update("message", message)
            return copy.deepcopy(message)

    def _incoming_message(
        self,
        user_id: int,
        chat_id: int | None,
        chat_type: str,
        content: dict[str, Any],
        reply_to_message_id: int | None,
        media_group_id: str | None,
    ) -> dict[str, Any]:
        """A user's message, stored in its chat but not yet queued as an update."""
        with self._cond:
            user = self._user(user_id, started=chat_type == "private")
            if chat_type == "private":
                if chat_id not in (None, user_id):
                    raise ValueError("a private chat's id is the user's id")
                chat_id = user_id
                user.started = True  # writing to the bot opens the private chat
                user.blocked = False
            elif chat_type in ("group", "supergroup"):
                if chat_id is None or chat_id >= 0:
                    raise ValueError(f"a {chat_type} needs a negative chat_id")
                chat = self._chats.setdefault(
                    chat_id, {"id": chat_id, "type": chat_type, "title": f"Test group {-chat_id}"}
                )
                chat["type"] = chat_type
            else:
                raise ValueError(f"unsupported chat_type {chat_type!r}")
            message: dict[str, Any] = {
                "message_id": self._new_message_id(chat_id),
                "from": copy.deepcopy(user.user),
                "chat": copy.deepcopy(self._chats[chat_id]),
                "date": int(time.time()),
            }
            if reply_to_message_id is not None:
                replied = self._messages.get(chat_id, {}).get(reply_to_message_id)
                if replied is None:
                    raise ValueError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
                message["reply_to_message"] = _without_reply(replied)
            if media_group_id is not None:
                message["media_group_id"] = media_group_id
            message.update(copy.deepcopy(content))
            self._messages.setdefault(chat_id, {})[message["message_id"]] = message
            return message

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _store_file(self, data: bytes, kind: str, ext: str, *, size: int | None = None) -> tuple[str, str]:
        with self._cond:
            number = next(self._file_counter)
            prefix = {
                "photo": "AgACAgIAAxkBAAI",
                "sticker": "CAACAgIAAxkBAAI",
                "document": "BQACAgIAAxkBAAI",
                "animation": "CgACAgIAAxkBAAI",
                "video": "BAACAgIAAxkBAAI",
                "voice": "AwACAgIAAxkBAAI",
            }
            file_id = f"{prefix[kind]}{number:x}{secrets.token_urlsafe(16)}"
            unique_id = f"AQAD{number:x}{secrets.token_urlsafe(6)}"
            size = len(data) if size is None else size
            self._files[file_id] = _StoredFile(data, unique_id, kind, size, ext)
            return file_id, unique_id

    def _store_photo(self, image: Image.Image) -> list[dict[str, Any]]:
        return self._store_ladder(_jpeg_ladder(image))

    def _store_ladder(self, sizes: list[tuple[bytes, int, int]]) -> list[dict[str, Any]]:
        ladder: list[dict[str, Any]] = []
        for data, width, height in sizes:
            file_id, unique_id = self._store_file(data, "photo", "jpg")
            ladder.append(
                {
                    "file_id": file_id,
                    "file_unique_id": unique_id,
                    "width": width,
                    "height": height,
                    "file_size": len(data),
                }
            )
        with self._cond:
            for size in ladder:
                self._photo_ladders[size["file_id"]] = ladder
        return copy.deepcopy(ladder)

    def _chat_for_send(self, params: _Params, *, kind: str | None = None) -> dict[str, Any]:
        """The chat to send to; ``kind`` ("stickers", "messages", ...) is checked against its restrictions."""
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if not isinstance(chat_id, int):
            raise _bad("chat not found")
        if chat_id == self.bot_id:
            raise ApiError(403, "Forbidden: bot can't send messages to bots")
        user = self._users.get(chat_id)
        if user is not None:
            if user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if not user.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        if kind is not None and kind in self._forbidden.get(chat_id, frozenset()):
            raise ApiError(400, NOT_ENOUGH_RIGHTS[kind])
        return chat

    def _message_for_edit(self, params: _Params, missing: str) -> tuple[int, dict[str, Any]]:
        chat_id = params.int("chat_id", required=True)
        message_id = params.int("message_id", required=True)
        assert chat_id is not None and message_id is not None
        if chat_id not in self._chats:
            raise _bad("chat not found")
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise _bad(missing)
        return chat_id, message

    def _reply_to(self, chat_id: int, params: _Params) -> dict[str, Any] | None:
        reply = params.json("reply_parameters")
        allow_missing = params.flag("allow_sending_without_reply")
        if reply is not None:
            if not isinstance(reply, dict) or "message_id" not in reply:
                raise _bad("can't parse reply parameters JSON object")
            message_id = reply["message_id"]
            reply_chat = reply.get("chat_id", chat_id)
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
        else:
            message_id = params.int("reply_to_message_id")
            reply_chat = chat_id
            if message_id is None:
                return None
        replied = self._messages.get(reply_chat, {}).get(message_id)
        if replied is None:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        return _without_reply(replied)

    def _inline_markup(self, params: _Params) -> dict[str, Any] | None:
        markup = params.json("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
                return None  # reply keyboards are not part of the message
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad("can't parse inline keyboard button: Text buttons are unallowed")
                kinds = [kind for kind in _BUTTON_KINDS if kind in button]
                if len(kinds) != 1:
                    raise _bad("can't parse inline keyboard button: exactly one button action is required")
                data = button.get("callback_data")
                if "callback_data" in button and not (
                    isinstance(data, str) and 1 <= len(data.encode()) <= 64
                ):
                    raise _bad("BUTTON_DATA_INVALID")
                url = button.get("url")
                if "url" in button and not (isinstance(url, str) and re.match(r"(https?|tg)://\S+$", url)):
                    raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        return {"inline_keyboard": rows}

    def _post_message(self, chat: dict[str, Any], params: _Params, content: dict[str, Any]) -> dict[str, Any]:
        chat_id = chat["id"]
        reply = self._reply_to(chat_id, params)
        markup = self._inline_markup(params)
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat_id),
            "from": dict(self.bot_user),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
        }
        if reply is not None:
            message["reply_to_message"] = reply
        message.update(content)
        if markup is not None:
            message["reply_markup"] = markup
        self._messages.setdefault(chat_id, {})[message["message_id"]] = message
        self._bot_messages.add((chat_id, message["message_id"]))
        return copy.deepcopy(message)

    def _caption(self, params: _Params, content: dict[str, Any]) -> None:
        caption = params.text("caption")
        if caption is None:
            return
        plain = _plain_text(caption, params.text("parse_mode"))
        if len(plain) > 1024:
            raise _bad("message caption is too long")
        if plain:
            content["caption"] = plain

    def _upload_or_reference(self, params: _Params, name: str) -> tuple[_Upload | None, str | None]:
        """The file given for parameter ``name``: an uploaded part, or a file_id string."""
        reference = params.get(name)
        upload = params.uploads.get(name)
        if upload is None and isinstance(reference, str) and reference.startswith("attach://"):
            upload = params.uploads.get(reference.removeprefix("attach://"))
            if upload is None:
                raise _bad(f"file {reference} not found in the request")
        if upload is not None:
            if len(upload.data) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            return upload, None
        if isinstance(reference, str) and reference:
            return None, reference
        raise _bad(f"there is no {name} in the request")

    def _known_file(self, file_id: str, kind: str) -> _StoredFile:
        stored = self._files.get(file_id)
        if stored is None or stored.kind != kind:
            raise _bad(WRONG_FILE_ID.removeprefix("Bad Request: "))
        return stored

    def _sticker_object(
        self, file_id: str, width: int, height: int, *, is_animated: bool = False, is_video: bool = False
    ) -> dict[str, Any]:
        stored = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "type": "regular",
            "width": width,
            "height": height,
            "is_animated": is_animated,
            "is_video": is_video,
            "file_size": stored.size,
        }

    def _sticker_size(self, file_id: str) -> tuple[int, int]:
        with Image.open(io.BytesIO(self._files[file_id].data)) as image:
            return image.size

    # --- methods: bot and updates ------------------------------------------------------------------
    def _true(self, params: _Params) -> bool:
        return True

    def _get_me(self, params: _Params) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: _Params) -> list[dict[str, Any]]:
        with self._cond:
            if self._webhook.get("url"):
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            offset = params.int("offset") or 0
            limit = min(max(params.int("limit") or 100, 1), 100)
            timeout = max(params.number("timeout", 0.0), 0.0)
            self._poll_generation += 1
            generation = self._poll_generation
            self._confirm(offset)
            self._changed()
        self._wake_pollers()  # an older long poll still waiting is now terminated
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._update_event
            assert event is not None
            with self._cond:
                if generation != self._poll_generation:
                    if params.client_gone():
                        return []  # an abandoned poll (the bot shutting down), not a second instance
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                batch = copy.deepcopy(self._pending[:limit])
            remaining = deadline - loop.time()
            if batch or self._stopping or remaining <= 0:
                return batch
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            self._pending = self._pending[offset:]
        elif offset:
            self._pending = [update for update in self._pending if update["update_id"] >= offset]

    def _delete_webhook(self, params: _Params) -> bool:
        self._webhook = {}
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._webhook_task = None
        if params.flag("drop_pending_updates"):
            self._pending.clear()
        return True

    def _set_webhook(self, params: _Params) -> bool:
        url = params.text("url")
        if not url:
            return self._delete_webhook(params)
        if not re.match(r"https?://\S+$", url):
            raise _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.text("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.fullmatch(secret):
            raise _bad("secret token contains unallowed characters")
        if params.flag("drop_pending_updates"):
            self._pending.clear()
        self._webhook = {"url": url, "secret_token": secret}
        if self._webhook_task is not None:
            self._webhook_task.cancel()
        self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhook(url, secret))
        return True

    def _get_webhook_info(self, params: _Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self._webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook_errors:
            info["last_error_date"] = int(time.time())
            info["last_error_message"] = self._webhook_errors[-1]
        return info

    async def _deliver_webhook(self, url: str, secret: str | None) -> None:
        """Push pending updates to the webhook one at a time, as Telegram does, until it answers 2xx."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            while not self._stopping:
                event = self._update_event
                assert event is not None
                with self._cond:
                    update = copy.deepcopy(self._pending[0]) if self._pending else None
                if update is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), 1.0)
                    continue
                try:
                    async with session.post(url, json=update, headers=headers) as response:
                        delivered = 200 <= response.status < 300
                        problem = f"Wrong response from the webhook: {response.status} {response.reason}"
                except (ClientError, TimeoutError) as exc:
                    delivered, problem = False, f"Connection failed: {exc!r}"
                with self._cond:
                    if delivered:
                        self._pending = [u for u in self._pending if u["update_id"] != update["update_id"]]
                    else:
                        self._webhook_errors.append(problem)
                    self._changed()
                if not delivered:
                    await asyncio.sleep(0.2)

    def _command_key(self, params: _Params) -> str:
        scope = params.json("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        kind = scope["type"]
        if kind in ("chat", "chat_administrators", "chat_member"):
            chat_id = scope.get("chat_id")
            user = self._users.get(chat_id) if isinstance(chat_id, int) else None
            if chat_id not in self._chats or (user is not None and not user.started):
                raise _bad("chat not found")  # a user who never opened the bot is no chat of its own
            kind = f"{kind}:{chat_id}"
        return f"{kind}/{params.text('language_code') or ''}"

    def _set_my_commands(self, params: _Params) -> bool:
        commands = params.json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not _BOT_COMMAND_NAME_RE.fullmatch(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._command_key(params)] = commands
        return True

    def _get_my_commands(self, params: _Params) -> list[dict[str, Any]]:
        return copy.deepcopy(self._commands.get(self._command_key(params), []))

    def _delete_my_commands(self, params: _Params) -> bool:
        self._commands.pop(self._command_key(params), None)
        return True

    def _set_my_description(self, params: _Params) -> bool:
        if len(params.text("description") or "") > 512:
            raise _bad("BOT_DESCRIPTION_INVALID")
        return True

    def _set_my_short_description(self, params: _Params) -> bool:
        if len(params.text("short_description") or "") > 120:
            raise _bad("BOT_DESCRIPTION_INVALID")
        return True

    # --- methods: files ----------------------------------------------------------------------------
    def _get_file(self, params: _Params) -> dict[str, Any]:
        file_id = params.text("file_id", required=True)
        assert file_id is not None
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad("invalid file_id")
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise _bad("file is too big")
        if stored.path is None:
            folder = {
                "photo": "photos",
                "document": "documents",
                "sticker": "stickers",
                "animation": "animations",
                "video": "videos",
                "voice": "voice",
            }[stored.kind]
            stored.path = f"{folder}/file_{len(self._paths)}.{stored.ext}"
            self._paths[stored.path] = file_id
        return {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "file_size": stored.size,
            "file_path": stored.path,
        }

    # --- methods: messages -------------------------------------------------------------------------
    def _get_chat_member(self, params: _Params) -> dict[str, Any]:
        chat_id = params.int("chat_id", required=True)
        user_id = params.int("user_id", required=True)
        if chat_id not in self._chats:
            raise _bad("chat not found")
        user = self._users.get(user_id or 0)
        if user is None:
            raise _bad("PARTICIPANT_ID_INVALID")
        if self._chats[chat_id]["type"] == "private":
            status = "member" if chat_id == user_id else "left"
        else:
            status = self._admins.get(chat_id or 0, {}).get(user_id or 0, "member")
        member: dict[str, Any] = {"status": status, "user": copy.deepcopy(user.user)}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            rights = [
                "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
                "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories",
                "can_delete_stories", "can_pin_messages",
            ]
            member.update({name: True for name in rights})
            member.update(can_be_edited=False, is_anonymous=False, can_promote_members=False)
        return member

    def _send_message(self, params: _Params) -> dict[str, Any]:
        chat = self._chat_for_send(params, kind="messages")
        text = params.text("text")
        if not text:
            raise _bad("message text is empty")
        plain = _plain_text(text, params.text("parse_mode"))
        if not plain.strip():
            raise _bad("message text is empty")
        if len(plain) > 4096:
            raise _bad("message is too long")
        message = self._post_message(chat, params, {"text": plain})
        self._formatting[(chat["id"], message["message_id"])] = text
        return message

    def _edit_message_text(self, params: _Params) -> dict[str, Any] | bool:
        if params.text("inline_message_id"):
            return True
        chat_id, message = self._message_for_edit(params, "message to edit not found")
        key = (chat_id, message["message_id"])
        if key not in self._bot_messages:
            raise _bad("message can't be edited")
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        text = params.text("text")
        if not text:
            raise _bad("message text is empty")
        plain = _plain_text(text, params.text("parse_mode"))
        if not plain.strip():
            raise _bad("message text is empty")
        if len(plain) > 4096:
            raise _bad("MESSAGE_TOO_LONG")
        markup = self._inline_markup(params)
        if (
            plain == message["text"]
            and text == self._formatting.get(key, message["text"])
            and markup == message.get("reply_markup")
        ):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        message["text"] = plain
        self._formatting[key] = text
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _edit_message_caption(self, params: _Params) -> dict[str, Any] | bool:
        if params.text("inline_message_id"):
            return True
        chat_id, message = self._message_for_edit(params, "message to edit not found")
        if (chat_id, message["message_id"]) not in self._bot_messages:
            raise _bad("message can't be edited")
        if not {"photo", "document"} & message.keys():
            raise _bad("there is no caption in the message to edit")
        content: dict[str, Any] = {}
        self._caption(params, content)
        markup = self._inline_markup(params)
        if content.get("caption") == message.get("caption") and markup == message.get("reply_markup"):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        message.pop("caption", None)
        message.update(content)
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _edit_message_reply_markup(self, params: _Params) -> dict[str, Any] | bool:
        if params.text("inline_message_id"):
            return True
        chat_id, message = self._message_for_edit(params, "message to edit not found")
        if (chat_id, message["message_id"]) not in self._bot_messages:
            raise _bad("message can't be edited")
        markup = self._inline_markup(params)
        if markup == message.get("reply_markup"):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _delete_message(self, params: _Params) -> bool:
        chat_id, message = self._message_for_edit(params, "message to delete not found")
        del self._messages[chat_id][message["message_id"]]
        self._bot_messages.discard((chat_id, message["message_id"]))
        return True

    def _send_chat_action(self, params: _Params) -> bool:
        self._chat_for_send(params)
        if params.text("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _send_sticker(self, params: _Params) -> dict[str, Any]:
        chat = self._chat_for_send(params, kind="stickers")
        upload, reference = self._upload_or_reference(params, "sticker")
        if upload is not None:
            width, height = _check_static_sticker(upload.data, formats=("WEBP",))
            file_id, _ = self._store_file(upload.data, "sticker", "webp")
        else:
            assert reference is not None
            self._known_file(reference, "sticker")
            if reference in self._user_stickers:  # a sticker a user sent keeps its kind, emoji and set
                sticker = copy.deepcopy(self._user_stickers[reference])
                return self._post_message(chat, params, {"sticker": sticker})
            file_id = reference
            width, height = self._sticker_size(file_id)
        sticker = self._sticker_object(file_id, width, height)
        emoji = params.text("emoji")
        if emoji:
            sticker["emoji"] = emoji
        return self._post_message(chat, params, {"sticker": sticker})

    def _send_document(self, params: _Params) -> dict[str, Any]:
        chat = self._chat_for_send(params, kind="documents")
        upload, reference = self._upload_or_reference(params, "document")
        if upload is not None:
            if not upload.data:
                raise _bad("file must be non-empty")
            file_name = upload.filename or "document"
            mime_type = (
                upload.content_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
            )
            file_id, unique_id = self._store_file(upload.data, "document", _ext(file_name, mime_type))
            document = {
                "file_id": file_id,
                "file_unique_id": unique_id,
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": len(upload.data),
            }
        else:
            assert reference is not None
            stored = self._known_file(reference, "document")
            document = {"file_id": reference, "file_unique_id": stored.unique_id, "file_size": stored.size}
        content: dict[str, Any] = {"document": document}
        self._caption(params, content)
        return self._post_message(chat, params, content)

    def _send_photo(self, params: _Params) -> dict[str, Any]:
        chat = self._chat_for_send(params, kind="photos")
        upload, reference = self._upload_or_reference(params, "photo")
        if upload is not None:
            if len(upload.data) > MAX_PHOTO_UPLOAD_BYTES:
                raise _bad("file is too big")
            image = _open_image(upload.data, failure="IMAGE_PROCESS_FAILED")
            width, height = image.size
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
            ladder = self._store_photo(image)
        else:
            assert reference is not None
            if reference not in self._photo_ladders:
                raise _bad(WRONG_FILE_ID.removeprefix("Bad Request: "))
            ladder = copy.deepcopy(self._photo_ladders[reference])
        content: dict[str, Any] = {"photo": ladder}
        self._caption(params, content)
        return self._post_message(chat, params, content)

    # --- methods: queries --------------------------------------------------------------------------
    def _answer_callback_query(self, params: _Params) -> bool:
        query_id = params.text("callback_query_id", required=True)
        if self._callback_queries.get(query_id or "", True):
            raise _bad(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        if len(params.text("text") or "") > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self._callback_queries[query_id or ""] = True
        return True

    def _answer_inline_query(self, params: _Params) -> bool:
        query_id = params.text("inline_query_id", required=True) or ""
        if self._inline_queries.get(query_id, True):
            raise _bad(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        results = params.json("results")
        if not isinstance(results, list):
            raise _bad("can't parse inline query results JSON object")
        if len(results) > MAX_INLINE_RESULTS:
            raise _bad("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("type"), str):
                raise _bad("can't parse InlineQueryResult JSON object")
            result_id = result.get("id")
            if not isinstance(result_id, str) or not 1 <= len(result_id.encode()) <= 64:
                raise _bad("RESULT_ID_INVALID")
            if result_id in seen:
                raise _bad("RESULT_ID_DUPLICATE")
            seen.add(result_id)
            if result["type"] == "sticker":
                file_id = result.get("sticker_file_id")
                stored = self._files.get(file_id) if isinstance(file_id, str) else None
                if stored is None or stored.kind != "sticker":
                    raise _bad(WRONG_FILE_ID.removeprefix("Bad Request: "))
        if len((params.text("next_offset") or "").encode()) > 64:
            raise _bad("NEXT_OFFSET_INVALID")
        self._inline_queries[query_id] = True
        self._inline_answers.append(copy.deepcopy(params.values))
        return True

    # --- methods: sticker sets ---------------------------------------------------------------------
    def _owner(self, params: _Params) -> int:
        user_id = params.int("user_id", required=True)
        assert user_id is not None
        if user_id == self.bot_id:
            raise _bad("USER_IS_BOT")
        user = self._users.get(user_id)
        if user is None or not user.started:
            raise ApiError(400, PEER_ID_INVALID)
        return user_id

    def _input_sticker(self, raw: Any, params: _Params, set_name: str) -> dict[str, Any]:
        """A validated InputSticker, stored as a new sticker of the set."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise _bad("can't parse InputSticker JSON object") from None
        if not isinstance(raw, dict):
            raise _bad("can't parse InputSticker JSON object")
        sticker_format = raw.get("format")
        if not sticker_format:
            raise _bad("sticker format must be non-empty")
        if sticker_format != "static":
            raise _bad(f"sticker format {sticker_format!r} is not supported here (static only)")
        emoji_list = raw.get("emoji_list")
        if (
            not isinstance(emoji_list, list)
            or not 1 <= len(emoji_list) <= 20
            or not all(isinstance(e, str) and e for e in emoji_list)
        ):
            raise _bad("STICKER_EMOJI_INVALID")
        keywords = raw.get("keywords", [])
        if not isinstance(keywords, list) or len(keywords) > 20 or sum(len(k) for k in keywords) > 64:
            raise _bad("STICKER_KEYWORDS_INVALID")
        reference = raw.get("sticker")
        if not isinstance(reference, str) or not reference:
            raise _bad("sticker must be non-empty")
        if reference.startswith("attach://"):
            upload = params.uploads.get(reference.removeprefix("attach://"))
            if upload is None:
                raise _bad(f"file {reference} not found in the request")
            data = upload.data
        else:
            data = self._known_file(reference, "sticker").data
        width, height = _check_static_sticker(data, formats=("PNG", "WEBP"))
        file_id, _ = self._store_file(data, "sticker", "webp")
        sticker = self._sticker_object(file_id, width, height)
        sticker["emoji"] = emoji_list[0]
        sticker["set_name"] = set_name
        return sticker

    def _check_set_name(self, name: str | None) -> str:
        suffix = f"_by_{self.bot_username}".lower()
        if (
            not name
            or len(name) > 64
            or not _SET_NAME_RE.fullmatch(name)
            or "__" in name
            or not name.lower().endswith(suffix)
        ):
            raise _bad("invalid sticker set name is specified")
        return name

    def _sticker_set(self, params: _Params) -> tuple[str, _StickerSet]:
        name = params.text("name", required=True) or ""
        for existing, sticker_set in self._sets.items():
            if existing.lower() == name.lower():
                return existing, sticker_set
        raise ApiError(400, STICKERSET_INVALID)

    def _upload_sticker_file(self, params: _Params) -> dict[str, Any]:
        self._owner(params)
        if params.text("sticker_format") != "static":
            raise _bad("sticker_format must be static here")
        upload, _ = self._upload_or_reference(params, "sticker")
        if upload is None:
            raise _bad("there is no sticker file in the request")
        _check_static_sticker(upload.data, formats=("PNG", "WEBP"))
        file_id, unique_id = self._store_file(upload.data, "sticker", "webp")
        return {"file_id": file_id, "file_unique_id": unique_id, "file_size": len(upload.data)}

    def _create_new_sticker_set(self, params: _Params) -> bool:
        owner = self._owner(params)
        name = self._check_set_name(params.text("name"))
        title = params.text("title") or ""
        if not 1 <= len(title) <= 64:
            raise _bad("invalid sticker set title is specified" if title else "title is empty")
        if any(existing.lower() == name.lower() for existing in self._sets):
            raise _bad("sticker set name is already occupied")
        if params.text("sticker_type") not in (None, "regular"):
            raise _bad("only regular sticker sets are supported here")
        raw_stickers = params.json("stickers")
        if not isinstance(raw_stickers, list) or not raw_stickers:
            raise _bad("stickers must be non-empty")
        if len(raw_stickers) > 50:
            raise _bad("too many stickers specified")
        stickers = [self._input_sticker(raw, params, name) for raw in raw_stickers]
        self._sets[name] = _StickerSet(title, owner, stickers)
        return True

    def _add_sticker_to_set(self, params: _Params) -> bool:
        owner = self._owner(params)
        name, sticker_set = self._sticker_set(params)
        if sticker_set.owner != owner:
            raise ApiError(400, STICKERSET_INVALID)
        if len(sticker_set.stickers) >= MAX_STICKERS_PER_SET:
            raise _bad("STICKERS_TOO_MUCH")
        sticker_set.stickers.append(self._input_sticker(params.get("sticker"), params, name))
        return True

    def _get_sticker_set(self, params: _Params) -> dict[str, Any]:
        name, sticker_set = self._sticker_set(params)
        return {
            "name": name,
            "title": sticker_set.title,
            "sticker_type": "regular",
            "stickers": copy.deepcopy(sticker_set.stickers),
        }

    def _delete_sticker_from_set(self, params: _Params) -> bool:
        file_id = params.text("sticker", required=True)
        for sticker_set in self._sets.values():
            for index, sticker in enumerate(sticker_set.stickers):
                if sticker["file_id"] == file_id:
                    del sticker_set.stickers[index]
                    return True
        raise _bad("STICKER_INVALID")

    def _delete_sticker_set(self, params: _Params) -> bool:
        name, _ = self._sticker_set(params)
        del self._sets[name]
        return True


def _json_response(body: dict[str, Any]) -> web.Response:
    status = 200 if body.get("ok") else int(body.get("error_code", 500))
    return web.json_response(body, status=status)


def _without_reply(message: dict[str, Any]) -> dict[str, Any]:
    # Telegram nests one level only: a replied-to message carries no reply_to_message of its own.
    replied = copy.deepcopy(message)
    replied.pop("reply_to_message", None)
    return replied


def _set_markup(message: dict[str, Any], markup: dict[str, Any] | None) -> None:
    if markup is None:
        message.pop("reply_markup", None)
    else:
        message["reply_markup"] = markup


def _trim_url(url: str) -> str:
    """A link without the punctuation that ends the sentence around it, as Telegram cuts it."""
    while url:
        last = url[-1]
        if last in _URL_TRAILING or (last == ")" and url.count("(") < url.count(")")):
            url = url[:-1]
        else:
            break
    return url


def _ext(file_name: str, mime_type: str | None) -> str:
    if "." in file_name:
        return file_name.rsplit(".", 1)[1].lower() or "bin"
    guessed = mimetypes.guess_extension(mime_type or "") or ".bin"
    return guessed.lstrip(".")


__all__ = ["NOT_ENOUGH_RIGHTS", "ApiError", "Call", "FakeTelegram"]
