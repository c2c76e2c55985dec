"""The cutout cache stays under CACHE_MAX_MB: least recently used files go first, the newest stay."""

from __future__ import annotations

import os
from pathlib import Path

from bot.storage import cache


def write(path: Path, size: int, used_at: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (used_at, used_at))
    return path


def test_eviction_removes_the_least_recently_used_until_under_the_cap(tmp_path: Path) -> None:
    old = write(tmp_path / "results" / "aa" / "old.png", 400_000, 1_000)
    used = write(tmp_path / "cutouts" / "bb" / "used.webp", 400_000, 2_000)
    new = write(tmp_path / "results" / "cc" / "new.png", 400_000, 3_000)
    props = write(tmp_path / "props" / "1" / "job.png", 900_000, 500)  # not cache: /zip needs it
    cache.touch(used)  # read just now: the most recently used
    count, freed = cache.evict(tmp_path, 500_000)
    assert (count, freed) == (2, 800_000)
    assert not old.exists() and not new.exists() and used.exists() and props.exists()


def test_a_cache_under_its_cap_is_left_alone(tmp_path: Path) -> None:
    kept = write(tmp_path / "results" / "aa" / "a.png", 1000, 1_000)
    assert cache.evict(tmp_path, 10_000) == (0, 0)
    assert kept.exists()
