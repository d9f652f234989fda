"""Both nodes watch their clock (irstd_ros.ros.node.watch_clock): with ``use_sim_time``, a
``ros2 bag play --clock --loop`` sends /clock back to the bag's start at each loop, and the
stream restarts with it (the rules: test_stream_restart.py). Before, nothing listened to
clock jumps: the bag's last frame, delivered after /clock went back, was a stamp_future
error, and the loop went on with the old tracks."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import Harness, frame_for, image_msg, make_detector  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.time import Time  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from irstd_ros.ros.lifecycle_node import IrstdLifecycleNode  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402

pytestmark = pytest.mark.ros
NS = 1_000_000_000
T0 = 1_790_000_000 * NS  # the bag's start
STEP = NS // 10
SIM_TIME = Parameter("use_sim_time", value=True)
SUCCESS = TransitionCallbackReturn.SUCCESS


class SimHarness(Harness):
    """The node on sim time; the peer publishes /clock as ``ros2 bag play --clock`` does."""

    def __init__(self, node: IrstdNode) -> None:
        super().__init__(node)
        self.clock_pub = self.peer.create_publisher(Clock, "/clock", 10)

    def set_clock(self, t: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(t, NS)
        self.clock_pub.publish(msg)
        self.spin_until(lambda: self.node.get_clock().now().nanoseconds == t)

    def frame(self, t: int) -> None:
        msg = image_msg(frame_for("mono8"), "mono8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, NS)
        self.send(msg, expect_answers=1)


def test_the_plain_node_restarts_the_stream_when_its_clock_goes_back(rclpy_context):
    h = SimHarness(IrstdNode(detector=make_detector(), parameter_overrides=[SIM_TIME]))
    try:
        for k in range(20):
            h.set_clock(T0 + k * STEP + 5_000_000)
            h.frame(T0 + k * STEP)
        h.set_clock(T0 + 5_000_000)  # the loop: /clock back before the last frame came
        h.frame(T0 + 20 * STEP)  # the old stream's last frame: no stamp_future
        assert h.node.stats.errors == {} and h.node.stats.restarts == 0
        h.frame(T0)  # the loop's first frame
        assert h.node.stats.restarts == 1
        assert h.node.pipeline.tracker is not None
        assert h.node.pipeline.tracker.last_stamp == T0 / NS and h.node.stats.errors == {}
    finally:
        h.close()
    assert h.node._clock_watch is None  # unregistered before the node was destroyed


def test_the_lifecycle_node_watches_its_clock_while_configured(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector, parameter_overrides=[SIM_TIME])
    clock = node.get_clock()

    def jump_to(t: int) -> None:  # as the node's TimeSource does on /clock
        clock.set_ros_time_override(Time(nanoseconds=t, clock_type=clock.clock_type))

    try:
        jump_to(T0 + 10 * NS)
        assert node.trigger_configure() == SUCCESS
        pipeline = node.pipeline
        assert pipeline is not None and node._clock_watch is not None
        jump_to(T0 + 9 * NS + STEP)  # back less than a loop-like amount: no restart
        assert pipeline._clock_restart is None
        jump_to(T0)
        assert pipeline._clock_restart is not None
        assert pipeline._clock_restart[0] == "the node's clock went back 9.1 s"
        assert node.trigger_cleanup() == SUCCESS
        assert node._clock_watch is None
        jump_to(T0 + 10 * NS)
        jump_to(T0)  # unconfigured: nothing watches, nothing fails
        assert node.trigger_configure() == SUCCESS
        node.set_parameters([Parameter("use_sim_time", value=False)])
        assert node.pipeline is not None and node.pipeline._clock_restart is not None
        assert node.pipeline._clock_restart[0] == "the node's clock switched to system time"
    finally:
        node.close()
    assert node._clock_watch is None
