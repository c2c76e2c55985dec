"""What we make from the cutout API's answer: the sticker, the print-ready prop, the photo.

The answer is a transparent PNG, or an opaque JPEG when the user chose JPG; an opaque answer is
treated as one big opaque cutout. Every failure is one of the errors in ``bot.errors``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image

from bot import errors
from bot.imaging.decode import (
    CUTOUT_FORMATS,
    UPRIGHT,
    encode,
    encode_jpeg,
    flatten_onto_white,
    load,
    open_image,
    orientation,
    to_rgb,
)
from bot.imaging.outline import add_outline, outline_width

ALPHA_THRESHOLD = 8  # alpha at or below this is haze from the matting, not part of the cutout
STICKER_SIDE = 512
STICKER_MAX_BYTES = 512_000
STICKER_PADDING = 20  # transparent margin on each side of a sticker: 4% of 512 px
OUTLINE_CLEARANCE = 5  # clear px left between a sticker's outline and its edge

PROP_DPI = 300
PROP_MAX_BYTES = 49 * 1024 * 1024  # under Telegram's 50 MB upload limit, with room for a ZIP entry header
PROP_MARGIN = 0.04  # transparent cutting margin round a prop, as a fraction of its long side
PROP_JPEG_QUALITY = 92
# zlib level 1: on a 3000 px photo it is ~1.9x faster than level 3 for ~9 % more bytes (0.6 s, 8.5 MB)
_PROP_PNG_LEVEL = 1
_PROP_ATTEMPTS = 6  # encodings tried before a prop that will not shrink under its cap is refused

PHOTO_MAX_BYTES = 10 * 1024 * 1024  # Telegram's sendPhoto limit
PHOTO_MAX_SIDES = 10_000  # sendPhoto: width + height at most this
PHOTO_MAX_ASPECT = 20
_PHOTO_QUALITIES = (92, 85, 75, 60, 45)

# (quality, alpha_quality) for a lossy sticker, best first; the last always fits at 512 px
_WEBP_LOSSY_STEPS = ((95, 100), (90, 100), (80, 100), (70, 90), (60, 80), (50, 60), (40, 40), (0, 0))
_SOLID_ALPHA = [0] * (ALPHA_THRESHOLD + 1) + [255] * (255 - ALPHA_THRESHOLD)
_CLEAN_ALPHA = [0] * (ALPHA_THRESHOLD + 1) + list(range(ALPHA_THRESHOLD + 1, 256))
_Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RenderedCutout:
    """A finished cutout: a static sticker and a transparent PNG of the same geometry."""

    sticker_webp: bytes = field(repr=False)
    png: bytes = field(repr=False)
    width: int
    height: int


@dataclass(frozen=True)
class RenderedProp:
    """A print-ready cutout at the API's full resolution, with a cutting margin, tagged 300 DPI."""

    data: bytes = field(repr=False)
    width: int
    height: int
    extension: str  # "png" (transparent) or "jpg" (opaque source)
    scale: float  # 1.0 at full resolution; < 1.0 when shrunk to fit max_bytes


def result_size(result: bytes) -> tuple[int, int]:
    """The API answer's width and height, read from its header."""
    return _open_result(result).size


def render_sticker(result: bytes, *, crop: bool = True, outline: bool = False) -> RenderedCutout:
    """Turn the API's answer into a 512 px sticker (WEBP) and PNG, each under 512 KB.

    ``crop``: trimmed to the visible pixels; otherwise the API's whole canvas, head in place. Either
    is scaled so its longer side is 512 px less an even transparent margin, and centred.
    ``outline``: a white ring along the cutout's edge, 3 % of 512 px wide, inside the margin.
    """
    im = _decode_result(result)
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    box = _visible_box(im) if crop else _whole_if_visible(im)
    if not outline:
        sticker = _compose(im, box, STICKER_PADDING)
    else:
        width = outline_width(STICKER_SIDE)
        sticker = add_outline(_compose(im, box, max(STICKER_PADDING, width + OUTLINE_CLEARANCE)), width)
    return RenderedCutout(
        sticker_webp=_encode_sticker_webp(sticker),
        png=_encode_sticker_png(sticker),
        width=sticker.width,
        height=sticker.height,
    )


