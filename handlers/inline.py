"""Inline mode: ``@bot`` in any chat lists the user's recent cutouts, newest first."""

from __future__ import annotations

from telegram import InlineQueryResultCachedSticker, InlineQueryResultsButton, Update

from handlers.context import BotContext

PAGE = 50  # Telegram's cap on results per answer


async def inline_query(update: Update, context: BotContext) -> None:
    """Answers with the stickers this user received, as cached stickers, 50 per page."""
    query = update.inline_query
    assert query is not None
    offset = int(query.offset) if query.offset.isdigit() else 0
    recent = context.store.recent_stickers(query.from_user.id, offset=offset, limit=PAGE)
    results = [
        InlineQueryResultCachedSticker(id=f"c{cutout_id}", sticker_file_id=file_id)
        for cutout_id, file_id in recent
    ]
    button = None
    if offset == 0 and not results:
        button = InlineQueryResultsButton(
            text=context.t("inline_empty"), start_parameter="inline"
        )
    await query.answer(
        results,
        cache_time=5,
        is_personal=True,
        next_offset=str(offset + PAGE) if len(results) == PAGE else "",
        button=button,
    )
