"""ZIP archives of finished files, split into parts that each fit in one Telegram upload."""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

ZIP_MAX_PART_BYTES = 49 * 1024 * 1024  # under Telegram's 50 MB upload limit
# Upper bounds of what ZIP adds, counted in full whether or not zipfile writes it: per entry a
# local header (30 bytes), a data descriptor (16), a central directory record (46), the name
# twice and room for ZIP64 extra fields; per archive the end records, ZIP64 ones included.
_ENTRY_OVERHEAD = 30 + 16 + 46 + 2 * 32
_ARCHIVE_OVERHEAD = 22 + 56 + 20


def write_zip_parts(
    files: Sequence[tuple[Path, str]], out_dir: Path, stem: str, *, max_part_bytes: int = ZIP_MAX_PART_BYTES
) -> list[Path]:
    """Pack ``(path on disk, name in the ZIP)`` pairs into ``<stem>.zip``, or ``<stem>-part1.zip``...

    Files are stored as they are (PNG and JPEG are compressed already), streamed from disk, in the
    order given. Each part is at most ``max_part_bytes``; a file that cannot fit in one raises
    ValueError before anything is written. A file that is missing is left out. A name used twice
    gets ``-2``, ``-3``... before its extension, so the parts unpack into one folder. Returns the
    parts written, none if no file was left.
    """
    entries: list[tuple[Path, str, int]] = []
    taken: set[str] = set()
    for path, name in files:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        unique = _unique_name(name, taken)
        cost = size + len(unique.encode()) * 2 + _ENTRY_OVERHEAD
        if cost + _ARCHIVE_OVERHEAD > max_part_bytes:
            raise ValueError(f"{path} ({size} bytes) does not fit in a ZIP of {max_part_bytes} bytes")
        entries.append((path, unique, cost))

    parts: list[list[tuple[Path, str, int]]] = []
    room = 0
    for entry in entries:
        if not parts or entry[2] > room:
            parts.append([])
            room = max_part_bytes - _ARCHIVE_OVERHEAD
        parts[-1].append(entry)
        room -= entry[2]

    if parts:
        out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, part in enumerate(parts, start=1):
        target = out_dir / (f"{stem}.zip" if len(parts) == 1 else f"{stem}-part{number}.zip")
        if _write_part(target, part):
            written.append(target)
    return written


def _write_part(target: Path, entries: list[tuple[Path, str, int]]) -> bool:
    """Write one archive (complete, or not at all); False if every file had gone meanwhile."""
    partial = target.with_name(target.name + ".partial")
    stored = 0
    try:
        # strict_timestamps=False: a file dated before 1980 is stored as 1980, not refused
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, strict_timestamps=False) as archive:
            for path, name, _ in entries:
                try:
                    archive.write(path, name)  # streams the file in chunks
                except FileNotFoundError:
                    continue
                stored += 1
        if stored:
            os.replace(partial, target)
            return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return False


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``...: the first not in ``taken`` (any case), which it joins."""
    path = PurePosixPath(name)
    # the extension of the file name only, not a dot in a folder's name
    stem, suffix = (name[: -len(path.suffix)], path.suffix) if path.suffix else (name, "")
    candidate, number = name, 1
    while candidate.casefold() in taken:
        number += 1
        candidate = f"{stem}-{number}{suffix}"
    taken.add(candidate.casefold())
    return candidate
