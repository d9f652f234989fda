"""The ROS 2 environment `make setup` builds: rclpy, vision_msgs and irstd_ros.msg import,
are wire-compatible with upstream, and round-trip through a real DDS publisher/subscriber."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
vision_msgs = pytest.importorskip("vision_msgs.msg")
irstd_msg = pytest.importorskip("irstd_ros.msg")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECEIVE_TIMEOUT_S = 20.0

# RIHS01 type hashes of vision_msgs 4.1.x as generated upstream (ros-perception/vision_msgs,
# Jazzy/Kilted builds). Equal hashes = same fields, types and nesting = the venv's copy in
# underlay/ talks to a real vision_msgs installation.
UPSTREAM_VISION_MSGS_HASHES = {
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "VisionClass": "RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "VisionInfo": "RIHS01_95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284",
}


def share_dir(package: str) -> Path | None:
    """share/<package> of the install prefix that provides the Python module."""
    module = sys.modules[f"{package}.msg"]
    # <prefix>/lib/pythonX.Y/site-packages/<package>/msg/__init__.py -> <prefix>/share/<package>
    prefix = Path(module.__file__).resolve().parents[5]
    share = prefix / "share" / package
    return share if share.is_dir() else None


def test_generated_messages_and_sources_share_the_irstd_ros_package():
    import irstd_ros
    import irstd_ros.inference  # a source module

    # irstd_ros.msg is generated into an install prefix (the venv, or a colcon install),
    # the rest of irstd_ros comes from the sources (in the venv: this repository)
    src = Path(irstd_ros.inference.__file__).resolve().parent.parent
    assert (src / "__init__.py").is_file()
    if src == ROOT / "irstd_ros":  # the venv's editable install
        assert Path(irstd_msg.__file__).resolve().parent.parent != src
    assert {"Target", "TargetArray"} <= set(dir(irstd_msg))
    for name in ("Detection2DArray", "Detection2D", "BoundingBox2D", "Pose2D", "Point2D",
                 "ObjectHypothesis", "ObjectHypothesisWithPose", "LabelInfo", "VisionClass"):
        assert hasattr(vision_msgs, name), name


def test_vision_msgs_layout_is_the_4x_one():
    d = vision_msgs.Detection2D()
    assert isinstance(d.id, str)
    d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.theta = 1.5, 2.5, 0.0
    d.bbox.size_x, d.bbox.size_y = 3.0, 4.0
    hyp = vision_msgs.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id, hyp.hypothesis.score = "target", 0.9
    hyp.pose.pose.position.x = 1.5
    d.results.append(hyp)
    info = vision_msgs.LabelInfo()
    info.class_map.append(vision_msgs.VisionClass(class_id=1, class_name="target"))
    info.threshold = 0.5
    assert info.class_map[0].class_name == "target"


@pytest.mark.parametrize("name", sorted(UPSTREAM_VISION_MSGS_HASHES))
def test_vision_msgs_type_hashes_match_upstream(name):
    share = share_dir("vision_msgs")
    if share is None:
        pytest.skip("vision_msgs share/ not found next to its Python module")
    desc = json.loads((share / "msg" / f"{name}.json").read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in desc["type_hashes"]}
    assert hashes[f"vision_msgs/msg/{name}"] == UPSTREAM_VISION_MSGS_HASHES[name]


def test_target_fields_and_types():
    t = irstd_msg.Target()
    expected = {
        "id": "uint32", "score": "double", "x": "uint32", "y": "uint32", "width": "uint32",
        "height": "uint32", "centroid_x": "double", "centroid_y": "double", "area": "uint32",
        "peak_intensity": "double", "mean_intensity": "double", "local_contrast": "double",
        "snr": "double",
    }
    assert t.get_fields_and_field_types() == expected
    arr = irstd_msg.TargetArray()
    assert arr.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "targets": "sequence<irstd_ros/Target>"}


def test_msg_files_document_every_field():
    """Each field has a comment: on the line above, or at the end of its own line."""
    for path in sorted((ROOT / "msg").glob("*.msg")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.strip() or line.lstrip().startswith("#") or "#" in line:
                continue
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), (
                f"{path.name}: field '{line}' has no comment")


def make_detections() -> vision_msgs.Detection2DArray:
    msg = vision_msgs.Detection2DArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 17, 42
    msg.header.frame_id = "ir_cam"
    for i in range(3):
        d = vision_msgs.Detection2D()
        d.header = msg.header
        d.id = str(i)
        d.bbox.center.position.x, d.bbox.center.position.y = 10.0 + i, 20.5
        d.bbox.size_x, d.bbox.size_y = 3.0, 2.0
        h = vision_msgs.ObjectHypothesisWithPose()
        h.hypothesis.class_id, h.hypothesis.score = "target", 0.5 + 0.1 * i
        d.results.append(h)
        msg.detections.append(d)
    return msg


def make_targets() -> irstd_msg.TargetArray:
    msg = irstd_msg.TargetArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 17, 42
    msg.header.frame_id = "ir_cam"
    for i in range(3):
        msg.targets.append(irstd_msg.Target(
            id=i, score=0.9 - 0.1 * i, x=10 + i, y=20, width=3, height=2,
            centroid_x=11.25 + i, centroid_y=20.5, area=5, peak_intensity=4095.0,
            mean_intensity=3000.5, local_contrast=1200.25, snr=math.inf if i == 2 else 17.5,
        ))
    return msg


@pytest.mark.parametrize("factory", [make_detections, make_targets], ids=["detections", "targets"])
def test_serialization_round_trip(factory):
    msg = factory()
    assert deserialize_message(serialize_message(msg), type(msg)) == msg


@pytest.mark.parametrize("reliability", [ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT],
                         ids=["reliable", "best_effort"])
@pytest.mark.parametrize("factory", [make_detections, make_targets], ids=["detections", "targets"])
def test_pub_sub_round_trip_between_two_nodes(rclpy_context, factory, reliability):
    sent = factory()
    msg_type = type(sent)
    qos = QoSProfile(depth=10, reliability=reliability)
    topic = f"irstd_env_test_{os.getpid()}_{msg_type.__name__.lower()}"
    pub_node = rclpy.create_node("irstd_env_pub")
    sub_node = rclpy.create_node("irstd_env_sub")
    received = []
    pub = pub_node.create_publisher(msg_type, topic, qos)
    sub_node.create_subscription(msg_type, topic, received.append, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "subscriber never matched the publisher"
            executor.spin_once(timeout_sec=0.05)
        # best effort may drop a sample while discovery settles: publish until one arrives
        next_publish = 0.0
        while not received:
            assert time.monotonic() < deadline, "nothing received"
            if time.monotonic() >= next_publish:
                pub.publish(sent)
                next_publish = time.monotonic() + 0.5
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    assert received[0] == sent


@pytest.mark.slow
def test_full_colcon_build_installs_a_ros2_run_layout(tmp_path):
    """The root CMakeLists.txt as a ROS install builds it (not interfaces-only), against the
    venv's ROS prefix: messages, Python sources and executables in one install tree."""
    import shutil
    import subprocess

    bindir = Path(sys.executable).parent
    colcon = bindir / "colcon"
    if not colcon.is_file() or shutil.which("cmake") is None:
        pytest.skip("colcon/cmake not available")
    prefix = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    env.update(AMENT_PREFIX_PATH=str(prefix), CMAKE_PREFIX_PATH=str(prefix),
               PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}")
    # A copy of the package: in the project's layout the venv (and so numpy's include
    # dir, which the generated targets export) lies inside the repository, which CMake
    # refuses for an install prefix outside it.
    src = tmp_path / "src" / "irstd_ros"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in ("CMakeLists.txt", "package.xml", "msg", "irstd_ros", "scripts", "launch",
                 "config", "models"):
        path = ROOT / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=ignore)
        elif path.is_file():
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / item)
    install = tmp_path / "install"
    cmd = [str(colcon), "--log-base", str(tmp_path / "log"), "build", "--paths", str(src),
           "--build-base", str(tmp_path / "build"), "--install-base", str(install),
           "--merge-install", "--event-handlers", "console_cohesion+",
           "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
           f"-DCMAKE_PROJECT_INCLUDE={ROOT / 'underlay' / 'cmake' / 'fix_wheel_paths.cmake'}"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

    for exe in ("irstd_node", "irstd_lifecycle_node"):
        assert os.access(install / "lib" / "irstd_ros" / exe, os.X_OK)
    assert (install / "share" / "irstd_ros" / "launch" / "irstd.launch.py").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "irstd_ros").is_file()
    site = next((install / "lib").glob("python3*/site-packages"))
    code = ("import irstd_ros, irstd_ros.msg, irstd_ros.ros.launch_args as a; "
            "print(irstd_ros.__file__); print(irstd_ros.msg.__file__); print(a.__file__)")
    env.update(PYTHONPATH=str(site),
               LD_LIBRARY_PATH=f"{install / 'lib'}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}")
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # sources and generated messages side by side in one installed package
    assert all(line.startswith(str(site / "irstd_ros")) for line in out.stdout.split())
    head = (site / "irstd_ros" / "__init__.py").read_text()
    assert "extend_path" in head  # the sources' __init__.py, not the generated one
