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
from bot.imaging.memory import decoding
from bot.imaging.outline import add_outline, outline_width
from bot.imaging.png import decode_plain_png, encode_rgba_png

try:
    import cykooz_resizer
except ImportError:  # no wheel for this platform (Linux on ARM): Pillow's Lanczos, at ~8x the CPU
    cykooz_resizer = None

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
# A sticker is resampled with Lanczos (support 3) in one pass at any scale, by fast_image_resize
# (cykooz-resizer: AVX2, SSE4.1 or NEON), which premultiplies by alpha, filters and divides as Pillow
# does for RGBA, as close to the exact filter as Pillow's own Lanczos. It is the better filter at a
# fraction of Pillow's CPU: 1.2 ms for the 576 x 704 answer to a 1280 px photo, where Pillow took 11
# with bicubic (premultiplied, then back), and 7 ms for the 1800 x 1651 answer to a phone photo,
# where it took 46 with reduce() first.
_LANCZOS_SUPPORT = 3.0  # in output px when downscaling, in input px when upscaling
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
    sticker = _sticker_picture(result, crop=crop, outline=outline)
    return RenderedCutout(
        sticker_webp=_encode_sticker_webp(sticker),
        png=_encode_sticker_png(sticker),
        width=sticker.width,
        height=sticker.height,
    )


def _sticker_picture(result: bytes, *, crop: bool, outline: bool) -> Image.Image:
    """The 512 px picture; the answer's decoded pixels are held only while it is made."""
    im = _open_result(result)
    with decoding(im):
        im = _upright(im, result)
        if im.mode != "RGBA":
            im = im.convert("RGBA")
        box = _visible_box(im) if crop else _whole_if_visible(im)
        if not outline:
            return _compose(im, box, STICKER_PADDING)
        width = outline_width(STICKER_SIDE)
        return add_outline(_compose(im, box, max(STICKER_PADDING, width + OUTLINE_CLEARANCE)), width)


def render_prop(
    result: bytes, *, crop: bool = True, outline: bool = False, max_bytes: int = PROP_MAX_BYTES
) -> RenderedProp:
    """The cutout for printing: full resolution, a clear cutting margin, 300 DPI.

    A transparent answer makes an RGBA PNG (``outline`` adds a white ring inside the margin); an
    opaque one a JPEG on a white margin. Never upscaled; downscaled only as far as ``max_bytes``
    needs. ``crop`` as for :func:`render_sticker`, but the canvas keeps its size.
    """
    im = _open_result(result)
    with decoding(im):  # the prop is as big as the answer: held until it is encoded
        im = _upright(im, result)
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
    with decoding(im):
        im = _upright(im, result)
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


def _upright(im: Image.Image, result: bytes) -> Image.Image:
    """The answer's pixels, upright, in sRGB: ``RGBA`` if it has transparency, else ``RGB``."""
    if im.format == "PNG" and (plain := decode_plain_png(result)) is not None:
        return plain  # no profile, no EXIF: sRGB and upright as it is
    load(im)
    turn = orientation(im)
    im = to_rgb(im)
    return im.transpose(UPRIGHT[turn]) if turn in UPRIGHT else im


def _visible_box(im: Image.Image) -> _Box:
    """The bounding box of the pixels that are part of the cutout; no face if there are none."""
    outer = im.getbbox(alpha_only=True)  # alpha > 0: a scan, no band copied
    if outer is None:
        raise errors.NoFace("the cutout is fully transparent")
    left, top, right, bottom = outer
    edges = (
        (left, top, right, top + 1),
        (left, bottom - 1, right, bottom),
        (left, top, left + 1, bottom),
        (right - 1, top, right, bottom),
    )
    if all(_over_haze(im.crop(edge)) for edge in edges):
        return outer  # each of its sides touches a visible pixel: no haze to trim
    region = im if outer == (0, 0, im.width, im.height) else im.crop(outer)
    box = region.getchannel("A").point(_SOLID_ALPHA).getbbox()
    if box is None:
        raise errors.NoFace("the cutout holds only haze")
    return (left + box[0], top + box[1], left + box[2], top + box[3])


def _over_haze(im: Image.Image) -> bool:
    """Whether some pixel of ``im`` (RGBA) is more than haze."""
    high = im.getchannel("A").getextrema()[1]
    assert isinstance(high, int)  # one 8-bit band
    return high > ALPHA_THRESHOLD


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
    content, (left, top) = _resample(im, box, size)
    content.putalpha(content.getchannel("A").point(_CLEAN_ALPHA))
    canvas = Image.new("RGBA", (size[0] + 2 * padding, size[1] + 2 * padding), (0, 0, 0, 0))
    canvas.paste(content, (padding + left, padding + top))
    return canvas


