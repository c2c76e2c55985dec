"""/settings and /lang: keyboards for how photos are cut out and answered, and in which language.

Stored per user (private chat) and per group. The buttons carry the whole change (``set:<what>:<value>``,
``lang:<code>``) and the current values live in the store, so a keyboard sent before a restart keeps
working. In a group only its admins change anything.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.domain import PACK_EMOJI, ChatSettings, Output
from bot.i18n import LANGUAGES
from bot.texts import text
from handlers.common import may_change_chat_settings
from handlers.context import BotContext, language_for

PREFIX = "set:"
LANG_PREFIX = "lang:"
AUTO = "auto"
_EMOJI_ROW = 4


def current_values(settings: ChatSettings, language: str | None) -> dict[str, Any]:
    """Each setting's current value, in words (keys as in the ``set:<what>`` buttons; "language" for "lang")."""
    options = settings.options

    def on_off(value: bool) -> str:
        return text("on" if value else "off", lang=language)

    return {
        "crop": text(f"crop_{int(options.crop)}", lang=language),
        "output": text(f"output_{options.output}", lang=language),
        "outline": on_off(options.outline),
        "props": on_off(settings.props_on),
        "emoji": settings.emoji,
        "language": LANGUAGES[settings.language] if settings.language else text("lang_auto", lang=language),
    }


def language_buttons(settings: ChatSettings, language: str | None, prefix: str) -> list[list[InlineKeyboardButton]]:
    """A button per language we speak, and one for "as in Telegram"; the current choice ticked."""
    choices = [(AUTO, text("button_lang_auto", lang=language)), *LANGUAGES.items()]
    buttons = [
        InlineKeyboardButton(
            ("✅ " if (code == AUTO and settings.language is None) or code == settings.language else "") + name,
            callback_data=f"{prefix}{code}",
        )
        for code, name in choices
    ]
    return [buttons[:3], buttons[3:]]


def keyboard(settings: ChatSettings, language: str | None) -> InlineKeyboardMarkup:
    """Every choice as a button; the current ones are ticked."""
    options = settings.options

    def button(label: str, data: str, chosen: bool) -> InlineKeyboardButton:
        return InlineKeyboardButton(("✅ " if chosen else "") + label, callback_data=PREFIX + data)

    def choice(key: str, data: str, chosen: bool) -> InlineKeyboardButton:
        return button(text(key, lang=language), data, chosen)

    def toggle(key: str, what: str, on: bool) -> InlineKeyboardButton:
        label = ("✅ " if on else "⬜ ") + text(key, lang=language)
        return InlineKeyboardButton(label, callback_data=f"{PREFIX}{what}:{int(not on)}")

    outputs = [choice(f"button_output_{o}", f"output:{o}", options.output is o) for o in Output]
    emoji = [
        InlineKeyboardButton(f"[{e}]" if e == settings.emoji else e, callback_data=f"{PREFIX}emoji:{i}")
        for i, e in enumerate(PACK_EMOJI)
    ]
    return InlineKeyboardMarkup(
        [
            [choice("button_crop_1", "crop:1", options.crop), choice("button_crop_0", "crop:0", not options.crop)],
            outputs[:2],
            outputs[2:],
            [toggle("button_outline", "outline", options.outline), toggle("button_props", "props", settings.props_on)],
            emoji[:_EMOJI_ROW],
            emoji[_EMOJI_ROW:],
            *language_buttons(settings, language, f"{PREFIX}lang:"),
        ]
    )


def settings_text(settings: ChatSettings, language: str | None, private: bool) -> str:
    key = "settings_private" if private else "settings_group"
    values = current_values(settings, language)
    summary = text("settings_summary", lang=language, **values)
    summary += "\n" + text("settings_lang", lang=language, language=values["language"])
    return text(key, lang=language, summary=summary)


async def settings_command(update: Update, context: BotContext) -> None:
    """Shows this chat's settings with a button for every choice."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None
    current = context.store.chat_settings(chat.id)
    await message.reply_text(
        settings_text(current, context.language, chat.type == "private"),
        reply_markup=keyboard(current, context.language),
    )


def apply(settings: ChatSettings, what: str, value: str) -> ChatSettings | None:
    """The settings after one button press; None for data this version does not know."""
    options = settings.options
    try:
        if what == "crop":
            return replace(settings, options=options.with_(crop=value == "1"))
        if what == "output":
            return replace(settings, options=options.with_(output=Output(value)))
        if what == "outline":
            return replace(settings, options=options.with_(outline=value == "1"))
        if what == "props":
            return settings.with_props(value == "1", time.time())
        if what == "emoji":
            return replace(settings, emoji=PACK_EMOJI[int(value)])
        if what == "lang" and (value == AUTO or value in LANGUAGES):
            return replace(settings, language=None if value == AUTO else value)
    except (ValueError, IndexError):
        return None
    return None


async def settings_button(update: Update, context: BotContext) -> None:
    """Changes one setting, shows the new state on the keyboard, and confirms in one short line."""
    query = update.callback_query
    assert query is not None and query.data is not None and query.message is not None
    language = context.language
    chat = query.message.chat
    what, _, value = query.data.removeprefix(PREFIX).partition(":")
    db = context.store
    current = db.chat_settings(chat.id)
    changed = apply(current, what, value)
    if changed is None:
        await query.answer()
        return
    if not await may_change_chat_settings(update, context):
        await query.answer(text("admins_only", lang=language), show_alert=True)
        return
    if changed == current:
        await query.answer(text("settings_unchanged", lang=language))
        return
    db.save_chat_settings(changed)
    if what == "lang":  # from now on in the new language
        language = language_for(update, db)
    value_now = current_values(changed, language)["language" if what == "lang" else what]
    await query.answer(
        text("settings_changed", lang=language, what=text(f"what_{what}", lang=language), value=value_now)
    )
    try:
        await query.edit_message_text(
            settings_text(changed, language, chat.type == "private"), reply_markup=keyboard(changed, language)
        )
    except BadRequest as exc:  # pressed twice in a row: the keyboard already shows it
        if "not modified" not in exc.message.lower():
            raise


async def lang_command(update: Update, context: BotContext) -> None:
    """Offers the languages the bot speaks; in a group, the group's language (its admins choose)."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None
    current = context.store.chat_settings(chat.id)
    await message.reply_text(
        context.t("lang_choose", language=current_values(current, context.language)["language"]),
        reply_markup=InlineKeyboardMarkup(language_buttons(current, context.language, LANG_PREFIX)),
    )


async def lang_button(update: Update, context: BotContext) -> None:
    """Sets the language chosen under /lang and says so in it."""
    query = update.callback_query
    assert query is not None and query.data is not None and query.message is not None
    db = context.store
    current = db.chat_settings(query.message.chat.id)
    changed = apply(current, "lang", query.data.removeprefix(LANG_PREFIX))
    if changed is None:
        await query.answer()
        return
    if not await may_change_chat_settings(update, context):
        await query.answer(context.t("admins_only"), show_alert=True)
        return
    db.save_chat_settings(changed)
    language = language_for(update, db)
    name = current_values(changed, language)["language"]
    await query.answer(text("lang_set", lang=language, language=name))
    try:
        await query.edit_message_text(
            text("lang_set", lang=language, language=name),
            reply_markup=InlineKeyboardMarkup(language_buttons(changed, language, LANG_PREFIX)),
        )
    except BadRequest as exc:  # the same language again: the message already says so
        if "not modified" not in exc.message.lower():
            raise
