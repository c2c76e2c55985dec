"""Work the bot hands to threads runs below the event loop's priority, and still runs."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from bot.threads import WORKER_NICENESS, use_background_workers


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own priority is Linux's")
async def test_work_handed_to_a_thread_runs_at_a_lower_priority_than_the_loop() -> None:
    loop = asyncio.get_running_loop()
    executor = use_background_workers(loop)
    try:
        loop_priority = _priority()
        worker_priority, worker_name = await asyncio.to_thread(
            lambda: (_priority(), threading.current_thread().name)
        )
        assert worker_priority == min(19, loop_priority + WORKER_NICENESS)
        assert worker_name.startswith("worker")
        assert _priority() == loop_priority  # the loop's own thread is left as it was
    finally:
        executor.shutdown(wait=True)
