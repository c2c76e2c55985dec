"""The image pipeline: what goes up to the cutout API, and the sticker that comes back."""

from __future__ import annotations

import hashlib
import io
import platform
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw
from skimage import data as samples

from bot import errors, imaging, texts
from bot.imaging import prepare, render
from bot.imaging.png import decode_plain_png, encode_rgba_png

RNG_SEED = 20240521


# --- building inputs -----------------------------------------------------------------------------
def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(raw: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(raw))
    im.load()
    return im


def astronaut() -> Image.Image:  # 512 x 512 portrait
    return Image.fromarray(samples.astronaut())  # type: ignore[no-untyped-call]


def chelsea() -> Image.Image:  # 451 x 300 cat, landscape
    return Image.fromarray(samples.chelsea())  # type: ignore[no-untyped-call]


def camera() -> Image.Image:  # 512 x 512 greyscale
    return Image.fromarray(samples.camera())  # type: ignore[no-untyped-call]


def noise(width: int, height: int, bands: int = 3) -> np.ndarray[Any, np.dtype[np.uint8]]:
    rng = np.random.default_rng(RNG_SEED)
    return rng.integers(0, 256, (height, width, bands), dtype=np.uint8)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` RGB but holds only a few bytes of pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def exif_orientation(turn: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = turn
    return exif.tobytes()


def heic(im: Image.Image, turn: int | None = None) -> bytes:
    """A HEIC as an iPhone writes one: the pixels as stored, the turn in the container (irot), echoed in EXIF."""
    buffer = io.BytesIO()
    params: dict[str, Any] = {"exif": exif_orientation(turn)} if turn else {}
    pillow_heif.from_pillow(im).save(buffer, quality=90, **params)
    return buffer.getvalue()


def avif(im: Image.Image, turn: int | None = None) -> bytes:
    """An AVIF made with Pillow; a turn goes into the container (irot/imir) and EXIF."""
    params: dict[str, Any] = {"exif": exif_orientation(turn)} if turn else {}
    return encode(im, "AVIF", quality=90, **params)


def heic_claiming(width: int, height: int) -> bytes:
    """A small HEIC whose header (its ``ispe`` box) claims ``width`` x ``height``."""
    raw = heic(Image.new("RGB", (200, 150), "grey"))
    at = raw.index(b"ispe") + 8  # after the box type, version and flags
    return raw[:at] + struct.pack(">II", width, height) + raw[at + 8 :]


def marked_cat() -> Image.Image:
    """The landscape cat with a red square in its stored top-left corner."""
    stored = chelsea()
    stored.paste((255, 0, 0), (0, 0, 40, 40))
    return stored


def rgb_icc_profile(red: tuple[float, ...], green: tuple[float, ...], blue: tuple[float, ...]) -> bytes:
    """A minimal ICC v2 matrix/gamma RGB profile with the given primaries (XYZ, D50)."""

    def s15f16(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(values: tuple[float, ...]) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + s15f16(*values)

    text = b"swapped test primaries\x00"
    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\x00\x00"
    white = (0.9642, 1.0, 0.8249)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(white)),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, payload in tags:
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += payload + bytes(-len(payload) % 4)
    header = (
        struct.pack(">I", offset + len(body))
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + s15f16(*white)
    )
    return header + bytes(128 - len(header)) + table + body


def near(pixel: Any, expected: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- sniffing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_sniff_accepts_every_format_we_read(fmt: str) -> None:
    assert imaging.sniff_image(encode(chelsea(), fmt)[:16])


def test_sniff_recognises_heic_and_avif_heads() -> None:
    assert imaging.sniff_image(heic(chelsea())[:16])
    assert imaging.sniff_image(avif(chelsea())[:16])
    for brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"mif1", b"msf1", b"avif", b"avis"):
        assert imaging.sniff_image(b"\x00\x00\x00\x18ftyp" + brand), brand


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world",
        b"%PDF-1.7\n",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"\x00\x00\x00\x18ftypisom",  # an MP4 video
        b"\x00\x00\x00\x14ftypqt  ",  # a QuickTime movie
        b"heic",
        b"\xff\xd8",
    ],
)
def test_sniff_refuses_other_files(head: bytes) -> None:
    assert not imaging.sniff_image(head)


# --- prepare_upload: what goes up ----------------------------------------------------------------
def test_upright_rgb_jpeg_goes_up_untouched() -> None:
    raw = encode(astronaut(), "JPEG", quality=90)
    prepared = imaging.prepare_upload(raw)
    assert prepared.data == raw
    assert (prepared.mime, prepared.filename) == ("image/jpeg", "image.jpg")
    assert (prepared.width, prepared.height) == (512, 512)
    assert prepared.sha256 == hashlib.sha256(raw).hexdigest()


def test_rgb_png_goes_up_untouched() -> None:
    raw = encode(chelsea(), "PNG")
    prepared = imaging.prepare_upload(raw)
    assert prepared.data == raw
    assert (prepared.mime, prepared.filename, prepared.width, prepared.height) == (
        "image/png",
        "image.png",
        451,
        300,
    )


def test_sideways_phone_photo_goes_up_upright_without_metadata() -> None:
    stored = chelsea()  # stored landscape; orientation 6 means "turn 90° clockwise to view"
    stored.paste((255, 0, 0), (0, 0, 40, 40))  # marks the stored top-left corner
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "PhoneMaker"
    raw = encode(stored, "JPEG", quality=95, exif=exif, comment=b"secret")

    prepared = imaging.prepare_upload(raw)

    assert (prepared.width, prepared.height) == (300, 451)
    upright = decode(prepared.data)
    assert upright.size == (300, 451)
    assert near(upright.getpixel((300 - 20, 20)), (255, 0, 0), 30)  # the top-left went top-right
    assert len(upright.getexif()) == 0
    assert "comment" not in upright.info and "exif" not in upright.info
    assert prepared.sha256 == hashlib.sha256(raw).hexdigest()


def test_cmyk_jpeg_goes_up_as_rgb_with_its_colours() -> None:
    raw = encode(Image.new("RGB", (160, 120), (220, 30, 30)).convert("CMYK"), "JPEG", quality=95)
    out = decode(imaging.prepare_upload(raw).data)
    assert out.mode == "RGB"
    assert near(out.getpixel((80, 60)), (220, 30, 30))


def test_16_bit_png_keeps_mid_grey_mid_grey() -> None:
    bands = np.repeat(np.array([0, 32768, 65535], dtype=np.uint16), 48)  # black, mid-grey, white
    im = Image.fromarray(np.tile(bands, (48, 1)))
    assert im.mode == "I;16"
    out = decode(imaging.prepare_upload(encode(im, "PNG")).data)
    assert out.mode == "RGB"
    assert near(out.getpixel((24, 24)), (0, 0, 0), 3)
    assert near(out.getpixel((72, 24)), (128, 128, 128), 3)
    assert near(out.getpixel((120, 24)), (255, 255, 255), 3)


@pytest.mark.parametrize(("mode", "value"), [("I", 32768), ("F", 0.5)])
def test_32_bit_tiff_grey_scales_to_8_bit(mode: str, value: float) -> None:
    out = decode(imaging.prepare_upload(encode(Image.new(mode, (128, 128), value), "TIFF")).data)
    assert near(out.getpixel((64, 64)), (128, 128, 128), 3)


def test_palette_png_transparency_is_flattened_onto_white() -> None:
    im = Image.new("P", (128, 64), 1)
    im.putpalette([0, 0, 0, 0, 0, 255])
    im.paste(0, (0, 0, 64, 64))
    im.info["transparency"] = 0
    out = decode(imaging.prepare_upload(encode(im, "PNG", transparency=0)).data)
    assert out.mode == "RGB"
    assert near(out.getpixel((16, 32)), (255, 255, 255))
    assert near(out.getpixel((112, 32)), (0, 0, 255))


def test_grey_with_alpha_is_flattened_onto_white() -> None:
    im = camera().convert("LA")
    alpha = Image.new("L", im.size, 255)
    alpha.paste(0, (0, 0, 256, 512))
    im.putalpha(alpha)
    out = decode(imaging.prepare_upload(encode(im, "PNG")).data)
    assert out.mode == "RGB"
    assert near(out.getpixel((100, 100)), (255, 255, 255))
    grey = camera().getpixel((400, 300))
    assert isinstance(grey, int)
    assert near(out.getpixel((400, 300)), (grey, grey, grey), 10)


def test_animated_gif_sends_its_first_frame() -> None:
    red, blue = Image.new("RGB", (128, 128), (255, 0, 0)), Image.new("RGB", (128, 128), (0, 0, 255))
    raw = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert getattr(decode(raw), "n_frames", 1) == 2
    out = decode(imaging.prepare_upload(raw).data)
    assert near(out.getpixel((64, 64)), (255, 0, 0), 10)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "WEBP", "GIF"])
def test_other_formats_go_up_as_jpeg(fmt: str) -> None:
    prepared = imaging.prepare_upload(encode(chelsea(), fmt))
    out = decode(prepared.data)
    assert (prepared.mime, out.format, out.mode, out.size) == ("image/jpeg", "JPEG", "RGB", (451, 300))


@pytest.mark.parametrize(
    ("turn", "size", "red_corner"),
    [
        pytest.param(None, (451, 300), (20, 20), id="as-stored"),
        pytest.param(6, (300, 451), (300 - 20, 20), id="portrait"),  # the top-left went top-right
    ],
)
@pytest.mark.parametrize("make", [heic, avif], ids=["heic", "avif"])
def test_heic_and_avif_go_up_as_an_upright_jpeg(
    make: Any, turn: int | None, size: tuple[int, int], red_corner: tuple[int, int]
) -> None:
    raw = make(marked_cat(), turn)

    prepared = imaging.prepare_upload(raw)

    upload = decode(prepared.data)
    assert (prepared.mime, prepared.filename, upload.format, upload.mode) == (
        "image/jpeg",
        "image.jpg",
        "JPEG",
        "RGB",
    )
    assert (prepared.width, prepared.height) == upload.size == size
    assert near(upload.getpixel(red_corner), (255, 0, 0), 30)  # turned once: twice would put it elsewhere
    assert len(upload.getexif()) == 0
    assert prepared.sha256 == hashlib.sha256(raw).hexdigest()


def test_iphone_heic_says_its_turn_twice_and_is_turned_once() -> None:
    raw = heic(marked_cat(), 6)
    as_written = pillow_heif.open_heif(io.BytesIO(raw))
    exif = Image.Exif()
    exif.load(as_written.info["exif"])
    assert exif[ExifTags.Base.Orientation] == 6  # the EXIF echo that must not turn it a second time

    upload = decode(imaging.prepare_upload(raw).data)

    assert upload.size == (300, 451)
    assert near(upload.getpixel((300 - 20, 20)), (255, 0, 0), 30)


def test_avif_with_the_generic_heif_brand_is_read_as_avif() -> None:
    raw = avif(marked_cat())
    # major brand mif1, avif only among the compatible ones, as some tools write
    raw = raw[:8] + b"mif1" + raw[12:]
    upload = decode(imaging.prepare_upload(raw).data)
    assert upload.size == (451, 300)
    assert near(upload.getpixel((20, 20)), (255, 0, 0), 30)


def test_greyscale_jpeg_goes_up_as_rgb() -> None:
    out = decode(imaging.prepare_upload(encode(camera(), "JPEG")).data)
    assert (out.mode, out.size) == ("RGB", (512, 512))


def test_colour_profile_is_applied_then_dropped() -> None:
    # A profile whose "red" channel holds sRGB's green primary: pure red in it is green on screen.
    srgb_red, srgb_green, srgb_blue = (
        (0.4361, 0.2225, 0.0139),
        (0.3851, 0.7169, 0.0971),
        (0.1431, 0.0606, 0.7141),
    )
    icc = rgb_icc_profile(red=srgb_green, green=srgb_red, blue=srgb_blue)
    raw = encode(Image.new("RGB", (128, 128), (255, 0, 0)), "TIFF", icc_profile=icc)
    out = decode(imaging.prepare_upload(raw).data)
    red, green, _ = out.getpixel((64, 64))  # type: ignore[misc]
    assert green > 200 and red < 60
    assert "icc_profile" not in out.info


def test_5000x3000_photo_is_fitted_into_4096() -> None:
    raw = encode(chelsea().resize((5000, 3000)), "JPEG", quality=80)
    prepared = imaging.prepare_upload(raw)
    assert (prepared.width, prepared.height) == (4096, 2458)
    assert decode(prepared.data).size == (4096, 2458)


def test_huge_jpeg_is_decoded_at_reduced_scale_and_fitted() -> None:
    im = Image.new("RGB", (8200, 1100), (255, 0, 0))
    im.paste((0, 0, 255), (4100, 0, 8200, 1100))
    out = decode(imaging.prepare_upload(encode(im, "JPEG", quality=90)).data)
    assert out.size == (4096, 549)
    assert near(out.getpixel((1000, 274)), (255, 0, 0), 10)
    assert near(out.getpixel((3000, 274)), (0, 0, 255), 10)


def test_input_over_20_mb_goes_up_under_20_mb() -> None:
    raw = encode(Image.fromarray(noise(3000, 2500)), "BMP")
    assert len(raw) > imaging.API_MAX_BYTES
    prepared = imaging.prepare_upload(raw)
    assert len(prepared.data) <= imaging.API_MAX_BYTES
    assert decode(prepared.data).size == (3000, 2500)


def test_upload_that_cannot_fit_the_byte_cap_loses_quality_then_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prepare, "API_MAX_BYTES", 100_000)
    raw = encode(Image.fromarray(noise(600, 400)), "JPEG", quality=95)  # an RGB JPEG, but too big
    prepared = imaging.prepare_upload(raw)
    assert len(prepared.data) <= 100_000
    assert prepared.data != raw
    assert decode(prepared.data).size == (prepared.width, prepared.height)
    assert abs(prepared.width / prepared.height - 1.5) < 0.02


def test_exactly_8_to_1_is_accepted() -> None:
    assert imaging.prepare_upload(encode(Image.new("RGB", (800, 100), "grey"), "PNG")).width == 800


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        pytest.param(encode(Image.new("RGB", (40, 40), "grey"), "PNG"), (40, 40), id="40x40-png"),
        pytest.param(encode(chelsea().resize((127, 90)), "JPEG"), (127, 90), id="127x90-jpeg"),
        pytest.param(heic(chelsea().resize((120, 80))), (120, 80), id="120x80-heic"),
        pytest.param(
            encode(chelsea().resize((100, 60)), "JPEG", exif=exif_orientation(6)), (60, 100), id="sideways"
        ),
    ],
)
def test_picture_under_128_px_is_refused_with_its_size(raw: bytes, size: tuple[int, int]) -> None:
    with pytest.raises(errors.ImageTooSmall) as caught:
        imaging.prepare_upload(raw)  # raises: nothing goes up
    too_small = caught.value
    assert (too_small.width, too_small.height) == size
    assert not too_small.retryable
    message = texts.text(too_small.text_key, width=too_small.width, height=too_small.height)
    assert f"only {size[0]} × {size[1]} px" in message
    assert texts.text(too_small.text_key, brief=True) == "That picture is too small (under 128 px)."


@pytest.mark.parametrize("size", [(128, 90), (90, 128)])
def test_picture_128_px_on_its_long_side_goes_up(size: tuple[int, int]) -> None:
    assert imaging.MIN_SIDE == 128
    raw = encode(chelsea().resize(size), "JPEG", quality=90)
    prepared = imaging.prepare_upload(raw)
    assert prepared.data == raw
    assert (prepared.width, prepared.height) == size


@pytest.mark.parametrize(
    ("raw", "error", "text_key"),
    [
        pytest.param(b"", errors.EmptyFile, "empty_file", id="empty"),
        pytest.param(noise(64, 64).tobytes(), errors.NotAnImage, "not_an_image", id="random-bytes"),
        pytest.param(b"<html>hello</html>", errors.NotAnImage, "not_an_image", id="html"),
        pytest.param(
            encode(astronaut(), "JPEG")[:8000], errors.CorruptImage, "corrupt_image", id="truncated-jpeg"
        ),
        pytest.param(
            encode(chelsea(), "PNG")[:5000], errors.CorruptImage, "corrupt_image", id="truncated-png"
        ),
        pytest.param(heic(chelsea())[:5000], errors.CorruptImage, "corrupt_image", id="truncated-heic"),
        pytest.param(png_header(100_000, 100_000), errors.ImageTooLarge, "image_too_large", id="bomb"),
        pytest.param(
            heic_claiming(100_000, 100_000), errors.ImageTooLarge, "image_too_large", id="heic-bomb"
        ),
        pytest.param(
            encode(Image.new("RGB", (1000, 100)), "PNG"),
            errors.ExtremeAspectRatio,
            "extreme_aspect",
            id="10:1",
        ),
        pytest.param(
            encode(Image.new("RGB", (100, 1000)), "PNG"),
            errors.ExtremeAspectRatio,
            "extreme_aspect",
            id="1:10",
        ),
    ],
)
def test_bad_input_is_refused_with_its_text(raw: bytes, error: type[errors.BadInput], text_key: str) -> None:
    with pytest.raises(error) as caught:
        imaging.prepare_upload(raw)
    assert caught.value.text_key == text_key
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "raw", [png_header(100_000, 100_000), heic_claiming(100_000, 100_000)], ids=["png", "heic"]
)
def test_bomb_is_refused_even_with_pillows_own_limit_off(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(errors.ImageTooLarge):
        imaging.prepare_upload(raw)  # 30 GB if it were ever decoded


def test_pixel_cap_is_checked_on_the_header_before_decoding() -> None:
    # 64 Mpx: over our cap, under Pillow's warning level. Its pixel data is missing, so decoding
    # would fail as corrupt: ImageTooLarge proves the header alone decided.
    with pytest.raises(errors.ImageTooLarge):
        imaging.prepare_upload(png_header(8000, 8000))
    with pytest.raises(errors.ImageTooLarge):
        imaging.prepare_upload(heic_claiming(8000, 8000))


def test_text_file_named_heic_is_not_an_image() -> None:
    assert "IMG_0001.heic".endswith(imaging.INPUT_EXTENSIONS)  # its name alone would let it in
    with pytest.raises(errors.NotAnImage) as caught:
        imaging.prepare_upload(b"IMG_0001.HEIC\nnot a picture, just text\n")
    assert caught.value.text_key == "not_an_image"


def test_jpeg_that_goes_up_as_is_is_still_read_to_its_end() -> None:
    raw = encode(astronaut(), "JPEG", quality=90)
    assert imaging.prepare_upload(raw).data == raw  # checked at 1/8 scale, sent byte for byte
    with pytest.raises(errors.CorruptImage):
        imaging.prepare_upload(raw[:-200])  # only its last scan lines missing


def test_a_telegram_photo_goes_up_unread_when_whole_and_is_refused_when_cut_short() -> None:
    # Telegram re-encodes every photo it takes: a whole one is its own JPEG, sent byte for byte
    raw = encode(astronaut(), "JPEG", quality=90)
    prepared = imaging.prepare_upload(raw, telegram_photo=True)
    assert (prepared.data, prepared.width, prepared.height) == (raw, 512, 512)
    with pytest.raises(errors.CorruptImage):  # no End Of Image marker: decoded, found short
        imaging.prepare_upload(raw[:-200], telegram_photo=True)
    half = len(raw) // 2
    broken = raw[:half] + b"\xff\xc0" + raw[half + 2 :]  # a frame header amid the scan
    with pytest.raises(errors.CorruptImage):
        imaging.prepare_upload(broken)  # a file is decoded to be checked
    assert imaging.prepare_upload(broken, telegram_photo=True).data == broken  # a photo's scan is not read


# --- render_sticker: what comes back -------------------------------------------------------------
def head_cutout() -> bytes:
    """The astronaut's head, cut out with an ellipse, off-centre on a larger transparent canvas."""
    head = astronaut().convert("RGBA")
    mask = Image.new("L", head.size, 0)
    ImageDraw.Draw(mask).ellipse((150, 20, 330, 260), fill=255)
    head.putalpha(mask)
    canvas = Image.new("RGBA", (1200, 900), (0, 0, 0, 0))
    canvas.paste(head, (300, 200))
    return encode(canvas, "PNG")


@pytest.fixture(scope="module")
def head_sticker() -> imaging.RenderedCutout:
    return imaging.render_sticker(head_cutout())


def assert_sticker_rules(rendered: imaging.RenderedCutout) -> tuple[Image.Image, Image.Image]:
    """One side exactly 512, the other at most 512, both files under 512 KB, transparent corners."""
    assert max(rendered.width, rendered.height) == imaging.STICKER_SIDE
    assert min(rendered.width, rendered.height) <= imaging.STICKER_SIDE
    webp, png = decode(rendered.sticker_webp), decode(rendered.png)
    assert (webp.format, png.format) == ("WEBP", "PNG")
    for im, raw in ((webp, rendered.sticker_webp), (png, rendered.png)):
        assert len(raw) <= imaging.STICKER_MAX_BYTES
        assert im.size == (rendered.width, rendered.height)
        assert im.has_transparency_data
        alpha = im.convert("RGBA").getchannel("A")
        width, height = im.size
        corners = ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1))
        assert [alpha.getpixel(xy) for xy in corners] == [0, 0, 0, 0]
    return webp, png


def test_head_cutout_makes_a_lossless_rgba_sticker(head_sticker: imaging.RenderedCutout) -> None:
    webp, png = assert_sticker_rules(head_sticker)
    assert (webp.mode, png.mode) == ("RGBA", "RGBA")
    assert head_sticker.height == 512 and head_sticker.width < 512  # the head is taller than wide
    assert head_sticker.sticker_webp[12:16] == b"VP8L"  # lossless
    centre = (head_sticker.width // 2, 256)
    assert webp.getpixel(centre) == png.getpixel(centre)  # lossless: the same pixels in both files


def test_head_is_centred_with_even_padding(head_sticker: imaging.RenderedCutout) -> None:
    alpha = decode(head_sticker.png).getchannel("A")
    box = alpha.point([0] * 9 + [255] * 247).getbbox()
    assert box is not None
    left, top, right, bottom = box
    pad = imaging.STICKER_PADDING
    assert pad <= top <= pad + 2 and pad <= 512 - bottom <= pad + 2
    assert abs(left - (head_sticker.width - right)) <= 2


def test_trimmed_cutout_is_centred_with_exact_padding_and_haze_removed() -> None:
    # A 300 x 200 opaque block on a canvas of faint (alpha 5) noisy haze left by the matting.
    im = Image.fromarray(noise(800, 600, 4), "RGBA")
    alpha = Image.new("L", im.size, 5)
    alpha.paste(255, (100, 150, 400, 350))
    im.putalpha(alpha)
    rendered = imaging.render_sticker(encode(im, "PNG"))

    assert (rendered.width, rendered.height) == (512, 355)  # 472 x 315 content + 20 px each side
    webp, png = assert_sticker_rules(rendered)
    pad = imaging.STICKER_PADDING
    for sticker in (webp, png):
        assert sticker.getchannel("A").getbbox() == (pad, pad, 512 - pad, 355 - pad)


def test_noisy_worst_case_still_fits_the_caps() -> None:
    pixels = noise(1024, 1024, 4)
    pixels[..., 3] |= 16  # every pixel visible, every one different
    rendered = imaging.render_sticker(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert (rendered.width, rendered.height) == (512, 512)
    _, png = assert_sticker_rules(rendered)
    assert png.mode == "P"  # RGBA did not fit: quantised, alpha kept
    assert png.convert("RGBA").getchannel("A").getpixel((256, 256)) != 0


def test_tiny_cutout_is_upscaled_to_512() -> None:
    im = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    im.paste((200, 40, 40, 255), (140, 150, 150, 156))  # 10 x 6 px
    rendered = imaging.render_sticker(encode(im, "PNG"))
    assert (rendered.width, rendered.height) == (512, 323)
    webp, _ = assert_sticker_rules(rendered)
    assert near(webp.getpixel((256, 160)), (200, 40, 40, 255), 8)


def test_opaque_jpeg_result_becomes_a_padded_square_sticker() -> None:
    rendered = imaging.render_sticker(encode(astronaut(), "JPEG"))
    assert (rendered.width, rendered.height) == (512, 512)
    _, png = assert_sticker_rules(rendered)
    assert png.getchannel("A").getpixel((256, 256)) == 255


@pytest.mark.parametrize(
    "alpha",
    [pytest.param(0, id="fully-transparent"), pytest.param(imaging.ALPHA_THRESHOLD, id="only-haze")],
)
def test_empty_cutout_means_no_face(alpha: int) -> None:
    with pytest.raises(errors.NoFace) as caught:
        imaging.render_sticker(encode(Image.new("RGBA", (400, 300), (90, 90, 90, alpha)), "PNG"))
    assert caught.value.text_key == "no_face"
    assert caught.value.final and not caught.value.retryable


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(head_cutout()[:3000], id="truncated-png"),
    ],
)
def test_unreadable_cutout_is_corrupt(raw: bytes) -> None:
    with pytest.raises(errors.CorruptImage):
        imaging.render_sticker(raw)


def test_sticker_webp_and_png_hold_the_same_visible_pixels(head_sticker: imaging.RenderedCutout) -> None:
    webp = np.asarray(decode(head_sticker.sticker_webp).convert("RGBA"))
    png = np.asarray(decode(head_sticker.png))
    visible = png[..., 3] > 0
    assert np.array_equal(webp[..., 3], png[..., 3])
    assert np.array_equal(webp[visible], png[visible])  # both lossless: every visible pixel as rendered


def test_sticker_kept_by_telegram_gives_back_the_same_png(head_sticker: imaging.RenderedCutout) -> None:
    again = imaging.render_from_sticker(head_sticker.sticker_webp)
    assert again.sticker_webp == head_sticker.sticker_webp
    assert (again.width, again.height) == (head_sticker.width, head_sticker.height)
    png, first = np.asarray(decode(again.png)), np.asarray(decode(head_sticker.png))
    visible = first[..., 3] > 0
    assert np.array_equal(png[..., 3], first[..., 3]) and np.array_equal(png[visible], first[visible])


def test_colour_under_clear_pixels_changes_no_sticker_pixel() -> None:
    # Answers may leave colour where alpha is 0; resampled premultiplied, it cannot show or bleed.
    clean = decode(head_cutout())
    loud = Image.fromarray(noise(*clean.size, 4), "RGBA")
    loud.putalpha(0)
    loud.alpha_composite(clean)
    assert loud.getchannel("A").tobytes() == clean.getchannel("A").tobytes()
    for crop in (True, False):
        expected = imaging.render_sticker(encode(clean, "PNG"), crop=crop)
        assert imaging.render_sticker(encode(loud, "PNG"), crop=crop).png == expected.png


@pytest.fixture(params=["fast_image_resize", "pillow"])
def resampler(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sticker's resampler: fast_image_resize, or Pillow where it has no wheel (Linux on ARM)."""
    if request.param == "pillow":
        monkeypatch.setattr(render, "cykooz_resizer", None)
    elif platform.machine() in ("x86_64", "AMD64") or sys.platform == "darwin":
        assert render.cykooz_resizer is not None, "installed with the bot wherever it has a wheel"
    else:
        pytest.skip("no fast_image_resize wheel for this platform")
    return str(request.param)


def _resized_whole(im: Image.Image, size: tuple[int, int], resampler: str) -> np.ndarray:
    """``im`` (RGBA) resized whole with ``resampler``'s Lanczos, premultiplied by alpha meanwhile."""
    if resampler == "pillow":
        out = im.resize(size, Image.Resampling.LANCZOS)  # Pillow premultiplies RGBA itself
    else:
        from cykooz_resizer import FilterType, ResizeAlg, ResizeOptions, Resizer  # no wheel everywhere

        out = Image.new("RGBA", size)
        Resizer().resize_pil(im, out, ResizeOptions(resize_alg=ResizeAlg.convolution(FilterType.lanczos3)))
    return np.asarray(out, dtype=np.int16)


def test_whole_canvas_sticker_is_resampled_as_in_one_pass(resampler: str) -> None:
    # Only the head's surroundings are resampled; the result is that of resizing the whole canvas.
    # Surroundings cut too short would show at the head's edge (the filter's weights renormalised
    # over what is left): with a reach of 1 px instead of the filter's, by up to 17 levels.
    canvas = Image.new("RGBA", (1200, 900), (0, 0, 0, 0))
    head = astronaut().convert("RGBA")
    mask = Image.new("L", head.size, 0)
    ImageDraw.Draw(mask).ellipse((150, 20, 330, 260), fill=255)
    canvas.paste(head, (600, 100), mask)
    rendered = imaging.render_sticker(encode(canvas, "PNG"), crop=False)
    pad = imaging.STICKER_PADDING
    assert (rendered.width, rendered.height) == (512, 394)  # 1200 x 900 scaled to 472 x 354
    got = np.asarray(decode(rendered.png).crop((pad, pad, pad + 472, pad + 354)), dtype=np.int16)
    whole = _resized_whole(canvas, (472, 354), resampler)
    solid = whole[..., 3] > imaging.ALPHA_THRESHOLD
    assert solid.sum() > 4_000  # the head, ~70 x 95 px
    assert np.abs(got[solid] - whole[solid]).max() <= 1
    assert not got[~solid][..., 3].any()  # haze and the clear canvas: fully clear


@pytest.mark.parametrize(
    "size",
    [
        pytest.param((576, 704), id="a-photo's-answer"),  # scaled by 1/1.5
        pytest.param((1800, 1651), id="a-document's-answer"),  # by 1/3.8
        pytest.param((300, 360), id="a-small-head"),  # up, by 1.3
    ],
)
def test_sticker_is_lanczos_as_exact_as_pillows(size: tuple[int, int], resampler: str) -> None:
    # The sticker's resampler is not Pillow's, but its filter is, and it is as close to the exact
    # one (in floats): on detail down to the pixel. Both stray most where the first pass's overshoot
    # is clipped to 0..255.
    answer = Image.fromarray(np.tile(samples.astronaut(), (4, 4, 1))[: size[1], : size[0]]).convert("RGBA")
    rendered = imaging.render_sticker(encode(answer, "PNG"))
    pad = imaging.STICKER_PADDING
    inner = (rendered.width - 2 * pad, rendered.height - 2 * pad)
    ours = np.asarray(decode(rendered.png).crop((pad, pad, pad + inner[0], pad + inner[1])), dtype=np.float64)
    bands = [band.convert("F").resize(inner, Image.Resampling.LANCZOS) for band in answer.split()]
    exact = np.dstack([np.asarray(band) for band in bands]).clip(0, 255)
    pillows = np.asarray(answer.resize(inner, Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(ours - exact).mean() <= np.abs(pillows - exact).mean() + 0.01
    assert np.percentile(np.abs(ours - exact), 99.9) <= np.percentile(np.abs(pillows - exact), 99.9) + 0.1


def test_sticker_near_the_cap_stays_lossless(monkeypatch: pytest.MonkeyPatch) -> None:
    sticker = decode(imaging.render_sticker(head_cutout()).png)
    quick = len(encode(sticker, "WEBP", lossless=True, quality=0, method=0))
    smaller = len(encode(sticker, "WEBP", lossless=True, quality=20, method=1))
    assert smaller < quick
    cap = (quick + smaller) // 2  # the fast encoding is over it, the slower one under
    monkeypatch.setattr(render, "STICKER_MAX_BYTES", cap)
    data = render._encode_sticker_webp(sticker)
    assert data[12:16] == b"VP8L" and len(data) <= cap


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (301, 17)])
def test_quick_png_holds_the_exact_pixels(size: tuple[int, int]) -> None:
    im = Image.fromarray(noise(*size, 4), "RGBA")
    out = decode(encode_rgba_png(im))
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", size)
    assert out.tobytes() == im.tobytes()


def test_quick_png_of_a_sticker_is_about_the_size_of_pillows() -> None:
    sticker = decode(imaging.render_sticker(head_cutout()).png)
    quick = encode_rgba_png(sticker)
    assert decode(quick).tobytes() == sticker.tobytes()
    assert len(quick) <= 1.05 * len(encode(sticker, "PNG", compress_level=3))


def png_bytes(im: Image.Image, **params: Any) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG", **params)
    return out.getvalue()


@pytest.mark.parametrize("mode", ["RGBA", "RGB"])
def test_a_plain_png_answer_is_read_to_the_same_pixels_as_pillows(mode: str) -> None:
    im = Image.fromarray(noise(301, 17, len(mode)), mode)
    raw = png_bytes(im, dpi=(300, 300))  # a pHYs chunk: the density, not the pixels
    fast = decode_plain_png(raw)
    assert fast is not None
    assert (fast.mode, fast.size) == (mode, im.size)
    assert fast.tobytes() == decode(raw).tobytes() == im.tobytes()


def _interlaced(raw: bytes) -> bytes:
    """``raw`` with IHDR's interlace flag set (and its CRC fixed): Adam7, as far as a reader knows."""
    header = raw[16:28] + b"\x01"
    return raw[:16] + header + struct.pack(">I", zlib.crc32(b"IHDR" + header)) + raw[33:]


@pytest.mark.parametrize(
    "case",
    ["icc profile", "exif orientation", "palette", "16-bit", "grey", "rgb with a clear colour", "interlaced"],
)
def test_a_png_whose_chunks_change_its_pixels_is_left_to_pillow(case: str) -> None:
    rgba = Image.fromarray(noise(40, 30, 4), "RGBA")
    rgb = rgba.convert("RGB")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    raw = {
        "icc profile": lambda: png_bytes(rgba, icc_profile=icc),
        "exif orientation": lambda: png_bytes(rgba, exif=exif),
        "palette": lambda: png_bytes(rgb.quantize(16)),
        "16-bit": lambda: png_bytes(rgb.convert("I;16")),
        "grey": lambda: png_bytes(rgb.convert("L")),
        "rgb with a clear colour": lambda: png_bytes(rgb, transparency=(0, 0, 0)),
        "interlaced": lambda: _interlaced(png_bytes(rgba)),
    }[case]()
    assert decode_plain_png(raw) is None


def test_a_cut_off_or_broken_png_is_left_to_pillow_which_refuses_it() -> None:
    raw = png_bytes(Image.fromarray(noise(64, 64, 4), "RGBA"))
    for broken in (raw[: len(raw) // 2], raw[:40] + bytes(len(raw) - 40)):
        assert decode_plain_png(broken) is None
        with pytest.raises(errors.CorruptImage):
            imaging.render_sticker(broken)


def test_an_answer_with_an_exif_turn_is_still_turned_upright() -> None:
    # Portrait pixels stored on their side, EXIF saying "turn 90° clockwise": the sticker stands up.
    wide = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(wide).ellipse((20, 40, 280, 160), fill=(200, 120, 90, 255))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    sticker = decode(imaging.render_sticker(png_bytes(wide, exif=exif)).png)
    assert sticker.height > sticker.width


# --- the outline ---------------------------------------------------------------------------------
def walk(im: Image.Image, start: tuple[int, int], step: tuple[int, int]) -> list[tuple[int, ...]]:
    """The RGBA pixels from ``start`` to the edge of ``im``, one ``step`` at a time."""
    pixels = []
    x, y = start
    while 0 <= x < im.width and 0 <= y < im.height:
        pixel = im.getpixel((x, y))
        assert isinstance(pixel, tuple)
        pixels.append(pixel)
        x, y = x + step[0], y + step[1]
    return pixels


def test_outline_width_is_3_percent_and_at_least_2_px() -> None:
    assert imaging.outline_width(512) == 15
    assert imaging.outline_width(3000) == 90
    assert imaging.outline_width(20) == 2


def test_outline_is_an_opaque_white_ring_behind_the_head() -> None:
    rendered = imaging.render_sticker(head_cutout(), outline=True)
    webp, png = assert_sticker_rules(rendered)
    plain = decode(imaging.render_sticker(head_cutout()).png)
    width = imaging.outline_width(imaging.STICKER_SIDE)
    white = (255, 255, 255, 255)
    for sticker in (webp, png):
        centre = (sticker.width // 2, sticker.height // 2)
        assert sticker.getpixel(centre) == plain.getpixel(centre)  # the head stays on top, untouched
        for step in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            pixels = walk(sticker, centre, step)
            ring_starts = pixels.index(white)
            ring_ends = next(i for i in range(ring_starts, len(pixels)) if pixels[i] != white)
            assert ring_starts > 100  # head pixels first
            assert ring_ends - ring_starts >= width - 2
            fade = pixels[ring_ends:]
            assert all(pixel[3] < 255 for pixel in fade)
            assert fade.index(next(p for p in fade if p[3] == 0)) <= 2  # a short antialiased edge
            assert len(fade) >= 4 and all(pixel[3] == 0 for pixel in fade[-3:])  # then clear margin
        box = sticker.getchannel("A").getbbox()
        assert box is not None
        assert min(box[0], box[1], sticker.width - box[2], sticker.height - box[3]) >= 3


def test_outline_follows_the_cutout_and_leaves_the_rest_clear() -> None:
    im = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((100, 100, 500, 500), fill=(30, 90, 200, 255))
    outlined = imaging.add_outline(im, 20)
    assert outlined.size == im.size and outlined.mode == "RGBA"
    assert outlined.getpixel((300, 300)) == (30, 90, 200, 255)
    for x, y in ((90, 300), (300, 85), (448, 448)):  # 10, 15 and (on a diagonal) 10 px out
        assert outlined.getpixel((x, y)) == (255, 255, 255, 255)
    for x, y in ((75, 300), (300, 525), (467, 467), (0, 0)):  # 25 px out and more
        pixel = outlined.getpixel((x, y))
        assert isinstance(pixel, tuple) and pixel[3] == 0


def test_whole_canvas_sticker_keeps_the_canvas_and_head_in_place() -> None:
    canvas = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).ellipse((60, 200, 120, 280), fill=(200, 40, 40, 255))  # small, bottom left
    raw = encode(canvas, "PNG")

    whole = imaging.render_sticker(raw, crop=False)
    tight = imaging.render_sticker(raw)

    assert (whole.width, whole.height) == (512, 355)  # 600 x 400 scaled to 472 x 315, plus the margins
    assert_sticker_rules(whole)
    pad, scale = imaging.STICKER_PADDING, 472 / 600
    box = decode(whole.png).getchannel("A").getbbox()
    assert box is not None
    expected = (60 * scale + pad, 200 * scale + pad, 120 * scale + pad, 280 * scale + pad)
    assert all(abs(a - b) <= 2 for a, b in zip(box, expected, strict=True))
    assert (tight.width, tight.height) == (395, 512)  # the 61 x 81 px head alone fills the sticker
    tight_box = decode(tight.png).getchannel("A").getbbox()
    assert tight_box is not None and tight_box[3] - tight_box[1] > 5 * (box[3] - box[1])


# --- render_prop: print-ready, full resolution ---------------------------------------------------
@pytest.fixture(scope="module")
def big_head_result() -> bytes:
    """A 3000 x 3000 transparent answer (crop=0) with a 1350 x 1650 head on it."""
    photo = astronaut().resize((3000, 3000), Image.Resampling.BILINEAR).convert("RGBA")
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((825, 300, 2174, 1949), fill=255)  # both ends included
    photo.putalpha(mask)
    return encode(photo, "PNG", compress_level=1)


def test_prop_of_the_whole_canvas_is_full_size_with_a_margin_at_300_dpi(big_head_result: bytes) -> None:
    prop = imaging.render_prop(big_head_result, crop=False)
    im = decode(prop.data)
    assert (prop.extension, im.format, im.mode) == ("png", "PNG", "RGBA")
    assert im.size == (prop.width, prop.height)
    assert prop.width == prop.height == 3000 + 2 * round(imaging.PROP_MARGIN * 3000)
    assert prop.scale == 1.0
    assert all(abs(dpi - imaging.PROP_DPI) < 0.01 for dpi in im.info["dpi"])
    alpha = im.getchannel("A")
    assert [alpha.getpixel(xy) for xy in ((0, 0), (prop.width - 1, prop.height - 1))] == [0, 0]
    assert alpha.getpixel((prop.width // 2, 1125 + 120)) == 255  # the head's centre


def test_cropped_prop_is_the_head_at_full_resolution_with_its_outline(big_head_result: bytes) -> None:
    whole = imaging.render_prop(big_head_result, crop=False, outline=True)
    prop = imaging.render_prop(big_head_result, crop=True, outline=True)
    im = decode(prop.data)
    ring = imaging.outline_width(1650)
    assert (prop.width, prop.height) == (1350 + 2 * (66 + ring), 1650 + 2 * (66 + ring))
    assert prop.width < whole.width and prop.height < whole.height
    assert max(prop.width, prop.height) >= 1200
    assert prop.scale == 1.0
    assert im.getpixel((prop.width // 2, 66 + ring // 2)) == (255, 255, 255, 255)  # the ring above the head
    assert im.getchannel("A").getpixel((3, prop.height // 2)) == 0  # the cutting margin stays clear


def test_prop_over_its_byte_cap_is_shrunk_just_enough() -> None:
    raw = encode(Image.fromarray(noise(800, 800, 3)).convert("RGBA"), "PNG")
    max_bytes = 300_000
    prop = imaging.render_prop(raw, max_bytes=max_bytes)
    assert 0.75 * max_bytes <= len(prop.data) <= max_bytes  # bytes follow the area: within ~15 % a side
    assert prop.scale < 1.0
    assert decode(prop.data).size == (prop.width, prop.height)
    assert abs(prop.width - 800 * prop.scale * (1 + 2 * imaging.PROP_MARGIN)) <= 3


def test_opaque_result_makes_a_jpg_prop_on_a_white_margin() -> None:
    prop = imaging.render_prop(encode(astronaut(), "JPEG", quality=95), outline=True)
    im = decode(prop.data)
    assert (prop.extension, im.format, im.mode) == ("jpg", "JPEG", "RGB")
    assert prop.width == prop.height == 512 + 2 * round(imaging.PROP_MARGIN * 512)  # no room for an outline
    assert all(abs(dpi - imaging.PROP_DPI) < 0.01 for dpi in im.info["dpi"])
    assert near(im.getpixel((2, 2)), (255, 255, 255), 3)
    assert near(im.getpixel((prop.width // 2, 10)), (255, 255, 255), 3)


def test_empty_prop_means_no_face() -> None:
    with pytest.raises(errors.NoFace):
        imaging.render_prop(encode(Image.new("RGBA", (400, 300), (90, 90, 90, 0)), "PNG"), crop=False)


# --- render_jpg_photo: the API's JPEG as a Telegram photo ----------------------------------------
def test_jpeg_that_telegram_takes_is_sent_as_it_came() -> None:
    raw = encode(astronaut(), "JPEG", quality=90)
    assert imaging.render_jpg_photo(raw) is raw


def test_oversized_result_becomes_a_jpeg_telegram_takes() -> None:
    raw = encode(Image.fromarray(noise(3000, 3000)), "PNG", compress_level=1)
    assert len(raw) > imaging.PHOTO_MAX_BYTES
    data = imaging.render_jpg_photo(raw)
    im = decode(data)
    assert len(data) <= imaging.PHOTO_MAX_BYTES
    assert (im.format, im.mode) == ("JPEG", "RGB")
    assert im.width + im.height <= 10_000


def test_photo_over_10000_px_of_sides_is_shrunk_keeping_its_shape() -> None:
    im = decode(imaging.render_jpg_photo(encode(Image.new("RGB", (8000, 4000), (40, 120, 40)), "JPEG")))
    assert im.width + im.height <= 10_000
    assert abs(im.width / im.height - 2.0) < 0.01


def test_transparent_result_becomes_a_photo_on_white() -> None:
    cutout = decode(head_cutout())
    im = decode(imaging.render_jpg_photo(head_cutout()))
    assert (im.format, im.mode, im.size) == ("JPEG", "RGB", cutout.size)
    assert near(im.getpixel((10, 10)), (255, 255, 255), 3)


# --- write_zip_parts: props for the printer ------------------------------------------------------
def make_files(folder: Path, sizes: list[int]) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(RNG_SEED)
    files = []
    for number, size in enumerate(sizes):
        path = folder / f"source-{number}.bin"
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        files.append((path, f"guest-{number}-prop.png"))
    return files


def zip_contents(parts: list[Path]) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for part in parts:
        with zipfile.ZipFile(part) as archive:
            assert archive.testzip() is None
            for info in archive.infolist():
                assert info.compress_type == zipfile.ZIP_STORED
                assert info.filename not in contents
                contents[info.filename] = archive.read(info)
    return contents


def test_zip_holds_every_file_byte_for_byte(tmp_path: Path) -> None:
    files = make_files(tmp_path, [1000, 250_000, 5])
    parts = imaging.write_zip_parts(files, tmp_path / "out", "props")
    assert parts == [tmp_path / "out" / "props.zip"]
    assert zip_contents(parts) == {name: path.read_bytes() for path, name in files}


def test_zip_too_big_for_one_upload_is_split_into_parts(tmp_path: Path) -> None:
    files = make_files(tmp_path, [40_000] * 5)
    parts = imaging.write_zip_parts(files, tmp_path, "props", max_part_bytes=100_000)
    assert [part.name for part in parts] == ["props-part1.zip", "props-part2.zip", "props-part3.zip"]
    assert all(part.stat().st_size <= 100_000 for part in parts)
    assert zip_contents(parts) == {name: path.read_bytes() for path, name in files}


def test_zip_parts_fill_up_to_the_limit(tmp_path: Path) -> None:
    files = make_files(tmp_path, [33_000] * 6)
    parts = imaging.write_zip_parts(files, tmp_path, "props", max_part_bytes=100_000)
    assert len(parts) == 2  # three entries a part: the overheads are counted, not guessed large
    assert all(part.stat().st_size <= 100_000 for part in parts)


def test_zip_names_used_twice_get_a_number(tmp_path: Path) -> None:
    files = [(path, "guest-prop.png") for path, _ in make_files(tmp_path, [10, 20, 30])]
    parts = imaging.write_zip_parts(files, tmp_path, "props")
    contents = zip_contents(parts)
    assert sorted(contents) == ["guest-prop-2.png", "guest-prop-3.png", "guest-prop.png"]
    assert contents["guest-prop-3.png"] == files[2][0].read_bytes()


def test_zip_refuses_a_file_bigger_than_a_part_and_writes_nothing(tmp_path: Path) -> None:
    files = make_files(tmp_path, [10, 150_000])
    with pytest.raises(ValueError):
        imaging.write_zip_parts(files, tmp_path / "out", "props", max_part_bytes=100_000)
    assert not list(tmp_path.glob("out/*"))


def test_zip_leaves_out_missing_files(tmp_path: Path) -> None:
    files = make_files(tmp_path, [10, 20])
    files[0][0].unlink()
    parts = imaging.write_zip_parts(files, tmp_path, "props")
    assert list(zip_contents(parts)) == ["guest-1-prop.png"]
    files[1][0].unlink()
    assert imaging.write_zip_parts(files, tmp_path / "none", "props") == []
    assert not (tmp_path / "none" / "props.zip").exists()
