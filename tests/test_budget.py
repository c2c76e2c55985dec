"""The QPS budget: starts one gap (window / qps) apart, never more than qps in any window, pauses
honoured, waiters served in order; the same for one process and, through Redis, for many."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from bot.budget import (
    DEFAULT_WINDOW,
    LocalBudget,
    RedisBudget,
    Reservation,
    budget_key,
    handed_over,
    make_budget,
    redacted_url,
)
from tests.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
# Float rounding in sums of gaps (and µs in Redis): the fake clocks have no other slack.
EPS = 1e-5


class FakeClock:
    """A monotonic clock whose sleep advances time at once, ``oversleep`` late (as a busy loop wakes).

    For one caller at a time; see ``VirtualClock`` for many.
    """

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 0.0
        self.oversleep = oversleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.oversleep
        await asyncio.sleep(0)


class VirtualClock:
    """Fake time for many callers at once: ``run()`` lets every task go as far as it can, then wakes
    the sleeper due first, moving time to its deadline."""

    SETTLE_ROUNDS = 20  # loop turns that let every runnable task reach its next sleep or lock

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), wake))
        await wake

    async def run(self, *coros: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.create_task(coro) for coro in coros]
        while not all(task.done() for task in tasks):
            for _ in range(self.SETTLE_ROUNDS):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():  # cancelled meanwhile
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                assert all(task.done() for task in tasks), "tasks wait, and nobody sleeps"
                break
            deadline, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            wake.set_result(None)
        await asyncio.gather(*tasks)


def gaps(stamps: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(sorted(stamps))]


def max_starts_in_any_window(stamps: list[float], window: float) -> int:
    """The largest number of starts that fall within one half-open window of ``window`` seconds."""
    stamps = sorted(stamps)
    most, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= window - EPS:
            first += 1
        most = max(most, last - first + 1)
    return most


async def started(
    budget: LocalBudget | RedisBudget, clock: FakeClock | VirtualClock, booking: Reservation | None = None
) -> float:
    """Take one start; when it was, by the fake clock (nothing is awaited between the two)."""
    await budget.acquire(booking)
    return clock.now


@pytest.fixture
def fresh_key(request: pytest.FixtureRequest) -> str:
    return f"test:qps:{request.node.name}"


# --- both budgets, on a fake clock ---------------------------------------------------------------------
BudgetOf = Callable[..., LocalBudget | RedisBudget]


@pytest.fixture(params=["local", "redis"])
async def budget_of(request: pytest.FixtureRequest, fresh_key: str) -> AsyncIterator[BudgetOf]:
    """Makes a LocalBudget, or a RedisBudget on a real redis-server, that runs on the given fake clock."""
    made: list[RedisBudget] = []
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    def make(qps: float, clock: FakeClock, *, window: float = DEFAULT_WINDOW) -> LocalBudget | RedisBudget:
        if not redis_url:
            return LocalBudget(qps, window=window, clock=clock, sleep=clock.sleep)
        budget = RedisBudget(redis_url, fresh_key, qps, window=window, clock=clock, sleep=clock.sleep)
        made.append(budget)
        return budget

    yield make
    for budget in made:
        await budget.close()


async def test_a_backlog_starts_one_gap_apart_rather_than_in_bursts_at_the_window_edge(
    budget_of: BudgetOf,
) -> None:
    clock = FakeClock()
    budget = budget_of(4, clock)
    stamps = [await started(budget, clock) for _ in range(9)]
    gap = DEFAULT_WINDOW / 4
    assert stamps == pytest.approx([n * gap for n in range(9)], abs=EPS)
    assert max_starts_in_any_window(stamps, DEFAULT_WINDOW) == 4


@pytest.mark.parametrize("qps", [0.1, 0.5, 2.5, 20])
async def test_the_gap_is_window_over_qps_for_any_qps(budget_of: BudgetOf, qps: float) -> None:
    clock = FakeClock()
    budget = budget_of(qps, clock)
    stamps = [await started(budget, clock) for _ in range(5)]
    assert stamps == pytest.approx([n * DEFAULT_WINDOW / qps for n in range(5)], abs=EPS)


async def test_a_late_wake_up_does_not_slow_down_the_starts_after_it(budget_of: BudgetOf) -> None:
    clock = FakeClock(oversleep=0.01)
    budget = budget_of(10, clock)
    stamps = [await started(budget, clock) for _ in range(21)]
    gap = DEFAULT_WINDOW / 10
    # Every wait ended 10 ms late, yet the 21st start is 20 gaps (+ 10 ms) after the first, not 20 x
    # (gap + 10 ms): a backlog keeps the full rate.
    assert stamps[-1] == pytest.approx(20 * gap + 0.01, abs=EPS)
    assert min(gaps(stamps)) >= gap - EPS


async def test_a_start_that_woke_late_does_not_let_the_next_ones_crowd_a_window(budget_of: BudgetOf) -> None:
    clock = FakeClock()
    budget = budget_of(2, clock)
    gap = DEFAULT_WINDOW / 2
    bookings = [await budget.reserve() for _ in range(4)]  # booked ahead, as the scheduler does
    stamps = [await started(budget, clock, bookings[0])]
    clock.oversleep = 0.3  # the second start's wait ends 300 ms late ...
    stamps.append(await started(budget, clock, bookings[1]))
    clock.oversleep = 0.0
    stamps += [await started(budget, clock, booking) for booking in bookings[2:]]
    # ... the third keeps to the grid, and the fourth waits for the late one to leave the window.
    expected = [3 * gap, 4 * gap + 0.3, 5 * gap, 4 * gap + 0.3 + DEFAULT_WINDOW]
    assert stamps == pytest.approx(expected, abs=EPS)
    assert max_starts_in_any_window(stamps, DEFAULT_WINDOW) == 2


async def test_a_pause_holds_back_every_start_then_starts_resume_one_gap_apart(budget_of: BudgetOf) -> None:
    clock = FakeClock()
    budget = budget_of(4, clock)
    await budget.acquire()
    await budget.pause(5.0)  # what a 429 with "Retry-After: 5" does
    stamps = [await started(budget, clock) for _ in range(3)]
    gap = DEFAULT_WINDOW / 4
    assert stamps == pytest.approx([5.0, 5.0 + gap, 5.0 + 2 * gap], abs=EPS)


async def test_a_pause_that_begins_after_a_booking_holds_back_its_start(budget_of: BudgetOf) -> None:
    clock = FakeClock()
    budget = budget_of(2, clock)
    booking = await budget.reserve()
    await budget.pause(1.5)
    await budget.acquire(booking)
    assert clock.now == pytest.approx(1.5, abs=EPS)


async def test_a_shorter_pause_does_not_cut_a_longer_one(budget_of: BudgetOf) -> None:
    clock = FakeClock()
    budget = budget_of(2, clock)
    await budget.pause(5.0)
    await budget.pause(1.0)
    await budget.acquire()
    assert clock.now == pytest.approx(5.0, abs=EPS)


async def test_the_tasks_first_reserve_returns_the_handed_over_booking(budget_of: BudgetOf) -> None:
    clock = FakeClock()
    budget = budget_of(1, clock)
    booking = await budget.reserve()

    async def two_requests() -> list[Reservation]:
        return [await budget.reserve(), await budget.reserve()]

    first, second = await asyncio.create_task(two_requests(), context=handed_over(booking))
    assert first is booking and second is not booking
    assert clock.now == pytest.approx(DEFAULT_WINDOW, abs=EPS), "only the second one booked (and waited)"


# --- LocalBudget, many callers at once -------------------------------------------------------------------
async def test_many_callers_at_once_start_one_gap_apart_at_the_full_rate() -> None:
    clock = VirtualClock()
    budget = LocalBudget(5, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []

    async def caller() -> None:
        stamps.append(await started(budget, clock))

    await clock.run(*(caller() for _ in range(20)))
    gap = DEFAULT_WINDOW / 5
    assert sorted(stamps) == pytest.approx([n * gap for n in range(20)], abs=EPS)


async def test_random_callers_and_pauses_keep_the_gap_the_window_and_the_pauses() -> None:
    rng = random.Random(13)
    qps = 3
    clock = VirtualClock()
    budget = LocalBudget(qps, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []
    pauses: list[tuple[float, float]] = []

    async def caller(arrives: float, booked_ahead: float | None) -> None:
        await clock.sleep(arrives)
        if booked_ahead is None:
            stamps.append(await started(budget, clock))
            return
        booking = await budget.reserve()  # as the scheduler does, before the job builds its request
        await clock.sleep(booked_ahead)
        stamps.append(await started(budget, clock, booking))

    async def too_many_requests(arrives: float, seconds: float) -> None:
        await clock.sleep(arrives)
        pauses.append((clock.now, clock.now + seconds))
        await budget.pause(seconds)

    await clock.run(
        *(caller(rng.uniform(0, 20), rng.choice([None, rng.uniform(0, 0.5)])) for _ in range(60)),
        *(too_many_requests(rng.uniform(0, 20), rng.uniform(0.1, 3)) for _ in range(6)),
    )
    assert len(stamps) == 60
    assert min(gaps(stamps)) >= DEFAULT_WINDOW / qps - EPS
    assert max_starts_in_any_window(stamps, DEFAULT_WINDOW) <= qps
    assert not [(at, p) for at in stamps for p in pauses if p[0] < at < p[1] - EPS], "a start inside a pause"


async def test_waiters_are_served_in_arrival_order() -> None:
    clock = FakeClock()
    budget = LocalBudget(1, clock=clock, sleep=clock.sleep)
    served: list[int] = []

    async def start(number: int) -> None:
        await budget.acquire()
        served.append(number)

    first_wave = [asyncio.create_task(start(n)) for n in range(5)]
    await asyncio.sleep(0)  # let the first wave line up before the second arrives
    second_wave = [asyncio.create_task(start(n)) for n in range(5, 10)]
    await asyncio.wait_for(asyncio.gather(*first_wave, *second_wave), timeout=5)
    assert served == list(range(10))


async def test_a_cancelled_waiter_does_not_hold_up_the_line() -> None:
    clock = VirtualClock()
    budget = LocalBudget(1, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []

    async def scenario() -> None:
        await budget.acquire()
        cancelled = asyncio.create_task(budget.acquire())
        behind = asyncio.create_task(budget.acquire())
        await asyncio.sleep(0)  # both line up
        cancelled.cancel()
        await behind
        stamps.append(clock.now)

    await clock.run(scenario())
    assert stamps == [pytest.approx(DEFAULT_WINDOW)], "the next slot: the cancelled waiter took none"


@pytest.mark.parametrize(("qps", "window"), [(0, 1.0), (0.05, 1.0), (2, 0), (float("nan"), 1.0)])
def test_nonsense_settings_are_refused(qps: float, window: float) -> None:
    with pytest.raises(ValueError):
        LocalBudget(qps, window=window)


# --- RedisBudget ---------------------------------------------------------------------------------------
@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_two_redis_clients_take_turns_on_one_grid(redis_url: str, fresh_key: str) -> None:
    clock = FakeClock()
    budgets = [RedisBudget(redis_url, fresh_key, 4, clock=clock, sleep=clock.sleep) for _ in range(2)]
    try:
        stamps = [await started(budgets[n % 2], clock) for n in range(8)]
    finally:
        for budget in budgets:
            await budget.close()
    assert stamps == pytest.approx([n * DEFAULT_WINDOW / 4 for n in range(8)], abs=EPS)


async def test_a_redis_start_moved_by_sent_holds_back_the_start_a_window_after_it(
    redis_url: str, fresh_key: str, redis_client: aioredis.Redis
) -> None:
    clock = FakeClock()
    budget = RedisBudget(redis_url, fresh_key, 2, window=0.2, clock=clock, sleep=clock.sleep)  # gap 0.1 s
    try:
        first = await budget.acquire()
        clock.now = 0.08  # its request left 80 ms after Redis granted the start
        await budget.sent(first)
        assert await redis_client.zscore(fresh_key, first.member) == 80_000
        assert await started(budget, clock) == pytest.approx(0.1, abs=EPS)  # one gap after the grant
        # The grid would allow 0.2, but two starts (0.08, 0.1) in the window hold the third to 0.28.
        assert await started(budget, clock) == pytest.approx(0.28, abs=EPS)
    finally:
        await budget.close()


async def test_redis_clients_at_once_never_exceed_qps_in_any_window_of_the_redis_clock(
    redis_url: str, fresh_key: str, redis_client: aioredis.Redis
) -> None:
    qps, window = 3, 0.3
    budgets = [RedisBudget(redis_url, fresh_key, qps, window=window) for _ in range(2)]
    stamps: list[float] = []

    async def start(budget: RedisBudget) -> None:
        spent = await budget.acquire()
        score = await redis_client.zscore(fresh_key, spent.member)  # when Redis counted it, in µs
        assert score is not None
        stamps.append(score / 1_000_000)

    try:
        await asyncio.wait_for(asyncio.gather(*(start(budgets[n % 2]) for n in range(12))), timeout=20)
    finally:
        for budget in budgets:
            await budget.close()
    assert len(stamps) == 12
    assert max_starts_in_any_window(stamps, window) <= qps


async def test_a_redis_pause_holds_back_every_client(
    redis_url: str, fresh_key: str, redis_client: aioredis.Redis
) -> None:
    hit_429, other = RedisBudget(redis_url, fresh_key, 2), RedisBudget(redis_url, fresh_key, 2)
    try:
        await hit_429.pause(0.3)
        paused_until = int(await redis_client.get(f"{fresh_key}:paused"))
        spent = await asyncio.wait_for(other.acquire(), timeout=5)
        assert await redis_client.zscore(fresh_key, spent.member) >= paused_until
    finally:
        await hit_429.close()
        await other.close()


async def test_make_budget_keeps_the_api_key_out_of_redis(redis_url: str) -> None:
    budget = make_budget(2, redis_url, "sk-very-secret")
    assert isinstance(budget, RedisBudget)
    try:
        await budget.acquire()
        await budget.pause(0.01)
    finally:
        await budget.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [str(key) for key in client.keys("*")]
    finally:
        client.close()
    assert budget_key("sk-very-secret") in keys
    assert not any("sk-very-secret" in key for key in keys)


def test_make_budget_without_redis_is_local() -> None:
    assert isinstance(make_budget(2, None, "sk"), LocalBudget)


# --- RedisBudget while Redis is unreachable ------------------------------------------------------------
RedisServers = Callable[..., RedisServer]


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"still false after {seconds:g} s"
        await asyncio.sleep(0.02)


def lines_with(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if words in record.getMessage()]


async def test_redis_budget_acquire_waits_while_redis_is_down_and_returns_once_it_is_back(
    redis_servers: RedisServers, fresh_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_servers()  # not started: connections are refused
    budget = RedisBudget(server.url, fresh_key, 2)
    try:
        with caplog.at_level(logging.DEBUG):
            waiter = asyncio.create_task(budget.acquire())
            await wait_until(lambda: budget.unreachable or waiter.done())
            await asyncio.sleep(0.6)  # Redis stays down a while: several refused attempts
            assert not waiter.done(), "acquire() neither raises nor returns while Redis is down"
            await asyncio.to_thread(server.start)
            await asyncio.wait_for(waiter, timeout=10)
            assert not budget.unreachable
            await asyncio.wait_for(budget.acquire(), timeout=5)  # the shared budget goes on
    finally:
        await budget.close()
    down = lines_with(caplog, "is unreachable")
    assert [r.levelno for r in down] == [logging.WARNING], "one WARNING however many attempts"
    assert f"Redis at {server.url} is unreachable" in down[0].getMessage()
    assert "API requests wait until it answers" in down[0].getMessage()
    assert len(lines_with(caplog, "Redis answers again")) == 1


async def test_redis_budget_restarted_under_a_reserved_start_and_a_pause_raises_nothing(
    redis_servers: RedisServers, fresh_key: str
) -> None:
    server = redis_servers(password="s3cret")
    server.start()
    budget = RedisBudget(server.url, fresh_key, 2)
    try:
        earlier = await asyncio.wait_for(budget.acquire(), timeout=5)
        reservation = await asyncio.wait_for(budget.reserve(), timeout=5)
        server.stop()
        await asyncio.wait_for(budget.sent(earlier), timeout=10)  # its request left: not shared, not raised
        await asyncio.wait_for(budget.pause(1.0), timeout=10)  # a 429 meanwhile: not shared, not raised
        spender = asyncio.create_task(budget.acquire(), context=handed_over(reservation))
        await wait_until(lambda: budget.unreachable or spender.done())
        await asyncio.sleep(0.3)
        assert not spender.done(), "a start booked before Redis went waits for it, as a new one does"
        await asyncio.to_thread(server.start)  # the same port, empty: a fresh budget
        await asyncio.wait_for(spender, timeout=10)
        assert reservation.spent and not budget.unreachable
    finally:
        await budget.close()


async def test_check_names_an_unreachable_redis_in_one_line_without_its_password(
    redis_servers: RedisServers, fresh_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_servers(password="s3cret")
    budget = RedisBudget(server.url, fresh_key, 2)
    try:
        with caplog.at_level(logging.DEBUG):
            assert await budget.check() is False
            await budget.pause(1.0)  # logged at DEBUG only, without the URL
            await asyncio.to_thread(server.start)
            assert await budget.check() is True
            await asyncio.wait_for(budget.acquire(), timeout=5)
    finally:
        await budget.close()
    named = lines_with(caplog, f"redis://:***@127.0.0.1:{server.port}/0")
    assert len(named) == 1
    assert "photos wait in line until it answers" in named[0].getMessage()
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis.example:6379/0", "redis://:***@redis.example:6379/0"),
        ("rediss://bot:p%40ss@10.0.0.5:6380/2", "rediss://bot:***@10.0.0.5:6380/2"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_redacted_url_hides_the_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


# Each process takes its starts once the parent says "go", printing when Redis counted each (µs).
WORKER = """
import asyncio, sys
import redis.asyncio as aioredis
from bot.budget import RedisBudget

async def main() -> None:
    url, key, qps, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    budget, client = RedisBudget(url, key, qps, window=0.3), aioredis.Redis.from_url(url)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        spent = await budget.acquire()
        print(int(await client.zscore(key, spent.member)), flush=True)
    await budget.close()
    await client.aclose()

asyncio.run(main())
"""


def test_two_processes_share_one_budget(redis_url: str, fresh_key: str) -> None:
    qps, per_process = 2, 6
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, fresh_key, str(qps), str(per_process)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=20)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [worker.returncode for worker in workers] == [0, 0]
    per_worker = [[int(line) / 1_000_000 for line in output.split()] for output in outputs]
    assert [len(stamps) for stamps in per_worker] == [per_process, per_process]
    first, second = per_worker
    assert min(max(first), max(second)) > max(min(first), min(second)), "the processes did not overlap"
    assert max_starts_in_any_window(first + second, 0.3) <= qps
