"""replay and record through rclpy, against a tiny echo node (no irstd node needed)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _support.bags import TINY, make_bag
from _support.cli import one_error_line, run_cli

from irstd_ros.bags.io import (
    IMAGE_TOPIC,
    TRUTH_MASK_TOPIC,
    TRUTH_TARGETS_TOPIC,
    BagReader,
    BagWriter,
    image_msg,
)
from irstd_ros.bags.record import RecordConfig, Recorder, record
from irstd_ros.bags.replay import ReplayConfig, parse_remap, replay
from irstd_ros.bags.rosutil import cdr_header_stamp, ros_session
from irstd_ros.errors import BagError, ConfigError
from irstd_ros.testing import NodeProcess

pytestmark = pytest.mark.ros

FRAMES = 10  # at 10 fps: 0.9 s of bag
TIMING_TOLERANCE_S = 0.12


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return make_bag(tmp_path_factory.mktemp("replay") / "bag", frames=FRAMES)


class Sink:
    """Receive times and stamps of the messages of one topic."""

    def __init__(self, node, topic: str, delay_s: float = 0.0, echo_to: str | None = None) -> None:
        from sensor_msgs.msg import Image

        self.times: list[float] = []
        self.stamps: list[int] = []
        self.delay_s = delay_s
        self.pub = node.create_publisher(Image, echo_to, 10) if echo_to else None
        node.create_subscription(Image, topic, self.on_raw, 10, raw=True)

    def on_raw(self, raw: bytes) -> None:
        self.times.append(time.monotonic())
        self.stamps.append(cdr_header_stamp(raw))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.pub is not None:
            self.pub.publish(raw)


@pytest.mark.parametrize("rate", [1.0, 3.0])
def test_replay_follows_the_recorded_timing_scaled_by_rate(rclpy_context, bag, rate):
    with ros_session("sink") as peer, ros_session("player") as player:
        sink = Sink(peer, IMAGE_TOPIC)
        stats = replay(ReplayConfig(bag, rate=rate, progress=False), node=player)
        deadline = time.monotonic() + 2.0
        while len(sink.times) < FRAMES and time.monotonic() < deadline:
            time.sleep(0.02)
    assert stats.published == FRAMES and len(sink.times) == FRAMES
    assert stats.unacked_topics == []  # the subscriber acknowledged everything before the end
    expected = (FRAMES - 1) / TINY.fps / rate
    assert sink.times[-1] - sink.times[0] == pytest.approx(expected, abs=TIMING_TOLERANCE_S)
    assert stats.wall_s == pytest.approx(expected, abs=TIMING_TOLERANCE_S)
    assert sink.stamps == sorted(sink.stamps)  # recorded order, original stamps
    assert sink.stamps[0] == TINY.start_time_ns


def test_start_offset_remap_and_loop(rclpy_context, bag):
    with ros_session("sink") as peer, ros_session("player") as player:
        sink = Sink(peer, "/image")
        cfg = ReplayConfig(
            bag,
            remaps=(parse_remap("/camera/image:=/image"),),
            start_offset=0.5,
            rate=5.0,
            loop=True,
            progress=False,
        )
        n_after_offset = FRAMES - 5

        def stop_after_two_loops() -> bool:
            return len(sink.times) >= 2 * n_after_offset

        stats = replay(cfg, node=player, should_stop=stop_after_two_loops)
    assert stats.loops >= 2
    # a loop runs until Ctrl-C: nothing is kept per message (a list of lateness grew forever)
    assert isinstance(stats.max_lateness_ms, float)
    assert not [k for k, v in vars(stats).items() if isinstance(v, list) and len(v) >= stats.published]
    first = sink.stamps[:n_after_offset]
    assert first[0] == TINY.start_time_ns + 500_000_000
    assert sink.stamps[n_after_offset : 2 * n_after_offset] == first


@pytest.mark.parametrize(
    ("topics", "remaps", "message"),
    [
        # another type: rclpy's RCLError traceback before
        ((IMAGE_TOPIC, TRUTH_TARGETS_TOPIC), (f"{TRUTH_TARGETS_TOPIC}:={IMAGE_TOPIC}",),
         f"{IMAGE_TOPIC} and {TRUTH_TARGETS_TOPIC} (--remap {TRUTH_TARGETS_TOPIC}:={IMAGE_TOPIC}) "
         f"would both be published on {IMAGE_TOPIC}"),
        # the same type: two streams merged on one topic in silence before
        ((IMAGE_TOPIC, TRUTH_MASK_TOPIC), (f"{TRUTH_MASK_TOPIC}:={IMAGE_TOPIC}",),
         f"would both be published on {IMAGE_TOPIC}"),
        ((IMAGE_TOPIC, TRUTH_MASK_TOPIC), (f"{IMAGE_TOPIC}:=/x", f"{TRUTH_MASK_TOPIC}:=x"),
         "would both be published on /x"),
        # the last one kept in silence before
        ((IMAGE_TOPIC,), (f"{IMAGE_TOPIC}:=/a", f"{IMAGE_TOPIC}:=/b"),
         f"--remap {IMAGE_TOPIC}:=/a and --remap {IMAGE_TOPIC}:=/b: {IMAGE_TOPIC} remapped twice"),
    ],
    ids=["onto a topic of another type", "onto a topic of the same type", "two onto one name",
         "one topic twice"],
)
def test_remap_collisions_are_refused_up_front_in_one_line(
    rclpy_context, bag, capsys, topics, remaps, message
):
    args = [a for t in topics for a in ("--topic", t)] + [a for r in remaps for a in ("--remap", r)]
    started = time.monotonic()
    code, err = run_cli(capsys, "replay", str(bag), *args, "--wait-subscribers", "5")
    assert code != 0
    assert message in one_error_line(err)
    assert time.monotonic() - started < 3  # before waiting for subscribers


def test_remapping_a_topic_onto_its_own_name_or_a_free_one_is_no_collision(rclpy_context, bag):
    from irstd_ros.bags.replay import published_names

    cfg = ReplayConfig(
        bag, topics=(IMAGE_TOPIC, TRUTH_MASK_TOPIC),
        remaps=(parse_remap(f"{IMAGE_TOPIC}:={IMAGE_TOPIC}"), parse_remap(f"{TRUTH_MASK_TOPIC}:=/m"),
                parse_remap(f"{TRUTH_MASK_TOPIC}:=/m")),
    )
    cfg.validate()
    assert published_names(cfg, lambda name: name) == {IMAGE_TOPIC: IMAGE_TOPIC, TRUTH_MASK_TOPIC: "/m"}


def test_sync_waits_for_a_slow_consumer(rclpy_context, bag):
    delay = 0.15
    with ros_session("echo") as echo, ros_session("player") as player:
        sink = Sink(echo, IMAGE_TOPIC, delay_s=delay, echo_to="/echo")
        cfg = ReplayConfig(bag, rate=10.0, sync_topic="/echo", sync_timeout=2.0, progress=False)
        stats = replay(cfg, node=player)
    assert stats.published == FRAMES and stats.sync_timeouts == 0
    assert len(sink.stamps) == FRAMES  # nothing dropped
    assert stats.wall_s >= (FRAMES - 1) * delay


def test_sync_waits_once_per_frame_when_several_topics_share_its_stamps(rclpy_context, bag):
    with ros_session("echo") as echo, ros_session("player") as player:
        Sink(echo, IMAGE_TOPIC, echo_to="/echo")
        cfg = ReplayConfig(
            bag, topics=(IMAGE_TOPIC, TRUTH_TARGETS_TOPIC), rate=10.0, sync_topic="/echo",
            sync_timeout=1.0, progress=False,
        )
        stats = replay(cfg, node=player)
    # the truth of each frame carries the image's stamp, already answered: no wait for it
    assert stats.published == 2 * FRAMES and stats.sync_timeouts == 0
    assert stats.wall_s < FRAMES * cfg.sync_timeout / 2


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_writes_a_bag_and_stops_after_max_messages(rclpy_context, bag, tmp_path, storage):
    """sqlite3 too: its connection was opened on the main thread and written from the
    executor's, which sqlite refuses ("stopped after 0 messages")."""
    out = tmp_path / "rec"
    result = {}

    def run_record() -> None:
        cfg = RecordConfig(
            out, topics=("/echo",), storage=storage, max_messages=FRAMES, discovery_timeout=10.0,
            progress=False,
        )
        result["stats"] = record(cfg)

    with ros_session("echo") as echo, ros_session("player") as player:
        Sink(echo, IMAGE_TOPIC, echo_to="/echo")
        thread = threading.Thread(target=run_record)
        thread.start()
        time.sleep(1.0)  # the recorder discovers /echo
        replay(ReplayConfig(bag, rate=4.0, progress=False), node=player)
        thread.join(10.0)
    stats = result["stats"]
    assert stats.stopped_by == "max_messages" and stats.counts == {"/echo": FRAMES}
    with BagReader(out) as r:
        assert r.topics["/echo"].count == FRAMES
        stamps = [cdr_header_stamp(raw) for _, _, _, raw in r.raw_messages()]
        frames = [m for _, _, m in r.messages()]
    assert stamps[0] == TINY.start_time_ns
    assert (
        frames[0].width == TINY.width
        and np.asarray(frames[0].data).size == TINY.width * TINY.height
    )


