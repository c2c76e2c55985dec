"""Small helpers shared by the handlers: typed access to the machinery in ``bot_data``."""

from __future__ import annotations

from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import ContextTypes

from bot.config import Settings
from bot.service import CutoutService
from bot.store import Store


def service(context: ContextTypes.DEFAULT_TYPE) -> CutoutService:
    result: CutoutService = context.bot_data["service"]
    return result


def store(context: ContextTypes.DEFAULT_TYPE) -> Store:
    result: Store = context.bot_data["store"]
    return result


def settings(context: ContextTypes.DEFAULT_TYPE) -> Settings:
    result: Settings = context.bot_data["settings"]
    return result


def lang(update: Update) -> str | None:
    user = update.effective_user
    return user.language_code if user else None


def is_private(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type == "private"


def retry_after_seconds(exc: RetryAfter) -> float:
    """Seconds Telegram asks us to wait (PTB 22 gives an int or, opted in, a timedelta)."""
    value = exc.retry_after
    return float(value) if isinstance(value, int | float) else value.total_seconds()
