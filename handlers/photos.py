"""Photos in, cutouts out: private photos and image files, ``/cutout`` in groups."""

from __future__ import annotations

import re

from telegram import Message, Update
from telegram.ext import ContextTypes

from bot import errors
from bot.domain import CutoutOptions
from bot.service import JobSpec
from bot.texts import text
from handlers.common import is_private, lang, service, settings, store
from handlers.messenger import TelegramMessenger

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def job_spec(update: Update, source: Message, options: CutoutOptions) -> JobSpec | None:
    """What to cut out from ``source`` (a photo or an image document), answered in the update's chat."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    common = {
        "options": options,
        "user_id": user.id,
        "chat_id": message.chat_id,
        "chat_type": message.chat.type,
        "message_id": source.message_id,
        "origin_message_id": message.message_id,
        "thread_id": message.message_thread_id if message.is_topic_message else None,
        "lang": user.language_code,
    }
    if source.photo:
        largest = source.photo[-1]
        return JobSpec(
            file_id=largest.file_id,
            file_unique_id=largest.file_unique_id,
            file_size=largest.file_size,
            file_name="photo.jpg",
            mime="image/jpeg",
            **common,  # type: ignore[arg-type]
        )
    doc = source.document
    if doc is not None and is_image_document(doc.mime_type, doc.file_name):
        return JobSpec(
            file_id=doc.file_id,
            file_unique_id=doc.file_unique_id,
            file_size=doc.file_size,
            file_name=doc.file_name,
            mime=doc.mime_type,
            source_name=doc.file_name,
            **common,  # type: ignore[arg-type]
        )
    return None


def is_image_document(mime: str | None, file_name: str | None) -> bool:
    if mime and mime.startswith("image/"):
        return True
    return bool(file_name) and file_name.lower().endswith(IMAGE_EXTENSIONS)  # type: ignore[union-attr]


async def submit(update: Update, context: ContextTypes.DEFAULT_TYPE, source: Message) -> None:
    """Queue the cutout, or say at once why not (limits, a file that cannot work)."""
    message = update.effective_message
    assert message is not None
    spec = job_spec(update, source, store(context).chat_settings(message.chat_id).options)
    brief = not is_private(update)
    if spec is None:
        await message.reply_text(text("not_an_image", lang=lang(update), brief=brief))
        return
    try:
        service(context).submit(spec)
    except errors.CutoutError as exc:
        values = TelegramMessenger.text_values_for(settings(context), exc)
        await source.reply_text(text(exc.text_key, lang=lang(update), brief=brief, **values))


async def private_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or image file in a private chat: reply with the sticker and the PNG."""
    message = update.effective_message
    assert message is not None
    await submit(update, context, message)


async def private_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file in a private chat: an image gets the cutout, anything else a hint."""
    message = update.effective_message
    assert message is not None and message.document is not None
    if not is_image_document(message.document.mime_type, message.document.file_name):
        await message.reply_text(text("not_an_image", lang=lang(update)))
        return
    await submit(update, context, message)


async def cutout_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/cutout`` as a reply to a photo or an image file: cut out that photo, threaded to it."""
    message = update.effective_message
    assert message is not None
    target = message.reply_to_message
    if target is None or not (target.photo or target.document):
        await message.reply_text(
            text("group_reply_to_photo", lang=lang(update), brief=not is_private(update))
        )
        return
    await submit(update, context, target)


async def captioned_group_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A group photo whose caption starts with /cutout or mentions the bot; other photos never get here."""
    message = update.effective_message
    assert message is not None
    await submit(update, context, message)


def caption_asks_for_cutout(caption: str | None, bot_username: str) -> bool:
    """True for ``/cutout``, ``/cutout@<bot>`` at the start, or an ``@<bot>`` mention anywhere."""
    if not caption:
        return False
    name = re.escape(bot_username)
    command = re.match(rf"^/cutout(?:@{name})?(?:\s|$)", caption, re.IGNORECASE)
    mention = re.search(rf"(?<![\w@])@{name}\b", caption, re.IGNORECASE)
    return bool(command or mention)


async def private_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Plain text or anything else in a private chat: a short hint (a list of commands for an unknown one)."""
    message = update.effective_message
    assert message is not None
    command = message.text is not None and message.text.startswith("/")
    await message.reply_text(text("unknown_command" if command else "hint_send_photo", lang=lang(update)))