def render_prop(
    result: bytes, *, crop: bool = True, outline: bool = False, max_bytes: int = PROP_MAX_BYTES
) -> RenderedProp:
    """The cutout for printing: full resolution, a clear cutting margin, 300 DPI.

    A transparent answer makes an RGBA PNG (``outline`` adds a white ring inside the margin); an
    opaque one a JPEG on a white margin. Never upscaled; downscaled only as far as ``max_bytes``
    needs. ``crop`` as for :func:`render_sticker`, but the canvas keeps its size.
    """
    im = _decode_result(result)
    opaque = im.mode != "RGBA"
    if opaque:
        box: _Box = (0, 0, im.width, im.height)
    else:
        box = _visible_box(im) if crop else _whole_if_visible(im)
    scale = 1.0
    for _ in range(_PROP_ATTEMPTS):
        prop = _prop_canvas(im, box, scale, outline=outline and not opaque)
        if opaque:
            data = encode(prop, "JPEG", quality=PROP_JPEG_QUALITY, dpi=(PROP_DPI, PROP_DPI))
        else:
            data = encode(prop, "PNG", compress_level=_PROP_PNG_LEVEL, dpi=(PROP_DPI, PROP_DPI))
        if len(data) <= max_bytes:
            return RenderedProp(data, prop.width, prop.height, "jpg" if opaque else "png", scale)
        # Bytes follow the area: aim a little under the cap, and always shrink a little.
        scale *= min(0.95, 0.98 * math.sqrt(max_bytes / len(data)))
        del prop, data  # before the next attempt allocates its own
    raise errors.CutoutError(f"a {im.width}x{im.height} prop does not fit in {max_bytes} bytes")


def render_jpg_photo(result: bytes) -> bytes:
    """The API's JPEG made fit for Telegram's sendPhoto: itself if it already is, else re-encoded.

    sendPhoto takes up to 10 MB, width + height up to 10000 and a ratio up to 20:1. A transparent
    answer is flattened onto white.
    """
    im = _open_result(result)
    width, height = im.size
    if (
        im.format == "JPEG"
        and im.mode in ("RGB", "L")
        and len(result) <= PHOTO_MAX_BYTES
        and width + height <= PHOTO_MAX_SIDES
        and max(width, height) <= PHOTO_MAX_ASPECT * min(width, height)
        and orientation(im) == 1
    ):
        return result
    im = _upright(im)
    if im.mode == "RGBA":
        im = flatten_onto_white(im)
    if im.width + im.height > PHOTO_MAX_SIDES:
        shrink = PHOTO_MAX_SIDES / (im.width + im.height)
        size = (max(1, math.floor(im.width * shrink)), max(1, math.floor(im.height * shrink)))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    im = _pad_to_aspect(im, PHOTO_MAX_ASPECT)
    im.info = {}  # no EXIF (its orientation is applied), no profile (converted to sRGB)
    data, _ = encode_jpeg(im, PHOTO_MAX_BYTES, _PHOTO_QUALITIES)
    return data


# --- reading the answer --------------------------------------------------------------------------
def _open_result(result: bytes) -> Image.Image:
    try:
        return open_image(result, CUTOUT_FORMATS)
    except (errors.EmptyFile, errors.NotAnImage) as exc:
        raise errors.CorruptImage(f"unreadable cutout: {exc.detail}") from exc


def _decode_result(result: bytes) -> Image.Image:
    """The answer's pixels, upright, in sRGB: ``RGBA`` if it has transparency, else ``RGB``."""
    return _upright(_open_result(result))


def _upright(im: Image.Image) -> Image.Image:
    load(im)
    turn = orientation(im)
    im = to_rgb(im)
    return im.transpose(UPRIGHT[turn]) if turn in UPRIGHT else im


def _visible_box(im: Image.Image) -> _Box:
    """The bounding box of the pixels that are part of the cutout; no face if there are none."""
    box = im.getchannel("A").point(_SOLID_ALPHA).getbbox()
    if box is None:
        raise errors.NoFace("the cutout is fully transparent")
    return box


def _whole_if_visible(im: Image.Image) -> _Box:
    """The whole canvas, as long as something on it is visible."""
    _visible_box(im)
    return (0, 0, im.width, im.height)


# --- the sticker ---------------------------------------------------------------------------------
def _compose(im: Image.Image, box: _Box, padding: int) -> Image.Image:
    """Scale ``box`` to 512 px less the margins on its longer side; centre it on a clear canvas."""
    inner = STICKER_SIDE - 2 * padding
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    scale = inner / max(box_width, box_height)
    size = (max(1, round(box_width * scale)), max(1, round(box_height * scale)))
    # box= resamples from the full image, so the edge of the trim is not a hard cut
    content = im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    content.putalpha(content.getchannel("A").point(_CLEAN_ALPHA))
    canvas = Image.new("RGBA", (size[0] + 2 * padding, size[1] + 2 * padding), (0, 0, 0, 0))
    canvas.paste(content, (padding, padding))
    return canvas


