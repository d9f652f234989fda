"""Annotated view of a frame: detections (boxes + scores) and, optionally, truth boxes.

numpy, with Pillow for the text (no OpenCV): used by ``irstd render`` and by the node's optional
``overlay`` topic. The result is an (H, W, 3) uint8 array in **RGB** channel order,
the convention of :mod:`irstd_ros.ros.conversions`: publish it with
``array_to_image_fields(arr, "bgr8")``, which reorders the channels for the bgr8
encoding; write it as is to PNG/MP4.

Boxes are drawn a few pixels *outside* the target so that a 1-px target stays visible.
Detections are red with their score above the box, truth boxes green, tracks yellow
with their id (``#12``) below the box and a trail of their recent positions; text is
drawn with Pillow's ``ImageDraw`` in its default font, without anti-aliasing (every text
pixel has the exact colour).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DETECTION_RGB = (255, 56, 56)
TRUTH_RGB = (56, 230, 90)
TRACK_RGB = (255, 220, 40)
TEXT_RGB = (255, 255, 255)
LABEL_BG_RGB = (0, 0, 0)
DETECTION_MARGIN_PX = 3  # gap between a target and its box
TRUTH_MARGIN_PX = 6  # truth boxes sit outside the detection boxes
TRACK_MARGIN_PX = 9  # track boxes outside both
LABEL_GAP_PX = 2
FONT_PX = 11  # text size in pixels
TEXT_SIZE_CACHE = 1024  # labels measured (drawing them to measure their ink costs)
TRAIL_POINTS = 30  # recent positions of a track drawn behind it (node overlay, irstd render)
DISPLAY_PERCENTILES = (0.5, 99.5)  # display stretch of frames that are not 8-bit
DISPLAY_SAMPLE = 65536  # values the stretch's percentiles are taken on at most (display_range): ~1 ms
UINT8_MAX = 255


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` px (its fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except ImportError:  # Pillow built without FreeType
        return ImageFont.load_default()
    except TypeError:  # Pillow before 10.1 (Ubuntu 22.04 / ROS 2 Humble: 9.0): no size
        return ImageFont.load_default()


class BoxLike(Protocol):
    """Anything with a top-left pixel box (``Target``, ``irstd_ros.bags.io.Box``)."""

    @property
    def x(self) -> int: ...
    @property
    def y(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


class TrackLike(Protocol):
    """A track (:class:`irstd_ros.tracking.Track`): id, centre and size in pixels."""

    @property
    def id(self) -> int: ...
    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...
    @property
    def width(self) -> float: ...
    @property
    def height(self) -> float: ...


def to_display(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB for display, always a new array (drawing on it never touches
    ``frame``): 8-bit as is, other depths stretched per frame."""
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim == 3:
        frame = frame[..., :3]
    if frame.dtype != np.uint8:
        f = frame.astype(np.float32)
        lo, hi = display_range(f)
        scale = UINT8_MAX / (hi - lo) if hi > lo else 0.0
        frame = np.clip((f - lo) * scale, 0, UINT8_MAX).astype(np.uint8)
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=2)  # a new array
    return np.array(frame, order="C")  # a copy even of a C-contiguous 8-bit RGB frame


def display_range(frame: np.ndarray) -> tuple[float, float]:
    """The display stretch's (low, high): :data:`DISPLAY_PERCENTILES` of at most about
    :data:`DISPLAY_SAMPLE` pixels, every ``step``-th in raster order with ``step`` coprime
    to the width (so every column and row phase is sampled, as of a sensor's interleaved
    columns), every pixel of a small frame: a display needs no exact percentile, and a
    640x512 frame's took 5 ms, half the overlay's cost."""
    flat = frame.reshape(-1)
    step = max(1, -(-flat.size // DISPLAY_SAMPLE))
    row = flat.size // max(frame.shape[0], 1)  # values per row (colour: width x channels)
    while step > 1 and math.gcd(step, row) != 1:  # every column (and channel) phase sampled:
        step += 1  # a stride sharing a factor with the width misses interleaved columns
    lo, hi = np.percentile(flat[::step], DISPLAY_PERCENTILES)
    return float(lo), float(hi)


def draw_rect(
    img: np.ndarray, x0: int, y0: int, x1: int, y1: int, rgb: Sequence[int], thickness: int = 1
) -> None:
    """Outline of the inclusive pixel box [x0, x1] x [y0, y1], clipped to the image."""
    h, w = img.shape[:2]
    for k in range(thickness):
        a0, b0, a1, b1 = x0 - k, y0 - k, x1 + k, y1 + k
        cx0, cx1 = max(a0, 0), min(a1, w - 1)
        cy0, cy1 = max(b0, 0), min(b1, h - 1)
        if cx0 > cx1 or cy0 > cy1:
            continue
        if 0 <= b0 < h:
            img[b0, cx0 : cx1 + 1] = rgb
        if 0 <= b1 < h:
            img[b1, cx0 : cx1 + 1] = rgb
        if 0 <= a0 < w:
            img[cy0 : cy1 + 1, a0] = rgb
        if 0 <= a1 < w:
            img[cy0 : cy1 + 1, a1] = rgb


@lru_cache(maxsize=TEXT_SIZE_CACHE)
def text_size(text: str, size: int = FONT_PX) -> tuple[int, int]:
    """(width, height) in pixels of the box :func:`draw_text` writes ``text`` in."""
    font = _font(size)
    if hasattr(font, "getbbox"):
        left, top, right, bottom = font.getbbox(text)
    else:  # Pillow before 9.2 (Ubuntu 22.04's 9.0): its bitmap font has only getsize
        right, bottom = font.getsize(text)  # type: ignore[union-attr]
    ascent, descent = font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont) else (bottom, 0)
    return max(int(right), _ink_width(text, font, int(right) + size, 2 * size), 0), int(ascent + descent)


def _ink_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, room: int, height: int) -> int:
    """Columns the ink of ``text`` takes as :func:`draw_text` draws it (no anti-aliasing):
    glyphs snapped to whole pixels run past ``getbbox``'s right edge on a long line (3 px
    over 28 characters at 11 px: the last character was cut off); ``room`` x ``height``:
    a canvas larger than the ink."""
    canvas = Image.new("L", (max(room, 1), max(height, 1)))
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"
    draw.text((0, 0), text, fill=255, font=font)
    columns = np.flatnonzero(np.asarray(canvas).any(axis=0))
    return int(columns[-1]) + 1 if columns.size else 0


