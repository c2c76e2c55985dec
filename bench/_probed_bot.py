"""``python -m bot`` with an event-loop lag probe, for bench/load.py only (production code is untouched).

    BENCH_LAG_FILE=/tmp/lag.json python bench/_probed_bot.py

A task in the bot's own loop sleeps 10 ms over and over and records how late it wakes up: that is
how long anything else (an update, a status edit, an API answer) could have waited for the loop.
With it, how long the loop's thread was ready to run but waited for a CPU meanwhile (Linux's
schedstat): a lag made of that is the machine's (two cores shared with the stand-ins), not the
loop's own work nor the GIL. The samples are written to BENCH_LAG_FILE as JSON when the bot stops
(post_stop), as ``{"interval": s, "samples": [[time.monotonic(), lag_s, waited_s], ...]}``;
CLOCK_MONOTONIC is system-wide, so the benchmark can line the samples up with its own clock.

BENCH_SLOW_CALLBACK_MS=20 also turns on asyncio's debug mode, which logs every callback that held
the loop longer than that (with its source): slower overall, but it names the culprits.

BENCH_STALL_FILE=/tmp/stalls.txt names them at no cost to the loop: a watchdog thread looks at the
loop every 10 ms, and while the probe is over BENCH_STALL_MS (50) late it records where the loop
thread is (the innermost frames); the places are written, counted, at the stop, the most seen first.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bot.app  # noqa: E402
from bot.__main__ import main  # noqa: E402

INTERVAL = 0.010


STALL = float(os.environ.get("BENCH_STALL_MS", "50")) / 1000  # a probe this late: the loop is stalled
STALL_FRAMES = 8


class LagProbe:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[tuple[float, float, float]] = []
        self.task: asyncio.Task[None] | None = None
        self.awake_at = time.monotonic()  # the probe's last wake-up (read by the watchdog)

    async def run(self) -> None:
        with _RunQueueWait() as waited:
            waited_before = waited()  # read once a round: from one wake-up to the next
            while True:
                before = time.monotonic()
                await asyncio.sleep(INTERVAL)
                now = self.awake_at = time.monotonic()
                waited_now = waited()
                self.samples.append((now, now - before - INTERVAL, waited_now - waited_before))
                waited_before = waited_now

    def dump(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"interval": INTERVAL, "samples": self.samples}))
        tmp.replace(self.path)


class _RunQueueWait:
    """Seconds the calling thread has spent ready to run but waiting for a CPU (0 where the kernel
    does not say: not Linux, or no schedstat)."""

    def __enter__(self) -> Any:
        try:
            self._file: Any = open("/proc/thread-self/schedstat")
        except OSError:
            self._file = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def __call__(self) -> float:
        if self._file is None:
            return 0.0
        self._file.seek(0)
        return int(self._file.read().split()[1]) / 1e9  # on the CPU, waiting for one, time slices (ns)


class StallWatch:
    """Where the loop thread is while the probe is late: (innermost frames) -> times seen."""

    def __init__(self, path: Path, probe: LagProbe) -> None:
        self.path = path
        self.probe = probe
        self.loop_thread = threading.get_ident()
        self.seen: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            if time.monotonic() - self.probe.awake_at < STALL + INTERVAL:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-STALL_FRAMES:]
                self.seen["\n".join(f"  {f.filename}:{f.lineno} {f.name}" for f in stack)] += 1

    def dump(self) -> None:
        self._stop.set()
        self._thread.join()
        lines = [f"{count} x {INTERVAL * 1000:.0f} ms\n{stack}\n" for stack, count in self.seen.most_common()]
        self.path.write_text("\n".join(lines))


def build_with_probe(settings: Any) -> Any:
    app = _build(settings)
    probe = LagProbe(Path(os.environ["BENCH_LAG_FILE"]))
    post_init, post_stop = app.post_init, app.post_stop
    watch: list[StallWatch] = []

    async def started(app: Any) -> None:
        if slow_ms := os.environ.get("BENCH_SLOW_CALLBACK_MS"):
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = float(slow_ms) / 1000
        if post_init is not None:
            await post_init(app)
        probe.task = asyncio.create_task(probe.run(), name="lag-probe")
        if stall_file := os.environ.get("BENCH_STALL_FILE"):
            watch.append(StallWatch(Path(stall_file), probe))

    async def stopped(app: Any) -> None:
        if probe.task is not None:
            probe.task.cancel()
        probe.dump()
        for each in watch:
            each.dump()
        if post_stop is not None:
            await post_stop(app)

    app.post_init, app.post_stop = started, stopped
    return app


_build = bot.app.build_application
bot.app.build_application = build_with_probe  # bot.__main__.main imports it from bot.app when it runs

if __name__ == "__main__":
    sys.exit(main())
