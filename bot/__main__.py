"""``python -m bot``: read the settings, then poll Telegram until stopped (SIGINT or SIGTERM)."""

from __future__ import annotations

import sys

from telegram import Update

from bot.config import ConfigError, load_settings
from bot.logsetup import configure_logging


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets)

    from bot.app import build_application  # after logging, so import-time messages are redacted too

    app = build_application(settings)
    app.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
