"""How long prepare_upload and render_cutout take, and how much memory they reach for.

    .venv/bin/python bench/imaging.py

Each case runs in a fresh interpreter that holds only the input bytes, so the peak RSS it reports
is that of the call, not of building the inputs. Inputs: skimage's astronaut() at its native
512 x 512 and upscaled to 3000 x 3000, and a noisy worst-case cutout for render_cutout.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import ExifTags, Image, ImageDraw


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def _head_cutout(im: Image.Image) -> Image.Image:
    """The astronaut's head on transparency, as the API would return it (same size as the input)."""
    width, height = im.size
    mask = Image.new("L", im.size, 0)
    ImageDraw.Draw(mask).ellipse((0.29 * width, 0.04 * height, 0.64 * width, 0.51 * height), fill=255)
    cutout = im.convert("RGBA")
    cutout.putalpha(mask)
    return cutout


def _build_inputs(folder: Path) -> list[tuple[str, str, Path, int]]:
    import numpy as np  # only the parent builds inputs: children stay lean
    from skimage import data

    native = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    big = native.resize((3000, 3000), Image.Resampling.LANCZOS)
    sideways = Image.Exif()
    sideways[ExifTags.Base.Orientation] = 6
    rotated = _encode(big, "JPEG", quality=92, exif=sideways)
    noisy = Image.fromarray(np.random.default_rng(1).integers(16, 256, (1024, 1024, 4), dtype=np.uint8))
    cases = [
        ("prepare_upload", "512 JPEG (sent as is)", _encode(native, "JPEG", quality=92), 20),
        ("prepare_upload", "512 PNG RGBA (re-encoded)", _encode(_head_cutout(native), "PNG"), 20),
        ("prepare_upload", "3000 JPEG (sent as is)", _encode(big, "JPEG", quality=92), 5),
        ("prepare_upload", "3000 JPEG EXIF 6 (re-encoded)", rotated, 5),
        ("prepare_upload", "3000 PNG (sent as is)", _encode(big, "PNG"), 5),
        ("render_cutout", "512 head cutout PNG", _encode(_head_cutout(native), "PNG"), 10),
        ("render_cutout", "3000 head cutout PNG", _encode(_head_cutout(big), "PNG"), 5),
        ("render_cutout", "1024 noise, worst case", _encode(noisy, "PNG"), 5),
    ]
    built = []
    for number, (function, label, raw, repeats) in enumerate(cases):
        path = folder / f"case{number}.bin"
        path.write_bytes(raw)
        built.append((function, label, path, repeats))
    return built


def _peak_rss_mb() -> float:
    """The high-water mark of this process's resident memory (Linux: VmHWM).

    Not ``ru_maxrss``: Linux carries that over from the parent through fork and exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_case(function: str, path: str, repeats: int) -> None:
    """Child side: time one function on one input and report as a JSON line."""
    from bot import imaging

    raw = Path(path).read_bytes()
    call = getattr(imaging, function)
    baseline_mb = _peak_rss_mb()
    call(raw)  # warm-up: plugin registration, first-call allocations
    started = time.perf_counter()
    for _ in range(repeats):
        call(raw)
    elapsed = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    report = {"ms": 1000 * elapsed / repeats, "peak_mb": peak_mb, "delta_mb": peak_mb - baseline_mb}
    print(json.dumps(report | {"input_kb": len(raw) / 1024}))


def main() -> None:
    print(f"{'function':<15} {'input':<31} {'in KB':>8} {'ms/call':>8} {'peak RSS':>9} {'+call':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for function, label, path, repeats in _build_inputs(Path(folder)):
            child = subprocess.run(
                [sys.executable, __file__, "--case", function, str(path), str(repeats)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout)
            print(
                f"{function:<15} {label:<31} {result['input_kb']:>8.0f} {result['ms']:>8.1f}"
                f" {result['peak_mb']:>6.0f} MB {result['delta_mb']:>5.0f} MB"
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        _run_case(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
