"""A stream whose time goes back restarts (irstd_ros/ros/pipeline.py, "stream restarts"):
``ros2 bag play --clock --loop`` into a node on ``use_sim_time``, whose clock jumps back to
the bag's start at each loop, before or after the loop's first frame arrives.

Before: the loop's first frame, arriving while /clock was still at the bag's end, was
dropped as stale (a WARN each loop); when /clock went back before the bag's last frame
was delivered, that frame was a ``stamp_future`` error and the loop's first frame went on
with the old tracks, 9.8 s off, instead of starting afresh. The pipeline is driven here
as both nodes build it (submit on the 'executor', process on the 'worker'); the nodes'
clock-jump callbacks, in ``test_node_clock_jumps.py``.
"""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import Collect, frame_for, image_msg, make_detector  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from irstd_ros.ros.params import PARAMS  # noqa: E402
from irstd_ros.ros.pipeline import STREAM_RESTART_S, FramePipeline, Outputs  # noqa: E402

pytestmark = pytest.mark.ros
NS = 1_000_000_000
T0 = 1_790_000_000 * NS  # when the bag was recorded: the sim clock replays it
FRAMES = 100  # a 10 s bag at 10 Hz
STEP = NS // 10
LAG = 10_000_000  # the clock's lead over a frame's stamp at its arrival


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self) -> Log:  # the pipeline asks for its logger at each use
        return self

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    error = warning

    def said(self, level: str, start: str) -> int:
        return sum(1 for lv, t in self.lines if lv == level and t.startswith(start))


class Bag:
    """A FramePipeline fed as by a looping replay: ``deliver(stamp, clock)`` submits a frame
    stamped ``stamp`` with the node's clock at ``clock``, then processes what was queued."""

    def __init__(self, **params) -> None:
        self.clock = T0
        self.params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True} | params
        self.tracks = Collect()
        outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                          overlay=Collect(), tracks=Collect(), target_tracks=self.tracks)
        self.log = Log()
        self.pipe = FramePipeline(make_detector(), outputs, params=lambda: self.params,
                                  logger=self.log, clock_ns=lambda: self.clock)

    def deliver(self, stamp: int, clock: int | None = None, frame_id: str = "ir_cam") -> str:
        self.clock = stamp + LAG if clock is None else clock
        msg = image_msg(frame_for("mono8"), "mono8", frame_id=frame_id)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, NS)
        stale = self.pipe.stats.stale
        self.pipe.submit(msg)
        if self.pipe.stats.stale > stale:
            return "stale"
        queued, arrival = self.pipe._pending.popleft()
        assert self.pipe.process(queued, arrival)
        return "ok"

    def one_pass(self, frames: int = FRAMES) -> None:
        for k in range(frames):
            assert self.deliver(T0 + k * STEP) == "ok"

    def clock_back(self, to: int) -> None:
        """/clock went back to ``to`` (the nodes' jump callback calls restart_stream)."""
        back = self.clock - to
        self.clock = to
        self.pipe.restart_stream(f"the node's clock went back {back / NS:.1f} s", back)

    def ids(self) -> set[int]:
        return {t.id for t in self.tracks.msgs[-1].tracks}

    def restarts(self) -> int:
        return self.pipe.stats.restarts

    def quiet(self) -> bool:
        """No error, no stale frame, no WARN: a loop is no problem."""
        status = self.pipe.diagnostics("irstd").status[0]
        return (self.pipe.stats.errors == {} and self.pipe.stats.stale == 0
                and status.level == DiagnosticStatus.OK
                and self.log.said("warning", "") == 0)