def render_from_sticker(webp: bytes) -> RenderedCutout:
    """The sticker and PNG again from a sticker this bot rendered (and Telegram kept): the WEBP as it
    is, the PNG decoded from it (the same pixels, as the WEBP is lossless when it fits)."""
    with open_image(webp, ("WEBP",)) as im:
        if max(im.size) != STICKER_SIDE:
            raise errors.CutoutError(f"not one of our stickers: {im.width}x{im.height}")
        sticker = im.convert("RGBA")
    return RenderedCutout(webp, _encode_sticker_png(sticker), sticker.width, sticker.height)


def _encode_sticker_webp(im: Image.Image) -> bytes:
    """Lossless if it fits in 512 KB, else lossy with the highest quality that does (alpha kept)."""
    # Low effort: on a 512 px head it is ~4x faster than method 4 and within 2 % of its size.
    data = encode(im, "WEBP", lossless=True, quality=20, method=1)
    if len(data) <= STICKER_MAX_BYTES:
        return data
    for quality, alpha_quality in _WEBP_LOSSY_STEPS:
        data = encode(im, "WEBP", quality=quality, alpha_quality=alpha_quality, method=4)
        if len(data) <= STICKER_MAX_BYTES:
            return data
    raise errors.CutoutError(f"a {im.width}x{im.height} sticker does not fit in {STICKER_MAX_BYTES} bytes")


def _encode_sticker_png(im: Image.Image) -> bytes:
    """RGBA; if that is over 512 KB, 255 colours plus a clear one (one byte a pixel always fits)."""
    # zlib level 3 is ~2.5x faster than the default 6 for ~8 % more bytes; near the cap the
    # slower settings may spare the colours.
    data = encode(im, "PNG", compress_level=3)
    if STICKER_MAX_BYTES < len(data) <= STICKER_MAX_BYTES * 1.25:
        data = encode(im, "PNG", optimize=True)
    if len(data) <= STICKER_MAX_BYTES:
        return data
    # Index 255 is reserved, fully clear, for the pixels that were: an averaged octree colour must
    # not leave a faint haze in the transparent margins.
    quantized = im.quantize(255, method=Image.Quantize.FASTOCTREE)
    colours = (quantized.getpalette("RGBA") or [])[: 255 * 4]
    quantized.putpalette(colours + [0] * (256 * 4 - len(colours)), "RGBA")
    quantized.paste(255, mask=im.getchannel("A").point([255] + [0] * 255))
    data = encode(quantized, "PNG", optimize=True)
    if len(data) <= STICKER_MAX_BYTES:
        return data
    raise errors.CutoutError(f"a {im.width}x{im.height} PNG does not fit in {STICKER_MAX_BYTES} bytes")


# --- the prop and the photo ----------------------------------------------------------------------
def _prop_canvas(im: Image.Image, box: _Box, scale: float, *, outline: bool) -> Image.Image:
    """``box`` of ``im`` at ``scale``, on a margin of 4 % of its long side (plus the outline's width)."""
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    size = (max(1, round(box_width * scale)), max(1, round(box_height * scale)))
    ring = outline_width(max(size)) if outline else 0
    pad = round(PROP_MARGIN * max(size)) + ring
    if scale == 1.0:
        content = im if box == (0, 0, *im.size) else im.crop(box)
    else:
        content = im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    canvas_size = (size[0] + 2 * pad, size[1] + 2 * pad)
    if im.mode != "RGBA":
        canvas = Image.new("RGB", canvas_size, (255, 255, 255))
        canvas.paste(content, (pad, pad))
        return canvas
    canvas = Image.new("RGBA", canvas_size, (0, 0, 0, 0))
    # Only the visible pixels: haze, and colour left under full transparency, would cost bytes.
    canvas.paste(content, (pad, pad), mask=content.getchannel("A").point(_SOLID_ALPHA))
    del content
    return add_outline(canvas, ring) if ring else canvas


def _pad_to_aspect(im: Image.Image, ratio: float) -> Image.Image:
    """``im`` centred on white, lengthening its short side until long / short is at most ``ratio``."""
    width, height = im.size
    if max(width, height) <= ratio * min(width, height):
        return im
    size = (width, math.ceil(width / ratio)) if width > height else (math.ceil(height / ratio), height)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(im, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas
