"""A white outline behind a cutout, like the backing of a die-cut sticker.

The ring is the cutout grown by a Gaussian blur and a threshold. A blur costs the same whatever the
width (Pillow runs it as three box passes), where a max filter grows with its square. Cut low on
the blur's tail (two sigmas out) the threshold grows corners and curves almost as a round brush
would, and it closes gaps narrower than twice the ring, as a die cutter's path does.
"""

from __future__ import annotations

import functools
import math

from PIL import Image, ImageFilter, ImageOps

OUTLINE_FRACTION = 0.03  # of the long side of what is outlined: 15 px on a 512 px sticker
OUTLINE_RAMP = 1.5  # px over which the outer edge fades from opaque to clear: antialiasing
# Where the threshold sits, in sigmas out from a straight edge. At one sigma (the blur's steepest
# point for a given width) a right-angled corner keeps about half the width; at two, ~95 %.
_REACH_IN_SIGMAS = 2.0
# The ring is traced at a scale where it is about this many px wide. Wider, the 8-bit blur changes
# by too few levels a px at the threshold for a smooth edge; narrower, the shape loses detail.
_TRACE_WIDTH = 8
# The edge the ring follows: alpha 50 %, ramped over 64..192 so it keeps its sub-pixel position;
# haze and faint strands get no backing of their own.
_HALF_ALPHA = [min(255, max(0, (value - 64) * 2)) for value in range(256)]
_WHITE = (255, 255, 255, 255)


def outline_width(long_side: int) -> int:
    """The outline's width for an image whose longer side is ``long_side`` px: 3 %, at least 2 px."""
    return max(2, round(OUTLINE_FRACTION * long_side))


def add_outline(im: Image.Image, width: int) -> Image.Image:
    """``im`` (RGBA) over an opaque white ring ``width`` px wide along the edge of its alpha.

    Same size as ``im``: the caller leaves a clear margin of at least ``width`` + 2 px for the ring.
    """
    backing = Image.new("RGBA", im.size, _WHITE)
    backing.putalpha(_ring(im.getchannel("A").point(_HALF_ALPHA), width))
    backing.alpha_composite(im)  # the cutout's own pixels on top, its soft edge blended onto white
    return backing


def _ring(inside: Image.Image, width: int) -> Image.Image:
    """The outline's alpha: opaque over ``inside`` and ``width`` px beyond it, then a short fade."""
    factor = max(1, round(width / _TRACE_WIDTH))
    # reduce() averages blocks, so the edge keeps its sub-pixel position at the smaller scale
    small = inside.reduce(factor) if factor > 1 else inside
    reach = width / factor
    sigma = reach / _REACH_IN_SIGMAS
    # A clear border of 3 sigma first, kept to the end: the blur repeats the edge pixels of each
    # pass, and so does the upscale; a margin only as wide as the ring would swell it.
    border = math.ceil(3 * sigma) + 1
    framed = ImageOps.expand(small, border, fill=0).filter(ImageFilter.GaussianBlur(sigma))
    ring = framed.point(_threshold(sigma, reach))
    if factor == 1:
        return ring.crop((border, border, border + inside.width, border + inside.height))
    # Upscaling stretches the fade by ``factor``; steepening it around the middle puts it back.
    # box= maps each small pixel back onto the centre of the block it averaged.
    box = (border, border, border + inside.width / factor, border + inside.height / factor)
    return ring.resize(inside.size, Image.Resampling.BILINEAR, box=box).point(_steepen(factor))


@functools.lru_cache(maxsize=64)
def _threshold(sigma: float, reach: float) -> tuple[int, ...]:
    """A LUT from a mask blurred by ``sigma`` to the ring's alpha: opaque up to ``reach`` px out.

    Read off a blurred straight edge rather than the normal distribution: Pillow's blur is three
    box passes, some levels away from a true Gaussian in the tail.
    """
    half = math.ceil(4 * sigma + reach) + 4
    edge = Image.new("L", (2 * half, 1), 0)
    edge.paste(255, (0, 0, half, 1))
    profile = edge.filter(ImageFilter.GaussianBlur(sigma))

    def level(distance: float) -> float:  # the blurred value ``distance`` px outside the edge
        x = half - 0.5 + distance  # pixel centres sit half a px from the edge between them
        left = math.floor(x)
        low, high = _value(profile, left), _value(profile, left + 1)
        return low + (high - low) * (x - left)

    opaque, clear = level(reach - OUTLINE_RAMP / 2), level(reach + OUTLINE_RAMP / 2)
    return tuple(
        0 if value <= clear else 255 if value >= opaque else round(255 * (value - clear) / (opaque - clear))
        for value in range(256)
    )


@functools.lru_cache(maxsize=64)
def _steepen(factor: int) -> tuple[int, ...]:
    return tuple(min(255, max(0, round((value - 127.5) * factor + 127.5))) for value in range(256))


def _value(im: Image.Image, x: int) -> float:
    pixel = im.getpixel((x, 0))
    assert isinstance(pixel, int | float)  # one band
    return float(pixel)
