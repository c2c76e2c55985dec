"""Optional allow-lists: ALLOWED_USER_IDS and ALLOWED_CHAT_IDS; empty means everyone, admins always pass.

A refused private message gets a short "this bot is private"; a refused group stays silent; nothing
refused is downloaded or sent to the API.
"""

from __future__ import annotations

from pathlib import Path

from bot.config import load_settings
from bot.texts import text
from handlers.access import is_allowed
from tests.conftest import OTHER_USER, USER
from tests.harness import BotThread, bot_env, variant_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

ADMIN = 1003
ALLOWED_GROUP = -100500
OTHER_GROUP = -100600


def sent_to(telegram: FakeTelegram, method: str, chat_id: int) -> list[str]:
    return [
        str(c.params.get("text", ""))
        for c in telegram.calls_to(method)
        if c.ok and c.decoded["chat_id"] == chat_id
    ]


def test_allowed_user_ids_lets_only_those_users_and_admins_in(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    telegram.add_user(ADMIN, "Admin")
    env = bot_env(
        telegram.url, picwish.url, tmp_path / "data", ALLOWED_USER_IDS=str(USER), ADMIN_USER_IDS=str(ADMIN)
    )
    with BotThread(env):
        telegram.send_photo(OTHER_USER, variant_jpeg(1))
        telegram.wait_for(lambda t: sent_to(t, "sendMessage", OTHER_USER) == [text("not_allowed")])
        query_id = telegram.inline_query(OTHER_USER, "")
        telegram.wait_for_call("answerInlineQuery", where=lambda c: c.params["inline_query_id"] == query_id)

        telegram.send_photo(USER, variant_jpeg(2))
        telegram.send_photo(ADMIN, variant_jpeg(3))
        telegram.wait_for(
            lambda t: sent_to(t, "sendDocument", USER) and sent_to(t, "sendDocument", ADMIN), 20
        )

    assert len(picwish.creates()) == 2, "only the allowed users' photos reached the API"
    assert len(telegram.calls_to("getFile")) == 2
    (answer,) = telegram.inline_answers
    assert answer["results"] == [], "a refused inline query gets no cutouts"
    assert not sent_to(telegram, "sendSticker", OTHER_USER)


def test_allowed_chat_ids_serves_members_there_and_nowhere_else(
    telegram: FakeTelegram, picwish: FakePicWish, tmp_path: Path
) -> None:
    env = bot_env(telegram.url, picwish.url, tmp_path / "data", ALLOWED_CHAT_IDS=str(ALLOWED_GROUP))
    with BotThread(env):
        telegram.send_photo(
            OTHER_USER, variant_jpeg(4), chat_id=OTHER_GROUP, chat_type="supergroup", caption="/cutout"
        )
        telegram.send_photo(USER, variant_jpeg(5))  # their private chat is not on the list either
        telegram.send_photo(
            OTHER_USER, variant_jpeg(6), chat_id=ALLOWED_GROUP, chat_type="supergroup", caption="/cutout"
        )
        telegram.wait_for(lambda t: sent_to(t, "sendDocument", ALLOWED_GROUP), 20)
        telegram.wait_for(lambda t: sent_to(t, "sendMessage", USER) == [text("not_allowed")])

    assert len(picwish.creates()) == 1
    assert not [c for c in telegram.calls if c.decoded.get("chat_id") == OTHER_GROUP], (
        "a refused group hears nothing"
    )


def test_without_allow_lists_everyone_is_served(
    telegram: FakeTelegram, picwish: FakePicWish, env: dict[str, str]
) -> None:
    with BotThread(env):
        telegram.send_photo(USER, variant_jpeg(7))
        telegram.send_photo(OTHER_USER, variant_jpeg(8))
        telegram.wait_for(
            lambda t: sent_to(t, "sendDocument", USER) and sent_to(t, "sendDocument", OTHER_USER), 20
        )


def test_allow_list_rules() -> None:
    base = {"TELEGRAM_BOT_TOKEN": "123456789:" + "a" * 30, "PICWISH_API_KEY": "k" * 16}
    everyone = load_settings(base, dotenv=False)
    assert is_allowed(everyone, 42, 42)
    users = load_settings({**base, "ALLOWED_USER_IDS": "1, 2", "ADMIN_USER_IDS": "9"}, dotenv=False)
    assert is_allowed(users, 1, -100) and is_allowed(users, 9, 9)
    assert not is_allowed(users, 3, 3) and not is_allowed(users, None, None)
    chats = load_settings({**base, "ALLOWED_CHAT_IDS": "-100"}, dotenv=False)
    assert is_allowed(chats, 3, -100) and not is_allowed(chats, 3, 3)
