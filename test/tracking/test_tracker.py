"""The tracker on hand-made detections: association, confirmation, coasting, deletion,
dropped frames, irregular rates, time going backwards, frames out of order (no rclpy, no
torch)."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
from _support.tracking import Det

from irstd_ros.errors import ConfigError
from irstd_ros.tracking import Tracker, TrackerConfig, TrackState

DT = 0.1  # 10 fps


def run(tracker: Tracker, frames: list[tuple[float, list[Det]]]):
    out = []
    for stamp, dets in frames:
        out.append(tracker.update(stamp, dets))
    return out


def moving(x0, y0, vx, vy, t):
    return Det(x0 + vx * t, y0 + vy * t)


def confirmed(tracks):
    return [t for t in tracks if t.confirmed]


def test_single_target_is_tentative_then_confirmed_at_m_of_n_with_velocity():
    tr = Tracker(TrackerConfig(confirm_m=3, confirm_n=5))
    states = []
    for i in range(10):
        t = i * DT
        (track,) = tr.update(t, [moving(100, 50, 20.0, -10.0, t)])
        states.append(track.state)
    assert states[:2] == [TrackState.TENTATIVE] * 2
    assert set(states[2:]) == {TrackState.CONFIRMED}
    assert track.id == 1 and track.hits == 10 and track.misses == 0
    assert track.age_s == pytest.approx(0.9)
    assert (track.vx, track.vy) == (pytest.approx(20.0, abs=1.0), pytest.approx(-10.0, abs=1.0))
    assert (track.x, track.y) == (pytest.approx(118.0, abs=0.5), pytest.approx(41.0, abs=0.5))


def test_two_targets_keep_their_ids_even_when_detections_come_in_any_order():
    tr = Tracker()
    for i in range(15):
        t = i * DT
        a, b = moving(50, 50, 30, 0, t), moving(50, 80, 30, 0, t)
        tracks = tr.update(t, [b, a] if i % 2 else [a, b])
    by_id = {tk.id: tk for tk in tracks}
    assert set(by_id) == {1, 2}
    assert by_id[1].y == pytest.approx(50, abs=0.5) and by_id[2].y == pytest.approx(80, abs=0.5)


def test_crossing_targets_keep_their_ids():
    """Two targets crossing at an angle: the velocity states carry them through."""
    tr = Tracker()
    ids_at_end = {}
    for i in range(30):
        t = i * DT
        a, b = moving(40, 40, 40, 40, t), moving(40, 160, 40, -40, t)  # cross at t = 1.5 s
        tracks = tr.update(t, [a, b])
        if i == 3:
            start = {tk.id: tk.y for tk in confirmed(tracks)}
    ids_at_end = {tk.id: tk.y for tk in confirmed(tracks)}
    assert set(start) == set(ids_at_end) == {1, 2}
    # the track that started at the top is now at the bottom: it crossed, keeping its id
    top = min(start, key=start.get)
    assert ids_at_end[top] > 100


def test_a_detection_outside_the_gate_starts_a_new_track():
    tr = Tracker(TrackerConfig(gate_px=5.0, confirm_m=1, confirm_n=1))
    tr.update(0.0, [Det(10, 10)])
    tracks = tr.update(DT, [Det(40, 10)])  # 30 px away: beyond 5 px and 3 sigma
    assert {t.id for t in tracks} == {1, 2}
    assert {t.state for t in tracks} == {TrackState.COASTING, TrackState.CONFIRMED}


def test_a_detection_goes_to_the_likelier_track_not_the_nearer_in_sigmas():
    """The cost is the innovation's negative log-likelihood (d² + ln det S): a detection
    3 px from a well-held track and 5 px from one coasting with a 10 px uncertainty is
    the held track's, though it is fewer sigmas from the coasting one."""
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1, max_coast_s=1.0))
    for i in range(10):
        tr.update(i * DT, [Det(100, 100), Det(108, 100)])
    for i in range(10, 17):  # the second target unseen for 0.7 s
        tracks = tr.update(i * DT, [Det(100, 100)])
    assert tracks[1].position_std > 5.0 > 2.0 > tracks[0].position_std
    tracks = tr.update(17 * DT, [Det(103, 100)])
    assert [(t.id, t.state) for t in tracks] == [(1, TrackState.CONFIRMED), (2, TrackState.COASTING)]


def test_confirmed_track_wins_its_detection_over_a_tentative_one():
    tr = Tracker(TrackerConfig(confirm_m=2, confirm_n=3))
    for i in range(4):
        tr.update(i * DT, [Det(100 + 10 * i * DT, 100)])
    # a clutter blob appears right next to where the next detection will be
    tr.update(4 * DT, [Det(104.0, 100.0), Det(107.0, 100.0)])
    tracks = tr.update(5 * DT, [Det(105.0, 100.0)])
    (old,) = [t for t in tracks if t.id == 1]
    assert old.state is TrackState.CONFIRMED and old.hits == 6


