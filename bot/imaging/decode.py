"""Reading untrusted image bytes, shared by what we upload (prepare) and what we render (render).

Every failure is one of the errors in ``bot.errors``.
"""

from __future__ import annotations

import io
from typing import Any

import pillow_heif
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from bot import errors

pillow_heif.register_heif_opener()  # adds Pillow's "HEIF" plugin (iPhone photos), once per process

MAX_PIXELS: int = 50_000_000  # decompression-bomb cap, checked on the header before decoding

# Pillow plugins we let near user bytes: the API's formats Pillow reads, plus GIF, HEIF and AVIF
# (these three always go up as JPEG). Naming them keeps the rest (EPS runs Ghostscript, for one)
# away from untrusted input. AVIF before HEIF: both claim the generic mif1/msf1 brands, and our
# libheif, having no AV1 decoder, would open an AVIF only to fail on its pixels; libavif turns a
# HEIC away at once.
INPUT_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "AVIF", "HEIF")  # JPEG also opens MPO
INPUT_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jfif",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".heic",
    ".heif",
    ".avif",
)
INPUT_FORMATS_TEXT = "JPG, PNG, WEBP, HEIC, AVIF, BMP, TIFF or GIF"  # for texts that list them
CUTOUT_FORMATS = ("PNG", "JPEG", "WEBP")
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
# ISO-BMFF major brands (an ``ftyp`` box at offset 4) of HEIC/HEIF stills and sequences, then AVIF.
# hevx and hevs too: the HEIF plugin opens them.
_ISO_BRANDS = (
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",
)
# EXIF orientation -> the transposition that makes the picture upright (as ImageOps.exif_transpose)
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def sniff_image(head: bytes) -> bool:
    """Whether the first bytes of a file look like a format :func:`prepare_upload` reads."""
    return (
        head.startswith(_MAGIC)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS)
    )


def open_image(raw: bytes, formats: tuple[str, ...]) -> Image.Image:
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


def load(im: Image.Image) -> None:
    """Decode the (first frame's) pixels."""
    try:
        im.load()
    except MemoryError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise errors.ImageTooLarge("decompression bomb") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, SyntaxError, EOFError...
        raise errors.CorruptImage(f"cannot decode this {im.format} file") from exc


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1 = upright); broken EXIF counts as upright rather than refusing the photo."""
    if im.format == "HEIF":  # libheif has applied the file's rotation (irot, imir); EXIF only echoes it
        return 1
    try:
        value: Any = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in UPRIGHT else 1


def to_rgb(im: Image.Image) -> Image.Image:
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


# --- shared by prepare and render ----------------------------------------------------------------
def flatten_onto_white(im: Image.Image) -> Image.Image:
    """RGBA -> RGB; transparent areas become white, which a cutout model reads as plain background."""
    alpha = im.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return im.convert("RGB")
    flat = Image.new("RGB", im.size, (255, 255, 255))
    flat.paste(im.convert("RGB"), mask=alpha)
    return flat


def fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled down (never up) to fit a ``side`` x ``side`` square, keeping the aspect ratio."""
    width, height = size
    if max(width, height) <= side:
        return size
    if width >= height:
        return side, max(1, round(height * side / width))
    return max(1, round(width * side / height)), side


def encode_jpeg(im: Image.Image, max_bytes: int, qualities: tuple[int, ...]) -> tuple[bytes, Image.Image]:
    """The best of ``qualities`` that fits in ``max_bytes``, and the image it encodes."""
    while True:
        for quality in qualities:
            data = encode(im, "JPEG", quality=quality)
            if len(data) <= max_bytes:
                return data, im
        # Only pure noise gets here: give up pixels rather than quality.
        im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), Image.Resampling.LANCZOS)


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()
