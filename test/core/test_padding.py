"""Numpy stride padding of the network input: shapes, reflect/edge rule, crop round trip."""

from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.core.padding import MAX_STRIDE, crop_to, network_input, pad_to_stride, padded_size


def frame(h: int, w: int, dtype=np.float32) -> np.ndarray:
    return np.arange(h * w, dtype=np.float64).reshape(h, w).astype(dtype)


@pytest.mark.parametrize("stride", [1, 4, 16, 32])
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (16, 16), (17, 31), (33, 64), (100, 7)])
def test_network_input_round_trip(size, stride):
    f = frame(*size)
    x, orig = network_input(f, stride)
    assert orig == size
    assert x.dtype == np.float32 and x.ndim == 4 and x.shape[:2] == (1, 1)
    h, w = x.shape[-2:]
    assert h % stride == 0 and w % stride == 0
    assert size[0] <= h < size[0] + stride and size[1] <= w < size[1] + stride  # the least padding
    np.testing.assert_array_equal(crop_to(x, orig)[0, 0], f)


def test_already_aligned_frame_is_not_padded():
    f = frame(32, 48)
    x, orig = pad_to_stride(f, 16)
    assert x.shape == (32, 48) and orig == (32, 48)
    np.testing.assert_array_equal(x, f)


def test_padding_reflects_without_repeating_the_border():
    f = frame(5, 6)
    x, _ = pad_to_stride(f, 4)  # -> (8, 8): 3 rows, 2 columns
    assert x.shape == (8, 8)
    np.testing.assert_array_equal(x[5:, :6], f[[3, 2, 1], :])  # row 4 is not repeated
    np.testing.assert_array_equal(x[:5, 6:], f[:, [4, 3]])
    assert x[7, 7] == f[1, 3]  # the corner reflects both ways


def test_frame_too_small_to_reflect_is_edge_replicated():
    f = frame(3, 9)
    x, orig = pad_to_stride(f, 8)  # 5 rows of padding > 3 rows of frame: reflect impossible
    assert x.shape == (8, 16) and orig == (3, 9)
    np.testing.assert_array_equal(x[3:, :9], np.broadcast_to(f[-1], (5, 9)))
    np.testing.assert_array_equal(x[:3, 9:], np.broadcast_to(f[:, -1:], (3, 7)))  # both axes


def test_leading_axes_are_left_alone():
    x = np.stack([frame(5, 5), -frame(5, 5)])[None]  # (1, 2, 5, 5)
    y, orig = pad_to_stride(x, 4)
    assert y.shape == (1, 2, 8, 8) and orig == (5, 5)
    np.testing.assert_array_equal(y[0, 1], -y[0, 0])  # channels padded independently, same rule


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64, np.int32])
def test_network_input_converts_to_float32_exactly(dtype):
    f = frame(6, 10, dtype)
    x, _ = network_input(f, 8)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0, :6, :10], f.astype(np.float32))


def test_network_input_accepts_non_contiguous_views_and_returns_contiguous():
    big = frame(40, 64)
    view = big[::2, 1::3]  # (20, 21), strided
    x, orig = network_input(view, 16)
    assert x.flags.c_contiguous and x.shape == (1, 1, 32, 32) and orig == (20, 21)
    np.testing.assert_array_equal(crop_to(x, orig)[0, 0], view)


def test_network_input_does_not_modify_the_frame():
    f = frame(7, 9)
    before = f.copy()
    x, _ = network_input(f, 4)
    x[...] = -1
    np.testing.assert_array_equal(f, before)


def test_crop_to_is_a_view():
    x = frame(8, 8)
    c = crop_to(x, (5, 6))
    assert c.shape == (5, 6) and np.shares_memory(c, x)


def test_matches_the_torch_twin():
    torch = pytest.importorskip("torch")
    from irstd_ros.inference.preprocess import pad_to_stride as torch_pad

    for h, w, stride in [(5, 6, 4), (17, 31, 16), (3, 9, 8), (20, 3, 16)]:
        f = frame(h, w)
        ours, size = pad_to_stride(f[None, None], stride)
        theirs, tsize = torch_pad(torch.from_numpy(f)[None, None], stride)
        assert size == tsize
        np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("shape", [(5, 6, 1), (5,), (1, 1, 5, 6)])
def test_network_input_refuses_anything_but_one_plane(shape):
    with pytest.raises(ValueError, match=r"one \(H, W\) plane"):
        network_input(np.zeros(shape, np.float32), 4)


@pytest.mark.parametrize("stride", [1, 16, 32])
@pytest.mark.parametrize("size", [(1, 1), (1, 300), (17, 31), (32, 48), (512, 640), (1080, 1920)])
def test_padded_size_is_the_shape_pad_to_stride_makes(size, stride):
    assert padded_size(*size, stride) == pad_to_stride(np.zeros(size, np.float32), stride)[0].shape


def test_max_stride_is_the_largest_network_stride():
    """The size check of incoming frames pads to MAX_STRIDE when it is not told the
    network's: no network may have a larger one."""
    pytest.importorskip("torch")
    from irstd_ros.models.config import STEMS, ModelConfig

    assert MAX_STRIDE == max(ModelConfig(stem=stem).stride for stem in STEMS)
