"""A queue that takes turns between users, so one user's album cannot starve everyone else.

Users are served round-robin in the order they became active (had something queued); each
user's own items come out first in, first out. A user whose queue empties leaves the rotation
and joins at the back when they queue again. With ``u`` users waiting, a new user's first item
comes out within ``u`` gets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class FairQueue(Generic[T]):
    """Round-robin across users, FIFO within a user. Items must be hashable and unique."""

    def __init__(self) -> None:
        self._queues: dict[int, deque[T]] = {}
        self._turns: deque[int] = deque()  # active users, the next one to be served first
        self._owner: dict[T, int] = {}
        self._not_empty = asyncio.Event()

    def put(self, user_id: int, item: T) -> None:
        if item in self._owner:
            raise ValueError(f"{item!r} is already queued")
        queue = self._queues.get(user_id)
        if queue is None:
            queue = self._queues[user_id] = deque()
            self._turns.append(user_id)
        queue.append(item)
        self._owner[item] = user_id
        self._not_empty.set()

    async def get(self) -> T:
        """The next item, waiting for one if the queue is empty."""
        while not self._owner:
            await self._not_empty.wait()
        return self.pop()

    def pop(self) -> T:
        """The next item; IndexError if the queue is empty."""
        if not self._owner:
            raise IndexError("pop from an empty FairQueue")
        user_id = self._turns.popleft()
        queue = self._queues[user_id]
        item = queue.popleft()
        if queue:
            self._turns.append(user_id)
        else:
            del self._queues[user_id]
        del self._owner[item]
        if not self._owner:
            self._not_empty.clear()
        return item

    def position(self, item: T) -> int | None:
        """How many gets until ``item`` comes out (1 = the next one), or None if not queued."""
        user_id = self._owner.get(item)
        if user_id is None:
            return None
        rank = self._queues[user_id].index(item)  # how many of the user's own items are ahead
        lengths = [len(self._queues[other]) for other in self._turns]
        turn = self._turns.index(user_id)
        earlier_rounds = sum(min(length, rank) for length in lengths)
        this_round = sum(1 for length in lengths[:turn] if length > rank)
        return earlier_rounds + this_round + 1

    def positions(self) -> dict[T, int]:
        """The position of every queued item, in one pass over the queue."""
        result: dict[T, int] = {}
        queues = {user_id: list(queue) for user_id, queue in self._queues.items()}
        active = list(self._turns)
        rank = 0
        while active:
            still_active = []
            for user_id in active:
                result[queues[user_id][rank]] = len(result) + 1
                if len(queues[user_id]) > rank + 1:
                    still_active.append(user_id)
            active = still_active
            rank += 1
        return result

    def pending(self, user_id: int) -> int:
        """How many of this user's items are queued (not yet handed out by ``get``)."""
        queue = self._queues.get(user_id)
        return len(queue) if queue else 0

    def remove(self, item: T) -> bool:
        """Take ``item`` out of the line; False if it was not queued."""
        user_id = self._owner.pop(item, None)
        if user_id is None:
            return False
        queue = self._queues[user_id]
        queue.remove(item)
        if not queue:
            del self._queues[user_id]
            self._turns.remove(user_id)
        if not self._owner:
            self._not_empty.clear()
        return True

    def __len__(self) -> int:
        return len(self._owner)


class FairSlots:
    """At most ``size`` holders at once, like a semaphore; while all are taken, the waiters are let in
    user by user in turn (a :class:`FairQueue`), so a burst of one user's photos does not hold back the
    next user's single one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._free = size
        self._waiting: FairQueue[asyncio.Future[None]] = FairQueue()

    @asynccontextmanager
    async def slot(self, user_id: int) -> AsyncIterator[None]:
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.put(user_id, turn)
            try:
                await turn
            except asyncio.CancelledError:
                if not self._waiting.remove(turn) and turn.done() and not turn.cancelled():
                    self._release()  # handed the slot just as it was cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            turn = self._waiting.pop()
            if not turn.done():
                turn.set_result(None)  # the slot goes straight to the next in turn
                return
        self._free += 1
