"""Sequence-level tracking metrics (irstd_ros.tracking.metrics) on hand-made points."""

from __future__ import annotations

import json

import pytest

from irstd_ros.tracking.metrics import TARGET_METRICS, Point, tracking_metrics

STEP = 100_000_000  # ns between frames: 10 fps


def test_tracking_metrics_function_on_points():
    truth = {s: [Point("a", 10.0, 10.0)] for s in range(0, 10 * STEP, STEP)}
    hyps = {s: [Point("x", 11.0, 10.0), Point("fa", 40.0, 40.0)] for s in truth}
    m = tracking_metrics(truth, hyps, match_px=2.0, warmup_s=0.0)
    assert m["pd"] == 1.0 and m["false_tracks"] == 1 and m["id_switches"] == 0
    assert m["position_rms_px"] == pytest.approx(1.0)
    assert m["mota"] == pytest.approx(0.0)  # 10 false positives over 10 objects


def test_undefined_figures_are_none_never_zero_nor_nan():
    """A figure whose denominator is empty was 0.0 (a rate), NaN (Pd: not JSON) or -inf
    (MOTA without truth); as irstd_ros.evaluation.metrics, it is None."""
    frames = range(0, 10 * STEP, STEP)
    # no truth target at all, one false track over 1 s
    m = tracking_metrics({s: [] for s in frames}, {s: [Point("f", 1.0, 1.0)] for s in frames})
    assert m["false_tracks"] == 1 and m["false_tracks_per_min"] == pytest.approx(60.0)
    # every figure that needs a truth instance: motmetrics gives IDF1 0 of hypotheses
    # alone, and 0 switches and tracked targets, as if targets had been there to miss
    for key in TARGET_METRICS:
        assert m[key] is None, key
    assert m["false_positive_instances"] == 10 and m["hypotheses"] == 1
    # one frame: its duration, so any rate over time, is unknown
    one = tracking_metrics({0: [Point("a", 0.0, 0.0)]}, {0: [Point("a", 0.0, 0.0), Point("f", 30.0, 30.0)]})
    assert one["pd"] == 1.0 and one["false_tracks"] == 1
    assert one["false_tracks_per_min"] is None and one["id_switches_per_100_target_s"] is None
    # nothing at all
    empty = tracking_metrics({}, {})
    assert all(empty[k] is None for k in ("pd", "mota", "idf1", "false_tracks_per_min"))
    for r in (m, one, empty):
        json.dumps(r, allow_nan=False)  # strict JSON


@pytest.mark.parametrize("matched_frames, false_tracks", [(5, 0), (4, 1), (0, 1)])
def test_a_false_track_is_matched_in_fewer_than_half_of_its_frames(matched_frames, false_tracks):
    """Hypothesis x is on target a in its first frames, then 40 px off for the rest."""
    stamps = range(0, 10 * STEP, STEP)
    truth = {s: [Point("a", 10.0, 10.0)] for s in stamps}
    hyps = {s: [Point("x", 10.0, 10.0) if i < matched_frames else Point("x", 50.0, 40.0)]
            for i, s in enumerate(stamps)}
    m = tracking_metrics(truth, hyps, match_px=2.0, warmup_s=0.0)
    assert m["pd"] == pytest.approx(matched_frames / 10) and m["false_tracks"] == false_tracks
