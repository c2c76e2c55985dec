"""Per-user limits, decided before anything is queued or any API budget is spent."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

RATE_WINDOW = 60.0  # seconds: "per minute" is a sliding window of accepted photos

Reason = Literal["too_many_pending", "too_many_per_minute"]


@dataclass(frozen=True)
class Admission:
    ok: bool
    reason: Reason | None = None
    retry_after: float = 0.0  # seconds until the user may try again; 0 when ok or "when one is done"


ADMITTED = Admission(ok=True)


class UserLimits:
    """At most ``max_pending`` unanswered photos and ``per_minute`` accepted photos per user.

    Only users with an acceptance inside the last minute are remembered, so memory is bounded
    by the number of recently active users.
    """

    def __init__(
        self, max_pending: int = 5, per_minute: int = 10, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_pending < 1 or per_minute < 1:
            raise ValueError("max_pending and per_minute must be at least 1")
        self.max_pending = max_pending
        self.per_minute = per_minute
        self._clock = clock
        # user -> acceptance times, oldest first; users ordered by their latest acceptance.
        self._accepted: OrderedDict[int, deque[float]] = OrderedDict()

    def try_admit(self, user_id: int, pending: int) -> Admission:
        """Decide on one new photo; ``pending`` counts this user's photos not yet answered.

        An accepted photo is recorded; a refused one costs the user nothing.
        """
        now = self._clock()
        self._forget_idle(now)
        if pending >= self.max_pending:
            # Space frees when one of their photos is answered; the caller phrases it that way.
            return Admission(ok=False, reason="too_many_pending", retry_after=0.0)
        times = self._accepted.get(user_id)
        if times is None:
            times = self._accepted[user_id] = deque()
        while times and times[0] <= now - RATE_WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            return Admission(ok=False, reason="too_many_per_minute", retry_after=times[0] + RATE_WINDOW - now)
        times.append(now)
        self._accepted.move_to_end(user_id)
        return ADMITTED

    def record(self, user_id: int) -> None:
        """Count a photo taken without a decision of its own (the rest of an album already taken)."""
        now = self._clock()
        self._accepted.setdefault(user_id, deque()).append(now)
        self._accepted.move_to_end(user_id)

    def _forget_idle(self, now: float) -> None:
        """Drop users whose latest acceptance has left the window (they are at the front)."""
        while self._accepted:
            user_id, times = next(iter(self._accepted.items()))
            if times and times[-1] > now - RATE_WINDOW:
                return
            del self._accepted[user_id]

    @property
    def tracked_users(self) -> int:
        """How many users are remembered (for tests and metrics)."""
        return len(self._accepted)
