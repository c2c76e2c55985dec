"""Event props: /props switches prop mode for the chat, /zip sends the props made here for the printer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from telegram import Message, Update
from telegram.constants import ChatAction

from bot.props import zip_new_props
from handlers.common import is_private, may_change_chat_settings
from handlers.context import BotContext
from handlers.messenger import with_retries


async def props_command(update: Update, context: BotContext) -> None:
    """Switches prop mode on or off for this chat (a group's admins only) and says what it means."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None
    brief = not is_private(update)
    if not await may_change_chat_settings(update, context):
        await message.reply_text(context.t("admins_only"))
        return
    db = context.store
    current = db.chat_settings(chat.id)
    changed = current.with_props(not current.props_on, time.time())
    db.save_chat_settings(changed)
    key = "props_on" if changed.props_on else "props_off"
    await message.reply_text(context.t(key, brief=brief))


async def zip_command(update: Update, context: BotContext) -> None:
    """Sends every prop made in this chat since prop mode went on (or the last /zip) as ZIP parts."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None
    if not await may_change_chat_settings(update, context):  # a guest's /zip would take the organiser's
        await message.reply_text(context.t("admins_only"))
        return
    db = context.store
    out_dir = context.settings.data_dir / "tmp"
    out_dir.mkdir(parents=True, exist_ok=True)
    await context.bot.send_chat_action(chat.id, ChatAction.UPLOAD_DOCUMENT, message_thread_id=_thread(update))
    archive = await zip_new_props(db, chat.id, out_dir)
    if not archive.parts:
        await message.reply_text(context.t("zip_none"))
        return
    try:
        for number, part in enumerate(archive.parts, start=1):
            caption = (
                context.t("zip_caption", count=archive.count)
                if len(archive.parts) == 1
                else context.t(
                    "zip_caption_part", count=archive.count, part=number, parts=len(archive.parts)
                )
            )
            await with_retries(partial(_send_part, message, part, caption), what="ZIP of props")
        db.save_chat_settings(replace(db.chat_settings(chat.id), zip_since=archive.until))
    finally:
        await asyncio.to_thread(_remove, archive.parts)


async def _send_part(message: Message, part: Path, caption: str) -> Message:
    return await message.reply_document(
        part, filename=part.name, caption=caption, disable_content_type_detection=True
    )


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _thread(update: Update) -> int | None:
    message = update.effective_message
    return message.message_thread_id if message is not None and message.is_topic_message else None
