"""What we upload to the cutout API: a user's image, checked and normalised."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from PIL import Image

from bot import errors
from bot.imaging.decode import (
    INPUT_FORMATS,
    UPRIGHT,
    encode_jpeg,
    fit,
    flatten_onto_white,
    load,
    open_image,
    orientation,
    to_rgb,
)
from bot.imaging.memory import decoding

MAX_ASPECT: float = 8.0  # longer side / shorter side; above this there is no head to find
MIN_SIDE = 128  # px on the long side; below this there is no face to find
API_MAX_SIDE = 4096
API_MAX_BYTES = 20 * 1024 * 1024
UPLOAD_JPEG_QUALITY = 92

_UPLOAD_QUALITIES = (UPLOAD_JPEG_QUALITY, 85, 75, 60, 45)
_JPEG_END = b"\xff\xd9"  # the End Of Image marker: a file cut short in transit lacks it
_SENT_AS_IS = ("JPEG", "MPO", "PNG")  # formats the API takes that may go up byte for byte; never HEIF or AVIF


@dataclass(frozen=True)
class PreparedImage:
    """What goes to the API as ``image_file``."""

    data: bytes = field(repr=False)
    filename: str
    mime: str
    width: int
    height: int
    sha256: str  # of the original bytes we were given: the cache key


def prepare_upload(raw: bytes, *, telegram_photo: bool = False) -> PreparedImage:
    """Check and normalise a user's image for upload to the cutout API.

    A picture under ``MIN_SIDE`` px on its long side is refused from its header. An upright RGB
    JPEG or PNG within the API's limits goes out byte for byte. Anything else (HEIC and AVIF
    always) is decoded (first frame), turned upright, converted to sRGB, flattened onto white if it
    has transparency, fitted into 4096 x 4096 and sent as a metadata-free JPEG of at most 20 MB.

    ``telegram_photo``: the user sent it as a photo, so Telegram made this JPEG (it re-encodes every
    photo it takes). Its header is read as any other's, but its pixels are not decoded to be checked
    when the file is whole (it ends where a JPEG ends): 3 ms less for a 1280 px photo.
    """
    im = open_image(raw, INPUT_FORMATS)
    width, height = im.size
    if max(width, height) < MIN_SIDE:
        if orientation(im) >= 5:  # 5 to 8 turn it a quarter: say the size the user sees
            width, height = height, width
        raise errors.ImageTooSmall(
            f"{width}x{height} is under {MIN_SIDE} px on its long side", width=width, height=height
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise errors.ExtremeAspectRatio(f"{width}x{height} is more than {MAX_ASPECT:g}:1")
    digest = hashlib.sha256(raw).hexdigest()
    target = fit((width, height), API_MAX_SIDE)
    if _jpeg_as_is(im, raw, target):
        if not (telegram_photo and raw.endswith(_JPEG_END)):
            # Its pixels are only checked, never used: at 1/8 scale libjpeg still parses every marker
            # and decodes every coefficient (a truncated or broken file fails as in full), but skips
            # the IDCT, upsampling and colour conversion: ~1/4 of the CPU (13 ms, not 58, for
            # 4000 x 3000).
            im.draft(None, (max(1, width // 8), max(1, height // 8)))
            load(im)
        return PreparedImage(raw, "image.jpg", "image/jpeg", width, height, digest)
    if target != (width, height) and im.format in ("JPEG", "MPO"):
        im.draft(None, target)  # libjpeg decodes straight at 1/2, 1/4 or 1/8 scale: less time and memory
    with decoding(im):  # the decoded pixels and their copies, until the upload is encoded
        load(im)
        turn = orientation(im)

        if (
            im.format in _SENT_AS_IS
            and im.mode == "RGB"
            and "transparency" not in im.info
            and not (im.format == "PNG" and getattr(im, "is_animated", False))
            and target == (width, height)
            and turn == 1
            and len(raw) <= API_MAX_BYTES
        ):
            mime, filename = ("image/png", "image.png") if im.format == "PNG" else ("image/jpeg", "image.jpg")
            return PreparedImage(raw, filename, mime, width, height, digest)

        im = to_rgb(im)
        if im.mode == "RGBA":
            im = flatten_onto_white(im)
        if im.size != target:
            im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if turn in UPRIGHT:  # after the downscale, so the rotation moves as few pixels as possible
            im = im.transpose(UPRIGHT[turn])

        im.info = {}  # strip EXIF, XMP, comments and the (already applied) colour profile
        data, im = encode_jpeg(im, API_MAX_BYTES, _UPLOAD_QUALITIES)
    return PreparedImage(data, "image.jpg", "image/jpeg", im.width, im.height, digest)


def _jpeg_as_is(im: Image.Image, raw: bytes, target: tuple[int, int]) -> bool:
    """Whether ``im``, an opened but not yet decoded file, is a JPEG that goes up byte for byte.

    The same rule as for any file sent as is, read from the header alone: a JPEG knows its mode and
    its EXIF before its pixels are decoded.
    """
    return (
        im.format in ("JPEG", "MPO")
        and im.mode == "RGB"
        and target == im.size
        and len(raw) <= API_MAX_BYTES
        and orientation(im) == 1
    )
