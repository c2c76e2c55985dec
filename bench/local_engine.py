"""How long the offline engine takes per photo, and how much memory it reaches for.

    .venv/bin/python bench/local_engine.py

Each case runs in a fresh interpreter that loads the models and cuts out one input over and over
through ``LocalEngine.cutout`` (worker thread, two onnxruntime threads), so the peak RSS it reports
(VmHWM) is that of the engine alone: interpreter, models, one photo at its peak. Inputs: skimage's
astronaut upscaled to 1000 and 3000 px, as JPEG. ms per photo is the median of the timed runs after
one warm-up run; model loading is reported apart (it happens once per process).
Each case prints PASS or FAIL against its target; the exit code is 1 if any failed.
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEAK_RSS_TARGET_MB = 700.0


@dataclass(frozen=True)
class Case:
    label: str
    side: int
    crop: bool
    repeats: int
    target_ms: float


CASES = (
    Case("1000 px, crop", 1000, True, 7, 1500.0),
    Case("3000 px, crop", 3000, True, 5, 3000.0),
    Case("3000 px, whole canvas", 3000, False, 5, 3000.0),
)


def _peak_rss_mb() -> float:
    """This process's resident-memory high-water mark (Linux VmHWM; ru_maxrss carries over from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _input(side: int, folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    im = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)  # type: ignore[no-untyped-call]
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=92)
    path = folder / f"astronaut-{side}.jpg"
    path.write_bytes(buffer.getvalue())
    return path


def _run_case(path: Path, crop: bool, repeats: int) -> None:
    """Child side: load the engine, time ``repeats`` cutouts, report one JSON line."""
    from bot.backends.base import CutoutRequest
    from bot.backends.local import LocalEngine

    raw = path.read_bytes()
    request = CutoutRequest(image=raw, filename=path.name, mime="image/jpeg", crop=crop)
    engine = LocalEngine()

    async def run() -> dict[str, float]:
        started = time.perf_counter()
        await asyncio.to_thread(engine.load)
        load_ms = 1000 * (time.perf_counter() - started)
        await engine.cutout(request)  # warm-up: onnxruntime plans its first run of each shape
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = await engine.cutout(request)
            times.append(1000 * (time.perf_counter() - started))
        return {"load_ms": load_ms, "ms": statistics.median(times), "out_kb": len(result) / 1024}

    report = asyncio.run(run())
    print(json.dumps(report | {"peak_mb": _peak_rss_mb()}))


def main() -> None:
    print(
        f"{'case':<24} {'ms/photo':>9} {'load ms':>8} {'answer':>9} {'peak RSS':>9}  {'target':<22} verdict"
    )
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            path = _input(case.side, Path(folder))
            child = subprocess.run(
                [sys.executable, __file__, "--case", str(path), str(int(case.crop)), str(case.repeats)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout)
            ok = result["ms"] < case.target_ms and result["peak_mb"] < PEAK_RSS_TARGET_MB
            failed |= not ok
            target = f"< {case.target_ms:.0f} ms, < {PEAK_RSS_TARGET_MB:.0f} MB"
            print(
                f"{case.label:<24} {result['ms']:>9.0f} {result['load_ms']:>8.0f} {result['out_kb']:>6.0f} KB"
                f" {result['peak_mb']:>6.0f} MB  {target:<22} {'PASS' if ok else 'FAIL'}",
                flush=True,
            )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        _run_case(Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]))
    else:
        main()
