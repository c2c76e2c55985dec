"""The threads that do the heavy work (images, files) yield the CPU to the event loop.

Everything the bot does in a thread goes through ``asyncio.to_thread``: the loop's default executor.
On a busy machine the loop thread, which answers Telegram and keeps the API's starts on time,
competed for the CPU on equal terms with as many threads decoding and encoding pictures, and waited
up to a scheduler slice for its turn: loop stalls of 60 to 150 ms at QPS 20 on two cores. Here the
workers run at a lower priority (nice +10, a tenth of the loop's share when both want a core), so
the loop runs as soon as it has work, and the pictures take all the CPU it leaves. Linux only:
elsewhere a priority is the whole process's, and the workers keep the default.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

WORKER_NICENESS = 10
WORKERS = min(32, (os.cpu_count() or 1) + 4)  # as many as asyncio's own default executor has


def use_background_workers(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor:
    """Make ``loop``'s default executor (``asyncio.to_thread``) one of low-priority threads."""
    executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="worker", initializer=_yield_to_the_loop)
    loop.set_default_executor(executor)
    return executor


def _yield_to_the_loop() -> None:
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()  # on Linux a priority is a thread's own
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS)
    except OSError as exc:  # a sandbox that forbids it: the work is done all the same
        log.debug("worker priority unchanged: %s", exc)
