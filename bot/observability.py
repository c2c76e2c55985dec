"""Metrics (Prometheus) and the health check: what an operator scrapes and what a platform probes.

Each application owns one :class:`Metrics`, with a ``CollectorRegistry`` of its own rather than the
process-wide default, so several bots built in one process (the tests) count apart. No label holds a
user or chat id: labels are small fixed sets (a text key, an API call kind, an HTTP status, a method).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from bot.storage import Store

log = logging.getLogger(__name__)

#: The Content-Type of :func:`metrics_text`.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
#: A Redis that takes longer than this to answer PING counts as down.
REDIS_PING_TIMEOUT = 1.0
# A sync create may be held for up to 180 s while the API works; a query answers in well under a second.
_API_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 45.0, 90.0, 180.0)


class Metrics:
    """Every metric the bot exports, registered in :attr:`registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.photos_received = Counter(
            "cutout_photos_received_total",
            "Pictures accepted as jobs (photos, files, stickers, links).",
            registry=r,
        )
        self.photos_answered = Counter(
            "cutout_photos_answered_total", "Jobs answered with their cutout.", registry=r
        )
        self.photos_failed = Counter(
            "cutout_photos_failed_total",
            "Jobs answered with a failure, by the text the user was shown.",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "cutout_cache_hits_total",
            "Jobs answered from the cache (a result, or a failure remembered for the image) at no API cost.",
            registry=r,
        )
        self.api_requests = Counter(
            "cutout_api_requests_total",
            "PicWish API requests sent, by kind (create, query) and HTTP status (error: no answer).",
            ["kind", "status"],
            registry=r,
        )
        self.api_seconds = Histogram(
            "cutout_api_request_duration_seconds",
            "Time from sending a PicWish API request to its answer (the QPS budget's wait excluded).",
            ["kind"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.budget_starts = Counter(
            "cutout_qps_budget_starts_total",
            "API request starts taken from the QPS budget (counted when the request leaves).",
            registry=r,
        )
        self.queue_depth = Gauge(
            "cutout_queue_depth", "Jobs waiting in the fair queue for a worker and an API start.", registry=r
        )
        self.telegram_calls = Counter(
            "cutout_telegram_calls_total",
            "Bot API calls sent to Telegram (each retry counts; getUpdates long polls do not), by method.",
            ["method"],
            registry=r,
        )
        self.telegram_rate_limited = Counter(
            "cutout_telegram_rate_limited_total",
            "Bot API calls Telegram answered with 429 (RetryAfter), by method.",
            ["method"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "cutout_webhook_requests_total",
            "Requests to the webhook path, by the HTTP status they got (403: wrong secret).",
            ["status"],
            registry=r,
        )


def metrics_text(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format (served as :data:`METRICS_CONTENT_TYPE`)."""
    return generate_latest(registry)


class Health:
    """``/healthz``: the bot is running, its database answers and (with ``REDIS_URL``) so does Redis."""

    def __init__(self, *, running: Callable[[], bool], store: Store, redis_url: str | None) -> None:
        self._running = running
        self._store = store
        self._redis = (
            aioredis.Redis.from_url(
                redis_url, socket_connect_timeout=REDIS_PING_TIMEOUT, socket_timeout=REDIS_PING_TIMEOUT
            )
            if redis_url
            else None
        )

    async def problem(self) -> str | None:
        """None when healthy; otherwise one word for what is not (never a URL or a secret)."""
        if not self._running():
            return "stopped"
        try:
            self._store.count_open_jobs(0)  # a one-row SELECT through the bot's own connection
        except Exception as exc:
            log.warning("health: the database did not answer: %s", type(exc).__name__)
            return "database"
        if self._redis is not None:
            try:
                async with asyncio.timeout(REDIS_PING_TIMEOUT):
                    await self._redis.ping()
            except Exception as exc:
                log.warning("health: Redis did not answer PING: %s", type(exc).__name__)
                return "redis"
        return None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
