"""The PicWish QPS budget, shared by every request we send (task creations and polls alike).

``acquire()`` returns when the caller may start one request; no window ever holds more than
``qps`` starts. ``pause()`` is for a 429: someone else spends the same key, so nobody starts
anything until the pause is over. ``LocalBudget`` serves one process; ``RedisBudget`` shares
the budget between every process (and host) that talks to the same Redis.

A ``RedisBudget`` whose Redis does not answer never fails its callers: they wait in line (one
WARNING when Redis goes, one INFO line when it is back) and the shared budget resumes by itself.
There is no local fallback: with several processes on one API key, budgets counted apart could
together exceed the key's QPS.

``reserve()`` is for a scheduler that picks the job only once a start is free (so the fair queue,
not the budget's waiting line, decides who goes next): it waits like ``acquire()``, and the task
run in ``handed_over(reservation)`` spends that start on its first ``acquire()``, re-stamped to the
moment the request really goes out.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.observability import Metrics

log = logging.getLogger(__name__)

# The server counts arrivals in 1.0 s windows by its own clock; our "start" is taken a little
# earlier, and request i may be delayed (network, event loop) more than request i+qps. 40 ms of
# slack absorbs that jitter while keeping 2/(1 + 0.04) = 1.92 >= 0.95 x 2 requests per second.
SAFETY_MARGIN = 0.04
DEFAULT_WINDOW = 1.0 + SAFETY_MARGIN
MIN_QPS = 0.1
# A RedisBudget waiter re-asks Redis at least this often, so it notices pauses set meanwhile.
MAX_REDIS_SLEEP = 1.0
# A Redis that does not connect or answer within this long counts as unreachable (a blackholed
# host must not hold a request forever).
REDIS_TIMEOUT = 2.0
# While Redis is unreachable, it is asked again after 0.25 s, then twice as long each time, up to 5 s.
REDIS_RETRY_FIRST = 0.25
REDIS_RETRY_MAX = 5.0
# What an unreachable Redis raises: redis-py wraps socket errors in its ConnectionError (of which
# AuthenticationError and BusyLoadingError, a restarted Redis loading its data, are kinds) and
# TimeoutError; a raw OSError (refused, reset) or the builtin TimeoutError are caught too.
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(eq=False)
class Reservation:
    """A start granted before its request exists; spent by the first ``acquire()`` it is handed to."""

    budget: QpsBudget
    member: str
    spent: bool = False


# The reservation the current task's next acquire() spends (set by handed_over()).
_HANDED_OVER: ContextVar[Reservation | None] = ContextVar("qps_reservation", default=None)


def handed_over(reservation: Reservation) -> Context:
    """A copy of the current context whose first ``acquire()`` spends ``reservation``.

    Run the task that sends the request in it: ``asyncio.create_task(coro, context=...)``.
    """
    context = copy_context()
    context.run(_HANDED_OVER.set, reservation)
    return context


def _take_handed_over(budget: QpsBudget) -> Reservation | None:
    held = _HANDED_OVER.get()
    if held is None or held.spent or held.budget is not budget:
        return None
    held.spent = True  # only the first request of the task; a retry or a poll waits its turn
    return held


class QpsBudget(Protocol):
    async def acquire(self) -> None:
        """Return when this caller may start one request now."""

    async def reserve(self) -> Reservation:
        """Wait as ``acquire()`` does, for a request that is not built yet (see ``handed_over``)."""

    async def pause(self, seconds: float) -> None:
        """A 429 came back: nobody starts a request for ``seconds`` from now."""

    async def close(self) -> None:
        """Release connections; the budget must not be used afterwards."""


def _shape(qps: float, window: float) -> tuple[int, float]:
    """``qps`` starts per ``window`` as (burst, span): at most ``burst`` starts in any ``span`` seconds.

    An integer qps gives (qps, window); 0.5 gives (1, 2 x window): one request every two seconds.
    """
    if not math.isfinite(qps) or qps < MIN_QPS:
        raise ValueError(f"qps must be at least {MIN_QPS}, got {qps!r}")
    if not math.isfinite(window) or window <= 0:
        raise ValueError(f"window must be positive, got {window!r}")
    burst = max(1, math.floor(qps))
    return burst, window * burst / qps


class LocalBudget:
    """The budget of one process: a sliding log of the last ``burst`` start times.

    Waiters are served first come, first served (``asyncio.Lock`` hands over in FIFO order);
    only the head of the line sleeps, and only until the oldest start leaves the window.
    A reserved start is re-stamped when it is spent, which is safe while it is still in the
    window: every start granted since then counted it.
    """

    def __init__(
        self,
        qps: float,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        self.qps = qps
        self._metrics = metrics or Metrics()
        self._burst, self._span = _shape(qps, window)
        self._clock = clock
        self._sleep = sleep
        self._starts: dict[str, float] = {}  # the starts still in the window, by member
        self._members = itertools.count()
        self._paused_until = -math.inf
        self._line = asyncio.Lock()

    async def acquire(self) -> None:
        held = _take_handed_over(self)
        if held is not None and self._restamp(held.member, self._clock()):
            return
        await self._grant(str(next(self._members)))

    async def reserve(self) -> Reservation:
        member = str(next(self._members))
        await self._grant(member)
        return Reservation(self, member)

    async def _grant(self, member: str) -> None:
        async with self._line:
            while True:
                wait = self._wait(self._clock(), member)
                if wait <= 0:
                    self._metrics.budget_starts.inc()
                    return
                await self._sleep(wait)

    def _wait(self, now: float, member: str) -> float:
        """Seconds until a start is allowed, or 0 after recording ``member``'s start at ``now``."""
        for old in [m for m, at in self._starts.items() if at <= now - self._span]:
            del self._starts[old]
        wait = self._paused_until - now
        if len(self._starts) >= self._burst:
            wait = max(wait, min(self._starts.values()) + self._span - now)
        if wait > 0:
            return wait
        self._starts[member] = now
        return 0.0

    def _restamp(self, member: str, now: float) -> bool:
        """Move a reserved start to ``now``; False if it left the window or a pause began meanwhile."""
        at = self._starts.get(member)
        if at is None or at <= now - self._span or now < self._paused_until:
            return False
        self._starts[member] = now
        return True

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def close(self) -> None:
        return None


