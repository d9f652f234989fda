"""Gated association (a neighbour search, then one assignment per connected component:
a dense Hungarian for a small one, a sparse assignment of its pairs alone for a large one)
gives exactly what scoring every track-detection pair and one Hungarian assignment of the
whole matrix gives: the tracker with both, on random crowded scenes (no rclpy, no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.tracking import Det
from scipy.optimize import linear_sum_assignment

from irstd_ros.tracking import Tracker, TrackerConfig
from irstd_ros.tracking import tracker as tracker_module

WHOLE = 10**12  # _DENSE_PAIRS: every pair scored, one assignment (the brute force)
# _DENSE_COMPONENT: every component of more than one pair solved densely, or sparsely
COMPONENT_SOLVERS = pytest.mark.parametrize(
    "dense_component", [WHOLE, 0], ids=["dense-components", "sparse-components"]
)


def _whole_matrix(rows: int, cols: int, i, j, cost) -> list[tuple[int, int]]:
    """The brute force, kept here whatever the tracker does: one Hungarian assignment of the
    whole rows x cols matrix, infeasible (1e9) outside the pairs; its feasible pairs by row."""
    infeasible = 1e9
    keep = cost < infeasible
    whole = np.full((rows, cols), infeasible)
    whole[i[keep], j[keep]] = cost[keep]
    a, b = linear_sum_assignment(whole)
    ok = whole[a, b] < infeasible
    return list(zip(a[ok].tolist(), b[ok].tolist()))


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


def _run(
    monkeypatch, dense_pairs: int, frames, config: TrackerConfig, dense_component: int = WHOLE,
    image_size: tuple[int, int] = (160, 160),
):
    monkeypatch.setattr(tracker_module, "_DENSE_PAIRS", dense_pairs)
    monkeypatch.setattr(tracker_module, "_DENSE_COMPONENT", dense_component)
    tr = Tracker(config)
    return [
        tr.update(t, dets, image_size=image_size, candidates=cands, gated=gated)
        for t, dets, cands, gated in frames
    ]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "config", [TrackerConfig(), TrackerConfig(gate_px=4.0, confirm_m=2, confirm_n=3)],
    ids=["defaults", "narrow-gate"],
)
@COMPONENT_SOLVERS
def test_gated_association_equals_the_whole_matrix_frame_by_frame(
    monkeypatch, seed, config, dense_component
):
    frames = _scene(seed)
    gated = _run(monkeypatch, 0, frames, config, dense_component)
    whole = _run(monkeypatch, WHOLE, frames, config)
    assert sum(len(f) for f in whole) > 30 * 40  # crowded: tracks in every frame
    for i, (a, b) in enumerate(zip(gated, whole)):
        assert a == b, f"frame {i} differs"


@pytest.mark.parametrize("seed", range(20))
@COMPONENT_SOLVERS
def test_assignment_by_components_equals_the_whole_matrix(monkeypatch, seed, dense_component):
    """Random sparse feasible pairs (several per row and column, chains, rectangles):
    per-component assignments give the pairs of the whole matrix's."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 60, 2)
    e = rng.integers(1, 3 * max(rows, cols))
    pairs = np.unique(np.stack([rng.integers(0, rows, e), rng.integers(0, cols, e)], 1), axis=0)
    i, j = pairs.T
    cost = rng.normal(0, 5, len(i))
    monkeypatch.setattr(tracker_module, "_DENSE_PAIRS", 0)
    monkeypatch.setattr(tracker_module, "_DENSE_COMPONENT", dense_component)
    by_components = tracker_module._assign(int(rows), int(cols), i, j, cost)
    monkeypatch.setattr(tracker_module, "_DENSE_PAIRS", WHOLE)
    assert by_components == tracker_module._assign(int(rows), int(cols), i, j, cost)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", [(400, 300), (300, 400), (350, 350)])
