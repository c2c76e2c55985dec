"""Pictures are made in a few threads of their own, never more at once than there are cores but one."""

from __future__ import annotations

import asyncio
import threading

from bot.pipeline.imagework import IMAGE_THREADS, in_image_thread


async def test_no_more_pictures_are_made_at_once_than_there_are_picture_threads() -> None:
    running, most = 0, 0
    counted = threading.Lock()
    go_on = threading.Event()

    def make(n: int) -> tuple[int, str]:
        nonlocal running, most
        with counted:
            running += 1
            most = max(most, running)
        go_on.wait(10)
        with counted:
            running -= 1
        return n, threading.current_thread().name

    asked = IMAGE_THREADS + 3
    made = [asyncio.ensure_future(in_image_thread(make, n)) for n in range(asked)]
    for _ in range(200):  # until every thread has one; the rest wait their turn (2 s at most)
        if running == IMAGE_THREADS:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # room for any extra thread to start one more (there is none)
    assert running == IMAGE_THREADS
    go_on.set()
    answers = await asyncio.wait_for(asyncio.gather(*made), 10)
    assert [n for n, _ in answers] == list(range(asked))  # each one made, none lost
    assert all(name.startswith("imaging") for _, name in answers)
    assert most == IMAGE_THREADS

