"""Gated association (a neighbour search, then one assignment per connected component)
gives exactly what scoring every track-detection pair and one Hungarian assignment of the
whole matrix gives: the tracker with both, on random crowded scenes (no rclpy, no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.tracking import Det

from irstd_ros.tracking import Tracker, TrackerConfig
from irstd_ros.tracking import tracker as tracker_module

WHOLE = 10**12  # _DENSE_PAIRS: every pair scored, one assignment (the brute force)


def _scene(seed: int, frames: int = 30):
    """Frames (stamp, detections, candidates, gated): targets moving through a 160x160 px
    field, some crossing, some with large boxes (merged blobs), missed detections,
    irregular stamps (dropped frames widen the tentative gates) and clutter everywhere, so
    gates overlap and components hold several tracks and detections."""
    rng = np.random.default_rng(seed)
    n = 40
    start = rng.uniform(0, 160, (n, 2))
    vel = rng.normal(0, 25, (n, 2))
    stamp = 0.0
    out = []
    for _ in range(frames):
        stamp += 0.1 * rng.choice([1, 1, 1, 2, 3])
        pos = start + vel * stamp + rng.normal(0, 0.7, (n, 2))
        size = np.where(rng.random((n, 1)) < 0.15, rng.uniform(6, 14, (n, 2)), 3.0)
        kind = rng.choice(3, n, p=[0.7, 0.15, 0.15])  # detection, candidate, gated
        seen = rng.random(n) > 0.1
        groups: list[list[Det]] = [[], [], []]
        for (x, y), (w, h), k, s in zip(pos, size, kind, seen):
            if s:
                groups[k].append(Det(x, y, float(rng.uniform(0.2, 1.0)), w, h))
        for k, count in enumerate((25, 10, 10)):  # clutter
            groups[k] += [
                Det(*rng.uniform(-5, 165, 2), float(rng.uniform(0.1, 1.0)), *rng.uniform(1, 5, 2))
                for _ in range(count)
            ]
        for g in groups:
            rng.shuffle(g)  # type: ignore[arg-type]
        out.append((stamp, *groups))
    return out


def _run(monkeypatch, dense_pairs: int, frames, config: TrackerConfig):
    monkeypatch.setattr(tracker_module, "_DENSE_PAIRS", dense_pairs)
    tr = Tracker(config)
    return [
        tr.update(t, dets, image_size=(160, 160), candidates=cands, gated=gated)
        for t, dets, cands, gated in frames
    ]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "config", [TrackerConfig(), TrackerConfig(gate_px=4.0, confirm_m=2, confirm_n=3)],
    ids=["defaults", "narrow-gate"],
)
def test_gated_association_equals_the_whole_matrix_frame_by_frame(monkeypatch, seed, config):
    frames = _scene(seed)
    gated = _run(monkeypatch, 0, frames, config)
    whole = _run(monkeypatch, WHOLE, frames, config)
    assert sum(len(f) for f in whole) > 30 * 40  # crowded: tracks in every frame
    for i, (a, b) in enumerate(zip(gated, whole)):
        assert a == b, f"frame {i} differs"


@pytest.mark.parametrize("seed", range(20))
def test_assignment_by_components_equals_the_whole_matrix(monkeypatch, seed):
    """Random sparse feasible pairs (several per row and column, chains, rectangles):
    per-component assignments give the pairs of the whole matrix's."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 60, 2)
    e = rng.integers(1, 3 * max(rows, cols))
    pairs = np.unique(np.stack([rng.integers(0, rows, e), rng.integers(0, cols, e)], 1), axis=0)
    i, j = pairs.T
    cost = rng.normal(0, 5, len(i))
    monkeypatch.setattr(tracker_module, "_DENSE_PAIRS", 0)
    by_components = tracker_module._assign(int(rows), int(cols), i, j, cost)
    monkeypatch.setattr(tracker_module, "_DENSE_PAIRS", WHOLE)
    assert by_components == tracker_module._assign(int(rows), int(cols), i, j, cost)
