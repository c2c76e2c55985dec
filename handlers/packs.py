"""The "Add to my pack" button: create the presser's pack on first use, add to it after, roll over at 120."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from telegram import CallbackQuery, InputSticker, Update
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.ext import ContextTypes

from bot.packs import PACK_CAPACITY, pack_name, pack_title
from bot.store import PackRecord, Store
from bot.texts import text
from handlers.common import lang, store

log = logging.getLogger(__name__)

STICKER_EMOJI = ["🙂"]
#: Pack creation is flood-limited; waits are honoured up to this many seconds in total.
FLOOD_WAIT_BUDGET = 120.0
_NOT_STARTED = ("PEER_ID_INVALID", "USER_NOT_FOUND", "BOT_BLOCKED", "USER_IS_BLOCKED", "CHAT_NOT_FOUND")
_user_locks: dict[int, asyncio.Lock] = {}


class PackFull(Exception):
    """The volume holds 120 stickers already."""


async def add_to_pack(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Adds the cutout under the pressed button to the presser's own pack, and says where it went."""
    query = update.callback_query
    assert query is not None and query.data is not None
    user = query.from_user
    db = store(context)
    reply = _Reply(update, context)
    try:
        cutout = db.cutout_by_id(int(query.data.removeprefix("pack:")))
    except ValueError:
        cutout = None
    sticker_bytes = await _read(cutout.sticker_path) if cutout else None
    if cutout is None or sticker_bytes is None:
        await reply(text("pack_cutout_gone", lang=lang(update)), alert=True)
        return
    lock = _user_locks.setdefault(user.id, asyncio.Lock())
    async with lock:  # two quick presses must not create two packs
        if db.pack_of_sticker(user.id, cutout.id):
            await reply(text("pack_already", lang=lang(update)))
            return
        try:
            pack, created = await _add(context, db, user.id, user.first_name, cutout.id, sticker_bytes, reply)
        except BadRequest as exc:
            if any(code in exc.message.upper() for code in _NOT_STARTED):
                # A t.me/<bot>?start= link is the one URL a callback answer may open.
                await reply(
                    text("pack_not_started", lang=lang(update)),
                    url=f"https://t.me/{context.bot.username}?start=pack",
                )
                return
            log.warning("pack operation failed for user %s: %s", user.id, exc.message)
            await reply(text("pack_failed", lang=lang(update)), alert=True)
            return
        except TelegramError as exc:
            log.warning("pack operation failed for user %s: %s", user.id, type(exc).__name__)
            await reply(text("pack_failed", lang=lang(update)), alert=True)
            return
    key = "pack_created" if created else "pack_added"
    await reply(text(key, lang=lang(update), title=pack.title))


async def _add(
    context: ContextTypes.DEFAULT_TYPE,
    db: Store,
    user_id: int,
    first_name: str,
    cutout_id: int,
    sticker_bytes: bytes,
    reply: _Reply,
) -> tuple[PackRecord, bool]:
    """Add to the newest volume, creating volume 1 (or the next one when full). Returns (pack, created)."""
    bot = context.bot
    sticker = InputSticker(sticker_bytes, emoji_list=STICKER_EMOJI, format="static")
    packs = db.packs(user_id)
    current = packs[-1] if packs else None
    if current is not None and current.count < PACK_CAPACITY:
        try:
            await _flood_patient(lambda: bot.add_sticker_to_set(user_id, current.name, sticker), reply)
        except BadRequest as exc:
            if "STICKERS_TOO_MUCH" not in exc.message.upper():
                raise
            db.set_pack_count(current.name, PACK_CAPACITY)
        else:
            db.remember_pack_sticker(user_id, cutout_id, current.name)
            return PackRecord(user_id, current.volume, current.name, current.title, current.count + 1), False
    volume = current.volume + 1 if current else 1
    name = pack_name(user_id, volume, bot.username)
    title = pack_title(first_name, volume)
    sticker = InputSticker(sticker_bytes, emoji_list=STICKER_EMOJI, format="static")
    await _flood_patient(lambda: bot.create_new_sticker_set(user_id, name, title, [sticker]), reply)
    pack = db.add_pack(user_id, volume, name, title, 0)
    db.remember_pack_sticker(user_id, cutout_id, name)
    return PackRecord(pack.user_id, volume, name, title, 1), True


async def _read(path: str) -> bytes | None:
    try:
        return await asyncio.to_thread(Path(path).read_bytes)
    except FileNotFoundError:
        return None


class _Reply:
    """Answers the button press once; after a long flood wait the answer goes to the private chat."""

    def __init__(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.update, self.context, self.answered = update, context, False

    async def waiting(self) -> None:
        if not self.answered:
            self.answered = True
            await self._query.answer(text("pack_working", lang=lang(self.update)))

    async def __call__(self, message: str, *, alert: bool = False, url: str | None = None) -> None:
        if not self.answered:
            self.answered = True
            await self._query.answer(message, show_alert=alert, url=url)
        else:
            await self.context.bot.send_message(self._query.from_user.id, message)

    @property
    def _query(self) -> CallbackQuery:
        assert self.update.callback_query is not None
        return self.update.callback_query


async def _flood_patient(call: Callable[[], Awaitable[bool]], reply: _Reply) -> bool:
    """Wait out flood limits (RetryAfter) on pack operations instead of dropping the request."""
    waited = 0.0
    while True:
        try:
            return await call()
        except RetryAfter as exc:
            ra = exc.retry_after
            delay = float(ra) if isinstance(ra, int | float) else ra.total_seconds()
            if waited + delay > FLOOD_WAIT_BUDGET:
                raise
            log.info("pack operation flood-limited; waiting %.0f s", delay)
            await reply.waiting()
            waited += delay
            await asyncio.sleep(delay)
