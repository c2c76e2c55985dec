"""The Telegram rate limiter: answers first, status calls within their share, Telegram's limits per chat
and group, 429s that slow only what they concern. Time is a fake clock the tests move."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.telegram_limits import ANSWER, FEEDBACK, NOTICE, Pace, TelegramRateLimiter

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Telegram:
    """Records what reaches "Telegram", in order; a call can be held until released, or refused once."""

    def __init__(self, limiter: TelegramRateLimiter) -> None:
        self.limiter = limiter
        self.sent: list[tuple[str, Any]] = []
        self.hold: dict[str, asyncio.Event] = {}
        self.refuse: dict[Any, int] = {}  # chat -> retry_after, once

    def call(
        self, endpoint: str, pace: Pace | None = None, *, label: Any = None, **data: Any
    ) -> asyncio.Task[Any]:
        async def callback() -> Any:
            chat = data.get("chat_id")
            if chat in self.refuse:
                raise RetryAfter(self.refuse.pop(chat))
            self.sent.append((endpoint, label))
            if (gate := self.hold.get(str(label))) is not None:
                await gate.wait()
            return {"ok": label}

        return asyncio.ensure_future(self.limiter.process_request(callback, (), {}, endpoint, data, pace))

    def labels(self) -> list[Any]:
        return [label for _, label in self.sent]


async def settle(condition: Callable[[], bool] | None = None) -> None:
    """Let the loop run until ``condition`` holds (or a few rounds when there is none), for 3 s at most."""
    for _ in range(20):
        await asyncio.sleep(0)
    for _ in range(300):
        if condition is None or condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("still waiting after 3 s")


async def done(tasks: list[asyncio.Task[Any]]) -> list[Any]:
    async with asyncio.timeout(5):
        return list(await asyncio.gather(*tasks))


def limiter(clock: Clock, rate: float = 10.0, retries: int = 0) -> tuple[TelegramRateLimiter, Telegram]:
    rl = TelegramRateLimiter(max_rate=rate, max_retries=retries, clock=clock)
    return rl, Telegram(rl)


async def run_for(tg: Telegram, clock: Clock, seconds: float, step: float = 0.05) -> None:
    """Move the fake clock ahead in small steps, letting the limiter hand out turns at each (its own
    wake-up timer runs on the loop's real clock, so each step wakes it as that timer would)."""
    for _ in range(round(seconds / step)):
        clock.now += step
        tg.limiter._pump()
        await settle()


async def run_until(tg: Telegram, clock: Clock, condition: Callable[[], bool], step: float = 0.05) -> float:
    """Fake seconds until ``condition`` holds (at most 10)."""
    start = clock.now
    while not condition():
        assert clock.now - start < 10, "not within 10 s"
        await run_for(tg, clock, step, step)
    return clock.now - start


async def test_answers_go_ahead_of_status_edits_and_chat_actions() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=10)  # 10 a second; status calls may use 2 of them
    edits = [
        tg.call("editMessageText", FEEDBACK, label=f"edit{i}", chat_id=i, message_id=1) for i in range(20)
    ]
    answers = [tg.call("sendSticker", ANSWER, label=f"answer{i}", chat_id=100 + i) for i in range(6)]
    await run_for(tg, clock, 0.9)
    # The first two edits came before any answer and took the status share; every answer went next.
    assert tg.labels() == ["edit0", "edit1", *(f"answer{i}" for i in range(6))]
    await run_for(tg, clock, 0.1)  # a new second: answers first, the spare slots go to edits, two of them
    more = [tg.call("sendDocument", ANSWER, label=f"png{i}", chat_id=200 + i) for i in range(5)]
    await run_for(tg, clock, 0.9)
    assert tg.labels()[8:] == [*(f"png{i}" for i in range(5)), "edit2", "edit3"]
    await done(answers + more)
    for task in edits:
        task.cancel()


