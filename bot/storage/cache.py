"""The cutout cache on disk, kept under ``CACHE_MAX_MB``: least recently used files go first.

The cache is content-addressed files under ``DATA_DIR/results`` (the API's full-resolution answers)
and ``DATA_DIR/cutouts`` (512 px renders). A file is "used" when the service reads it (its mtime is
touched then). The database rows stay: a look-up whose file is gone is a plain cache miss.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Eviction goes a little below the cap, so it does not run again at the next photo.
_LOW_WATER = 0.9
CACHE_FOLDERS = ("results", "cutouts")


def touch(path: str | Path) -> None:
    """Mark a cached file as just used (best effort: a file evicted meanwhile is simply gone)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def evict(data_dir: Path, max_bytes: int) -> tuple[int, int]:
    """Delete the least recently used cache files until they fit in ``max_bytes``; (files, bytes) freed."""
    files: list[tuple[float, int, Path]] = []
    for folder in CACHE_FOLDERS:
        for path in (data_dir / folder).rglob("*"):
            try:
                stat = path.stat()
            except OSError:
                continue
            if path.is_file() and not path.name.endswith(".tmp"):
                files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return 0, 0
    freed = count = 0
    for _, size, path in sorted(files):  # oldest use first
        if total - freed <= max_bytes * _LOW_WATER:
            break
        try:
            path.unlink()
        except OSError:
            continue
        freed += size
        count += 1
    log.info("cache over %d MB: evicted %d file(s), %d MB", max_bytes >> 20, count, freed >> 20)
    return count, freed
