"""Pictures in, cutouts out: photos, image files, albums, static stickers and links; ``/cutout`` in groups."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from telegram import Document, Message, MessageEntity, PhotoSize, Sticker, Update

from bot import errors
from bot.domain import CutoutOptions
from bot.imaging import INPUT_EXTENSIONS, MIN_SIDE
from bot.pipeline.contracts import JobSpec
from bot.storage import PHOTO_FILE_NAME
from handlers.common import is_private, refusals
from handlers.context import BotContext
from handlers.messenger import TelegramMessenger

#: Links whose path ends so are pages, videos or documents, not pictures: a hint, no API call.
NOT_PICTURE_EXTENSIONS = frozenset(
    [".html", ".htm", ".php", ".asp", ".aspx", ".jsp", ".pdf", ".doc", ".docx", ".txt", ".zip", ".rar", ".mp4", ".mov", ".avi", ".mkv", ".webm", ".mp3", ".ogg", ".js", ".css"]
)
#: Links in one message that are cut out; more get the same hint as a page would.
MAX_LINKS = 10
#: Seconds an uncaptioned album photo in a group waits for its album's /cutout caption.
ALBUM_WAIT = 60.0


def job_spec(update: Update, source: Message, options: CutoutOptions, language: str) -> JobSpec | None:
    """What to cut out from ``source`` (a photo, an image document or a static sticker), answered in the
    update's chat; an album's photos are one batch, answered in album order."""
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
        "lang": language,
    }
    if source.media_group_id:
        common.update(batch_id=f"album:{message.chat_id}:{source.media_group_id}", batch_index=source.message_id)
    file = _picture_file(source)
    return None if file is None else JobSpec(**file, **common)  # type: ignore[arg-type]


def _picture_file(source: Message) -> dict[str, object] | None:
    """The Telegram file to cut out of a photo, an image document or a static sticker."""
    if source.photo:
        largest = source.photo[-1]
        if max(largest.width, largest.height) < MIN_SIDE:  # known from the update: no download, no API call
            raise errors.ImageTooSmall(
                f"{largest.width}x{largest.height}", width=largest.width, height=largest.height
            )
        file: PhotoSize | Document | Sticker = largest
        name, mime, source_name = PHOTO_FILE_NAME, "image/jpeg", None
    elif source.document is not None and is_image_document(source.document.mime_type, source.document.file_name):
        doc = source.document
        file, name, mime, source_name = doc, doc.file_name or "image", doc.mime_type or "", doc.file_name
    elif source.sticker is not None and not (source.sticker.is_animated or source.sticker.is_video):
        file, name, mime, source_name = source.sticker, "sticker.webp", "image/webp", None
    else:
        return None
    return {
        "file_id": file.file_id,
        "file_unique_id": file.file_unique_id,
        "file_size": file.file_size,
        "file_name": name,
        "mime": mime or None,
        "source_name": source_name,
    }


def is_image_document(mime: str | None, file_name: str | None) -> bool:
    if mime and mime.startswith("image/"):
        return True
    return bool(file_name) and file_name.lower().endswith(INPUT_EXTENSIONS)  # type: ignore[union-attr]


def moving_picture(message: Message) -> bool:
    """Animations (GIFs), videos, video notes, voice, animated and video stickers: not a still photo."""
    sticker = message.sticker
    return bool(
        message.animation
        or message.video
        or message.video_note
        or message.voice
        or message.audio
        or (sticker is not None and (sticker.is_animated or sticker.is_video))
    )


async def submit(update: Update, context: BotContext, source: Message) -> None:
    """Queue the cutout, or say why not: at once for a file that cannot work, in one message for a burst."""
    message = update.effective_message
    assert message is not None
    brief = not is_private(update)
    if moving_picture(source):
        await message.reply_text(context.t("not_still", brief=brief))
        return
    try:
        spec = job_spec(update, source, context.store.chat_settings(message.chat_id).options, context.language)
        if spec is None:
            await message.reply_text(context.t("not_an_image", brief=brief))
            return
        context.service.submit(spec)
    except errors.Refused as exc:
        refusals(context).add(update, source, exc, context.language)
    except errors.CutoutError as exc:
        values = TelegramMessenger.text_values_for(context.settings, exc)
        await source.reply_text(context.t(exc.text_key, brief=brief, **values))


async def private_picture(update: Update, context: BotContext) -> None:
    """A photo, an image file or a sticker in a private chat: reply with the cutout (a hint for the rest)."""
    message = update.effective_message
    assert message is not None
    await submit(update, context, message)


async def cutout_command(update: Update, context: BotContext) -> None:
    """``/cutout`` as a reply to a picture (or with links): cut it out, threaded to it; alone, a hint."""
    message = update.effective_message
    assert message is not None
    target = message.reply_to_message
    if links_in(message) or (target is not None and links_in(target) and not has_picture(target)):
        await submit_links(update, context, links_in(message) or links_in(target))
        return
    if target is None or not (has_picture(target) or moving_picture(target)):
        key = "cutout_alone" if is_private(update) else "group_reply_to_photo"
        await message.reply_text(context.t(key, brief=not is_private(update)))
        return
    await submit(update, context, target)


def has_picture(message: Message) -> bool:
    return bool(message.photo or message.document or message.sticker)


async def group_picture(update: Update, context: BotContext) -> None:
    """A group picture: cut out when its caption asks (/cutout, a mention), or when it belongs to an album
    whose caption asked; every other picture is ignored, with no download and no API call."""
    message = update.effective_message
    assert message is not None
    albums = _asked_albums(context)
    key = (message.chat_id, message.media_group_id) if message.media_group_id else None
    if caption_asks_for_cutout(message.caption, context.bot.username):
        await submit(update, context, message)
        if key is not None:  # the album's other photos (the caption rides on one of them) count as asked
            waiting = albums.get(key, (0.0, []))[1]
            albums[key] = (time.monotonic(), [])
            for earlier in waiting:
                await submit(earlier, context, earlier.effective_message)  # type: ignore[arg-type]
        return
    if key is None:
        return
    _drop_stale(albums)
    asked_at, waiting = albums.setdefault(key, (0.0, []))
    if asked_at:
        await submit(update, context, message)
    else:
        waiting.append(update)  # its album's caption may still be on its way


def _asked_albums(context: BotContext) -> dict[tuple[int, str], tuple[float, list[Update]]]:
    """(chat, media_group_id) -> (when its caption asked, or 0; its photos that came before the caption)."""
    albums: dict[tuple[int, str], tuple[float, list[Update]]] = context.bot_data.setdefault("asked_albums", {})
    return albums


def _drop_stale(albums: dict[tuple[int, str], tuple[float, list[Update]]]) -> None:
    now = time.monotonic()
    for key, (asked_at, waiting) in list(albums.items()):
        first = asked_at or (waiting[0].effective_message.date.timestamp() if waiting else 0.0)  # type: ignore[union-attr]
        if (asked_at and now - asked_at > ALBUM_WAIT) or (not asked_at and time.time() - first > ALBUM_WAIT):
            del albums[key]


def caption_asks_for_cutout(caption: str | None, bot_username: str) -> bool:
    """True for ``/cutout``, ``/cutout@<bot>`` at the start, or an ``@<bot>`` mention anywhere."""
    if not caption:
        return False
    name = re.escape(bot_username)
    command = re.match(rf"^/cutout(?:@{name})?(?:\s|$)", caption, re.IGNORECASE)
    mention = re.search(rf"(?<![\w@])@{name}\b", caption, re.IGNORECASE)
    return bool(command or mention)


# --- links ---------------------------------------------------------------------------------------
def links_in(message: Message | None) -> list[str]:
    """The links in a message's text or caption, in order (shown links and hidden text links alike);
    also addresses Telegram does not mark as links (``ftp://…``), so they get a hint, not silence."""
    if message is None:
        return []
    found: list[str] = []
    for entities in (
        message.parse_entities([MessageEntity.URL, MessageEntity.TEXT_LINK]),
        message.parse_caption_entities([MessageEntity.URL, MessageEntity.TEXT_LINK]),
    ):
        for entity, shown in entities.items():
            found.append(entity.url if entity.type == MessageEntity.TEXT_LINK and entity.url else shown)
    return found or _ADDRESS.findall(message.text or message.caption or "")


_ADDRESS = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def picture_link(link: str) -> str | None:
    """The link as the API should fetch it, or None when it cannot be a picture (scheme, extension)."""
    url = link if "://" in link else f"https://{link}"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if PurePosixPath(parts.path).suffix.lower() in NOT_PICTURE_EXTENSIONS:
        return None
    return url


async def submit_links(update: Update, context: BotContext, links: Sequence[str]) -> None:
    """Each picture link is cut out by the API (which fetches it), answered in order; others get a hint."""
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    brief = not is_private(update)
    urls = [url for url in map(picture_link, links[:MAX_LINKS]) if url is not None]
    if not urls:
        await message.reply_text(context.t("link_not_picture", brief=brief))
        return
    options = context.store.chat_settings(message.chat_id).options
    batch_id = f"links:{message.chat_id}:{message.message_id}" if len(urls) > 1 else None
    jobs = context.service
    try:
        for part, url in enumerate(urls):
            jobs.submit(
                JobSpec(
                    user_id=user.id,
                    chat_id=message.chat_id,
                    chat_type=message.chat.type,
                    message_id=message.message_id,
                    file_id="",
                    file_unique_id="",
                    origin_message_id=message.message_id,
                    origin_part=part,
                    thread_id=message.message_thread_id if message.is_topic_message else None,
                    lang=context.language,
                    options=options,
                    source_name=PurePosixPath(urlsplit(url).path).name or None,
                    url=url,
                    batch_id=batch_id,
                    batch_index=part,
                )
            )
    except errors.Refused as exc:
        refusals(context).add(update, message, exc, context.language)
    finally:
        if batch_id is not None:
            jobs.close_batch(batch_id)


async def private_text(update: Update, context: BotContext) -> None:
    """Text in a private chat: links are cut out; anything else gets a hint (a list for an unknown command)."""
    message = update.effective_message
    assert message is not None
    if links := links_in(message):
        await submit_links(update, context, links)
        return
    if moving_picture(message):
        await message.reply_text(context.t("not_still"))
        return
    command = message.text is not None and message.text.startswith("/")
    await message.reply_text(context.t("unknown_command" if command else "hint_send_photo"))


async def group_mention(update: Update, context: BotContext) -> None:
    """A group message that mentions the bot: cut out the picture it replies to, or the links it holds."""
    message = update.effective_message
    assert message is not None
    if links := links_in(message):
        await submit_links(update, context, links)
    elif message.reply_to_message is not None and has_picture(message.reply_to_message):
        await submit(update, context, message.reply_to_message)
