"""End to end: inline mode lists the user's cutouts as the stickers Telegram already holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.storage import Store
from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram


def sticker_file_ids_sent(telegram: FakeTelegram, count: int) -> list[str]:
    """The file_ids the stand-in gave the bot's first ``count`` sendSticker calls, in order."""
    calls = telegram.wait_for_call("sendSticker", count=count, timeout=15)
    telegram.wait_for_call("sendDocument", count=count)  # sent after the sticker was recorded
    return [call.result["sticker"]["file_id"] for call in calls]


def ask_inline(telegram: FakeTelegram, user: int, offset: str = "") -> dict[str, Any]:
    query_id = telegram.inline_query(user, "", offset)
    telegram.wait_for_call("answerInlineQuery", where=lambda c: c.params["inline_query_id"] == query_id)
    answer = next(a for a in telegram.inline_answers if a["inline_query_id"] == query_id)
    return answer


def test_inline_query_offers_the_stickers_sent_earlier_newest_first(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(1))
        first = sticker_file_ids_sent(telegram, 1)[0]
        telegram.send_photo(USER, variant_jpeg(2))
        second = sticker_file_ids_sent(telegram, 2)[1]

        answer = ask_inline(telegram, USER)
        results = answer["results"]
        assert [r["type"] for r in results] == ["sticker", "sticker"]
        assert [r["sticker_file_id"] for r in results] == [second, first]
        assert answer["is_personal"] is True
        assert answer.get("next_offset", "") == ""

        # Another user sees only their own (none yet).
        assert ask_inline(telegram, OTHER_USER)["results"] == []


def test_inline_results_are_paginated_past_fifty(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(3))
        sent = sticker_file_ids_sent(telegram, 1)[0]
        # 54 more cutouts received later (the store is what the bot reads; the file_id is a real one).
        store = Store(Path(env["DATA_DIR"]) / "bot.sqlite3")
        for cutout_id in range(1000, 1054):
            store.remember_sent_sticker(USER, cutout_id, sent, "seeded")
        store.close()

        first_page = ask_inline(telegram, USER)
        assert len(first_page["results"]) == 50
        assert [r["id"] for r in first_page["results"]][:2] == ["c1053", "c1052"]
        assert first_page["next_offset"] == "50"

        second_page = ask_inline(telegram, USER, offset=first_page["next_offset"])
        ids = [r["id"] for r in second_page["results"]]
        assert ids[:4] == ["c1003", "c1002", "c1001", "c1000"]
        assert len(ids) == 5 and second_page["results"][-1]["sticker_file_id"] == sent
        assert second_page.get("next_offset", "") == ""
        assert set(ids).isdisjoint(r["id"] for r in first_page["results"])


def test_inline_query_with_no_cutouts_offers_the_send_me_a_photo_button(
    telegram: FakeTelegram, env: dict[str, str]
) -> None:
    with BotThread(env):
        answer = ask_inline(telegram, USER)
    assert answer["results"] == []
    assert answer["button"]["text"] == text("inline_empty")
    assert answer["button"]["start_parameter"]
