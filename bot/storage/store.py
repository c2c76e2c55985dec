"""SQLite storage under DATA_DIR: accepted jobs until answered, the cutout cache, chat settings, props,
inline history, packs. The schema is upgraded in place at start-up (``bot/storage/migrations.py``).

Every query is a single short statement on a local WAL database, so it runs on the event loop:
a thread hop would cost more than the query.

At start-up the store makes sure it can really use its database, or says why in one line
(:class:`StoreUnavailable`): the folder can be written, no other process uses the database (an
exclusive lock on ``bot.lock`` beside ``bot.sqlite3``, ``cli.lock`` beside ``cli.sqlite3``, held
until :meth:`Store.close` or the process ends, even by ``kill -9``), and the file is a sound SQLite
database (``PRAGMA quick_check``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bot.domain import OPEN_STATES, ChatSettings, CutoutOptions, JobState
from bot.storage.migrations import migrate

PHOTO_FILE_NAME = "photo.jpg"  # a job's file_name when the user sent a photo, not a file


@dataclass
class JobRecord:
    """One accepted photo, kept until it is answered (``state``: see :class:`bot.domain.JobState`)."""

    id: str
    user_id: int
    chat_id: int
    chat_type: str
    message_id: int
    file_id: str
    file_unique_id: str
    state: JobState = JobState.ACCEPTED
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
    options: CutoutOptions = field(default_factory=CutoutOptions)
    source_name: str | None = None  # the user's file name, or None for a camera photo
    parts_sent: int = 0  # parts of the answer already sent (CutoutOptions.parts, in order)
    url: str | None = None  # a link to the picture (the API fetches it); None for a Telegram file
    batch_id: str | None = None  # jobs answered together, in order: an album, or one message's links
    batch_index: int = 0  # the order within the batch
    origin_part: int = 0  # which of the message's requests (several links in one message)
    task_id: str | None = None  # the backend's task still being worked on (resumed after a restart)
    task_at: float | None = None

    @property
    def is_private(self) -> bool:
        return self.chat_type == "private"

    @property
    def is_telegram_photo(self) -> bool:
        """Sent as a photo, not a file: Telegram re-encoded it, so its JPEG is Telegram's own."""
        return self.url is None and self.source_name is None and self.file_name == PHOTO_FILE_NAME

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
class ResultRecord:
    """The API's own full-resolution answer for one image and one set of API options."""

    cache_key: str
    path: str
    width: int
    height: int
    created_at: float


@dataclass(frozen=True)
class PropRecord:
    id: int
    chat_id: int
    job_id: str
    path: str
    file_name: str
    created_at: float


@dataclass(frozen=True)
class PackRecord:
    user_id: int
    volume: int
    name: str
    title: str
    count: int


_JOB_COLUMNS = [f.name for f in fields(JobRecord)]


def set_job(job: JobRecord, **values: Any) -> dict[str, Any]:
    """Change a job in memory; the fields to write, ``updated_at`` included."""
    for name, value in values.items():
        setattr(job, name, value)
    job.updated_at = time.time()
    return {**values, "updated_at": job.updated_at}


def utc_day(at: float | None = None) -> str:
    """The UTC date of ``at`` (now by default) as YYYY-MM-DD: the day /stats counts in."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


def _to_db(value: Any) -> Any:
    return value.to_json() if isinstance(value, CutoutOptions) else value


def _job(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["state"] = JobState(values["state"])
    values["options"] = CutoutOptions.from_json(values["options"])
    return JobRecord(**values)


class StoreUnavailable(Exception):
    """The database cannot be used; the message is one line for the operator: what, which file, what to do."""


# SQLite's primary result codes (an extended code's low byte) that say why a database cannot be used.
_BUSY, _LOCKED, _CORRUPT, _NOTADB = 5, 6, 11, 26
_IOERR, _FULL = 10, 13
_CANNOT_WRITE = {3, 8, _IOERR, 14}  # PERM, READONLY, IOERR, CANTOPEN


class _InUse(Exception):
    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


_held_locks: dict[str, list[int]] = {}  # a lock file's real path -> [its descriptor, stores holding it]
_held_guard = threading.Lock()


def _lock(path: Path) -> None:
    """Take the exclusive lock (``flock``) on ``path`` for this process: :class:`_InUse` at once if another
    process holds it, OSError if the file cannot be opened. Stores of one process share it (a test reads
    the database beside the bot it runs in a thread) until the last one closes; the kernel releases it
    when the process ends, however it ends. The file stays, holding the last holder's pid."""
    key = os.path.realpath(path)
    with _held_guard:
        if (held := _held_locks.get(key)) is not None:
            held[1] += 1
            return
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise _InUse(pid) from None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # only a hint for the message (a full disk may refuse it)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held_locks[key] = [fd, 1]


def _unlock(path: Path) -> None:
    key = os.path.realpath(path)
    with _held_guard:
        held = _held_locks.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _held_locks[key]
            os.close(held[0])  # closing the only descriptor releases the lock