async def test_a_status_message_no_longer_wanted_when_its_turn_comes_is_dropped_unsent() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=30)
    answers = [tg.call("sendMessage", ANSWER, label=f"answer{i}", chat_id=7) for i in range(3)]
    await settle()
    assert tg.labels() == ["answer0", "answer1", "answer2"]  # the chat's burst of three is spent
    wanted = {"late": True, "kept": True}
    late = tg.call("sendMessage", replace(NOTICE, wanted=lambda: wanted["late"]), label="late", chat_id=7)
    kept = tg.call("sendMessage", replace(NOTICE, wanted=lambda: wanted["kept"]), label="kept", chat_id=8)
    await settle()
    assert tg.labels()[3:] == ["kept"]  # another chat: it goes at once
    wanted["late"] = False  # its photo was answered while the chat's limit held it back
    await run_for(tg, clock, 0.1)
    assert await done([late, kept]) == [True, {"ok": "kept"}]  # dropped unsent: True, as for an edit
    await run_for(tg, clock, 3.0)
    assert tg.labels() == ["answer0", "answer1", "answer2", "kept"]
    await done(answers)


async def test_a_second_of_calls_leaves_in_fifths_not_at_once() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=30)
    answers = [tg.call("sendSticker", ANSWER, label=i, chat_id=100 + i) for i in range(30)]
    await settle()
    assert len(tg.sent) == 6  # 30 a second, at most 6 in any fifth of it
    assert await run_until(tg, clock, lambda: len(tg.sent) == 30) <= 1.0
    await done(answers)


async def test_a_call_that_reaches_telegram_late_holds_its_place_until_a_second_after_its_answer() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=10)
    on_their_way = asyncio.Event()  # a stalled event loop, a slow upload: they arrive whenever
    for i in range(10):
        tg.hold[f"slow{i}"] = on_their_way
    slow = [tg.call("sendDocument", ANSWER, label=f"slow{i}", chat_id=100 + i) for i in range(10)]
    await run_until(tg, clock, lambda: len(tg.sent) == 10)
    late = tg.call("sendSticker", ANSWER, label="late", chat_id=200)
    await run_for(tg, clock, 2.0)
    assert len(tg.sent) == 10, "ten still unanswered may all reach Telegram in the same second as it"
    on_their_way.set()
    await done(slow)
    waited = await run_until(tg, clock, lambda: len(tg.sent) == 11)
    assert 0.95 <= waited <= 1.1, "it goes a second after their answers, not sooner"
    await done([late])


async def test_a_call_cancelled_as_its_turn_came_gives_its_place_back() -> None:
    clock = Clock()
    rl, tg = limiter(clock, rate=1)
    first = tg.call("sendMessage", ANSWER, label="first", chat_id=1)
    await settle(lambda: tg.labels() == ["first"])
    second = tg.call("sendMessage", ANSWER, label="second", chat_id=2)
    await settle()
    clock.now += 1.5
    rl._pump()  # its turn comes ...
    second.cancel()  # ... just as its caller gives up (a chat action no longer wanted)
    with pytest.raises(asyncio.CancelledError):
        await second
    third = tg.call("sendMessage", ANSWER, label="third", chat_id=3)
    await run_until(tg, clock, lambda: "third" in tg.labels())
    assert tg.labels() == ["first", "third"]
    await done([first, third])


async def test_the_first_status_message_goes_ahead_of_answers_within_its_share() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=10)
    answers = [tg.call("sendSticker", ANSWER, label=f"answer{i}", chat_id=100 + i) for i in range(12)]
    await run_for(tg, clock, 0.9)
    assert len(tg.sent) == 10  # the second is full
    notices = [tg.call("sendMessage", NOTICE, label=f"notice{i}", chat_id=300 + i) for i in range(3)]
    await run_for(tg, clock, 0.3)  # the window is a second and the 0.1 s a call takes to arrive
    # Two go ahead (their share); the third takes a slot no answer needs.
    assert tg.labels()[10:] == ["notice0", "notice1", "answer10", "answer11", "notice2"]
    await done(answers + notices)


