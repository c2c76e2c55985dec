"""``python -m bot``: read the settings, then poll Telegram (or serve a webhook) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from telegram import Update
from telegram.error import InvalidToken

from bot.config import ConfigError, Settings, load_settings
from bot.errors import EngineMissing
from bot.logsetup import configure_logging
from bot.storage import StoreUnavailable
from bot.storage.migrations import SchemaTooNew


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets, settings.log_format)

    try:
        return _serve(settings)
    except InvalidToken:  # its text quotes the token: say it in our own words
        print(
            "configuration error: Telegram rejected TELEGRAM_BOT_TOKEN; copy it again from @BotFather",
            file=sys.stderr,
        )
        return 2
    except ConfigError as exc:  # a port the web server cannot listen on
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except EngineMissing as exc:  # CUTOUT_BACKEND=local (or no key) without the engine's packages
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except SchemaTooNew as exc:
        print(
            f"data error: {settings.data_dir / 'bot.sqlite3'} was made by a newer release ({exc}); "
            "run that release, or point DATA_DIR at another folder",
            file=sys.stderr,
        )
        return 2
    except StoreUnavailable as exc:  # DATA_DIR not writable, the database in use by another bot, or damaged
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        # Logged rather than left to the interpreter, so the traceback goes through the redacting log records.
        logging.getLogger("bot").exception("the bot stopped on an unexpected error")
        return 1


def _serve(settings: Settings) -> int:
    from bot.app import build_application  # after logging, so import-time messages are redacted too
    from bot.web import serve_webhook

    app = build_application(settings)
    if settings.webhook_url:
        # Telegram posts updates to WEBHOOK_URL, served by bot/web.py's server with /healthz and /metrics.
        asyncio.run(serve_webhook(app, settings))
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
