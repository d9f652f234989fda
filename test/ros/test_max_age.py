"""``input.max_age``: frames whose live header stamp is older than it on arrival are
dropped and counted (``stale`` in the stats and /diagnostics); stamps of another time
base (a replayed bag, a test's small numbers) are never stale; 0 disables the check."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import Harness, frame_for, image_msg, make_detector  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from irstd_ros.core.constants import LIVE_STAMP_WINDOW_S  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402

pytestmark = pytest.mark.ros
NS = 1_000_000_000


def aged(h: Harness, age_s: float, stamp_s: int = 0):
    """A frame stamped ``age_s`` before the node's clock (``stamp_s``: a fixed stamp)."""
    msg = image_msg(frame_for("mono8"), "mono8")
    t = stamp_s * NS if stamp_s else h.node.get_clock().now().nanoseconds - round(age_s * NS)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, NS)
    return msg


def diag(h: Harness) -> dict[str, str]:
    return {kv.key: kv.value for kv in h.node.diagnostics().status[0].values}


@pytest.fixture
def make(rclpy_context):
    made = []

    def make(*overrides: Parameter) -> Harness:
        h = Harness(IrstdNode(detector=make_detector(), parameter_overrides=list(overrides)))
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_default_is_half_a_second():
    from irstd_ros.ros.params import SPECS

    assert SPECS["input.max_age"].default == 0.5


def test_stale_live_frames_are_dropped_and_counted(make):
    h = make(Parameter("input.max_age", value=0.5))
    h.send(aged(h, 2.0))  # starved: two seconds old on arrival
    h.spin_until(lambda: h.node.stats.stale == 1)
    h.send(aged(h, 0.0), expect_answers=1)  # fresh
    assert len(h.got["detections"]) == 1
    stats = h.node.stats
    assert (stats.received, stats.stale, stats.processed, stats.dropped) == (2, 1, 1, 0)
    status = h.node.diagnostics().status[0]
    assert {kv.key: kv.value for kv in status.values}["stale"] == "1"
    assert status.level == status.WARN
    h.send(aged(h, 0.0), expect_answers=1)
    later = h.node.diagnostics().status[0]  # nothing stale since: the warning clears
    assert later.level == later.OK and diag(h)["stale"] == "1"


def test_replayed_and_synthetic_stamps_are_not_stale(make):
    h = make(Parameter("input.max_age", value=0.5))
    h.send(aged(h, LIVE_STAMP_WINDOW_S * 10), expect_answers=1)  # a bag recorded earlier
    h.send(aged(h, 0.0, stamp_s=7), expect_answers=1)  # a stamp of 7 s since the epoch
    h.send(image_msg(frame_for("mono8"), "mono8", stamp=0), expect_answers=1)  # no stamp
    assert h.node.stats.stale == 0


def test_zero_disables_and_the_value_changes_at_run_time(make):
    h = make(Parameter("input.max_age", value=0.0))
    h.send(aged(h, 5.0), expect_answers=1)
    assert h.node.stats.stale == 0
    assert h.node.set_parameters([Parameter("input.max_age", value=1.0)])[0].successful
    h.send(aged(h, 5.0))
    h.spin_until(lambda: h.node.stats.stale == 1)
    assert not h.node.set_parameters([Parameter("input.max_age", value=-1.0)])[0].successful


def test_a_stamp_that_does_not_advance_is_not_judged_stale(make):
    """A live camera that stamps every frame alike: before, once the stamp was max_age old
    every frame was dropped as stale (for a minute, until the stamp left the live window),
    although the frames were new. A stamp repeated once is still judged."""
    h = make(Parameter("input.max_age", value=0.5))
    old = aged(h, 2.0)
    h.send(old)
    h.spin_until(lambda: h.node.stats.stale == 1)
    h.send(old)  # the same stale frame again: still stale
    h.spin_until(lambda: h.node.stats.stale == 2)
    for _ in range(3):  # the third, fourth... frame with it: the stamp does not advance
        h.send(old, expect_answers=1)
    assert h.node.stats.stale == 2 and h.node.stats.processed == 3
