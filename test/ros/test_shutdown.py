"""Shutdown while a frame is being processed: clean exit (code 0), no traceback, no hang.

The node runs as a process started the way the launch file starts it, with the shipped
model on the torch-cpu backend; a 1280x1024 frame keeps inference busy for seconds, and
the signal is sent once /diagnostics shows that frame received but not yet processed.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from irstd_ros.inference.detector import default_model_path  # noqa: E402
from irstd_ros.ros.conversions import array_to_image_fields  # noqa: E402
from irstd_ros.ros.launch_args import EXECUTABLE, LIFECYCLE_EXECUTABLE, node_command  # noqa: E402
from irstd_ros.testing import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "config" / "irstd.yaml"
NAMESPACE = "/shutdown_test"
BIG = (1024, 1280)  # rows, columns: seconds of CPU inference
START_TIMEOUT_S = 60.0
IN_FLIGHT_TIMEOUT_S = 30.0
DIAG_PERIOD_S = 0.2
EXIT_TIMEOUT_S = 60.0  # the frame in flight is finished first (slow on a loaded CPU)


def big_frame() -> Image:
    rng = np.random.default_rng(0)
    msg = Image()
    frame = rng.integers(0, 4000, BIG, dtype=np.uint16)
    for k, v in array_to_image_fields(frame, "mono16").items():
        setattr(msg, k, v)
    msg.header.stamp.sec = 1
    return msg


@pytest.mark.parametrize(
    ("executable", "extra", "sig"),
    [
        (EXECUTABLE, [], signal.SIGINT),
        (EXECUTABLE, [], signal.SIGTERM),
        (LIFECYCLE_EXECUTABLE, ["--autostart"], signal.SIGINT),
    ],
    ids=["plain-SIGINT", "plain-SIGTERM", "lifecycle-SIGINT"],
)
def test_signal_during_inference_exits_cleanly(rclpy_context, tmp_path, executable, extra, sig):
    if not default_model_path().is_file():
        pytest.skip(f"shipped model {default_model_path()} not present")
    # torch-cpu: the slowest CPU backend keeps the frame in flight for seconds; frequent
    # diagnostics show when it is
    cmd = node_command(PARAMS, namespace=NAMESPACE,
                       executable=str(Path(sys.executable).parent / executable),
                       extra_ros_args=["-p", "model.backend:=torch-cpu",
                                       "-p", f"diagnostics.period:={DIAG_PERIOD_S}"])
    cmd[1:1] = extra  # user arguments go before --ros-args
    node = NodeProcess(cmd, tmp_path / "node.log")
    proc = node.proc
    peer = rclpy.create_node("irstd_shutdown_peer")
    pub = peer.create_publisher(Image, f"{NAMESPACE}/image", 1)
    diags: list[dict[str, str]] = []

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NAMESPACE}/irstd_node"):
                diags.append({kv.key: kv.value for kv in status.values})

    peer.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(peer)

    text = node.log_text

    def wait(cond, timeout: float, what: str) -> None:
        node.wait_for(cond, timeout, what, spin=lambda: ex.spin_once(timeout_sec=0.05))

    try:
        wait(lambda: pub.get_subscription_count() > 0, START_TIMEOUT_S, "no subscription")
        pub.publish(big_frame())
        wait(lambda: diags and diags[-1]["received"] == "1" and diags[-1]["processed"] == "0",
             IN_FLIGHT_TIMEOUT_S, "the frame never showed up in flight")
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(EXIT_TIMEOUT_S)
        took = time.monotonic() - t0
    finally:
        ex.shutdown()
        peer.destroy_node()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = text()
    node.stop()
    assert rc == 0, out
    assert "Traceback" not in out, out
    assert "internal_error" not in out, out
    assert took < EXIT_TIMEOUT_S


def test_close_waits_for_the_frame_in_flight_and_does_not_hang(rclpy_context):
    from _support.node import Harness, frame_for, image_msg, make_detector

    from irstd_ros.ros.node import IrstdNode

    detector = make_detector(delay=0.5)
    h = Harness(IrstdNode(detector=detector))
    try:
        h.send(image_msg(frame_for("mono8"), "mono8"))
        h.spin_until(lambda: detector.backend.calls == 1)  # inference running in the worker
    except BaseException:
        h.close()
        raise
    t0 = time.monotonic()
    h.close()
    assert time.monotonic() - t0 < 5.0
    assert not h.node.pipeline.worker.is_alive()


def test_a_harness_that_cannot_start_closes_the_node_and_its_peer(rclpy_context, monkeypatch):
    """The harness waits for the node's subscription in its constructor, before the
    caller's try/finally: when that timed out, the node (its worker thread) and the peer
    node were left running for the rest of the session."""
    from _support.node import Harness, make_detector
    from rclpy.impl.implementation_singleton import rclpy_implementation

    from irstd_ros.ros.node import IrstdNode

    made = []
    create_node = rclpy.create_node

    def recorded_create_node(*args, **kwargs):
        made.append(create_node(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(rclpy, "create_node", recorded_create_node)
    node = IrstdNode(detector=make_detector(), cli_args=["--ros-args", "-r", "image:=elsewhere"])
    with pytest.raises(AssertionError, match="timed out"):
        Harness(node, start_timeout=0.3)  # nothing subscribes to "image"
    assert not node.pipeline.worker.is_alive()
    assert len(made) == 1  # the peer
    for destroyed in (node, made[0]):
        with pytest.raises(rclpy_implementation.InvalidHandle):
            destroyed.get_name()


class _Closable:
    closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.ros
@pytest.mark.parametrize("shut_down", [True, False], ids=["signal-raced-the-executor", "real-rcl-failure"])
def test_rcl_error_from_spin_is_a_clean_exit_only_after_a_shutdown(monkeypatch, shut_down):
    """A signal shuts the context down while the executor builds its wait set: rcl raises
    "context is not valid" (seen once in CI) rather than ExternalShutdownException."""
    from rclpy._rclpy_pybind11 import RCLError

    from irstd_ros.ros import node as node_module

    def spin(_node) -> None:
        if shut_down:
            rclpy.shutdown()
        raise RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(node_module.rclpy, "spin", spin)
    made = _Closable()
    if rclpy.ok():
        rclpy.shutdown()
    if shut_down:
        assert node_module.run(["irstd_node"], lambda _args: made) == 0
    else:
        with pytest.raises(RCLError):
            node_module.run(["irstd_node"], lambda _args: made)
    assert made.closed and not rclpy.ok()
