"""Telegram's own rate limits for outgoing calls."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter

from bot.observability import Metrics

_Result = bool | dict[str, Any] | list[dict[str, Any]]

#: Flood waits on these are specific to sticker-set work, and can last minutes.
_OWN_FLOOD_WAIT = frozenset({"createNewStickerSet", "addStickerToSet", "uploadStickerFile"})


class TelegramRateLimiter(AIORateLimiter):
    """PTB's ``AIORateLimiter`` (30/s overall, 1/s per chat, 20/min per group, retry on RetryAfter),
    except for sticker-set calls.

    ``AIORateLimiter`` holds every outgoing request while it waits out a RetryAfter. A flood wait on
    pack creation would then stall every chat's cutouts, so those calls bypass it and their caller
    (``handlers/packs.py``) waits out the flood limit on its own.

    Every call to Telegram passes here, so here it is counted (each retry too), with its 429s.
    """

    def __init__(self, *, max_retries: int = 0, metrics: Metrics | None = None) -> None:
        super().__init__(max_retries=max_retries)
        self._metrics = metrics or Metrics()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, _Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> _Result:
        calls = self._metrics.telegram_calls.labels(endpoint)

        async def counted(*a: Any, **kw: Any) -> _Result:
            calls.inc()
            try:
                return await callback(*a, **kw)
            except RetryAfter:
                self._metrics.telegram_rate_limited.labels(endpoint).inc()
                raise

        if endpoint in _OWN_FLOOD_WAIT:
            return await counted(*args, **kwargs)
        return await super().process_request(counted, args, kwargs, endpoint, data, rate_limit_args)
