"""End to end: the "Add to my pack" button, /pack, rollover at 120 and flood waits, through the stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from bot.packs import is_valid_pack_name, pack_link
from bot.storage import Store
from bot.texts import text
from tests.conftest import OTHER_USER, USER
from tests.harness import BOT_TOKEN, BotThread, astronaut_jpeg, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import Call, FakeTelegram

BOT = "cutout_test_bot"
ADA_PACK = f"cutouts_{USER}_by_{BOT}"
GROUP = -100_777


def cutout(telegram: FakeTelegram, user: int, image: bytes, *, chat_id: int | None = None) -> dict[str, Any]:
    """Send a photo (privately, or captioned /cutout in a group); return the sticker message the bot shows."""
    before = len(telegram.calls_to("sendSticker"))
    if chat_id is None:
        telegram.send_photo(user, image)
    else:
        telegram.send_photo(user, image, chat_id=chat_id, chat_type="supergroup", caption="/cutout")
    call = telegram.wait_for_call("sendSticker", count=before + 1, timeout=15)[before]
    assert call.ok, call.error
    message: dict[str, Any] = call.result
    return message


def press(telegram: FakeTelegram, user: int, message: dict[str, Any], *, timeout: float = 10) -> Call:
    """Press the message's pack button as ``user``; return the bot's answerCallbackQuery call."""
    data = message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    query_id = telegram.press_button(user, message, data)
    answer = telegram.wait_for_call(
        "answerCallbackQuery", where=lambda c: c.params["callback_query_id"] == query_id, timeout=timeout
    )[0]
    assert answer.ok, answer.error
    return answer


def set_of(telegram: FakeTelegram, name: str) -> dict[str, Any]:
    return telegram.sticker_sets[name]


def fill_set(telegram: FakeTelegram, owner: int, name: str, up_to: int) -> None:
    """Add stickers to ``name`` straight through the Bot API, as if the user had pressed many buttons."""
    file_id = set_of(telegram, name)["stickers"][0]["file_id"]
    sticker = json.dumps({"sticker": file_id, "format": "static", "emoji_list": ["🙂"]})
    with httpx.Client(base_url=f"{telegram.url}/bot{BOT_TOKEN}") as api:
        while len(set_of(telegram, name)["stickers"]) < up_to:
            response = api.post("/addStickerToSet", data={"user_id": owner, "name": name, "sticker": sticker})
            assert response.json()["ok"], response.text


def pack_reply(telegram: FakeTelegram, user: int) -> str:
    before = len(telegram.calls_to("sendMessage"))
    telegram.send_text(user, "/pack")
    reply: str = telegram.wait_for_call("sendMessage", count=before + 1)[before].params["text"]
    return reply


def test_first_press_creates_the_pack_later_presses_add_and_pack_gives_the_link(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        assert pack_reply(telegram, USER) == text("pack_none")
        first = cutout(telegram, USER, variant_jpeg(1))
        answer = press(telegram, USER, first)
        create = telegram.calls_to("createNewStickerSet")[0]
        name, title = create.params["name"], create.params["title"]
        assert name == ADA_PACK and is_valid_pack_name(name, BOT)
        assert title == "Ada's cutouts"
        assert int(create.params["user_id"]) == USER
        assert answer.params["text"] == text("pack_created", title=title)

        second = cutout(telegram, USER, variant_jpeg(2))
        answer = press(telegram, USER, second)
        assert answer.params["text"] == text("pack_added", title=title)
        assert len(telegram.calls_to("createNewStickerSet")) == 1
        assert [int(c.params["user_id"]) for c in telegram.calls_to("addStickerToSet")] == [USER]
        assert len(set_of(telegram, name)["stickers"]) == 2

        # The same result again: nothing is added twice.
        answer = press(telegram, USER, first)
        assert answer.params["text"] == text("pack_already")
        assert len(telegram.calls_to("addStickerToSet")) == 1
        assert len(set_of(telegram, name)["stickers"]) == 2

        assert pack_link(name) in pack_reply(telegram, USER)
        assert pack_link(name) == f"https://t.me/addstickers/{ADA_PACK}"


def test_two_quick_presses_add_the_sticker_once(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        result = cutout(telegram, USER, variant_jpeg(3))
        data = result["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        telegram.press_button(USER, result, data)
        telegram.press_button(USER, result, data)
        answers = telegram.wait_for_call("answerCallbackQuery", count=2)
        assert sorted(a.params["text"] for a in answers) == sorted(
            [text("pack_created", title="Ada's cutouts"), text("pack_already")]
        )
    assert len(telegram.calls_to("createNewStickerSet")) == 1
    assert not telegram.calls_to("addStickerToSet")
    assert len(set_of(telegram, ADA_PACK)["stickers"]) == 1


def test_a_full_pack_rolls_over_to_a_new_volume_on_stickers_too_much(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        press(telegram, USER, cutout(telegram, USER, variant_jpeg(4)))
        fill_set(telegram, USER, ADA_PACK, up_to=120)  # the store still counts 1: Telegram has the last word
        telegram.clear_calls()

        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(5)))
        refused = telegram.calls_to("addStickerToSet")
        assert len(refused) == 1 and refused[0].error == "Bad Request: STICKERS_TOO_MUCH"
        create = telegram.calls_to("createNewStickerSet")[0]
        second = f"cutouts_{USER}_2_by_{BOT}"
        assert create.params["name"] == second and create.params["title"] == "Ada's cutouts (2)"
        assert answer.params["text"] == text("pack_created", title="Ada's cutouts (2)")
        assert len(set_of(telegram, ADA_PACK)["stickers"]) == 120
        assert len(set_of(telegram, second)["stickers"]) == 1

        # The next one goes straight to volume 2; /pack lists both volumes.
        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(6)))
        assert answer.params["text"] == text("pack_added", title="Ada's cutouts (2)")
        assert [c.params["name"] for c in telegram.calls_to("addStickerToSet")] == [ADA_PACK, second]
        links = pack_reply(telegram, USER)
        assert pack_link(ADA_PACK) in links and pack_link(second) in links
        assert links.index(pack_link(ADA_PACK)) < links.index(pack_link(second))


def test_a_pack_known_to_be_full_rolls_over_without_trying_it(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], tmp_path: Path
) -> None:
    seeded = Store(Path(env["DATA_DIR"]) / "bot.sqlite3")
    seeded.add_pack(USER, 1, ADA_PACK, "Ada's cutouts", 120)
    seeded.close()
    with BotThread(env):
        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(7)))
        assert answer.params["text"] == text("pack_created", title="Ada's cutouts (2)")
    assert not telegram.calls_to("addStickerToSet")
    assert [c.params["name"] for c in telegram.calls_to("createNewStickerSet")] == [
        f"cutouts_{USER}_2_by_{BOT}"
    ]


def test_a_member_who_never_started_the_bot_is_sent_to_start_it_then_gets_the_pack(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    stranger = 3003
    telegram.add_user(stranger, "Linus", started=False)
    with BotThread(env):
        result = cutout(telegram, USER, astronaut_jpeg(), chat_id=GROUP)
        answer = press(telegram, stranger, result)
        assert answer.params["text"] == text("pack_not_started")
        assert answer.params["url"].startswith(f"https://t.me/{BOT}?start=")
        assert telegram.sticker_sets == {}

        # Following the link opens the private chat; the same button then works.
        start = answer.params["url"].split("?start=")[1]
        telegram.send_text(stranger, f"/start {start}")
        welcome = telegram.wait_for_call("sendMessage", where=lambda c: int(c.params["chat_id"]) == stranger)
        assert welcome[0].params["text"] == text("start_pack", name="Linus")
        answer = press(telegram, stranger, result)
        assert answer.params["text"] == text("pack_created", title="Linus's cutouts")
    assert set_of(telegram, f"cutouts_{stranger}_by_{BOT}")["owner"] == stranger


def test_each_member_pressing_a_group_result_gets_it_in_their_own_pack(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        result = cutout(telegram, USER, astronaut_jpeg(), chat_id=GROUP)
        grace = press(telegram, OTHER_USER, result)
        ada = press(telegram, USER, result)
        assert grace.params["text"] == text("pack_created", title="Grace's cutouts")
        assert ada.params["text"] == text("pack_created", title="Ada's cutouts")
    grace_pack = set_of(telegram, f"cutouts_{OTHER_USER}_by_{BOT}")
    assert grace_pack["owner"] == OTHER_USER and grace_pack["title"] == "Grace's cutouts"
    assert set_of(telegram, ADA_PACK)["owner"] == USER


def test_flood_waits_during_pack_operations_are_waited_out(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    flood = {"error_code": 429, "description": "Too Many Requests: retry after 1", "retry_after": 1}
    with BotThread(env):
        telegram.fail_next("createNewStickerSet", **flood)
        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(8)))
        assert answer.params["text"] == text("pack_created", title="Ada's cutouts")

        telegram.fail_next("addStickerToSet", **flood)
        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(9)))
        assert answer.params["text"] == text("pack_added", title="Ada's cutouts")

    for method in ("createNewStickerSet", "addStickerToSet"):
        first, second = telegram.calls_to(method)
        assert first.response is not None and first.response["error_code"] == 429
        assert second.ok and second.at - first.at >= 1.0
    assert len(set_of(telegram, ADA_PACK)["stickers"]) == 2


def test_a_pack_made_before_the_store_was_lost_is_found_again(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str], tmp_path: Path
) -> None:
    with BotThread(env):
        press(telegram, USER, cutout(telegram, USER, variant_jpeg(10)))
    fresh = {**env, "DATA_DIR": str(tmp_path / "fresh-data")}
    with BotThread(fresh):
        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(11)))
        assert answer.params["text"] == text("pack_added", title="Ada's cutouts")
        assert pack_link(ADA_PACK) in pack_reply(telegram, USER)
    create_calls = telegram.calls_to("createNewStickerSet")
    assert [c.ok for c in create_calls] == [True, False]  # the second found the name taken: adopted
    assert len(set_of(telegram, ADA_PACK)["stickers"]) == 2


def test_a_pack_its_owner_deleted_is_made_again(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        press(telegram, USER, cutout(telegram, USER, variant_jpeg(12)))
        with httpx.Client(base_url=f"{telegram.url}/bot{BOT_TOKEN}") as api:
            assert api.post("/deleteStickerSet", data={"name": ADA_PACK}).json()["ok"]
        answer = press(telegram, USER, cutout(telegram, USER, variant_jpeg(13)))
        assert answer.params["text"] == text("pack_created", title="Ada's cutouts")
        assert telegram.calls_to("addStickerToSet")[0].error == "Bad Request: STICKERSET_INVALID"
        links = pack_reply(telegram, USER)
    assert links.count("t.me/addstickers/") == 1 and pack_link(ADA_PACK) in links
    assert len(set_of(telegram, ADA_PACK)["stickers"]) == 1


def test_a_pack_flood_wait_does_not_hold_up_other_chats(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        press(telegram, USER, cutout(telegram, USER, variant_jpeg(20)))
        telegram.fail_next(
            "addStickerToSet", error_code=429, description="Too Many Requests: retry after 4", retry_after=4
        )
        first = cutout(telegram, USER, variant_jpeg(21))
        telegram.press_button(USER, first, first["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        telegram.wait_for_call("addStickerToSet")
        # While Ada's pack waits out its flood limit, Grace's photo is answered.
        telegram.send_photo(OTHER_USER, variant_jpeg(22))
        graces = telegram.wait_for_call("sendSticker", where=lambda c: c.decoded["chat_id"] == OTHER_USER)[0]
        retried = telegram.wait_for_call("addStickerToSet", count=2, timeout=15)[1]
        assert retried.ok
        assert graces.at < retried.at
