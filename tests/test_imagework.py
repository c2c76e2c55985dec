"""Pictures are made in a few threads of their own, never more at once than there are cores but one."""

from __future__ import annotations

import asyncio
import threading

from bot.pipeline.imagework import FILE_THREADS, IMAGE_THREADS, in_image_thread, start_threads


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



async def test_every_worker_thread_is_running_before_the_first_task() -> None:
    """Thread.start waits for the new thread to run: under load that held the event loop for 50 ms+,
    so the bot starts its threads while idle and no task ever starts one."""
    start_threads()
    running = {t.name for t in threading.enumerate()}
    assert sum(name.startswith("imaging") for name in running) == IMAGE_THREADS
    assert sum(name.startswith("files") for name in running) == FILE_THREADS
    started = threading.Thread.start
    starts: list[str] = []

    def counted_start(thread: threading.Thread) -> None:
        starts.append(thread.name)
        started(thread)

    threading.Thread.start = counted_start  # type: ignore[method-assign]
    try:
        go_on = threading.Event()
        files = [asyncio.to_thread(go_on.wait, 10) for _ in range(FILE_THREADS)]
        pictures = [in_image_thread(go_on.wait, 10) for _ in range(IMAGE_THREADS)]
        waiting = asyncio.ensure_future(asyncio.gather(*files, *pictures))
        await asyncio.sleep(0.05)  # every task is on a thread of its own by now
        go_on.set()
        assert all(await asyncio.wait_for(waiting, 10))
    finally:
        threading.Thread.start = started  # type: ignore[method-assign]
    assert starts == []  # each task ran on a thread already running
