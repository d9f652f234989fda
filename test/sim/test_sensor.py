"""Sensor augmentation: fixed-pattern noise is constant along its axis; wrong settings are
refused when made."""

from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.errors import ConfigError
from irstd_ros.sim.sensor import MAX_14BIT, SensorConfig, degrade, encode

ONLY_FPN = dict(noise_prob=0.0, blur_prob=0.0)


def test_row_fpn_adds_one_offset_per_row_and_column_fpn_one_per_column():
    flat = np.zeros((40, 60), np.float32)
    rows = degrade(flat, np.random.default_rng(0), 2.0, SensorConfig(fpn_prob=0.0, row_fpn_prob=1.0, **ONLY_FPN))
    assert np.ptp(rows, axis=1).max() == 0 and np.ptp(rows[:, 0]) > 0  # stripes along rows
    assert 0.2 * 2.0 * 0.5 < rows[:, 0].std() < 1.0 * 2.0 * 1.5  # in units of the frame's sigma
    cols = degrade(flat, np.random.default_rng(0), 2.0, SensorConfig(fpn_prob=1.0, **ONLY_FPN))
    assert np.ptp(cols, axis=0).max() == 0 and np.ptp(cols[0]) > 0


def test_row_fpn_is_off_by_default():
    flat = np.zeros((40, 60), np.float32)
    out = degrade(flat, np.random.default_rng(1), 2.0, SensorConfig(fpn_prob=0.0, **ONLY_FPN))
    assert not out.any()


@pytest.mark.parametrize(
    ("field", "value"),
    [("row_fpn_prob", 5), ("noise_prob", "x"), ("blur_prob", float("nan")), ("fpn", (1.0, 0.2)),
     ("noise", 5), ("counts_offset", ("a", 1)), ("encoding_probs", (0.5, 0.5, 0.5, 0.5)),
     ("encoding_probs", (1.0, 0.0, 0.0))],
)
def test_a_wrong_sensor_value_is_a_config_error_naming_it(field, value):
    with pytest.raises(ConfigError, match=f"sensor {field} must be"):
        SensorConfig(**{field: value})


def test_the_default_sensor_config_and_yaml_lists_are_accepted():
    SensorConfig()
    SensorConfig(noise=[0.0, 2.0], encoding_probs=[0.25, 0.25, 0.25, 0.25])


@pytest.mark.parametrize("native", [np.uint16, np.float32])
def test_mono16_keeps_a_16_bit_or_float_frame_within_14_bits_with_its_target(native):
    # a 16-bit frame of the generator (4000 + 16 x DN) or a float radiance frame (0..1):
    # in their own units, counts_per_unit put the first wholly above 14 bits (every pixel
    # 16383) and the second on a few dozen counts (target rounded away)
    rng = np.random.default_rng(0)
    dn = 100.0 + 2.0 * rng.standard_normal((64, 64))
    dn[32, 32] += 30.0  # a target of SNR 15
    frame = (4000.0 + 16.0 * dn) if native == np.uint16 else dn / 255.0
    for seed in range(10):
        out = encode(frame.astype(np.float32), np.random.default_rng(seed), np.dtype(native), SensorConfig(), "mono16")
        assert (out == MAX_14BIT).mean() < 0.01
        background = np.delete(out.ravel(), 32 * 64 + 32).astype(np.float64)
        assert (out[32, 32] - np.median(background)) / background.std() > 8  # the target survives


def test_mono16_of_an_8_bit_frame_is_offset_plus_gain_times_dn():
    x = np.random.default_rng(1).uniform(0, 255, (16, 16)).astype(np.float32)
    cfg = SensorConfig()
    out = encode(x, np.random.default_rng(5), np.dtype(np.uint8), cfg, "mono16")
    rng = np.random.default_rng(5)
    dithered = x + rng.uniform(-0.5, 0.5, x.shape).astype(np.float32)
    offset, gain = rng.uniform(*cfg.counts_offset), rng.uniform(*cfg.counts_per_unit)
    assert np.array_equal(out, np.clip(np.rint(offset + gain * dithered), 0, MAX_14BIT).astype(np.uint16))


@pytest.mark.parametrize("native", [np.int32, np.uint32, np.int64])
def test_native_encoding_keeps_pixels_at_the_bounds_of_a_wide_integer_type(native):
    # clipped in float32, 2**32 - 1 rounded up to 2**32 and wrapped to 0 (int32: to -2**31)
    info = np.iinfo(native)
    x = np.array([[float(info.min), float(info.max), 1e30, 3e9 if info.max > 3e9 else 1e9]], np.float32)
    out = encode(x, np.random.default_rng(0), np.dtype(native), SensorConfig(), "native")
    assert out.dtype == native
    assert out[0, 0] == info.min and out[0, 1] >= info.max - 2**40 and out[0, 2] == out[0, 1] > 0
    assert out[0, 3] == int(x[0, 3])
