"""Bad input over the real bot: refused with a clear text before any API quota is spent.

What can be judged from the message alone (a file's type, its declared size) is refused without even a
download. Input that can be fixed is fixed instead: the first frame of an animation, CMYK, 16-bit,
palette and grey-with-alpha images go to the API as plain RGB JPEGs and come back as cutouts.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from skimage import data

from bot.texts import text
from tests.conftest import USER
from tests.harness import BotThread, astronaut_jpeg
from tests.standins.picwish_api import FakePicWish
from tests.standins.telegram_api import FakeTelegram

MB = 1024 * 1024


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def truncated_jpeg() -> bytes:
    whole = astronaut_jpeg()
    return whole[: len(whole) // 2]


def broken_scan_jpeg() -> bytes:
    """A whole-looking JPEG (it ends with its End Of Image marker) with a frame header amid its scan."""
    whole = astronaut_jpeg()
    half = len(whole) // 2
    return whole[:half] + b"\xff\xc0" + whole[half + 2 :]


def decompression_bomb() -> bytes:
    """A 9000 x 9000 PNG (81 megapixels) of a few kilobytes."""
    return encode(Image.new("1", (9000, 9000)), "PNG", optimize=True)


def sixteen_bit_png() -> bytes:
    grey = np.asarray(astronaut().convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def animated_gif() -> bytes:
    """A face in the first frame; flat grey (no face: the API would answer -14) in the others."""
    first = astronaut()
    flat = Image.new("RGB", first.size, (128, 128, 128))
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[flat, flat], duration=100, loop=0)
    return buffer.getvalue()


def bot_texts(telegram: FakeTelegram) -> list[str]:
    return [m["text"] for m in telegram.messages_in(USER) if "text" in m]


# (bytes, file name, MIME type, Telegram's declared file size or None) -> text key; downloaded first?
Send = Callable[[], tuple[bytes, str, str | None, int | None]]
REFUSED: list[tuple[str, Send, str, bool]] = [
    ("pdf", lambda: (b"%PDF-1.4 a CV", "cv.pdf", "application/pdf", None), "not_an_image", False),
    ("empty", lambda: (b"", "photo.jpg", "image/jpeg", None), "empty_file", False),
    ("over-20-MB", lambda: (b"\xff\xd8\xff", "huge.jpg", "image/jpeg", 25 * MB), "file_too_big", False),
    (
        "text-named-jpg",
        lambda: (b"hello, not a picture" * 20, "photo.jpg", "image/jpeg", None),
        "not_an_image",
        True,
    ),
    (
        "heic",
        lambda: (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "IMG_1.HEIC", "image/heic", None),
        "not_an_image",
        True,
    ),
    ("truncated-jpeg", lambda: (truncated_jpeg(), "cut.jpg", "image/jpeg", None), "corrupt_image", True),
    # A file is decoded to be checked, even one named as the bot names photos (which are not)
    (
        "broken-file-named-photo",
        lambda: (broken_scan_jpeg(), "photo.jpg", "image/jpeg", None),
        "corrupt_image",
        True,
    ),
    (
        "decompression-bomb",
        lambda: (decompression_bomb(), "bomb.png", "image/png", None),
        "image_too_large",
        True,
    ),
    (
        "extreme-aspect",
        lambda: (encode(astronaut().resize((1800, 200)), "JPEG"), "banner.jpg", "image/jpeg", None),
        "extreme_aspect",
        True,
    ),
]


@pytest.mark.parametrize(("make", "text_key", "downloaded"), [pytest.param(*r[1:], id=r[0]) for r in REFUSED])
def test_bad_input_is_refused_before_any_quota_is_spent(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    env: dict[str, str],
    make: Send,
    text_key: str,
    downloaded: bool,
) -> None:
    payload, file_name, mime, declared = make()
    with BotThread(env):
        telegram.send_document(USER, payload, file_name=file_name, mime_type=mime, declared_size=declared)
        telegram.wait_for(lambda t: text(text_key) in bot_texts(t))
        # The next photo is served as usual: one bad file does not upset the bot.
        telegram.send_photo(USER, astronaut_jpeg())
        telegram.wait_for_call("sendDocument")
    assert bot_texts(telegram) == [text(text_key)]
    assert len(picwish.creates()) == 1, "only the good photo reached the API"
    # A download only when the file had to be looked at; for the photo there is always one.
    assert len(telegram.calls_to("getFile")) == (2 if downloaded else 1)


FIXED: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("animated-gif", animated_gif, "anim.gif", "image/gif"),
    ("cmyk-jpeg", lambda: encode(astronaut().convert("CMYK"), "JPEG", quality=90), "print.jpg", "image/jpeg"),
    ("16-bit-png", sixteen_bit_png, "scan.png", "image/png"),
    (
        "palette-png",
        lambda: encode(astronaut().convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "p.png",
        "image/png",
    ),
    ("grey-alpha-png", lambda: encode(astronaut().convert("LA"), "PNG"), "la.png", "image/png"),
]


@pytest.mark.parametrize(("make", "file_name", "mime"), [pytest.param(*f[1:], id=f[0]) for f in FIXED])
def test_unusual_images_are_normalised_and_cut_out(
    telegram: FakeTelegram,
    picwish: FakePicWish,
    env: dict[str, str],
    make: Callable[[], bytes],
    file_name: str,
    mime: str,
) -> None:
    with BotThread(env):
        telegram.send_document(USER, make(), file_name=file_name, mime_type=mime)
        telegram.wait_for_call("sendDocument")
    (create,) = picwish.creates()
    assert create.status == 200 and create.file_name == "image.jpg", "sent as a plain JPEG"
    assert len([c for c in telegram.calls_to("sendSticker") if c.ok]) == 1
    assert bot_texts(telegram) == []  # the status message gave way to the cutout; no error was shown