async def test_first_statuses_past_their_share_wait_while_answers_take_every_slot() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=10)
    answers = [tg.call("sendSticker", ANSWER, label=f"answer{i}", chat_id=100 + i) for i in range(30)]
    notices = [tg.call("sendMessage", NOTICE, label=f"notice{i}", chat_id=300 + i) for i in range(5)]
    await run_until(tg, clock, lambda: len(tg.sent) == 20)
    # Each second: its two first statuses, then answers in every other slot; none left spare.
    shown = [label for label in tg.labels() if str(label).startswith("notice")]
    assert shown == ["notice0", "notice1", "notice2", "notice3"]
    await run_until(tg, clock, lambda: len(tg.sent) == 35)
    await done(answers + notices)


async def test_a_newcomer_hears_where_they_stand_before_a_user_with_many_photos_hears_of_the_next() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=10)  # first statuses: 2 a second
    answers = [tg.call("sendSticker", ANSWER, label=f"answer{i}", chat_id=100 + i) for i in range(10)]
    await settle()  # answers fill the second: the first statuses below wait together
    many = [tg.call("sendMessage", NOTICE, label=f"many{i}", chat_id=1) for i in range(3)]
    newcomer = tg.call("sendMessage", NOTICE, label="newcomer", chat_id=2)
    await run_until(tg, clock, lambda: len(tg.sent) == 14)
    notices = [label for label in tg.labels() if not label.startswith("answer")]
    assert notices == ["many0", "newcomer", "many1", "many2"]
    await done([*answers, *many, newcomer])


async def test_a_newer_edit_of_a_message_replaces_the_one_still_waiting() -> None:
    clock = Clock()
    _, tg = limiter(clock)
    tg.hold["first"] = asyncio.Event()
    first = tg.call("editMessageText", FEEDBACK, label="first", chat_id=5, message_id=9)
    await settle(lambda: len(tg.sent) == 1)
    second = tg.call("editMessageText", FEEDBACK, label="second", chat_id=5, message_id=9)
    third = tg.call("editMessageText", FEEDBACK, label="third", chat_id=5, message_id=9)
    await settle()
    assert second.done() and second.result() is True  # replaced: never sent
    assert tg.labels() == ["first"]  # the third waits for the first: one message, in order
    tg.hold["first"].set()
    assert await done([first, third]) == [{"ok": "first"}, {"ok": "third"}]
    assert tg.labels() == ["first", "third"]


async def test_a_status_edit_never_replaces_the_failure_text_nor_lands_after_it() -> None:
    clock = Clock()
    _, tg = limiter(clock)
    tg.hold["status"] = asyncio.Event()
    status = tg.call("editMessageText", FEEDBACK, label="status", chat_id=5, message_id=9)
    await settle(lambda: len(tg.sent) == 1)
    failure = tg.call("editMessageText", ANSWER, label="failure", chat_id=5, message_id=9)
    late = tg.call("editMessageText", FEEDBACK, label="late status", chat_id=5, message_id=9)
    await settle()
    assert tg.labels() == ["status"]
    tg.hold["status"].set()
    await done([status, failure, late])
    assert tg.labels() == ["status", "failure", "late status"]  # in the order they were made


async def test_a_chat_action_past_its_use_is_dropped_unsent() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=3)
    answers = [tg.call("sendSticker", ANSWER, label=f"answer{i}", chat_id=100 + i) for i in range(6)]
    action = tg.call("sendChatAction", Pace(FEEDBACK.lane, stale_after=3.0), label="action", chat_id=7)
    await settle()
    assert tg.labels() == ["answer0", "answer1", "answer2"]
    clock.now += 4.0  # the action would now show "choosing a sticker" for work long finished
    await settle(lambda: action.done() and len(tg.sent) == 6)
    assert action.result() is True
    assert "action" not in tg.labels()
    await done(answers)


