"""The bot's HTTP server (aiohttp): ``/healthz``, ``/metrics`` and, in webhook mode, the webhook.

Started in the application's post_init and stopped in its post_shutdown (``bot/app.py``). In webhook
mode :func:`serve_webhook` runs the application the way python-telegram-bot documents for a custom
web server (its ``customwebhookbot`` examples): ``initialize()``/``start()``, and every update Telegram
posts goes on ``app.update_queue``.

The webhook path is the only one reachable from the internet that takes a body, so it refuses before
it reads: a wrong or missing secret header gets 403 and a declared body over 1 MB gets 413, both
without reading a byte of the body; a read is capped at 1 MB however the body is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bot.config import ConfigError, Settings
from bot.observability import METRICS_CONTENT_TYPE, Health, Metrics, metrics_text

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Telegram's updates are a few KB; anything this large is not one.
MAX_UPDATE_BYTES = 1024 * 1024
#: Seconds requests in flight get to finish when the server stops.
SHUTDOWN_TIMEOUT = 1.0

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class ListenError(ConfigError):
    """The server cannot listen on its address (taken, or not this host's). One line for the operator."""


class WebServer:
    """One aiohttp server on every address the settings ask for, serving the same routes."""

    def __init__(self, app: AnyApplication, settings: Settings, metrics: Metrics, health: Health) -> None:
        self._app = app
        self._metrics = metrics
        self._health = health
        self._secret = (settings.webhook_secret or "").encode()
        self._accepting = True
        self._webhook_note = "the webhook, " if settings.webhook_url else ""
        # (host, port, the setting that asked for it): the webhook's, and METRICS_PORT's unless the same.
        self.addresses: list[tuple[str, int, str]] = []
        if settings.webhook_url:
            self.addresses.append((settings.webhook_listen, settings.webhook_port, "WEBHOOK_PORT"))
        if settings.metrics_port and not (
            settings.webhook_url and settings.metrics_port == settings.webhook_port
        ):
            self.addresses.append((settings.metrics_listen, settings.metrics_port, "METRICS_PORT"))

        server = web.Application(client_max_size=MAX_UPDATE_BYTES)  # a cap on every body read
        server.router.add_get("/healthz", self._healthz)
        server.router.add_get("/metrics", self._metrics_page)
        if settings.webhook_url:
            server.router.add_post(webhook_path(settings.webhook_url), self._webhook)
        # lingering_time=0: a refused request's unread body is not drained after the answer, the
        # connection is closed instead. access_log=None: an update a second needs no log line each.
        self._runner = web.AppRunner(
            server, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT, lingering_time=0
        )

    async def start(self) -> None:
        await self._runner.setup()
        for host, port, setting in self.addresses:
            try:
                await web.TCPSite(self._runner, host, port).start()
            except OSError as exc:
                await self.stop()
                raise ListenError(
                    f"cannot listen on {host}:{port} ({os.strerror(exc.errno) if exc.errno else exc}); "
                    f"set {setting} to a free port"
                ) from None
            log.info("serving %s/healthz and /metrics on %s:%d", self._webhook_note, host, port)

    def stop_accepting_updates(self) -> None:
        """From now on the webhook answers 503: Telegram keeps the update for the next start."""
        self._accepting = False

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._health.close()

    # --- routes ---------------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        """200 ``ok``, or 503 with one word for what is wrong."""
        problem = await self._health.problem()
        return web.Response(status=503 if problem else 200, text=problem or "ok")

    async def _metrics_page(self, request: web.Request) -> web.Response:
        response = web.Response(body=metrics_text(self._metrics.registry))
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response

    async def _webhook(self, request: web.Request) -> web.Response:
        """An update from Telegram: checked (secret, then size) before a byte of the body is read."""
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._secret):
            return self._answer(403)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return self._answer(413)
        if not self._accepting:
            return self._answer(503)
        try:
            data = await request.json()  # aiohttp stops reading past client_max_size
        except web.HTTPRequestEntityTooLarge:
            return self._answer(413)
        except ValueError:
            return self._answer(400)
        if not isinstance(data, dict):
            return self._answer(400)
        try:
            update = Update.de_json(data, self._app.bot)
        except Exception as exc:  # a malformed update: Telegram would not send it again any better
            log.warning("webhook: not an update: %s", type(exc).__name__)
            return self._answer(400)
        self._app.update_queue.put_nowait(update)  # handled by the application, not on this request
        return self._answer(200)

    def _answer(self, status: int) -> web.Response:
        self._metrics.webhook_requests.labels(str(status)).inc()
        return web.Response(status=status)


def webhook_path(webhook_url: str) -> str:
    """The path Telegram posts to: WEBHOOK_URL's, or ``/``."""
    return urlsplit(webhook_url).path or "/"


async def serve_webhook(app: AnyApplication, settings: Settings) -> None:
    """Run the application in webhook mode until SIGINT or SIGTERM, then stop it cleanly.

    The same life cycle as ``Application.run_webhook``, with our server in place of PTB's: post_init
    (which opens the store and starts the web server), ``start()``, ``set_webhook``; at a signal, the
    webhook refuses new updates, then ``stop()``, post_stop (jobs in flight get their grace),
    ``shutdown()``, post_shutdown (which stops the web server).
    """
    assert settings.webhook_url
    stop_signal = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_signal.set)
    try:
        await app.initialize()
        try:
            if app.post_init:
                await app.post_init(app)
            await app.start()
            try:
                await app.bot.set_webhook(
                    settings.webhook_url,
                    secret_token=settings.webhook_secret,
                    allowed_updates=Update.ALL_TYPES,
                )
                log.info("webhook set; waiting for updates")
                await stop_signal.wait()
                log.info("stopping")
            finally:
                server: WebServer | None = app.bot_data.get("web")
                if server is not None:
                    server.stop_accepting_updates()
                await app.stop()
                if app.post_stop:
                    await app.post_stop(app)
        finally:
            await app.shutdown()
            if app.post_shutdown:
                await app.post_shutdown(app)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
