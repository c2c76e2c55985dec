"""Reserved starts: the scheduler takes a start first, the job's first request spends it, late but safe."""

from __future__ import annotations

import asyncio

import pytest

from bot.budget import DEFAULT_WINDOW, LocalBudget, RedisBudget, Reservation, handed_over
from tests.test_budget import FakeClock as Clock


def budget(qps: float = 1) -> tuple[LocalBudget, Clock]:
    clock = Clock()
    return LocalBudget(qps, clock=clock, sleep=clock.sleep), clock


async def in_task_of(reservation: Reservation, *budgets: LocalBudget | RedisBudget) -> None:
    """Acquire from each budget in turn, inside the task the reservation was handed to."""

    async def requests() -> None:
        for each in budgets:
            await each.acquire()

    await asyncio.create_task(requests(), context=handed_over(reservation))


async def test_the_first_request_spends_the_reserved_start_and_the_next_one_waits() -> None:
    local, clock = budget(qps=1)
    reservation = await local.reserve()
    clock.now = 0.3  # the job took a moment to build its request
    await in_task_of(reservation, local)
    assert clock.now == 0.3, "the reserved start was spent without waiting"
    await local.acquire()
    # The start counts from when the request really went out, not from the reservation.
    assert clock.now == pytest.approx(0.3 + DEFAULT_WINDOW)


async def test_only_the_first_request_of_the_task_spends_it() -> None:
    local, clock = budget(qps=1)
    reservation = await local.reserve()
    await in_task_of(reservation, local, local)  # e.g. a create and then a poll
    assert clock.now == pytest.approx(DEFAULT_WINDOW)
    assert reservation.spent


async def test_a_reservation_that_left_the_window_is_not_spent() -> None:
    local, clock = budget(qps=1)
    reservation = await local.reserve()
    clock.now = 5.0
    await local.acquire()  # someone else's start at 5.0
    await in_task_of(reservation, local)
    assert clock.now == pytest.approx(5.0 + DEFAULT_WINDOW), "it waited its turn like any request"


async def test_a_pause_that_began_after_the_reservation_holds_it_back() -> None:
    local, clock = budget(qps=2)
    reservation = await local.reserve()
    await local.pause(1.5)
    await in_task_of(reservation, local)
    assert clock.now == pytest.approx(1.5)


async def test_another_budgets_reservation_is_not_spent_here() -> None:
    first, clock = budget(qps=1)
    second = LocalBudget(1, clock=clock, sleep=clock.sleep)
    await second.acquire()
    reservation = await first.reserve()
    await in_task_of(reservation, second)
    assert clock.now == pytest.approx(DEFAULT_WINDOW)
    assert not reservation.spent


async def test_redis_reservation_counts_as_a_start_only_once_spent(redis_url: str) -> None:
    key = "test:qps:reservation"
    clock = Clock()
    shared = RedisBudget(redis_url, key, 1, clock=clock, sleep=clock.sleep)
    try:
        reservation = await shared.reserve()
        assert await shared._redis.zcard(key) == 0, "a booking is not a start"
        clock.now = 0.3  # the job took a moment to build its request
        await asyncio.wait_for(in_task_of(reservation, shared), timeout=5)
        assert clock.now == 0.3, "the reserved start was spent without waiting"
        assert await shared._redis.zscore(key, reservation.member) == 300_000  # µs: when it went out
        assert await shared._redis.zcard(key) == 1, "spending it took no second start"
    finally:
        await shared.close()
