"""Settings from the environment (and a ``.env`` file through python-dotenv).

The ``.env`` read is the file ``ENV_FILE`` names (empty or ``none``: no file), else ``.env`` in the
working directory, else ``.env`` in the project folder, so a Procfile host or systemd may start the
bot anywhere. Values already in the environment win over the file's.

The variable names are a contract: deployment docs and outside tests rely on them. A missing or
malformed value raises :class:`ConfigError` with one line that names the variable and the fix;
``python -m bot`` prints it and exits with code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv

_TOKEN_RE = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{20,}$")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _project_dir() -> Path | None:
    folder = Path(__file__).resolve().parent.parent
    return folder if (folder / "pyproject.toml").is_file() else None


#: The project folder (the one holding pyproject.toml, the parent of this package), whose ``.env`` is
#: read when the working directory has none; None when the package is installed elsewhere.
PROJECT_DIR: Path | None = _project_dir()


class ConfigError(Exception):
    """A setting is missing or malformed. The message is one line meant for the operator."""


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str = field(repr=False)
    picwish_api_key: str = field(repr=False)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_max_rate: float = 30.0
    picwish_api_url: str = "https://techhk.aoscdn.com"
    picwish_qps: float = 2.0
    picwish_retry_seconds: float = 90.0
    outage_hold_minutes: float = 60.0
    outage_probe_seconds: float = 30.0
    data_dir: Path = Path("./data")
    log_level: str = "INFO"
    user_max_pending: int = 5
    user_per_minute: int = 10
    redis_url: str | None = field(default=None, repr=False)
    admin_user_ids: frozenset[int] = frozenset()
    allowed_user_ids: frozenset[int] = frozenset()
    allowed_chat_ids: frozenset[int] = frozenset()
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8080
    metrics_port: int | None = None  # a port for /metrics and /healthz (webhook mode serves them anyway)
    metrics_listen: str = "0.0.0.0"
    cutout_backend: str = "picwish"  # "picwish" or "local" (CUTOUT_BACKEND=auto is resolved at load)
    fallback: str | None = None  # "local": answer with the offline engine while PicWish fails for good
    local_concurrency: int = 1
    log_format: str = "plain"  # or "json": one object a line, for log collectors
    job_retention_days: float = 30.0
    stop_grace_seconds: float = 30.0
    cache_max_mb: int = 2048
    disk_min_free_mb: int = 200

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every value that must never reach a log line, a message or an exception text."""
        values = [self.telegram_bot_token, self.picwish_api_key, self.webhook_secret or ""]
        if self.redis_url and (password := urlsplit(self.redis_url).password):
            values.append(password)
        return tuple(v for v in values if v)


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: bool = True, telegram: bool = True
) -> Settings:
    """Read and check every setting. ``environ`` defaults to ``os.environ`` after loading the ``.env``
    file :func:`dotenv_path` finds. ``telegram=False`` (the command line) needs no bot token."""
    if environ is None:
        if dotenv and (path := dotenv_path(os.environ)) is not None:
            load_dotenv(path, override=False)
        environ = os.environ
    env = {k: v.strip() for k, v in environ.items()}

    token = _required(env, "TELEGRAM_BOT_TOKEN", "get one from @BotFather and put it in .env") if telegram else ""
    if telegram and not _TOKEN_RE.match(token):
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN does not look like a bot token (expected 123456:ABC-...); "
            "copy it again from @BotFather"
        )
    backend = (env.get("CUTOUT_BACKEND") or "auto").lower()
    if backend not in ("auto", "picwish", "local"):
        raise ConfigError(f"CUTOUT_BACKEND must be auto, picwish or local; got {backend!r}")
    api_key = env.get("PICWISH_API_KEY", "")
    if backend == "auto":
        backend = "picwish" if api_key else "local"  # no key: the offline engine, nothing to pay
    if backend == "picwish":
        api_key = _required(env, "PICWISH_API_KEY", "get one at https://picwish.com/my-account?subRoute=api-key")
    if any(c.isspace() for c in api_key):
        raise ConfigError("PICWISH_API_KEY contains whitespace; paste the key exactly as PicWish shows it")
    fallback = (env.get("FALLBACK") or "none").lower()
    if fallback not in ("none", "local"):
        raise ConfigError(f"FALLBACK must be none or local; got {fallback!r}")

    log_level = env.get("LOG_LEVEL", "") or "INFO"
    if log_level.upper() not in _LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(_LEVELS)}; got {log_level!r}")

    return Settings(
        telegram_bot_token=token,
        picwish_api_key=api_key,
        telegram_api_url=_url(env, "TELEGRAM_API_URL", "https://api.telegram.org"),
        telegram_max_rate=_number(env, "TELEGRAM_MAX_RATE", 30.0, minimum=1, maximum=1000),
        picwish_api_url=_url(env, "PICWISH_API_URL", "https://techhk.aoscdn.com"),
        picwish_qps=_number(env, "PICWISH_QPS", 2.0, minimum=0.1, maximum=100),
        picwish_retry_seconds=_number(env, "PICWISH_RETRY_SECONDS", 90.0, minimum=0, maximum=3600),
        outage_hold_minutes=_number(env, "OUTAGE_HOLD_MINUTES", 60.0, minimum=0, maximum=7 * 24 * 60),
        outage_probe_seconds=_number(env, "OUTAGE_PROBE_SECONDS", 30.0, minimum=1, maximum=3600),
        data_dir=Path(env.get("DATA_DIR") or "./data"),
        log_level=log_level.upper(),
        user_max_pending=int(_number(env, "USER_MAX_PENDING", 5, minimum=1, maximum=1000, integer=True)),
        user_per_minute=int(_number(env, "USER_PER_MINUTE", 10, minimum=1, maximum=10000, integer=True)),
        redis_url=_redis_url(env),
        admin_user_ids=_ids(env, "ADMIN_USER_IDS"),
        allowed_user_ids=_ids(env, "ALLOWED_USER_IDS"),
        allowed_chat_ids=_ids(env, "ALLOWED_CHAT_IDS"),
        cutout_backend=backend,
        fallback="local" if fallback == "local" and backend == "picwish" else None,
        local_concurrency=int(_number(env, "LOCAL_CONCURRENCY", 1, minimum=1, maximum=16, integer=True)),
        log_format=_choice(env, "LOG_FORMAT", ("plain", "json")),
        # At least a day: a job row is what recognises an update Telegram delivers again.
        job_retention_days=_number(env, "JOB_RETENTION_DAYS", 30.0, minimum=1, maximum=36500),
        stop_grace_seconds=_number(env, "STOP_GRACE_SECONDS", 30.0, minimum=1, maximum=600),
        cache_max_mb=int(_number(env, "CACHE_MAX_MB", 2048, minimum=1, maximum=10**7, integer=True)),
        disk_min_free_mb=int(_number(env, "DISK_MIN_FREE_MB", 200, minimum=0, maximum=10**7, integer=True)),
        metrics_port=_port(env, "METRICS_PORT"),
        metrics_listen=env.get("METRICS_LISTEN") or "0.0.0.0",
        **_webhook(env),
    )