def test_clutter_that_does_not_persist_is_never_confirmed_and_is_deleted():
    tr = Tracker(TrackerConfig(confirm_m=3, confirm_n=5))
    rng = np.random.default_rng(0)
    seen_confirmed = False
    for i in range(50):
        dets = [Det(*rng.uniform(0, 600, 2)) for _ in range(5)]  # new random blobs each frame
        seen_confirmed |= any(t.confirmed for t in tr.update(i * DT, dets))
    assert not seen_confirmed
    assert len(tr) <= 5 * 5  # none outlives its first N frames


def test_tentative_track_is_deleted_as_soon_as_m_of_n_is_out_of_reach():
    tr = Tracker(TrackerConfig(confirm_m=3, confirm_n=5))
    tr.update(0.0, [Det(10, 10)])
    assert len(tr.update(DT, [])) == 1  # 1 hit in 2 frames: 3 of 5 still possible
    assert len(tr.update(2 * DT, [])) == 1
    assert tr.update(3 * DT, []) == []  # 1 hit in 4 frames: at most 2 of 5


def test_min_score_keeps_weak_tracks_tentative():
    tr = Tracker(TrackerConfig(confirm_m=2, confirm_n=4, min_score=0.6))
    for i in range(3):
        tracks = tr.update(i * DT, [Det(10 + i, 10, score=0.4)])
    assert [t.state for t in tracks] == [TrackState.TENTATIVE]
    tracks = tr.update(3 * DT, [Det(13, 10, score=0.4)])
    assert tracks == []  # never reached the score within its first N frames


def test_min_score_applies_at_birth_when_one_detection_confirms():
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1, min_score=0.6))
    (weak, strong) = tr.update(0.0, [Det(10, 10, score=0.4), Det(50, 50, score=0.8)])
    assert (weak.state, strong.state) == (TrackState.TENTATIVE, TrackState.CONFIRMED)


def test_confirmed_track_coasts_then_is_deleted_after_max_coast_seconds():
    tr = Tracker(TrackerConfig(max_coast_s=0.5))
    for i in range(6):
        tr.update(i * DT, [moving(100, 100, 20, 0, i * DT)])
    t_last = 5 * DT
    for i in range(6, 11):  # 0.1 .. 0.5 s without detections: coasting, still predicted
        (track,) = tr.update(i * DT, [])
        assert track.state is TrackState.COASTING
        assert track.x == pytest.approx(100 + 20 * i * DT, abs=1.0)
        assert track.time_since_update_s == pytest.approx(i * DT - t_last)
        assert track.misses == i - 5  # consecutive frames without a detection
    assert tr.update(11 * DT, []) == []  # 0.6 s > max_coast_s


def test_coasting_track_is_recovered_with_the_same_id():
    tr = Tracker(TrackerConfig(max_coast_s=1.0))
    for i in range(30):
        t = i * DT
        dets = [] if 10 <= i < 17 else [moving(50, 200, 25, -5, t)]  # 0.7 s missed
        tracks = tr.update(t, dets)
        assert [tk.id for tk in tracks] == [1]
    assert tracks[0].state is TrackState.CONFIRMED and tracks[0].hits == 23


def test_dropped_frames_and_irregular_rates_use_the_stamps():
    """The same target seen at irregular times, with a 0.5 s gap: one track, right speed."""
    tr = Tracker()
    rng = np.random.default_rng(1)
    stamps = np.cumsum(rng.uniform(0.02, 0.15, 40))
    stamps[20:] += 0.5  # frames dropped
    for t in stamps:
        (track,) = tr.update(float(t), [moving(20, 20, 40, 15, t)])
    assert track.id == 1 and track.state is TrackState.CONFIRMED
    assert track.vx == pytest.approx(40, abs=1.5) and track.vy == pytest.approx(15, abs=1.5)


def test_a_gap_longer_than_max_coast_ends_the_track():
    tr = Tracker(TrackerConfig(max_coast_s=1.0))
    for i in range(5):
        tr.update(i * DT, [Det(50, 50)])
    tracks = tr.update(0.4 + 1.5, [Det(50, 50)])  # same place, but 1.5 s later
    assert [t.id for t in tracks] == [2] and tracks[0].state is TrackState.TENTATIVE


def test_time_going_backwards_resets_with_a_warning(caplog):
    tr = Tracker()
    for i in range(5):
        tr.update(10 + i * DT, [Det(50, 50)])
    with caplog.at_level(logging.WARNING, logger="irstd_ros.tracking.tracker"):
        tracks = tr.update(9.0, [Det(50, 50)])
    assert "time went backwards" in caplog.text
    assert tr.resets == 1
    assert [(t.id, t.state) for t in tracks] == [(2, TrackState.TENTATIVE)]  # ids never reused