async def test_a_group_gets_20_messages_a_minute_and_other_chats_go_meanwhile() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=30)
    group = [tg.call("sendSticker", ANSWER, label=f"group{i}", chat_id=-1001) for i in range(22)]
    await run_for(tg, clock, 1.0)
    other = tg.call("sendSticker", ANSWER, label="private", chat_id=42)
    action = tg.call("sendChatAction", FEEDBACK, label="group action", chat_id=-1001)  # not a message
    await settle(lambda: other.done() and action.done())
    assert sum(1 for label in tg.labels() if str(label).startswith("group") and label != "group action") == 20
    clock.now += 60.0
    await settle(lambda: len(tg.sent) == 24)
    await done([*group, other, action])


async def test_a_private_chat_gets_a_short_burst_then_about_one_a_second() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=30)
    parts = [tg.call("sendDocument", ANSWER, label=i, chat_id=42) for i in range(5)]
    await settle()
    assert tg.labels() == [0, 1, 2]
    clock.now += 3.0
    await settle(lambda: len(tg.sent) == 5)
    await done(parts)


async def test_a_429_in_one_chat_slows_only_that_chat() -> None:
    clock = Clock()
    _, tg = limiter(clock, retries=2)
    tg.refuse[1] = 5
    refused = tg.call("sendSticker", ANSWER, label="to 1", chat_id=1)
    await settle()
    others = [tg.call("sendSticker", ANSWER, label=f"to {chat}", chat_id=chat) for chat in (2, 3)]
    again = tg.call("sendDocument", ANSWER, label="to 1 again", chat_id=1)
    await settle(lambda: len(tg.sent) == 2)
    assert tg.labels() == ["to 2", "to 3"]
    clock.now += 5.0
    await settle(lambda: refused.done() and again.done())
    assert tg.labels()[2:] == ["to 1", "to 1 again"]  # the refused one keeps its place
    await done([*others, refused, again])


async def test_429s_from_two_chats_at_once_pause_every_chat() -> None:
    clock = Clock()
    _, tg = limiter(clock, retries=2)
    tg.refuse.update({1: 2, 2: 2})
    first = [tg.call("sendSticker", ANSWER, label=f"to {chat}", chat_id=chat) for chat in (1, 2)]
    await settle()
    third = tg.call("sendSticker", ANSWER, label="to 3", chat_id=3)
    await settle()
    assert tg.labels() == []  # the bot as a whole is over the limit: nobody goes
    clock.now += 2.0
    await settle(lambda: len(tg.sent) == 3)
    await done([*first, third])


async def test_a_429_past_the_retries_reaches_the_caller() -> None:
    clock = Clock()
    _, tg = limiter(clock, retries=0)
    tg.refuse[1] = 7
    task = tg.call("sendSticker", ANSWER, label="to 1", chat_id=1)
    with pytest.raises(RetryAfter):
        await done([task])


async def test_calls_without_a_chat_and_sticker_set_calls_are_not_held() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=1)
    busy = [tg.call("sendSticker", ANSWER, label=f"to {chat}", chat_id=chat) for chat in (1, 2)]
    await settle()
    free = [
        tg.call("getFile", None, label="getFile", file_id="x"),
        tg.call("answerInlineQuery", None, label="inline", inline_query_id="q"),
        tg.call("addStickerToSet", None, label="pack", user_id=1, name="p"),
    ]
    await done(free)
    assert tg.labels() == ["to 1", "getFile", "inline", "pack"]
    clock.now += 1.2
    await done(busy)


async def test_a_cancelled_call_frees_its_message_for_the_next() -> None:
    clock = Clock()
    _, tg = limiter(clock, rate=2)
    fill = [tg.call("sendSticker", ANSWER, label=f"to {chat}", chat_id=chat) for chat in (1, 2)]
    delete = tg.call("deleteMessage", FEEDBACK, label="delete", chat_id=5, message_id=9)
    await settle()
    delete.cancel()
    failure = tg.call("editMessageText", ANSWER, label="failure", chat_id=5, message_id=9)
    clock.now += 1.2
    await done([failure, *fill])
    assert tg.labels() == ["to 1", "to 2", "failure"]