def test_sparse_assignment_of_a_large_component_equals_the_whole_matrix(
    monkeypatch, seed, shape
):
    """Large components solved sparsely, where no full matching exists (rows and columns
    without a pair, more rows than columns or fewer), costs of both signs and a zero: the
    pairs of the whole matrix's brute force; and, as invariants that lean on no solver, one
    pair per row and column, all feasible, no feasible pair of a free row and a free column
    left (one pair more was possible), no row cheaper on a free column."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    # a band of neighbours (a crowded scene: each track near a few detections), chained
    a = np.repeat(np.arange(rows), 6)
    b = np.clip((a * cols) // rows + rng.integers(-6, 7, len(a)), 0, cols - 1)
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    pairs = pairs[rng.random(len(pairs)) < 0.6]
    pairs = pairs[(pairs[:, 0] % 37 > 0) & (pairs[:, 1] % 41 > 0)]  # rows, columns without one
    i, j = pairs.T
    cost = rng.normal(2, 5, len(i))
    cost[0] = 0.0
    sparse, solved = tracker_module._sparse, []
    monkeypatch.setattr(tracker_module, "_sparse", lambda *a: solved.append(a[:2]) or sparse(*a))
    monkeypatch.setattr(tracker_module, "_DENSE_COMPONENT", 0)  # any component of 2+ pairs
    got = tracker_module._assign(rows, cols, i, j, cost)
    assert max(r * c for r, c in solved) > 100 * 100  # a large component, solved sparsely
    assert len(got) < min(rows, cols)  # no full matching exists
    assert got == sorted(_whole_matrix(rows, cols, i, j, cost))
    # one pair per row and per column, all feasible
    assert len({r for r, _ in got}) == len({c for _, c in got}) == len(got)
    feasible = {(int(r), int(c)): float(x) for r, c, x in zip(i, j, cost)}
    assert all(p in feasible for p in got)
    by_row, by_col = dict(got), {c: r for r, c in got}
    for r, c in feasible:  # a free row and a free column of a pair: one pair more was possible
        assert r in by_row or c in by_col
    for (r, c), x in feasible.items():  # moving a row to a free column lowers no cost
        if r in by_row and c not in by_col:
            assert x >= feasible[(r, by_row[r])] - 1e-9


def _cluttered(seed: int, n: int, frames: int, side: float):
    """Frames of ``n`` detections in a ``side`` x ``side`` px field: a few hundred targets
    moving at random, the rest clutter, stamps at 10-30 fps, plus candidates and gated
    components; crowded enough that gates chain into components of hundreds of tracks."""
    rng = np.random.default_rng(seed)
    k = n // 2
    start, vel = rng.uniform(0, side, (k, 2)), rng.normal(0, 15, (k, 2))
    stamp, out = 0.0, []
    for _ in range(frames):
        stamp += rng.choice([1 / 30, 1 / 30, 1 / 10])
        pos = np.concatenate([start + vel * stamp + rng.normal(0, 0.5, (k, 2)),
                              rng.uniform(0, side, (n - k, 2))])
        size = rng.uniform(1, 5, (n, 2))
        dets = [Det(x, y, float(s), w, h) for (x, y), (w, h), s in zip(pos, size, rng.random(n))]
        rng.shuffle(dets)  # type: ignore[arg-type]
        cands = [Det(*rng.uniform(0, side, 2), 0.1, 2.0, 2.0) for _ in range(n // 5)]
        gated = [Det(*rng.uniform(0, side, 2), 0.05, 2.0, 2.0) for _ in range(n // 5)]
        out.append((stamp, dets, cands, gated))
    return out


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("sparse_from", [None, 0], ids=["as-shipped", "every-component-sparse"])
def test_a_cluttered_scene_of_500_detections_gets_the_brute_force_tracks(
    monkeypatch, seed, sparse_from
):
    """500 detections a frame (and 100 candidates, 100 gated components) over 8 frames,
    crowded into 180x180 px: the tracker as shipped (neighbour search, components, the large
    ones solved sparsely), or with every component of several pairs solved sparsely, gives
    frame by frame the tracks (ids, states, floats) of the brute force: every
    track-detection pair scored and each association one Hungarian assignment of the whole
    matrix (``_whole_matrix``, kept in this test)."""
    side = 180
    frames = _cluttered(seed, 500, 8, float(side))
    dense_pairs, dense_component = tracker_module._DENSE_PAIRS, tracker_module._DENSE_COMPONENT
    solved = []
    sparse = tracker_module._sparse
    monkeypatch.setattr(tracker_module, "_sparse", lambda *a: solved.append(a[:2]) or sparse(*a))
    component = dense_component if sparse_from is None else sparse_from
    tracker = _run(monkeypatch, dense_pairs, frames, TrackerConfig(), component, (side, side))
    # components too large for a dense solve, in most frames
    assert sum(r * c > dense_component for r, c in solved) >= len(frames) // 2
    monkeypatch.setattr(tracker_module, "_assign", _whole_matrix)
    brute = _run(monkeypatch, WHOLE, frames, TrackerConfig(), image_size=(side, side))
    assert sum(t.confirmed for t in brute[-1]) > 100  # tracks confirmed among the clutter
    for f, (a, b) in enumerate(zip(tracker, brute)):
        assert a == b, f"frame {f} differs"
