"""The node with real rclpy in one process: every encoding, header passthrough,
detections matching the mask's components, run-time parameters, bad input,
newest-frame semantics, both QoS reliabilities.

The network is replaced by :class:`IntensityBackend` (probability = scaled
intensity), so the expected targets are known exactly; the shipped model is
exercised across processes in ``test_node_process.py``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import (  # noqa: E402
    BLOBS,
    H,
    Harness,
    LogCapture,
    W,
    frame_for,
    image_msg,
    make_detector,
)
from rclpy.event_handler import PublisherEventCallbacks  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from irstd_ros.core.components import components  # noqa: E402
from irstd_ros.ros.conversions import ENCODINGS, array_to_image_fields, image_to_array  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402

pytestmark = pytest.mark.ros
@pytest.fixture
def harness(rclpy_context):
    h = Harness(IrstdNode(detector=make_detector()))
    yield h
    h.close()


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_gives_mask_detections_and_targets(harness, encoding):
    harness.send(image_msg(frame_for(encoding), encoding, stamp=42), expect_answers=1)
    harness.spin_until(lambda: harness.got["mask"] and harness.got["targets"])
    mask_msg, dets, targets = (harness.got[k][-1] for k in ("mask", "detections", "targets"))
    for m in (mask_msg, dets, targets):
        assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (42, 123, "ir_cam")
    assert (mask_msg.height, mask_msg.width, mask_msg.encoding) == (H, W, "mono8")
    mask = image_to_array(mask_msg)
    assert set(np.unique(mask)) == {0, 255}
    # detections are exactly the mask's connected components
    labels, n = components(mask > 0)
    assert n == len(dets.detections) == len(targets.targets) == len(BLOBS)
    boxes = set()
    for sl in BLOBS:
        ys, xs = sl
        boxes.add((xs.start + (xs.stop - xs.start - 1) / 2, ys.start + (ys.stop - ys.start - 1) / 2,
                   xs.stop - xs.start, ys.stop - ys.start))
    got = {(d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y)
           for d in dets.detections}
    assert got == boxes
    for d in dets.detections:
        assert d.results[0].hypothesis.class_id == "target"
        assert 0.5 < d.results[0].hypothesis.score <= 1.0
    assert sorted(t.area for t in targets.targets) == [9, 10]


def test_bad_frames_are_counted_and_the_next_valid_frame_is_answered(harness):
    good = image_msg(frame_for("mono8"), "mono8")
    bad = [
        ("unknown_encoding", {"encoding": "yuv422"}),
        ("empty_image", {"height": 0, "width": 0, "step": 0, "data": b""}),
        ("size_mismatch", {"data": bytes(10)}),
        ("bad_step", {"step": 3}),
    ]
    for kind, changes in bad:
        msg = image_msg(frame_for("mono8"), "mono8")
        for k, v in changes.items():
            setattr(msg, k, v)
        harness.send(msg)
        harness.spin_until(lambda kind=kind: harness.node.stats.errors[kind] == 1)
        harness.send(good, expect_answers=1)
    assert harness.node.stats.processed == len(bad)


def test_nan_in_float_frame_is_refused_then_recovered(harness):
    f = frame_for("32FC1")
    f[0, 0] = np.nan
    harness.send(image_msg(f, "32FC1"))
    harness.spin_until(lambda: harness.node.stats.errors["non_finite"] == 1)
    harness.send(image_msg(frame_for("32FC1"), "32FC1"), expect_answers=1)


def test_threshold_and_area_limits_change_at_run_time(harness):
    node = harness.node
    result = node.set_parameters([Parameter("detection.min_area", value=10)])
    assert result[0].successful
    harness.send(image_msg(frame_for("mono8"), "mono8"), expect_answers=1)
    assert len(harness.got["detections"][-1].detections) == 1  # the 9-px blob is gone
    result = node.set_parameters([Parameter("detection.threshold", value=0.99)])
    assert result[0].successful
    harness.send(image_msg(frame_for("mono8"), "mono8", stamp=2), expect_answers=1)
    assert len(harness.got["detections"][-1].detections) == 1  # 255/255 = 1.0 > 0.99
    harness.send(image_msg(frame_for("mono8") // 2, "mono8", stamp=3), expect_answers=1)
    assert len(harness.got["detections"][-1].detections) == 0


def test_invalid_parameter_values_are_refused_with_a_reason(harness):
    node = harness.node
    res = node.set_parameters([Parameter("detection.threshold", value=2.0)])
    assert not res[0].successful
    res = node.set_parameters([Parameter("detection.min_area", value=20000)])
    assert not res[0].successful and "max_area" in res[0].reason
    res = node.set_parameters([Parameter("model.path", value="/tmp/x.safetensors")])
    assert not res[0].successful  # read-only: needs a restart
    assert node.get_parameter("detection.threshold").value == -1.0


def test_slow_inference_keeps_only_the_newest_frame(rclpy_context):
    h = Harness(IrstdNode(detector=make_detector(delay=0.3)))
    try:
        sent = 12
        for i in range(sent):
            h.send(image_msg(frame_for("mono8"), "mono8", stamp=i + 1))
            h.executor.spin_once(timeout_sec=0.01)
        h.spin_until(lambda: h.node.stats.received == sent)
        h.spin_until(lambda: h.node.stats.processed + h.node.stats.dropped == sent)
        stats = h.node.stats
        assert stats.dropped > 0
        assert stats.processed < sent
        # the last frame sent is always answered
        h.spin_until(lambda: h.got["detections"] and h.got["detections"][-1].header.stamp.sec == sent)
    finally:
        h.close()


@pytest.mark.parametrize("reliability", ["reliable", "best_effort"])
def test_both_qos_reliabilities_deliver_small_frames(rclpy_context, reliability):
    node = IrstdNode(
        detector=make_detector(),
        parameter_overrides=[Parameter("qos.reliability", value=reliability)],
    )
    h = Harness(node, reliability=reliability)
    try:
        h.send(image_msg(frame_for("mono8"), "mono8"), expect_answers=1)
        assert h.node.sub.qos_profile.reliability.name.lower() == reliability
    finally:
        h.close()


def test_a_best_effort_camera_on_the_reliable_default_is_named_with_the_fix(rclpy_context):
    """A sensor-data (best-effort) camera never connects to the default reliable
    subscription: counted in /diagnostics and logged with the parameter to set."""
    node = IrstdNode(detector=make_detector())
    log = LogCapture()
    node.get_logger = lambda: log  # type: ignore[method-assign]
    peer = rclpy.create_node("sensor_data_camera")
    quiet = PublisherEventCallbacks(incompatible_qos=lambda _info: None)  # the camera's own warning
    peer.create_publisher(Image, "image", qos_profile_sensor_data, event_callbacks=quiet)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer)
    try:
        end = time.monotonic() + 10.0
        while not node.stats.errors["incompatible_qos"] and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert node.stats.errors["incompatible_qos"] == 1
        assert log.count("warning", "qos.reliability:=best_effort") == 1
        values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
        assert values["errors.incompatible_qos"] == "1"
        # every later report too: before, they were OK once the error count stopped rising,
        # with received 0 and input_hz 0
        status = node.diagnostics().status[0]
        values = {kv.key: kv.value for kv in status.values}
        assert status.level == status.WARN and values["received"] == "0"
        assert status.message.startswith("no input") and "errors.incompatible_qos" in status.message
        assert "qos.reliability:=best_effort" in status.message
    finally:
        executor.shutdown()
        node.close()
        peer.destroy_node()


def test_int_values_are_taken_for_float_parameters_and_wrong_types_are_named(harness):
    """`ros2 param set /irstd_node detection.threshold 1` sends an int: rclpy refused it for
    the float parameter with "Wrong parameter type, expected '3' got '2'"."""
    node = harness.node
    res = node.set_parameters([Parameter("input.high", value=4095)])[0]
    assert res.successful, res.reason
    assert node.params["input.high"] == 4095.0 and type(node.params["input.high"]) is float
    res = node.set_parameters([Parameter("detection.threshold", value=-1)])[0]  # the checkpoint's own
    assert res.successful, res.reason
    assert node.params["detection.threshold"] == -1.0 and type(node.params["detection.threshold"]) is float
    res = node.set_parameters([Parameter("detection.threshold", value=2)])[0]
    assert not res.successful and "in [-1.0, 1.0]" in res.reason  # the range still holds
    res = node.set_parameters([Parameter("detection.threshold", value="0.4")])[0]
    assert not res.successful and res.reason == "detection.threshold must be a number, got '0.4'"
    res = node.set_parameters([Parameter("detection.threshold")])[0]  # ros2 param delete
    assert not res.successful and "cannot be deleted" in res.reason
    assert node.has_parameter("detection.threshold") and node.params["detection.threshold"] == -1.0


def test_an_int_override_of_a_float_parameter_is_taken_as_a_float(rclpy_context):
    from irstd_ros.errors import IrstdError

    node = IrstdNode(detector=make_detector(), parameter_overrides=[Parameter("input.high", value=4095)])
    try:
        assert node.params["input.high"] == 4095.0 and type(node.params["input.high"]) is float
    finally:
        node.close()
    with pytest.raises(IrstdError, match="input.high must be a number, got 'x'"):
        IrstdNode(detector=make_detector(), parameter_overrides=[Parameter("input.high", value="x")])


@pytest.mark.parametrize("atomic", [
    [Parameter("tracking.confirm_m", value=7), Parameter("tracking.confirm_n", value=8)],
    [Parameter("tracking.confirm_n", value=8), Parameter("tracking.confirm_m", value=7)],
    [Parameter("detection.min_area", value=20000), Parameter("detection.max_area", value=50000),
     Parameter("input.percentile_low", value=99.6), Parameter("input.percentile_high", value=99.9)],
], ids=["m_first", "n_first", "areas_and_percentiles"])
def test_linked_parameters_set_atomically_are_checked_together_in_any_order(harness, atomic):
    """Each change was checked against the values staged before it: confirm_m 7 then
    confirm_n 8 (from 4, 6) was refused, the other order taken."""
    node = harness.node
    result = node.set_parameters_atomically(atomic)
    assert result.successful, result.reason
    assert all(node.params[p.name] == p.value for p in atomic)
    assert all(node.get_parameter(p.name).value == p.value for p in atomic)


def test_an_inconsistent_atomic_batch_is_refused_whole(harness):
    node = harness.node
    before = dict(node.params)
    result = node.set_parameters_atomically([
        Parameter("detection.threshold", value=0.3),
        Parameter("tracking.confirm_m", value=9), Parameter("tracking.confirm_n", value=8),
    ])
    assert not result.successful and "confirm_m must not exceed tracking.confirm_n" in result.reason
    assert node.params == before and node.get_parameter("detection.threshold").value == before["detection.threshold"]


def test_diagnostics_report_counts_and_backend(harness):
    harness.send(image_msg(frame_for("mono8"), "mono8"), expect_answers=1)
    bad = image_msg(frame_for("mono8"), "mono8")
    bad.encoding = "yuv422"
    harness.send(bad)
    harness.spin_until(lambda: harness.node.stats.errors["unknown_encoding"] == 1)
    status = harness.node.diagnostics().status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["backend"] == "intensity"
    assert values["processed"] == "1"
    assert values["errors.unknown_encoding"] == "1"
    assert status.level == status.WARN


def test_invalid_parameter_at_start_is_refused(rclpy_context):
    from irstd_ros.errors import IrstdError

    with pytest.raises(IrstdError, match="detection.min_area"):
        IrstdNode(
            detector=make_detector(),
            parameter_overrides=[
                Parameter("detection.min_area", value=50),
                Parameter("detection.max_area", value=10),
            ],
        )


def test_process_returns_false_for_bad_frames_without_raising(harness):
    bad = SimpleNamespace(**array_to_image_fields(np.zeros((2, 2), np.uint8), "mono8"))
    bad.encoding = "weird"
    bad.header = image_msg(np.zeros((2, 2), np.uint8), "mono8").header
    assert harness.node.process(bad) is False


def test_unknown_parameters_in_the_parameters_file_are_named(rclpy_context, monkeypatch, tmp_path):
    """rclpy ignores a parameter the node never declares: a misspelt key in the parameters
    file (detection.treshold) left the default threshold in force without a word."""
    log = LogCapture()
    monkeypatch.setattr(IrstdNode, "get_logger", lambda self: log)
    params = tmp_path / "irstd.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: false\n"
        "    detection: {treshold: 0.3, min_area: 2}\n"
        "    qos_overrides:\n      /image:\n        subscription: {reliability: best_effort}\n"
    )
    context = rclpy.Context()
    rclpy.init(args=["irstd_node", "--ros-args", "--params-file", str(params)], context=context)
    try:
        node = IrstdNode(detector=make_detector(), context=context,
                         parameter_overrides=[Parameter("tracking.gate", value=3.0)])
        try:
            assert node.params["detection.min_area"] == 2  # the file was read
            warned = [t for level, t in log.records if level == "warning"]
            assert len(warned) == 3, warned
            assert any("'detection.treshold'" in t and "did you mean detection.threshold" in t for t in warned)
            assert any("'tracking.gate'" in t and "tracking.gate_px" in t for t in warned)
            assert any("'qos_overrides./image.subscription.reliability'" in t and "qos.reliability" in t
                       for t in warned)
        finally:
            node.close()
    finally:
        rclpy.shutdown(context=context)


def test_detection_ids_claim_no_identity_across_frames(harness):
    """vision_msgs keeps a Detection2D's id for the same object across messages; the node
    gave each detection its rank in its frame, so two targets whose scores crossed swapped
    ids (and a new target took an old one's). The ids are empty; the tracks carry them."""
    for stamp, hot in ((1, (0.9, 0.7)), (2, (0.7, 0.9))):
        frame = np.full((H, W), 0.1, np.float32)
        for sl, value in zip(BLOBS, hot):
            frame[sl] = value
        harness.send(image_msg(frame, "32FC1", stamp=stamp), expect_answers=1)
    first, second = harness.got["detections"][-2:]
    xs = [[d.bbox.center.position.x for d in m.detections] for m in (first, second)]
    assert len(xs[0]) == 2 and xs[0] == xs[1][::-1]  # the same two targets, ranked the other way
    assert [d.id for m in (first, second) for d in m.detections] == [""] * 4
