"""The context every handler gets: typed access to the machinery and texts in the right language.

Built by PTB for each update (``ContextTypes(context=BotContext)``), so a handler writes
``context.t("no_face")`` or ``context.service.submit(...)`` and never looks anything up by hand.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackContext, ExtBot

from bot.config import Settings
from bot.i18n import Translator, resolve, translator
from bot.pipeline.service import CutoutService
from bot.storage import Store


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """A CallbackContext that knows the update it serves, so it can speak the right language."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)
        self._update: Update | None = None
        self._language: str | None = None

    @classmethod
    def from_update(cls, update: object, application: Application[Any, Any, Any, Any, Any, Any]) -> BotContext:
        context = super().from_update(update, application)
        if isinstance(update, Update):
            context._update = update
        return context

    @property
    def service(self) -> CutoutService:
        result: CutoutService = self.bot_data["service"]
        return result

    @property
    def store(self) -> Store:
        result: Store = self.bot_data["store"]
        return result

    @property
    def settings(self) -> Settings:
        result: Settings = self.bot_data["settings"]
        return result

    @property
    def language(self) -> str:
        """The group's chosen language in a group; else the user's own choice; else their Telegram's."""
        if self._language is None:
            self._language = language_for(self._update, self.store if "store" in self.bot_data else None)
        return self._language

    @property
    def t(self) -> Translator:
        return translator(self.language)


def language_for(update: Update | None, store: Store | None) -> str:
    chat = update.effective_chat if update is not None else None
    user = update.effective_user if update is not None else None
    if store is not None:
        if chat is not None and chat.type != "private" and (chosen := store.chat_settings(chat.id).language):
            return chosen
        if user is not None and (chosen := store.chat_settings(user.id).language):
            return chosen
    return resolve(user.language_code if user is not None else None)
