"""Everything the bot keeps on disk: SQLite under DATA_DIR, upgraded in place at start-up."""

from bot.storage.store import (
    PHOTO_FILE_NAME,
    CutoutRecord,
    JobRecord,
    PackRecord,
    PropRecord,
    ResultRecord,
    Store,
    StoreUnavailable,
)

__all__ = [
    "PHOTO_FILE_NAME",
    "CutoutRecord",
    "JobRecord",
    "PackRecord",
    "PropRecord",
    "ResultRecord",
    "Store",
    "StoreUnavailable",
]
