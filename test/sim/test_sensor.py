"""Sensor augmentation: fixed-pattern noise is constant along its axis."""

from __future__ import annotations

import numpy as np

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
