"""Sticker pack names and titles within Telegram's rules.

``name``: letters, digits and underscores, starts with a letter, no double underscore, ends with
``_by_<bot username>``, at most 64 characters. ``title``: 1-64 characters. A regular set holds 120.
"""

from __future__ import annotations

import re

PACK_CAPACITY = 120
_NAME_MAX = 64
_TITLE_MAX = 64


def pack_name(user_id: int, volume: int, bot_username: str) -> str:
    suffix = f"_by_{bot_username}"
    core = f"cutouts_{user_id}" if volume == 1 else f"cutouts_{user_id}_{volume}"
    room = _NAME_MAX - len(suffix)
    if len(core) > room:  # a very long bot username: keep the unique part
        core = ("c" + core[-(room - 1) :].lstrip("_")) if room > 1 else "c"
    return re.sub(r"_+", "_", core) + suffix


def pack_title(first_name: str | None, volume: int) -> str:
    who = (first_name or "").strip() or "My"
    base = f"{who}'s cutouts" if who != "My" else "My cutouts"
    tail = f" ({volume})" if volume > 1 else ""
    if len(base) + len(tail) > _TITLE_MAX:
        base = base[: _TITLE_MAX - len(tail) - 1].rstrip() + "…"
    return base + tail


def pack_link(name: str) -> str:
    return f"https://t.me/addstickers/{name}"


def is_valid_pack_name(name: str, bot_username: str) -> bool:
    return (
        len(name) <= _NAME_MAX
        and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) is not None
        and "__" not in name
        and name.lower().endswith(f"_by_{bot_username.lower()}")
    )
