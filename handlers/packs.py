"""The "Add to my pack" button: create the presser's pack on first use, add to it after, roll over at 120."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from telegram import CallbackQuery, InputSticker, Update
from telegram.error import BadRequest, RetryAfter, TelegramError

from bot.domain import PACK_EMOJI
from bot.packs import PACK_CAPACITY, pack_name, pack_title
from bot.storage import PackRecord, Store
from bot.telegram_limits import retry_after_seconds
from handlers.context import BotContext

log = logging.getLogger(__name__)

#: Pack creation is flood-limited; waits are honoured up to this many seconds in total.
FLOOD_WAIT_BUDGET = 120.0
#: A button press answered later than this may be dropped by Telegram: say "working" and finish in private.
ANSWER_WITHIN = 4.0
#: Volumes tried in one press (full, deleted or adopted ones are skipped).
MAX_VOLUME_STEPS = 5
_NOT_STARTED = ("PEER_ID_INVALID", "USER_NOT_FOUND", "BOT_BLOCKED", "USER_IS_BLOCKED", "CHAT_NOT_FOUND")


class NoRoom(Exception):
    """No volume would take the sticker within MAX_VOLUME_STEPS."""


async def add_to_pack(update: Update, context: BotContext) -> None:
    """Adds the cutout under the pressed button to the presser's own pack, and says where it went."""
    reply = _Reply(update, context)
    work = asyncio.ensure_future(_add_for_presser(update, context, reply))
    try:
        done, _ = await asyncio.wait({work}, timeout=ANSWER_WITHIN)
        if not done:
            await reply.waiting()
        await work
    finally:
        work.cancel()  # only when this handler itself was cancelled


async def _add_for_presser(update: Update, context: BotContext, reply: _Reply) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    user = query.from_user
    db = context.store
    try:
        cutout = db.cutout_by_id(int(query.data.removeprefix("pack:")))
    except ValueError:
        cutout = None
    sticker_bytes = await _read(cutout.sticker_path) if cutout else None
    if cutout is None or sticker_bytes is None:
        await reply(context.t("pack_cutout_gone"), alert=True)
        return
    async with _lock_for(context, user.id):  # two quick presses must not create two packs
        if db.pack_of_sticker(user.id, cutout.id):
            await reply(context.t("pack_already"))
            return
        try:
            # The emoji chosen in /settings of the chat where the button was pressed.
            emoji = db.chat_settings(query.message.chat.id).emoji if query.message else PACK_EMOJI[0]
            sticker = InputSticker(sticker_bytes, emoji_list=[emoji], format="static")
            pack, created = await _add(context, db, user.id, user.first_name, cutout.id, sticker)
        except BadRequest as exc:
            if _says(exc, *_NOT_STARTED):
                # A t.me/<bot>?start= link is the one URL a callback answer may open.
                await reply(
                    context.t("pack_not_started"),
                    url=f"https://t.me/{context.bot.username}?start=pack",
                )
                return
            log.warning("pack operation failed for user %s: %s", user.id, exc.message)
            await reply(context.t("pack_failed"), alert=True)
            return
        except (TelegramError, NoRoom) as exc:
            log.warning("pack operation failed for user %s: %s", user.id, exc)
            await reply(context.t("pack_failed"), alert=True)
            return
    key = "pack_created" if created else "pack_added"
    await reply(context.t(key, title=pack.title))