def draw_text(
    img: np.ndarray,
    x: int,
    y: int,
    text: str,
    rgb: Sequence[int] = TEXT_RGB,
    size: int = FONT_PX,
    background: Sequence[int] | None = None,
) -> None:
    """Draw ``text`` in the box of :func:`text_size` with its top-left corner at (x, y),
    clipped to the image; ``background``: fill the box (and a 1 px border) first."""
    h, w = img.shape[:2]
    tw, th = text_size(text, size)
    x0, y0 = max(x - 1, 0), max(y - 1, 0)
    x1, y1 = min(x + tw + 1, w), min(y + th + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    region = Image.fromarray(np.ascontiguousarray(img[y0:y1, x0:x1, :3]))
    draw = ImageDraw.Draw(region)
    draw.fontmode = "1"  # no anti-aliasing: text pixels are exactly ``rgb``
    if background is not None:
        draw.rectangle((0, 0, x1 - x0 - 1, y1 - y0 - 1), fill=tuple(background))
    draw.text((x - x0, y - y0), text, fill=tuple(rgb), font=_font(size))
    img[y0:y1, x0:x1, :3] = np.asarray(region)


def _box_with_label(
    img: np.ndarray, box: BoxLike, margin: int, rgb: Sequence[int], label: str | None, scale: int
) -> None:
    x0 = int(box.x) * scale - margin
    y0 = int(box.y) * scale - margin
    x1 = (int(box.x) + int(box.width)) * scale - 1 + margin
    y1 = (int(box.y) + int(box.height)) * scale - 1 + margin
    draw_rect(img, x0, y0, x1, y1, rgb)
    if label:  # above the box, clear of a truth box around it; below it at the top edge
        _, th = text_size(label)
        clearance = max(TRUTH_MARGIN_PX - margin, 0) + LABEL_GAP_PX
        ty = y0 - clearance - th if y0 - clearance - th >= 0 else y1 + clearance
        draw_text(img, x0, ty, label, rgb)


def draw_polyline(
    img: np.ndarray, points: Sequence[tuple[float, float]], rgb: Sequence[int], scale: int = 1
) -> None:
    """Straight segments through ``points`` (x, y in frame pixels), clipped to the image."""
    h, w = img.shape[:2]
    pts = [((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5) for x, y in points]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xs = np.rint(np.linspace(x0, x1, n + 1)).astype(int)
        ys = np.rint(np.linspace(y0, y1, n + 1)).astype(int)
        ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        img[ys[ok], xs[ok]] = rgb


def _track_box(img: np.ndarray, track: TrackLike, scale: int) -> None:
    """A track: box centred at its filtered position, ``#id`` below it."""
    m = TRACK_MARGIN_PX
    x0 = int(round((track.x - (track.width - 1) / 2) * scale)) - m
    y0 = int(round((track.y - (track.height - 1) / 2) * scale)) - m
    x1 = int(round((track.x + (track.width + 1) / 2) * scale)) - 1 + m
    y1 = int(round((track.y + (track.height + 1) / 2) * scale)) - 1 + m
    draw_rect(img, x0, y0, x1, y1, TRACK_RGB)
    label = f"#{track.id}"
    _, th = text_size(label)
    ty = y1 + LABEL_GAP_PX if y1 + LABEL_GAP_PX + th <= img.shape[0] else y0 - LABEL_GAP_PX - th
    draw_text(img, x0, ty, label, TRACK_RGB)


def draw_overlay(
    frame: np.ndarray,
    targets: Sequence[BoxLike],
    truth: Sequence[BoxLike] = (),
    *,
    label: str | None = None,
    scale: int = 1,
    tracks: Sequence[TrackLike] = (),
    trails: Mapping[int, Sequence[tuple[float, float]]] | None = None,
) -> np.ndarray:
    """The annotated frame, (H*scale, W*scale, 3) uint8 RGB.

    ``targets``: detections (``score`` attribute shown when present); ``truth``: true
    boxes; ``tracks``: tracks (``id, x, y, width, height``, centre coordinates) drawn with
    their id, and their ``trails`` (track id -> recent positions, oldest first) as lines;
    ``label``: a caption in the top-left corner; ``scale``: integer magnification
    (pixel replication) applied before drawing, so boxes stay one pixel thin.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    img = to_display(frame)
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    for box in truth:
        _box_with_label(img, box, TRUTH_MARGIN_PX, TRUTH_RGB, None, scale)
    for box in targets:
        score = getattr(box, "score", None)
        text = f"{score:.2f}" if score is not None else None
        _box_with_label(img, box, DETECTION_MARGIN_PX, DETECTION_RGB, text, scale)
    for track in tracks:
        trail = (trails or {}).get(track.id, ())
        if len(trail) > 1:
            draw_polyline(img, trail, TRACK_RGB, scale)
        _track_box(img, track, scale)
    if label:
        draw_text(img, 4, 4, label, TEXT_RGB, background=LABEL_BG_RGB)
    return img
