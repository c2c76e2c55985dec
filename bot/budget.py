"""The PicWish QPS budget, shared by every request we send (task creations and polls alike).

An API request goes through it in two steps:

- ``reserve()`` books the request's start and returns once that start is due. Bookings are
  ``window / qps`` apart, so starts come evenly spread, not ``qps`` at once at each window's edge.
- ``acquire(reservation)`` takes the start right before the request's bytes leave (the PicWish client
  calls it once its connection is open). It waits, if need be, for its slot (one gap after the
  previous start's) and until no ``window`` seconds would hold more than ``qps`` starts, and the start
  counts from then, not from the booking. ``sent()`` then tells a shared budget that the bytes are out.

Slots lie on an even grid: a waiter that wakes up late does not push back the ones after it, so a
backlog gets the full rate; the window, counted on the real start times, stays the hard limit.

``pause()`` is for a 429: someone else spends the same key, so nobody books or starts anything until
the pause is over. ``LocalBudget`` serves one process; ``RedisBudget`` shares the budget between every
process (and host) that talks to the same Redis.

A ``RedisBudget`` whose Redis does not answer never fails its callers: they wait in line (one
WARNING when Redis goes, one INFO line when it is back) and the shared budget resumes by itself.
There is no local fallback: with several processes on one API key, budgets counted apart could
together exceed the key's QPS.

A scheduler that takes a job only once a start is booked for it (so the fair queue, not the budget's
waiting line, decides who goes next) runs the job in ``handed_over(reservation)``: the job's first
``reserve()`` returns that booking at once instead of booking another.
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
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.observability import Metrics

log = logging.getLogger(__name__)

# The server counts arrivals in 1.0 s windows by its own clock. A start is taken right before the
# request's bytes leave, but their way to that clock (network, the server's own scheduling) still
# varies from request to request: 40 ms of slack absorbs that while keeping 2/(1 + 0.04) = 1.92
# >= 0.95 x 2 requests per second.
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
    """A booked start: ``acquire(reservation)`` takes it when the request is about to leave."""

    budget: QpsBudget
    member: str  # names the start in a shared budget
    spent: bool = False  # handed over, and already returned by the task's first reserve()


# The reservation the current task's next reserve() returns (set by handed_over()).
_HANDED_OVER: ContextVar[Reservation | None] = ContextVar("qps_reservation", default=None)


def handed_over(reservation: Reservation) -> Context:
    """A copy of the current context whose first ``reserve()`` returns ``reservation`` at once.

    Run the task that sends the request in it: ``asyncio.create_task(coro, context=...)``.
    """
    context = copy_context()
    context.run(_HANDED_OVER.set, reservation)
    return context


def _take_handed_over(budget: QpsBudget) -> Reservation | None:
    held = _HANDED_OVER.get()
    if held is None or held.spent or held.budget is not budget:
        return None
    held.spent = True  # only the first request of the task; a retry or a poll books its own
    return held


class QpsBudget(Protocol):
    async def reserve(self) -> Reservation:
        """Book the next start and return once it is due (the task's handed-over booking, at once)."""

    async def acquire(self, reservation: Reservation | None = None) -> Reservation:
        """Return when one request may leave now; its start counts from now. Books one first (as
        ``reserve()`` does) when no ``reservation`` is given."""

    async def sent(self, reservation: Reservation) -> None:
        """The request whose start ``reservation`` took has left (a shared budget moves the start to now)."""

    async def pause(self, seconds: float) -> None:
        """A 429 came back: nobody starts a request for ``seconds`` from now."""

    async def close(self) -> None:
        """Release connections; the budget must not be used afterwards."""


def _shape(qps: float, window: float) -> tuple[int, float]:
    """``qps`` starts per ``window`` as (burst, span): at most ``burst`` starts in any ``span`` seconds.

    An integer qps gives (qps, window); 0.5 gives (1, 2 x window): one request every two seconds.
    Starts are ``span / burst`` (= ``window / qps``) apart in either case.
    """
    if not math.isfinite(qps) or qps < MIN_QPS:
        raise ValueError(f"qps must be at least {MIN_QPS}, got {qps!r}")
    if not math.isfinite(window) or window <= 0:
        raise ValueError(f"window must be positive, got {window!r}")
    burst = max(1, math.floor(qps))
    return burst, window * burst / qps


class LocalBudget:
    """The budget of one process.

    Bookings wait in one line and starts in another, each first come, first served (``asyncio.Lock``
    hands over in FIFO order); only the head of a line sleeps. Each waits for its slot on an even grid
    (the previous slot + the gap, or now when the line was idle), so a waiter that wakes up late does
    not push back the ones after it.
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
        self._gap = self._span / self._burst
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()  # the starts still in the window, oldest first
        self._next_booking = -math.inf
        self._next_start = -math.inf
        self._paused_until = -math.inf
        self._booking_line = asyncio.Lock()
        self._start_line = asyncio.Lock()
        self._members = itertools.count()

    async def reserve(self) -> Reservation:
        held = _take_handed_over(self)
        if held is not None:
            return held
        async with self._booking_line:
            slot = max(self._next_booking, self._clock())
            while True:
                slot = max(slot, self._paused_until)
                wait = slot - self._clock()
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._next_booking = slot + self._gap
        return Reservation(self, str(next(self._members)))

    async def acquire(self, reservation: Reservation | None = None) -> Reservation:
        if reservation is None:
            reservation = await self.reserve()
        async with self._start_line:
            slot = max(self._next_start, self._clock())
            while True:
                now = self._clock()
                slot = max(slot, self._paused_until)
                wait = max(slot, self._window_frees(now)) - now
                if wait <= 0:
                    break
                await self._sleep(wait)
            # Nothing is awaited between reading the clock and here, and the caller writes the request
            # right after: this start is when the request leaves, so sent() has nothing to add.
            self._starts.append(now)
            self._next_start = slot + self._gap
        self._metrics.budget_starts.inc()
        return reservation

    def _window_frees(self, now: float) -> float:
        """When one more start fits: never more than ``burst`` starts in any ``span`` seconds."""
        while self._starts and self._starts[0] <= now - self._span:
            self._starts.popleft()
        if len(self._starts) < self._burst:
            return now
        return self._starts[-self._burst] + self._span

    async def sent(self, reservation: Reservation) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def close(self) -> None:
        return None


# Times are µs: on the Redis server's clock, or on the clock a test passes as ARGV[1] (else '').
_NOW_LUA = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# The booking and start scripts take the slot the caller claimed on an earlier call (-1: none yet)
# and return {µs to wait (0: go), that slot}. A slot is claimed on the even grid (the last slot + the
# gap, or now if that has passed), and claimed again after a pause that began meanwhile.

# KEYS[1]: the next booking's slot, KEYS[2]: "paused until". ARGV[2..]: the gap, the claimed slot.
_BOOK_LUA = (
    _NOW_LUA
    + """
local gap = tonumber(ARGV[2])
local slot = tonumber(ARGV[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if slot < 0 or slot < paused then
  slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now, paused)
  redis.call('SET', KEYS[1], slot + gap, 'PX', math.ceil((slot + gap - now) / 1000) + 1000)
end
return {math.max(0, slot - now), slot}
"""
)

# KEYS[1]: sorted set of the starts, KEYS[2]: "paused until", KEYS[3]: the next start's slot.
# ARGV[2..]: burst, span, gap, the start's member, the claimed slot. Records the start at now if it goes.
_START_LUA = (
    _NOW_LUA
    + """
local burst = tonumber(ARGV[2])
local span = tonumber(ARGV[3])
local gap = tonumber(ARGV[4])
local slot = tonumber(ARGV[6])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if slot < 0 or slot < paused then
  slot = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), now, paused)
  redis.call('SET', KEYS[3], slot + gap, 'PX', math.ceil((slot + gap - now) / 1000) + 1000)
