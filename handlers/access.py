"""Optional access control: ALLOWED_USER_IDS and ALLOWED_CHAT_IDS (empty means everyone)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.config import Settings
from handlers.context import BotContext


def is_allowed(config: Settings, user_id: int | None, chat_id: int | None) -> bool:
    if not config.allowed_user_ids and not config.allowed_chat_ids:
        return True
    return (
        user_id is not None and (user_id in config.allowed_user_ids or user_id in config.admin_user_ids)
    ) or (chat_id is not None and chat_id in config.allowed_chat_ids)


async def gate(update: Update, context: BotContext) -> None:
    """Stops updates from users and chats outside the allow-lists; a private message gets a short no."""
    user, chat = update.effective_user, update.effective_chat
    if is_allowed(context.settings, user.id if user else None, chat.id if chat else None):
        return
    if update.inline_query is not None:
        await update.inline_query.answer([], cache_time=60, is_personal=True)
    elif update.callback_query is not None:
        await update.callback_query.answer(context.t("not_allowed"))
    elif chat is not None and chat.type == "private" and update.effective_message is not None:
        await update.effective_message.reply_text(context.t("not_allowed"))
    raise ApplicationHandlerStop
