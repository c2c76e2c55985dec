"""The Telegram side of a cutout job: status messages, downloads, the sticker and the PNG."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import ExtBot

from bot import errors
from bot.config import Settings
from bot.imaging import PROP_DPI
from bot.pipeline.contracts import PropFile, SentSticker, Sticker
from bot.pipeline.status import Status
from bot.storage import JobRecord
from bot.telegram_limits import ANSWER, FEEDBACK, NOTICE, Lane, Pace, retry_after_seconds
from bot.telegram_request import TelegramUnreachable
from bot.texts import text

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Telegram-side failures worth another try, and how long to keep trying before giving up.
SEND_ATTEMPTS = 5
SEND_BACKOFF = 1.0
#: A prop shorter than this on its long side prints under 10 cm at 300 DPI: the caption suggests a file.
SMALL_PROP_SIDE = 1200
#: A chat action still waiting for its slot after this long would show work already done: dropped.
CHAT_ACTION = Pace(Lane.FEEDBACK, stale_after=3.0)


async def with_retries(call: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Retry a Telegram call on RetryAfter, timeouts and 5xx; a 4xx is final."""
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            return await call()
        except (BadRequest, Forbidden):
            raise
        except RetryAfter as exc:
            if attempt == SEND_ATTEMPTS:
                raise
            delay = retry_after_seconds(exc) + 0.5
        except NetworkError as exc:  # includes TimedOut and 5xx answers
            # No connection at all: Telegram is unreachable, so the answer waits in its chat's line at once
            # (the service retries it when Telegram is back, in order) rather than after these retries.
            if attempt == SEND_ATTEMPTS or isinstance(exc, TelegramUnreachable):
                raise errors.ChatUnreachable(f"{what}: {type(exc).__name__}") from exc
            delay = SEND_BACKOFF * 2 ** (attempt - 1)
            log.warning("%s failed (%s), attempt %d", what, type(exc).__name__, attempt)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def pack_button_markup(cutout_id: int, lang: str | None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text("button_add_to_pack", lang=lang), callback_data=f"pack:{cutout_id}")]]
    )


def _pack_button(sticker: Sticker, job: JobRecord) -> InlineKeyboardMarkup | None:
    """The "add to my pack" button; none while the cutout is not in the store yet (a full disk)."""
    return pack_button_markup(sticker.cutout_id, job.lang) if sticker.cutout_id is not None else None


