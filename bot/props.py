"""Event props: what a prop file is called, and the ZIP of a chat's props for the printer."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePath

from bot.imaging import write_zip_parts
from bot.storage import Store

_UNSAFE = re.compile(r"[^\w.-]+")
_STEM_MAX = 80


def prop_file_name(source_name: str | None, message_id: int, extension: str) -> str:
    """``guest-0001.jpg`` -> ``guest-0001-prop.png``; a camera photo -> ``photo-<message id>-prop.png``."""
    stem = PurePath(source_name.replace("\\", "/")).stem if source_name else ""
    stem = _UNSAFE.sub("-", stem).strip("-.")[:_STEM_MAX]
    return f"{stem or f'photo-{message_id}'}-prop.{extension}"


@dataclass(frozen=True)
class PropArchive:
    """The ZIP parts of a chat's new props, and the time the next /zip counts from."""

    parts: list[Path]
    count: int
    until: float


async def zip_new_props(store: Store, chat_id: int, out_dir: Path) -> PropArchive:
    """ZIP every prop made in the chat since prop mode went on or the last /zip (off the event loop)."""
    settings = store.chat_settings(chat_id)
    props = store.props_since(chat_id, settings.zip_from)
    if not props:
        return PropArchive([], 0, settings.zip_from)
    files = [(Path(p.path), p.file_name) for p in props]
    stem = f"props-{time.strftime('%Y%m%d-%H%M%S')}"
    parts, count = await asyncio.to_thread(_write, files, out_dir, stem)
    # The next /zip starts just after the newest prop in this one: none made meanwhile is skipped.
    return PropArchive(parts, count, props[-1].created_at + 1e-6)


def _write(files: list[tuple[Path, str]], out_dir: Path, stem: str) -> tuple[list[Path], int]:
    # A file cleaned away by hand is left out rather than failing the whole archive.
    present = [(path, name) for path, name in files if path.is_file()]
    return write_zip_parts(present, out_dir, stem), len(present)