def test_a_frame_out_of_order_is_skipped_and_the_tracks_kept(caplog):
    """A frame reordered by the network (0.15 s late): before, any step back reset the
    tracker, so one late frame dropped every track and the target got a new id. It is not
    tracked (its detections are not used, no miss, no frame of M-of-N), counted, warned."""
    tr = Tracker(TrackerConfig(confirm_m=3, confirm_n=5))
    for i in range(6):
        before = tr.update(10 + i * DT, [Det(50 + i, 50)])
    with caplog.at_level(logging.WARNING, logger="irstd_ros.tracking.tracker"):
        late = tr.update(10 + 3.5 * DT, [Det(50 + 3.5, 50), Det(200, 200)])
    assert late == before  # the tracks as they were: no birth, no correction, no miss
    assert (tr.out_of_order, tr.resets, tr.last_stamp) == (1, 0, pytest.approx(10.5))
    assert "out of order" in caplog.text and "time went backwards" not in caplog.text
    (track,) = tr.update(10 + 6 * DT, [Det(56, 50)])
    assert (track.id, track.state, track.hits, track.misses) == (1, TrackState.CONFIRMED, 7, 0)


def test_a_step_back_of_at_most_the_restart_threshold_is_out_of_order_beyond_it_a_reset():
    from irstd_ros.tracking import STREAM_RESTART_S

    tr = Tracker()
    tr.update(10.0, [Det(50, 50)])
    tr.update(10.0 + STREAM_RESTART_S, [Det(50, 50)])
    (track,) = tr.update(10.0, [Det(50, 50)])  # exactly the threshold back: out of order
    assert track.id == 1 and (tr.out_of_order, tr.resets) == (1, 0)
    (track,) = tr.update(9.99, [Det(50, 50)])  # further: time went back
    assert track.id == 2 and (tr.out_of_order, tr.resets) == (1, 1)


def test_frames_out_of_order_are_warned_at_most_once_a_period():
    from irstd_ros.tracking.tracker import OUT_OF_ORDER_WARN_S

    warnings: list[str] = []

    class Noted:
        def warning(self, text: str) -> None:
            warnings.append(text)

    now = [100.0]
    tr = Tracker(logger=Noted(), clock=lambda: now[0])
    tr.update(10.0, [Det(50, 50)])
    for k in range(1, 6):  # every other frame late: 10.2, 10.1, 10.4, 10.3, ...
        tr.update(10.0 + 2 * k * DT, [Det(50, 50)])
        tr.update(10.0 + (2 * k - 1) * DT, [Det(50, 50)])
        now[0] += 0.1
    assert tr.out_of_order == 5 and len(warnings) == 1
    assert "1 such frames so far" in warnings[0]
    now[0] += OUT_OF_ORDER_WARN_S
    tr.update(10.0 + 10 * DT - 0.05, [Det(50, 50)])
    assert tr.out_of_order == 6 and len(warnings) == 2 and "6 such frames" in warnings[1]


def test_the_tracker_says_whether_and_why_it_skipped_the_latest_frame():
    """``last_skip``: the node's pipeline inferred it from three counters' changes."""
    tr = Tracker()
    said = []
    for stamp in (10.0, 10.1, 10.1, 10.05, 10.2, 8.0):  # repeated, out of order, a reset
        tr.update(stamp, [Det(50, 50)])
        said.append(tr.last_skip)
    assert said == [None, None, "repeated", "out_of_order", None, None]
    with pytest.raises(ValueError):  # refused: the tracker unchanged, this too
        tr.update(8.0, [Det(float("nan"), 50)])
    tr.update(8.0, [Det(50, 50)])
    assert tr.last_skip == "repeated"
    with pytest.raises(ValueError):
        tr.update(8.1, [Det(float("nan"), 50)])
    assert tr.last_skip == "repeated"


def test_a_velocity_is_known_from_the_second_detection_with_its_std():
    """A track born this frame, or detected once (coasting too), has vx = vy = 0 meaning
    "not known", not "stationary": ``has_velocity`` says which, ``velocity_std`` how well."""
    cfg = TrackerConfig(confirm_m=1, init_speed=30.0)
    tr = Tracker(cfg)
    (born,) = tr.update(0.0, [Det(50, 50)])
    assert born.confirmed and not born.has_velocity and (born.vx, born.vy) == (0.0, 0.0)
    assert born.velocity_std == pytest.approx(cfg.init_speed)
    (coasting,) = tr.update(DT, [])
    assert coasting.state is TrackState.COASTING and not coasting.has_velocity
    assert coasting.velocity_std > cfg.init_speed  # grows while it coasts
    tr = Tracker(cfg)
    tr.update(0.0, [Det(50, 50)])
    (track,) = tr.update(DT, [Det(52, 50)])
    assert track.has_velocity and track.vx > 0
    assert track.velocity_std < cfg.init_speed
    vxx, vyy, _ = track.velocity_cov
    assert track.velocity_std == pytest.approx(np.sqrt(max(vxx, vyy)))


