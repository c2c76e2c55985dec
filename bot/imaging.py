"""The image pipeline: what we upload to the cutout API, and the sticker we make from its answer.

Pure CPU-bound functions with no shared state: callers run them in a worker thread
(``asyncio.to_thread``). Every failure is one of the errors in ``bot.errors``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from bot import errors

MAX_PIXELS: int = 50_000_000  # decompression-bomb cap, checked on the header before decoding
MAX_ASPECT: float = 8.0  # longer side / shorter side; above this there is no head to find
API_MAX_SIDE = 4096
API_MAX_BYTES = 20 * 1024 * 1024
STICKER_SIDE = 512
STICKER_MAX_BYTES = 512_000

ALPHA_THRESHOLD = 8  # alpha at or below this is haze from the matting, not part of the cutout
STICKER_PADDING = 20  # transparent margin on each side of a sticker: 4% of 512 px
UPLOAD_JPEG_QUALITY = 92

# Pillow plugins we let near user bytes: the API's formats Pillow reads, plus GIF. Naming them
# keeps the rest (EPS runs Ghostscript, for one) away from untrusted input.
_INPUT_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")  # JPEG also opens MPO
_CUTOUT_FORMATS = ("PNG", "JPEG", "WEBP")
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG, JFIF, MPO
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little- and big-endian, then BigTIFF
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
)
_UPLOAD_QUALITIES = (UPLOAD_JPEG_QUALITY, 85, 75, 60, 45)
# (quality, alpha_quality) for a lossy sticker, best first; the last always fits at 512 px
_WEBP_LOSSY_STEPS = ((95, 100), (90, 100), (80, 100), (70, 90), (60, 80), (50, 60), (40, 40), (0, 0))
# EXIF orientation -> the transposition that makes the picture upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SOLID_ALPHA = [0] * (ALPHA_THRESHOLD + 1) + [255] * (255 - ALPHA_THRESHOLD)
_CLEAN_ALPHA = [0] * (ALPHA_THRESHOLD + 1) + list(range(ALPHA_THRESHOLD + 1, 256))


@dataclass(frozen=True)
class PreparedImage:
    """What goes to the API as ``image_file``."""

    data: bytes = field(repr=False)
    filename: str
    mime: str
    width: int
    height: int
    sha256: str  # of the original bytes we were given: the cache key


@dataclass(frozen=True)
class RenderedCutout:
    """A finished cutout: a static sticker and a transparent PNG of the same geometry."""

    sticker_webp: bytes = field(repr=False)
    png: bytes = field(repr=False)
    width: int
    height: int


def sniff_image(head: bytes) -> bool:
    """Whether the first bytes of a file look like a format :func:`prepare_upload` reads."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def prepare_upload(raw: bytes) -> PreparedImage:
    """Check and normalise a user's image for upload to the cutout API.

    An upright RGB JPEG or PNG within the API's limits goes out byte for byte. Anything else is
    decoded (first frame), turned upright, converted to sRGB, flattened onto white if it has
    transparency, fitted into 4096 x 4096 and sent as a metadata-free JPEG of at most 20 MB.
    """
    im = _open(raw, _INPUT_FORMATS)
    width, height = im.size
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise errors.ExtremeAspectRatio(f"{width}x{height} is more than {MAX_ASPECT:g}:1")
    digest = hashlib.sha256(raw).hexdigest()
    target = _fit((width, height), API_MAX_SIDE)
    if target != (width, height) and im.format in ("JPEG", "MPO"):
        im.draft(None, target)  # libjpeg decodes straight at 1/2, 1/4 or 1/8 scale: less time and memory
    _load(im)
    orientation = _orientation(im)

    if (
        im.format in ("JPEG", "MPO", "PNG")
        and im.mode == "RGB"
        and "transparency" not in im.info
        and not (im.format == "PNG" and getattr(im, "is_animated", False))
        and target == (width, height)
        and orientation == 1
        and len(raw) <= API_MAX_BYTES
    ):
        mime, filename = ("image/png", "image.png") if im.format == "PNG" else ("image/jpeg", "image.jpg")
        return PreparedImage(raw, filename, mime, width, height, digest)

    im = _to_rgb(im)
    if im.mode == "RGBA":
        im = _flatten_onto_white(im)
    if im.size != target:
        im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in _UPRIGHT:  # after the downscale, so the rotation moves as few pixels as possible
        im = im.transpose(_UPRIGHT[orientation])

    im.info = {}  # strip EXIF, XMP, comments and the (already applied) colour profile
    while True:
        for quality in _UPLOAD_QUALITIES:
            data = _encode(im, "JPEG", quality=quality)
            if len(data) <= API_MAX_BYTES:
                return PreparedImage(data, "image.jpg", "image/jpeg", im.width, im.height, digest)
        # Only pure noise gets here: give up pixels rather than quality.
        im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), Image.Resampling.LANCZOS)


