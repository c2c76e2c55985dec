"""Load benchmark: many users and photos through the real bot, against the strict PicWish stand-in.

    .venv/bin/python bench/load.py                     # 20 users x 5 photos, QPS 2, API latency 0.5-1.5 s
    .venv/bin/python bench/load.py --redis             # two bot processes sharing one key through Redis
    .venv/bin/python bench/load.py --users 40 --photos 3 --qps 3 --latency 0.2 0.8
    .venv/bin/python bench/load.py --scenario all        # every row of issue 13: see SCENARIOS

The bot runs as ``python -m bot`` in a child process (bench/_probed_bot.py adds an event-loop lag
probe), so its peak RSS is its own; the Telegram stand-in runs here, the PicWish one in a process of
its own (bench/_picwish_process.py: it stamps arrivals by its own clock, as the API does). Both do
their encoding before the load (``FakeTelegram.prepare_photos``: each photo's JPEG ladder;
``FakePicWish.prime``: each cutout), so that while the bot is measured they only serve: at QPS 20
they had taken most of the two cores the bot runs on, and its loop's stalls were mostly waits for a
CPU. Every user sends their photos one by one (distinct images, so the dedup cache never hides an
API call), 50 photos a second arriving in all (``--arrival``; all at once, 200 photos reach the bot
in two getUpdates answers, and parsing them and starting their handlers held the loop 67-110 ms over
7 runs); a few sync answers come back unfinished so polls share the budget too; once the backlog is
long, one more user sends a single photo. Figures:

- API requests per second while there is a backlog (first to last task creation), from the stand-in's
  log of accepted requests, against the limit; 429s; the closest that ``qps + 1`` requests came to
  fitting in one second (must stay above 1 s: the margin left);
- photo -> result (the PNG, the last part of the answer) p50 / p95 / max, from the bench's clock
  before ``send_photo`` to the stand-in's arrival time of the bot's ``sendDocument``;
- the late single photo: its wait; its place in line when first shown (round robin: at most one photo
  of each other waiting user ahead of it); how many photos the API started between its sending and
  its own task (its intake included; first in, first out would be the whole backlog);
- peak RSS of the bot process (VmHWM); the largest event-loop lag inside the bot, and how long the
  loop's thread was meanwhile ready to run but waiting for a CPU (the machine's share: the stand-ins
  run on the same two cores);
- Telegram calls to chats per photo, by method (the bot's whole budget is about 30 a second, and
  answers share it with status messages), and the most of them in any 1 s; bot CPU per photo, less
  what the same bot spends idle over as long (the lag probe alone costs ~20 ms a second).

``--scenario`` runs presets (``idle``: photos one at a time, nobody waits; ``qps2``, ``qps10``,
``qps20``; ``queued``: 100 users x 10 photos at QPS 10); ``all`` runs them in turn.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python bench/load.py` works from the repo root

from bench._picwish_process import PicWishProcess  # noqa: E402
from tests.harness import API_KEY, BOT_TOKEN, bot_env, variant_jpeg  # noqa: E402
from tests.redis_server import find_redis_server, running_redis_server  # noqa: E402
from tests.standins.picwish_api import Outcome  # noqa: E402
from tests.standins.telegram_api import FakeTelegram  # noqa: E402

PROBED_BOT = ROOT / "bench" / "_probed_bot.py"
FIRST_USER = 10_001
WARM_UP_USER = 9_999
LATE_USER = 99_999
TARGET_RATE = 0.95  # x the limit, while there is a backlog
TARGET_LAG_MS = 50.0
TARGET_RSS_MB = 250.0
TELEGRAM_RATE = 30.0  # calls to chats per second the bot may send (TELEGRAM_MAX_RATE)
TARGET_CALLS_IDLE = 3.0  # Telegram calls per photo when nobody waits
TARGET_CALLS_WAITING = 5.0  # ... when photos wait in line
TARGET_STATUS_S = 3.0  # the late single photo hears where it stands within this long
TARGET_CPU_MS = 50.0  # bot CPU per 1280 px photo: shown here, judged by bench/latency.py --size 1280
IDLE_WINDOW = 5.0  # seconds the bots' idle CPU is measured over, once the load is answered
STATUS_MARKS = ("Got it", "Got them", "in line", "Cutting out", "Done: ")
#: name: (users, photos each, QPS, API latency range)
SCENARIOS: dict[str, tuple[int, int, float, tuple[float, float]]] = {
    "qps2": (20, 5, 2, (0.5, 1.5)),
    "qps10": (30, 4, 10, (0.5, 1.5)),
    "qps20": (40, 5, 20, (0.5, 1.5)),
    "queued": (100, 10, 10, (0.5, 1.5)),
}
# Photos arriving a second, all users together: faster than the API serves them at any QPS here, so a
# backlog builds, as at an event where guests send their photos over a few seconds. (Before the stand-ins
# made their JPEG ladders ahead of time, sending one took ~16 ms: about this pace, by accident.)
ARRIVAL_PER_S = 50.0
IN_LINE = re.compile(r"#(\d+) in line")
WORKERS_LINE = re.compile(r"bot @\S+ is up \(QPS [\d.]+, (\d+) workers\)")


@dataclass
class Photo:
    bot: int  # which bot process (and Telegram stand-in) it went to
    user: int
    message_id: int
    sent_at: float
    result_at: float = math.nan


@dataclass
class Bot:
    """One ``python -m bot`` child with its own Telegram stand-in."""

    index: int
    telegram: FakeTelegram
    workdir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    lag_path: Path = field(init=False)
    rss_peak: int = 0
    cpu_at_load: float = 0.0  # the bot's CPU seconds when the load began
    cpu_load: float = 0.0  # ... spent from then to the last answer
    cpu_idle: float = 0.0  # its CPU seconds per second once idle again (the lag probe, polling)
    _stop_sampling: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"bot{self.index}.log"
        self.lag_path = self.workdir / f"lag{self.index}.json"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PICWISH_", "REDIS_"))}
        env.update(self.env, PYTHONPATH=str(ROOT), BENCH_LAG_FILE=str(self.lag_path), ENV_FILE="")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(PROBED_BOT)], cwd=self.workdir, env=env, stdout=log, stderr=log
            )
        self._sampler = threading.Thread(target=self._sample_rss, name=f"rss{self.index}", daemon=True)
        self._sampler.start()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def _sample_rss(self) -> None:
        assert self.proc is not None
        process = psutil.Process(self.proc.pid)
        while not self._stop_sampling.wait(0.05):
            try:
                self.rss_peak = max(self.rss_peak, process.memory_info().rss)
                self.rss_peak = max(self.rss_peak, _vm_hwm(self.proc.pid))
            except (psutil.Error, OSError):
                return

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def workers(self) -> int | None:
        found = WORKERS_LINE.search(self.log)
        return int(found.group(1)) if found else None

    def lag_samples(self) -> list[tuple[float, float, float]]:
        """(when, how late the probe woke, how long the loop's thread waited for a CPU meanwhile)."""
        if not self.lag_path.exists():
            return []
        return [(t, lag, waited) for t, lag, waited in json.loads(self.lag_path.read_text())["samples"]]


def _vm_hwm(pid: int) -> int:
    """The process's peak resident set size so far, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def windowed_rate(times: list[float], start: float, end: float) -> float:
    """Requests in a 1 s window, averaged over every position of the window inside [start, end].

    Unlike (count - 1) / duration, it does not depend on whether the requests come in pairs or
    evenly spaced: each request counts for the share of window positions that contain it.
    """
    positions = end - 1.0 - start
    if positions <= 0:
        return math.nan
    covered = sum(max(0.0, min(t, end - 1.0) - max(t - 1.0, start)) for t in times if start <= t <= end)
    return covered / positions


def closest_window(times: list[float], qps: int) -> float:
    """The shortest span covering ``qps + 1`` consecutive arrivals: over 1 s means never over the limit."""
    times = sorted(times)
    spans = [times[i + qps] - times[i] for i in range(len(times) - qps)]
    return min(spans) if spans else math.inf


def stop_all(bots: list[Bot]) -> None:
    for bot in bots:
        bot.stop()


def send(bot: Bot, user: int, image: bytes) -> Photo:
    sent_at = time.monotonic()
    message = bot.telegram.send_photo(user, image)
    return Photo(bot.index, user, message["message_id"], sent_at)


def answered(bots: list[Bot], photos: list[Photo]) -> bool:
    """Fill in result times from the stand-ins; True once every photo has its PNG."""
    by_key = {(p.bot, p.user, p.message_id): p for p in photos if math.isnan(p.result_at)}
    for bot in bots:
        for call in bot.telegram.calls_to("sendDocument"):
            if not call.ok:
                continue
            key = (bot.index, call.decoded["chat_id"], call.decoded["reply_parameters"]["message_id"])
            if (photo := by_key.get(key)) is not None:
                photo.result_at = call.at
    return all(not math.isnan(p.result_at) for p in photos)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(0.1)


def error_texts(bots: list[Bot]) -> list[str]:
    """Texts users saw that are not status messages: limits, failures."""
    found = []
    for bot in bots:
        for call in bot.telegram.calls:
            if call.method in ("sendMessage", "editMessageText"):
                text = str(call.params.get("text", ""))
                if not any(mark in text for mark in STATUS_MARKS):
                    found.append(text)
    return found


def run(args: argparse.Namespace) -> bool:
    processes = 2 if args.redis else 1
    qps = args.qps
    users_per_bot = [
        list(range(FIRST_USER + b * 1000, FIRST_USER + b * 1000 + n))
        for b, n in enumerate(_split(args.users, processes))
    ]
    total = args.users * args.photos
    count = total + processes + 1  # the load, a warm-up photo per bot, the late one
    print(f"preparing {count} distinct photos ...", flush=True)
    photo_files = [variant_jpeg(seed) for seed in range(count)]
    images = iter(photo_files)
    low, high = args.latency

    with ExitStack() as stack:
        if args.workdir is not None:
            folder = args.workdir.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
        picwish = stack.enter_context(PicWishProcess(API_KEY, qps=qps, latency=(low, high)))
        redis_url = stack.enter_context(running_redis_server()) if args.redis else None
        bots: list[Bot] = []
        for index in range(processes):
            telegram = stack.enter_context(FakeTelegram(BOT_TOKEN))
            for user in [WARM_UP_USER, LATE_USER, *users_per_bot[index]]:
                telegram.add_user(user, f"User{user}")
            extra = {
                "PICWISH_QPS": f"{qps:g}",
                "LOG_LEVEL": "INFO",
                "USER_MAX_PENDING": str(max(5, args.photos)),
                "USER_PER_MINUTE": str(max(10, args.photos)),
            }
            if redis_url:
                extra["REDIS_URL"] = redis_url
            env = bot_env(telegram.url, picwish.url, folder / f"data{index}", **extra)
            bots.append(Bot(index, telegram, folder, env))
        stack.callback(stop_all, bots)
        # What Telegram and the API would spend on these photos is spent now, before the bot is measured:
        # the stand-ins share the bot's two cores, and at QPS 20 their encoding took most of them.
        print("making the stand-ins' JPEG ladders and cutouts ahead ...", flush=True)
        uploads = {upload for bot in bots for upload in bot.telegram.prepare_photos(photo_files)}
        picwish.prime(sorted(uploads))
        for bot in bots:
            bot.start()
        for bot in bots:
            bot.telegram.wait_for(lambda t: t.calls_to("getUpdates"), timeout=60)

        # Warm-up: imports, connections and the first render are not part of the load.
        warm = [send(bot, WARM_UP_USER, next(images)) for bot in bots]
        wait_until(lambda: answered(bots, warm), 60, "warm-up")

        # A few sync answers come back unfinished, so polls spend the budget too.
        picwish.script(*[Outcome.processing()] * args.polling)
        for bot in bots:
            bot.cpu_at_load = bot.cpu_seconds()
        load_start = time.monotonic()
        photos: list[Photo] = []
        for index, bot in enumerate(bots):
            for user in users_per_bot[index]:
                for _ in range(args.photos):
                    # Users' uploads take time: the photos arrive at --arrival a second, not all at once.
                    time.sleep(max(0.0, load_start + len(photos) / args.arrival - time.monotonic()))
                    photos.append(send(bot, user, next(images)))
                    # Nobody ever waits: the next photo comes once this one is answered.
                    if args.one_at_a_time:
                        wait_until(lambda: answered(bots, photos), 60, "one photo")
        late = send(bots[0], LATE_USER, next(images))
        print(
            f"{total} photos from {args.users} users sent in {time.monotonic() - load_start:.1f} s; "
            f"one late photo sent; waiting for every answer ...",
            flush=True,
        )
        timeout = 120 + 3 * (total + processes) / qps
        wait_until(lambda: answered(bots, [*photos, late]), timeout, "the load")
        load_end = time.monotonic()
        for bot in bots:
            bot.cpu_load = bot.cpu_seconds() - bot.cpu_at_load
        for bot in bots:  # every status message posted gives way once its photos are answered
            bot.telegram.wait_for(
                lambda t: len(t.calls_to("deleteMessage")) >= len(status_posts(t, load_start)),
                30 + total / 10,
            )
        calls = [
            c for bot in bots for c in bot.telegram.calls if c.at >= load_start and "chat_id" in c.params
        ]
        # The bots idle (the lag probe wakes 100 times a second, long polling, the status loop): that
        # much CPU a second is not the photos', and is taken off the load's, as bench/latency.py does.
        idle_from = [bot.cpu_seconds() for bot in bots]
        time.sleep(IDLE_WINDOW)
        for bot, before in zip(bots, idle_from, strict=True):
            bot.cpu_idle = (bot.cpu_seconds() - before) / IDLE_WINDOW
        for bot in bots:
            bot.stop()

        requests = [r for r in picwish.requests if r.at >= load_start]
        if args.workdir is not None:
            log = [{"at": r.at - load_start, "kind": r.kind, "status": r.status} for r in requests]
            (folder / "api_requests.json").write_text(json.dumps(log))
        accepted = [r.at for r in requests if r.accepted]
        creates = sorted(r.at for r in requests if r.kind == "create" and r.accepted)
        backlog_from, backlog_to = creates[0], creates[-1]
        in_backlog = [t for t in accepted if backlog_from <= t <= backlog_to]
        burst = max(1, math.floor(qps))
        late_create = _create_of(picwish, bots[0].telegram, late)
        late_place = next(
            (
                int(found.group(1))
                for call in bots[0].telegram.calls
                if call.method in ("sendMessage", "editMessageText")
                and call.decoded["chat_id"] == LATE_USER
                and (found := IN_LINE.search(call.params["text"]))
            ),
            0,  # never shown in line: it went straight to the API
        )
        late_acked = min(  # its first sign of life: a status message, or a chat action
            (
                c.at
                for c in bots[0].telegram.calls
                if c.method in ("sendMessage", "sendChatAction") and c.decoded["chat_id"] == LATE_USER
            ),
            default=math.nan,
        )
        report = {
            "rate": windowed_rate(in_backlog, backlog_from, backlog_to),
            "backlog_s": backlog_to - backlog_from,
            "late_place": late_place,
            "late_ack_s": late_acked - late.sent_at,
            "started_ahead": (
                None if late_create is None else len([t for t in creates if late.sent_at < t < late_create])
            ),
            "count_429": picwish.count_429,
            "cut_while_serving": picwish.cut_while_serving,
            "max_in_window": picwish.max_in_window(),
            "closest": closest_window(sorted(r.at for r in picwish.requests if r.accepted), burst),
            "queries": len([r for r in requests if r.kind == "query"]),
            "creates": len(creates),
            "calls": telegram_calls(calls, len(photos) + 1),
            "cpu_ms": sum(bot.cpu_load - bot.cpu_idle * (load_end - load_start) for bot in bots)
            / (len(photos) + 1)
            * 1000,
            "cpu_raw_ms": sum(bot.cpu_load for bot in bots) / (len(photos) + 1) * 1000,
            "idle_ms_per_s": sum(bot.cpu_idle for bot in bots) * 1000,
        }
        per_bot = [
            {
                "workers": bot.workers,
                "rss_mb": bot.rss_peak / 2**20,
                **worst_lag(bot.lag_samples(), load_start, load_end),
                "errors": [line for line in bot.log.splitlines() if " ERROR " in line or "Traceback" in line],
            }
            for bot in bots
        ]
        texts = error_texts(bots)

    return print_report(args, processes, photos, late, report, per_bot, texts)


def worst_lag(samples: list[tuple[float, float, float]], start: float, end: float) -> dict[str, float]:
    """The largest loop lag between ``start`` and ``end``, and how long the loop's thread waited for a
    CPU over that round of the probe (its 10 ms sleep and the lag; ms)."""
    during = [sample for sample in samples if start <= sample[0] <= end]
    _, lag, waited = max(during, key=lambda sample: sample[1], default=(math.nan, math.nan, math.nan))
    return {"lag_ms": lag * 1000, "lag_waited_ms": waited * 1000}


def status_posts(telegram: FakeTelegram, since: float) -> list[Any]:
    return [
        c
        for c in telegram.calls_to("sendMessage")
        if c.at >= since and any(mark in str(c.params.get("text", "")) for mark in STATUS_MARKS)
    ]


def telegram_calls(calls: list[Any], photos: int) -> dict[str, Any]:
    """Calls to chats per photo, by method, and the most of them in any 1 s."""
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    times = sorted(c.at for c in calls)
    busiest = 0
    start = 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return {
        "per_photo": len(calls) / photos,
        "by_method": {m: n / photos for m, n in sorted(by_method.items(), key=lambda kv: -kv[1])},
        "busiest_second": busiest,
    }


def _create_of(picwish: PicWishProcess, telegram: FakeTelegram, photo: Photo) -> float | None:
    """When the API saw the photo's task created: the create whose upload has its size, if only one has."""
    message = next(
        m
        for m in telegram.messages_in(photo.user, include_user_messages=True)
        if m["message_id"] == photo.message_id
    )
    size = len(telegram.file_bytes(message["photo"][-1]["file_id"]))
    matches = [r.at for r in picwish.creates() if r.file_size == size and r.status == 200]
    return matches[0] if len(matches) == 1 else None


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def print_report(
    args: argparse.Namespace,
    processes: int,
    photos: list[Photo],
    late: Photo,
    report: dict[str, Any],
    per_bot: list[dict[str, Any]],
    texts: list[str],
) -> bool:
    qps = args.qps
    waits = [p.result_at - p.sent_at for p in photos]
    late_wait = late.result_at - late.sent_at
    waiting = [p for p in photos if p.result_at > late.sent_at]
    active = len({(p.bot, p.user) for p in waiting})
    active_here = len({p.user for p in waiting if p.bot == late.bot})  # its own bot's line
    started_ahead = report["started_ahead"]
    if started_ahead is None:  # its create could not be told apart: count the answers ahead of it
        started_ahead = len([p for p in photos if late.sent_at < p.result_at < late.result_at])
    rss = max(b["rss_mb"] for b in per_bot)
    laggard = max(per_bot, key=lambda b: b["lag_ms"])
    lag = laggard["lag_ms"]
    calls = report["calls"]
    idle = args.one_at_a_time
    # Past what Telegram's budget lets through, no QPS helps: the target is the smaller of the two.
    reachable = min(qps, TELEGRAM_RATE / max(calls["per_photo"], 1e-9))
    calls_target = TARGET_CALLS_IDLE if idle else TARGET_CALLS_WAITING

    rows: list[tuple[str, str, str, bool | None]] = [
        (
            "API requests/s during backlog",
            f"{report['rate']:.2f} ({report['rate'] / qps:.3f} x limit {qps:g}; "
            f"{report['rate'] / reachable:.3f} x min(limit, 30/calls per photo) = {reachable:.1f})",
            f">= {TARGET_RATE:g} x that",
            None if idle else report["rate"] >= TARGET_RATE * reachable,
        ),
        (
            "photos delivered/s during backlog",
            f"{len(photos) / max(report['backlog_s'], 1e-9):.2f}",
            "",
            None,
        ),
        (
            "429 answers",
            f"{report['count_429']}",
            "0",
            report["count_429"] == 0,
        ),
        (
            "most requests in any 1 s",
            f"{report['max_in_window']} (tightest {math.floor(qps) + 1} span {report['closest']:.3f} s)",
            f"<= {math.floor(qps)}",
            report["max_in_window"] <= qps,
        ),
        (
            "Telegram calls to chats per photo",
            f"{calls['per_photo']:.2f} ("
            + ", ".join(f"{m} {n:.2f}" for m, n in calls["by_method"].items())
            + ")",
            f"<= {calls_target:g}",
            calls["per_photo"] <= calls_target,
        ),
        (
            "most Telegram calls to chats in any 1 s",
            f"{calls['busiest_second']}",
            f"<= {TELEGRAM_RATE:g}",
            calls["busiest_second"] <= TELEGRAM_RATE,
        ),
        (
            "bot CPU per photo",
            f"{report['cpu_ms']:.0f} ms minus idle ({report['cpu_raw_ms']:.0f} raw; idle "
            f"{report['idle_ms_per_s']:.0f} ms a second, mostly the lag probe) (512 x 512 photos)",
            # The target is for 1280 px photos: judged by bench/latency.py, not on these smaller ones.
            f"<= {TARGET_CPU_MS:g} ms per 1280 px photo: bench/latency.py --size 1280",
            None,
        ),
        ("photo -> result p50", f"{percentile(waits, 0.5):.1f} s", "", None),
        ("photo -> result p95", f"{percentile(waits, 0.95):.1f} s", "", None),
        ("photo -> result max", f"{max(waits):.1f} s", "", None),
        (
            "late single photo: wait",
            f"{late_wait:.1f} s ({len(waiting)} photos of {active} users waiting)",
            "",
            None,
        ),
        (
            "late single photo: first sign (status or chat action)",
            f"{report['late_ack_s']:.1f} s",
            f"<= {TARGET_STATUS_S:g} s",
            report["late_ack_s"] <= TARGET_STATUS_S,
        ),
        (
            "late single photo: first place shown",
            (
                f"#{report['late_place']} in line" if report["late_place"] else "none: it went straight to the API"
            )
            + f" ({active_here} other users waiting there)",
            f"<= #{active_here + 1}",
            report["late_place"] <= active_here + 1,
        ),
        (
            "late single photo: started ahead",
            f"{started_ahead} photos since it was sent (first in, first out: {len(waiting)})",
            "",
            None,
        ),
        (
            "bot peak RSS",
            f"{rss:.0f} MB ({len(photos) // processes} photos queued per bot)",
            f"< {TARGET_RSS_MB:g} MB",
            rss < TARGET_RSS_MB,
        ),
        (
            "largest event-loop lag",
            f"{lag:.1f} ms (meanwhile its thread waited {laggard['lag_waited_ms']:.1f} ms for a CPU)",
            f"< {TARGET_LAG_MS:g} ms",
            lag < TARGET_LAG_MS,
        ),
        (
            "every photo answered, no error text",
            f"{len(photos) + 1} answered, {len(texts)} other texts",
            "0 other texts",
            not texts,
        ),
    ]
    mode = f"{processes} bot processes sharing one key through Redis" if processes > 1 else "1 bot process"
    print()
    print(
        f"{args.users} users x {args.photos} photos (+1 late), {mode}; PICWISH_QPS {qps:g}, "
        f"API latency {args.latency[0]:g}-{args.latency[1]:g} s; {report['creates']} creates, "
        f"{report['queries']} polls; the stand-in cut out {report['cut_while_serving']} photos while "
        "serving (the rest were made ahead, as the JPEG ladders were)"
    )
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<{value_width}}  {'target':<16} result")
    for name, value, target, ok in rows:
        verdict = "" if ok is None else "PASS" if ok else "FAIL"
        print(f"{name:<{width}}  {value:<{value_width}}  {target:<16} {verdict}")
    if processes > 1:
        for index, bot in enumerate(per_bot):
            print(
                f"  bot {index}: peak RSS {bot['rss_mb']:.0f} MB, loop lag {bot['lag_ms']:.1f} ms, "
                f"{bot['workers']} workers"
            )
    for index, bot in enumerate(per_bot):
        if bot["errors"]:
            print(f"  bot {index} logged {len(bot['errors'])} error line(s), first: {bot['errors'][0]}")
    for text in texts[:3]:
        print(f"  a user saw: {text!r}")
    return all(ok is not False for *_, ok in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    parser.add_argument("--photos", type=int, default=5, help="photos per user (default 5)")
    parser.add_argument("--qps", type=float, default=2, help="the API's QPS, bot and stand-in (default 2)")
    parser.add_argument(
        "--latency",
        type=float,
        nargs=2,
        default=(0.5, 1.5),
        metavar=("MIN", "MAX"),
        help="API processing time drawn uniformly from MIN-MAX seconds (default 0.5 1.5)",
    )
    parser.add_argument(
        "--polling",
        type=int,
        default=10,
        help="how many sync answers come back unfinished, so the bot polls (default 10)",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="two bot processes, one key, the budget shared through a local redis-server",
    )
    parser.add_argument("--workdir", type=Path, help="keep the bots' data, logs and lag samples here")
    parser.add_argument(
        "--one-at-a-time", action="store_true", help="each photo is sent once the one before is answered"
    )
    parser.add_argument(
        "--arrival",
        type=float,
        default=ARRIVAL_PER_S,
        help=f"photos arriving a second, all users together (default {ARRIVAL_PER_S:g})",
    )
    parser.add_argument(
        "--scenario",
        choices=("idle", *SCENARIOS, "all"),
        help="a preset (overrides --users, --photos, --qps, --latency); all: every preset in turn",
    )
    args = parser.parse_args()
    if args.scenario is not None:
        names = ["idle", *SCENARIOS] if args.scenario == "all" else [args.scenario]
        passed = True
        for name in names:
            print(f"\n=== scenario {name} ===", flush=True)
            preset = argparse.Namespace(**vars(args))
            if name == "idle":
                preset.users, preset.photos, preset.qps, preset.latency = 1, 10, 2, (0.5, 1.5)
                preset.one_at_a_time, preset.polling = True, 0
            else:
                preset.users, preset.photos, preset.qps, preset.latency = SCENARIOS[name]
            passed = run(preset) and passed
        return 0 if passed else 1
    if args.qps < 1:
        parser.error("--qps must be at least 1 (the stand-in's limit)")
    if args.redis and find_redis_server() is None:
        parser.error("--redis needs redis-server (apt-get install redis-server)")
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