def test_same_stamp_twice_is_harmless():
    tr = Tracker()
    for i in range(5):
        tr.update(i * DT, [Det(50 + i, 50)])
    (track,) = tr.update(4 * DT, [Det(54, 50)])
    assert track.id == 1 and np.isfinite([track.x, track.vx]).all() and tr.resets == 0


def test_a_frame_delivered_twice_counts_once_for_confirmation_and_in_the_filter():
    """Each frame delivered twice (same stamp): the second copy was another frame, so a
    2-frame flicker had 4 hits in 2 instants and was confirmed under 4-of-6, and the
    filter took one measurement twice (position variance 0.47 px² after 30 frames
    instead of 0.87: overconfident). The same instant is taken once: the tracks are the
    same as without the copies, frame after frame."""
    rng = np.random.default_rng(5)
    frames = [(i * DT, [Det(100 + 20 * i * DT + n, 50 - n)]) for i, n in
              enumerate(rng.normal(0, 0.3, 30))]
    once, twice = Tracker(), Tracker()
    for stamp, dets in frames:
        expected = once.update(stamp, dets)
        first = twice.update(stamp, dets)
        again = twice.update(stamp, dets)
        assert first == again == expected  # ids, states, hits, filter, covariance all equal
    (track,) = expected
    assert track.hits == 30 and twice.repeated_stamps == 30
    assert track.position_cov[0] == pytest.approx(once._p[0, 0, 0]) and track.position_cov[0] > 0.8
    flicker = Tracker()  # the default 4-of-6
    for i in range(2):
        for _ in range(2):
            tracks = flicker.update(i * DT, [Det(20, 20)])
    assert [(t.hits, t.state) for t in tracks] == [(2, TrackState.TENTATIVE)]
    for i in range(2, 6):  # the flicker ends: deleted once 4 of 6 is out of reach
        tracks = flicker.update(i * DT, [])
    assert tracks == [] and flicker.repeated_stamps == 2


def test_a_repeated_stamp_uses_none_of_its_detections():
    """Another frame at the same instant (a duplicate with other detections, a driver's
    coarse stamps) is not tracked either: no birth, no correction, no miss."""
    tr = Tracker()
    for i in range(3):
        tr.update(i * DT, [Det(50 + i, 50)])
    before = tr.tracks()
    assert tr.update(2 * DT, [Det(80, 80), Det(53, 51)]) == before
    assert tr.update(2 * DT, []) == before and tr.repeated_stamps == 2


def test_a_camera_whose_stamps_never_advance_is_counted_and_warned_once_a_stretch(caplog):
    """Every frame with one stamp (a broken driver; the node times such frames by their
    arrival): the tracks stand still, not tracked, and that is said, once a stretch of
    3 frames or more; a stamp repeated once (a duplicate delivery) is only counted."""
    tr = Tracker()
    with caplog.at_level(logging.WARNING, logger="irstd_ros.tracking.tracker"):
        tr.update(1.0, [Det(50, 50)])
        tr.update(1.0, [Det(50, 50)])  # repeated once: counted, not warned
        assert tr.repeated_stamps == 1 and not caplog.records
        for _ in range(20):
            tracks = tr.update(1.1, [Det(50, 50)])
    assert tr.repeated_stamps == 20
    assert len(caplog.records) == 1, caplog.text
    assert "3 frames in a row stamped 1.100000 s" in caplog.text and "not tracked" in caplog.text
    assert [(t.id, t.hits, t.state) for t in tracks] == [(1, 2, TrackState.TENTATIVE)]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="irstd_ros.tracking.tracker"):
        for i in range(1, 4):  # the stamps advance again: the track goes on and is confirmed
            tracks = tr.update(1.1 + i * DT, [Det(50, 50)])
        assert [(t.id, t.hits, t.state) for t in tracks] == [(1, 5, TrackState.CONFIRMED)]
        for _ in range(2):  # another stretch of 3 frames at 1.1 + 3 DT is said again
            tr.update(1.1 + 3 * DT, [Det(50, 50)])
    assert len(caplog.records) == 1 and tr.repeated_stamps == 22


