"""Tracking scenarios of the generator: crossing pairs, manoeuvres, flickering clutter."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from irstd_ros.errors import ConfigError
from irstd_ros.sim import SequenceConfig, generate_sequence
from irstd_ros.sim.clutter import plan_flicker
from irstd_ros.sim.targets import MANOEUVRE_TURN, PlanSpace, plan_manoeuvres

BASE = SequenceConfig(
    width=200, height=160, frames=40, fps=10.0, n_targets=0, enter_leave=False, seed=4
)


def tracks_of(frames: list) -> dict[int, dict[int, tuple[float, float]]]:
    """id -> {frame: (x, y)} of the truth."""
    out: dict[int, dict[int, tuple[float, float]]] = {}
    for f in frames:
        for t in f.targets:
            out.setdefault(t.id, {})[f.index] = (t.x, t.y)
    return out


@pytest.mark.parametrize("seed", [4, 9])
def test_crossing_pair_meets_mid_sequence_and_keeps_its_ids(seed):
    cfg = replace(BASE, crossings=1, target_speed=(15.0, 15.0), seed=seed)
    seq = list(generate_sequence(cfg))
    tracks = tracks_of(seq)
    assert set(tracks) == {0, 1}
    assert all(len(tracks[i]) == cfg.frames for i in (0, 1))  # both visible throughout
    a = np.array([tracks[0][t] for t in range(cfg.frames)])
    b = np.array([tracks[1][t] for t in range(cfg.frames)])
    gap = np.hypot(*(a - b).T)
    meet = int(gap.argmin())
    assert gap[meet] < 1e-6 and 0.4 * cfg.frames - 1 <= meet <= 0.6 * cfg.frames
    # each id keeps its own straight, constant-velocity path through the crossing
    for path in (a, b):
        steps = np.diff(path, axis=0)
        assert np.allclose(steps, steps[0])
    va, vb = a[1] - a[0], b[1] - b[0]
    angle = np.degrees(np.arccos(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)))
    assert 30.0 - 1e-6 <= angle <= 150.0 + 1e-6
    # both are in the truth mask where they meet, and in the bag order of ids
    assert [t.id for t in seq[meet].targets] == [0, 1] and seq[meet].mask.any()


def test_manoeuvring_targets_turn_and_change_speed():
    rng = np.random.default_rng(0)
    space = PlanSpace(100, 10.0, 640, 512, (1.0, 2.0), (10.0, 20.0), (5.0, 5.0))
    plans = plan_manoeuvres(rng, 6, space, 3)
    assert [p.id for p in plans] == list(range(3, 9))
    for p in plans:
        v = np.diff(p.positions, axis=0) * 10.0  # px/s
        before, after = v[:20], v[-20:]  # straight legs: before 0.3 and after the turn
        assert np.allclose(before, before[0]) and np.allclose(after, after[-1])
        turn = np.angle(complex(*after[-1]) / complex(*before[0]))
        assert np.degrees(MANOEUVRE_TURN[0]) - 1e-6 <= abs(np.degrees(turn))
        assert abs(np.degrees(turn)) <= np.degrees(MANOEUVRE_TURN[1]) + 1e-6
        ratio = np.linalg.norm(after[-1]) / np.linalg.norm(before[0])
        assert 0.5 - 1e-9 <= ratio <= 2.0 + 1e-9 and abs(ratio - 1.0) > 1e-3


def test_manoeuvring_target_in_the_sequence_is_one_id_whose_velocity_changes():
    cfg = replace(BASE, frames=60, manoeuvres=1, n_targets=1, target_speed=(12.0, 12.0))
    tracks = tracks_of(list(generate_sequence(cfg)))
    assert set(tracks) == {0, 1}  # the plain target first, then the manoeuvring one
    path = tracks[1]
    frames = sorted(path)
    v = np.diff([path[t] for t in frames], axis=0)
    assert np.abs(v - v[0]).max() > 0.3  # per-frame velocity changes by more than 3 px/s


def test_flickering_clutter_is_in_the_image_but_never_in_the_truth():
    plain = list(generate_sequence(replace(BASE, n_targets=2, frames=12)))
    flick = list(generate_sequence(replace(BASE, n_targets=2, frames=12, flicker_rate=3.0)))
    hot_frames = 0
    for p, f in zip(plain, flick):
        assert np.array_equal(p.mask, f.mask) and p.targets == f.targets
        diff = f.image.astype(float) - p.image.astype(float)
        hot_frames += diff.max() >= 6.0  # a flicker's peak: >= 6 x local clutter
        assert diff.min() >= 0  # clutter only adds
    assert hot_frames >= 10
    empty = list(generate_sequence(replace(BASE, frames=6, flicker_rate=3.0)))
    assert all(not f.targets and not f.mask.any() for f in empty)


def test_flickers_last_one_to_three_frames_at_the_requested_rate():
    rng = np.random.default_rng(1)
    fl = plan_flicker(rng, 2.0, 500, 100, 80, (1, 3), (6.0, 15.0))
    assert len(fl) == pytest.approx(1000, rel=0.1)
    assert {f.frames for f in fl} == {1, 2, 3}
    assert all(0 <= f.x <= 99 and 0 <= f.y <= 79 and 6.0 <= f.snr <= 15.0 for f in fl)
    f = fl[0]
    assert [f.on(t) for t in range(f.start - 1, f.start + f.frames + 1)] == (
        [False] + [True] * f.frames + [False]
    )
    assert plan_flicker(rng, 0.0, 10, 100, 80, (1, 3), (6.0, 15.0)) == []


def test_scenarios_do_not_change_the_other_targets():
    cfg = replace(BASE, n_targets=2, dim_targets=1, frames=5)
    plain = list(generate_sequence(cfg))
    more = list(generate_sequence(replace(cfg, crossings=1, manoeuvres=2)))
    for p, m in zip(plain, more):
        assert [t for t in m.targets if t.id < 3] == p.targets
        assert {t.id for t in m.targets} <= set(range(7))


@pytest.mark.parametrize(
    "change",
    [{"crossings": -1}, {"manoeuvres": -1}, {"flicker_rate": -0.5}, {"flicker_frames": (0, 2)},
     {"flicker_frames": (3, 2)}, {"flicker_snr": (0.0, 5.0)}],
)
def test_invalid_scenario_is_a_config_error(change):
    with pytest.raises(ConfigError):
        next(generate_sequence(replace(BASE, **change)))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"flicker_rate": 1e9}, "flicker_rate must be in [0, 333.3] for 12 frames"),  # hung (> 100 s)
        ({"flicker_rate": 2.0, "frames": 10**6}, "flicker_rate must be in [0, 1] for 1000000 frames"),
        ({"flicker_rate": 11.0, "flicker_frames": (1, 100), "frames": 200}, "in [0, 10] for 200 frames"),
        ({"flicker_frames": (1, 10**30)}, "flicker_frames must satisfy 1 <= lo <= hi <= 1000000"),
    ],
)
def test_flicker_rates_beyond_what_a_sequence_holds_are_refused(change, words):
    with pytest.raises(ConfigError) as err:
        replace(BASE, **{"frames": 12, **change}).validate()
    assert words in str(err.value)


def test_flickers_by_frame_are_those_on_in_list_order():
    from irstd_ros.sim.clutter import flickers_by_frame

    fl = plan_flicker(np.random.default_rng(2), 3.0, 40, 100, 80, (1, 5), (6.0, 15.0))
    on = flickers_by_frame(fl)
    for t in range(45):
        assert next(on) == [f for f in fl if f.on(t)]
