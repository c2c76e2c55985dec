"""What the pipeline and the chat side hand each other: the job a photo becomes, the pieces of an
answer, and :class:`Messenger`, the chat side's interface (``handlers/`` implements it for Telegram,
``bot/cli.py`` for a folder)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot import errors
from bot.domain import CutoutOptions
from bot.pipeline.status import Status
from bot.storage import JobRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """What the chat side knows about a photo when it arrives."""

    user_id: int
    chat_id: int
    chat_type: str
    message_id: int
    file_id: str
    file_unique_id: str
    origin_message_id: int | None = None  # the message that asked; one job per message, ever
    file_size: int | None = None
    file_name: str | None = None
    mime: str | None = None
    thread_id: int | None = None
    lang: str | None = None
    options: CutoutOptions = field(default_factory=CutoutOptions)
    source_name: str | None = None  # the user's file name, for naming props; None for a camera photo
    url: str | None = None  # a link to the picture: the API fetches it (file_id is then empty)
    batch_id: str | None = None  # answered together with the rest of its batch, in batch_index order
    batch_index: int = 0
    origin_part: int = 0  # which of the message's requests this is (several links in one message)


@dataclass(frozen=True)
class SentSticker:
    """The chat side's ids of a sticker it sent: reused for the next send, for inline mode and packs."""

    file_id: str
    file_unique_id: str


@dataclass(frozen=True)
class Sticker:
    """A job's 512 px cutout, as a sticker (WEBP) and a transparent PNG of the same picture."""

    cutout_id: (
        int | None
    )  # its id in the store (pack buttons, inline mode); None while it could not be recorded
    webp: bytes = field(repr=False)
    png: bytes = field(repr=False)


@dataclass(frozen=True)
class PropFile:
    """A print-ready prop on disk, ready to send as a document."""

    path: Path
    file_name: str
    width: int
    height: int
    scale: float  # 1.0 at the API's full resolution; less when shrunk under the upload limit


class Messenger(Protocol):
    """The chat side of a job. Implemented in ``handlers/``; every method may raise on network trouble."""

    async def post_status(self, job: JobRecord, status: Status, *, wanted: Callable[[], bool]) -> int | None:
        """Post a status message saying ``status`` (the photo waits); return its id. While it waits for
        its turn in Telegram's budget, ``wanted`` turning False drops it unsent: None then."""

    async def download(self, job: JobRecord) -> bytes: ...

    async def ping(self) -> None:
        """Raise unless the chat side answers (asked while it is unreachable, to know when it is back)."""

    async def fetch_sticker(self, file_id: str) -> bytes:
        """The bytes of a sticker sent earlier, by the chat side's id of it (it outlives our cache)."""

    async def show_status(self, job: JobRecord, status: Status, *, urgent: bool = False) -> None:
        """Edit the job's (or its batch's) status message; ``urgent``: it shows the photos' place for the
        first time (it goes with first status messages, not only in spare capacity)."""

    async def chat_action(self, job: JobRecord) -> None: ...

    async def send_sticker(
        self, job: JobRecord, sticker: Sticker, known_id: str | None
    ) -> SentSticker | None:
        """Send the sticker (re-using ``known_id``, the chat side's id of it, when it still works)."""

    async def send_png(self, job: JobRecord, sticker: Sticker, *, pack_button: bool, offline: bool) -> None:
        """Send the transparent 512 px PNG (with the pack button when no sticker carries it); ``offline``:
        say that the fallback engine made it."""

    async def send_jpg(self, job: JobRecord, jpg: bytes, *, offline: bool) -> None:
        """Send the cutout on white as a photo."""

    async def send_prop(self, job: JobRecord, prop: PropFile) -> None:
        """Send the print-ready prop as a document."""

    async def finish(self, job: JobRecord) -> None:
        """Every part is sent (of every photo of its batch): retire the status message."""

    async def fail(self, job: JobRecord, error: errors.CutoutError) -> None: ...

    async def alert_admins(self, text_key: str, lang: str | None, **values: Any) -> None:
        """Tell the bot's admins (in the language of the job that ran into it, if one did)."""


async def quietly(awaitable: Awaitable[None]) -> None:
    """Run a best-effort chat call (a status edit, a chat action): log failures, never raise."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("best-effort call failed: %s", type(exc).__name__)


__all__ = ["JobSpec", "Messenger", "PropFile", "SentSticker", "Sticker", "quietly"]