class TelegramMessenger:
    """Implements :class:`bot.pipeline.service.Messenger` with a PTB ``Bot``."""

    def __init__(self, bot: ExtBot[Any], settings: Settings) -> None:
        self.bot = bot
        self.settings = settings

    def _reply_to(self, job: JobRecord) -> ReplyParameters:
        return ReplyParameters(message_id=job.message_id, allow_sending_without_reply=True)

    def _text(self, job: JobRecord, key: str, **values: object) -> str:
        return text(key, lang=job.lang, brief=not job.is_private, **values)

    async def post_status(self, job: JobRecord, status: Status, *, wanted: Callable[[], bool]) -> int | None:
        message: Message | bool = await with_retries(
            lambda: self.bot.send_message(
                job.chat_id,
                self._status_text(job, status),
                reply_parameters=self._reply_to(job),
                message_thread_id=job.thread_id,
                rate_limit_args=replace(NOTICE, wanted=wanted),
            ),
            what="status message",
        )
        return message.message_id if isinstance(message, Message) else None  # True: dropped unsent

    async def ping(self) -> None:
        await self.bot.get_me()

    async def download(self, job: JobRecord) -> bytes:
        try:
            return await self._fetch(job.file_id)
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                raise errors.FileTooBig("Telegram refused the download") from None
            raise

    async def fetch_sticker(self, file_id: str) -> bytes:
        return await self._fetch(file_id)

    async def _fetch(self, file_id: str) -> bytes:
        file = await with_retries(lambda: self.bot.get_file(file_id), what="getFile")
        data = await with_retries(file.download_as_bytearray, what="file download")
        return bytes(data)

    async def show_status(self, job: JobRecord, status: Status, *, urgent: bool = False) -> None:
        if job.status_message_id is None:
            return
        try:
            await self.bot.edit_message_text(
                self._status_text(job, status),
                chat_id=job.chat_id,
                message_id=job.status_message_id,
                rate_limit_args=NOTICE if urgent else FEEDBACK,
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise

    def _status_text(self, job: JobRecord, status: Status) -> str:
        batch = "_batch" if job.batch_id is not None or status.total > 1 else ""  # one message, several photos
        key = {
            "received": f"status_received{batch}",
            "queued": f"status_queued{batch}" if not status.done else "status_queued_progress",
            "progress": "status_progress",
            "outage": f"status_outage{batch}",
        }.get(status.kind, "status_working")
        values = {
            "position": status.position,
            "done": status.done,
            "total": status.total,
            "minutes": round(self.settings.outage_hold_minutes),
        }
        return self._text(job, key, **values)

    async def chat_action(self, job: JobRecord) -> None:
        await self.bot.send_chat_action(
            job.chat_id,
            ChatAction.CHOOSE_STICKER,
            message_thread_id=job.thread_id,
            rate_limit_args=CHAT_ACTION,
        )

    async def send_sticker(
        self, job: JobRecord, sticker: Sticker, known_id: str | None
    ) -> SentSticker | None:
        sent: Message | None = None
        if known_id:
            try:
                sent = await self._send_sticker(job, sticker, known_id)
            except BadRequest as exc:  # a file_id from another bot token (a new token, the old DATA_DIR)
                if "file identifier" not in exc.message.lower():
                    raise
                log.info("stored sticker file_id refused; uploading the sticker again")
        if sent is None:
            sent = await self._send_sticker(job, sticker, sticker.webp)
        if sent.sticker is None:
            return None
        return SentSticker(sent.sticker.file_id, sent.sticker.file_unique_id)

    async def send_png(self, job: JobRecord, sticker: Sticker, *, pack_button: bool, offline: bool) -> None:
        caption = self._text(job, "png_caption") if job.is_private else None
        if offline:
            caption = (
                f"{caption}\n{self._text(job, 'made_offline')}"
                if caption
                else self._text(job, "made_offline")
            )
        await _answer_part(
            lambda: self.bot.send_document(
                job.chat_id,
                sticker.png,
                filename="cutout.png",
                caption=caption,
                reply_parameters=self._reply_to(job),
                reply_markup=_pack_button(sticker, job) if pack_button else None,
                message_thread_id=job.thread_id,
                disable_content_type_detection=True,
            ),
            what="sendDocument",
        )

    async def send_jpg(self, job: JobRecord, jpg: bytes, *, offline: bool) -> None:
        await _answer_part(
            lambda: self.bot.send_photo(
                job.chat_id,
                jpg,
                caption=self._text(job, "made_offline") if offline else None,
                reply_parameters=self._reply_to(job),
                message_thread_id=job.thread_id,
            ),
            what="sendPhoto",
        )

    async def send_prop(self, job: JobRecord, prop: PropFile) -> None:
        data = await asyncio.to_thread(prop.path.read_bytes)
        values = {
            "width": prop.width,
            "height": prop.height,
            "cm_w": f"{prop.width / PROP_DPI * 2.54:.1f}",
            "cm_h": f"{prop.height / PROP_DPI * 2.54:.1f}",
            "percent": round(prop.scale * 100),
        }
        key = "prop_caption" if prop.scale >= 1.0 else "prop_caption_shrunk"
        caption = self._text(job, key, **values)
        if max(prop.width, prop.height) < SMALL_PROP_SIDE:
            caption += self._text(job, "prop_small_hint")
        await _answer_part(
            lambda: self.bot.send_document(
                job.chat_id,
                data,
                filename=prop.file_name,
                caption=caption,
                reply_parameters=self._reply_to(job),
                message_thread_id=job.thread_id,
                disable_content_type_detection=True,
                # A big prop takes a while to upload on a slow link.
                write_timeout=120,
            ),
            what="sendDocument (prop)",
        )

    async def finish(self, job: JobRecord) -> None:
        await self._drop_status(job)

    async def _send_sticker(self, job: JobRecord, cutout: Sticker, sticker: str | bytes) -> Message:
        """sendSticker; a chat that refuses stickers raises :class:`errors.StickersRefused`."""
        return await _answer_part(
            lambda: self.bot.send_sticker(
                job.chat_id,
                sticker,
                reply_parameters=self._reply_to(job),
                reply_markup=_pack_button(cutout, job),
                message_thread_id=job.thread_id,
            ),
            what="sendSticker",
        )

    async def fail(self, job: JobRecord, error: errors.CutoutError) -> None:
        message = self._text(job, error.text_key, **self.text_values(error))
        # A status message of the photo's own becomes the reason; the service hands a shared one (a batch's,
        # or a user's photos sent one by one) to nobody, so the photo gets a reply.
        if job.status_message_id is not None and job.batch_id is None:
            try:
                await with_retries(
                    lambda: self.bot.edit_message_text(
                        message, chat_id=job.chat_id, message_id=job.status_message_id
                    ),
                    what="error message",
                )
                return
            except BadRequest:
                pass  # the status message is gone: reply instead
        await with_retries(
            lambda: self.bot.send_message(
                job.chat_id, message, reply_parameters=self._reply_to(job), message_thread_id=job.thread_id
            ),
            what="error message",
        )

    async def alert_admins(self, text_key: str, lang: str | None, **values: Any) -> None:
        for admin in sorted(self.settings.admin_user_ids):
            try:
                await self.bot.send_message(admin, text(text_key, lang=lang, **values))
            except (BadRequest, Forbidden, NetworkError) as exc:
                log.warning("could not alert admin %s: %s", admin, type(exc).__name__)

    def text_values(self, error: errors.CutoutError) -> dict[str, object]:
        return self.text_values_for(self.settings, error)

    @staticmethod
    def text_values_for(settings: Settings, error: errors.CutoutError) -> dict[str, object]:
        """The values error texts may mention (limits, how long to wait)."""
        retry_after = getattr(error, "retry_after", 0.0)
        return {
            "max_pending": settings.user_max_pending,
            "per_minute": settings.user_per_minute,
            "seconds": max(1, round(retry_after)),
            "width": getattr(error, "width", 0),
            "height": getattr(error, "height", 0),
        }

    async def _drop_status(self, job: JobRecord) -> None:
        if job.status_message_id is None:
            return
        try:
            await self.bot.delete_message(job.chat_id, job.status_message_id, rate_limit_args=ANSWER)
        except (BadRequest, Forbidden, NetworkError) as exc:
            log.debug("could not delete status message: %s", type(exc).__name__)


#: What Telegram says when a chat's permissions forbid what the bot sends (its members' rights apply).
_RESTRICTED = ("not enough rights", "chat_send_", "have no rights")


async def _answer_part(call: Callable[[], Awaitable[Message]], *, what: str) -> Message:
    """Send one part of an answer; a chat whose permissions refuse it raises a :class:`errors.ChatRestricted`."""
    try:
        return await with_retries(call, what=what)
    except BadRequest as exc:
        refusal = exc.message.lower()
        if not any(marker in refusal for marker in _RESTRICTED):
            raise
        if "sticker" in refusal:
            raise errors.StickersRefused(exc.message) from None
        raise errors.ChatRestricted(exc.message) from None
