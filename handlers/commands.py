"""/start, /help, /pack and the command menu."""

from __future__ import annotations

import logging

from telegram import Bot, BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.packs import pack_link
from bot.texts import text
from handlers.common import is_private, lang, settings, store

log = logging.getLogger(__name__)

MENU = ("start", "help", "settings", "props", "zip", "pack", "cutout")


async def publish_menu(bot: Bot) -> None:
    """Show the commands in Telegram's menu; a failure only costs the menu, never the start-up."""
    try:
        await bot.set_my_commands([BotCommand(name, text(f"menu_{name}")) for name in MENU])
    except TelegramError as exc:
        log.warning("could not publish the command menu: %s", type(exc).__name__)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greets the user and says what to send (in a group, how to ask there); back from a pack button's
    link, says to press it again."""
    message, user = update.effective_message, update.effective_user
    assert message is not None
    if not is_private(update):
        await message.reply_text(text("start_group", lang=lang(update)))
        return
    name = user.first_name if user else "there"
    key = "start_pack" if context.args == ["pack"] else "start"
    await message.reply_text(text(key, lang=lang(update), name=name))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explains photos, packs, inline mode and groups."""
    message = update.effective_message
    assert message is not None
    config = settings(context)
    await message.reply_text(
        text(
            "help" if is_private(update) else "help_group",
            lang=lang(update),
            bot=context.bot.username,
            max_pending=config.user_max_pending,
            per_minute=config.user_per_minute,
        )
    )


async def pack(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Gives the link (or links, one per volume) to the user's sticker pack."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    packs = store(context).packs(user.id)
    if not packs:
        await message.reply_text(text("pack_none", lang=lang(update)))
        return
    links = "\n".join(f"{p.title}: {pack_link(p.name)} ({p.count} stickers)" for p in packs)
    await message.reply_text(text("pack_links", lang=lang(update), links=links))


async def unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command this bot does not have, addressed to it: the short list of those it has."""
    message = update.effective_message
    assert message is not None
    await message.reply_text(text("unknown_command", lang=lang(update)))