def _pid_in(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def _os_user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _cannot_write(folder: Path, reason: str) -> str:
    return (
        f"cannot write to DATA_DIR {folder} ({reason}): make it and the files in it writable by the user "
        f"the bot runs as ({_os_user()}), or set DATA_DIR to a folder that is"
    )


def _in_use(path: Path, pid: int | None) -> str:
    who = f" (pid {pid})" if pid else ""
    return (
        f"another bot or a tool{who} holds {path}: stop that process first. Two bots must not share one "
        "DATA_DIR; to run two, give each its own DATA_DIR and let them share the API key through REDIS_URL"
    )


def _damaged(path: Path, reason: str) -> str:
    return (
        f"{path} is damaged ({reason}): restore it from a backup, or move it (with its -wal and -shm files) "
        "away to start afresh, losing the photos not yet answered and the cache index"
    )


def _explain(path: Path, exc: sqlite3.Error) -> str | None:
    """The operator's line for an SQLite error at open; None for one that is not about the file (a bug)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (_BUSY, _LOCKED):  # a tool holds a write lock (a bot would hold bot.lock too)
        return _in_use(path, None)
    if primary in (_CORRUPT, _NOTADB):
        return _damaged(path, str(exc))
    if primary == _FULL or (primary == _IOERR and _no_room(path.parent)):  # WAL's -shm: an I/O error
        return f"no room left on the disk of DATA_DIR {path.parent} to open {path.name}: free some space there"
    if primary in _CANNOT_WRITE:
        return _cannot_write(path.parent, f"{path.name}: {exc}")
    return None


def _no_room(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _check_writable(db: sqlite3.Connection) -> None:
    """Write to the database once, changing nothing: SQLite opens a file it may not write read-only, and
    would otherwise say so only at the first photo. A full disk is not refused here: the service holds
    its writes until there is room."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    try:
        db.executescript(f"BEGIN IMMEDIATE; PRAGMA user_version = {version}; COMMIT;")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        code = getattr(exc, "sqlite_errorcode", None)
        if not (isinstance(code, int) and code & 0xFF == _FULL):
            raise


class Store:
    def __init__(self, path: Path) -> None:
        """Open (or create) the database at ``path`` and upgrade it; :class:`StoreUnavailable` says in one
        line why it cannot be used."""
        self.path = path
        self._lock_path = path.with_suffix(".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _lock(self._lock_path)
        except _InUse as exc:
            raise StoreUnavailable(_in_use(path, exc.pid)) from None
        except (FileExistsError, NotADirectoryError):
            raise StoreUnavailable(_cannot_write(path.parent, "a file stands in its path")) from None
        except OSError as exc:
            raise StoreUnavailable(_cannot_write(path.parent, exc.strerror or str(exc))) from None
        self._locked = True
        try:
            self._db = self._open(path)
        except BaseException:
            self._release()
            raise

    def _open(self, path: Path) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            found = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
            if found != ["ok"]:
                details = [line for line in "\n".join(found).splitlines() if not line.startswith("***")]
                raise StoreUnavailable(_damaged(path, f"quick_check: {(details or found)[0][:120]}"))
            self.upgraded_from = migrate(db)
            _check_writable(db)
            return db
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if (message := _explain(path, exc)) is None:
                raise
            raise StoreUnavailable(message) from None
        except BaseException:
            if db is not None:
                db.close()
            raise

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            _unlock(self._lock_path)

    def close(self) -> None:
        self._db.close()
        self._release()

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
            [_to_db(getattr(job, c)) for c in _JOB_COLUMNS],
        )
        return job

    def update_job(self, job: JobRecord, **values: Any) -> None:
        self.write_job(job_id=job.id, values=set_job(job, **values))

    def write_job(self, job_id: str, values: dict[str, Any]) -> None:
        """Write a job's changed fields (see :func:`set_job`) to the database."""
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?", [*map(_to_db, values.values()), job_id]
        )

    def job_for_origin(self, chat_id: int, origin_message_id: int, part: int = 0) -> JobRecord | None:
        """The job a message already asked for, if any (an update delivered again after a crash)."""
        row = self._db.execute(
            "SELECT * FROM jobs WHERE chat_id = ? AND origin_message_id = ? AND origin_part = ?",
            (chat_id, origin_message_id, part),
        ).fetchone()
        return _job(row) if row else None

    def open_jobs(self) -> list[JobRecord]:
        """Jobs accepted but not yet answered, oldest first (resumed at start-up)."""
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE state IN ({', '.join('?' for _ in OPEN_STATES)}) ORDER BY created_at",
            OPEN_STATES,
        ).fetchall()
        return [_job(r) for r in rows]

    def count_open_jobs(self, user_id: int) -> int:
        row = self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN ({', '.join('?' for _ in OPEN_STATES)})",
            (user_id, *OPEN_STATES),
        ).fetchone()
        return int(row[0])

    def count_all_open_jobs(self) -> int:
        row = self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' for _ in OPEN_STATES)})", OPEN_STATES
        ).fetchone()
        return int(row[0])

    def prune_jobs(self, older_than: float) -> int:
        cur = self._db.execute(
            "DELETE FROM jobs WHERE state IN (?, ?) AND updated_at < ?",
            (JobState.DONE, JobState.FAILED, older_than),
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

    def cutout_record(self, cache_key: str) -> CutoutRecord | None:
        """The cutout's row, whether or not its files are still on disk (they may have been evicted)."""
        row = self._db.execute("SELECT * FROM cutouts WHERE cache_key = ?", (cache_key,)).fetchone()
        return CutoutRecord(**dict(row)) if row else None

    def cutout_by_id(self, cutout_id: int) -> CutoutRecord | None:
        row = self._db.execute("SELECT * FROM cutouts WHERE id = ?", (cutout_id,)).fetchone()
        return CutoutRecord(**dict(row)) if row else None

    def failed_text(self, cache_key: str) -> str | None:
        """The text this image failed with for good (no face, refused content), if it did."""
        row = self._db.execute("SELECT text_key FROM failed_keys WHERE cache_key = ?", (cache_key,)).fetchone()
        return str(row[0]) if row else None

    def remember_failure(self, cache_key: str, text_key: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO failed_keys (cache_key, state, failed_at, text_key) VALUES (?, 0, ?, ?)",
            (cache_key, time.time(), text_key),
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

    def result_by_key(self, cache_key: str) -> ResultRecord | None:
        """The API's full-resolution result, if its file is still under DATA_DIR."""
        row = self._db.execute("SELECT * FROM results WHERE cache_key = ?", (cache_key,)).fetchone()
        record = ResultRecord(**dict(row)) if row else None
        if record is None or not Path(record.path).is_file():
            return None
        return record

    def add_result(self, cache_key: str, path: str, width: int, height: int) -> ResultRecord:
        record = ResultRecord(cache_key, path, width, height, time.time())
        self._db.execute(
            "INSERT OR REPLACE INTO results (cache_key, path, width, height, created_at) VALUES (?, ?, ?, ?, ?)",
            (cache_key, path, width, height, record.created_at),
        )
        return record

    # --- daily counts (/stats) -----------------------------------------------------------------
    def count(self, name: str, label: str = "", *, at: float | None = None) -> None:
        """Add one to today's (UTC) count of ``name`` (and ``label``: a failure's reason, a user id)."""
        self._db.execute(
            "INSERT INTO daily_counts (day, name, label, count) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (day, name, label) DO UPDATE SET count = count + 1",
            (utc_day(at), name, label),
        )

    def counts_since(self, day: str) -> list[tuple[str, str, str, int]]:
        """(day, name, label, count) for every day from ``day`` (YYYY-MM-DD, UTC) on."""
        rows = self._db.execute(
            "SELECT day, name, label, count FROM daily_counts WHERE day >= ?", (day,)
        ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def prune_counts(self, before_day: str) -> int:
        return self._db.execute("DELETE FROM daily_counts WHERE day < ?", (before_day,)).rowcount

    # --- chat settings and props ----------------------------------------------------------------
    def chat_settings(self, chat_id: int) -> ChatSettings:
        row = self._db.execute("SELECT * FROM chat_settings WHERE chat_id = ?", (chat_id,)).fetchone()
        if row is None:
            return ChatSettings(chat_id)
        return ChatSettings(
            chat_id=chat_id,
            options=CutoutOptions.from_json(row["options"]),
            emoji=row["emoji"],
            props_since=row["props_since"],
            zip_since=row["zip_since"],
            no_stickers=bool(row["no_stickers"]),
            language=row["language"],
        )

    def save_chat_settings(self, settings: ChatSettings) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO chat_settings "
            "(chat_id, options, emoji, props_since, zip_since, no_stickers, language) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                settings.chat_id,
                settings.options.to_json(),
                settings.emoji,
                settings.props_since,
                settings.zip_since,
                int(settings.no_stickers),
                settings.language,
            ),
        )

    def published(self, surface: str) -> str | None:
        """The digest of what was last published to a Telegram surface (the menu in one language...)."""
        row = self._db.execute("SELECT digest FROM published WHERE surface = ?", (surface,)).fetchone()
        return str(row[0]) if row else None

    def set_published(self, surface: str, digest: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO published (surface, digest) VALUES (?, ?)", (surface, digest))

    def add_prop(self, chat_id: int, job_id: str, path: str, file_name: str) -> None:
        self._db.execute(
            "INSERT INTO props (chat_id, job_id, path, file_name, created_at) VALUES (?, ?, ?, ?, ?)",
            (chat_id, job_id, path, file_name, time.time()),
        )

    def props_since(self, chat_id: int, since: float) -> list[PropRecord]:
        """The props made in a chat since ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM props WHERE chat_id = ? AND created_at >= ? ORDER BY created_at, id",
            (chat_id, since),
        ).fetchall()
        return [PropRecord(**dict(r)) for r in rows]

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
