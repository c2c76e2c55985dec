"""Photos refused by the per-user limits, told once per burst: one reply for one photo, one message for many."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from telegram import Message, ReplyParameters, Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot import errors
from bot.config import Settings
from bot.texts import text
from handlers.messenger import TelegramMessenger

log = logging.getLogger(__name__)

#: Seconds a burst's refusals are gathered before they are told.
WINDOW = 1.0


@dataclass
class _Burst:
    update: Update
    language: str
    refused: list[tuple[Message, errors.Refused]] = field(default_factory=list)


class Refusals:
    """Gathers a user's refused photos for a moment, then says how many and when to send them again."""

    def __init__(self, app: Application, settings: Settings) -> None:  # type: ignore[type-arg]
        self._app = app
        self._settings = settings
        self._bursts: dict[tuple[int, int], _Burst] = {}

    def add(self, update: Update, photo: Message, refusal: errors.Refused, language: str) -> None:
        message, user = update.effective_message, update.effective_user
        assert message is not None and user is not None
        key = (message.chat_id, user.id)
        burst = self._bursts.get(key)
        if burst is None:
            burst = self._bursts[key] = _Burst(update, language)
            self._app.create_task(self._tell(key), update=update)
        burst.refused.append((photo, refusal))

    async def _tell(self, key: tuple[int, int]) -> None:
        await asyncio.sleep(WINDOW)
        burst = self._bursts.pop(key)
        chat = burst.update.effective_chat
        brief = chat is not None and chat.type != "private"
        first, refusal = burst.refused[0]
        # The limits and the longest wait among them: when every photo of the burst may come again.
        latest = max((r for _, r in burst.refused), key=lambda r: r.retry_after)
        values = TelegramMessenger.text_values_for(self._settings, latest) | {"count": len(burst.refused)}
        key_name = refusal.text_key if len(burst.refused) == 1 else f"{refusal.text_key}_many"
        try:
            await self._app.bot.send_message(
                first.chat_id,
                text(key_name, lang=burst.language, brief=brief, **values),
                reply_parameters=ReplyParameters(first.message_id, allow_sending_without_reply=True),
                message_thread_id=first.message_thread_id if first.is_topic_message else None,
            )
        except TelegramError as exc:
            log.warning("could not tell user %s about refused photos: %s", key[1], type(exc).__name__)
