"""Logging with secrets redacted from every record, whoever logs it and wherever it goes; plain lines or
JSON (``LOG_FORMAT``), each line of one photo's work carrying its job id."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from pythonjsonlogger.json import JsonFormatter

REDACTED = "[REDACTED]"
_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: The job whose work is running in this task: every log line it writes carries the id.
JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag the log lines written inside (this task and the tasks it starts) with ``job_id``."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)


class _JobTag(logging.Filter):
    """Adds the running job's id to every record: ``job_id`` for JSON, ``job`` (`` [job 1a2b3c4d]``) for
    plain lines."""

    def __init__(self, json: bool) -> None:
        super().__init__()
        self._json = json

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = JOB_ID.get()
        if self._json:
            record.job_id = job_id
        else:
            record.job = f" [job {job_id[:8]}]" if job_id else ""
        return True


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


def configure_logging(level: int | str, secrets: Iterable[str], fmt: str = "plain") -> Redactor:
    """Log to stderr (plain lines, or one JSON object a line) with secrets redacted; quiet the libraries
    that are chatty at INFO."""
    redactor = redact_secrets(secrets)
    root = logging.getLogger()
    if not any(getattr(h, "_cutout_bot", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_JobTag(json=fmt == "json"))
        if fmt == "json":
            names = {"asctime": "time", "levelname": "level", "name": "logger"}
            handler.setFormatter(JsonFormatter(_JSON_FIELDS, rename_fields=names))
        else:
            handler.setFormatter(logging.Formatter(_FORMAT))
        handler._cutout_bot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings too go through the redacting records, in the same format
    # httpx logs every request URL at INFO, and Telegram URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO)
    return redactor
