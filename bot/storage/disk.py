"""Free space under DATA_DIR: new photos pause while it runs low, so the photos already taken can finish.

The bot writes under DATA_DIR at every step of a photo (the upload, the API's result, the renders, the
database). Below ``DISK_MIN_FREE_MB`` it stops taking new photos (a short "busy" reply, no API call),
which leaves the jobs in flight the room they need. When a write fails for want of space all the same
(something else filled the disk), the service keeps what it holds in memory and writes it once space
is back: see :class:`bot.pipeline.service.CutoutService`.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: How often free space is looked at again while it is low.
RECHECK_SECONDS = 5.0


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for want of space (a file, or SQLite's database)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc) or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return False


class DiskSpace:
    """Says whether DATA_DIR has at least ``min_free`` bytes free; a failed write marks it low at once."""

    def __init__(self, path: Path, min_free: int) -> None:
        self.path = path
        self.min_free = min_free
        self._ran_out = False  # a write failed for want of space: low until a check finds room again

    def free(self) -> int:
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return 0

    def low(self) -> bool:
        """Below the threshold now (one ``statvfs``: cheap enough to ask at every photo)."""
        if self.free() >= self.min_free + (self.min_free if self._ran_out else 0):
            self._ran_out = False  # after running out, twice the threshold: not to flap at the edge
            return False
        return True

    def ran_out(self) -> None:
        self._ran_out = True


class HeldWrites:
    """Writes that failed for want of space, kept in memory (files, then database writes, in order) until
    :meth:`flush` finds room for them. Reads of a held file are served from memory meanwhile."""

    def __init__(self) -> None:
        self._files: dict[Path, bytes] = {}
        self._rows: list[Callable[[], object]] = []

    def __len__(self) -> int:
        return len(self._files) + len(self._rows)

    @property
    def rows_waiting(self) -> bool:
        """Database writes are held: later ones must queue behind them, or a replay would undo them."""
        return bool(self._rows)

    def file(self, path: Path, data: bytes) -> None:
        self._files[path] = data

    def row(self, write: Callable[[], object]) -> None:
        self._rows.append(write)

    def read(self, path: Path) -> bytes | None:
        return self._files.get(path)

    def discard(self, path: Path) -> None:
        self._files.pop(path, None)

    def flush_files(self, write_file: Callable[[Path, bytes], None]) -> bool:
        """Write the held files (in a thread); False if one still finds no room."""
        try:
            for path in list(self._files):
                write_file(path, self._files[path])
                del self._files[path]
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            return False
        return True

    def flush_rows(self) -> bool:
        """Run the held database writes in their order (on the thread that owns the store); False if one
        still finds no room. True when nothing is held any more."""
        try:
            while self._rows:
                self._rows[0]()
                self._rows.pop(0)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            return False
        return not self._files
