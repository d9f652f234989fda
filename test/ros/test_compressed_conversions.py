"""sensor_msgs/CompressedImage frames (image_transport's ``compressed``: PNG, JPEG) decoded
without ROS: values and dtypes as stored, colour as the data loader's luma, and every bad
frame one ImageConversionError of a stable kind (the node's counter key)."""

from __future__ import annotations

import array
import io
from types import SimpleNamespace

import numpy as np
import pytest
from _support.compressed import encode, png_by_hand
from PIL import Image, ImageFile

from irstd_ros.core.normalization import to_grey
from irstd_ros.data.images import read_image
from irstd_ros.errors import ImageConversionError
from irstd_ros.ros.conversions import (
    array_to_image_fields,
    compressed_to_array,
    frame_to_array,
    image_to_array,
)

RNG = np.random.default_rng(3)
GREY8 = RNG.integers(0, 256, (12, 17), dtype=np.uint8)
# 258 is 0x0102 and 65280 0xff00: read in the wrong byte order they come out 513 and 255
GREY16 = np.array([[0, 258, 65535, 1], [65280, 40000, 3, 4096]], np.uint16)
RGB = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)


def smooth(h: int = 32, w: int = 40) -> np.ndarray:
    """A smooth uint8 ramp: JPEG keeps it within a count or two at high quality."""
    y, x = np.mgrid[0:h, 0:w]
    return (40 + 3 * x + 2 * y).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["mono16; png compressed mono16", "png", "PNG", "16UC1; png compressed"])
def test_sixteen_bit_png_keeps_every_value_in_uint16(fmt):
    out = compressed_to_array(fmt, png_by_hand(GREY16))
    assert out.dtype == np.uint16 and np.array_equal(out, GREY16)


@pytest.mark.parametrize("data", [png_by_hand(GREY8), encode(GREY8, "png")])
def test_mono8_png_is_the_raw_frame(data):
    out = compressed_to_array("mono8; png compressed mono8", data)
    assert out.dtype == np.uint8 and np.array_equal(out, GREY8)


@pytest.mark.parametrize("fmt", ["rgb8; png compressed bgr8", "bgr8; png compressed bgr8", "png"])
def test_colour_png_becomes_the_same_luma_as_the_raw_frame_and_the_data_loader(fmt, tmp_path):
    out = compressed_to_array(fmt, encode(RGB, "png"))
    raw = image_to_array(SimpleNamespace(**array_to_image_fields(RGB, "bgr8")))
    assert out.dtype == np.uint8 and np.array_equal(out, to_grey(raw))
    path = tmp_path / "x.png"
    Image.fromarray(RGB).save(path)
    assert np.array_equal(out, read_image(path))


def test_palette_png_is_luminance_never_indices():
    im = Image.fromarray(np.array([[0, 1], [1, 2]], np.uint8), mode="P")
    im.putpalette([255, 255, 255, 0, 0, 0, 100, 100, 100] + [0] * (256 * 3 - 9))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    assert compressed_to_array("png", buf.getvalue()).tolist() == [[255, 0], [0, 100]]


@pytest.mark.parametrize("fmt", ["mono8; jpeg compressed mono8", "jpeg", "jpg"])
def test_mono8_jpeg_decodes_close_to_the_frame(fmt):
    frame = smooth()
    out = compressed_to_array(fmt, encode(frame, "jpeg", quality=95))
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.abs(out.astype(int) - frame).max() <= 3


def test_bgr8_jpeg_becomes_luma_close_to_the_frame():
    frame = smooth()
    rgb = np.stack([frame, frame, frame], axis=-1)  # grey IR rendered as colour
    out = compressed_to_array("bgr8; jpeg compressed bgr8", encode(rgb, "jpeg", quality=95))
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.abs(out.astype(int) - frame).max() <= 3


@pytest.mark.parametrize(
    "data", [png_by_hand(GREY8), np.frombuffer(png_by_hand(GREY8), np.uint8),
             array.array("B", png_by_hand(GREY8)), memoryview(png_by_hand(GREY8))],
    ids=["bytes", "numpy (rosbags)", "array (rclpy)", "memoryview"],
)
def test_data_of_every_message_library_is_read(data):
    assert np.array_equal(compressed_to_array("png", data), GREY8)


