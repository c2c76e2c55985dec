"""How long the image pipeline takes, and how much memory it reaches for.

    .venv/bin/python bench/imaging.py

Each case runs in a fresh interpreter that holds only its input, so the peak RSS it reports is
that of the call, not of building the inputs. Inputs: skimage's astronaut() at its native
512 x 512 and upscaled to 3000 x 3000 (also as an iPhone-style HEIC: turned in the container,
EXIF saying so too), a noisy worst-case cutout, and for the ZIP twenty photo-filled 3000 px
props (the largest a 3000 px answer makes) written to disk by this parent.
Cases with a target print PASS or FAIL against it.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, ImageDraw

PROP_TARGET = (2000.0, 400.0)  # ms a call, peak RSS MB: a 3000 px prop
ZIP_TARGET = (5000.0, 150.0)  # twenty 3000 px props


@dataclass(frozen=True)
class Case:
    function: str
    label: str
    path: Path  # the input bytes, or for write_zip_parts a JSON list of [path, name]
    repeats: int
    options: dict[str, Any] = field(default_factory=dict)
    target: tuple[float, float] | None = None


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


def _with_comment(png: bytes, text: str) -> bytes:
    """``png`` with a tEXt chunk before IEND: a distinct file with the same pixels."""
    payload = b"Comment\x00" + text.encode()
    chunk = (
        struct.pack(">I", len(payload)) + b"tEXt" + payload + struct.pack(">I", zlib.crc32(b"tEXt" + payload))
    )
    return png[:-12] + chunk + png[-12:]


def _build_inputs(folder: Path) -> list[Case]:
    import numpy as np  # only the parent builds inputs: children stay lean
    import pillow_heif
    from skimage import data

    from bot import imaging

    native = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    big = native.resize((3000, 3000), Image.Resampling.LANCZOS)
    sideways = Image.Exif()
    sideways[ExifTags.Base.Orientation] = 6
    rotated = _encode(big, "JPEG", quality=92, exif=sideways)
    heic = io.BytesIO()
    pillow_heif.from_pillow(big).save(heic, quality=90, exif=sideways.tobytes())
    noisy = Image.fromarray(np.random.default_rng(1).integers(16, 256, (1024, 1024, 4), dtype=np.uint8))
    head_512, head_3000 = _encode(_head_cutout(native), "PNG"), _encode(_head_cutout(big), "PNG")
    photo_3000 = _encode(big.convert("RGBA"), "PNG")  # an answer whose whole canvas is visible
    outline, whole, tight = {"outline": True}, {"crop": False}, {"crop": True}
    inputs: list[tuple[str, str, bytes, int, dict[str, Any], tuple[float, float] | None]] = [
        ("prepare_upload", "512 JPEG (sent as is)", _encode(native, "JPEG", quality=92), 20, {}, None),
        ("prepare_upload", "512 PNG RGBA (re-encoded)", head_512, 20, {}, None),
        ("prepare_upload", "3000 JPEG (sent as is)", _encode(big, "JPEG", quality=92), 5, {}, None),
        ("prepare_upload", "3000 JPEG EXIF 6 (re-encoded)", rotated, 5, {}, None),
        ("prepare_upload", "3000 PNG (sent as is)", _encode(big, "PNG"), 5, {}, None),
        ("prepare_upload", "3000 HEIC EXIF 6 (re-encoded)", heic.getvalue(), 5, {}, None),
        ("render_sticker", "512 head cutout PNG", head_512, 10, {}, None),
        ("render_sticker", "3000 head cutout PNG", head_3000, 5, {}, None),
        ("render_sticker", "1024 noise, worst case", _encode(noisy, "PNG"), 5, {}, None),
        ("render_sticker", "512 head, outline", head_512, 10, outline, None),
        ("render_sticker", "3000 head, outline", head_3000, 5, outline, None),
        ("render_prop", "3000 head, crop=0, outline", head_3000, 3, whole | outline, PROP_TARGET),
        ("render_prop", "3000 head, crop=1, outline", head_3000, 3, tight | outline, PROP_TARGET),
        ("render_prop", "3000 photo, crop=0, outline", photo_3000, 3, whole | outline, PROP_TARGET),
    ]
    cases = []
    for number, (function, label, raw, repeats, options, target) in enumerate(inputs):
        path = folder / f"case{number}.bin"
        path.write_bytes(raw)
        cases.append(Case(function, label, path, repeats, options, target))

    # The ZIP's worst case: props of a photo-filled 3000 px answer, each distinct on disk.
    prop = imaging.render_prop(photo_3000, crop=False, outline=True).data
    listing = []
    for number in range(20):
        path = folder / f"prop{number}.png"
        path.write_bytes(_with_comment(prop, f"prop {number}"))
        listing.append([str(path), f"guest-{number:04d}-prop.png"])
    path = folder / "props.json"
    path.write_text(json.dumps(listing))
    label = f"20 props of {len(prop) / 1e6:.1f} MB"
    cases.append(Case("write_zip_parts", label, path, 3, {}, ZIP_TARGET))
    return cases


def _peak_rss_mb() -> float:
    """The high-water mark of this process's resident memory (Linux: VmHWM).

    Not ``ru_maxrss``: Linux carries that over from the parent through fork and exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_case(function: str, path: str, options: dict[str, Any], repeats: int) -> None:
    """Child side: time one function on one input and report as a JSON line."""
    from bot import imaging

    call = getattr(imaging, function)
    args: tuple[Any, ...]
    if function == "write_zip_parts":
        files = [(Path(source), name) for source, name in json.loads(Path(path).read_text())]
        args = (files, Path(path).parent / "zips", "props")
        input_bytes = sum(source.stat().st_size for source, _ in files)
    else:
        raw = Path(path).read_bytes()
        args = (raw,)
        input_bytes = len(raw)
    baseline_mb = _peak_rss_mb()
    call(*args, **options)  # warm-up: plugin registration, first-call allocations
    started = time.perf_counter()
    for _ in range(repeats):
        call(*args, **options)
    elapsed = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    report = {"ms": 1000 * elapsed / repeats, "peak_mb": peak_mb, "delta_mb": peak_mb - baseline_mb}
    print(json.dumps(report | {"input_kb": input_bytes / 1024}))


def main() -> None:
    print(
        f"{'function':<16} {'input':<31} {'in KB':>8} {'ms/call':>8} {'peak RSS':>9} {'+call':>8}"
        f"  {'target':<20} verdict"
    )
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for case in _build_inputs(Path(folder)):
            options, repeats = json.dumps(case.options), str(case.repeats)
            child = subprocess.run(
                [sys.executable, __file__, "--case", case.function, str(case.path), options, repeats],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout)
            line = (
                f"{case.function:<16} {case.label:<31} {result['input_kb']:>8.0f} {result['ms']:>8.1f}"
                f" {result['peak_mb']:>6.0f} MB {result['delta_mb']:>5.0f} MB"
            )
            if case.target is not None:
                ms, mb = case.target
                ok = result["ms"] < ms and result["peak_mb"] < mb
                failed |= not ok
                line += f"  {f'< {ms:.0f} ms, < {mb:.0f} MB':<20} {'PASS' if ok else 'FAIL'}"
            print(line, flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--case":
        _run_case(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
