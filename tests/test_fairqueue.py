"""The fair queue: users take turns, so a big album cannot starve anyone; positions tell the truth. Fair
slots: a semaphore whose waiters are let in user by user in turn."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.fairqueue import FairQueue, FairSlots


def active_users(queue: FairQueue[str], users: range) -> int:
    return sum(1 for user in users if queue.pending(user))


async def take(queue: FairQueue[str], count: int) -> list[str]:
    return [await asyncio.wait_for(queue.get(), timeout=1) for _ in range(count)]


async def test_a_newcomer_is_served_within_one_turn_per_active_user() -> None:
    queue: FairQueue[str] = FairQueue()
    users = range(1, 6)
    for n in range(30):
        queue.put(1, f"album-{n}")
    # after this many gets, this user adds one photo
    arrivals = {0: [2], 1: [3], 3: [4, 5], 9: [2]}  # user 2 comes back after being served
    added: dict[str, tuple[int, int, int]] = {}  # item -> (gets so far, active users, position)
    served: list[str] = []
    while queue:
        for user in arrivals.get(len(served), []):
            item = f"user{user}-at-{len(served)}"
            queue.put(user, item)
            position = queue.position(item)
            assert position is not None
            added[item] = (len(served), active_users(queue, users), position)
        served.append(await asyncio.wait_for(queue.get(), timeout=1))
    assert len(served) == 35
    for item, (gets_before, active, position) in added.items():
        gets_until_out = served.index(item) + 1 - gets_before
        assert gets_until_out <= active, item
        assert gets_until_out == position, item


async def test_users_take_turns_in_the_order_they_became_active() -> None:
    queue: FairQueue[str] = FairQueue()
    for user, items in [(7, ["a1", "a2", "a3"]), (3, ["b1"]), (9, ["c1", "c2"])]:
        for item in items:
            queue.put(user, item)
    assert await take(queue, 6) == ["a1", "b1", "c1", "a2", "c2", "a3"]


async def test_a_user_who_returns_after_emptying_joins_at_the_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put(1, "first-1")
    queue.put(2, "second-1")
    queue.put(2, "second-2")
    assert await take(queue, 1) == ["first-1"]  # user 1 is now idle
    queue.put(3, "third-1")
    queue.put(1, "first-2")
    # Behind everyone already in the rotation, not behind all of user 2's photos.
    assert queue.position("first-2") == 3
    assert await take(queue, 4) == ["second-1", "third-1", "first-2", "second-2"]


async def test_position_always_matches_the_order_of_get() -> None:
    rng = random.Random(20240611)
    queue: FairQueue[str] = FairQueue()
    for step in range(400):
        if rng.random() < 0.55 or not queue:
            queue.put(rng.randrange(6), f"item-{step}")
        elif rng.random() < 0.15:
            victim = rng.choice(list(queue.positions()))
            assert queue.remove(victim)
            assert queue.position(victim) is None
        positions = queue.positions()
        assert sorted(positions.values()) == list(range(1, len(queue) + 1))
        assert all(queue.position(item) == place for item, place in positions.items())
        if queue and rng.random() < 0.4:
            expected_next = min(positions, key=positions.__getitem__)
            assert await queue.get() == expected_next
    positions = queue.positions()
    assert await take(queue, len(queue)) == sorted(positions, key=positions.__getitem__)


async def test_get_waits_until_something_is_put() -> None:
    queue: FairQueue[str] = FairQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put(1, "photo")
    assert await asyncio.wait_for(getter, timeout=1) == "photo"
    assert len(queue) == 0


async def test_several_consumers_each_get_a_different_item() -> None:
    queue: FairQueue[str] = FairQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for n in range(3):
        queue.put(n, f"photo-{n}")
    got = await asyncio.wait_for(asyncio.gather(*getters), timeout=1)
    assert sorted(got) == ["photo-0", "photo-1", "photo-2"]


async def test_remove_takes_an_item_out_and_an_emptied_user_out_of_the_rotation() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put(1, "a1")
    queue.put(1, "a2")
    queue.put(2, "b1")
    queue.put(3, "c1")
    assert queue.remove("b1")
    assert not queue.remove("b1")
    assert queue.pending(2) == 0
    assert queue.positions() == {"a1": 1, "c1": 2, "a2": 3}
    queue.put(2, "b2")  # user 2 rejoins at the back
    assert await take(queue, 4) == ["a1", "c1", "b2", "a2"]


async def test_removing_the_last_item_makes_get_wait_again() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put(1, "only")
    assert queue.remove("only")
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter


def test_counts_and_lookups() -> None:
    queue: FairQueue[str] = FairQueue()
    assert queue.position("missing") is None
    assert queue.positions() == {}
    queue.put(1, "a")
    queue.put(1, "b")
    queue.put(2, "c")
    assert (len(queue), queue.pending(1), queue.pending(2), queue.pending(3)) == (3, 2, 1, 0)


def test_the_same_item_cannot_be_queued_twice() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put(1, "job-1")
    with pytest.raises(ValueError):
        queue.put(2, "job-1")


async def test_fair_slots_let_a_single_photo_in_before_the_rest_of_a_burst() -> None:
    slots = FairSlots(2)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(user: int, name: str) -> None:
        async with slots.slot(user):
            order.append(name)
            await release.wait()

    burst = [asyncio.create_task(hold(1, f"a{n}")) for n in range(5)]
    await asyncio.sleep(0)
    single = asyncio.create_task(hold(2, "b0"))
    await asyncio.sleep(0)
    assert order == ["a0", "a1"], "two slots, taken at once"
    release.set()
    await asyncio.wait_for(asyncio.gather(*burst, single), timeout=1)
    assert order == ["a0", "a1", "a2", "b0", "a3", "a4"], "the waiters took turns by user"


async def test_fair_slots_lose_no_slot_to_a_cancelled_waiter() -> None:
    slots = FairSlots(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with slots.slot(1):
            await gate.wait()

    first = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await asyncio.wait_for(first, timeout=1)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    async with asyncio.timeout(1), slots.slot(2):  # the slot is free again
        pass
