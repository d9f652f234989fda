"""Sequence-level tracking metrics (irstd_ros.tracking.metrics) on hand-made points."""

from __future__ import annotations

import pytest

from irstd_ros.tracking.metrics import Point, tracking_metrics

STEP = 100_000_000  # ns between frames: 10 fps


def test_tracking_metrics_function_on_points():
    truth = {s: [Point("a", 10.0, 10.0)] for s in range(0, 10 * STEP, STEP)}
    hyps = {s: [Point("x", 11.0, 10.0), Point("fa", 40.0, 40.0)] for s in truth}
    m = tracking_metrics(truth, hyps, match_px=2.0, warmup_s=0.0)
    assert m["pd"] == 1.0 and m["false_tracks"] == 1 and m["id_switches"] == 0
    assert m["position_rms_px"] == pytest.approx(1.0)
    assert m["mota"] == pytest.approx(0.0)  # 10 false positives over 10 objects
