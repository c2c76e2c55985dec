"""Per-user limits: too many unanswered photos, too many photos in a minute, and idle users forgotten."""

from __future__ import annotations

import pytest

from bot.admission import Admission, UserLimits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_photos_within_the_limits_are_admitted(clock: FakeClock) -> None:
    limits = UserLimits(max_pending=5, per_minute=10, clock=clock)
    assert limits.try_admit(42, pending=0) == Admission(ok=True, reason=None, retry_after=0.0)


def test_too_many_unanswered_photos_are_refused_without_a_countdown(clock: FakeClock) -> None:
    limits = UserLimits(max_pending=5, per_minute=10, clock=clock)
    assert limits.try_admit(42, pending=4).ok
    refused = limits.try_admit(42, pending=5)
    assert refused == Admission(ok=False, reason="too_many_pending", retry_after=0.0)


def test_the_eleventh_photo_in_a_minute_waits_for_the_oldest_to_leave_the_window(clock: FakeClock) -> None:
    limits = UserLimits(max_pending=100, per_minute=10, clock=clock)
    for _ in range(10):
        assert limits.try_admit(42, pending=0).ok
        clock.now += 2.0  # accepted at 1000, 1002, ..., 1018
    refused = limits.try_admit(42, pending=0)  # at 1020
    assert (refused.ok, refused.reason) == (False, "too_many_per_minute")
    assert refused.retry_after == pytest.approx(40.0)

    clock.now += refused.retry_after
    assert limits.try_admit(42, pending=0).ok
    assert not limits.try_admit(42, pending=0).ok  # only one slot freed


def test_refused_photos_do_not_count_against_the_minute(clock: FakeClock) -> None:
    limits = UserLimits(max_pending=1, per_minute=2, clock=clock)
    assert limits.try_admit(42, pending=0).ok
    for _ in range(5):
        assert not limits.try_admit(42, pending=1).ok
    assert limits.try_admit(42, pending=0).ok


def test_users_have_separate_limits(clock: FakeClock) -> None:
    limits = UserLimits(per_minute=1, clock=clock)
    assert limits.try_admit(1, pending=0).ok
    assert not limits.try_admit(1, pending=0).ok
    assert limits.try_admit(2, pending=0).ok


def test_users_idle_for_a_minute_are_forgotten(clock: FakeClock) -> None:
    limits = UserLimits(clock=clock)
    for user in range(1000):
        assert limits.try_admit(user, pending=0).ok
    assert limits.tracked_users == 1000
    clock.now += 30.0
    assert limits.try_admit(5, pending=0).ok  # user 5 stays active
    clock.now += 31.0
    assert limits.try_admit(2000, pending=0).ok
    assert limits.tracked_users == 2  # users 5 and 2000


@pytest.mark.parametrize(("max_pending", "per_minute"), [(0, 10), (5, 0)])
def test_limits_below_one_are_refused(max_pending: int, per_minute: int) -> None:
    with pytest.raises(ValueError):
        UserLimits(max_pending=max_pending, per_minute=per_minute)
