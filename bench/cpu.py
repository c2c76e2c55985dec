"""The bot's CPU per photo in its image pipeline, against budgets.

    .venv/bin/python bench/cpu.py        # also run by `make bench`

For a new photo the bot makes three imaging calls (bot/pipeline/service.py and maker.py):
``prepare_upload`` on the user's file, ``result_size`` on the API's answer, and ``render_sticker``
on that answer (the 512 px WEBP sticker and PNG). This times the three together, in CPU time
(``time.process_time``: user + system, every thread of the process), not wall time, so a shared
machine skews it less. Each case runs in a fresh interpreter that holds only its inputs and first
handles every input once, as a running bot would have; then the median round is judged (the fastest
is printed too).

Inputs, built as the bot receives them:

- a 1280 px Telegram photo: skimage's astronaut upscaled to 1280 x 1280, JPEG quality 87; it goes to
  the API as it is, its pixels not decoded (Telegram made it: ``prepare_upload(telegram_photo=True)``);
- a 4000 x 3000 phone photo sent as a file (a document): the same, JPEG quality 92;
- the API's answer to each, made by the PicWish stand-in itself (tests/standins/picwish_api.py
  ``render_cutout``): a full-resolution RGBA PNG of an elliptical head, its box with crop=1 (the
  bot's default: 576 x 704 for the photo, 1800 x 1651 for the document) or the whole canvas with
  crop=0.

Budgets: the issue's target is <= 50 ms of bot CPU per 1280 px photo and <= 150 ms per 4000 x 3000
document, everything included (python-telegram-bot, HTTP, the store...); bench/latency.py measures
that whole. Judged here is the imaging share, with ~20 % of headroom over an idle machine's figures:
the floor is decoding the answer's PNG (~7 ms at 576 x 704, ~45 ms at 1800 x 1651 with libpng and
the system's zlib: bot/imaging/png.py), one Lanczos resample (fast_image_resize, in SIMD: ~1 ms
at 576 x 704, ~7 at 1800 x 1651) and two lossless encodes of the 512 px sticker.
On a machine busy with other work (two cores, another test run) the figures rise by up to a third,
the 4000 px ones most: rerun when idle.
"""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python bench/cpu.py` works from the repo root

PHOTO_SIDE = 1280
DOCUMENT_SIZE = (4000, 3000)


@dataclass(frozen=True)
class Case:
    label: str
    upload: str  # file names in the inputs folder
    answer: str
    rounds: int
    options: dict[str, Any] = field(default_factory=dict)
    budget_ms: float | None = None  # median round; None: shown, not judged

    @property
    def telegram_photo(self) -> bool:
        """Sent as a photo (Telegram's own JPEG), not as a file."""
        return self.upload == "photo.jpg"


CASES = (
    Case("1280 photo (crop, no outline)", "photo.jpg", "photo-crop1.png", 40, {}, 25.0),
    Case("1280 photo, outline", "photo.jpg", "photo-crop1.png", 40, {"outline": True}, 30.0),
    Case("1280 photo, whole canvas", "photo.jpg", "photo-crop0.png", 30, {"crop": False}, 50.0),
    Case("4000x3000 document (crop)", "document.jpg", "document-crop1.png", 20, {}, 115.0),
    Case("4000x3000 document, whole canvas", "document.jpg", "document-crop0.png", 6, {"crop": False}),
)

WARM_UP = sorted({(case.upload, case.answer) for case in CASES})


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def _build_inputs(folder: Path) -> None:
    from skimage import data

    from tests.standins.picwish_api import render_cutout

    native = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    uploads = {
        "photo": _encode(
            native.resize((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.LANCZOS), "JPEG", quality=87
        ),
        "document": _encode(native.resize(DOCUMENT_SIZE, Image.Resampling.LANCZOS), "JPEG", quality=92),
    }
    for name, raw in uploads.items():
        (folder / f"{name}.jpg").write_bytes(raw)
        for crop in (True, False):
            answer = render_cutout(raw, crop=crop, output_format="png")
            assert isinstance(answer, tuple), f"the stand-in refused the {name}: state {answer}"
            (folder / f"{name}-crop{int(crop)}.png").write_bytes(answer[0])


def _run_case(
    folder: str, upload_name: str, answer_name: str, options: dict[str, Any], rounds: int, telegram_photo: bool
) -> None:
    """Child side: the three calls a photo makes, timed one round at a time; a JSON line of results."""
    from bot import imaging

    upload = (Path(folder) / upload_name).read_bytes()
    answer = (Path(folder) / answer_name).read_bytes()

    def one_round() -> tuple[float, float, float]:
        started = time.process_time()
        prepared = imaging.prepare_upload(upload, telegram_photo=telegram_photo)
        prepared_at = time.process_time()
        imaging.result_size(answer)
        sized_at = time.process_time()
        imaging.render_sticker(answer, **options)
        done_at = time.process_time()
        del prepared
        return prepared_at - started, sized_at - prepared_at, done_at - sized_at

    # Warm-up, as a bot that has been running: plugins registered, and every input here handled
    # once, so glibc's malloc has grown its thresholds as it would have (in a fresh process a round
    # can pay thousands of page faults that a running bot does not).
    for warm_upload, warm_answer in WARM_UP:
        imaging.prepare_upload((Path(folder) / warm_upload).read_bytes())
        imaging.render_sticker((Path(folder) / warm_answer).read_bytes())
    one_round()
    times = [one_round() for _ in range(rounds)]
    totals = [sum(steps) for steps in times]
    with Image.open(io.BytesIO(answer)) as im:
        answer_size = im.size
    report = {
        "steps_ms": [1000 * statistics.median(step) for step in zip(*times, strict=True)],
        "median_ms": 1000 * statistics.median(totals),
        "best_ms": 1000 * min(totals),
        "answer": f"{answer_size[0]}x{answer_size[1]}",
    }
    print(json.dumps(report))


def main() -> None:
    print(
        f"{'photo':<34} {'answer':>9} {'prepare':>8} {'size':>5} {'render':>7}"
        f" {'median':>7} {'best':>6}  {'budget':<9} verdict    (CPU ms)"
    )
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        _build_inputs(Path(folder))
        for case in CASES:
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    folder,
                    case.upload,
                    case.answer,
                    json.dumps(case.options),
                    str(case.rounds),
                    json.dumps(case.telegram_photo),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout)
            prepare, size, render = result["steps_ms"]
            line = (
                f"{case.label:<34} {result['answer']:>9} {prepare:>8.1f} {size:>5.1f} {render:>7.1f}"
                f" {result['median_ms']:>7.1f} {result['best_ms']:>6.1f}"
            )
            if case.budget_ms is not None:
                ok = result["median_ms"] <= case.budget_ms
                failed |= not ok
                line += f"  {f'<= {case.budget_ms:.0f}':<9} {'PASS' if ok else 'FAIL'}"
            print(line, flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--case":
        _run_case(
            sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), int(sys.argv[6]), json.loads(sys.argv[7])
        )
    else:
        main()
