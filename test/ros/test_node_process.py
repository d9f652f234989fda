"""``irstd_node`` as a separate process, started the way the launch file starts it
(same executable, params file and remaps), with the shipped default model."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from _support.executables import executable  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from irstd_ros.inference.detector import default_model_path  # noqa: E402
from irstd_ros.ros.conversions import array_to_image_fields  # noqa: E402
from irstd_ros.ros.launch_args import node_command  # noqa: E402
from irstd_ros.testing import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "config" / "irstd.yaml"
START_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 15.0


def bright_target_frame(h: int = 128, w: int = 160) -> np.ndarray:
    """A plain cloudy-sky frame with one small bright target."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    sky = 60 + 15 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + rng.normal(0, 2, (h, w))
    target = 120 * np.exp(-((yy - 70) ** 2 + (xx - 90) ** 2) / (2 * 1.2**2))
    return np.clip(sky + target, 0, 255).astype(np.uint8)


@pytest.fixture
def node_process(tmp_path):
    if not default_model_path().is_file():
        pytest.skip(f"shipped model {default_model_path()} not present")
    cmd = node_command(str(PARAMS), image_topic="/cam0/image_raw", namespace="/cam0",
                       executable=executable("irstd_node"))
    node = NodeProcess(cmd, tmp_path / "node.log")
    yield node.proc, node
    node.stop(signal.SIGINT, EXIT_TIMEOUT_S)


def read_log(node: NodeProcess) -> str:
    return node.log_text()


def test_node_process_answers_with_same_stamp_and_exits_cleanly(rclpy_context, node_process):
    proc, log = node_process
    peer = rclpy.create_node("irstd_process_peer")
    pub = peer.create_publisher(Image, "/cam0/image_raw", 10)
    masks, dets = [], []
    peer.create_subscription(Image, "/cam0/mask", masks.append, 10)
    peer.create_subscription(Detection2DArray, "/cam0/detections", dets.append, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(peer)
    try:
        end = time.monotonic() + START_TIMEOUT_S
        while pub.get_subscription_count() == 0:
            assert proc.poll() is None, read_log(log)
            assert time.monotonic() < end, "node did not subscribe in time:\n" + read_log(log)
            ex.spin_once(timeout_sec=0.1)
        msg = Image()
        for k, v in array_to_image_fields(bright_target_frame(), "mono8").items():
            setattr(msg, k, v)
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
        msg.header.frame_id = "cam0_optical"
        end = time.monotonic() + ANSWER_TIMEOUT_S
        pub.publish(msg)
        while not (masks and dets):
            assert time.monotonic() < end, "no answer:\n" + read_log(log)
            ex.spin_once(timeout_sec=0.1)
        for m in (masks[0], dets[0]):
            assert (m.header.stamp.sec, m.header.stamp.nanosec) == (1234, 5678)
            assert m.header.frame_id == "cam0_optical"
        assert (masks[0].height, masks[0].width) == (128, 160)
        # the shipped model (no model.path) finds the plain bright target
        assert len(dets[0].detections) == 1, read_log(log)
        c = dets[0].detections[0].bbox.center.position
        assert abs(c.x - 90) <= 2 and abs(c.y - 70) <= 2
    finally:
        ex.shutdown()
        peer.destroy_node()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(EXIT_TIMEOUT_S) == 0
    text = read_log(log)
    assert "Traceback" not in text, text
    # the choice's line (Python logging below the node) in the node's ROS log, and the ready
    # line with the same account of the backends skipped
    chosen = re.search(r"^\[INFO\] \[[\d.]+\] \[[\w.]*irstd_node\]: inference backend: (\S+) on (\S+) \(auto: (.*)\)$",
                       text, re.M)
    assert chosen, text
    why = chosen[3].split("; recorded accuracy vs FP32: ")[0]
    said = f" (auto: {why})" if why != "first choice" else ""
    assert f"]: ready: backend {chosen[1]} on {chosen[2]}{said}, model " in text, text


def test_missing_model_refuses_to_start_with_one_line(tmp_path):
    missing = tmp_path / "nope.safetensors"
    cmd = [executable("irstd_node"), "--ros-args", "-p", f"model.path:={missing}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if "irstd_node: error" in ln]
    assert len(lines) == 1 and str(missing) in lines[0] and "irstd train" in lines[0]
    assert "Traceback" not in out.stderr


def test_corrupt_model_refuses_to_start(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    cmd = [executable("irstd_node"), "--ros-args", "-p", f"model.path:={bad}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert out.returncode == 1
    assert "not a readable safetensors" in out.stderr and "Traceback" not in out.stderr


def test_ros_processes_of_the_tests_log_into_a_temporary_ros_home(rclpy_context, tmp_path):
    """The tests ran with the user's ROS home: every rclpy process of a run left its log
    file in ~/.ros/log (hundreds of them), or in the user's ROS_LOG_DIR."""
    home, log_dir = os.environ.get("ROS_HOME"), os.environ.get("ROS_LOG_DIR")
    assert home and log_dir, "the session sets ROS_HOME and ROS_LOG_DIR (test/conftest.py)"
    assert Path(log_dir).parent == Path(home) != Path.home() / ".ros"
    assert Path(rclpy.logging.get_logging_directory()) == Path(log_dir)  # this process
    code = "import rclpy; rclpy.init(args=[]); rclpy.shutdown()"
    child = NodeProcess([sys.executable, "-c", code], tmp_path / "child.log")
    try:
        assert child.proc.wait(START_TIMEOUT_S) == 0, child.log_text()
    finally:
        child.stop()
    assert any(f"_{child.pid}_" in p.name for p in Path(log_dir).iterdir())
