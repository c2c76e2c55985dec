"""Small helpers shared by the handlers: typed access to the machinery in ``bot_data``, who may do what."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.constants import ChatMemberStatus
from telegram.ext import CallbackContext

if TYPE_CHECKING:
    from handlers.refusals import Refusals


def refusals(context: CallbackContext[Any, Any, Any, Any]) -> Refusals:
    result: Refusals = context.bot_data["refusals"]
    return result


def is_private(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type == "private"


async def may_change_chat_settings(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> bool:
    """Anyone in a private chat; in a group, its admins (an anonymous admin posts as the group)."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is None or chat.type == "private":
        return True
    if update.callback_query is None and message is not None and message.sender_chat is not None:
        return message.sender_chat.id == chat.id
    if user is None:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
