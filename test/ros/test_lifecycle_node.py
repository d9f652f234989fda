"""The managed (lifecycle) node: every transition in process (through the node's own
``trigger_*`` methods and through the ``change_state`` service), with the deterministic
:class:`IntensityBackend` of ``test_node.py``; and ``irstd_lifecycle_node`` as a process."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")
pytest.importorskip("lifecycle_msgs.srv")

from _support.node import Harness, LogCapture, frame_for, image_msg, make_detector  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from irstd_ros.inference.detector import default_model_path  # noqa: E402
from irstd_ros.msg import TrackArray  # noqa: E402
from irstd_ros.ros.lifecycle_node import IrstdLifecycleNode  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402
from irstd_ros.ros.pipeline import FramePipeline  # noqa: E402
from irstd_ros.testing import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros
SUCCESS = TransitionCallbackReturn.SUCCESS
QUIET_S = 0.3  # how long "no answer" is watched for
START_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 15.0
ROOT = Path(__file__).resolve().parents[2]


def spin_for(h: Harness, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        h.executor.spin_once(timeout_sec=0.02)


def diag_values(node: IrstdLifecycleNode) -> dict[str, str]:
    return {kv.key: kv.value for kv in node.diagnostics().status[0].values}


def test_lifecycle_node_reuses_the_plain_pipeline():
    # a plain LifecycleNode (no double inheritance) around the plain node's pipeline
    assert not issubclass(IrstdLifecycleNode, IrstdNode)
    assert IrstdLifecycleNode.__mro__[1] is LifecycleNode
    for name in ("process", "_work", "_report", "_check_stream", "_create_outputs"):
        assert name not in IrstdLifecycleNode.__dict__, f"{name} duplicated"
    for name in ("_work", "_check_stream", "_track"):
        assert name not in IrstdNode.__dict__ and name in FramePipeline.__dict__, name


def test_transitions_configure_activate_deactivate_cleanup_shutdown(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector)
    assert node.state_label == "unconfigured"
    assert node.detector is None
    assert node.count_publishers(node.resolve_topic_name("mask")) == 0

    assert node.trigger_configure() == SUCCESS
    assert node.state_label == "inactive"
    assert node.detector is not None and node.detector.backend.name == "intensity"
    assert type(node.pipeline) is FramePipeline
    assert node.params["qos.reliability"] == "reliable"
    h = Harness(node)  # configure created the subscription
    try:
        # inactive: frames are ignored, counted as such, nothing is published
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=1))
        h.spin_until(lambda: node.ignored_inactive == 1)
        spin_for(h, QUIET_S)
        assert h.got["detections"] == [] and node.stats.received == 0

        assert node.trigger_activate() == SUCCESS
        assert node.state_label == "active"
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=2), expect_answers=1)
        assert h.got["detections"][-1].header.stamp.sec == 2
        assert len(h.got["detections"][-1].detections) == 2

        assert node.trigger_deactivate() == SUCCESS
        assert node.state_label == "inactive"
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=3))
        h.spin_until(lambda: node.ignored_inactive == 2)
        spin_for(h, QUIET_S)
        assert len(h.got["detections"]) == 1
        values = diag_values(node)
        assert values["state"] == "inactive" and values["ignored_inactive"] == "2"
        assert values["processed"] == "1"

        assert node.trigger_cleanup() == SUCCESS
        assert node.state_label == "unconfigured"
        assert node.detector is None and node.sub is None
        assert node.count_publishers(node.resolve_topic_name("mask")) == 0

        # configure again (parameters are not declared twice) and run
        assert node.trigger_configure() == SUCCESS
        assert node.trigger_activate() == SUCCESS
        h.spin_until(lambda: h.pub.get_subscription_count() > 0)
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=4), expect_answers=1)
        assert h.got["detections"][-1].header.stamp.sec == 4

        assert node.trigger_shutdown() == SUCCESS
        assert node.state_label == "finalized"
        assert node.detector is None
    finally:
        h.close()


class TrackHarness(Harness):
    """The harness, also collecting ``target_tracks``."""

    def _subscribe(self) -> None:
        super()._subscribe()
        self.arrays: list[TrackArray] = []
        self.peer.create_subscription(TrackArray, "target_tracks", self.arrays.append, 10)


def test_track_ids_are_never_reused_across_cleanup_and_configure(rclpy_context):
    """Track ids are unique over the node's life (Track.msg); a new pipeline at configure
    started its tracker at id 1 again, so a consumer saw a new target under an old id."""
    node = IrstdLifecycleNode(detector_factory=make_detector)
    assert node.trigger_configure() == SUCCESS
    assert node.trigger_activate() == SUCCESS
    h = TrackHarness(node)
    try:
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=1), expect_answers=1)
        h.spin_until(lambda: len(h.arrays) == 1)
        before = {t.id for t in h.arrays[0].tracks}
        assert before == {1, 2}  # the two blobs, tentative
        assert node.trigger_deactivate() == SUCCESS
        assert node.trigger_cleanup() == SUCCESS
        assert node.trigger_configure() == SUCCESS
        assert node.trigger_activate() == SUCCESS
        h.spin_until(lambda: h.pub.get_subscription_count() > 0)
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=2), expect_answers=1)
        h.spin_until(lambda: len(h.arrays) == 2)
        assert {t.id for t in h.arrays[1].tracks} == {3, 4}
    finally:
        h.close()


def test_deactivate_answers_the_frame_in_progress_before_disabling_the_outputs(rclpy_context):
    """A frame being processed when deactivate arrives is published whole (before, it was
    counted as processed while the disabled publishers dropped its outputs)."""
    detector = make_detector(delay=0.5)
    node = IrstdLifecycleNode(detector_factory=lambda: detector)
    assert node.trigger_configure() == SUCCESS
    assert node.trigger_activate() == SUCCESS
    h = Harness(node)
    try:
        h.send(image_msg(frame_for("mono8"), "mono8", stamp=1))
        h.spin_until(lambda: detector.backend.calls == 1)  # in the network now
        assert node.trigger_deactivate() == SUCCESS
        assert node.stats.processed == 1
        h.spin_until(lambda: h.got["detections"] and h.got["mask"])
        assert h.got["detections"][-1].header.stamp.sec == 1 == h.got["mask"][-1].header.stamp.sec
    finally:
        h.close()


def test_cleanup_frees_the_model(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector)
    try:
        assert node.trigger_configure() == SUCCESS
        backend = weakref.ref(node.detector.backend)
        assert node.trigger_cleanup() == SUCCESS
        gc.collect()
        assert backend() is None, "the backend (model) is still referenced after cleanup"
    finally:
        node.close()


def test_configure_cleanup_cycles_leave_no_references_behind(rclpy_context):
    """rclpy's callback group keeps a weak reference to every entity ever added to it
    (ros2/rclpy#1356): each configure/cleanup cycle left 21 dead ones behind, so a node
    swapping its model hundreds of times grew without bound."""
    node = IrstdLifecycleNode(detector_factory=make_detector)
    try:
        entities = node.default_callback_group.entities
        live = {ref for ref in entities if ref() is not None}  # the node's own (services)
        assert node.trigger_configure() == SUCCESS
        assert node.trigger_cleanup() == SUCCESS
        after_one = len(entities)
        for _ in range(5):
            assert node.trigger_configure() == SUCCESS
            assert node.trigger_cleanup() == SUCCESS
        assert len(entities) <= after_one
        assert live <= entities  # only references to destroyed entities were dropped
    finally:
        node.close()


def test_run_time_parameters_apply_in_every_state(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector)
    try:
        assert node.trigger_configure() == SUCCESS
        assert node.set_parameters([Parameter("detection.min_area", value=10)])[0].successful
        assert node.detector.post.min_area == 10
        assert node.trigger_cleanup() == SUCCESS
        # unconfigured: no detector, the value is kept for the next configure
        assert node.set_parameters([Parameter("detection.min_area", value=5)])[0].successful
        assert node.trigger_configure() == SUCCESS
        assert node.detector.post.min_area == 5
        assert not node.set_parameters([Parameter("detection.threshold", value=3.0)])[0].successful
    finally:
        node.close()


def test_the_model_is_swapped_by_cleanup_set_configure(rclpy_context):
    """model.* are read at configure: refused while configured (with the way to do it),
    taken while unconfigured; the plain node keeps them read-only."""
    node = IrstdLifecycleNode(parameter_overrides=[
        Parameter("model.path", value="tiny"), Parameter("model.backend", value="torch-cpu"),
    ])
    try:
        assert node.trigger_configure() == SUCCESS
        tiny = node.detector.info.model
        refused = node.set_parameters([Parameter("model.path", value="fast")])[0]
        assert not refused.successful and "cleanup, set, configure again" in refused.reason
        assert node.get_parameter("model.path").value == "tiny"
        assert node.trigger_cleanup() == SUCCESS
        assert node.set_parameters([Parameter("model.path", value="fast")])[0].successful
        assert node.trigger_configure() == SUCCESS
        assert node.detector.info.model != tiny
        assert node.set_parameters([Parameter("detection.min_area", value=4)])[0].successful
    finally:
        node.close()
    plain = IrstdNode(detector=make_detector())
    try:
        assert not plain.set_parameters([Parameter("model.path", value="fast")])[0].successful
    finally:
        plain.close()


def test_parameters_are_listed_and_set_before_the_first_configure(rclpy_context):
    """A node just started (unconfigured) has its parameters: model.path is set before the
    first configure (not only after a cleanup), and values are checked as they are set."""
    node = IrstdLifecycleNode(parameter_overrides=[Parameter("model.backend", value="torch-cpu")])
    try:
        assert node.has_parameter("model.path") and node.has_parameter("detection.threshold")
        assert node.set_parameters([Parameter("model.path", value="fast")])[0].successful
        refused = node.set_parameters([Parameter("detection.min_area", value=20_000)])[0]
        assert not refused.successful and "max_area" in refused.reason
        assert node.trigger_configure() == SUCCESS
        assert node.params["model.path"] == "fast"
        assert node.detector.info.model.stem == 2  # fast's; the default (tiny) has 1
    finally:
        node.close()


def test_an_override_of_the_wrong_type_is_named_at_configure_and_can_be_set_right(rclpy_context):
    """It left every later parameter undeclared: they could not be listed or set, nor could
    the bad one, so configure failed until the process was restarted."""
    from irstd_ros.ros.params import PARAMS

    node = IrstdLifecycleNode(detector_factory=make_detector, parameter_overrides=[
        Parameter("detection.threshold", value="high"), Parameter("model.precision", value=3),
    ])
    try:
        assert all(node.has_parameter(p.name) for p in PARAMS)
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "detection.threshold" in node.last_error and "model.precision" in node.last_error
        assert node.set_parameters([Parameter("detection.threshold", value=0.4),
                                    Parameter("model.precision", value="fp32")])[0].successful
        assert node.trigger_configure() == SUCCESS
        assert node.params["detection.threshold"] == 0.4
    finally:
        node.close()


def test_tracker_thresholds_clashing_with_the_models_own_fail_configure(rclpy_context):
    node = IrstdLifecycleNode(
        detector_factory=lambda: make_detector(candidate_threshold=0.53, gated_threshold=0.41),
        parameter_overrides=[Parameter("tracking.candidate_threshold", value=0.3)],
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "gated threshold 0.41 must be below the candidate threshold 0.3" in node.last_error
        assert node.set_parameters([Parameter("tracking.gated_threshold", value=0.2)])[0].successful
        assert node.trigger_configure() == SUCCESS
        assert (node.detector.candidate_threshold, node.detector.gated_threshold) == (0.3, 0.2)
        back = node.set_parameters([Parameter("tracking.gated_threshold", value=-1.0)])[0]
        assert not back.successful and "0.41" in back.reason
        assert node.detector.gated_threshold == 0.2
    finally:
        node.close()


def test_a_failed_configure_frees_the_model_before_releasing_device_memory(rclpy_context, monkeypatch):
    """The model loaded before a check failed is dropped, then the device cache emptied
    (on a GPU the cache held its memory until the next cleanup)."""
    import irstd_ros.inference.resources as resources

    backends: list[weakref.ref] = []
    alive_at_release: list[bool] = []

    def clashing():
        detector = make_detector(candidate_threshold=0.53, gated_threshold=0.41)
        backends.append(weakref.ref(detector.backend))
        return detector

    def release(collect=False):
        if collect:
            gc.collect()
        alive_at_release.append(backends[-1]() is not None)

    monkeypatch.setattr(resources, "release_device_memory", release)
    node = IrstdLifecycleNode(
        detector_factory=clashing, parameter_overrides=[Parameter("tracking.candidate_threshold", value=0.3)]
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert alive_at_release == [False]
    finally:
        node.close()


def test_configure_fails_cleanly_on_a_missing_model(rclpy_context, tmp_path):
    missing = tmp_path / "nope.safetensors"
    node = IrstdLifecycleNode(parameter_overrides=[Parameter("model.path", value=str(missing))])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label == "unconfigured"
        assert str(missing) in node.last_error and node.detector is None
    finally:
        node.close()


def test_an_unexpected_configure_error_is_logged_and_kept(rclpy_context):
    def broken_device():
        raise RuntimeError("CUDA error: device busy")

    node = IrstdLifecycleNode(detector_factory=broken_device)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label == "unconfigured"
        assert node.last_error == "RuntimeError: CUDA error: device busy"
    finally:
        node.close()


def test_transitions_through_the_change_state_service(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector)
    peer = rclpy.create_node("irstd_lifecycle_peer")
    client = peer.create_client(ChangeState, f"{node.get_fully_qualified_name()}/change_state")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(peer)
    try:
        end = time.monotonic() + 10.0
        while not client.service_is_ready():
            assert time.monotonic() < end, "change_state service not found"
            ex.spin_once(timeout_sec=0.05)
        for transition, label in (
            (Transition.TRANSITION_CONFIGURE, "inactive"),
            (Transition.TRANSITION_ACTIVATE, "active"),
            (Transition.TRANSITION_DEACTIVATE, "inactive"),
            (Transition.TRANSITION_CLEANUP, "unconfigured"),
        ):
            future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
            ex.spin_until_future_complete(future, timeout_sec=10.0)
            assert future.result() is not None and future.result().success
            assert node.state_label == label
    finally:
        ex.shutdown()
        peer.destroy_node()
        node.close()


def test_lifecycle_process_managed_through_services_answers_and_exits_cleanly(
    rclpy_context, tmp_path
):
    if not default_model_path().is_file():
        pytest.skip(f"shipped model {default_model_path()} not present")
    exe = str(Path(sys.executable).parent / "irstd_lifecycle_node")
    params = str(ROOT / "config" / "irstd.yaml")
    cmd = [exe, "--ros-args", "-r", "__ns:=/lc", "--params-file", params]
    node = NodeProcess(cmd, tmp_path / "node.log")
    peer = rclpy.create_node("irstd_lifecycle_process_peer")
    client = peer.create_client(ChangeState, "/lc/irstd_node/change_state")
    pub = peer.create_publisher(Image, "/lc/image", 10)
    dets: list[Detection2DArray] = []
    peer.create_subscription(Detection2DArray, "/lc/detections", dets.append, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(peer)

    log_text = node.log_text

    def wait(cond, timeout: float, what: str) -> None:
        node.wait_for(cond, timeout, what, spin=lambda: ex.spin_once(timeout_sec=0.05))

    try:
        wait(client.service_is_ready, START_TIMEOUT_S, "no change_state service")
        assert pub.get_subscription_count() == 0  # unconfigured: no subscription yet
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
            wait(future.done, START_TIMEOUT_S, f"transition {transition} not answered")
            assert future.result().success, log_text()
        wait(lambda: pub.get_subscription_count() > 0, START_TIMEOUT_S, "no subscription")
        msg = image_msg(frame_for("mono8"), "mono8", stamp=77)
        pub.publish(msg)
        wait(lambda: dets, ANSWER_TIMEOUT_S, "no answer")
        assert dets[0].header.stamp.sec == 77
    finally:
        ex.shutdown()
        peer.destroy_node()
        code = node.stop(signal.SIGINT, EXIT_TIMEOUT_S)
        rc = None if node.killed else code
        text = log_text()
    assert rc == 0, text
    assert "Traceback" not in text, text


def test_lifecycle_autostart_with_a_missing_model_is_one_line(tmp_path):
    missing = tmp_path / "nope.safetensors"
    exe = str(Path(sys.executable).parent / "irstd_lifecycle_node")
    out = subprocess.run([exe, "--autostart", "--ros-args", "-p", f"model.path:={missing}"],
                         capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if "irstd_lifecycle_node: error" in ln]
    assert len(lines) == 1 and str(missing) in lines[0]
    assert "Traceback" not in out.stderr


def test_unknown_parameter_overrides_are_named_at_start(rclpy_context, monkeypatch):
    """As the plain node: a misspelt parameter is not ignored without a word."""
    log = LogCapture()
    monkeypatch.setattr(IrstdLifecycleNode, "get_logger", lambda self: log)
    node = IrstdLifecycleNode(detector_factory=make_detector, parameter_overrides=[
        Parameter("detection.max_detection", value=5), Parameter("detection.min_area", value=2),
    ])
    try:
        warned = [t for level, t in log.records if level == "warning"]
        assert len(warned) == 1 and "'detection.max_detection'" in warned[0], warned
        assert "did you mean detection.max_detections" in warned[0]
    finally:
        node.close()


def test_a_configure_failing_after_the_subscriptions_leaves_none_behind(rclpy_context, monkeypatch):
    """A configure that fails once its inputs are subscribed (here: the diagnostics timer)
    destroys them again: a second configure has one image subscription, not two (each frame
    would be processed twice, and the first pipeline kept alive by its camera_info one)."""
    node = IrstdLifecycleNode(detector_factory=make_detector)
    create_timer = node.create_timer
    failures = iter([RuntimeError("timer refused")])

    def timer_failing_once(*args, **kwargs):
        error = next(failures, None)
        if error is not None:
            raise error
        return create_timer(*args, **kwargs)

    monkeypatch.setattr(node, "create_timer", timer_failing_once)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.ERROR  # on_error: unconfigured
        assert node.state_label == "unconfigured" and node.pipeline is None
        assert [s.topic_name for s in node.subscriptions] == []
        assert node.trigger_configure() == SUCCESS
        topics = sorted(s.topic_name for s in node.subscriptions)
        assert topics == ["/camera_info", "/image"]
    finally:
        node.close()


def test_no_input_is_a_warning_only_while_active(rclpy_context):
    """An inactive node ignores frames: none arriving is no problem. Active, a period
    without a frame is a warning (before, OK with received 0 after the first report)."""
    node = IrstdLifecycleNode(detector_factory=make_detector)
    try:
        assert node.trigger_configure() == SUCCESS
        status = node.diagnostics().status[0]
        assert (status.level, status.message) == (status.OK, "ok")
        assert node.trigger_activate() == SUCCESS
        status = node.diagnostics().status[0]
        assert status.level == status.WARN and status.message.startswith("no input")
    finally:
        node.close()


def test_an_unknown_backend_is_refused_when_set_with_the_valid_names(rclpy_context):
    """Before, any model.backend was taken while unconfigured; configure failed later."""
    from irstd_ros.inference.backends.select import valid_names

    node = IrstdLifecycleNode(detector_factory=make_detector)
    try:
        refused = node.set_parameters([Parameter("model.backend", value="bogus")])[0]
        assert not refused.successful
        assert refused.reason == f"model.backend must be one of {', '.join(valid_names())}, got 'bogus'"
        assert node.get_parameter("model.backend").value == "auto"
        assert node.set_parameters([Parameter("model.backend", value="torch-cpu")])[0].successful
    finally:
        node.close()


def test_linked_parameters_and_int_values_for_floats_are_taken_as_by_the_plain_node(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector,
                              parameter_overrides=[Parameter("tracking.max_coast_s", value=2)])
    try:
        assert node.params["tracking.max_coast_s"] == 2.0
        result = node.set_parameters_atomically([Parameter("tracking.confirm_m", value=7),
                                                 Parameter("tracking.confirm_n", value=8)])
        assert result.successful, result.reason
        assert node.set_parameters([Parameter("input.high", value=4095)])[0].successful
        assert node.trigger_configure() == SUCCESS
        assert type(node.params["tracking.max_coast_s"]) is float
        assert node.params["input.high"] == 4095.0 and type(node.params["input.high"]) is float
        assert (node.params["tracking.confirm_m"], node.params["tracking.confirm_n"]) == (7, 8)
    finally:
        node.close()