end
local due = slot
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
local n = redis.call('ZCARD', KEYS[1])
if n >= burst then
  local blocking = redis.call('ZRANGE', KEYS[1], n - burst, n - burst, 'WITHSCORES')
  due = math.max(due, tonumber(blocking[2]) + span)
end
if due > now then
  return {due - now, slot}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(span / 1000) + 1000)
return {0, slot}
"""
)

# KEYS[1]: the starts. ARGV[2..]: span, the start's member. Moves the start to now (never earlier);
# one that already left the window comes back, since its request has only just left.
_SENT_LUA = (
    _NOW_LUA
    + """
local at = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not at or tonumber(at) < now then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 1000)
end
return 0
"""
)

# KEYS[1]: "paused until". ARGV[2]: the pause. Only ever extends a pause.
_PAUSE_LUA = (
    _NOW_LUA
    + """
local pause = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + pause > current then
  redis.call('SET', KEYS[1], now + pause, 'PX', math.ceil(pause / 1000) + 1000)
end
return 0
"""
)


class RedisBudget:
    """The budget shared by every process using the same Redis and ``key``.

    Lua scripts decide atomically on the Redis server's clock, so processes on hosts whose clocks
    disagree still share one grid and one window (a test may pass its own ``clock`` instead). A start
    is recorded when Redis grants it, a moment before the request leaves (the answer still has to
    come back), so ``sent()`` moves it to when the bytes are out. ``key`` must not contain the API key
    itself (``make_budget`` derives it from a hash).
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        qps: float,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        self.qps = qps
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._sleep = sleep
        burst, span = _shape(qps, window)
        self._burst = burst
        self._span_us = math.ceil(span * 1_000_000)
        self._gap_us = math.ceil(self._span_us / burst)
        self._starts_key = key
        self._paused_key = f"{key}:paused"
        self._booked_key = f"{key}:booked"
        self._next_start_key = f"{key}:next"
        self.url = redacted_url(redis_url)  # for log lines: never the password
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            # One immediate retry on a fresh connection absorbs a pooled one a restarted Redis closed;
            # anything longer is waited out by _ask, with its own backoff.
            retry=Retry(NoBackoff(), 1),
        )
        self._book_script = self._redis.register_script(_BOOK_LUA)
        self._start_script = self._redis.register_script(_START_LUA)
        self._sent_script = self._redis.register_script(_SENT_LUA)
        self._pause_script = self._redis.register_script(_PAUSE_LUA)
        # Waiters of this process ask Redis one at a time, in arrival order (bookings, then starts).
        self._booking_line = asyncio.Lock()
        self._start_line = asyncio.Lock()
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

    async def reserve(self) -> Reservation:
        held = _take_handed_over(self)
        if held is not None:
            return held
        async with self._booking_line:
            await self._ask(self._book_script, [self._booked_key, self._paused_key], [self._gap_us])
        return Reservation(self, uuid.uuid4().hex)

    async def acquire(self, reservation: Reservation | None = None) -> Reservation:
        if reservation is None:
            reservation = await self.reserve()
        keys = [self._starts_key, self._paused_key, self._next_start_key]
        args: list[int | str] = [self._burst, self._span_us, self._gap_us, reservation.member]
        async with self._start_line:
            await self._ask(self._start_script, keys, args)
        self._metrics.budget_starts.inc()
        return reservation

    async def _ask(self, script: AsyncScript, keys: list[str], args: list[int | str]) -> None:
        """Run a booking or start script until it says go, waiting as long as it says in between."""
        retry = REDIS_RETRY_FIRST
        slot = -1  # none claimed yet
        while True:
            try:
                answer = await script(keys=keys, args=[self._now(), *args, slot])
                wait_us, slot = (int(value) for value in answer)
            except REDIS_UNREACHABLE as exc:
                # Wait for Redis rather than count alone: other processes may spend the same key.
                self._went_unreachable(exc)
                await asyncio.sleep(retry)
                retry = min(retry * 2, REDIS_RETRY_MAX)
                continue
            self._answered()
            retry = REDIS_RETRY_FIRST
            if wait_us <= 0:
                return
            await self._sleep(min(wait_us / 1_000_000, MAX_REDIS_SLEEP))

    def _now(self) -> str:
        """The scripts' ARGV[1]: '' for the Redis server's clock, else the injected clock in µs."""
        return "" if self._clock is None else str(round(self._clock() * 1_000_000))

    async def sent(self, reservation: Reservation) -> None:
        try:
            args: list[int | str] = [self._now(), self._span_us, reservation.member]
            await self._sent_script(keys=[self._starts_key], args=args)
        except REDIS_UNREACHABLE as exc:  # the start stays where acquire() put it, a moment early
            log.debug("could not move a start to its send time: Redis unreachable (%s)", type(exc).__name__)

    async def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            await self._pause_script(
                keys=[self._paused_key], args=[self._now(), math.ceil(seconds * 1_000_000)]
            )
        except REDIS_UNREACHABLE as exc:  # the caller's retry meets the 429 again if it still holds
            log.debug("could not pause the shared budget: Redis is unreachable (%s)", type(exc).__name__)

    def _went_unreachable(self, exc: BaseException) -> None:
        if not self.unreachable:
            self.unreachable = True
            log.warning(
                "Redis at %s is unreachable (%s): API requests wait until it answers",
                self.url,
                type(exc).__name__,
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
