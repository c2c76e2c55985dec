"""The application factory: everything ``python -m bot`` wires together, in one place.

Tests build the bot through :func:`build_application` too, so they run exactly what production runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from typing import Any

from telegram.ext import Application, ApplicationBuilder, CallbackContext, ContextTypes

import handlers
from bot.admission import UserLimits
from bot.backends.base import CutoutBackend
from bot.backends.picwish import PicWishClient
from bot.budget import QpsBudget, RedisBudget, make_budget
from bot.config import Settings
from bot.logsetup import redact_secrets
from bot.observability import Health, Metrics
from bot.pipeline.imagework import start_threads
from bot.pipeline.maker import RetryPolicy
from bot.pipeline.service import CutoutService
from bot.storage import Store, cache, usage
from bot.storage.disk import DiskSpace
from bot.telegram_limits import TelegramRateLimiter
from bot.telegram_request import TelegramRequest
from bot.web import WebServer

log = logging.getLogger(__name__)

# Telegram calls in flight at once (answers, statuses, downloads); as many stay open between them.
TELEGRAM_CONNECTIONS = 64


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    """Build the bot: Telegram client, handlers, and the cutout machinery opened in post_init."""
    # Whoever runs the app (python -m bot, a test, a webhook host), log records carry no secret.
    redact_secrets(settings.secrets)
    metrics = Metrics()  # this application's own registry: several apps in one process count apart
    app = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .base_url(f"{settings.telegram_api_url}/bot")
        .base_file_url(f"{settings.telegram_api_url}/file/bot")
        .rate_limiter(TelegramRateLimiter(max_rate=settings.telegram_max_rate, max_retries=5, metrics=metrics))
        .context_types(ContextTypes(context=handlers.BotContext))
        .concurrent_updates(64)
        .request(TelegramRequest(connections=TELEGRAM_CONNECTIONS))
        .get_updates_request(TelegramRequest(connections=1, read_timeout=35))
        .post_init(_open)
        .post_stop(_stop)
        .post_shutdown(_close)
        .build()
    )
    app.bot_data.update(settings=settings, metrics=metrics)
    handlers.register(app)
    return app


async def _open(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    settings: Settings = app.bot_data["settings"]
    metrics: Metrics = app.bot_data["metrics"]
    start_threads()  # while idle: a thread started under load holds the loop until it runs
    store = Store(settings.data_dir / "bot.sqlite3")
    budget: QpsBudget | None = None
    fallback: CutoutBackend | None = None
    if settings.cutout_backend == "local":
        backend: CutoutBackend = local_engine(settings.local_concurrency)
        # One job per engine slot: the others wait in the fair line, where their position is shown.
        workers = settings.local_concurrency
    else:
        # Processes sharing a key share a budget (in Redis, under a hash of the key, never the key).
        budget = make_budget(settings.picwish_qps, settings.redis_url, settings.picwish_api_key, metrics=metrics)
        if isinstance(budget, RedisBudget):  # unreachable: one line naming it, and photos wait for it
            await budget.check()
        # Enough jobs in flight to keep the budget busy while each waits on the API (a sync answer takes
        # a second or more, a polled task 1.5 s more per poll) and on Telegram. Idle workers cost nothing:
        # a job leaves the fair queue only when an API start is free for it.
        workers = max(8, math.ceil(settings.picwish_qps * 5))
        backend = PicWishClient(
            settings.picwish_api_key,
            base_url=settings.picwish_api_url,
            budget=budget,
            metrics=metrics,
            connections=workers,
        )
        if settings.fallback == "local":
            fallback = local_engine(settings.local_concurrency)
    service = CutoutService(
        store=store,
        backend=backend,
        fallback=fallback,
        data_dir=settings.data_dir,
        limits=UserLimits(settings.user_max_pending, settings.user_per_minute),
        workers=workers,
        budget=budget,  # the worker that takes a job has its first API start already
        # A short budget gets proportionally shorter first waits, so it still holds several tries.
        retry=RetryPolicy(
            total=settings.picwish_retry_seconds, base=min(1.0, settings.picwish_retry_seconds / 10)
        ),
        metrics=metrics,
        disk=DiskSpace(settings.data_dir, settings.disk_min_free_mb << 20),
        outage_hold=settings.outage_hold_minutes * 60,
        outage_probe=settings.outage_probe_seconds,
    )
    app.bot_data.update(
        store=store, budget=budget, backends=[b for b in (backend, fallback) if b], service=service
    )
    # /healthz, /metrics and, in webhook mode, updates. Before the workers start: a port in use stops
    # start-up with nothing left running.
    if settings.webhook_url or settings.metrics_port:
        health = Health(running=lambda: app.running, store=store, redis_url=settings.redis_url)
        web = WebServer(app, settings, metrics, health)
        await web.start()
        app.bot_data["web"] = web
    await service.start(handlers.TelegramMessenger(app.bot, settings))
    if app.job_queue is not None:  # bounded tables: old answered jobs go, at start-up and every 6 hours
        app.job_queue.run_repeating(_housekeeping, interval=6 * 3600, first=1.0, name="housekeeping")
    await handlers.publish_menu(app.bot, store, settings.admin_user_ids)
    # Everything built so far lives as long as the bot: leave it out of the garbage collector's full
    # passes, which otherwise stall the event loop for tens of milliseconds under load.
    gc.collect()
    gc.freeze()
    engine = "the offline engine" if budget is None else f"PicWish at QPS {settings.picwish_qps:g}"
    log.info(
        "bot @%s is up (%s, %d workers): https://t.me/%s", app.bot.username, engine, workers, app.bot.username
    )


async def _stop(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    service: CutoutService | None = app.bot_data.get("service")
    if service is not None:
        # Jobs in flight (a cutout already requested, so already paid for) finish and are stored.
        await service.stop(app.bot_data["settings"].stop_grace_seconds)


async def _close(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    if (web := app.bot_data.pop("web", None)) is not None:
        await web.stop()
    for backend in app.bot_data.pop("backends", []):
        await backend.aclose()
    if (budget := app.bot_data.pop("budget", None)) is not None:
        await budget.close()
    if (store := app.bot_data.pop("store", None)) is not None:
        store.close()


def local_engine(concurrency: int) -> CutoutBackend:
    """The offline engine; :class:`bot.errors.EngineMissing` (one line) when its packages are not installed."""
    from bot.backends.local import LocalEngine, check_installed

    check_installed()
    engine: CutoutBackend = LocalEngine(concurrency=concurrency)
    return engine


async def _housekeeping(context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Prune answered jobs older than JOB_RETENTION_DAYS (open jobs are never pruned) and /stats counts
    older than a month, and keep the cutout cache under CACHE_MAX_MB, least recently used first (off the
    event loop)."""
    settings: Settings = context.bot_data["settings"]
    store: Store = context.bot_data["store"]
    pruned = store.prune_jobs(time.time() - settings.job_retention_days * 86400)
    if pruned:
        log.info("pruned %d answered job(s) older than %g days", pruned, settings.job_retention_days)
    usage.prune_counts(store)
    await asyncio.to_thread(cache.evict, settings.data_dir, settings.cache_max_mb << 20)
