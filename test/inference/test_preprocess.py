import numpy as np
import pytest
import torch

from irstd_ros.errors import ConfigError
from irstd_ros.inference.preprocess import crop_to, pad_to_stride, to_unit_range


@pytest.mark.parametrize("size", [(1, 1), (15, 17), (16, 16), (33, 100), (511, 641)])
def test_pad_to_stride_then_crop_back(size):
    x = torch.randn(1, 1, *size)
    padded, orig = pad_to_stride(x, 16)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert orig == size
    assert torch.equal(crop_to(padded, orig), x)


def test_sixteen_bit_auto_uses_percentiles_not_division():
    rng = np.random.default_rng(0)
    frame = (7000 + rng.normal(0, 20, (64, 64))).astype(np.uint16)  # cold narrow band
    frame[30, 30] = 7600
    unit = to_unit_range(frame, "auto")
    assert unit.max() == 1.0 and unit.min() == 0.0
    assert unit[30, 30] == 1.0
    assert 0.3 < np.median(unit) < 0.7  # not crushed to black as x/256/255 would do


def test_fixed_and_minmax_rules():
    frame = np.array([[100, 200, 300]], np.uint16)
    np.testing.assert_allclose(to_unit_range(frame, "fixed", 100, 300), [[0, 0.5, 1]])
    np.testing.assert_allclose(to_unit_range(frame, "minmax"), [[0, 0.5, 1]])
    assert to_unit_range(np.full((2, 2), 5, np.uint16), "minmax").max() == 0.0
    with pytest.raises(ConfigError, match="valid"):
        to_unit_range(frame, "gamma")
    with pytest.raises(ConfigError, match="high > low"):
        to_unit_range(frame, "fixed", 5, 5)


def test_eight_bit_and_float_auto():
    assert to_unit_range(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    assert to_unit_range(np.array([[-1.0, 0.5, 2.0]], np.float32)).tolist() == [[0.0, 0.5, 1.0]]