def test_a_loop_s_first_frame_before_the_clock_goes_back_restarts_and_is_not_stale():
    """Scenario A: /clock (40 Hz) still at the bag's end when the loop's first frame comes."""
    bag = Bag()
    bag.one_pass()
    old = bag.ids()
    assert len(old) == 2
    assert bag.deliver(T0, clock=T0 + FRAMES * STEP) == "ok"  # before: stale
    assert bag.restarts() == 1 and bag.pipe.tracker is not None
    assert bag.pipe.tracker.last_stamp == T0 / NS  # its own stamp: no offset
    assert bag.ids().isdisjoint(old)  # new tentative tracks, ids counting on
    bag.clock_back(T0 + LAG)  # the jump arrives after the frame: no second restart
    for k in range(1, 6):
        assert bag.deliver(T0 + k * STEP) == "ok"
    assert bag.restarts() == 1
    assert len(bag.ids()) == 2 and bag.ids().isdisjoint(old)
    assert bag.quiet()
    values = {kv.key: kv.value for kv in bag.pipe.diagnostics("irstd").status[0].values}
    assert values["stream_restarts"] == "1"
    assert bag.log.said("info", "stream restarted (header stamps went back 9.9 s)") == 1


def test_frames_after_a_restart_the_clock_has_not_followed_are_aged_from_it():
    """/clock late by several frames: they are not stale, but one arriving later than
    input.max_age behind the restart frame's pace still is; and once the clock is back,
    ages are the clock's own."""
    bag = Bag()
    bag.one_pass()
    end = T0 + FRAMES * STEP
    assert bag.deliver(T0, clock=end) == "ok"
    assert bag.deliver(T0 + STEP, clock=end + STEP) == "ok"
    assert bag.deliver(T0 + 2 * STEP, clock=end + 2 * STEP + NS) == "stale"  # a second late
    assert bag.pipe.stats.stale == 1 and bag.restarts() == 1
    bag.clock_back(T0 + 3 * STEP)
    assert bag.deliver(T0 + 3 * STEP) == "ok"
    assert bag.deliver(T0 + 4 * STEP, clock=T0 + 4 * STEP + NS) == "stale"  # the clock's age
    assert bag.restarts() == 1


