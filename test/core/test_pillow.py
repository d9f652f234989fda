"""Pillow's differences across the versions ROS distributions ship, one shim each."""

import numpy as np
import pytest
from PIL import Image

from irstd_ros.core.pillow import declare_ycbcr_tiff, tiff_tags


def _ycbcr_tiff(tmp_path):
    ycc = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "y.tif"
    Image.fromarray(ycc, "YCbCr").save(path)
    return path, ycc


def _opened_as_rgbx(path):
    """The file opened as Pillow 9.0 (before 10.1) opens an uncompressed YCbCr TIFF."""
    im = Image.open(path)
    if im.mode == "YCbCr":  # opened by Pillow 11+ (a property mode, named tiles)
        im._mode = "RGB"
        im.tile = [t._replace(args=("RGBX", *t.args[1:])) for t in im.tile]
    assert im.mode == "RGB" and [t[3][0] for t in im.tile] == ["RGBX"]
    return im


def test_an_uncompressed_ycbcr_tiff_opened_as_rgbx_is_declared_ycbcr(tmp_path):
    path, ycc = _ycbcr_tiff(tmp_path)
    with _opened_as_rgbx(path) as im, pytest.raises(OSError, match="truncated"):
        im.load()  # the Pillow 9.0 reading this shim replaces
    with _opened_as_rgbx(path) as im:
        assert declare_ycbcr_tiff(im)
        assert im.mode == "YCbCr" and np.array_equal(np.asarray(im), ycc)


def test_other_images_are_left_alone(tmp_path):
    path, _ = _ycbcr_tiff(tmp_path)
    with Image.open(path) as im:  # YCbCr as opened by Pillow 10.1+, or once declared: left alone
        declare_ycbcr_tiff(im)
        assert im.mode == "YCbCr" and not declare_ycbcr_tiff(im)
    rgb = np.zeros((3, 4, 3), np.uint8)
    for name in ("rgb.tif", "rgb.png"):
        Image.fromarray(rgb).save(tmp_path / name)
        with Image.open(tmp_path / name) as im:
            assert not declare_ycbcr_tiff(im) and im.mode == "RGB"
    assert not declare_ycbcr_tiff(Image.new("RGB", (2, 2)))  # no file, no tiles


def test_tiff_tags_reads_a_tiff_and_nothing_else(tmp_path):
    Image.new("L", (3, 2)).save(tmp_path / "x.tif")
    tags = tiff_tags(tmp_path / "x.tif")
    assert tags is not None and (tags[256], tags[257]) == (3, 2)
    Image.new("L", (3, 2)).save(tmp_path / "x.png")
    (tmp_path / "short.tif").write_bytes(b"II*")
    assert all(tiff_tags(tmp_path / n) is None for n in ("x.png", "short.tif", "missing.tif"))
