"""SQLite storage under DATA_DIR: accepted jobs until answered, the cutout cache, inline history, packs.

Every query is a single short statement on a local WAL database, so it runs on the event loop:
a thread hop would cost more than the query.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    chat_type TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    thread_id INTEGER,
    lang TEXT,
    file_id TEXT NOT NULL,
    file_unique_id TEXT NOT NULL,
    origin_message_id INTEGER,
    file_size INTEGER,
    file_name TEXT,
    mime TEXT,
    status_message_id INTEGER,
    state TEXT NOT NULL,
    cache_key TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(state) WHERE state NOT IN ('done', 'failed');
-- The message that asked for a job: an update Telegram delivers again after a crash is not a new job.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_origin ON jobs(chat_id, origin_message_id);

CREATE TABLE IF NOT EXISTS cutouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_key TEXT NOT NULL UNIQUE,
    sticker_path TEXT NOT NULL,
    png_path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failed_keys (
    cache_key TEXT PRIMARY KEY,
    state INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_keys (
    file_unique_id TEXT NOT NULL,
    options TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    PRIMARY KEY (file_unique_id, options)
);
CREATE TABLE IF NOT EXISTS sent_stickers (
    user_id INTEGER NOT NULL,
    cutout_id INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    file_unique_id TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (user_id, cutout_id)
);
CREATE INDEX IF NOT EXISTS sent_stickers_recent ON sent_stickers(user_id, sent_at DESC);
CREATE TABLE IF NOT EXISTS packs (
    user_id INTEGER NOT NULL,
    volume INTEGER NOT NULL,
    name TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, volume)
);
CREATE TABLE IF NOT EXISTS pack_stickers (
    user_id INTEGER NOT NULL,
    cutout_id INTEGER NOT NULL,
    pack_name TEXT NOT NULL,
    PRIMARY KEY (user_id, cutout_id)
);
"""

# "delivering": the sticker went out, the rest of the answer not yet (a restart sends only the rest).
OPEN_STATES = ("accepted", "queued", "working", "delivering")


@dataclass
class JobRecord:
    """One accepted photo, kept until it is answered.

    ``state``: accepted → queued → working → delivering → done, or failed from any of them.
    """

    id: str
    user_id: int
    chat_id: int
    chat_type: str
    message_id: int
    file_id: str
    file_unique_id: str
    state: str = "accepted"
    origin_message_id: int | None = None
    thread_id: int | None = None
    lang: str | None = None
    file_size: int | None = None
    file_name: str | None = None
    mime: str | None = None
    status_message_id: int | None = None
    cache_key: str | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def is_private(self) -> bool:
        return self.chat_type == "private"

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobRecord) and other.id == self.id


@dataclass(frozen=True)
class CutoutRecord:
    id: int
    cache_key: str
    sticker_path: str
    png_path: str
    width: int
    height: int
    created_at: float


@dataclass(frozen=True)
class PackRecord:
    user_id: int
    volume: int
    name: str
    title: str
    count: int


