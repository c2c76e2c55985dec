"""Sticker pack names and titles stay within Telegram's rules for any user, volume and bot username."""

from __future__ import annotations

import re

import pytest

from bot.packs import is_valid_pack_name, pack_link, pack_name, pack_title

LONGEST_BOT = "a" * 29 + "bot"  # Telegram usernames are at most 32 characters
ODD_IDS = [1, 777, 1001, 2**31 - 1, 7_123_456_789, 2**52 - 1]


def follows_telegram_rules(name: str, bot: str) -> bool:
    """Telegram's rules, spelled out independently of bot.packs."""
    return (
        len(name) <= 64
        and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) is not None
        and "__" not in name
        and name.lower().endswith(f"_by_{bot}".lower())
    )


@pytest.mark.parametrize("bot", ["cutout_test_bot", "Cutout_Test_Bot", "abcbot", LONGEST_BOT])
@pytest.mark.parametrize("user_id", ODD_IDS)
@pytest.mark.parametrize("volume", [1, 2, 9, 10, 120, 9999])
def test_pack_names_are_valid_for_odd_user_ids_volumes_and_long_bot_usernames(
    user_id: int, volume: int, bot: str
) -> None:
    name = pack_name(user_id, volume, bot)
    assert follows_telegram_rules(name, bot), name
    assert is_valid_pack_name(name, bot)
    assert str(user_id) in name


def test_pack_names_are_unique_per_user_and_volume() -> None:
    names = {pack_name(u, v, LONGEST_BOT) for u in ODD_IDS for v in range(1, 200)}
    assert len(names) == len(ODD_IDS) * 199


def test_pack_names_read_well_and_do_not_change() -> None:
    # Existing packs are found again by these names: they must stay stable.
    assert pack_name(1001, 1, "cutout_test_bot") == "cutouts_1001_by_cutout_test_bot"
    assert pack_name(1001, 2, "cutout_test_bot") == "cutouts_1001_2_by_cutout_test_bot"
    assert (
        pack_link("cutouts_1001_by_cutout_test_bot")
        == "https://t.me/addstickers/cutouts_1001_by_cutout_test_bot"
    )


def test_invalid_names_are_recognised() -> None:
    for bad in (
        "1cutouts_by_cutout_test_bot",
        "cut__outs_by_cutout_test_bot",
        "cutouts_by_other_bot",
        "x" * 65,
    ):
        assert not is_valid_pack_name(bad, "cutout_test_bot")


@pytest.mark.parametrize(
    ("first_name", "volume", "title"),
    [
        ("Ada", 1, "Ada's cutouts"),
        ("Ada", 2, "Ada's cutouts (2)"),
        ("  Ada   Lovelace ", 1, "Ada Lovelace's cutouts"),
        ("", 1, "My cutouts"),
        (None, 3, "My cutouts (3)"),
        ("   ", 1, "My cutouts"),
        ("Zoë 🦊", 1, "Zoë 🦊's cutouts"),
    ],
)
def test_titles_come_from_the_first_name(first_name: str | None, volume: int, title: str) -> None:
    assert pack_title(first_name, volume) == title


@pytest.mark.parametrize("first_name", ["B" * 64, "🦊" * 64, "Bartholomew " * 6])
@pytest.mark.parametrize("volume", [1, 2, 120])
def test_long_first_names_are_shortened_to_a_valid_title(first_name: str, volume: int) -> None:
    title = pack_title(first_name, volume)
    assert 1 <= len(title.encode("utf-16-le")) // 2 <= 64
    assert title.endswith("…'s cutouts" + (f" ({volume})" if volume > 1 else ""))
    assert title.startswith(first_name[:8])
