"""Logging with secrets redacted from every record, whoever logs it and wherever it goes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

REDACTED = "[REDACTED]"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor:
    """Replaces each secret with a marker in the final text of every log record.

    It wraps the log record factory, so every record from every library (httpx logs request URLs,
    which contain the bot token) is clean before any handler, test capture included, sees it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets: list[str] = []
        self.add(secrets)
        self._previous = logging.getLogRecordFactory()

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these too (longest first, so a secret containing another is replaced whole)."""
        wanted = [s for s in secrets if s and len(s) >= 4]
        # A URL may carry a secret percent-encoded (the bot token's colon becomes %3A).
        known = {*self.secrets, *wanted, *(quote(s, safe="") for s in wanted)}
        self.secrets = sorted(known, key=len, reverse=True)

    @property
    def installed(self) -> bool:
        return logging.getLogRecordFactory() == self._factory

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _factory(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return record

    def install(self) -> None:
        logging.setLogRecordFactory(self._factory)

    def uninstall(self) -> None:
        if logging.getLogRecordFactory() == self._factory:
            logging.setLogRecordFactory(self._previous)


_redactor: Redactor | None = None


def redact_secrets(secrets: Iterable[str]) -> Redactor:
    """Redact these secrets from every log record from now on; one factory per process, however often called."""
    global _redactor
    if _redactor is not None and _redactor.installed:
        _redactor.add(secrets)
    else:
        _redactor = Redactor(secrets)
        _redactor.install()
    return _redactor


def configure_logging(level: int | str, secrets: Iterable[str]) -> Redactor:
    """Log to stderr with secrets redacted; quiet the libraries that are chatty at INFO."""
    redactor = redact_secrets(secrets)
    root = logging.getLogger()
    if not any(getattr(h, "_cutout_bot", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._cutout_bot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO, and Telegram URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO)
    return redactor