def render_cutout(cutout: bytes) -> RenderedCutout:
    """Turn the API's transparent cutout into a 512 px sticker (WEBP) and PNG, each under 512 KB.

    The cutout is trimmed to its visible pixels, scaled so its longer side is 512 px less an even
    transparent margin, and centred. An opaque (JPEG) result is treated as one big opaque cutout.
    """
    try:
        im = _open(cutout, _CUTOUT_FORMATS)
        _load(im)
    except (errors.EmptyFile, errors.NotAnImage) as exc:
        raise errors.CorruptImage(f"unreadable cutout: {exc.detail}") from exc
    orientation = _orientation(im)
    im = _to_rgb(im)
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    if orientation in _UPRIGHT:
        im = im.transpose(_UPRIGHT[orientation])

    box = im.getchannel("A").point(_SOLID_ALPHA).getbbox()
    if box is None:
        raise errors.task_failed(-11, "the cutout is fully transparent")
    sticker = _compose(im, box)
    return RenderedCutout(
        sticker_webp=_encode_sticker_webp(sticker),
        png=_encode_sticker_png(sticker),
        width=sticker.width,
        height=sticker.height,
    )


# --- decoding ------------------------------------------------------------------------------------
def _open(raw: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Identify ``raw`` and check the size its header claims; no pixel is decoded yet."""
    if not raw:
        raise errors.EmptyFile("no bytes")
    try:
        im = Image.open(io.BytesIO(raw), formats=formats)
    except UnidentifiedImageError as exc:
        raise errors.NotAnImage("not a supported image format") from exc
    # Pillow's own bomb check uses a process-wide limit someone may have changed; ours follows.
    # The warning is caught as an exception too, for processes that run with warnings as errors.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise errors.ImageTooLarge("decompression bomb") from exc
    except Exception as exc:  # a plugin took the signature, then choked on the header
        if sniff_image(raw[:16]):
            raise errors.CorruptImage("unreadable image header") from exc
        raise errors.NotAnImage("not a supported image format") from exc
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise errors.ImageTooLarge(f"{width}x{height} is over {MAX_PIXELS} pixels")
    if width < 1 or height < 1:
        raise errors.CorruptImage(f"empty geometry {width}x{height}")
    return im


def _load(im: Image.Image) -> None:
    """Decode the (first frame's) pixels."""
    try:
        im.load()
    except MemoryError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise errors.ImageTooLarge("decompression bomb") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, SyntaxError, EOFError...
        raise errors.CorruptImage(f"cannot decode this {im.format} file") from exc


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1 = upright); broken EXIF counts as upright rather than refusing the photo."""
    try:
        value: Any = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit sRGB: ``RGBA`` if the image carries transparency, else ``RGB``."""
    icc = im.info.get("icc_profile")
    if icc and im.mode in ("RGB", "RGBA", "CMYK"):
        converted = _icc_to_srgb(im, icc)
        if converted is not None:
            return converted
    if im.mode in ("RGB", "RGBA"):
        return im
    try:
        if im.mode in ("I", "F") or im.mode.startswith("I;16"):
            im = _to_8_bit_grey(im)
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    except ValueError as exc:  # a mode Pillow can read but not convert
        raise errors.CorruptImage(f"unsupported image mode {im.mode}") from exc


def _to_8_bit_grey(im: Image.Image) -> Image.Image:
    """Scale 16-bit (or 32-bit, or float) grey to 0..255; a plain convert would clip it to white."""
    if im.mode != "F":
        im = im.convert("I")
    high = im.getextrema()[1]
    assert isinstance(high, int | float)  # one band: a (min, max) pair of numbers
    top = 1.0 if im.mode == "F" and high <= 1.0 else max(65535.0, float(high))  # 0..1 floats, else 16-bit
    scale = 255.0 / top
    return im.point(lambda value: value * scale + 0.5).convert("L")


def _icc_to_srgb(im: Image.Image, icc: bytes) -> Image.Image | None:
    """Convert from an embedded colour profile to sRGB; None if it already is sRGB or is unusable."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        # A profile per call: LittleCMS profiles are not meant to be shared between threads.
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return ImageCms.profileToProfile(im, profile, srgb, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _flatten_onto_white(im: Image.Image) -> Image.Image:
    """RGBA -> RGB; transparent areas become white, which a cutout model reads as plain background."""
    alpha = im.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return im.convert("RGB")
    flat = Image.new("RGB", im.size, (255, 255, 255))
    flat.paste(im.convert("RGB"), mask=alpha)
    return flat


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled down (never up) to fit a ``side`` x ``side`` square, keeping the aspect ratio."""
    width, height = size
    if max(width, height) <= side:
        return size
    if width >= height:
        return side, max(1, round(height * side / width))
    return max(1, round(width * side / height)), side


# --- the sticker ---------------------------------------------------------------------------------
def _compose(im: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """Scale the visible part to 512 px less the margins on its longer side; centre it on a clear canvas."""
    inner = STICKER_SIDE - 2 * STICKER_PADDING
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    scale = inner / max(box_width, box_height)
    size = (max(1, round(box_width * scale)), max(1, round(box_height * scale)))
    # box= resamples from the full image, so the edge of the trim is not a hard cut
    content = im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    content.putalpha(content.getchannel("A").point(_CLEAN_ALPHA))
    canvas = Image.new("RGBA", (size[0] + 2 * STICKER_PADDING, size[1] + 2 * STICKER_PADDING), (0, 0, 0, 0))
    canvas.paste(content, (STICKER_PADDING, STICKER_PADDING))
    return canvas


def _encode_sticker_webp(im: Image.Image) -> bytes:
    """Lossless if it fits in 512 KB, else lossy with the highest quality that does (alpha kept)."""
    # Low effort: on a 512 px head it is ~4x faster than method 4 and within 2 % of its size.
    data = _encode(im, "WEBP", lossless=True, quality=20, method=1)
    if len(data) <= STICKER_MAX_BYTES:
        return data
    for quality, alpha_quality in _WEBP_LOSSY_STEPS:
        data = _encode(im, "WEBP", quality=quality, alpha_quality=alpha_quality, method=4)
        if len(data) <= STICKER_MAX_BYTES:
            return data
    raise errors.CutoutError(f"a {im.width}x{im.height} sticker does not fit in {STICKER_MAX_BYTES} bytes")


def _encode_sticker_png(im: Image.Image) -> bytes:
    """RGBA; if that is over 512 KB, 255 colours plus a clear one (one byte a pixel always fits)."""
    # zlib level 3 is ~2.5x faster than the default 6 for ~8 % more bytes; near the cap the
    # slower settings may spare the colours.
    data = _encode(im, "PNG", compress_level=3)
    if STICKER_MAX_BYTES < len(data) <= STICKER_MAX_BYTES * 1.25:
        data = _encode(im, "PNG", optimize=True)
    if len(data) <= STICKER_MAX_BYTES:
        return data
    # Index 255 is reserved, fully clear, for the pixels that were: an averaged octree colour must
    # not leave a faint haze in the transparent margins.
    quantized = im.quantize(255, method=Image.Quantize.FASTOCTREE)
    colours = (quantized.getpalette("RGBA") or [])[: 255 * 4]
    quantized.putpalette(colours + [0] * (256 * 4 - len(colours)), "RGBA")
    quantized.paste(255, mask=im.getchannel("A").point([255] + [0] * 255))
    data = _encode(quantized, "PNG", optimize=True)
    if len(data) <= STICKER_MAX_BYTES:
        return data
    raise errors.CutoutError(f"a {im.width}x{im.height} PNG does not fit in {STICKER_MAX_BYTES} bytes")


def _encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()
