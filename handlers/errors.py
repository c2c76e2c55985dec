"""The global error handler: log with context, tell the user, never let one update stop the bot."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden, TelegramError

from handlers.common import is_private
from handlers.context import BotContext

log = logging.getLogger(__name__)


async def on_error(update: object, context: BotContext) -> None:
    """Logs the failure with the update's ids; tells the user something went wrong, briefly in groups."""
    error = context.error
    if isinstance(update, Update):
        chat = update.effective_chat
        user = update.effective_user
        log.error(
            "update %s (chat %s, user %s) failed: %s",
            update.update_id,
            chat.id if chat else None,
            user.id if user else None,
            type(error).__name__,
            exc_info=error,
        )
        message = update.effective_message
        if message is not None and not isinstance(error, Forbidden):
            try:
                await message.reply_text(
                    context.t("error_generic", brief=not is_private(update))
                )
            except TelegramError as exc:  # the chat is gone or Telegram is down: the log line is all there is
                log.warning("could not tell the user about the error: %s", type(exc).__name__)
    else:
        log.error("error outside an update: %s", type(error).__name__, exc_info=error)
