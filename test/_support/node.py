"""The in-process node harness of the ROS tests: a test backend, frames in every encoding,
and the node under test beside a peer node that publishes images and collects outputs.
Import only where rclpy and the interfaces are importable (the ``ros`` tests)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.inference.detector import Detector
from irstd_ros.models import named_config
from irstd_ros.msg import TargetArray
from irstd_ros.ros.conversions import ENCODINGS, array_to_image_fields
from irstd_ros.ros.node import IrstdNode

TIMEOUT_S = 10.0
H, W = 48, 64
BLOBS = ((slice(5, 8), slice(10, 13)), (slice(30, 32), slice(40, 45)))  # 9 px and 10 px


class Collect:
    """A publisher stand-in that keeps what is published (``msgs``), for pipelines run
    without a node."""

    def __init__(self) -> None:
        self.msgs: list = []

    def publish(self, msg) -> None:
        self.msgs.append(msg)


class IntensityBackend:
    """Test backend: the [0, 1] frame is the probability; optional delay."""

    name = "intensity"
    device = "cpu"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def predict(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return frame.astype(np.float32)

    def describe(self) -> dict:
        return {"backend": self.name}


def make_detector(delay: float = 0.0, **info: Any) -> Detector:
    """The intensity backend behind a ``tiny`` checkpoint's info (``info``: its fields)."""
    return Detector(IntensityBackend(delay), CheckpointInfo(named_config("tiny"), threshold=0.5, **info))


def frame_for(encoding: str) -> np.ndarray:
    """A dark frame with two bright blobs, in ``encoding``'s dtype and channels."""
    enc = ENCODINGS[encoding]
    if enc.dtype.kind == "f":
        base, hot = 0.1, 0.9
    else:
        top = np.iinfo(enc.dtype).max
        base, hot = top // 10, top
    f = np.full((H, W), base, dtype=enc.dtype)
    for sl in BLOBS:
        f[sl] = hot
    if enc.channels > 1:
        f = np.repeat(f[..., None], enc.channels, axis=2)
    return f


def compressed_msg(
    data: bytes, fmt: str, stamp: int = 1, frame_id: str = "ir_cam"
) -> CompressedImage:
    """A CompressedImage of encoded ``data`` (:mod:`_support.compressed`), stamped as
    :func:`image_msg` stamps its frames."""
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec = stamp
    msg.header.stamp.nanosec = 123
    msg.header.frame_id = frame_id
    return msg


def image_msg(arr: np.ndarray, encoding: str, stamp: int = 1, frame_id: str = "ir_cam") -> Image:
    msg = Image()
    for k, v in array_to_image_fields(arr, encoding).items():
        setattr(msg, k, v)
    msg.header.stamp.sec = stamp
    msg.header.stamp.nanosec = 123
    msg.header.frame_id = frame_id
    return msg


class Harness:
    """The node under test plus a peer node publishing images and collecting outputs."""

    def __init__(
        self, node: IrstdNode, reliability: str = "reliable", start_timeout: float = TIMEOUT_S,
        topic: str = "image", msg_type: type = Image,
    ) -> None:
        """Takes ``node`` over: closed by :meth:`close`, or here when the harness cannot start
        (the caller's try/finally begins after this returns). ``topic``, ``msg_type``: what
        the peer publishes frames as (``image/compressed``, CompressedImage: the node's
        ``input.transport`` compressed)."""
        self.node = node
        self.peer: Any = None
        self.executor = SingleThreadedExecutor()
        try:
            self.peer = rclpy.create_node("irstd_test_peer")
            rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
            self.pub = self.peer.create_publisher(msg_type, topic, QoSProfile(depth=10, reliability=rel))
            self.got: dict[str, list] = {"mask": [], "detections": [], "targets": []}
            self._subscribe()
            self.executor.add_node(node)
            self.executor.add_node(self.peer)
            self.spin_until(lambda: self.pub.get_subscription_count() > 0, start_timeout)
        except BaseException:
            self.close()
            raise

    def _subscribe(self) -> None:
        """The peer's subscriptions (made before the first spin); subclasses add theirs."""
        for topic, typ in (("mask", Image), ("detections", Detection2DArray), ("targets", TargetArray)):
            self.peer.create_subscription(typ, topic, self.got[topic].append, 10)

    def spin_until(self, cond, timeout: float = TIMEOUT_S) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for the node")
            self.executor.spin_once(timeout_sec=0.05)

    def send(self, msg: Image, expect_answers: int | None = None) -> None:
        """Publish ``msg``; with ``expect_answers``, wait until that many more detections
        arrived and the node has finished those frames (it counts a frame once all its
        outputs are out, after the detections)."""
        before, done = len(self.got["detections"]), self.node.stats.processed
        self.pub.publish(msg)
        if expect_answers is not None:
            self.spin_until(lambda: len(self.got["detections"]) >= before + expect_answers
                            and self.node.stats.processed >= done + expect_answers)

    def close(self) -> None:
        """Shut the executor down, close the node and destroy the peer, each even when an
        earlier step raised."""
        try:
            self.executor.shutdown()
        finally:
            try:
                self.node.close()
            finally:
                if self.peer is not None:
                    self.peer.destroy_node()




class LogCapture:
    """Stands in for the node's logger: records (level, text)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def __getattr__(self, level: str):
        return lambda text, *a, **k: self.records.append((level, str(text)))

    def count(self, level: str, needle: str) -> int:
        return sum(1 for lv, t in self.records if lv == level and needle in t)

    def warnings(self, kind: str) -> int:
        return sum(1 for lv, t in self.records if lv == "warning" and t.startswith(f"{kind}:"))


def logged_harness(node: IrstdNode) -> tuple[Harness, LogCapture]:
    """A :class:`Harness` around ``node``, whose logger is replaced by a :class:`LogCapture`."""
    log = LogCapture()
    node.get_logger = lambda: log  # type: ignore[method-assign]
    return Harness(node), log
