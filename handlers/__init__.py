"""Everything that speaks Telegram: which updates go where. ``register`` wires them into the Application."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from handlers import access, admin, commands, inline, packs, photos, props, settings
from handlers.commands import publish_menu
from handlers.context import BotContext
from handlers.errors import on_error
from handlers.messenger import TelegramMessenger
from handlers.refusals import Refusals


class _AsksTheBot(filters.MessageFilter):
    """A text that mentions the bot, or a command addressed to it by name (``/foo@bot``); its username is
    known only after start-up."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any], *, command: bool) -> None:
        super().__init__(name="AsksTheBot")
        self._app = app
        self._command = command

    def filter(self, message: Any) -> bool:
        words = (message.text or "").split()
        name = f"@{self._app.bot.username}".lower()
        if self._command:
            return bool(words) and words[0].startswith("/") and words[0].lower().endswith(name)
        return photos.caption_asks_for_cutout(message.text, self._app.bot.username)


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    private = filters.ChatType.PRIVATE
    groups = filters.ChatType.GROUPS
    pictures = filters.PHOTO | filters.Document.ALL | filters.Sticker.ALL
    moving = filters.ANIMATION | filters.VIDEO | filters.VIDEO_NOTE | filters.VOICE | filters.AUDIO
    new = filters.UpdateType.MESSAGE  # an edited caption or command must not get a second answer

    app.bot_data["refusals"] = Refusals(app, app.bot_data["settings"])
    app.add_handler(TypeHandler(Update, access.gate), group=-1)
    app.add_handler(CommandHandler("start", commands.start, filters=new))
    app.add_handler(CommandHandler("help", commands.help_command, filters=new))
    app.add_handler(CommandHandler("pack", commands.pack, filters=new))
    app.add_handler(CommandHandler("cutout", photos.cutout_command, filters=new))
    app.add_handler(CommandHandler("settings", settings.settings_command, filters=new))
    app.add_handler(CommandHandler("props", props.props_command, filters=new))
    app.add_handler(CommandHandler("zip", props.zip_command, filters=new))
    app.add_handler(CommandHandler("lang", settings.lang_command, filters=new))
    app.add_handler(CommandHandler("id", commands.id_command, filters=new))
    app.add_handler(CommandHandler("stats", admin.stats_command, filters=new))
    app.add_handler(MessageHandler(new & private & (pictures | moving), photos.private_picture))
    app.add_handler(MessageHandler(new & groups & pictures, photos.group_picture))
    app.add_handler(MessageHandler(new & groups & _AsksTheBot(app, command=True), commands.unknown))
    app.add_handler(MessageHandler(new & groups & _AsksTheBot(app, command=False), photos.group_mention))
    app.add_handler(MessageHandler(new & private & ~filters.StatusUpdate.ALL, photos.private_text))
    app.add_handler(CallbackQueryHandler(packs.add_to_pack, pattern=r"^pack:"))
    app.add_handler(CallbackQueryHandler(settings.settings_button, pattern=rf"^{settings.PREFIX}"))
    app.add_handler(CallbackQueryHandler(settings.lang_button, pattern=rf"^{settings.LANG_PREFIX}"))
    app.add_handler(InlineQueryHandler(inline.inline_query))
    app.add_error_handler(on_error)


__all__ = ["BotContext", "TelegramMessenger", "publish_menu", "register"]