@pytest.mark.parametrize(
    "x0, y0, vx, vy", [(30, 50, -100, 0), (169, 50, 100, 0), (100, 30, 0, -100), (100, 69, 0, 100)]
)
def test_tracks_leaving_the_image_are_deleted(x0, y0, vx, vy):
    """Through each of the four sides of a 100x200 (height x width) image."""
    tr = Tracker(TrackerConfig(max_coast_s=5.0, image_margin_px=5.0))
    for i in range(6):
        tracks = tr.update(i * DT, [moving(x0, y0, vx, vy, i * DT)], image_size=(100, 200))
    assert len(tracks) == 1  # born at its last detection, 20 px beyond the side
    assert tr.update(6 * DT, [], image_size=(100, 200)) == []  # beyond the margin at once


def test_box_and_score_follow_the_detections():
    tr = Tracker()
    for i in range(8):
        (track,) = tr.update(i * DT, [Det(50, 50, score=0.8, width=5, height=2)])
    assert track.width == pytest.approx(5) and track.height == pytest.approx(2)
    assert track.score == pytest.approx(0.8)
    assert track.box == (track.x, track.y, track.width, track.height)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"confirm_m": 4, "confirm_n": 3}, "confirm_m <= confirm_n, got 4, 3"),
        ({"confirm_m": 0}, "1 <= confirm_m"),
        ({"gate_px": 0.0}, "gate_px must be > 0, got 0.0"),
        ({"gate_px": float("nan")}, "gate_px must be > 0, got nan"),
        ({"max_coast_s": -0.5}, "max_coast_s must be >= 0, got -0.5"),
        ({"accel_noise": 0.0}, "accel_noise must be > 0, got 0.0"),
        ({"meas_noise": -1.0}, "meas_noise must be > 0, got -1.0"),
        ({"init_speed": float("nan")}, "init_speed must be > 0, got nan"),
    ],
)
def test_invalid_config_is_refused_with_a_config_error(change, message):
    """The project's narrow error (a ValueError too), naming the setting and its value,
    from the constructor and from configure, which keeps the old settings."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        Tracker(TrackerConfig(**change))
    tr = Tracker()
    with pytest.raises(ConfigError, match=re.escape(message)):
        tr.configure(TrackerConfig(**change))
    assert tr.config == TrackerConfig()


def test_a_dim_target_seen_only_as_candidates_is_confirmed_over_frames():
    """Low-SNR confirmation: candidates count for M-of-N like detections."""
    tr = Tracker(TrackerConfig(confirm_m=3, confirm_n=5))
    states = []
    for i in range(8):
        t = i * DT
        dim = moving(200, 100, 15.0, 5.0, t)
        tracks = tr.update(t, [], candidates=[Det(dim.centroid_x, dim.centroid_y, score=0.3)])
        states.append([tk.state for tk in tracks])
    assert states[1] == [TrackState.TENTATIVE] and states[2] == [TrackState.CONFIRMED]
    (track,) = tracks
    assert track.hits == 8 and track.score == pytest.approx(0.3)
    assert track.vx == pytest.approx(15.0, abs=1.5)


def test_isolated_sub_threshold_noise_is_never_confirmed():
    tr = Tracker(TrackerConfig(confirm_m=3, confirm_n=5))
    rng = np.random.default_rng(3)
    for i in range(50):
        noise = [Det(*rng.uniform(0, 600, 2), score=0.25) for _ in range(5)]
        assert not confirmed(tr.update(i * DT, [], candidates=noise))
    assert len(tr) <= 5 * 5


def test_detections_go_to_tracks_before_candidates():
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1))
    tr.update(0.0, [Det(100, 100)])
    # a candidate right at the prediction, the detection 3 px away: the track takes the
    # detection, the candidate starts a track of its own
    tracks = tr.update(DT, [Det(103, 100)], candidates=[Det(100, 100, score=0.2)])
    by_id = {t.id: t for t in tracks}
    assert by_id[1].score == pytest.approx(0.9) and by_id[1].x > 101
    assert by_id[2].score == pytest.approx(0.2)
    # a track that misses its detection keeps going on a candidate (no coasting)
    tracks = tr.update(2 * DT, [], candidates=[Det(106, 100, score=0.3)])
    assert {t.id: t.state for t in tracks}[1] is TrackState.CONFIRMED


def _merging_pair(t: float) -> tuple[np.ndarray, np.ndarray, list[Det]]:
    """Two extended targets crossing at a shallow angle (closest at t = 2 s): while less
    than 7 px apart the detector sees one component, centred between them and covering
    both (the 0.3 model on the generated sky sequence's crossing pair)."""
    a = np.array([130.0, 130.0]) + np.array([15.0, 16.0]) * (t - 2.0)
    b = np.array([130.0, 130.0]) + np.array([-1.0, 5.0]) * (t - 2.0)
    d = a - b
    if np.hypot(*d) < 7.0:
        m = (a + b) / 2
        return a, b, [Det(m[0], m[1], 1.0, 5 + abs(d[0]), 6 + abs(d[1]))]
    return a, b, [Det(a[0], a[1], 1.0, 5, 6), Det(b[0], b[1], 1.0, 4, 6)]


def _on(track, p) -> bool:
    return bool(np.hypot(track.x - p[0], track.y - p[1]) < 2.0)


def test_targets_merged_into_one_component_while_crossing_keep_their_ids():
    """The merged component goes to one track; the other is corrected by it (a merge)
    instead of coasting with a widening gate onto a sub-threshold blip 10 px away, which
    used to end its track (a new id for its target once the two separated)."""
    tr = Tracker()
    for i in range(40):
        t = i * DT
        a, b, dets = _merging_pair(t)
        blip = []
        if len(dets) == 1 and t > 2.0:
            blip = [Det(a[0] + 1.5, a[1] + 10.0, score=0.4, width=1, height=2)]
        tracks = confirmed(tr.update(t, dets, candidates=blip))
        if i == 10:
            start = {k.id: "a" if _on(k, a) else "b" for k in tracks}
    end = {k.id: "a" if _on(k, a) else "b" if _on(k, b) else "?" for k in tracks}
    assert start == end == {1: "a", 2: "b"}


def test_a_large_component_moves_a_track_less_than_a_point_does():
    """A detection's centroid noise grows with its box (EXTENT_VARIANCE)."""
    moved = []
    for size in (1, 12):
        tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1))
        for i in range(10):
            tr.update(i * DT, [Det(100.0, 100.0, width=1, height=1)])
        (track,) = tr.update(10 * DT, [Det(104.0, 100.0, width=size, height=size)])
        moved.append(track.x - 100.0)
    assert moved[0] > 2.0 and moved[1] < 0.5 * moved[0]