# KEYS[1]: sorted set of start times (µs, Redis clock); KEYS[2]: "paused until" (µs, Redis clock).
# ARGV: burst, span in µs, a member unique to this start. Returns 0 (granted) or the ms to wait.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local burst = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  wait = paused - now
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
if redis.call('ZCARD', KEYS[1]) >= burst then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = math.max(wait, tonumber(oldest[2]) + span - now)
end
if wait > 0 then
  return math.max(1, math.ceil(wait / 1000))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(span / 1000) + 1000)
return 0
"""

# KEYS as for _ACQUIRE_LUA. ARGV: span in µs, the member of a reserved start. Moves that start to now
# and returns 1; returns 0 if it has left the window or a pause is on (the caller then acquires).
_RESTAMP_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local span = tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return 0
end
local at = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not at or tonumber(at) <= now - span then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
return 1
"""

# KEYS[1]: "paused until" (µs, Redis clock). ARGV[1]: the pause in µs. Only ever extends a pause.
_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + pause > current then
  redis.call('SET', KEYS[1], now + pause, 'PX', math.ceil(pause / 1000) + 1000)
end
return 0
"""


class RedisBudget:
    """The budget shared by every process using the same Redis and ``key``.

    A Lua script decides atomically on the Redis server's clock, so processes on hosts whose
    clocks disagree still share one window. ``key`` must not contain the API key itself
    (``make_budget`` derives it from a hash).
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        qps: float,
        *,
        window: float = DEFAULT_WINDOW,
        metrics: Metrics | None = None,
    ) -> None:
        self.qps = qps
        self._metrics = metrics or Metrics()
        burst, span = _shape(qps, window)
        self._burst = burst
        self._span_us = math.ceil(span * 1_000_000)
        self._starts_key = key
        self._paused_key = f"{key}:paused"
        self.url = redacted_url(redis_url)  # for log lines: never the password
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            # One immediate retry on a fresh connection absorbs a pooled one a restarted Redis closed;
            # anything longer is waited out by _grant, with its own backoff.
            retry=Retry(NoBackoff(), 1),
        )
        self._acquire_script = self._redis.register_script(_ACQUIRE_LUA)
        self._restamp_script = self._redis.register_script(_RESTAMP_LUA)
        self._pause_script = self._redis.register_script(_PAUSE_LUA)
        # Waiters of this process ask Redis one at a time, in arrival order.
        self._line = asyncio.Lock()
        self.unreachable = False  # Redis did not answer the last time it was asked

    async def check(self) -> bool:
        """Ask Redis once (at start-up): False, after one log line, when it does not answer.

        Nothing fails meanwhile: requests wait for Redis, and the budget resumes once it answers.
        """
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                await self._redis.ping()
        except REDIS_UNREACHABLE as exc:
            self.unreachable = True
            log.warning(
                "Redis at %s is unreachable (%s): photos wait in line until it answers",
                self.url,
                type(exc).__name__,
            )
            return False
        self._answered()
        return True

    async def acquire(self) -> None:
        held = _take_handed_over(self)
        if held is not None and await self._restamp(held.member):
            return
        await self._grant(uuid.uuid4().hex)

    async def reserve(self) -> Reservation:
        member = uuid.uuid4().hex
        await self._grant(member)
        return Reservation(self, member)

    async def _restamp(self, member: str) -> bool:
        """Spend a reserved start now; False (the caller then waits for a new one) if Redis says no or
        does not answer."""
        keys = [self._starts_key, self._paused_key]
        try:
            restamped = int(await self._restamp_script(keys=keys, args=[self._span_us, member])) == 1
        except REDIS_UNREACHABLE as exc:
            self._went_unreachable(exc)
            return False
        self._answered()
        return restamped

    async def _grant(self, member: str) -> None:
        async with self._line:
            retry = REDIS_RETRY_FIRST
            while True:
                try:
                    wait_ms = int(
                        await self._acquire_script(
                            keys=[self._starts_key, self._paused_key], args=[self._burst, self._span_us, member]
                        )
                    )
                except REDIS_UNREACHABLE as exc:
                    # Wait for Redis rather than count alone: other processes may spend the same key.
                    self._went_unreachable(exc)
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, REDIS_RETRY_MAX)
                    continue
                self._answered()
                retry = REDIS_RETRY_FIRST
                if wait_ms <= 0:
                    self._metrics.budget_starts.inc()
                    return
                await asyncio.sleep(min(wait_ms / 1000, MAX_REDIS_SLEEP))

    async def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            await self._pause_script(keys=[self._paused_key], args=[math.ceil(seconds * 1_000_000)])
        except REDIS_UNREACHABLE as exc:  # the caller's retry meets the 429 again if it still holds
            log.debug("could not pause the shared budget: Redis is unreachable (%s)", type(exc).__name__)

    def _went_unreachable(self, exc: BaseException) -> None:
        if not self.unreachable:
            self.unreachable = True
            log.warning(
                "Redis at %s is unreachable (%s): API requests wait until it answers", self.url, type(exc).__name__
            )

    def _answered(self) -> None:
        if self.unreachable:
            self.unreachable = False
            log.info("Redis answers again: API requests go on under the shared budget")

    async def close(self) -> None:
        await self._redis.aclose()


def redacted_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***`` (``redis://:***@host:6379/0``)."""
    netloc = urlsplit(url).netloc
    if ":" in (userinfo := netloc.rpartition("@")[0]):
        url = url.replace(netloc, f"{userinfo.partition(':')[0]}:***@{netloc.rpartition('@')[2]}", 1)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)  # unix:///path?password=...


def budget_key(api_key: str) -> str:
    """The Redis key for an API key's budget: a hash, so the key never appears in Redis."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"cutout:qps:{digest}"


def make_budget(
    qps: float, redis_url: str | None, api_key: str, *, metrics: Metrics | None = None
) -> QpsBudget:
    """A Redis-shared budget when ``redis_url`` is set, else one for this process only."""
    if redis_url:
        return RedisBudget(redis_url, budget_key(api_key), qps, metrics=metrics)
    return LocalBudget(qps, metrics=metrics)
