"""overlay.draw_overlay: boxes outside targets, scores, truth colour, any bit depth."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from irstd_ros.bags.io import Box
from irstd_ros.core.overlay import (
    DETECTION_MARGIN_PX,
    DETECTION_RGB,
    FONT_PX,
    TEXT_RGB,
    TRUTH_MARGIN_PX,
    TRUTH_RGB,
    draw_overlay,
    draw_text,
    text_size,
    to_display,
)


def frame(h: int = 60, w: int = 80, dtype=np.uint8) -> np.ndarray:
    return np.full((h, w), 50, dtype)


def test_shape_dtype_and_untouched_target_pixels():
    f = frame()
    f[30, 40] = 255
    out = draw_overlay(f, [Box(40, 30, 1, 1, 0.87)])
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert tuple(out[30, 40]) == (255, 255, 255)  # the target itself stays visible


def test_detection_box_is_drawn_around_the_target_in_red():
    out = draw_overlay(frame(), [Box(40, 30, 2, 3, 0.5)])
    m = DETECTION_MARGIN_PX
    x0, y0, x1, y1 = 40 - m, 30 - m, 41 + m, 32 + m
    for y, x in ((y0, x0), (y0, x1), (y1, x0), (y1, x1), (y0, 40), (y1, 41)):
        assert tuple(out[y, x]) == DETECTION_RGB
    assert tuple(out[31, 40]) == (50, 50, 50)


def test_score_is_written_above_the_box_clear_of_the_truth_box():
    out = draw_overlay(frame(), [Box(40, 30, 1, 1, 0.87)], [Box(40, 30, 1, 1)])
    red = (out == DETECTION_RGB).all(axis=2)
    truth_top = 30 - TRUTH_MARGIN_PX
    assert red[: truth_top - 1].any()  # text above the truth box
    unscored = SimpleNamespace(x=40, y=30, width=1, height=1)  # no score: no text
    plain = (draw_overlay(frame(), [unscored]) == DETECTION_RGB).all(axis=2)
    assert not plain[: 30 - DETECTION_MARGIN_PX].any()


def test_truth_is_a_second_colour_outside_the_detection():
    out = draw_overlay(frame(), [], [Box(40, 30, 1, 1)])
    m = TRUTH_MARGIN_PX
    assert tuple(out[30 - m, 40]) == TRUTH_RGB
    assert not (out == DETECTION_RGB).all(axis=2).any()


def test_boxes_at_the_border_are_clipped():
    out = draw_overlay(frame(), [Box(0, 0, 2, 2, 0.9), Box(78, 58, 2, 2, 0.1)], [Box(-3, 57, 5, 9)])
    assert out.shape == (60, 80, 3)
    red = (out == DETECTION_RGB).all(axis=2)
    green = (out == TRUTH_RGB).all(axis=2)
    m, t = DETECTION_MARGIN_PX, TRUTH_MARGIN_PX
    # top-left detection: its right and bottom edges run up to the image's top and left
    # border; its top and left edges lie outside and are not pulled onto the border
    assert red[0 : 2 + m, 1 + m].all() and red[1 + m, 0 : 2 + m].all()
    assert not red[0, : 1 + m].any() and not red[: 1 + m, 0].any()
    # bottom-right detection: its top and left edges run to the right and bottom border
    assert red[58 - m, 78 - m :].all() and red[58 - m :, 78 - m].all()
    assert not red[59, 79 - m :].any() and not red[59 - m :, 79].any()
    # truth box over the left and bottom borders: its top and right edges, clipped
    assert green[57 - t, 0 : 2 + t].all() and green[57 - t :, 1 + t].all()
    assert not green[59, : 1 + t].any() and not green[58 - t :, 0].any()
    assert tuple(out[59, 0]) == tuple(out[0, 0]) == tuple(out[59, 79]) == (50, 50, 50)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_other_depths_are_stretched_for_display(dtype):
    f = np.linspace(1000, 2000, 60 * 80).reshape(60, 80).astype(dtype)
    d = to_display(f)
    assert d.dtype == np.uint8 and d.min() == 0 and d.max() == 255


def test_colour_input_and_scale():
    rgb = np.zeros((10, 12, 3), np.uint8)
    out = draw_overlay(rgb, [Box(5, 5, 1, 1, 0.5)], scale=3)
    assert out.shape == (30, 36, 3)
    with pytest.raises(ValueError):
        draw_overlay(rgb, [], scale=0)


@pytest.mark.parametrize("channels", [3, 4])
def test_a_colour_frame_is_drawn_on_a_copy_never_on_the_callers_array(channels):
    # an (H, W, 3) uint8 frame came back as itself: boxes were drawn into the caller's
    # frame, and a read-only one raised "assignment destination is read-only"
    rgb = np.zeros((40, 40, channels), np.uint8)
    before = rgb.copy()
    out = draw_overlay(rgb, [Box(20, 20, 1, 1, 0.5)], label="x")
    assert (rgb == before).all() and not np.shares_memory(out, rgb)
    assert (out != 0).any()
    rgb.setflags(write=False)
    assert (draw_overlay(rgb, [Box(20, 20, 1, 1, 0.5)], label="x") == out).all()


def test_label_and_text_helpers():
    img = np.zeros((20, 60, 3), np.uint8)
    draw_text(img, 2, 2, "PD 0.9", background=(9, 9, 9))
    assert (img == 255).all(axis=2).any()
    # text_size is the box draw_text writes in (Pillow's default font, no anti-aliasing)
    tw, th = text_size("AB")
    assert 0 < text_size("A")[0] < tw and th >= 10
    img = np.zeros((40, 60, 3), np.uint8)
    draw_text(img, 5, 7, "AB", rgb=(200, 10, 10))
    ys, xs = np.nonzero(img.any(axis=2))
    assert xs.min() >= 5 and xs.max() < 5 + tw and ys.min() >= 7 and ys.max() < 7 + th
    assert {tuple(v) for v in img[ys, xs]} == {(200, 10, 10)}
    out = draw_overlay(frame(), [], label="#3 0.3S")
    assert (out[4:14, 4:40] == 255).all(axis=2).any()


def test_text_is_drawn_with_a_pillow_whose_default_font_has_no_size(monkeypatch):
    """``ImageFont.load_default(size=)`` is Pillow 10.1+ (ROS 2 Humble's Ubuntu 22.04 ships
    9.0, whose TypeError failed every overlay frame with a label): its fixed font then."""
    from PIL import ImageFont

    from irstd_ros.core import overlay

    plain = ImageFont.load_default

    def pillow_9(*args, **kwargs):
        if args or kwargs:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return plain()

    class BitmapFontOfPillow9:  # before 9.2 the bitmap font had getsize, no getbbox
        def __init__(self, font):
            self.font = font

        def getsize(self, text):
            return self.font.getbbox(text)[2:]

        def __getattr__(self, name):
            if name == "getbbox":
                raise AttributeError(name)
            return getattr(self.font, name)

    monkeypatch.setattr(ImageFont, "load_default", lambda *a, **k: BitmapFontOfPillow9(pillow_9(*a, **k)))
    overlay._font.cache_clear()
    overlay.text_size.cache_clear()
    try:
        img = np.zeros((20, 60, 3), np.uint8)
        draw_text(img, 2, 2, "PD 0.9", background=(9, 9, 9))
        assert (img == 255).all(axis=2).any()
    finally:
        overlay._font.cache_clear()
        overlay.text_size.cache_clear()


def test_the_display_stretch_reads_a_sample_of_a_large_frame(monkeypatch):
    """The stretch took an exact percentile of every pixel (5 ms of the overlay's 10 at
    640x512); a sample of at most about DISPLAY_SAMPLE pixels gives the same range."""
    from irstd_ros.core import overlay

    rng = np.random.default_rng(3)
    frame = (rng.normal(8000, 300, (1024, 1280)) + np.linspace(0, 2000, 1280)).astype(np.float32)
    read: list[int] = []
    real = np.percentile
    monkeypatch.setattr(overlay.np, "percentile", lambda a, q, **k: read.append(np.size(a)) or real(a, q, **k))
    lo, hi = overlay.display_range(frame)
    assert read and read[0] <= overlay.DISPLAY_SAMPLE
    exact = real(frame, overlay.DISPLAY_PERCENTILES)
    assert abs(lo - exact[0]) < 20 and abs(hi - exact[1]) < 20  # counts of a 300-count noise
    small = frame[:64, :64]
    read.clear()
    assert overlay.display_range(small) == tuple(float(v) for v in real(small, overlay.DISPLAY_PERCENTILES))
    assert read == [small.size]  # every pixel of a small frame


@pytest.mark.parametrize("shape", [(512, 512), (1024, 1024), (512, 640), (256, 256, 3)])
def test_the_display_sample_sees_interleaved_columns(shape):
    """A square frame gave an even grid step (2 at 512x512), so a sensor whose odd columns
    read 3000 and even 1000 was stretched from 1000 to 1000: an all-black overlay."""
    from irstd_ros.core import overlay

    frame = np.full(shape, 1000.0, np.float32)
    frame[:, 1::2] = 3000.0
    assert overlay.display_range(frame) == (1000.0, 3000.0)


def test_a_long_caption_is_drawn_whole():
    """Glyphs drawn without anti-aliasing run past Pillow's bounding box on a long line: the
    caption's last character was cut off ("TRK 0" read "TRK (") in every rendered video."""
    from PIL import Image, ImageDraw, ImageFont

    label = "#12  1.2S DET 3 TRUE 4 TRK 0"
    img = np.zeros((30, 300, 3), np.uint8)
    draw_text(img, 4, 4, label)
    free = Image.new("RGB", (300, 30))
    pen = ImageDraw.Draw(free)
    pen.fontmode = "1"
    pen.text((4, 4), label, fill=tuple(TEXT_RGB), font=ImageFont.load_default(size=FONT_PX))
    assert np.array_equal(img.any(axis=2), np.asarray(free).any(axis=2))
