"""One message builder for rclpy and rosbags: the same fields either way."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from std_msgs.msg import Header  # noqa: E402

from irstd_ros.bags.typestore import typestore  # noqa: E402
from irstd_ros.core.constants import CLASS_ID  # noqa: E402
from irstd_ros.core.targets import Target  # noqa: E402
from irstd_ros.ros.messages import detections_array, rclpy_types, targets_array  # noqa: E402

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
