"""Sensor augmentation: fixed-pattern noise is constant along its axis; wrong settings are
refused when made."""

from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.errors import ConfigError
from irstd_ros.sim.sensor import SensorConfig, degrade

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