def test_a_duplicate_track_on_another_tracks_target_is_not_kept_alive_by_merges():
    """A merge is not a hit: a confirmed track whose only detection is held by another
    track coasts and is deleted after max_coast_s."""
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1, max_coast_s=0.5))
    tr.update(0.0, [Det(100.0, 100.0, width=6, height=6), Det(102.0, 100.0)])
    ids = []
    for i in range(1, 12):
        tracks = tr.update(i * DT, [Det(100.0, 100.0, width=6, height=6)])
        ids.append({t.id: t.state for t in tracks})
    assert ids[0] == {1: TrackState.CONFIRMED, 2: TrackState.COASTING}
    assert ids[-1] == {1: TrackState.CONFIRMED}


def test_timing_at_50_targets_is_printed():
    """Not a timed assertion: the per-frame cost at 50 targets is printed (pytest -s)."""
    tr = Tracker()
    rng = np.random.default_rng(2)
    start = rng.uniform(50, 600, (50, 2))
    vel = rng.uniform(-20, 20, (50, 2))
    frames = 100
    elapsed = []
    for i in range(frames):
        t = i * DT
        pos = start + vel * t + rng.normal(0, 0.5, (50, 2))
        dets = [Det(x, y) for x, y in pos]
        t0 = time.perf_counter()
        tracks = tr.update(t, dets)
        elapsed.append(time.perf_counter() - t0)
    assert len(confirmed(tracks)) == 50
    ms = np.array(elapsed[10:]) * 1e3
    print(f"\ntracker, 50 targets: mean {ms.mean():.3f} ms, p50 {np.median(ms):.3f} ms, "
          f"max {ms.max():.3f} ms per frame")
    # the same, with 30 % of the targets seen only as gated components each frame, plus 10
    # random candidates and 10 random gated blobs (clutter) per frame
    elapsed = []
    for i in range(frames, 2 * frames):
        t = i * DT
        pos = start + vel * t + rng.normal(0, 0.5, (50, 2))
        faint = rng.random(50) < 0.3
        dets = [Det(x, y) for (x, y), f in zip(pos, faint) if not f]
        gated = [Det(x, y, score=0.1) for (x, y), f in zip(pos, faint) if f]
        gated += [Det(*rng.uniform(0, 640, 2), score=0.1) for _ in range(10)]
        cands = [Det(*rng.uniform(0, 640, 2), score=0.3) for _ in range(10)]
        t0 = time.perf_counter()
        tracks = tr.update(t, dets, candidates=cands, gated=gated)
        elapsed.append(time.perf_counter() - t0)
    assert len([k for k in confirmed(tracks) if k.id <= 50]) == 50
    ms = np.array(elapsed) * 1e3
    print(f"tracker, 50 targets, 30 % gated + 20 clutter: mean {ms.mean():.3f} ms, "
          f"p50 {np.median(ms):.3f} ms, max {ms.max():.3f} ms per frame")


def _confirmed_track(tr: Tracker, frames: int, vx: float = 20.0) -> float:
    """Feed a target moving at ``vx`` px/s from (100, 100) for ``frames`` frames; the last
    stamp."""
    for i in range(frames):
        tr.update(i * DT, [moving(100, 100, vx, 0, i * DT)])
    return (frames - 1) * DT


