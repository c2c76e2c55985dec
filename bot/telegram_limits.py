"""Telegram's own rate limits for outgoing calls."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram.ext import AIORateLimiter

#: Flood waits on these are specific to sticker-set work, and can last minutes.
_OWN_FLOOD_WAIT = frozenset({"createNewStickerSet", "addStickerToSet", "uploadStickerFile"})


class TelegramRateLimiter(AIORateLimiter):
    """PTB's ``AIORateLimiter`` (30/s overall, 1/s per chat, 20/min per group, retry on RetryAfter),
    except for sticker-set calls.

    ``AIORateLimiter`` holds every outgoing request while it waits out a RetryAfter. A flood wait on
    pack creation would then stall every chat's cutouts, so those calls bypass it and their caller
    (``handlers/packs.py``) waits out the flood limit on its own.
    """

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if endpoint in _OWN_FLOOD_WAIT:
            return await callback(*args, **kwargs)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
