"""The image pipeline: what we upload to the cutout API, and what we make from its answer.

CPU- and disk-bound functions: callers run them in a worker thread (pictures in
``bot.pipeline.imagework.in_image_thread``, files in ``asyncio.to_thread``). The one
state they share is the budget of pixels decoded at once (memory.py), which may make a call wait for
room. Every image failure is one of the errors in ``bot.errors``.

    prepare.py   a user's image -> what goes to the API
    render.py    the API's answer -> sticker and PNG, print-ready prop, photo
    outline.py   the white outline behind a cutout
    archive.py   props -> ZIP parts
    decode.py    reading untrusted image bytes, shared by the above
    memory.py    the bound on pixels decoded at once; large blocks given back when freed
    png.py       a quick RGBA PNG writer, for the 512 px PNG
"""

from bot.imaging.archive import ZIP_MAX_PART_BYTES, write_zip_parts
from bot.imaging.decode import INPUT_EXTENSIONS, INPUT_FORMATS_TEXT, MAX_PIXELS, sniff_image
from bot.imaging.outline import add_outline, outline_width
from bot.imaging.prepare import (
    API_MAX_BYTES,
    API_MAX_SIDE,
    MAX_ASPECT,
    MIN_SIDE,
    PreparedImage,
    prepare_upload,
)
from bot.imaging.render import (
    ALPHA_THRESHOLD,
    PHOTO_MAX_BYTES,
    PROP_DPI,
    PROP_MARGIN,
    PROP_MAX_BYTES,
    STICKER_MAX_BYTES,
    STICKER_PADDING,
    STICKER_SIDE,
    RenderedCutout,
    RenderedProp,
    render_from_sticker,
    render_jpg_photo,
    render_prop,
    render_sticker,
    result_size,
)

__all__ = [
    "ALPHA_THRESHOLD",
    "API_MAX_BYTES",
    "API_MAX_SIDE",
    "INPUT_EXTENSIONS",
    "INPUT_FORMATS_TEXT",
    "MAX_ASPECT",
    "MAX_PIXELS",
    "MIN_SIDE",
    "PHOTO_MAX_BYTES",
    "PROP_DPI",
    "PROP_MARGIN",
    "PROP_MAX_BYTES",
    "STICKER_MAX_BYTES",
    "STICKER_PADDING",
    "STICKER_SIDE",
    "ZIP_MAX_PART_BYTES",
    "PreparedImage",
    "RenderedCutout",
    "RenderedProp",
    "add_outline",
    "outline_width",
    "prepare_upload",
    "render_from_sticker",
    "render_jpg_photo",
    "render_prop",
    "render_sticker",
    "result_size",
    "sniff_image",
    "write_zip_parts",
]
