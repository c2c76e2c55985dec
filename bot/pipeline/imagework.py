"""Pictures are made in threads of their own: one per core but one, so the event loop keeps a core.

Decoding, resampling and encoding release the GIL and take a core each. In asyncio's default
executor (six threads on two cores) as many pictures were made at once as there were photos ready,
and the loop thread, which answers Telegram and keeps the API's starts on time, waited its turn for
a core among them: at QPS 20 on two cores its largest lag was 66 to 147 ms over 7 runs. With one
picture at a time it was 24 to 69 ms over 11 runs (median 37), and as many photos were delivered a
second, since the cores were busy anyway. File reads and writes, and the offline engine, keep
asyncio's default executor: a slow disk never holds up a picture, nor a picture a file.

Every thread is started with the bot, not at its first task: ``Thread.start`` waits until the new
thread has run, and on two busy cores that held the event loop for over 50 ms (seen by
bench/_probed_bot.py's stall watch, in the first photo's ``run_in_executor``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _cores() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


IMAGE_THREADS = max(1, _cores() - 1)
FILE_THREADS = min(32, _cores() + 4)  # as many as asyncio's default executor would grow to
_STARTING_TIMEOUT = 30.0  # seconds for the threads to start: bounded, however starved the machine

_executor: ThreadPoolExecutor | None = None
_creating = threading.Lock()


async def in_image_thread(work: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``work(*args, **kwargs)`` in one of the picture threads; waits for one to be free."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads(), functools.partial(work, *args, **kwargs))


def _threads() -> ThreadPoolExecutor:
    global _executor
    with _creating:  # bots in threads of one process (the tests) share the threads
        if _executor is None:
            _executor = started_pool(IMAGE_THREADS, "imaging")
        return _executor


def start_threads() -> None:
    """Start the picture threads and the running loop's file threads (its default executor), now."""
    _threads()
    asyncio.get_running_loop().set_default_executor(started_pool(FILE_THREADS, "files"))


def started_pool(count: int, name: str) -> ThreadPoolExecutor:
    """A pool of ``count`` threads, all of them running when it is returned."""
    pool = ThreadPoolExecutor(count, thread_name_prefix=name)
    # Each task holds its thread at the barrier until all are in, so every submit starts a thread.
    everyone = threading.Barrier(count + 1, timeout=_STARTING_TIMEOUT)
    for _ in range(count):
        pool.submit(everyone.wait)
    everyone.wait()
    return pool
