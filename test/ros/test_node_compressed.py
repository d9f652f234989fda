"""The node on image_transport's ``compressed`` stream (``input.transport`` compressed):
sensor_msgs/CompressedImage on ``<image>/compressed``, outputs as for the raw frame, the
header kept, bad frames counted by kind and skipped."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.compressed import encode, png_by_hand  # noqa: E402
from _support.node import (  # noqa: E402
    H,
    Harness,
    W,
    compressed_msg,
    frame_for,
    image_msg,
    make_detector,
)
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from irstd_ros.ros.lifecycle_node import IrstdLifecycleNode  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402

pytestmark = pytest.mark.ros

COMPRESSED = [Parameter("input.transport", value="compressed")]


def compressed_node(**kwargs) -> IrstdNode:
    return IrstdNode(detector=make_detector(), parameter_overrides=COMPRESSED, **kwargs)


def answer(h: Harness, msg) -> tuple:
    """The node's mask (bytes), detections and targets for ``msg``, with their headers."""
    h.send(msg, expect_answers=1)
    h.spin_until(lambda: h.got["mask"] and h.got["targets"])
    mask, dets, targets = (h.got[k][-1] for k in ("mask", "detections", "targets"))
    return (
        [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for m in (mask, dets, targets)],
        (mask.height, mask.width, mask.encoding, bytes(mask.data)),
        [(d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y,
          d.results[0].hypothesis.score) for d in dets.detections],
        [(t.x, t.y, t.width, t.height, t.area, t.score, t.centroid_x, t.centroid_y,
          t.peak_intensity, t.mean_intensity, t.local_contrast) for t in targets.targets],
    )


@pytest.mark.parametrize("encoding", ["mono16", "mono8", "rgb8"])
def test_a_png_frame_gives_exactly_the_raw_frames_outputs(rclpy_context, encoding):
    frame = frame_for(encoding)
    h = Harness(IrstdNode(detector=make_detector()))
    try:
        raw = answer(h, image_msg(frame, encoding, stamp=42))
    finally:
        h.close()
    h = Harness(compressed_node(), topic="image/compressed", msg_type=CompressedImage)
    try:
        assert h.node.sub.topic_name == "/image/compressed"
        assert h.node.sub.msg_type is CompressedImage
        png = answer(h, compressed_msg(encode(frame, "png"), f"{encoding}; png compressed {encoding}", stamp=42))
    finally:
        h.close()
    assert png == raw
    assert png[0] == [(42, 123, "ir_cam")] * 3 and len(png[2]) == 2


def test_bad_compressed_frames_are_counted_by_kind_and_the_next_is_answered(rclpy_context):
    h = Harness(compressed_node(), topic="image/compressed", msg_type=CompressedImage)
    try:
        good = png_by_hand(frame_for("mono16"))
        bad = [
            ("unsupported_format", compressed_msg(good, "16UC1; compressedDepth")),
            ("unsupported_format", compressed_msg(good, "h264")),
            ("undecodable", compressed_msg(b"\x89PNG not really", "mono16; png compressed mono16")),
            ("undecodable", compressed_msg(good[:60], "png")),
        ]
        bad.append(("too_large", compressed_msg(good, "png")))
        for n, (kind, msg) in enumerate(bad, 1):  # one at a time: the queue keeps the newest
            if kind == "too_large":
                h.node.set_parameters([Parameter("input.max_pixels", value=100)])
            h.send(msg)
            h.spin_until(lambda n=n: sum(h.node.stats.errors.values()) == n)
        assert h.node.stats.errors == {"unsupported_format": 2, "undecodable": 2, "too_large": 1}
        assert h.got["detections"] == [] and h.node.stats.processed == 0
        h.node.set_parameters([Parameter("input.max_pixels", value=1 << 24)])
        h.send(compressed_msg(good, "png", stamp=7), expect_answers=1)
        assert h.got["detections"][-1].header.stamp.sec == 7
    finally:
        h.close()


def test_the_compressed_topic_follows_a_remapped_image_topic(rclpy_context):
    node = compressed_node(cli_args=["--ros-args", "-r", "image:=/cam/image_raw"])
    try:  # as image_transport names it: the base topic remapped, then /compressed
        assert node.sub.topic_name == "/cam/image_raw/compressed"
    finally:
        node.close()
    node = IrstdNode(detector=make_detector(), cli_args=["--ros-args", "-r", "image:=/cam/image_raw"])
    try:
        assert node.sub.topic_name == "/cam/image_raw" and node.sub.msg_type is Image
    finally:
        node.close()


def test_an_unknown_transport_is_refused_at_start(rclpy_context):
    from irstd_ros.errors import IrstdError

    with pytest.raises(IrstdError, match="input.transport must be one of raw, compressed"):
        IrstdNode(detector=make_detector(), parameter_overrides=[Parameter("input.transport", value="theora")])


def test_the_lifecycle_node_subscribes_the_compressed_stream(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector, parameter_overrides=COMPRESSED)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    h = Harness(node, topic="image/compressed", msg_type=CompressedImage)
    try:
        assert node.sub.msg_type is CompressedImage and node.sub.topic_name == "/image/compressed"
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        h.send(compressed_msg(png_by_hand(frame_for("mono8")), "png", stamp=5), expect_answers=1)
        assert len(h.got["detections"][-1].detections) == 2
        h.spin_until(lambda: h.got["mask"])
        assert (h.got["mask"][-1].height, h.got["mask"][-1].width) == (H, W)
    finally:
        h.close()