_JOB_COLUMNS = [f.name for f in fields(JobRecord)]


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- jobs -----------------------------------------------------------------------------------
    def new_job(self, **values: Any) -> JobRecord:
        now = time.time()
        job = JobRecord(id=uuid.uuid4().hex, created_at=now, updated_at=now, **values)
        placeholders = ", ".join("?" for _ in _JOB_COLUMNS)
        self._db.execute(
            f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({placeholders})",
            [getattr(job, c) for c in _JOB_COLUMNS],
        )
        return job

    def update_job(self, job: JobRecord, **values: Any) -> None:
        for name, value in values.items():
            setattr(job, name, value)
        job.updated_at = time.time()
        values["updated_at"] = job.updated_at
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*values.values(), job.id])

    def job_for_origin(self, chat_id: int, origin_message_id: int) -> JobRecord | None:
        """The job a message already asked for, if any (an update delivered again after a crash)."""
        row = self._db.execute(
            "SELECT * FROM jobs WHERE chat_id = ? AND origin_message_id = ?", (chat_id, origin_message_id)
        ).fetchone()
        return JobRecord(**dict(row)) if row else None

    def open_jobs(self) -> list[JobRecord]:
        """Jobs accepted but not yet answered, oldest first (resumed at start-up)."""
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE state IN ({', '.join('?' for _ in OPEN_STATES)}) ORDER BY created_at",
            OPEN_STATES,
        ).fetchall()
        return [JobRecord(**dict(r)) for r in rows]

    def count_open_jobs(self, user_id: int) -> int:
        row = self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN ({', '.join('?' for _ in OPEN_STATES)})",
            (user_id, *OPEN_STATES),
        ).fetchone()
        return int(row[0])

    def prune_jobs(self, older_than: float) -> int:
        cur = self._db.execute(
            "DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < ?", (older_than,)
        )
        return cur.rowcount

    # --- cutout cache ---------------------------------------------------------------------------
    def cutout_by_key(self, cache_key: str) -> CutoutRecord | None:
        """The cached cutout, if its files are still under DATA_DIR (a cleaned-up copy is a miss)."""
        row = self._db.execute("SELECT * FROM cutouts WHERE cache_key = ?", (cache_key,)).fetchone()
        record = CutoutRecord(**dict(row)) if row else None
        if record is None or not (Path(record.sticker_path).is_file() and Path(record.png_path).is_file()):
            return None
        return record

    def cutout_by_id(self, cutout_id: int) -> CutoutRecord | None:
        row = self._db.execute("SELECT * FROM cutouts WHERE id = ?", (cutout_id,)).fetchone()
        return CutoutRecord(**dict(row)) if row else None

    def failed_state(self, cache_key: str) -> int | None:
        """The task state this image failed with for good (no face, refused content), if it did."""
        row = self._db.execute("SELECT state FROM failed_keys WHERE cache_key = ?", (cache_key,)).fetchone()
        return int(row[0]) if row else None

    def remember_failure(self, cache_key: str, state: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO failed_keys (cache_key, state, failed_at) VALUES (?, ?, ?)",
            (cache_key, state, time.time()),
        )

    def key_for_file(self, file_unique_id: str, options: str) -> str | None:
        row = self._db.execute(
            "SELECT cache_key FROM file_keys WHERE file_unique_id = ? AND options = ?",
            (file_unique_id, options),
        ).fetchone()
        return str(row[0]) if row else None

    def remember_file(self, file_unique_id: str, options: str, cache_key: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO file_keys (file_unique_id, options, cache_key) VALUES (?, ?, ?)",
            (file_unique_id, options, cache_key),
        )

    def add_cutout(
        self, cache_key: str, sticker_path: str, png_path: str, width: int, height: int
    ) -> CutoutRecord:
        # A re-made cutout keeps its id: pack buttons and sent stickers already point at it.
        self._db.execute(
            "INSERT INTO cutouts (cache_key, sticker_path, png_path, width, height, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(cache_key) DO UPDATE SET sticker_path = excluded.sticker_path, "
            "png_path = excluded.png_path, width = excluded.width, height = excluded.height",
            (cache_key, sticker_path, png_path, width, height, time.time()),
        )
        row = self._db.execute("SELECT * FROM cutouts WHERE cache_key = ?", (cache_key,)).fetchone()
        return CutoutRecord(**dict(row))

    # --- stickers the bot sent (inline mode) -----------------------------------------------------
    def remember_sent_sticker(self, user_id: int, cutout_id: int, file_id: str, file_unique_id: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO sent_stickers (user_id, cutout_id, file_id, file_unique_id, sent_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (user_id, cutout_id, file_id, file_unique_id, time.time()),
        )

    def sticker_file_id(self, cutout_id: int) -> str | None:
        row = self._db.execute(
            "SELECT file_id FROM sent_stickers WHERE cutout_id = ? ORDER BY sent_at DESC LIMIT 1",
            (cutout_id,),
        ).fetchone()
        return str(row[0]) if row else None

    def recent_stickers(self, user_id: int, *, offset: int = 0, limit: int = 50) -> list[tuple[int, str]]:
        """(cutout id, sticker file_id) the user received, newest first."""
        rows = self._db.execute(
            "SELECT cutout_id, file_id FROM sent_stickers WHERE user_id = ? "
            "ORDER BY sent_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    # --- sticker packs --------------------------------------------------------------------------
    def packs(self, user_id: int) -> list[PackRecord]:
        rows = self._db.execute(
            "SELECT * FROM packs WHERE user_id = ? ORDER BY volume", (user_id,)
        ).fetchall()
        return [PackRecord(**dict(r)) for r in rows]

    def add_pack(self, user_id: int, volume: int, name: str, title: str, count: int) -> PackRecord:
        self._db.execute(
            "INSERT OR REPLACE INTO packs (user_id, volume, name, title, count) VALUES (?, ?, ?, ?, ?)",
            (user_id, volume, name, title, count),
        )
        return PackRecord(user_id, volume, name, title, count)

    def set_pack_count(self, name: str, count: int) -> None:
        self._db.execute("UPDATE packs SET count = ? WHERE name = ?", (count, name))

    def drop_pack(self, name: str) -> None:
        """Forget a pack Telegram no longer knows (its owner deleted it)."""
        with self._tx() as db:
            db.execute("DELETE FROM pack_stickers WHERE pack_name = ?", (name,))
            db.execute("DELETE FROM packs WHERE name = ?", (name,))

    def pack_of_sticker(self, user_id: int, cutout_id: int) -> str | None:
        row = self._db.execute(
            "SELECT pack_name FROM pack_stickers WHERE user_id = ? AND cutout_id = ?", (user_id, cutout_id)
        ).fetchone()
        return str(row[0]) if row else None

    def remember_pack_sticker(self, user_id: int, cutout_id: int, pack_name: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO pack_stickers (user_id, cutout_id, pack_name) VALUES (?, ?, ?)",
                (user_id, cutout_id, pack_name),
            )
            db.execute("UPDATE packs SET count = count + 1 WHERE name = ?", (pack_name,))
