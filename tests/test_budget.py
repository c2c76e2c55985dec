"""The QPS budget: never more than qps starts in any window, pauses honoured, waiters served in order."""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from bot.budget import (
    DEFAULT_WINDOW,
    LocalBudget,
    RedisBudget,
    budget_key,
    handed_over,
    make_budget,
    redacted_url,
)
from tests.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_WINDOW = 1.0  # the stand-in server counts arrivals in windows of this length


class FakeClock:
    """A monotonic clock whose sleep advances time at once (only the head waiter ever sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def max_starts_in_any_window(stamps: list[float], window: float) -> int:
    """The largest number of starts that fall within one half-open window of ``window`` seconds."""
    stamps = sorted(stamps)
    most, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def sustained_rate(stamps: list[float], qps: int) -> float:
    """Starts per second after the first burst of ``qps``: what a backlog actually gets.

    Exact for a whole number of bursts, so callers take a multiple of ``qps`` starts.
    """
    assert len(stamps) % qps == 0
    stamps = sorted(stamps)
    return (len(stamps) - qps) / (stamps[-1] - stamps[0])


def fake_budget(qps: float) -> tuple[LocalBudget, FakeClock]:
    clock = FakeClock()
    return LocalBudget(qps, clock=clock, sleep=clock.sleep), clock


# --- LocalBudget, fake clock -------------------------------------------------------------------------
async def test_starts_come_in_bursts_of_qps_one_window_apart() -> None:
    budget, clock = fake_budget(2)
    stamps = []
    for _ in range(7):
        await budget.acquire()
        stamps.append(clock.now)
    w = DEFAULT_WINDOW
    assert stamps == pytest.approx([0, 0, w, w, 2 * w, 2 * w, 3 * w])


@pytest.mark.parametrize("qps", [0.1, 0.5])
async def test_fractional_qps_allows_one_start_every_1_over_qps_seconds(qps: float) -> None:
    budget, clock = fake_budget(qps)
    stamps = []
    for _ in range(4):
        await budget.acquire()
        stamps.append(clock.now)
    gap = DEFAULT_WINDOW / qps
    assert stamps == pytest.approx([0, gap, 2 * gap, 3 * gap])


async def test_non_integer_qps_above_one_keeps_the_long_run_rate() -> None:
    budget, clock = fake_budget(2.5)
    for _ in range(51):
        await budget.acquire()
    # 2 starts per 0.8 windows: 50 more starts after the first take 20 windows.
    assert clock.now == pytest.approx(20 * DEFAULT_WINDOW)


async def test_pause_delays_everyone_until_it_is_over() -> None:
    budget, clock = fake_budget(2)
    await budget.acquire()
    await budget.pause(5.0)
    stamps: list[float] = []

    async def start() -> None:
        await budget.acquire()
        stamps.append(clock.now)

    await asyncio.gather(*(start() for _ in range(3)))
    assert min(stamps) >= 5.0
    assert max_starts_in_any_window(stamps, DEFAULT_WINDOW) <= 2


async def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    budget, clock = fake_budget(2)
    await budget.pause(5.0)
    await budget.pause(1.0)
    await budget.acquire()
    assert clock.now >= 5.0


async def test_waiters_are_served_in_arrival_order() -> None:
    budget, _clock = fake_budget(1)
    served: list[int] = []

    async def start(number: int) -> None:
        await budget.acquire()
        served.append(number)

    first_wave = [asyncio.create_task(start(n)) for n in range(5)]
    await asyncio.sleep(0)  # let the first wave line up before the second arrives
    second_wave = [asyncio.create_task(start(n)) for n in range(5, 10)]
    await asyncio.wait_for(asyncio.gather(*first_wave, *second_wave), timeout=5)
    assert served == list(range(10))


@pytest.mark.parametrize(("qps", "window"), [(0, 1.0), (0.05, 1.0), (2, 0), (float("nan"), 1.0)])
def test_nonsense_settings_are_refused(qps: float, window: float) -> None:
    with pytest.raises(ValueError):
        LocalBudget(qps, window=window)


# --- LocalBudget, real clock -------------------------------------------------------------------------
async def test_concurrent_callers_never_exceed_qps_in_any_server_window() -> None:
    qps = 4
    budget = LocalBudget(qps)
    stamps: list[float] = []

    async def start() -> None:
        await budget.acquire()
        stamps.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(start() for _ in range(12))), timeout=10)
    assert max_starts_in_any_window(stamps, SERVER_WINDOW) <= qps
    assert sustained_rate(stamps, qps) >= 0.8 * qps


async def test_pause_extends_the_wait_of_a_caller_already_waiting() -> None:
    budget = LocalBudget(1, window=0.2)
    await budget.acquire()
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)  # the waiter is now sleeping until the window frees
    paused_at = time.monotonic()
    await budget.pause(0.5)
    await asyncio.wait_for(waiter, timeout=5)
    assert time.monotonic() - paused_at >= 0.5


async def test_a_cancelled_waiter_does_not_hold_up_the_line() -> None:
    budget = LocalBudget(1, window=0.3)
    await budget.acquire()
    first_at = time.monotonic()
    cancelled = asyncio.create_task(budget.acquire())
    behind = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait_for(behind, timeout=5)
    assert cancelled.cancelled()
    assert time.monotonic() - first_at >= 0.3


# --- RedisBudget ---------------------------------------------------------------------------------------


@pytest.fixture
def fresh_key(request: pytest.FixtureRequest) -> str:
    return f"test:qps:{request.node.name}"


async def test_redis_budget_shared_by_two_clients_never_exceeds_qps(redis_url: str, fresh_key: str) -> None:
    qps = 3
    budgets = [RedisBudget(redis_url, fresh_key, qps) for _ in range(2)]
    stamps: list[float] = []

    async def start(budget: RedisBudget) -> None:
        await budget.acquire()
        stamps.append(time.time())

    try:
        await asyncio.wait_for(asyncio.gather(*(start(budgets[n % 2]) for n in range(12))), timeout=10)
    finally:
        for budget in budgets:
            await budget.close()
    assert max_starts_in_any_window(stamps, SERVER_WINDOW) <= qps
    assert sustained_rate(stamps, qps) >= 0.8 * qps


async def test_redis_pause_is_honoured_by_every_client(redis_url: str, fresh_key: str) -> None:
    hit_429, other = RedisBudget(redis_url, fresh_key, 2), RedisBudget(redis_url, fresh_key, 2)
    try:
        await hit_429.pause(0.5)
        paused_at = time.monotonic()
        await asyncio.wait_for(other.acquire(), timeout=5)
        # The pause began on the server just before paused_at; allow for the round trip.
        assert time.monotonic() - paused_at >= 0.45
    finally:
        await hit_429.close()
        await other.close()


async def test_redis_fractional_qps_spaces_single_starts(redis_url: str, fresh_key: str) -> None:
    budget = RedisBudget(redis_url, fresh_key, 0.5, window=0.2)  # one start every 0.4 s
    stamps = []
    try:
        for _ in range(3):
            await asyncio.wait_for(budget.acquire(), timeout=5)
            stamps.append(time.monotonic())
    finally:
        await budget.close()
    assert all(later - earlier >= 0.38 for earlier, later in itertools.pairwise(stamps))


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
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still false after {seconds:g} s"
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
        reservation = await asyncio.wait_for(budget.reserve(), timeout=5)
        server.stop()
        await asyncio.wait_for(budget.pause(1.0), timeout=10)  # a 429 meanwhile: not shared, not raised
        spender = asyncio.create_task(budget.acquire(), context=handed_over(reservation))
        await wait_until(lambda: budget.unreachable or spender.done())
        await asyncio.sleep(0.3)
        assert not spender.done(), "a start reserved before Redis went waits for it, as a new one does"
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


# Each process takes its tokens once the parent says "go", printing one wall-clock stamp per start.
WORKER = """
import asyncio, sys, time
from bot.budget import RedisBudget

async def main() -> None:
    url, key, qps, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    budget = RedisBudget(url, key, qps)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        await budget.acquire()
        print(time.time(), flush=True)
    await budget.close()

asyncio.run(main())
"""


def test_two_processes_share_one_budget(redis_url: str, fresh_key: str) -> None:
    qps, per_process = 2, 5
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
    per_worker = [[float(line) for line in output.split()] for output in outputs]
    assert [len(stamps) for stamps in per_worker] == [per_process, per_process]
    first, second = per_worker
    assert min(max(first), max(second)) > max(min(first), min(second)), "the processes did not overlap"
    merged = first + second
    assert max_starts_in_any_window(merged, SERVER_WINDOW) <= qps
    assert sustained_rate(merged, qps) >= 0.8 * qps