async def _add(
    context: BotContext,
    db: Store,
    user_id: int,
    first_name: str,
    cutout_id: int,
    sticker: InputSticker,
) -> tuple[PackRecord, bool]:
    """Add to the newest volume, creating volume 1 (or the next one when full). Returns (pack, created)."""
    bot = context.bot
    packs = {p.volume: p for p in db.packs(user_id)}
    volume = max(packs, default=1)
    for _ in range(MAX_VOLUME_STEPS):
        current = packs.get(volume)
        if current is not None:
            if current.count >= PACK_CAPACITY:
                volume += 1
                continue
            try:
                await _flood_patient(partial(bot.add_sticker_to_set, user_id, current.name, sticker))
            except BadRequest as exc:
                if _says(exc, "STICKERS_TOO_MUCH"):
                    db.set_pack_count(current.name, PACK_CAPACITY)
                    volume += 1
                elif _says(exc, "STICKERSET_INVALID"):  # its owner deleted it (in @Stickers): make it again
                    db.drop_pack(current.name)
                    del packs[volume]
                else:
                    raise
                continue
            db.remember_pack_sticker(user_id, cutout_id, current.name)
            return PackRecord(user_id, volume, current.name, current.title, current.count + 1), False
        name = pack_name(user_id, volume, bot.username)
        # The template with its placeholder kept: pack_title fits the name into Telegram's 64 characters.
        template = context.t("pack_title", name="{name}")
        title = pack_title(first_name, volume, template, context.t("pack_title_anonymous"))
        try:
            await _flood_patient(partial(bot.create_new_sticker_set, user_id, name, title, [sticker]))
        except BadRequest as exc:
            if not _says(exc, "OCCUPIED"):
                raise
            # Our name for this user and volume: a set made before the store was lost is adopted,
            # a deleted one whose name Telegram keeps is skipped.
            adopted = await _adopt(context, db, user_id, volume, name)
            if adopted is None:
                volume += 1
            else:
                packs[volume] = adopted
            continue
        db.add_pack(user_id, volume, name, title, 0)
        db.remember_pack_sticker(user_id, cutout_id, name)
        return PackRecord(user_id, volume, name, title, 1), True
    raise NoRoom(f"no volume up to {volume} took the sticker")


async def _adopt(context: BotContext, db: Store, user_id: int, volume: int, name: str) -> PackRecord | None:
    """Record the existing set ``name`` as this user's volume; None when Telegram won't show it."""
    try:
        found = await context.bot.get_sticker_set(name)
    except BadRequest:
        return None
    return db.add_pack(user_id, volume, name, found.title, len(found.stickers))


def _lock_for(context: BotContext, user_id: int) -> asyncio.Lock:
    # Per application (an asyncio.Lock belongs to one event loop); dropped once nobody holds it.
    locks: weakref.WeakValueDictionary[int, asyncio.Lock] = context.bot_data.setdefault(
        "pack_locks", weakref.WeakValueDictionary()
    )
    lock = locks.get(user_id)
    if lock is None:
        lock = locks[user_id] = asyncio.Lock()
    return lock


def _says(exc: TelegramError, *codes: str) -> bool:
    message = exc.message.upper()
    return any(code in message for code in codes)


async def _read(path: str) -> bytes | None:
    try:
        return await asyncio.to_thread(Path(path).read_bytes)
    except FileNotFoundError:
        return None


class _Reply:
    """Answers the button press once; once it is answered, later words go to the private chat."""

    def __init__(self, update: Update, context: BotContext) -> None:
        self.update, self.context, self.answered = update, context, False

    async def waiting(self) -> None:
        if not self.answered:
            self.answered = True
            await self._answer(self.context.t("pack_working"))

    async def __call__(self, message: str, *, alert: bool = False, url: str | None = None) -> None:
        if not self.answered:
            self.answered = True
            if await self._answer(message, alert=alert, url=url):
                return
        try:
            await self.context.bot.send_message(self._query.from_user.id, message)
        except TelegramError as exc:
            log.warning("could not tell user %s about their pack: %s", self._query.from_user.id, exc)

    async def _answer(self, message: str, *, alert: bool = False, url: str | None = None) -> bool:
        try:
            return await self._query.answer(message, show_alert=alert, url=url)
        except BadRequest as exc:  # the press is too old to answer
            log.info("could not answer a pack button press: %s", exc.message)
            return False

    @property
    def _query(self) -> CallbackQuery:
        assert self.update.callback_query is not None
        return self.update.callback_query


async def _flood_patient(call: Callable[[], Awaitable[bool]]) -> bool:
    """Wait out flood limits (RetryAfter) on pack operations instead of dropping the request.

    The bot's rate limiter lets sticker-set calls through (bot/telegram_limits.py), so a flood wait here
    holds only this press; a press that outlasts ANSWER_WITHIN is answered "working" by its handler.
    """
    waited = 0.0
    while True:
        try:
            return await call()
        except RetryAfter as exc:
            delay = retry_after_seconds(exc)
            if waited + delay > FLOOD_WAIT_BUDGET:
                raise
            log.info("pack operation flood-limited; waiting %.0f s", delay)
            waited += delay
            await asyncio.sleep(delay)
