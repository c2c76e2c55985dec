"""The database schema, one numbered step at a time.

``PRAGMA user_version`` holds the number of steps applied. At start-up the store applies the missing
ones in order, each in one transaction, so a database made by any earlier release is upgraded in
place with nothing lost. A step is never edited once released: change the schema with a new step.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the first release (made before user_version was set, hence IF NOT EXISTS throughout).
    """
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
    """,
    # 2: cutout options and props. The cache keeps the API's full-resolution result ("results");
    # "cutouts" now holds the 512 px renders made from it, one per render option. A job carries its
    # options, the name of its source, and how many parts of its answer went out (a v1 job that was
    # "delivering" had sent its sticker, the first part).
    """
    ALTER TABLE jobs ADD COLUMN options TEXT;
    ALTER TABLE jobs ADD COLUMN source_name TEXT;
    ALTER TABLE jobs ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET parts_sent = 1 WHERE state = 'delivering';
    CREATE TABLE results (
        cache_key TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE chat_settings (
        chat_id INTEGER PRIMARY KEY,
        options TEXT NOT NULL,
        emoji TEXT NOT NULL,
        props_since REAL,
        zip_since REAL
    );
    CREATE TABLE props (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chat_id INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        path TEXT NOT NULL,
        file_name TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX props_by_chat ON props(chat_id, created_at);
    """,
    # 3: links, albums and chats that refuse stickers. A job may come from a link (url) and belong to
    # a batch answered in order (an album, or the links of one message); one message may ask for
    # several jobs, so a job is unique per (chat, message, part).
    """
    ALTER TABLE jobs ADD COLUMN url TEXT;
    ALTER TABLE jobs ADD COLUMN batch_id TEXT;
    ALTER TABLE jobs ADD COLUMN batch_index INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN origin_part INTEGER NOT NULL DEFAULT 0;
    DROP INDEX jobs_origin;
    CREATE UNIQUE INDEX jobs_origin ON jobs(chat_id, origin_message_id, origin_part);
    ALTER TABLE chat_settings ADD COLUMN no_stickers INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: languages. A user's (or a group's) chosen language; what was last published to Telegram's own
    # surfaces (menu, descriptions), so a restart with nothing changed publishes nothing.
    """
    ALTER TABLE chat_settings ADD COLUMN language TEXT;
    CREATE TABLE published (
        surface TEXT PRIMARY KEY,
        digest TEXT NOT NULL
    );
    """,
    # 5: a failure remembered for an image keeps the text it was told with, whatever engine failed; the
    # engine's own codes (PicWish's states, recorded by schema 1) are read once here and no more.
    """
    ALTER TABLE failed_keys ADD COLUMN text_key TEXT NOT NULL DEFAULT 'api_failed';
    UPDATE failed_keys SET text_key = CASE state
        WHEN -16 THEN 'content_refused' WHEN -10 THEN 'content_refused'
        WHEN -14 THEN 'no_face' WHEN -11 THEN 'no_face'
        WHEN -7 THEN 'corrupt_image'
        ELSE 'api_failed' END;
    """,
    # 6: the task a backend is still working on for a job (its id and when it was made), so a restart,
    # even after kill -9, waits for that task instead of paying for the photo again.
    """
    ALTER TABLE jobs ADD COLUMN task_id TEXT;
    ALTER TABLE jobs ADD COLUMN task_at REAL;
    """,
    # 7: what the bot did each day (UTC), for /stats: kept apart from the jobs, which are pruned sooner.
    """
    CREATE TABLE daily_counts (
        day TEXT NOT NULL,
        name TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        count INTEGER NOT NULL,
        PRIMARY KEY (day, name, label)
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was made by a newer release than this one."""


def migrate(db: sqlite3.Connection) -> int:
    """Apply the steps ``db`` lacks; return the version it had before."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(f"schema version {found}, this release knows up to {SCHEMA_VERSION}")
    for number in range(found + 1, SCHEMA_VERSION + 1):
        # executescript commits first; the explicit transaction makes each step all or nothing.
        try:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return found