@pytest.mark.parametrize(
    "fmt",
    ["16UC1; compressedDepth", "32FC1; compressedDepth png", "16UC1; compressedDepth rvl",
     "theora", "h264", "ffmpeg", "mono8; tiff compressed mono8", "", "  ", "mono8"],
)
def test_unsupported_formats_are_refused_by_name(fmt):
    with pytest.raises(ImageConversionError) as err:
        compressed_to_array(fmt, png_by_hand(GREY8))
    assert err.value.kind == "unsupported_format" and repr(fmt) in str(err.value)
    if "compressedDepth" in fmt:
        assert "compressedDepth" in str(err.value) and "not supported" in str(err.value)


@pytest.mark.parametrize(
    "fmt, data",
    [
        ("png", b""),
        ("png", b"not an image at all"),
        ("png", png_by_hand(GREY8)[:40]),  # cut inside the pixel data
        ("png", png_by_hand(GREY8, idat=b"\x78\x9c garbage")),  # a header, no pixels
        ("png", encode(GREY8, "jpeg")),  # JPEG data labelled png
        ("jpeg", png_by_hand(GREY8)),  # and the other way round
        ("jpeg", encode(smooth(), "jpeg")[:200]),
    ],
)
def test_data_that_does_not_decode_is_undecodable(fmt, data):
    with pytest.raises(ImageConversionError) as err:
        compressed_to_array(fmt, data)
    assert err.value.kind == "undecodable" and repr(fmt) in str(err.value)
    assert "object at 0x" not in str(err.value)  # no Pillow's repr of its buffer


def test_a_sixteen_bit_colour_png_is_refused_not_read_as_eight_bits():
    rgb16 = np.full((2, 2, 3), 0x1234, np.uint16)
    with pytest.raises(ImageConversionError, match="16-bit") as err:
        compressed_to_array("rgb16; png compressed rgb16", png_by_hand(rgb16))
    assert err.value.kind == "undecodable"


def test_an_oversize_frame_is_refused_from_its_header_before_decoding(monkeypatch):
    # 5000 x 4000 declared, no pixel data behind it: decoding would fail otherwise
    liar = png_by_hand(GREY8, declared=(5000, 4000), idat=b"")

    def no_decoding(*_a, **_k):
        raise AssertionError("pixels decoded before the size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageConversionError, match="5000x4000 exceeds max_pixels=1000000") as err:
        compressed_to_array("mono8; png compressed mono8", liar, max_pixels=1_000_000)
    assert err.value.kind == "too_large"
    with pytest.raises(AssertionError, match="pixels decoded"):  # the stub is the decoder
        compressed_to_array("png", png_by_hand(GREY8), max_pixels=GREY8.size, stride=1)


def test_a_frame_over_pillows_own_limit_is_too_large():
    liar = png_by_hand(GREY8, declared=(100_000, 100_000), idat=b"")
    with pytest.raises(ImageConversionError) as err:
        compressed_to_array("png", liar, max_pixels=1 << 30)
    assert err.value.kind == "too_large"


def test_frame_to_array_takes_an_image_or_a_compressed_image():
    raw = SimpleNamespace(**array_to_image_fields(GREY16, "mono16"))
    compressed = SimpleNamespace(format="mono16; png compressed mono16", data=png_by_hand(GREY16))
    assert np.array_equal(frame_to_array(raw), frame_to_array(compressed))
    with pytest.raises(ImageConversionError) as err:
        frame_to_array(compressed, max_pixels=GREY16.size - 1)
    assert err.value.kind == "too_large"


def test_decoding_a_compressed_frame_loads_no_torch():
    """The decoder is the data loader's (irstd_ros.data.images), whose package held the
    torch datasets: a node on an OpenVINO backend, or a bag tool, loaded torch (1-2 s and
    its memory) for its first compressed frame."""
    import subprocess
    import sys

    code = ("import sys; from irstd_ros.ros.conversions import compressed_to_array;"
            f"compressed_to_array('png', {png_by_hand(GREY8)!r});"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