def dotenv_path(env: Mapping[str, str]) -> Path | None:
    """The ``.env`` file to read: ENV_FILE's (from the real environment; empty or ``none``: no file),
    else ``.env`` in the working directory, else in :data:`PROJECT_DIR`; None when there is none."""
    named = env.get("ENV_FILE")
    if named is not None:
        named = named.strip()
        if named.lower() in ("", "none"):
            return None
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"ENV_FILE is {named!r}, but there is no such file; "
                "point it at your .env file, or set ENV_FILE to none to read no file"
            )
        return path
    for folder in (Path.cwd(), PROJECT_DIR):
        if folder is not None and (folder / ".env").is_file():
            return folder / ".env"
    return None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset)."""
    value = (env.get(name) or choices[0]).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be {' or '.join(choices)}; got {value!r}")
    return value


def _required(env: Mapping[str, str], name: str, how: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set: {how} (see .env.example)")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL such as {default}; got {value!r}")
    return value


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} between {minimum:g} and {maximum:g}; got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}; got {raw!r}")
    return value


def _ids(env: Mapping[str, str], name: str) -> frozenset[int]:
    raw = env.get(name, "")
    ids: set[int] = set()
    for part in filter(None, (p.strip() for p in raw.replace(";", ",").split(","))):
        try:
            ids.add(int(part))
        except ValueError:
            raise ConfigError(
                f"{name} must be a comma-separated list of numeric Telegram ids; {part!r} is not one"
            ) from None
    return frozenset(ids)


def _redis_url(env: Mapping[str, str]) -> str | None:
    value = env.get("REDIS_URL", "")
    if not value:
        return None
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        # Never echo the value: it may hold a password.
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return value


_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


def _webhook(env: Mapping[str, str]) -> dict[str, Any]:
    """Webhook mode is on when WEBHOOK_URL is set; it then needs a secret Telegram echoes back."""
    url = env.get("WEBHOOK_URL", "")
    if not url:
        return {}
    url = _url(env, "WEBHOOK_URL", "https://bot.example.com/telegram")
    secret = env.get("WEBHOOK_SECRET", "")
    if not _SECRET_TOKEN_RE.match(secret):
        raise ConfigError(
            "WEBHOOK_SECRET must be 16-256 letters, digits, _ or - when WEBHOOK_URL is set; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return {
        "webhook_url": url,
        "webhook_secret": secret,
        "webhook_listen": env.get("WEBHOOK_LISTEN") or "0.0.0.0",
        # Platforms that route HTTP to the app (Heroku, Render, Railway...) say where in PORT.
        "webhook_port": _port(env, "WEBHOOK_PORT") or _port(env, "PORT") or 8080,
    }


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port, or None when unset."""
    if not env.get(name, ""):
        return None
    return int(_number(env, name, 0, minimum=1, maximum=65535, integer=True))