def test_recorder_idle_timeout_and_known_types(rclpy_context, bag, tmp_path):
    with ros_session("rec") as node, ros_session("player") as player:
        rec = Recorder(
            node,
            RecordConfig(
                tmp_path / "r",
                topics=(IMAGE_TOPIC,),
                known_types=((IMAGE_TOPIC, "sensor_msgs/msg/Image"),),
            ),
        )
        assert rec.missing == []  # subscribed before any publisher exists
        replay(ReplayConfig(bag, rate=5.0, progress=False), node=player)
        time.sleep(0.3)
        rec.close()
        assert rec.counts == {IMAGE_TOPIC: FRAMES}


@pytest.mark.parametrize(("topic", "known"), [("targets", "/targets"), ("/targets", "targets")])
def test_a_known_type_is_matched_to_its_topic_as_the_recorder_resolves_both(rclpy_context, tmp_path, topic, known):
    """``--topics targets --type /targets=...`` was refused as "not recorded", although the
    recorder (in the root namespace) subscribes both as /targets."""
    cfg = RecordConfig(tmp_path / "r", topics=(topic,), known_types=((known, "sensor_msgs/msg/Image"),))
    with ros_session("rec") as node:
        rec = Recorder(node, cfg)
        try:
            assert rec.topics == ["/targets"] and rec.missing == []  # subscribed at once
        finally:
            rec.close()


