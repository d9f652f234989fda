"""Tracking in the node, with real rclpy in one process: a moving target keeps one track
id through dropped frames; bearings once camera_info arrives; tracking switched off and
on at run time. The network is replaced by the intensity backend (probability = scaled
intensity), as in ``test_node.py``."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import Harness as NodeHarness  # noqa: E402
from _support.node import IntensityBackend, make_detector  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from irstd_ros.checkpoint import CheckpointInfo  # noqa: E402
from irstd_ros.inference.detector import Detector  # noqa: E402
from irstd_ros.models import named_config  # noqa: E402
from irstd_ros.msg import Track, TrackArray  # noqa: E402
from irstd_ros.ros.conversions import array_to_image_fields  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402
from irstd_ros.tracking import CameraModel, TrackerConfig  # noqa: E402

pytestmark = pytest.mark.ros
H, W = 60, 80
FPS = 10.0
VX, VY = 25.0, 12.0  # px/s (still inside the frame at t = 2.4 s)
X0, Y0 = 10.0, 15.0
K = [100.0, 0.0, 39.5, 0.0, 100.0, 29.5, 0.0, 0.0, 1.0]
D = [-0.2, 0.05, 0.001, -0.001, 0.0]


def frame_at(t: float) -> np.ndarray:
    """A dark mono8 frame with a 3x3 bright target at its position at time t."""
    f = np.full((H, W), 20, np.uint8)
    cx, cy = int(round(X0 + VX * t)), int(round(Y0 + VY * t))
    f[cy - 1 : cy + 2, cx - 1 : cx + 2] = 250
    return f


def image_msg(arr: np.ndarray, stamp_s: float) -> Image:
    msg = Image()
    for k, v in array_to_image_fields(arr, "mono8").items():
        setattr(msg, k, v)
    ns = round(stamp_s * 1e9)
    msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    msg.header.frame_id = "ir_cam"
    return msg


class Harness(NodeHarness):
    """The node harness, also collecting tracks and track arrays; publishes camera_info."""

    def _subscribe(self) -> None:
        super()._subscribe()
        self.info_pub = self.peer.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=1))
        self.tracks: list[Detection2DArray] = []
        self.arrays: list[TrackArray] = []
        self.peer.create_subscription(Detection2DArray, "tracks", self.tracks.append, 10)
        self.peer.create_subscription(TrackArray, "target_tracks", self.arrays.append, 10)

    @property
    def dets(self) -> list[Detection2DArray]:
        return self.got["detections"]

    def send(self, t: float) -> None:  # type: ignore[override]
        """Publish the frame of time t and wait until the node answered it."""
        before = len(self.dets)
        self.pub.publish(image_msg(frame_at(t), 100.0 + t))
        self.spin_until(lambda: len(self.dets) > before)


@pytest.fixture
def harness(rclpy_context):
    det = Detector(IntensityBackend(), CheckpointInfo(named_config("tiny"), threshold=0.5))
    h = Harness(IrstdNode(detector=det))
    yield h
    h.close()


def test_a_moving_target_keeps_one_track_id_through_dropped_frames(harness):
    dropped = set(range(8, 14))  # 0.6 s without frames (< tracking.max_coast_s = 1 s)
    sent = [i for i in range(25) if i not in dropped]
    for i in sent:
        harness.send(i / FPS)
    harness.spin_until(lambda: len(harness.arrays) >= len(sent) and len(harness.tracks) >= len(sent))
    # tentative for its first M - 1 frames (M-of-N, the shipped default), then one
    # confirmed track throughout
    m_ = TrackerConfig().confirm_m
    assert [len(m.detections) for m in harness.tracks] == [0] * (m_ - 1) + [1] * (len(sent) - m_ + 1)
    assert {m.detections[0].id for m in harness.tracks[m_ - 1 :]} == {"1"}
    assert [m.tracks[0].state for m in harness.arrays[:m_]] == [Track.STATE_TENTATIVE] * (m_ - 1) + [
        Track.STATE_CONFIRMED
    ]
    last = harness.arrays[-1]
    assert [t.id for t in last.tracks] == [1]
    (track,) = last.tracks
    assert track.state == Track.STATE_CONFIRMED and track.hits == len(sent)
    assert track.age == pytest.approx(24 / FPS, abs=1e-6)
    assert (track.vx, track.vy) == (pytest.approx(VX, abs=3.0), pytest.approx(VY, abs=3.0))
    assert track.has_bearing is False
    # headers are the frames' and the box follows the target
    m = harness.tracks[-1]
    assert (m.header.stamp.sec, m.header.frame_id) == (102, "ir_cam")
    box = m.detections[0].bbox
    assert box.center.position.x == pytest.approx(X0 + VX * 2.4, abs=1.0)
    assert (box.size_x, box.size_y) == (pytest.approx(3.0), pytest.approx(3.0))


def test_tracks_carry_bearings_once_camera_info_arrives(harness):
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob", k=K, d=D)
    harness.info_pub.publish(info)
    harness.spin_until(lambda: harness.node.camera is not None)
    for i in range(5):
        harness.send(i / FPS)
    harness.spin_until(lambda: len(harness.arrays) >= 5)
    (track,) = harness.arrays[-1].tracks
    assert track.has_bearing
    b = np.array([track.bearing.x, track.bearing.y, track.bearing.z])
    model = CameraModel(np.array(K).reshape(3, 3), tuple(D))
    assert np.allclose(b, model.bearing(track.x, track.y))
    assert b[0] < 0 and b[1] < 0 and np.linalg.norm(b) == pytest.approx(1.0)  # upper left
    rate = np.array([track.angular_rate.x, track.angular_rate.y, track.angular_rate.z])
    assert np.allclose(rate, model.angular_rate(track.x, track.y, track.vx, track.vy))
    assert np.linalg.norm(rate) > 0.1  # ~ 28 px/s over a 100 px focal length


def test_a_camera_info_of_another_image_size_gives_no_bearings(harness):
    """A camera_info for 2x larger images (e.g. the camera's own beside a resized image)
    would put every bearing off by a factor of about 2: none, counted, until it fits."""
    node = harness.node
    big = CameraInfo(width=2 * W, height=2 * H, distortion_model="plumb_bob",
                     k=[200.0, 0.0, 79.5, 0.0, 200.0, 59.5, 0.0, 0.0, 1.0], d=D)
    harness.info_pub.publish(big)
    harness.spin_until(lambda: node.camera is not None)
    for i in range(3):
        harness.send(i / FPS)
    harness.spin_until(lambda: len(harness.arrays) >= 3)
    assert all(not t.has_bearing for m in harness.arrays for t in m.tracks)
    assert node.stats.errors["camera_info_mismatch"] == 3
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert values["bearings"] == "False"
    # the same calibration binned 2x2 describes these frames: bearings again
    harness.info_pub.publish(CameraInfo(
        width=2 * W, height=2 * H, binning_x=2, binning_y=2, distortion_model="plumb_bob",
        k=big.k, d=D,
    ))
    harness.spin_until(lambda: node.pipeline.camera is not None and node.pipeline.camera.image_size == (H, W))
    harness.send(0.3)
    harness.spin_until(lambda: len(harness.arrays) >= 4)
    assert harness.arrays[-1].tracks and all(t.has_bearing for t in harness.arrays[-1].tracks)
    assert node.stats.errors["camera_info_mismatch"] == 3


def test_a_camera_info_of_another_frame_is_counted_and_used(harness):
    """Images of "ir_cam" with a camera_info of "other_cam": maybe a naming difference,
    maybe another camera's calibration; bearings stay, the difference is counted."""
    from std_msgs.msg import Header

    node = harness.node
    info = CameraInfo(header=Header(frame_id="other_cam"), width=W, height=H,
                      distortion_model="plumb_bob", k=K, d=D)
    harness.info_pub.publish(info)
    harness.spin_until(lambda: node.camera is not None)
    for i in range(3):
        harness.send(i / FPS)
    harness.spin_until(lambda: len(harness.arrays) >= 3)
    assert harness.arrays[-1].tracks and all(t.has_bearing for t in harness.arrays[-1].tracks)
    assert node.stats.errors["camera_info_frame"] == 3
    info.header.frame_id = "ir_cam"  # the image's own: nothing to report
    harness.info_pub.publish(info)
    harness.spin_until(lambda: node.pipeline.camera is not None and node.pipeline.camera.frame_id == "ir_cam")
    harness.send(0.3)
    harness.spin_until(lambda: len(harness.arrays) >= 4)
    assert node.stats.errors["camera_info_frame"] == 3


def test_tracking_can_be_switched_off_and_on_at_run_time(harness):
    node = harness.node
    assert node.set_parameters([Parameter("tracking.enabled", value=False)])[0].successful
    harness.send(0.0)
    harness.spin_until(lambda: len(harness.dets) >= 1)
    for _ in range(5):
        harness.executor.spin_once(timeout_sec=0.02)
    assert harness.tracks == [] and harness.arrays == []
    assert node.set_parameters([Parameter("tracking.enabled", value=True)])[0].successful
    result = node.set_parameters([Parameter("tracking.confirm_m", value=9)])[0]
    assert not result.successful and "confirm_n" in result.reason
    assert node.set_parameters([Parameter("tracking.confirm_m", value=1)])[0].successful
    harness.send(0.1)
    harness.spin_until(lambda: len(harness.tracks) >= 1)
    assert [d.id for d in harness.tracks[-1].detections] == ["1"]  # M = 1: confirmed at once


def test_tracking_switched_off_and_on_between_two_frames_starts_afresh(harness):
    node = harness.node
    assert node.set_parameters([Parameter("tracking.confirm_m", value=1)])[0].successful
    harness.send(0.0)
    harness.spin_until(lambda: len(harness.arrays) >= 1)
    assert [t.id for t in harness.arrays[-1].tracks] == [1]
    for enabled in (False, True):  # no frame in between
        assert node.set_parameters([Parameter("tracking.enabled", value=enabled)])[0].successful
    harness.send(0.1)
    harness.spin_until(lambda: len(harness.arrays) >= 2)
    (track,) = harness.arrays[-1].tracks
    assert (track.id, track.hits, track.age) == (2, 1, 0.0)  # a new track, not track 1 going on


def dim_frame(t: float, noise_seed: int | None = None) -> np.ndarray:
    """A dark frame with a 3x3 target at probability ~0.35 (below the 0.5 threshold) at its
    position at time t, or, with ``noise_seed``, one such pixel somewhere new instead."""
    f = np.full((H, W), 20, np.uint8)
    if noise_seed is None:
        cx, cy = int(round(X0 + VX * t)), int(round(Y0 + VY * t))
        f[cy - 1 : cy + 2, cx - 1 : cx + 2] = 90
    else:
        y, x = np.random.default_rng(noise_seed).integers((2, 2), (H - 2, W - 2))
        f[y, x] = 90
    return f


def send_frames(harness: Harness, frames: list[np.ndarray], start_s: float = 100.0) -> None:
    for i, f in enumerate(frames):
        before = len(harness.dets)
        harness.pub.publish(image_msg(f, start_s + i / FPS))
        harness.spin_until(lambda before=before: len(harness.dets) > before)
    harness.spin_until(lambda: len(harness.tracks) >= len(frames))


def test_sub_threshold_candidates_confirm_a_dim_target_as_a_track_only(harness):
    node = harness.node
    assert node.set_parameters([Parameter("tracking.candidate_threshold", value=0.3)])[0].successful
    send_frames(harness, [dim_frame(i / FPS) for i in range(6)])
    assert all(not m.detections for m in harness.dets)  # never a detection
    m_ = TrackerConfig().confirm_m
    assert [len(m.detections) for m in harness.tracks] == [0] * (m_ - 1) + [1] * (7 - m_)
    assert {m.detections[0].id for m in harness.tracks[m_ - 1 :]} == {"1"}
    box = harness.tracks[-1].detections[0].bbox
    assert box.center.position.x == pytest.approx(X0 + VX * 0.5, abs=1.0)


def test_tracker_thresholds_default_to_the_checkpoints_own(rclpy_context):
    det = make_detector(candidate_threshold=0.53, gated_threshold=0.41)
    h = Harness(IrstdNode(detector=det))
    try:
        assert (det.candidate_threshold, det.gated_threshold) == (0.53, 0.41)
        clash = h.node.set_parameters([Parameter("tracking.candidate_threshold", value=0.3)])[0]
        assert not clash.successful and "0.41" in clash.reason
        assert h.node.set_parameters([Parameter("tracking.candidate_threshold", value=0.6)])[0].successful
        assert (det.candidate_threshold, det.gated_threshold) == (0.6, 0.41)
    finally:
        h.close()


def test_isolated_sub_threshold_noise_and_candidates_off_give_no_track(harness):
    node = harness.node
    # off: the dim target is never tracked
    assert node.set_parameters([Parameter("tracking.candidate_threshold", value=0.0)])[0].successful
    send_frames(harness, [dim_frame(i / FPS) for i in range(5)])
    assert all(not m.detections for m in harness.tracks)
    assert node.set_parameters([Parameter("tracking.candidate_threshold", value=0.3)])[0].successful
    harness.tracks.clear()
    send_frames(harness, [dim_frame(0.0, noise_seed=s) for s in range(10)], start_s=101.0)
    assert all(not m.detections for m in harness.tracks)
    assert all(not m.detections for m in harness.dets)


def faint_frame_at(t: float) -> np.ndarray:
    """frame_at, the target at probability ~0.16: below the 0.2 candidate threshold, above
    a 0.1 gated threshold (the background is at ~0.08)."""
    f = frame_at(t)
    f[f > 20] = 40
    return f


@pytest.mark.parametrize("gated", [0.1, 0.0])
def test_a_target_fading_below_the_candidates_keeps_its_track_only_when_gated(harness, gated):
    node = harness.node
    params = [
        Parameter("tracking.gated_threshold", value=gated),
        Parameter("tracking.max_coast_long_s", value=0.0),  # coasting alone: max_coast_s
    ]
    assert all(r.successful for r in node.set_parameters(params))
    frames = [frame_at(i / FPS) for i in range(6)] + [faint_frame_at(i / FPS) for i in range(6, 20)]
    for i, f in enumerate(frames):
        before = len(harness.dets)
        harness.pub.publish(image_msg(f, 100.0 + i / FPS))
        harness.spin_until(lambda before=before: len(harness.dets) > before)
    harness.spin_until(lambda: len(harness.arrays) >= len(frames))
    assert all(not m.detections for m in harness.dets[6:])  # faint: never a detection
    if gated:
        (track,) = harness.arrays[-1].tracks
        assert track.id == 1 and track.state == Track.STATE_CONFIRMED and track.hits == 20
    else:  # coasting from 0.6 s, deleted after max_coast_s (1 s)
        assert harness.arrays[-1].tracks == []