def _resample(im: Image.Image, box: _Box, size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """The part of ``im.resize(size, Image.Resampling.LANCZOS, box=box)`` that can be visible, and
    where it goes in it.

    As Pillow does for RGBA, the pixels are premultiplied by their alpha, so an output pixel whose
    filter reads only clear pixels comes out clear whatever colour they hold. Only the output that
    reaches a pixel with alpha > 0 is resampled, and only the input it reads is premultiplied: a
    whole-canvas sticker of a small head works on the head's surroundings, not the whole canvas.
    ``box`` is a window, not a cut: pixels just outside it are read, so the trim has no hard edge.
    """
    visible = im.getbbox(alpha_only=True) or box  # alpha > 0; the caller found some pixel visible
    scale_x, scale_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    left, right = _span(box[0], scale_x, size[0], visible[0], visible[2])
    top, bottom = _span(box[1], scale_y, size[1], visible[1], visible[3])
    part = (
        box[0] + left * scale_x,
        box[1] + top * scale_y,
        box[0] + right * scale_x,
        box[1] + bottom * scale_y,
    )
    reach_x, reach_y = _reach(scale_x), _reach(scale_y)
    region = (
        max(0, math.floor(part[0] - reach_x)),
        max(0, math.floor(part[1] - reach_y)),
        min(im.width, math.ceil(part[2] + reach_x)),
        min(im.height, math.ceil(part[3] + reach_y)),
    )
    source = im if region == (0, 0, im.width, im.height) else im.crop(region)
    window = (part[0] - region[0], part[1] - region[1], part[2] - region[0], part[3] - region[1])
    return _lanczos(source, (right - left, bottom - top), window), (left, top)


def _lanczos(im: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    """``im.resize(size, Image.Resampling.LANCZOS, box=box)`` for RGBA, premultiplied meanwhile."""
    if cykooz_resizer is None:
        return im.convert("RGBa").resize(size, Image.Resampling.LANCZOS, box=box).convert("RGBA")
    resized = Image.new("RGBA", size)
    options = cykooz_resizer.ResizeOptions(
        resize_alg=cykooz_resizer.ResizeAlg.convolution(cykooz_resizer.FilterType.lanczos3),
        crop_box=cykooz_resizer.CropBox(box[0], box[1], box[2] - box[0], box[3] - box[1]),
    )
    cykooz_resizer.Resizer().resize_pil(im, resized, options)  # a few µs to make: one a call, no locks
    return resized


def _reach(scale: float) -> float:
    """How far from its centre, in input px, an output pixel's value is read from: the filter's
    support (in output px when downscaling), and a px for rounding."""
    return _LANCZOS_SUPPORT * max(scale, 1.0) + 1


def _span(start: float, scale: float, count: int, low: int, high: int) -> tuple[int, int]:
    """The output pixels ``[first, last)`` of ``count`` whose filter reaches input pixels ``[low, high)``,
    when output pixel ``i`` is centred on input ``start + (i + 0.5) * scale``."""
    reach = _reach(scale)
    first = min(max(0, math.floor((low - reach - start) / scale - 0.5)), count - 1)
    last = max(min(count, math.ceil((high + reach - start) / scale - 0.5) + 1), first + 1)
    return first, last


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
    # libwebp's fastest lossless preset (cwebp -z 0): on a 512 px head ~5x less CPU than method 1
    # (6 ms, not 33), the same decoded pixels, ~20 % more bytes.
    data = encode(im, "WEBP", lossless=True, quality=0, method=0)
    if STICKER_MAX_BYTES < len(data) <= 1.6 * STICKER_MAX_BYTES:
        # Near the cap method 1 may still keep it lossless: on heads it is 20 to 35 % smaller.
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
    # The quick writer: about the bytes of Pillow's zlib level 3, at a fifth of its CPU (~4 ms, not
    # 21, for a 512 px head). Near the cap Pillow's slowest settings may spare the colours.
    data = encode_rgba_png(im)
    if STICKER_MAX_BYTES < len(data) <= STICKER_MAX_BYTES * 1.25:
        data = min(data, encode(im, "PNG", optimize=True), key=len)
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