def test_record_without_publishers_fails_and_leaves_no_bag(rclpy_context, tmp_path):
    cfg = RecordConfig(
        tmp_path / "none", topics=("/nobody",), discovery_timeout=0.5, progress=False
    )
    with pytest.raises(BagError, match="no publisher"):
        record(cfg)
    assert not (tmp_path / "none").exists()


class _FakeNode:
    """The part of an rclpy node that a Recorder uses; its callbacks are called by hand."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, object] = {}
        self.timers: list[object] = []

    def resolve_topic_name(self, topic):
        return topic

    def create_timer(self, period, callback):
        self.timers.append(callback)
        return callback

    def destroy_timer(self, timer):
        pass

    def get_topic_names_and_types(self):
        return []

    def get_publishers_info_by_topic(self, topic):
        return []

    def create_subscription(self, cls, topic, callback, qos, raw=False):
        self.subscriptions[topic] = callback
        return topic

    def destroy_subscription(self, sub):
        pass


def test_a_recorder_that_fails_to_start_leaves_no_bag_and_an_old_bag_intact(tmp_path, bag):
    unknown = (("/x", "no_such_msgs/msg/Thing"),)
    out = tmp_path / "rec"
    with pytest.raises(BagError, match="not importable"):
        Recorder(_FakeNode(), RecordConfig(out, topics=("/x",), known_types=unknown))
    assert not out.exists()
    old = tmp_path / "old"
    shutil.copytree(bag, old)
    with pytest.raises(BagError, match="not importable"):
        Recorder(_FakeNode(), RecordConfig(old, topics=("/x",), known_types=unknown, overwrite=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    with BagReader(old) as r:
        assert r.topics[IMAGE_TOPIC].count == FRAMES


def test_a_failure_in_a_callback_stops_the_recording_with_an_error_and_keeps_what_was_written(
    tmp_path, monkeypatch
):
    from irstd_ros.bags import record as record_module

    node = _FakeNode()
    cfg = RecordConfig(
        tmp_path / "rec", topics=("/img",), known_types=(("/img", "sensor_msgs/msg/Image"),)
    )
    rec = Recorder(node, cfg)
    with BagReader(make_bag(tmp_path / "src", frames=2)) as r:
        raws = [raw for _, _, _, raw in r.raw_messages([IMAGE_TOPIC])]
    node.subscriptions["/img"](raws[0])
    rec.flush()  # written (on the bag's thread) before the disk fills
    real_write = rec._bag.write_raw

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rec._bag, "write_raw", disk_full)
    node.subscriptions["/img"](raws[1])  # the callback returns; the failure is kept
    rec.flush()
    monkeypatch.setattr(rec._bag, "write_raw", real_write)
    node.subscriptions["/img"](raws[1])  # nothing more is written after a failure
    rec.flush()
    monkeypatch.setattr(record_module, "ros_ok", lambda: True)
    with pytest.raises(BagError, match=r"stopped after 1 messages: .*No space left"):
        record_module._wait(rec, cfg, time.monotonic(), None, lambda: False)
    rec.close(keep=True)
    with BagReader(cfg.out) as r:
        assert r.topics["/img"].count == 1


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_the_bag_is_written_from_any_thread_the_messages_arrive_on(tmp_path, storage):
    """The bag is opened on one thread, its topics declared and messages written on others
    (discovery and the executor's callbacks), closed on a third: sqlite3 allows none of that
    on its own."""
    node = _FakeNode()
    cfg = RecordConfig(
        tmp_path / "rec", topics=("/img",), known_types=(("/img", "sensor_msgs/msg/Image"),),
        storage=storage,
    )
    with BagReader(make_bag(tmp_path / "src", frames=3)) as r:
        raws = [raw for _, _, _, raw in r.raw_messages([IMAGE_TOPIC])]
    rec = Recorder(node, cfg)
    for raw in raws:
        callback = threading.Thread(target=node.subscriptions["/img"], args=(raw,))
        callback.start()
        callback.join()
    rec.flush()
    assert rec.error is None and rec.counts == {"/img": len(raws)}
    closer = threading.Thread(target=rec.close)
    closer.start()
    closer.join()
    with BagReader(cfg.out) as r:
        assert r.topics["/img"].count == len(raws)
        assert [bytes(raw) for _, _, _, raw in r.raw_messages()] == [bytes(raw) for raw in raws]


def test_max_messages_is_the_number_of_messages_in_the_bag(tmp_path, monkeypatch):
    """Messages that arrive between the limit and the main thread's stop are left out
    (before: a fast stream recorded 4 of --max-messages 3)."""
    from irstd_ros.bags import record as record_module

    node = _FakeNode()
    cfg = RecordConfig(
        tmp_path / "rec", topics=("/img",), known_types=(("/img", "sensor_msgs/msg/Image"),),
        max_messages=2,
    )
    rec = Recorder(node, cfg)
    with BagReader(make_bag(tmp_path / "src", frames=4)) as r:
        raws = [raw for _, _, _, raw in r.raw_messages([IMAGE_TOPIC])]
    for raw in raws:  # all arrive before the main thread looks at the count
        node.subscriptions["/img"](raw)
    monkeypatch.setattr(record_module, "ros_ok", lambda: True)
    assert record_module._wait(rec, cfg, time.monotonic(), None, lambda: False) == "max_messages"
    rec.close(keep=True)
    assert rec.counts == {"/img": 2}
    with BagReader(cfg.out) as r:
        assert r.topics["/img"].count == 2
        assert [cdr_header_stamp(raw) for _, _, _, raw in r.raw_messages()] == [
            cdr_header_stamp(raw) for raw in raws[:2]
        ]


def _recorder_of(node, tmp_path, **changes) -> tuple[Recorder, list[bytes]]:
    """A recorder of /img (an Image topic, subscribed at once) on ``node``, and 5 frames' CDR."""
    cfg = RecordConfig(
        tmp_path / "rec", topics=("/img",), known_types=(("/img", "sensor_msgs/msg/Image"),),
        progress=False, **changes,
    )
    with BagReader(make_bag(tmp_path / "src", frames=5)) as r:
        raws = [raw for _, _, _, raw in r.raw_messages([IMAGE_TOPIC])]
    return Recorder(node, cfg), raws


class _SlowDisk:
    """``write_raw`` of a bag that waits for :attr:`gate` before each write (a disk that
    does not keep up); counts the writes done."""

    def __init__(self, monkeypatch, rec: Recorder) -> None:
        self.gate = threading.Event()
        self.written = 0
        real = rec._bag.write_raw

        def write_raw(*args):
            if not self.gate.wait(10.0):  # only the test opens it, once the callbacks returned
                raise OSError("the gate stayed closed: a message callback waited for this write")
            real(*args)
            self.written += 1

        monkeypatch.setattr(rec._bag, "write_raw", write_raw)


def test_a_message_callback_does_not_wait_for_the_disk(tmp_path, monkeypatch):
    """The callback waited for the bag's thread to write each message: a slow disk held up
    the executor (every subscription of the process). Now it queues the message and returns
    while the write is still waiting; closing writes it."""
    node = _FakeNode()
    rec, raws = _recorder_of(node, tmp_path)
    disk = _SlowDisk(monkeypatch, rec)
    for raw in raws:
        node.subscriptions["/img"](raw)  # before: blocked here until the gate's timeout
    assert rec.error is None and disk.written == 0  # all returned, nothing written yet
    disk.gate.set()
    rec.close()
    assert rec.error is None and rec.counts == {"/img": len(raws)} and rec.dropped == {}
    with BagReader(tmp_path / "rec") as r:
        assert [bytes(raw) for _, _, _, raw in r.raw_messages()] == [bytes(raw) for raw in raws]


def test_a_full_queue_drops_and_counts_messages_and_closing_writes_the_queued(
    tmp_path, monkeypatch, caplog
):
    """At most queue_size messages wait for the disk: more are counted as dropped (and
    warned of), never waited for; what was queued is written before the bag closes."""
    node = _FakeNode()
    rec, raws = _recorder_of(node, tmp_path, queue_size=2)
    disk = _SlowDisk(monkeypatch, rec)
    with caplog.at_level("WARNING", logger="irstd_ros.bags.record"):
        for raw in raws:  # one being written, one waiting, three left out
            node.subscriptions["/img"](raw)
        assert rec.dropped == {"/img": 3} and disk.written == 0
        closer = threading.Thread(target=rec.close)  # waits for the queue to be written
        closer.start()
        disk.gate.set()
        closer.join()
    assert rec.error is None and rec.counts == {"/img": 2}
    with BagReader(tmp_path / "rec") as r:
        assert [bytes(raw) for _, _, _, raw in r.raw_messages()] == [bytes(raw) for raw in raws[:2]]
    assert "is written slower than messages arrive" in caplog.text
    assert "3 message(s) were dropped, not written to" in caplog.text and "/img: 3" in caplog.text


def _record_on(monkeypatch, node, disk) -> None:
    """``record`` on the fake ``node`` (no rclpy session), its bag's ``write_raw`` replaced
    by ``disk(real_write_raw)``."""
    from contextlib import contextmanager

    from irstd_ros.bags import record as record_module

    real_init = Recorder.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        monkeypatch.setattr(self._bag, "write_raw", disk(self._bag.write_raw))

    @contextmanager
    def session(name):
        yield node

    monkeypatch.setattr(Recorder, "__init__", init)
    monkeypatch.setattr(record_module, "ros_session", session)
    monkeypatch.setattr(record_module, "ros_ok", lambda: True)


def test_a_write_that_fails_on_the_bag_s_thread_while_closing_fails_the_recording(
    tmp_path, monkeypatch
):
    """A message queued, not yet written when the recording stops, whose write then fails:
    ``record`` must raise, not report the recording done (and no empty bag is left)."""

    from irstd_ros.bags import record as record_module

    node = _FakeNode()
    with BagReader(make_bag(tmp_path / "src", frames=2)) as r:
        raws = [raw for _, _, _, raw in r.raw_messages([IMAGE_TOPIC])]
    def disk_full(real):
        def write(*args):
            raise OSError(28, "No space left on device")

        return write

    _record_on(monkeypatch, node, disk_full)

    def messages_then_stop() -> bool:  # after _wait's look at the error: the write fails later
        for raw in raws:
            node.subscriptions["/img"](raw)
        return True

    cfg = RecordConfig(
        tmp_path / "rec", topics=("/img",), known_types=(("/img", "sensor_msgs/msg/Image"),),
        progress=False,
    )
    with pytest.raises(BagError, match=r"stopped after 0 messages: .*No space left"):
        record_module.record(cfg, should_stop=messages_then_stop)
    assert not (tmp_path / "rec").exists()


def test_record_returns_its_dropped_messages_without_logging_them_too(tmp_path, monkeypatch, caplog):
    """``irstd record`` prints ``stats.dropped``: ``record`` does not log the same summary
    (``Recorder.close`` does for its other callers, and for a recording that failed)."""

    from irstd_ros.bags import record as record_module

    node = _FakeNode()
    with BagReader(make_bag(tmp_path / "src", frames=3)) as r:
        raws = [raw for _, _, _, raw in r.raw_messages([IMAGE_TOPIC])]
    gate = threading.Event()
    def slow_disk(real):
        def write(*args):  # the disk: busy with the first message until all have arrived
            gate.wait(10.0)
            real(*args)

        return write

    _record_on(monkeypatch, node, slow_disk)

    def messages_then_stop() -> bool:
        for raw in raws:
            node.subscriptions["/img"](raw)
        gate.set()
        return True

    cfg = RecordConfig(
        tmp_path / "rec", topics=("/img",), known_types=(("/img", "sensor_msgs/msg/Image"),),
        progress=False, queue_size=1,
    )
    with caplog.at_level("WARNING", logger="irstd_ros.bags.record"):
        stats = record_module.record(cfg, should_stop=messages_then_stop)
    assert stats.counts == {"/img": 1} and stats.dropped == {"/img": len(raws) - 1}
    assert "is written slower than messages arrive" in caplog.text  # as it happened
    assert "were dropped, not written to" not in caplog.text


def test_a_failure_in_discovery_does_not_escape_the_timer(tmp_path, monkeypatch):
    node = _FakeNode()
    rec = Recorder(node, RecordConfig(tmp_path / "rec", topics=("/later",)))
    assert rec.missing == ["/later"] and rec.error is None

    def broken():
        raise BagError("no definition of foo_msgs/msg/Bar (topic /later) to write it to a bag")

    monkeypatch.setattr(rec, "_discover", broken)
    node.timers[0]()  # would have killed the executor's thread before
    assert isinstance(rec.error, BagError) and "foo_msgs" in str(rec.error)
    rec.close(keep=False)
    assert not (tmp_path / "rec").exists()


def test_invalid_configs():
    with pytest.raises(ConfigError):
        ReplayConfig(Path("x"), rate=0).validate()
    with pytest.raises(ConfigError, match="ack timeout"):
        ReplayConfig(Path("x"), ack_timeout=-1).validate()
    with pytest.raises(ConfigError):
        parse_remap("/a=/b")
    with pytest.raises(ConfigError):
        RecordConfig(Path("x"), qos="fast").validate()
    with pytest.raises(ConfigError, match="queue_size must be >= 1"):
        RecordConfig(Path("x"), queue_size=0).validate()


class _Publisher:
    """Stands in for an rclpy publisher whose subscribers acknowledge (or not)."""

    def __init__(self, topic: str, acked: bool) -> None:
        self.topic_name = topic
        self.acked = acked
        self.waited_ns: int | None = None

    def wait_for_all_acked(self, timeout) -> bool:
        self.waited_ns = timeout.nanoseconds
        return self.acked


def test_unacknowledged_topics_are_reported_and_logged(rclpy_context, caplog):
    from irstd_ros.bags.replay import _wait_for_acks

    pubs = {"/a": _Publisher("/a", acked=True), "/b": _Publisher("/b", acked=False)}
    assert _wait_for_acks(pubs, timeout=2.0) == ["/b"]
    assert 0 < pubs["/a"].waited_ns <= 2_000_000_000
    assert "/b" in caplog.text and "may be lost" in caplog.text
    never = _Publisher("/c", acked=False)
    assert _wait_for_acks({"/c": never}, timeout=0.0) == []  # 0: not waited for
    assert never.waited_ns is None


def test_record_command_closes_the_bag_on_sigint(rclpy_context, bag, tmp_path):
    import signal
    import sys

    out = tmp_path / "rec"
    cmd = [
        sys.executable,
        "-m",
        "irstd_ros.cli.main",
        "record",
        "--out",
        str(out),
        "--topics",
        IMAGE_TOPIC,
        "--discovery-timeout",
        "30",
    ]
    recorder = NodeProcess(cmd, tmp_path / "record.log")
    try:
        with ros_session("player") as player:
            replay(ReplayConfig(bag, rate=5.0, wait_subscribers=20.0, progress=False), node=player)
        time.sleep(0.5)
    finally:
        code = recorder.stop(signal.SIGINT, timeout=20)
    text = recorder.log_text()
    assert code == 0, text
    assert "interrupted" in text
    with BagReader(out) as r:
        assert r.topics[IMAGE_TOPIC].count == FRAMES


def test_a_topic_with_nothing_to_replay_is_an_error_not_a_spin(rclpy_context, tmp_path):
    """An empty topic was "published 0 messages" (exit 0); with --loop, or a start offset
    past the topic's last message, a loop spinning at full CPU until Ctrl-C."""
    empty = tmp_path / "empty"
    with BagWriter(empty) as w:
        w.add_topic(IMAGE_TOPIC, "sensor_msgs/msg/Image")
    late = tmp_path / "late"  # the camera stops at 0.1 s, the bag goes on to 2 s
    with BagWriter(late) as w:
        for i in range(2):
            s = i * 10**8
            w.write(IMAGE_TOPIC, s, image_msg(w.store, np.zeros((4, 4), np.uint8), "mono8", s, "cam"))
        w.write("/status", 2 * 10**9, w.store.types["std_msgs/msg/String"](data="ok"))
    started = time.monotonic()
    for cfg in (
        ReplayConfig(empty, loop=True, progress=False),
        ReplayConfig(late, start_offset=1.0, loop=True, progress=False, wait_subscribers=0),
    ):
        with pytest.raises(BagError, match=f"has no message on {IMAGE_TOPIC}"):
            replay(cfg, should_stop=lambda: time.monotonic() - started > 5)
    assert time.monotonic() - started < 3  # the empty bag: refused before waiting for subscribers


class _Graph:
    """A node's view of the ROS graph for the consumer wait: the recorder subscribes at
    once; the consumer (``irstd_node``, publisher of the sync topic) only after ``late``
    polls, and its subscription matches ``pub`` one poll later still."""

    def __init__(self, late: int) -> None:
        self.polls, self.late = 0, late

    def resolve_topic_name(self, name: str) -> str:
        return name

    def get_namespace(self) -> str:
        return "/"

    def get_name(self) -> str:
        return "irstd_replay"

    @staticmethod
    def _info(name: str):
        from types import SimpleNamespace

        return SimpleNamespace(node_namespace="/", node_name=name)

    def get_publishers_info_by_topic(self, topic: str):
        return [self._info("irstd_node")] if self.polls >= self.late else []

    def get_subscriptions_info_by_topic(self, topic: str):
        self.polls += 1
        return [self._info("recorder"), *([self._info("irstd_node")] if self.polls > self.late else [])]


class _Pub:
    topic_name = "/camera/image"

    def __init__(self, graph: _Graph) -> None:
        self.graph = graph

    def get_subscription_count(self) -> int:  # the consumer matches a poll after it is seen
        return 1 + (self.graph.polls > self.graph.late + 1)


def test_a_synced_replay_waits_for_the_consumer_not_only_for_a_recorder():
    """With a recorder already listening, replay --sync-topic published frame 0 before the
    node's subscription matched: the frame was lost (one sync timeout)."""
    from irstd_ros.bags.replay import _wait_for_consumer

    graph = _Graph(late=3)
    assert _wait_for_consumer(graph, _Pub(graph), "/targets", 5.0, lambda: False)
    assert graph.polls == graph.late + 2  # not before the consumer's subscription matched
    alone = _Graph(late=10**9)  # no consumer ever: a warning and on, after the timeout
    assert not _wait_for_consumer(alone, _Pub(alone), "/targets", 0.1, lambda: False)
