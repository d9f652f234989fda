"""One message builder for rclpy and rosbags: the same fields either way."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from std_msgs.msg import Header  # noqa: E402

from irstd_ros.bags.typestore import typestore  # noqa: E402
from irstd_ros.core.constants import CLASS_ID  # noqa: E402
from irstd_ros.core.targets import Target  # noqa: E402
from irstd_ros.ros.messages import (  # noqa: E402
    UNKNOWN_VARIANCE,
    detections_array,
    rclpy_types,
    targets_array,
    track_covariance,
    track_detections_array,
)
from irstd_ros.tracking import Tracker  # noqa: E402

pytestmark = pytest.mark.ros

TARGET = Target(id=3, score=0.9, x=10, y=12, width=3, height=2, area=5, centroid_x=11.2,
                centroid_y=12.4, peak_intensity=200.0, mean_intensity=150.0,
                local_contrast=40.0, snr=12.5)


def _detection_fields(det):
    return (det.id, det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x,
            det.bbox.size_y, det.results[0].hypothesis.class_id, det.results[0].hypothesis.score,
            det.results[0].pose.pose.position.x, det.results[0].pose.pose.position.y)


def test_rclpy_and_rosbags_messages_agree():
    store = typestore()
    bag_header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam")
    live = detections_array(rclpy_types(), Header(frame_id="cam"), [TARGET])
    bag = detections_array(store.types, bag_header, [TARGET])
    assert _detection_fields(live.detections[0]) == _detection_fields(bag.detections[0])
    assert _detection_fields(live.detections[0]) == ("3", 11.0, 12.5, 3.0, 2.0, CLASS_ID, 0.9, 11.2, 12.4)
    live_t = targets_array(rclpy_types(), Header(frame_id="cam"), [TARGET]).targets[0]
    bag_t = targets_array(store.types, bag_header, [TARGET]).targets[0]
    for name in ("id", "area", "snr", "centroid_x", "peak_intensity"):
        assert getattr(live_t, name) == pytest.approx(getattr(bag_t, name))


def test_target_fields_follow_the_message_types_not_the_values_types():
    import dataclasses

    import numpy as np

    store = typestore()
    bag_header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam")
    # a numpy float32 score (no Python float) was int()-ed to 0; an int intensity stayed int
    odd = dataclasses.replace(TARGET, score=np.float32(0.75), peak_intensity=200, snr=np.float32(2.5))
    for types, header in ((rclpy_types(), Header(frame_id="cam")), (store.types, bag_header)):
        t = targets_array(types, header, [odd]).targets[0]
        assert (t.score, t.peak_intensity, t.snr) == (0.75, 200.0, 2.5)
        assert type(t.score) is float and type(t.peak_intensity) is float
        assert type(t.id) is int and type(t.area) is int


def test_a_track_s_pose_carries_its_filter_s_position_covariance():
    """The tracks' pose covariance was all zeros, which a consumer fusing poses reads as
    exact: x, y and their covariance are the filter's (px²), the unestimated z and
    rotations a very large variance (no information), the rest 0; rclpy and rosbags
    alike. A detection's stays all zeros ("covariance unknown")."""
    import numpy as np
    from _support.tracking import Det

    tr = Tracker()
    for i in range(8):  # a wide blob: its centroid (so the track) is less certain in x
        tracks = tr.update(i * 0.1, [Det(50 + 3 * i, 40 + 2 * i, width=9, height=1)])
    (track,) = tracks
    vxx, vyy, cxy = track.position_cov  # cxy: 0, the filter's axes are independent
    assert vxx > vyy > 0 and track.position_std == pytest.approx(np.sqrt(vxx))
    expected = np.zeros((6, 6))
    expected[:2, :2] = [[vxx, cxy], [cxy, vyy]]
    expected[[2, 3, 4, 5], [2, 3, 4, 5]] = UNKNOWN_VARIANCE
    store = typestore()
    bag_header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam")
    for types, header in ((rclpy_types(), Header(frame_id="cam")), (store.types, bag_header)):
        (det,) = track_detections_array(types, header, tracks).detections
        cov = np.asarray(det.results[0].pose.covariance, dtype=float).reshape(6, 6)
        np.testing.assert_array_equal(cov, expected)
        assert np.all(np.linalg.eigvalsh(cov) > 0)  # invertible, positive definite
        (plain,) = detections_array(types, header, [TARGET]).detections
        assert not np.asarray(plain.results[0].pose.covariance).any()
    cov = track_covariance((4.0, 2.0, 1.5)).reshape(6, 6)  # row-major: x, y, z, rot x, y, z
    assert (cov[0, 0], cov[1, 1], cov[0, 1], cov[1, 0], cov[2, 2]) == (4.0, 2.0, 1.5, 1.5, UNKNOWN_VARIANCE)


def test_a_coasting_track_s_detection_is_stamped_with_its_last_detection_s_frame():
    """On ``tracks`` a coasting track was a Detection2D like a detected one, stamped with
    the array: its own header now carries its last detection's frame stamp (older than the
    array's), a detected track's the array's; ``coasting=False`` leaves coasting ones out.
    rclpy and rosbags alike."""
    from _support.tracking import Det

    from irstd_ros.core.stamps import stamp_ns
    from irstd_ros.tracking import TrackerConfig, TrackState

    tr = Tracker(TrackerConfig(confirm_m=1))
    tr.update(0.0, [Det(10, 10), Det(40, 40)])
    tracks = tr.update(0.1, [Det(10, 10)])  # the second target missed: coasting
    assert [t.state for t in tracks] == [TrackState.CONFIRMED, TrackState.COASTING]
    first, now = 1_000_000_000, 1_100_000_000
    last = {1: now, 2: first}
    store = typestore()
    bag_header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=100_000_000),
        frame_id="cam")
    live_header = Header(frame_id="cam")
    live_header.stamp.sec, live_header.stamp.nanosec = 1, 100_000_000
    for types, header in ((rclpy_types(), live_header), (store.types, bag_header)):
        msg = track_detections_array(types, header, tracks, last)
        assert [d.id for d in msg.detections] == ["1", "2"]
        assert [stamp_ns(d.header) for d in msg.detections] == [now, first]
        assert [d.header.frame_id for d in msg.detections] == ["cam", "cam"]
        assert stamp_ns(msg.header) == now
        held = track_detections_array(types, header, tracks, last, coasting=False)
        assert [d.id for d in held.detections] == ["1"]
        plain = track_detections_array(types, header, tracks)  # no stamps known: the array's
        assert [stamp_ns(d.header) for d in plain.detections] == [now, now]


def test_the_bag_tools_load_no_tracker():
    """messages.py imported the tracker for one state check, so every bag tool (through
    irstd_ros.bags.io) loaded it and scipy.optimize: +0.14 s a command."""
    import subprocess
    import sys

    prefixes = ("irstd_ros.tracking", "scipy.optimize")
    loaded = f"sorted(m for m in sys.modules if m.startswith({prefixes!r}))"
    code = f"import sys, irstd_ros.bags.io; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_coasting_state_is_the_tracker_s():
    from irstd_ros.ros.messages import COASTING
    from irstd_ros.tracking import TrackState

    assert TrackState(COASTING) is TrackState.COASTING