def test_a_dim_target_seen_only_gated_keeps_its_track_and_id():
    """Gated low threshold: below the candidate threshold, inside a confirmed track's gate,
    the target keeps its track (no coasting, same id); without the gated components the
    same track coasts and ends after max_coast_s."""
    for use_gated in (True, False):
        tr = Tracker(TrackerConfig(max_coast_s=1.0, max_coast_long_s=0.0))
        _confirmed_track(tr, 10)
        for i in range(10, 35):  # 2.5 s with nothing above the candidate threshold
            t = i * DT
            dim = moving(100, 100, 20, 0, t)
            faint = [Det(dim.centroid_x, dim.centroid_y, score=0.08)]
            tracks = tr.update(t, [], gated=faint if use_gated else ())
        if use_gated:
            (track,) = tracks
            assert track.id == 1 and track.state is TrackState.CONFIRMED and track.hits == 35
            assert track.x == pytest.approx(100 + 20 * 3.4, abs=1.0)
        else:
            assert tracks == []


def test_a_gated_blob_outside_any_gate_starts_nothing():
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1))
    for i in range(20):  # the same faint blob, persistent: never a track of its own
        assert tr.update(i * DT, [], gated=[Det(300, 300, score=0.1)]) == []
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1))
    _confirmed_track(tr, 5)
    # a confirmed track at ~(100, 100); the blob 11 px off its prediction is outside the
    # 10 px gate: neither taken nor a new track
    tracks = tr.update(0.5, [], gated=[Det(100 + 20 * 0.5, 111, score=0.1)])
    assert [(t.id, t.state) for t in tracks] == [(1, TrackState.COASTING)]


def test_gated_components_feed_only_confirmed_tracks_after_detections_and_candidates():
    tr = Tracker(TrackerConfig(confirm_m=4, confirm_n=6))
    tr.update(0.0, [Det(50, 50)])
    for i in range(1, 6):  # a tentative track is not helped by gated components
        tracks = tr.update(i * DT, [], gated=[Det(50, 50, score=0.1)])
    assert tracks == []
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1))
    tr.update(0.0, [Det(100, 100)])
    # a gated blob right at the prediction, a candidate 2 px away: the candidate wins
    cand, faint = Det(102, 100, score=0.3), Det(100, 100, score=0.1)
    (track,) = tr.update(DT, [], candidates=[cand], gated=[faint])
    assert track.score == pytest.approx(0.9 + 0.3 * (0.3 - 0.9)) and track.x > 100.5


def test_a_track_held_long_coasts_longer_and_keeps_its_id():
    """Coast scaled by quality: held 2.5 s, a 2 s gap is bridged (max_coast_s 1 s); held
    0.5 s, the same gap ends the track."""
    for frames, survives in ((26, True), (6, False)):
        tr = Tracker(TrackerConfig(max_coast_s=1.0, max_coast_long_s=3.0))
        last = _confirmed_track(tr, frames, vx=10.0)
        for i in range(1, 21):  # 2.0 s without anything
            tracks = tr.update(last + i * DT, [])
        t = last + 2.1
        tracks = tr.update(t, [moving(100, 100, 10.0, 0, t)])
        assert ([k.id for k in tracks] == [1]) is survives
        if survives:
            assert tracks[0].state is TrackState.CONFIRMED


def test_long_coast_is_capped_and_does_not_widen_the_gate():
    tr = Tracker(TrackerConfig(max_coast_s=1.0, max_coast_long_s=2.0))
    last = _confirmed_track(tr, 40, vx=10.0)  # held 3.9 s: may coast 2.0 s, not 3.9
    for i in range(1, 16):
        (track,) = tr.update(last + i * DT, [])
    assert track.position_std > 10.0  # 3 sigmas would be a gate of 30+ px
    t = last + 1.6
    pred = 100 + 10.0 * t
    tracks = tr.update(t, [Det(pred + 15.0, 100.0)])  # 15 px off: outside the 10 px gate
    assert {k.id: k.state for k in tracks} == {1: TrackState.COASTING, 2: TrackState.TENTATIVE}
    for i in range(1, 6):
        tracks = tr.update(t + i * DT, [])
    assert [k.id for k in tracks if k.id == 1] == []  # gone after 2.0 s


def test_a_track_predicted_outside_the_image_coasts_only_max_coast_s():
    size = (100, 100)
    tr = Tracker(TrackerConfig(max_coast_s=0.5, max_coast_long_s=3.0, image_margin_px=50.0))
    for i in range(30):  # held 2.9 s, leaving through the top at 5 px/s
        t = i * DT
        tr.update(t, [Det(50.0, 14.5 - 5.0 * t)], image_size=size)
    alive = []
    for i in range(30, 45):
        alive.append(bool(tr.update(i * DT, [], image_size=size)))
    # predicted above y = 0 from t = 2.9 s on: deleted 0.5 s after its last detection
    assert alive[:5] == [True] * 5 and not any(alive[5:])


