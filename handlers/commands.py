"""/start, /help, /pack, /id and the command menus (everyone's, and each admin's)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from telegram import Bot, BotCommand, BotCommandScopeChat, Update
from telegram.error import TelegramError

from bot.i18n import DEFAULT, LANGUAGES, Translator, translator
from bot.packs import pack_link
from bot.storage import Store
from handlers.common import is_private
from handlers.context import BotContext

log = logging.getLogger(__name__)

MENU = ("start", "help", "settings", "props", "zip", "pack", "lang", "cutout", "id")
#: What an admin (ADMIN_USER_IDS) sees in their private chat with the bot.
ADMIN_MENU = (*MENU, "stats")


async def publish_menu(bot: Bot, store: Store, admin_ids: Iterable[int] = ()) -> None:
    """Publish the command menu and the bot's descriptions in every language, and each admin's own menu
    (with /stats), each only when it changed since it was last published (so a restart costs no Telegram
    calls); a failure never stops start-up."""
    for language in LANGUAGES:
        t = translator(language)
        code = "" if language == DEFAULT else language.split("_")[0].lower()  # English for everyone else
        language_code = code or None
        commands = _commands(t, MENU)
        await _publish(store, f"commands:{code}", [(c.command, c.description) for c in commands],
                       partial(bot.set_my_commands, commands, language_code=language_code))
        await _publish(store, f"description:{code}", t("bot_description"),
                       partial(bot.set_my_description, t("bot_description"), language_code=language_code))
        await _publish(store, f"short_description:{code}", t("bot_short_description"),
                       partial(bot.set_my_short_description, t("bot_short_description"),
                               language_code=language_code))
    for admin in sorted(admin_ids):
        # A chat's own menu wins over every language's: it is in the language the admin chose, if any.
        commands = _commands(translator(store.chat_settings(admin).language), ADMIN_MENU)
        await _publish(store, f"commands:admin:{admin}", [(c.command, c.description) for c in commands],
                       partial(bot.set_my_commands, commands, scope=BotCommandScopeChat(admin)))


def _commands(t: Translator, names: tuple[str, ...]) -> list[BotCommand]:
    return [BotCommand(name, t(f"menu_{name}")) for name in names]


async def _publish(store: Store, surface: str, content: Any, publish: Callable[[], Awaitable[bool]]) -> None:
    """Publish ``content`` to a Telegram surface unless it is what was published there last."""
    digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()
    if store.published(surface) == digest:
        return
    try:
        await publish()
    except TelegramError as exc:  # an admin who never opened the bot: "chat not found", tried next start
        log.warning("could not publish the bot's %s: %s", surface, type(exc).__name__)
        return
    store.set_published(surface, digest)


async def start(update: Update, context: BotContext) -> None:
    """Greets the user and says what to send (in a group, how to ask there); back from a pack button's
    link, says to press it again."""
    message, user = update.effective_message, update.effective_user
    assert message is not None
    if not is_private(update):
        await message.reply_text(context.t("start_group"))
        return
    name = user.first_name if user else "there"
    key = "start_pack" if context.args == ["pack"] else "start"
    await message.reply_text(context.t(key, name=name))


async def help_command(update: Update, context: BotContext) -> None:
    """Explains photos, packs, inline mode and groups."""
    message = update.effective_message
    assert message is not None
    config = context.settings
    await message.reply_text(
        context.t(
            "help" if is_private(update) else "help_group",
            bot=context.bot.username,
            max_pending=config.user_max_pending,
            per_minute=config.user_per_minute,
        )
    )


async def pack(update: Update, context: BotContext) -> None:
    """Gives the link (or links, one per volume) to the user's sticker pack."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    packs = context.store.packs(user.id)
    if not packs:
        await message.reply_text(context.t("pack_none"))
        return
    links = "\n".join(context.t("pack_line", title=p.title, link=pack_link(p.name), count=p.count) for p in packs)
    await message.reply_text(context.t("pack_links", links=links))


async def unknown(update: Update, context: BotContext) -> None:
    """A command this bot does not have, addressed to it: the short list of those it has."""
    message = update.effective_message
    assert message is not None
    await message.reply_text(context.t("unknown_command"))


async def id_command(update: Update, context: BotContext) -> None:
    """Tells the user their numeric id and the chat's (what ADMIN_USER_IDS and ALLOWED_* take)."""
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    assert message is not None and user is not None and chat is not None
    await message.reply_text(context.t("id_answer", user_id=user.id, chat_id=chat.id))
