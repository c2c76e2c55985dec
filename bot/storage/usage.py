"""What the bot did, counted per UTC day in the store, and summed for ``/stats``.

The counts live in their own table rather than being derived from the jobs: answered jobs are pruned
after ``JOB_RETENTION_DAYS``, which may be shorter than the week ``/stats`` shows.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from bot.storage.store import Store, utc_day

#: A picture accepted as a job (label: the user id, for the busiest users).
PHOTOS = "photos"
#: A job answered with its cutout.
CUTOUTS = "cutouts"
#: A job answered with a failure (label: the text the user was shown).
FAILURES = "failures"
#: A job (or a failure) answered from the cache, at no API cost.
CACHE_HITS = "cache_hits"
#: A task created at the API: what the operator pays for.
API_TASKS = "api_tasks"

#: Days /stats looks back over, today included.
WEEK_DAYS = 7
#: Counts are kept a little longer than /stats looks back.
KEEP_DAYS = 31


@dataclass(frozen=True)
class Totals:
    photos: int = 0
    cutouts: int = 0
    failures: int = 0
    cache_hits: int = 0
    api_tasks: int = 0


@dataclass(frozen=True)
class UsageReport:
    """Today and the last :data:`WEEK_DAYS` days (UTC), today included."""

    today: Totals
    week: Totals
    failures: list[tuple[str, int]]  # the week's failures by reason, most frequent first
    busiest: list[tuple[int, int]]  # the week's busiest users: (user id, photos), most first


def usage_report(store: Store, *, now: float | None = None, top: int = 5) -> UsageReport:
    now = time.time() if now is None else now
    today = utc_day(now)
    first = utc_day(now - (WEEK_DAYS - 1) * 86400)
    day_totals: Counter[str] = Counter()
    week_totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    users: Counter[int] = Counter()
    for day, name, label, count in store.counts_since(first):
        week_totals[name] += count
        if day == today:
            day_totals[name] += count
        if name == FAILURES:
            reasons[label] += count
        elif name == PHOTOS and label:
            users[int(label)] += count
    return UsageReport(
        today=_totals(day_totals),
        week=_totals(week_totals),
        failures=sorted(reasons.items(), key=lambda item: (-item[1], item[0])),
        busiest=sorted(users.items(), key=lambda item: (-item[1], item[0]))[:top],
    )


def prune_counts(store: Store, *, now: float | None = None) -> int:
    """Forget the counts of days older than :data:`KEEP_DAYS`."""
    now = time.time() if now is None else now
    return store.prune_counts(utc_day(now - KEEP_DAYS * 86400))


def _totals(counts: Counter[str]) -> Totals:
    return Totals(
        photos=counts[PHOTOS],
        cutouts=counts[CUTOUTS],
        failures=counts[FAILURES],
        cache_hits=counts[CACHE_HITS],
        api_tasks=counts[API_TASKS],
    )