def test_the_bag_s_last_frame_after_the_clock_went_back_ends_the_old_stream():
    """Scenario B: /clock went back before the bag's last frame was delivered. Before: a
    stamp_future error, and the loop's first frame went on with the old tracks 9.8 s off."""
    bag = Bag()
    bag.one_pass(FRAMES - 1)
    old = bag.ids()
    bag.clock_back(T0 + LAG // 2)
    assert bag.deliver(T0 + (FRAMES - 1) * STEP, clock=T0 + LAG // 2) == "ok"
    assert bag.ids() == old and bag.restarts() == 0  # the old stream's last frame
    for k in range(5):
        assert bag.deliver(T0 + k * STEP) == "ok"
        if k == 0:
            assert bag.restarts() == 1 and bag.ids().isdisjoint(old)
    assert bag.pipe.tracker is not None and bag.pipe.tracker.last_stamp == (T0 + 4 * STEP) / NS
    assert bag.pipe._track_offset_ns == 0
    assert bag.restarts() == 1 and bag.quiet()


def test_the_ordinary_loop_restarts_once_without_an_error():
    """Scenario C: /clock goes back first, then the loop's frames: before, stamp_backwards
    and a tracker_reset warning each loop."""
    bag = Bag()
    for loop in range(3):
        bag.clock_back(T0)
        bag.one_pass(20)
        assert bag.restarts() == loop  # the first pass had no stream to restart
    assert bag.quiet()


def test_stamps_back_by_less_than_a_loop_are_still_stamp_backwards():
    assert STREAM_RESTART_S == 1.0  # README "Topics" and input.max_age's description say 1 s
    bag = Bag(**{"input.max_age": 0.0})
    bag.one_pass(10)
    step_back = round(STREAM_RESTART_S * NS) - STEP
    bag.deliver(T0 + 9 * STEP - step_back)
    assert bag.restarts() == 0 and bag.pipe.stats.errors["stamp_backwards"] == 1


def test_a_live_camera_s_late_frames_are_still_stale_after_a_stamp_glitch():
    """Live frames arrive in order: a late one is stale, not a restart. One stamped 5 s
    back (a glitch) restarts the stream and is not stale; the correct frames after it end
    the rebasing, so a late frame is stale again."""
    bag = Bag()
    bag.one_pass(10)
    now = T0 + 10 * STEP
    assert bag.deliver(now, clock=now + 2 * NS) == "stale"  # starved: 2 s late, in order
    assert bag.deliver(now + STEP - 5 * NS, clock=now + STEP) == "ok"  # the glitch
    assert bag.restarts() == 1
    assert bag.deliver(now + 2 * STEP) == "ok"
    assert bag.deliver(now + 3 * STEP, clock=now + 3 * STEP + 2 * NS) == "stale"
    assert bag.pipe.stats.stale == 2


def test_a_clock_jump_leaves_a_stream_of_another_time_base_alone():
    """A camera on the wall clock into a node on sim time (a simulation reset): its
    stamps did not go back; its tracks go on."""
    bag = Bag()
    for k in range(5):
        bag.deliver(T0 + k * STEP, clock=7 * NS + k * STEP)
    ids = bag.ids()
    bag.pipe.restart_stream("the node's clock went back 7.0 s", 7 * NS)
    bag.clock = LAG
    for k in range(5, 8):
        bag.deliver(T0 + k * STEP, clock=LAG + k * STEP)
    assert bag.restarts() == 0 and bag.ids() == ids and bag.pipe.stats.errors == {}


def test_a_switch_between_system_and_ros_time_restarts_the_stream():
    bag = Bag()
    bag.one_pass(5)
    ids = bag.ids()
    bag.pipe.restart_stream("the node's clock switched to ROS time")
    bag.deliver(T0 + 5 * STEP)
    assert bag.restarts() == 1 and bag.ids().isdisjoint(ids)


def test_unstamped_frames_restart_with_the_clock():
    """A looping replay of frames stamped 0: the clock is all there is to go by."""
    bag = Bag()
    for k in range(5):
        bag.deliver(0, clock=T0 + k * STEP)
    ids = bag.ids()
    bag.clock_back(T0)
    bag.deliver(0, clock=T0 + STEP)
    assert bag.restarts() == 1 and bag.ids().isdisjoint(ids)


def test_a_clock_back_and_forth_leaves_a_stream_whose_stamps_go_on_alone():
    """A stray /clock (a second publisher) back by 9 s, then the clock as before: the
    camera's stamps never went back, its tracks go on."""
    bag = Bag()
    bag.one_pass(20)
    ids = bag.ids()
    bag.clock_back(T0 + 11 * STEP)
    for k in range(20, 25):
        assert bag.deliver(T0 + k * STEP) == "ok"
    assert bag.restarts() == 0 and bag.ids() == ids and bag.quiet()


def test_a_frame_queued_before_the_clock_went_back_is_the_old_stream_s():
    """The jump applies from the first frame that arrived after it: the unstamped frame
    waiting in the queue when /clock went back goes on with the old tracks, the next
    restarts them."""
    bag = Bag()
    for k in range(5):
        bag.deliver(0, clock=T0 + k * STEP)
    ids = bag.ids()
    bag.clock = T0 + 5 * STEP
    unstamped = image_msg(frame_for("mono8"), "mono8", stamp=0)
    unstamped.header.stamp.nanosec = 0
    bag.pipe.submit(unstamped)
    bag.clock_back(T0)
    assert bag.pipe.process(*bag.pipe._pending.popleft())
    assert bag.restarts() == 0 and bag.ids() == ids
    bag.deliver(0, clock=T0 + STEP)
    assert bag.restarts() == 1 and bag.ids().isdisjoint(ids)


def test_a_frame_out_of_order_keeps_the_tracks_and_is_one_stamp_backwards():
    """A frame reordered by the network, 0.3 s late: before, it was a stamp_backwards and
    a tracker_reset (WARN), every track dropped and the targets given new ids. It is
    answered, not tracked: the tracks (and ids) go on, one stamp_backwards per such frame,
    counted by the tracker too (diagnostics ``tracks_out_of_order``)."""
    bag = Bag(**{"input.max_age": 0.0})
    bag.one_pass(10)
    ids, before = bag.ids(), bag.tracks.msgs[-1].tracks
    assert len(ids) == 2
    assert bag.deliver(T0 + 6 * STEP) == "ok"  # 0.3 s behind the latest
    assert bag.deliver(T0 + 7 * STEP) == "ok"  # later than the previous, still behind the latest
    assert bag.tracks.msgs[-1].tracks == before  # published as they were
    assert bag.deliver(T0 + 10 * STEP) == "ok"
    assert bag.ids() == ids and bag.restarts() == 0
    assert bag.pipe.stats.errors == {"stamp_backwards": 2}
    assert bag.log.said("warning", "stamp_backwards") == 1  # rate-limited
    assert bag.pipe.tracker is not None and bag.pipe.tracker.out_of_order == 2
    values = {kv.key: kv.value for kv in bag.pipe.diagnostics("irstd").status[0].values}
    assert values["tracks_out_of_order"] == "2" and values["errors.stamp_backwards"] == "2"


def test_stamps_back_over_the_threshold_from_the_latest_restart_the_stream():
    """Frames out of order, then one over 1 s behind the latest (but not the previous):
    a stream restart (info, no error), not a tracker_reset WARN."""
    bag = Bag(**{"input.max_age": 0.0})
    bag.one_pass(10)
    old = bag.ids()
    latest = T0 + 9 * STEP
    assert bag.deliver(latest - 6 * STEP) == "ok"  # out of order
    assert bag.deliver(latest - round(STREAM_RESTART_S * NS) - STEP) == "ok"
    assert bag.restarts() == 1 and bag.ids().isdisjoint(old)
    assert bag.pipe.stats.errors == {"stamp_backwards": 1}
    assert bag.pipe.tracker is not None and bag.pipe.tracker.resets == 0


def test_a_loop_after_a_late_frame_in_its_last_second_restarts_and_is_not_stale():
    """A 1.5 s bag whose last second had frames out of order, one of them dropped as stale:
    input.max_age took the loop's first frame as a restart only when it was over 1 s behind
    the previous frame submitted (0.8 s here: the stale one's), not the stream's latest
    (1.4 s), so it and every frame after it were stale until /clock went back."""
    bag = Bag()
    bag.one_pass(15)
    end = T0 + 14 * STEP
    assert bag.deliver(T0 + 11 * STEP, clock=end + LAG) == "ok"  # 0.3 s late: out of order
    assert bag.deliver(T0 + 8 * STEP, clock=end + 2 * LAG) == "stale"  # 0.6 s late
    for k in range(4):  # the loop, /clock still at the bag's end
        assert bag.deliver(T0 + k * STEP, clock=T0 + 15 * STEP) == "ok"
    assert bag.restarts() == 1 and bag.pipe.stats.stale == 1


def test_a_frame_behind_a_frame_that_failed_is_tracked_and_not_said_untracked(monkeypatch):
    """The stream's latest frame failed inference, so the tracker never saw it: a frame
    behind it is out of order for the stream (``stamp_backwards``) but not for the tracker,
    which tracks it; the warning said it was "answered but not tracked"."""
    bag = Bag(**{"input.max_age": 0.0})
    bag.one_pass(10)

    def fail(frame):
        raise RuntimeError("out of luck")

    monkeypatch.setattr(bag.pipe.detector, "detect", fail)
    msg = image_msg(frame_for("mono8"), "mono8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(T0 + 10 * STEP, NS)
    assert not bag.pipe.process(msg)
    monkeypatch.undo()
    between = T0 + 9 * STEP + STEP // 2  # behind the failed frame, after the latest tracked
    assert bag.deliver(between) == "ok"
    tracker = bag.pipe.tracker
    assert tracker is not None and tracker.last_skip is None and tracker.out_of_order == 0
    assert tracker.last_stamp == between / NS
    assert bag.pipe.stats.errors == {"inference_error": 1, "stamp_backwards": 1}
    (said,) = [t for lv, t in bag.log.lines if t.startswith("stamp_backwards")]
    assert "not tracked" not in said and "out of order" in said
    (tracks,) = bag.pipe.outputs.tracks.msgs[-1:]  # detected in it: stamped as the array
    assert {(d.header.stamp.sec, d.header.stamp.nanosec) for d in tracks.detections} == {
        divmod(between, NS)
    }
