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
    """``cutouts_<user id>[_<volume>]_by_<bot>``: unique per user and volume, stable across restarts."""
    suffix = f"_by_{bot_username}"
    tail = f"{user_id}" if volume == 1 else f"{user_id}_{volume}"
    for prefix in ("cutouts_", "c"):  # the short prefix only for the longest bot usernames
        name = f"{prefix}{tail}{suffix}"
        if len(name) <= _NAME_MAX:
            return name
    raise ValueError(f"no sticker set name fits 64 characters for @{bot_username}")


def pack_title(
    first_name: str | None, volume: int, template: str = "{name}'s cutouts", anonymous: str = "My cutouts"
) -> str:
    """``template`` with the first name (``(2)``, ``(3)``... for later volumes), cut to 64 characters by
    shortening the name, so what the pack is stays readable; ``anonymous`` without a name."""
    who = " ".join((first_name or "").split())
    tail = f" ({volume})" if volume > 1 else ""
    if not who:
        return anonymous + tail
    title = template.format(name=who) + tail
    while _length(title) > _TITLE_MAX and who:
        who = who[:-1]
        title = template.format(name=who.rstrip() + "…") + tail
    return title


def pack_link(name: str) -> str:
    return f"https://t.me/addstickers/{name}"


def is_valid_pack_name(name: str, bot_username: str) -> bool:
    return (
        len(name) <= _NAME_MAX
        and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) is not None
        and "__" not in name
        and name.lower().endswith(f"_by_{bot_username.lower()}")
    )


def _length(title: str) -> int:
    # Telegram counts UTF-16 code units: an emoji in a first name may count twice.
    return len(title.encode("utf-16-le")) // 2
