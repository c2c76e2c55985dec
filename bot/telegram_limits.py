"""Telegram's rate limits for outgoing calls, with answers first.

Telegram allows a bot about 30 messages a second overall, about one a second in one chat (short
bursts pass) and 20 a minute in a group; past that it answers 429 with ``retry_after``. Every call
that names a chat counts against the overall rate (as PTB's ``AIORateLimiter`` counts them), from
its turn until a second after its answer, so calls that reach Telegram late (a busy event loop, a
slow upload) never crowd into one of its seconds; calls that make or change a message count against
their chat's rate too.

PTB's ``AIORateLimiter`` serves all of them in one first-in-first-out line, so under load an answer
waits behind status edits and chat actions. Here each call goes in a :class:`Lane`:

- ``NOTICE``: the first word that a photo waits (its status message). It goes first, within a share
  of the budget, so a late user hears where they stand in seconds however long the line is; past
  that share, it takes the slots no answer needs (ahead of ``FEEDBACK``). One whose photos were
  answered while it waited for its turn (its chat's limit held it) is dropped unsent, rather than
  posted only to be deleted.
- ``ANSWER`` (the default): results, failures, replies to commands, and the status message giving
  way to them. It has every slot the others do not take.
- ``FEEDBACK``: status edits and chat actions. Only spare slots, within a
  share of the budget. A newer edit of a message replaces one still waiting (only the latest text
  is sent), and a chat action that waited past its use is dropped unsent.

Calls on one message (edits, its deletion) go out in the order they were made, so a late status
edit never lands on a message that already says what went wrong.

A 429 pauses what it concerns: the chat it came from, or everything when Telegram refuses calls
without a chat or several chats at once. Sticker-set calls have flood waits of their own (minutes
long) and skip this limiter; their caller (``handlers/packs.py``) waits those out itself.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.observability import Metrics

log = logging.getLogger(__name__)

_Result = bool | dict[str, Any] | list[dict[str, Any]]
Clock = Callable[[], float]

#: Flood waits on these are specific to sticker-set work, and can last minutes.
_OWN_FLOOD_WAIT = frozenset({"createNewStickerSet", "addStickerToSet", "uploadStickerFile"})
#: Calls that do not make or change a message: they count only against the overall rate.
_NOT_MESSAGES = frozenset({"sendChatAction", "deleteMessage", "deleteMessages"})
#: Calls on one existing message, kept in order per message; a newer edit replaces a waiting one.
_ON_A_MESSAGE = frozenset({"editMessageText", "deleteMessage"})

#: One chat: this many messages in this many seconds (about 1/s, a short burst allowed).
CHAT_BURST, CHAT_PERIOD = 3, 3.0
#: One group: 20 messages a minute.
GROUP_LIMIT, GROUP_PERIOD = 20, 60.0
#: The shares of the overall rate the status lanes may use at most, whatever the queue's length.
NOTICE_SHARE = 0.2
FEEDBACK_SHARE = 0.2
#: The overall rate is also kept over fifths of a second (at least this many calls each), so a
#: second's calls do not leave at once and reach Telegram bunched with the next second's.
SMOOTH_PERIOD, SMOOTH_MIN_BURST = 0.2, 5
#: A waiting photo's first status goes to the chats that had the fewest in this many seconds first:
#: a newcomer hears where they stand before a user with many photos hears of their tenth.
NOTICE_MEMORY = 60.0
#: Two chats refused within this many seconds: the flood limit is the bot's, not a chat's.
GLOBAL_FLOOD_SPAN = 1.0
#: The longest look down one lane for a call whose chat may go now (the rest wait their turn).
SCAN_LIMIT = 500


def retry_after_seconds(exc: RetryAfter) -> float:
    """Seconds Telegram asks us to wait (PTB 22 gives an int or, opted in, a timedelta)."""
    value = exc.retry_after
    return float(value) if isinstance(value, int | float) else value.total_seconds()


class Lane(IntEnum):
    NOTICE = 0
    ANSWER = 1
    FEEDBACK = 2


@dataclass(frozen=True)
class Pace:
    """How a call is paced (PTB's ``rate_limit_args``): its lane; for a call that is worth sending only
    soon (a chat action), how many seconds it may wait before it is dropped unsent; for one that may
    stop being worth sending while it waits (a status message whose photos were answered meanwhile),
    ``wanted``, asked when its turn comes: False drops it unsent. A dropped call returns True."""

    lane: Lane
    stale_after: float | None = None
    wanted: Callable[[], bool] | None = field(default=None, compare=False)


NOTICE = Pace(Lane.NOTICE)
ANSWER = Pace(Lane.ANSWER)
FEEDBACK = Pace(Lane.FEEDBACK)


class _Window:
    """At most ``limit`` events in any ``period`` seconds."""

    __slots__ = ("_times", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = max(1, limit)
        self.period = period
        self._times: deque[float] = deque()

    def room(self, now: float) -> bool:
        times = self._times
        while times and times[0] <= now - self.period:
            times.popleft()
        return len(times) < self.limit

    def free_at(self, now: float) -> float:
        """When the next event fits (``now`` if it fits now)."""
        return now if self.room(now) else self._times[0] + self.period

    def take(self, now: float) -> None:
        self._times.append(now)

    def idle(self, now: float) -> bool:
        return not self._times or self._times[-1] <= now - self.period


class _Sent:
    """At most ``limit`` calls in any ``period`` seconds as Telegram counts them, whenever they reach it.

    A call holds its place from its turn until ``period`` seconds after its answer came back: it
    reached Telegram somewhere between the two, however long the event loop or its upload delayed
    it, so no ``period`` seconds at Telegram can hold more than ``limit`` of them.
    """

    __slots__ = ("_answered", "_sending", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = max(1, limit)
        self.period = period
        self._sending = 0
        self._answered: deque[float] = deque()

    def room(self, now: float) -> bool:
        answered = self._answered
        while answered and answered[0] <= now - self.period:
            answered.popleft()
        return self._sending + len(answered) < self.limit

    def free_at(self, now: float) -> float:
        """When the next call fits: ``now`` if it fits now; never while every place waits for an answer
        (each answer wakes the limiter again)."""
        if self.room(now):
            return now
        return self._answered[0] + self.period if self._answered else math.inf

    def take(self, now: float) -> None:
        self._sending += 1

    def answered(self, now: float) -> None:
        self._sending -= 1
        self._answered.append(now)

    def unsent(self) -> None:
        """A call given its turn was cancelled before it was sent: its place is free again."""
        self._sending -= 1


@dataclass(eq=False)
class _Call:
    seq: int
    lane: Lane
    endpoint: str
    chat: int | str | None
    counts_in_chat: bool
    message: tuple[int | str, int] | None  # (chat, message id) for calls on one message
    since: float
    stale_at: float | None
    wanted: Callable[[], bool] | None
    #: Set when the call may go: True to send it, False when it is not worth sending any more.
    turn: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __lt__(self, other: _Call) -> bool:
        return self.seq < other.seq


def _past_use(call: _Call, now: float) -> bool:
    """Whether a waiting call is no longer worth sending: too late (a chat action), or not wanted."""
    return (call.stale_at is not None and call.stale_at < now) or (call.wanted is not None and not call.wanted())


class TelegramRateLimiter(BaseRateLimiter[Pace]):
    """Overall, per-chat and per-group limits, served in lanes (see the module's docstring).

    Every call to Telegram passes here, so here it is counted (each retry too), with its 429s.
    """

    def __init__(
        self,
        *,
        max_rate: float = 30.0,
        max_retries: int = 0,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._max_retries = max_retries
        self._clock = clock
        rate = max(1, round(max_rate))
        self._overall = _Sent(rate, 1.0)
        self._smooth = _Window(max(SMOOTH_MIN_BURST, math.ceil(rate * SMOOTH_PERIOD)), SMOOTH_PERIOD)
        self._noticed: dict[int | str, deque[float]] = {}  # per chat: when its recent notices went
        self._shares = {
            Lane.NOTICE: _Window(round(rate * NOTICE_SHARE), 1.0),
            Lane.FEEDBACK: _Window(round(rate * FEEDBACK_SHARE), 1.0),
        }
        self._lanes: dict[Lane, list[_Call]] = {lane: [] for lane in Lane}
        self._chats: dict[int | str, _Window] = {}
        self._paused: dict[int | str | None, float] = {}  # None: everything
        self._on_message: dict[tuple[int | str, int], deque[_Call]] = {}
        self._refused: deque[tuple[float, int | str]] = deque()  # recent 429s: (when, chat)
        self._seq = itertools.count()
        self._wake: asyncio.TimerHandle | None = None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        if self._wake is not None:
            self._wake.cancel()

    def waiting(self) -> dict[str, int]:
        """Calls waiting for their turn, per lane."""
        return {lane.name.lower(): len(calls) for lane, calls in self._lanes.items()}

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, _Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Pace | None,
    ) -> _Result:
        calls = self._metrics.telegram_calls.labels(endpoint)
        chat = data.get("chat_id")
        if endpoint in _OWN_FLOOD_WAIT or chat is None:
            calls.inc()
            return await self._counting_429s(callback(*args, **kwargs), endpoint)
        pace = rate_limit_args or ANSWER
        call = self._enqueue(endpoint, chat, data, pace)
        for attempt in range(self._max_retries + 1):
            if not await self._turn(call):
                return True  # replaced by a newer call on its message, or past its use: nothing to send
            calls.inc()
            try:
                try:
                    result = await self._counting_429s(callback(*args, **kwargs), endpoint)
                finally:
                    self._overall.answered(self._clock())
            except RetryAfter as exc:
                if attempt == self._max_retries:
                    self._done(call)
                    raise
                self._refused_by(call, retry_after_seconds(exc))
                self._requeue(call)
                continue
            except BaseException:
                self._done(call)
                raise
            self._done(call)
            return result
        raise AssertionError("unreachable")

    async def _counting_429s(self, request: Coroutine[Any, Any, _Result], endpoint: str) -> _Result:
        try:
            return await request
        except RetryAfter:
            self._metrics.telegram_rate_limited.labels(endpoint).inc()
            raise

    # --- the line ---------------------------------------------------------------------------
    def _enqueue(self, endpoint: str, chat: int | str, data: dict[str, Any], pace: Pace) -> _Call:
        with_id = data.get("message_id")
        now = self._clock()
        call = _Call(
            seq=next(self._seq),
            lane=pace.lane,
            endpoint=endpoint,
            chat=chat,
            counts_in_chat=endpoint not in _NOT_MESSAGES,
            message=(chat, int(with_id)) if endpoint in _ON_A_MESSAGE and with_id is not None else None,
            since=now,
            stale_at=now + pace.stale_after if pace.stale_after is not None else None,
            wanted=pace.wanted,
        )
        if call.message is not None:
            line = self._on_message.setdefault(call.message, deque())
            if endpoint == "editMessageText" or endpoint == "deleteMessage":
                self._replace_waiting(line, call)
            line.append(call)
        bisect.insort(self._lanes[call.lane], call)
        return call

    def _replace_waiting(self, line: deque[_Call], newer: _Call) -> None:
        """A newer edit (or the deletion) of a message makes the edits still waiting on it pointless;
        an answer's edit (a failure's text) is never replaced by a status edit."""
        for older in list(line):
            if older.turn.done() or older.endpoint != "editMessageText" or older.lane < newer.lane:
                continue
            line.remove(older)
            self._lanes[older.lane].remove(older)
            older.turn.set_result(False)

    async def _turn(self, call: _Call) -> bool:
        """Wait until ``call`` may go: True to send it, False when it is no longer worth sending."""
        self._pump()
        try:
            go = await call.turn
        except asyncio.CancelledError:
            if call.turn.done() and not call.turn.cancelled() and call.turn.result():
                self._overall.unsent()  # its turn came as its caller gave up: the place must not leak
            self._done(call)
            raise
        if not go:
            self._done(call)
        return go

    def _requeue(self, call: _Call) -> None:
        call.turn = asyncio.get_running_loop().create_future()
        bisect.insort(self._lanes[call.lane], call)  # its old place: ahead of later calls

    def _done(self, call: _Call) -> None:
        self._forget(call)
        self._pump()

    def _forget(self, call: _Call) -> None:
        lane = self._lanes[call.lane]
        index = bisect.bisect_left(lane, call)
        if index < len(lane) and lane[index] is call:
            del lane[index]
        if call.message is not None and (line := self._on_message.get(call.message)) is not None:
            if call in line:
                line.remove(call)
            if not line:
                del self._on_message[call.message]

    # --- who goes next ------------------------------------------------------------------------
    def _pump(self) -> None:
        """Give every call that may go now its turn; wake again when the next one may."""
        now = self._clock()
        while (call := self._next(now)) is not None:
            self._lanes[call.lane].remove(call)
            if _past_use(call, now):
                call.turn.set_result(False)  # dropped unsent: it spends nothing
                continue
            self._overall.take(now)
            self._smooth.take(now)
            if call.lane is Lane.NOTICE and call.chat is not None:
                if len(self._noticed) > 10_000:  # forget chats with no notice lately
                    self._noticed = {c: t for c, t in self._noticed.items() if t[-1] > now - NOTICE_MEMORY}
                self._noticed.setdefault(call.chat, deque()).append(now)
            if (share := self._shares.get(call.lane)) is not None:
                share.take(now)
            if call.counts_in_chat and call.chat is not None:
                self._chat_window(call.chat).take(now)
            call.turn.set_result(True)
        self._schedule_wake(now)

    def _next(self, now: float) -> _Call | None:
        if self._paused_now(None, now) or not self._overall.room(now) or not self._smooth.room(now):
            return self._stale(now)
        notices_spare = False  # first statuses past their share: they may still take spare slots
        for lane in Lane:
            share = self._shares.get(lane)
            if share is not None and not share.room(now):
                notices_spare |= lane is Lane.NOTICE
                continue
            if lane is Lane.NOTICE:
                if (notice := self._next_notice(now)) is not None:
                    return notice
                continue
            for call in itertools.islice(self._lanes[lane], SCAN_LIMIT):
                if self._may_go(call, now):
                    return call
            # No answer may go now: a burst of first statuses (many users' photos at once) uses the slot.
            if lane is Lane.ANSWER and notices_spare and (notice := self._next_notice(now)) is not None:
                return notice
        return self._stale(now)

    def _next_notice(self, now: float) -> _Call | None:
        """The waiting first status of the chat that had the fewest lately (the oldest among equals)."""
        best: tuple[int, int] | None = None
        chosen = None
        for call in self._lanes[Lane.NOTICE]:
            if not self._may_go(call, now):
                continue
            rank = (self._recent_notices(call.chat, now), call.seq)
            if best is None or rank < best:
                best, chosen = rank, call
                if rank[0] == 0:
                    break  # nobody goes ahead of a chat that had none
        return chosen

    def _recent_notices(self, chat: int | str | None, now: float) -> int:
        times = self._noticed.get(chat) if chat is not None else None
        if times is None:
            return 0
        while times and times[0] <= now - NOTICE_MEMORY:
            times.popleft()
        if not times:
            del self._noticed[chat]  # type: ignore[arg-type]
        return len(times)

    def _stale(self, now: float) -> _Call | None:
        """A call past its use goes at once (it is dropped unsent, spending nothing)."""
        return next((call for call in self._perishable() if _past_use(call, now)), None)

    def _may_go(self, call: _Call, now: float) -> bool:
        if _past_use(call, now):
            return True
        if call.message is not None and self._on_message[call.message][0] is not call:
            return False  # an earlier call on this message is still on its way
        if self._paused_now(call.chat, now):
            return False
        return not call.counts_in_chat or call.chat is None or self._chat_window(call.chat).room(now)

    def _paused_now(self, scope: int | str | None, now: float) -> bool:
        until = self._paused.get(scope)
        if until is None:
            return False
        if until <= now:
            del self._paused[scope]
            return False
        return True

    def _chat_window(self, chat: int | str) -> _Window:
        window = self._chats.get(chat)
        if window is None:
            if len(self._chats) > 10_000:  # forget chats that have been quiet a while
                now = self._clock()
                self._chats = {c: w for c, w in self._chats.items() if not w.idle(now)}
            is_group = isinstance(chat, str) or chat < 0
            window = self._chats[chat] = (
                _Window(GROUP_LIMIT, GROUP_PERIOD) if is_group else _Window(CHAT_BURST, CHAT_PERIOD)
            )
        return window

    def _schedule_wake(self, now: float) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if not any(self._lanes.values()):
            return
        times = [call.stale_at for call in self._perishable() if call.stale_at is not None]
        if self._overall.room(now) and self._smooth.room(now):  # held back by a share, a chat, a pause
            times += self._paused.values()
            times += [share.free_at(now) for share in self._shares.values()]
            for lane in self._lanes.values():
                for call in itertools.islice(lane, SCAN_LIMIT):
                    if call.counts_in_chat and call.chat is not None:
                        times.append(self._chat_window(call.chat).free_at(now))
        else:
            times.append(max(self._overall.free_at(now), self._smooth.free_at(now)))
        later = [t for t in times if t is not None and t > now]
        delay = min(later) - now if later else 0.05
        self._wake = asyncio.get_running_loop().call_later(min(max(delay, 0.001), 1.0), self._pump)

    def _perishable(self) -> list[_Call]:
        """Waiting calls that are dropped once past their use (chat actions, status messages)."""
        return [
            call
            for lane in (Lane.NOTICE, Lane.FEEDBACK)
            for call in itertools.islice(self._lanes[lane], SCAN_LIMIT)
            if call.stale_at is not None or call.wanted is not None
        ]

    # --- 429s ---------------------------------------------------------------------------------
    def _refused_by(self, call: _Call, retry_after: float) -> None:
        """Pause what the 429 concerns: its chat, or everything when several chats were refused."""
        now = self._clock()
        chat = call.chat
        assert chat is not None
        self._refused.append((now, chat))
        while self._refused and self._refused[0][0] < now - GLOBAL_FLOOD_SPAN:
            self._refused.popleft()
        widespread = len({c for _, c in self._refused}) > 1
        scope = None if widespread else chat
        self._paused[scope] = max(self._paused.get(scope, 0.0), now + retry_after)
        log.info(
            "Telegram asked to wait %.0f s (%s): pausing %s",
            retry_after,
            call.endpoint,
            "every chat" if scope is None else "that chat",
        )
