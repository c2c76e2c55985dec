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

from handlers import access, commands, inline, packs, photos, props, settings
from handlers.commands import publish_menu
from handlers.errors import on_error
from handlers.messenger import TelegramMessenger


class _CaptionAsksForCutout(filters.MessageFilter):
    """A caption that starts with /cutout or mentions the bot (the bot's username is known after start-up)."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        super().__init__(name="CaptionAsksForCutout")
        self._app = app

    def filter(self, message: Any) -> bool:
        return photos.caption_asks_for_cutout(message.caption, self._app.bot.username)


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    private = filters.ChatType.PRIVATE
    groups = filters.ChatType.GROUPS
    images = filters.PHOTO | filters.Document.ALL
    new = filters.UpdateType.MESSAGE  # an edited caption or command must not get a second answer

    app.add_handler(TypeHandler(Update, access.gate), group=-1)
    app.add_handler(CommandHandler("start", commands.start, filters=private & new))
    app.add_handler(CommandHandler("help", commands.help_command, filters=new))
    app.add_handler(CommandHandler("pack", commands.pack, filters=new))
    app.add_handler(CommandHandler("cutout", photos.cutout_command, filters=new))
    app.add_handler(CommandHandler("settings", settings.settings_command, filters=new))
    app.add_handler(CommandHandler("props", props.props_command, filters=new))
    app.add_handler(CommandHandler("zip", props.zip_command, filters=new))
    app.add_handler(MessageHandler(new & private & filters.PHOTO, photos.private_photo))
    app.add_handler(MessageHandler(new & private & filters.Document.ALL, photos.private_document))
    app.add_handler(
        MessageHandler(new & groups & images & _CaptionAsksForCutout(app), photos.captioned_group_photo)
    )
    app.add_handler(MessageHandler(new & private & ~filters.StatusUpdate.ALL, photos.private_text))
    app.add_handler(CallbackQueryHandler(packs.add_to_pack, pattern=r"^pack:"))
    app.add_handler(CallbackQueryHandler(settings.settings_button, pattern=rf"^{settings.PREFIX}"))
    app.add_handler(InlineQueryHandler(inline.inline_query))
    app.add_error_handler(on_error)


__all__ = ["TelegramMessenger", "publish_menu", "register"]
