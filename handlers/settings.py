"""/settings: one keyboard for how photos are cut out and answered, per user and per group.

The buttons carry the whole change (``set:<what>:<value>``) and the current values live in the store,
so a keyboard sent before a restart keeps working. In a group only its admins change anything.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.domain import PACK_EMOJI, ChatSettings, Output
from bot.texts import text
from handlers.common import lang, may_change_chat_settings, store

PREFIX = "set:"
_EMOJI_ROW = 4


def current_values(settings: ChatSettings, language: str | None) -> dict[str, Any]:
    """Each setting's current value, in words (keys as in the ``set:<what>`` buttons)."""
    options = settings.options

    def on_off(value: bool) -> str:
        return text("on" if value else "off", lang=language)

    return {
        "crop": text(f"crop_{int(options.crop)}", lang=language),
        "output": text(f"output_{options.output}", lang=language),
        "outline": on_off(options.outline),
        "props": on_off(settings.props_on),
        "emoji": settings.emoji,
    }


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
        ]
    )


def settings_text(settings: ChatSettings, language: str | None, private: bool) -> str:
    key = "settings_private" if private else "settings_group"
    summary = text("settings_summary", lang=language, **current_values(settings, language))
    return text(key, lang=language, summary=summary)


async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Shows this chat's settings with a button for every choice."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None
    current = store(context).chat_settings(chat.id)
    await message.reply_text(
        settings_text(current, lang(update), chat.type == "private"),
        reply_markup=keyboard(current, lang(update)),
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
    except (ValueError, IndexError):
        return None
    return None


async def settings_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Changes one setting, shows the new state on the keyboard, and confirms in one short line."""
    query = update.callback_query
    assert query is not None and query.data is not None and query.message is not None
    language = lang(update)
    chat = query.message.chat
    what, _, value = query.data.removeprefix(PREFIX).partition(":")
    db = store(context)
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
    value_now = current_values(changed, language)[what]
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
