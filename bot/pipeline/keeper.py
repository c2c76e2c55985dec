"""Everything the pipeline keeps under DATA_DIR (uploads, the API's results, renders, props) and the
store's rows for them, with a full disk in mind.

New photos pause while the disk is short of space (``DISK_MIN_FREE_MB``), so the photos already taken
have room to finish. A write that fails for want of space all the same is held in memory, read from
there, and written once there is room; the store's writes are then kept in their order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bot import errors
from bot.pipeline.contracts import Sticker
from bot.pipeline.imagework import started_pool
from bot.storage import JobRecord, ResultRecord, Store, cache
from bot.storage.disk import RECHECK_SECONDS, DiskSpace, HeldWrites, is_disk_full
from bot.storage.store import set_job

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Tells the bot's admins (a text key and the MB free).
Alert = Callable[[str, int], Awaitable[None]]
#: Files just written and kept in memory for their first read, up to this many bytes (oldest dropped).
HAND_OVER_BYTES = 16 << 20


class Keeper:
    def __init__(self, store: Store, data_dir: Path, disk: DiskSpace, alert: Alert) -> None:
        self.store = store
        self.disk = disk
        self.incoming = data_dir / "incoming"
        self.cutouts = data_dir / "cutouts"
        self.results = data_dir / "results"
        self.props = data_dir / "props"
        for folder in (self.incoming, self.cutouts, self.results, self.props):
            folder.mkdir(parents=True, exist_ok=True)
        self._alert = alert
        self._held = HeldWrites()
        #: Records of what is held in memory (the store may not have them yet), by cache key.
        self.held_results: dict[str, ResultRecord] = {}
        self.held_renders: dict[str, Sticker] = {}
        self._handed: dict[Path, bytes] = {}  # written, not yet read: see write(hand_over=True)
        self._watch: asyncio.Task[None] | None = None
        # An unlink waits for the file system's journal, seconds while much is being written: never
        # on the event loop, and on a thread of its own so it holds up no imaging worker.
        self._remover = started_pool(1, "keeper-unlink")
        self._removing: set[asyncio.Future[None]] = set()

    # --- places -------------------------------------------------------------------------------
    def incoming_path(self, job: JobRecord) -> Path:
        return self.incoming / f"{job.id}.img"

    def cutout_paths(self, key: str) -> tuple[Path, Path]:
        folder = self.cutouts / key[:2]
        return folder / f"{key}.webp", folder / f"{key}.png"

    def result_path(self, key: str, extension: str) -> Path:
        return self.results / key[:2] / f"{key}.{extension}"

    def prop_path(self, job: JobRecord, extension: str) -> Path:
        return self.props / str(job.chat_id) / f"{job.id}.{extension}"

    def forget_upload(self, job: JobRecord) -> None:
        """The job is finished: its prepared upload goes (the file is deleted in the background)."""
        path = self.incoming_path(job)
        self._handed.pop(path, None)
        self._held.discard(path)
        removing = asyncio.get_running_loop().run_in_executor(self._remover, _remove, path)
        self._removing.add(removing)
        removing.add_done_callback(self._removing.discard)

    # --- new photos ---------------------------------------------------------------------------
    def new_job(self, **values: Any) -> JobRecord:
        """Record a new photo, or refuse it (:class:`errors.Refused`, no API call) while space is short."""
        if self._watch is not None or self.disk.low():
            self._out_of_space()
            raise errors.Refused("disk_full")
        try:
            return self.store.new_job(**values)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            raise errors.Refused("disk_full") from None

    # --- writes and reads ---------------------------------------------------------------------
    async def write(self, files: dict[Path, bytes], *, hand_over: bool = False) -> bool:
        """Write files off the loop; True if they are on disk, False if the disk is full and they are held
        in memory until it is not (they are read from there meanwhile).

        ``hand_over``: the caller reads them again soon (a fresh API answer, rendered next); their first
        :meth:`read` takes these bytes instead of reading the file back.
        """
        try:
            await asyncio.to_thread(_write_files, files)
            if hand_over:
                self._hand_over(files)
            return True
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            for path, data in files.items():
                self._held.file(path, data)
            return False

    async def read(self, path: Path) -> bytes:
        """A file's bytes, held in memory or on disk (a cached file read is marked used: evicted last)."""
        if (handed := self._handed.pop(path, None)) is not None:
            return handed  # just written: its mtime already marks it used
        held = self._held.read(path)
        return held if held is not None else await asyncio.to_thread(read_used, path)

    def _hand_over(self, files: dict[Path, bytes]) -> None:
        self._handed.update(files)
        size = sum(map(len, self._handed.values()))
        while size > HAND_OVER_BYTES:  # never read (the job failed, or reads elsewhere): the oldest go
            size -= len(self._handed.pop(next(iter(self._handed))))

    def db(self, write: Callable[[], object]) -> bool:
        """Run one store write; True if done, False if the disk is full and it waits for room (in order)."""
        if self._held.rows_waiting:
            self._held.row(write)
            return False
        try:
            write()
            return True
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc)
            self._held.row(write)
            return False

    def db_result(self, write: Callable[[], T]) -> T | None:
        """Run one store write and return its result; None if the disk is full and it waits for room."""
        results: list[T] = []
        done = self.db(lambda: results.append(write()))
        return results[0] if done else None

    def save(self, job: JobRecord, **values: Any) -> None:
        """Record a job's progress: in memory at once, in the store now or once there is room."""
        self.db(partial(self.store.write_job, job.id, set_job(job, **values)))

    def tally(self, name: str, label: str = "") -> None:
        """Count an event for /stats (held with the rest while the disk is full); never fails the photo."""
        try:
            self.db(partial(self.store.count, name, label, at=time.time()))
        except sqlite3.Error as exc:
            log.warning("could not count %s: %s", name, exc)

    # --- a full disk --------------------------------------------------------------------------
    def _out_of_space(self, failure: BaseException | None = None) -> None:
        """One ERROR line and one admin alert per incident; a watcher resumes intake (and writes what is
        held) once there is room again."""
        if failure is not None:
            self.disk.ran_out()
        if self._watch is not None:
            return
        log.error(
            "the disk under DATA_DIR is full (%d MB free, DISK_MIN_FREE_MB is %d%s): new photos are "
            "refused until there is room; photos already taken are still answered",
            self.disk.free() >> 20,
            self.disk.min_free >> 20,
            f"; a write failed: {failure.__class__.__name__}" if failure is not None else "",
        )
        self._watch = asyncio.get_running_loop().create_task(self._watch_disk(), name="disk-watch")

    async def _watch_disk(self) -> None:
        await self._alert("admin_disk_full", self.disk.free() >> 20)
        try:
            # Free space has no event to wait on: it is polled, every few seconds, during an incident only.
            while self.disk.low() or not await self._flush():  # noqa: ASYNC110
                await asyncio.sleep(RECHECK_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("writing what the full disk held failed")
        self.held_results.clear()
        self.held_renders.clear()
        self._watch = None
        free_mb = self.disk.free() >> 20
        log.warning("the disk has room again (%d MB free): taking new photos", free_mb)
        await self._alert("admin_disk_recovered", free_mb)

    async def _flush(self) -> bool:
        """Write what the full disk held: files off the loop, then the store writes in their order."""
        return await asyncio.to_thread(self._held.flush_files, write_file) and self._held.flush_rows()

    async def close(self) -> None:
        """At a stop: a last try at writing what is held; the deletions under way are finished."""
        if self._watch is not None:
            self._watch.cancel()
        if self._held and not await self._flush():
            log.error("the disk is still full: %d write(s) held in memory are lost at exit", len(self._held))
        if self._removing:
            await asyncio.wait(self._removing)


def read_used(path: str | Path) -> bytes:
    """A cached file's bytes; reading it marks it used, so it is the last to be evicted."""
    data = Path(path).read_bytes()
    cache.touch(path)
    return data


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # a leftover upload costs disk space, not the answer
        log.warning("could not delete %s: %s", path.name, exc)


def _write_files(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        write_file(path, data)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two jobs may write the same cached file at once.
    tmp = path.with_suffix(f"{path.suffix}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file would keep the disk full
        raise
