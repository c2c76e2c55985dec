"""The bot's peak memory with large documents in flight, measured on the real ``python -m bot``.

    .venv/bin/python bench/memory.py                   # 12, then 20 documents of 4000 x 3000 at once
    .venv/bin/python bench/memory.py --documents 20    # one round only

A phone photo sent as a file is a 4000 x 3000 JPEG; half of them carry EXIF orientation 6 (held
sideways, as phones save them), so the bot decodes those whole to turn them upright before the
upload, while the others go up byte for byte. Each round sends its documents from distinct users at
once to a fresh bot with a QPS of 20 (PicWish latency 0.5 s), so every one is in flight together:
downloads, uploads, the API's full-resolution answers and their renders (sticker and PNG) all
overlap. The documents differ by a JPEG comment only, so the stand-in cuts out each picture once and
serves that answer again (it is the answer the API would give). Figure: the bot process's peak RSS
(VmHWM from /proc), against the issue's target of < 300 MB with 20 documents in flight.
"""

from __future__ import annotations

import argparse
import io
import re
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python bench/memory.py` works from the repo root

from tests.harness import API_KEY, BOT_TOKEN, BotProcess, bot_env  # noqa: E402
from tests.standins import picwish_api  # noqa: E402
from tests.standins.picwish_api import FakePicWish  # noqa: E402
from tests.standins.telegram_api import FakeTelegram  # noqa: E402

DOCUMENT_SIZE = (4000, 3000)
QPS = 20
API_LATENCY = 0.5
TARGET_MB = 300.0  # peak RSS with 20 documents in flight (issue 13, item 6)
TARGET_DOCUMENTS = 20
FIRST_USER = 7001
_COMMENT = re.compile(rb"\xff\xfe\x00\x0ebench\d{7}")  # the marker that makes each document distinct


def documents() -> tuple[bytes, bytes]:
    """The astronaut at 4000 x 3000 as a phone saves it: upright, and sideways with EXIF orientation 6."""
    from skimage import data

    picture = Image.fromarray(data.astronaut()).resize(DOCUMENT_SIZE, Image.Resampling.LANCZOS)  # type: ignore[no-untyped-call]
    upright, sideways = io.BytesIO(), io.BytesIO()
    picture.save(upright, "JPEG", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view
    picture.transpose(Image.Transpose.ROTATE_90).save(sideways, "JPEG", quality=92, exif=exif)
    return upright.getvalue(), sideways.getvalue()


def distinct(jpeg: bytes, seed: int) -> bytes:
    """``jpeg`` with a comment of its own right after the start marker: a new file, the same picture."""
    marker = f"bench{seed:07d}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", 2 + len(marker)) + marker + jpeg[2:]


def cut_out_once(
    render: Callable[..., tuple[bytes, bytes] | int],
) -> Callable[..., tuple[bytes, bytes] | int]:
    """The stand-in's cutout, made once per picture (a document's comment is not part of its picture)."""
    made: dict[tuple[bytes, bool, str], tuple[bytes, bytes] | int] = {}

    def cached(data: bytes, *, crop: bool, output_format: str) -> tuple[bytes, bytes] | int:
        key = (_COMMENT.sub(b"", data), crop, output_format)
        if key not in made:
            made[key] = render(data, crop=crop, output_format=output_format)
        return made[key]

    return cached


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def send(telegram: FakeTelegram, user: int, data: bytes) -> None:
    telegram.add_user(user, f"User{user}")
    telegram.send_document(user, data, file_name=f"IMG_{user}.JPG", mime_type="image/jpeg")


def answered(telegram: FakeTelegram, users: int) -> None:
    """Every user has their PNG, the last part of the answer."""
    telegram.wait_for(lambda t: len(t.calls_to("sendDocument")) >= users, timeout=60 + 10 * users)


def run(count: int, pictures: tuple[bytes, bytes]) -> tuple[float, float, float]:
    """(peak RSS MB, RSS MB before the burst, seconds from the burst to the last answer) for ``count``."""
    with (
        tempfile.TemporaryDirectory() as folder,
        FakeTelegram(BOT_TOKEN) as telegram,
        FakePicWish(API_KEY, qps=QPS, latency=API_LATENCY) as picwish,
    ):
        env = bot_env(
            telegram.url, picwish.url, Path(folder) / "data", LOG_LEVEL="WARNING", PICWISH_QPS=str(QPS)
        )
        bot = BotProcess(env, Path(folder))
        try:
            telegram.wait_for(lambda t: t.calls_to("getUpdates"), timeout=30)
            for warm_up, picture in enumerate(pictures):  # both kinds once: imports, plugins, the answers
                send(telegram, FIRST_USER - 1 - warm_up, distinct(picture, 9_000_000 + warm_up))
            answered(telegram, len(pictures))
            before = Path(f"/proc/{bot.proc.pid}/status").read_text()
            rss_before = int(re.search(r"VmRSS:\s+(\d+)", before)[1]) / 1024  # type: ignore[index]
            started = time.monotonic()
            for i in range(count):
                send(telegram, FIRST_USER + i, distinct(pictures[i % 2], i))
            answered(telegram, len(pictures) + count)
            took = time.monotonic() - started
            peak = vm_hwm_mb(bot.proc.pid)
            errors = [line for line in bot.output.splitlines() if "ERROR" in line or "Traceback" in line]
        finally:
            bot.terminate()
            bot.wait()
            bot.close()
        if errors:
            print(f"  bot log errors: {len(errors)}, first: {errors[0]}")
        if len(picwish.creates()) != len(pictures) + count:
            print(f"  PicWish creates: {len(picwish.creates())}, expected {len(pictures) + count}")
    return peak, rss_before, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--documents", type=int, action="append", help="documents in one round (default 12, 20)"
    )
    args = parser.parse_args()
    rounds = args.documents or [12, TARGET_DOCUMENTS]

    # The stand-in looks its cutout function up at each call.
    picwish_api.render_cutout = cut_out_once(picwish_api.render_cutout)
    pictures = documents()
    print(
        f"documents of {DOCUMENT_SIZE[0]}x{DOCUMENT_SIZE[1]} ({len(pictures[0]) >> 10} KB upright JPEG, "
        f"{len(pictures[1]) >> 10} KB sideways), all at once; QPS {QPS}, PicWish latency {API_LATENCY:g} s"
    )
    failed = False
    for count in rounds:
        peak, before, took = run(count, pictures)
        line = f"{count:>3} documents: peak RSS {peak:5.0f} MB (idle after warm-up {before:.0f} MB), all answered in {took:4.1f} s"
        if count >= TARGET_DOCUMENTS:
            ok = peak < TARGET_MB
            failed |= not ok
            line += f"   target < {TARGET_MB:.0f} MB  {'PASS' if ok else 'FAIL'}"
        print(line, flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