def test_invalid_coast_config_is_refused():
    with pytest.raises(ConfigError, match="max_coast_long_s"):
        Tracker(TrackerConfig(max_coast_long_s=-1.0))


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "where, bad, message",
    [
        ("detections", Det(NAN, 50), "detection 1 has a non-finite field"),
        ("detections", Det(50, INF), "detection 1 has a non-finite field"),
        ("detections", Det(20, 20, width=NAN), "detection 1 has a non-finite field"),
        ("detections", Det(20, 20, height=INF), "detection 1 has a non-finite field"),
        ("detections", Det(20, 20, score=NAN), "detection 1 has a non-finite field"),
        ("candidates", Det(NAN, 50), "candidate 0 has a non-finite field"),
        ("gated", Det(50, NAN), "gated component 0 has a non-finite field"),
        # a negative width was kept and published (a track of width -5)
        ("detections", Det(20, 20, width=-5), "detection 1 has a negative size"),
        ("candidates", Det(20, 20, height=-1), "candidate 0 has a negative size"),
    ],
)
def test_a_non_finite_detection_is_refused_and_the_tracker_is_unchanged(where, bad, message):
    """A NaN/inf size crashed scipy's assignment ("invalid numeric entries"); a NaN/inf
    centroid started a track at NaN (published as confirmed with confirm_m 1)."""
    tr = Tracker(TrackerConfig(confirm_m=1, confirm_n=1))
    for i in range(3):
        tr.update(i * DT, [Det(10 + i, 10)])
    before = tr.tracks()
    frame = {"detections": [Det(13, 10)], "candidates": (), "gated": ()}
    frame[where] = [*frame[where], bad]
    with pytest.raises(ValueError, match=message):
        tr.update(3 * DT, frame.pop("detections"), image_size=(100, 100), **frame)
    assert tr.tracks() == before and tr.last_stamp == pytest.approx(2 * DT)
    (track,) = tr.update(3 * DT, [Det(13, 10)])
    assert track.id == 1 and np.isfinite([track.x, track.y, track.vx, track.vy]).all()


@pytest.mark.parametrize("stamp", [NAN, INF])
def test_a_non_finite_stamp_is_refused(stamp):
    """It dropped every track silently (no warning, no reset counted)."""
    tr = Tracker()
    for i in range(6):
        tr.update(i * DT, [Det(10 + i, 10)])
    with pytest.raises(ValueError, match="stamp is not finite"):
        tr.update(stamp, [Det(16, 10)])
    (track,) = tr.update(6 * DT, [Det(16, 10)])
    assert track.id == 1 and track.confirmed


def test_track_ids_stay_within_uint32_and_skip_live_ones_when_they_wrap():
    """Track.msg's id is a uint32: id 2³² went out as 0 and 2³² + 5 as 5, a live track's id
    on a node that ran long enough. Ids wrap to 1 after 2³² - 1, skipping live tracks'."""
    tr = Tracker(TrackerConfig(max_coast_s=10.0), first_id=1)
    tr.update(0.0, [Det(50, 50)])  # id 1, kept alive
    tr._next_id = 2**32 - 2
    tracks = tr.update(DT, [Det(50, 50), *(Det(150 + 100 * i, 50) for i in range(4))])
    assert [t.id for t in tracks] == [1, 2**32 - 2, 2**32 - 1, 2, 3]
    assert tr.next_id == 4


@pytest.mark.parametrize(("speed", "init_speed", "one_track"), [
    (80.0, 30.0, True),  # 8 px a frame: inside the 10 px gate
    (150.0, 30.0, False),  # 15 px a frame: a new tentative track each frame, never confirmed
    (150.0, 100.0, True),  # the expected speed raised (tracking.init_speed): one track
])
def test_a_fast_target_needs_the_expected_speed_raised(speed, init_speed, one_track):
    """A tentative track's second detection must lie within about max(gate_px,
    3 * init_speed * dt) of its first (docs/tracking.md); at 10 Hz a 150 px/s target is
    tracked only with init_speed raised."""
    tr = Tracker(TrackerConfig(init_speed=init_speed))
    tracks = run(tr, [(i * DT, [moving(50, 200, speed, 0.0, i * DT)]) for i in range(12)])[-1]
    ids = {t.id for t in tracks}
    if one_track:
        assert len(tracks) == 1 and tracks[0].confirmed and tracks[0].id == 1
    else:
        assert not confirmed(tracks) and max(ids) >= 10
