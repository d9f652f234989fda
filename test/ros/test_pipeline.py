"""The pipeline's frame queue (``input.queue_size``): frames wait for the worker in
arrival order; a frame arriving at a full queue drops the oldest waiting one and counts
it; the newest frame is always processed."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

from _support.node import Collect, frame_for, image_msg, make_detector  # noqa: E402

from irstd_ros.msg import Track as TrackMsg  # noqa: E402
from irstd_ros.ros.health import STREAM_NOTICES  # noqa: E402
from irstd_ros.ros.params import PARAMS  # noqa: E402
from irstd_ros.ros.pipeline import FramePipeline, Outputs, _Arrival  # noqa: E402

pytestmark = pytest.mark.ros


def frame_at(k: int):
    """The blobs' frame, stamped k tenths of a second after 1 s."""
    msg = image_msg(frame_for("mono8"), "mono8", stamp=1)
    msg.header.stamp.nanosec = k * 100_000_000
    return msg
TIMEOUT_S = 10.0


class Log:
    def warning(self, text: str) -> None:
        raise AssertionError(f"unexpected warning: {text}")

    info = error = warning


def noting(warnings: list[str]) -> type:
    """A logger class whose every line lands in ``warnings``."""

    class Noted:
        def warning(self, text: str) -> None:
            warnings.append(text)

        info = error = warning

    return Noted


def pipeline(queue_size: int) -> tuple[FramePipeline, Collect]:
    params = {p.name: p.default for p in PARAMS} | {
        "input.queue_size": queue_size, "tracking.enabled": False,
    }
    detections = Collect()
    outputs = Outputs(mask=Collect(), detections=detections, targets=Collect(),
                      overlay=Collect(), tracks=Collect(), target_tracks=Collect())
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                         clock_ns=lambda: 0)
    return pipe, detections


def run_until_idle(pipe: FramePipeline, processed: int) -> None:
    import time

    pipe.start()
    end = time.monotonic() + TIMEOUT_S
    while pipe.stats.processed < processed and time.monotonic() < end:
        time.sleep(0.01)
    pipe.stop()


@pytest.mark.parametrize(("queue_size", "kept"), [(1, [5]), (2, [4, 5]), (3, [3, 4, 5])])
def test_a_full_queue_drops_the_oldest_waiting_frame(queue_size, kept):
    pipe, detections = pipeline(queue_size)
    for stamp in range(1, 6):  # five frames arrive while the worker is busy (not started)
        pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=stamp))
    assert pipe.stats.received == 5
    assert pipe.stats.dropped == 5 - len(kept)
    run_until_idle(pipe, len(kept))
    assert [m.header.stamp.sec for m in detections.msgs] == kept
    assert pipe.stats.processed == len(kept)


def test_a_queue_within_its_size_loses_nothing():
    pipe, detections = pipeline(2)
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=1))
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=2))
    run_until_idle(pipe, 2)
    assert pipe.stats.dropped == 0
    assert [m.header.stamp.sec for m in detections.msgs] == [1, 2]


def test_discarding_empties_the_queue():
    pipe, detections = pipeline(3)
    for stamp in (1, 2):
        pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=stamp))
    pipe.discard_pending()
    assert pipe.stats.dropped == 2  # counted: received = processed + dropped + ...
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=3))
    run_until_idle(pipe, 1)
    assert [m.header.stamp.sec for m in detections.msgs] == [3]


def test_a_new_frame_size_starts_the_tracks_afresh():
    import numpy as np

    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    warnings: list[str] = []
    Noted = noting(warnings)

    tracks = Collect()
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=tracks, target_tracks=Collect())
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Noted,
                         clock_ns=lambda: 0)
    def at(arr, k: int):  # frames 0.1 s apart
        msg = image_msg(arr, "mono8", stamp=1)
        msg.header.stamp.nanosec = k * 100_000_000
        return msg

    frame = frame_for("mono8")
    for k in range(1, 6):
        assert pipe.process(at(frame, k))
    confirmed = {d.id for d in tracks.msgs[-1].detections}
    assert len(confirmed) == 2  # both blobs are confirmed tracks
    # the top-left quarter keeps the first blob where it was, in a frame of another size
    half = np.ascontiguousarray(frame[: frame.shape[0] // 2, : frame.shape[1] // 2])
    assert pipe.process(at(half, 6))
    assert any("frame size changed" in w for w in warnings)
    # no track of the old frame's pixels goes on in the new one: tracking starts afresh
    assert tracks.msgs[-1].detections == []
    assert {t.id for t in pipe.tracker.tracks()}.isdisjoint(int(i) for i in confirmed)


def test_tracking_switched_off_and_on_never_reuses_an_id():
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    tracks = Collect()
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=tracks, target_tracks=Collect())
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                         clock_ns=lambda: 0)

    for k in range(1, 6):
        assert pipe.process(frame_at(k))
    before = {d.id for d in tracks.msgs[-1].detections}
    assert len(before) == 2
    params["tracking.enabled"] = False
    assert pipe.process(frame_at(6))
    params["tracking.enabled"] = True
    for k in range(7, 12):
        assert pipe.process(frame_at(k))
    after = {d.id for d in tracks.msgs[-1].detections}
    assert len(after) == 2 and after.isdisjoint(before)  # the same blobs, new ids


class Ordered:
    """A publisher that notes its topic in a list shared by every output."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def publish(self, msg) -> None:
        self.log.append(self.name)


def test_the_small_messages_go_out_before_the_mask():
    log: list[str] = []
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True,
                                                    "publish.overlay": True}
    outputs = Outputs(**{name: Ordered(name, log) for name in (
        "mask", "detections", "targets", "overlay", "tracks", "target_tracks")})
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                         clock_ns=lambda: 0)
    assert pipe.process(image_msg(frame_for("mono8"), "mono8", stamp=1))
    assert log == ["tracks", "target_tracks", "detections", "targets", "mask", "overlay"]


def test_every_stage_of_a_queued_frame_is_measured():
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False}
    now = [1_003_000_000]  # the frame (stamped at 1 s) arrives 3 ms after its stamp
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=Collect(), target_tracks=Collect())
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                         clock_ns=lambda: now[0])
    pipe.submit(image_msg(frame_for("mono8"), "mono8", stamp=1))
    now[0] = 1_040_000_000  # answered 40 ms after the stamp
    run_until_idle(pipe, 1)
    snap = pipe.stats.snapshot()
    assert snap["processed"] == 1
    assert snap["arrival_p50_ms"] == pytest.approx(3.0, abs=1e-3)
    assert snap["latency_p50_ms"] == pytest.approx(40.0, abs=1e-3)
    for stage in ("queue", "convert", "pre", "infer", "post", "publish"):
        assert snap[f"{stage}_p50_ms"] > 0.0, stage


def test_latency_is_measured_only_from_live_stamps():
    """A stamp of 0 (none) or a replayed bag's (a day old) gives no latency: before, they
    entered the percentiles as 0 ms and 86,400,000 ms."""
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False}
    now_ns = 1_800_000_000 * 1_000_000_000
    pipe = FramePipeline(make_detector(), Outputs(*(Collect() for _ in range(6))),
                         params=lambda: params, logger=noting([]), clock_ns=lambda: now_ns)
    stamps = (now_ns - 20_000_000, 0, 0, now_ns - 86_400 * 1_000_000_000)  # 20 ms, none, a day
    for i, stamp in enumerate(stamps):
        msg = image_msg(frame_for("mono8"), "mono8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        pipe.process(msg, _Arrival(stamp and now_ns - 5_000_000, 0.0))
        assert pipe.stats.processed == i + 1
    snap = pipe.stats.snapshot()
    assert list(pipe.stats.latency_ms) == pytest.approx([20.0])
    assert snap["latency_p50_ms"] == pytest.approx(20.0) == snap["latency_p99_ms"]
    assert snap["arrival_p50_ms"] == pytest.approx(15.0)


def test_diagnostics_say_a_latency_without_samples_is_not_measured():
    """Frames without live stamps (a bag, a camera without clock): latency "n/a" in
    /diagnostics, not a made-up 0.000 ms."""
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False}
    pipe = FramePipeline(make_detector(), Outputs(*(Collect() for _ in range(6))),
                         params=lambda: params, logger=noting([]), clock_ns=lambda: 10**18)
    # stamped 1 s (image_msg): about 10**9 s before the clock, not live (like a bag's): no latency
    pipe.process(image_msg(frame_for("mono8"), "mono8"), _Arrival(0, 0.0))
    values = {kv.key: kv.value for kv in pipe.diagnostics("irstd").status[0].values}
    assert values["latency_p50_ms"] == values["latency_p99_ms"] == "n/a"
    assert values["processed"] == "1" and float(values["infer_p50_ms"]) > 0


def test_a_stale_frame_is_logged_not_only_counted():
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False, "input.max_age": 0.5}
    warnings: list[str] = []
    Noted = noting(warnings)

    now_ns = 1_800_000_000 * 1_000_000_000
    pipe = FramePipeline(make_detector(), Outputs(*(Collect() for _ in range(6))),
                         params=lambda: params, logger=Noted, clock_ns=lambda: now_ns)
    msg = image_msg(frame_for("mono8"), "mono8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns - 2_000_000_000, 1_000_000_000)
    pipe.submit(msg)  # a camera whose clock lags by 2 s: every frame would be skipped
    assert pipe.stats.stale == 1
    assert len(warnings) == 1 and "2.00 s old" in warnings[0] and "input.max_age" in warnings[0]
    assert pipe.stats.errors == {}  # counted once, as stale


def test_a_frame_size_that_grows_past_the_transport_s_segment_is_hinted_once(monkeypatch):
    import numpy as np

    from irstd_ros.ros import transport

    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    for name in transport.DDS_ENV:
        if name != "ROS_DISTRO":
            monkeypatch.delenv(name, raising=False)
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False}
    warnings: list[str] = []
    Noted = noting(warnings)

    pipe = FramePipeline(make_detector(), Outputs(*(Collect() for _ in range(6))),
                         params=lambda: params, logger=Noted, clock_ns=lambda: 0,
                         rmw="rmw_fastrtps_cpp")
    assert pipe.process(image_msg(frame_for("mono8"), "mono8"))  # small: nothing to say
    assert warnings == []
    large = np.zeros((512, 640), np.uint16)  # 655 kB: over the 512 KiB segment
    for stamp in (2, 3):
        assert pipe.process(image_msg(large, "mono16", stamp=stamp))
    hints = [w for w in warnings if "shared-memory segment" in w]
    assert len(hints) == 1 and "655 kB" in hints[0], warnings


class Counted(Collect):
    """A publisher that says how many subscribe to it (rclpy's ``get_subscription_count``)."""

    def __init__(self, subscribers: int) -> None:
        super().__init__()
        self.subscribers = subscribers

    def get_subscription_count(self) -> int:
        return self.subscribers


def test_an_output_nobody_subscribes_to_is_neither_built_nor_published(monkeypatch):
    """Outputs without a subscriber cost nothing (the overlay alone took 5-10 ms a 640x512
    frame); the tracker runs all the same, so a subscriber who comes later gets the tracks
    confirmed meanwhile, and each output he subscribes to from then on."""
    from irstd_ros.core import overlay

    drawn: list[int] = []
    draw = overlay.draw_overlay
    monkeypatch.setattr(overlay, "draw_overlay", lambda *a, **k: drawn.append(1) or draw(*a, **k))
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True,
                                                    "publish.overlay": True}
    names = ("mask", "detections", "targets", "overlay", "tracks", "target_tracks")
    outputs = Outputs(**{name: Counted(0) for name in names})
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                         clock_ns=lambda: 0)

    for k in range(1, 6):
        assert pipe.process(frame_at(k))
    assert all(getattr(outputs, name).msgs == [] for name in names)
    assert drawn == [] and pipe.stats.processed == 5
    outputs.tracks.subscribers = outputs.overlay.subscribers = 1
    assert pipe.process(frame_at(6))
    assert len(outputs.tracks.msgs[-1].detections) == 2  # both blobs confirmed meanwhile
    assert len(outputs.overlay.msgs) == 1 and drawn == [1]
    assert all(getattr(outputs, name).msgs == [] for name in ("mask", "detections", "targets",
                                                               "target_tracks"))
    for name in names:
        getattr(outputs, name).subscribers = 1
    assert pipe.process(frame_at(7))
    assert all(len(getattr(outputs, name).msgs) == 1 + (name in ("tracks", "overlay"))
               for name in names)


def test_a_consumer_subscribes_to_every_output_the_node_publishes(tmp_path):
    """load-test and bench answer on `detections` alone; since the node builds no output
    nobody subscribes to, they consume the others too, or their figures would leave out the
    mask, targets and tracks a deployment pays for."""
    from irstd_ros.ros.pipeline import OUTPUT_TYPES, consume_outputs, create_outputs

    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    try:
        node = rclpy.create_node("consumer_probe", context=context)
        publisher = rclpy.create_node("publisher_probe", namespace="/cam", context=context)
        outputs = create_outputs(publisher.create_publisher)
        consume_outputs(node, "/cam", skip=("detections",))
        subscribed = {s.topic_name: s.msg_type for s in node.subscriptions}
        published = {p.topic_name: p.msg_type for p in outputs.all()}
        assert published == {f"/cam/{t}": k for t, k in OUTPUT_TYPES.items()}
        assert subscribed == {t: k for t, k in published.items() if t != "/cam/detections"}
        assert [p.topic_name for p in outputs.all()] == [f"/cam/{f}" for f in Outputs.__dataclass_fields__]
    finally:
        rclpy.shutdown(context=context)


def test_camera_infos_that_keep_changing_are_not_logged_each_time():
    """Two camera_infos alternating on one topic (two cameras remapped onto it): each
    message is a new camera model, and "camera_info received" was logged for every one, at
    the cameras' rate, for as long as the node ran."""
    from sensor_msgs.msg import CameraInfo

    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    infos: list[str] = []

    class Infos:
        def info(self, text: str) -> None:
            infos.append(text)

        def warning(self, text: str) -> None:
            pass

    pipe = FramePipeline(make_detector(), Outputs(*(Collect() for _ in range(6))),
                         params=lambda: params, logger=Infos, clock_ns=lambda: 0)
    k = [100.0, 0.0, 32.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0]
    cams = [CameraInfo(width=64, height=48, k=k), CameraInfo(width=64, height=48, k=k)]
    cams[1].header.frame_id = "other_cam"
    for i in range(50):
        pipe.on_camera_info(cams[i % 2])
        assert pipe.camera is not None and pipe.camera.frame_id == cams[i % 2].header.frame_id
    assert len(infos) == 1, infos[:3]


def _stamped(arr, stamp_ns: int):
    msg = image_msg(arr, "mono8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def _track_run(stamps, warnings: list[str] | None = None, frames: int = 25, sim_rate: float = 0.0,
               node_clock=None, overrides: dict | None = None):
    """The blobs for 5 frames, then 20 blank ones, arriving 0.1 s apart on the injected
    steady clock and ``sim_rate`` times that on the node's (0: frozen, sim time without
    /clock; or the node's clock ``node_clock(k)``, ns), stamped ``stamps(k)`` (ns); each
    frame's tracks as (id, state, hits), and the pipeline."""
    import numpy as np

    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True} | (overrides or {})
    target_tracks = Collect()
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=Collect(), target_tracks=target_tracks)
    now = [5_000_000_000]
    sim = [7_000_000_000]
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params,
                         logger=Log if warnings is None else noting(warnings),
                         clock_ns=lambda: sim[0], steady_ns=lambda: now[0])
    blobs = frame_for("mono8")
    blank = np.full_like(blobs, blobs.min())
    states = []
    for k in range(frames):
        now[0] += 100_000_000
        sim[0] = node_clock(k) if node_clock else sim[0] + int(sim_rate * 100_000_000)
        msg = _stamped(blobs if k < 5 else blank, stamps(k))
        assert pipe.process(msg, _Arrival(sim[0], 0.0, now[0]))
        assert target_tracks.msgs[-1].header.stamp == msg.header.stamp  # kept as it came
        states.append([(t.id, t.state, t.hits) for t in target_tracks.msgs[-1].tracks])
    return states, pipe


@pytest.mark.parametrize(("stamps", "timed_by_arrival"), [
    (lambda k: 0, 25),  # no stamps: every frame
    (lambda k: 1_700_000_000_123_000_000, 23),  # one stamp: from its third frame on
], ids=["zero", "constant"])
def test_frames_whose_stamps_do_not_advance_are_timed_by_their_arrival(stamps, timed_by_arrival):
    """Before, frames stamped 0 (with the node's clock frozen) or all stamped alike kept
    the tracker at one instant: confirmed tracks never coasted out, and nothing said so."""
    proper, _ = _track_run(lambda k: 1_000_000_000 + k * 100_000_000)
    warnings: list[str] = []
    states, pipe = _track_run(stamps, warnings)
    assert any(s == TrackMsg.STATE_COASTING for frame in proper for _, s, _ in frame)
    assert proper[-1] == []  # the tracks coasted out after the blobs went
    if timed_by_arrival == 25:
        assert states == proper
    else:  # the second frame repeats the first's stamp: the same instant, not tracked again
        assert states[1] == states[0] and pipe.tracker is not None and pipe.tracker.repeated_stamps == 1
        confirmed = [next(i for i, f in enumerate(run) if f[0][1] == TrackMsg.STATE_CONFIRMED) for run in (proper, states)]
        assert confirmed[1] == confirmed[0] + 1  # one hit fewer: confirmed a frame later
        tail = confirmed[1] + 1
        assert states[tail:] == [[(i, s, h - 1) for i, s, h in f] for f in proper[tail:]]
    assert pipe.stats.errors["stamp_not_advancing"] == timed_by_arrival
    assert len(warnings) == 1 and "stamp the frames" in warnings[0]  # once, with the fix
    values = {kv.key: kv.value for kv in pipe.diagnostics("irstd").status[0].values}
    assert values["errors.stamp_not_advancing"] == str(timed_by_arrival)
    assert values["tracks_repeated_stamps"] == ("0" if timed_by_arrival == 25 else "1")


def test_the_tracking_parameters_reach_the_tracker():
    """Each tracking.* parameter is the tracker's setting of that name (init_speed, the
    expected target speed, was the tracker's own 30 px/s with no parameter)."""
    overrides = {"tracking.gate_px": 7.5, "tracking.init_speed": 120.0, "tracking.confirm_m": 3,
                 "tracking.confirm_n": 5, "tracking.max_coast_s": 0.5, "tracking.max_coast_long_s": 2.0,
                 "tracking.min_score": 0.1}
    _, pipe = _track_run(lambda k: 1_000_000_000 + k * 100_000_000, frames=2, overrides=overrides)
    assert pipe.tracker is not None
    assert {name: getattr(pipe.tracker.config, name.split(".")[1]) for name in overrides} == overrides


def test_the_tracker_s_warnings_are_counted_by_their_kind():
    """A reset (time went back over 1 s) and a stretch of frames stamped alike (not tracked)
    are two problems, not one ``tracker_reset``: told apart by the tracker's counters. A
    frame out of order (not tracked) is the pipeline's ``stamp_backwards``, not said again."""
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=Collect(), target_tracks=Collect())
    warnings: list[str] = []
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=noting(warnings),
                         clock_ns=lambda: 0)
    # straight to the tracker (the pipeline's own stream checks would restart the stream
    # or time frozen stamps by arrival first): back in time, then 4 frames stamped alike,
    # then one out of order
    for stamp in (3.0, 1.0, 1.0, 1.0, 1.0, 0.5):
        pipe._track(_stamped(frame_for("mono8"), round(stamp * 1e9)).header, [], (64, 64),
                    received=(0, 0))
    kinds = [w.split(":")[0] for w in warnings]
    assert kinds == ["tracker_reset", "stamp_repeated"]
    assert pipe.stats.errors == {"tracker_reset": 1, "stamp_repeated": 1}
    assert pipe.tracker is not None and pipe.tracker.out_of_order == 1
    assert {"tracker_reset", "stamp_repeated"} <= STREAM_NOTICES  # notices: no frame is lost


def test_advancing_stamps_drive_the_tracker_as_they_are():
    """A replayed bag's old but advancing stamps, or a live camera's: the tracker's time is
    the header stamp itself, whatever the arrival; a stamp repeated once is the same
    instant; nothing is counted."""
    stamps = [1_000_000_000 + k * 100_000_000 for k in (0, 1, 1, 2, 3)]
    _, pipe = _track_run(lambda k: stamps[k], frames=len(stamps))
    assert pipe.tracker is not None and pipe.tracker.last_stamp == stamps[-1] / 1e9
    assert "stamp_not_advancing" not in pipe.stats.errors


def test_stamps_that_start_advancing_go_on_without_a_jump_or_a_reset():
    """Unstamped frames, then stamped ones: the tracks and their ids go on."""
    warnings: list[str] = []
    states, pipe = _track_run(lambda k: 0 if k < 3 else 1_000_000_000 + k * 100_000_000,
                              warnings, frames=5)
    assert "tracker_reset" not in pipe.stats.errors
    assert [len(s) for s in states] == [2] * 5
    assert {i for i, _, _ in states[0]} == {i for i, _, _ in states[-1]}
    assert all(h == 5 for _, _, h in states[-1])


def test_unstamped_frames_are_timed_on_the_node_s_clock_while_it_runs():
    """Sim time at half speed: frames 0.1 s apart on the wall are 0.05 s apart on the
    node's clock, which times them (as stamps from that clock would)."""
    _, pipe = _track_run(lambda k: 0, [], frames=5, sim_rate=0.5)
    assert pipe.tracker is not None  # the first frame is placed at its steady arrival, 5.1 s
    assert pipe.tracker.last_stamp == pytest.approx(5.1 + 4 * 0.05)


@pytest.mark.parametrize("node_clock", [
    lambda k: 0 if k < 3 else 1_700_000_000 * 10**9 + k * 100_000_000,  # /clock starts
    lambda k: 10**9 + k * 100_000_000 + (3600 * 10**9 if k >= 3 else 0),  # an NTP step
    lambda k: 10**9 + (k // 3) * 300_000_000,  # /clock at a third of the frame rate
], ids=["clock_starts", "clock_steps", "coarse_clock"])
def test_unstamped_frames_are_not_timed_by_a_clock_that_jumps(node_clock):
    """Before, the node's clock was taken whenever it moved on: /clock starting mid-stream
    or an NTP step put an hour (or 54 years) between two frames, dropping every track,
    and a clock coarser than the frames counted the time between its ticks twice."""
    _, pipe = _track_run(lambda k: 0, [], frames=10, node_clock=node_clock)
    assert pipe.tracker is not None  # 10 frames 0.1 s apart on the steady clock from 5.1 s
    assert pipe.tracker.last_stamp == pytest.approx(5.1 + 9 * 0.1)


def _camera_frame(arr, frame_id: str, stamp_ns: int):
    msg = _stamped(arr, stamp_ns)
    msg.header.frame_id = frame_id
    return msg


def _tracking_pipeline(warnings: list[str]) -> tuple[FramePipeline, Collect, Collect]:
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    tracks, target_tracks = Collect(), Collect()
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=tracks, target_tracks=target_tracks)
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params,
                         logger=noting(warnings), clock_ns=lambda: 0)
    return pipe, tracks, target_tracks


def test_another_camera_s_frames_do_not_continue_this_camera_s_tracks():
    """A switch to another camera (another header.frame_id) of the same size: before, its
    frames went on with the first camera's tracks and ids, as if one scene."""
    warnings: list[str] = []
    pipe, tracks, target_tracks = _tracking_pipeline(warnings)
    blobs = frame_for("mono8")
    for k in range(5):
        assert pipe.process(_camera_frame(blobs, "ir_left", 1_000_000_000 + k * 100_000_000))
    left = {d.id for d in tracks.msgs[-1].detections}
    assert len(left) == 2
    for k in range(5, 10):  # the same blobs at the same pixels, seen by another camera
        assert pipe.process(_camera_frame(blobs, "ir_right", 1_000_000_000 + k * 100_000_000))
        if k == 5:  # the right camera's first frame: new tentative tracks only
            assert tracks.msgs[-1].detections == []
            assert {t.state for t in target_tracks.msgs[-1].tracks} == {TrackMsg.STATE_TENTATIVE}
    right = {d.id for d in tracks.msgs[-1].detections}
    assert len(right) == 2 and right.isdisjoint(left)  # one id counter: never an id twice
    assert tracks.msgs[-1].header.frame_id == "ir_right"
    assert pipe.stats.errors == {"frame_id_changed": 1}
    assert len(warnings) == 1 and "one node tracks one camera" in warnings[0], warnings


def test_an_empty_frame_id_is_no_camera_of_its_own():
    """A driver whose first frames have no frame_id, then its own (or a bag that lost it on
    some frames): before, the first named frame was taken for another camera, its tracks
    restarted and a frame_id_changed warning said one node serves one camera."""
    warnings: list[str] = []
    pipe, tracks, _ = _tracking_pipeline(warnings)
    blobs = frame_for("mono8")
    ids = []
    for k, frame_id in enumerate(["", "", "", "", "ir", "ir", "", "ir", "ir"]):
        assert pipe.process(_camera_frame(blobs, frame_id, 1_000_000_000 + k * 100_000_000))
        ids.append({d.id for d in tracks.msgs[-1].detections})
    assert len(ids[3]) == 2 and all(i == ids[3] for i in ids[3:])  # confirmed unnamed, kept named
    assert pipe.stats.errors == {} and warnings == []
    assert pipe.process(_camera_frame(blobs, "other", 2_000_000_000))  # a named camera after it still counts
    assert pipe.stats.errors == {"frame_id_changed": 1}


def test_another_camera_s_frozen_stamps_are_said_again():
    """The first camera's stamps froze (said once a stretch); after a change of camera whose
    stamps freeze too, nothing was said: the stretch was taken as the first camera's."""
    from irstd_ros.core.ratelimit import RateLimiter

    warnings: list[str] = []
    pipe, _, _ = _tracking_pipeline(warnings)
    pipe._warn = RateLimiter(0.0)  # every stretch said, whatever the time between
    blobs = frame_for("mono8")
    for frame_id in ("ir_left", "ir_right"):
        for _ in range(3):
            assert pipe.process(_camera_frame(blobs, frame_id, 0))
    frozen = [w for w in warnings if w.startswith("stamp_not_advancing")]
    assert len(frozen) == 2, warnings


def test_interleaved_cameras_are_said_once_and_counted_not_warned_per_frame():
    """Two cameras of different sizes and clocks on one topic: before, every frame reset
    the tracker with a size_changed, stamp_backwards or tracker_reset warning (each every
    5 s, for as long as it ran) and nothing said why."""
    import numpy as np

    warnings: list[str] = []
    pipe, tracks, _ = _tracking_pipeline(warnings)
    blobs = frame_for("mono8")
    small = np.ascontiguousarray(blobs[: blobs.shape[0] // 2, : blobs.shape[1] // 2])
    frames = 40
    for k in range(frames):
        if k % 2 == 0:  # the wide camera's clock runs 10 s ahead of the small one's
            msg = _camera_frame(blobs, "ir_wide", 11_000_000_000 + k * 50_000_000)
        else:
            msg = _camera_frame(small, "ir_small", 1_000_000_000 + k * 50_000_000)
        assert pipe.process(msg)
        assert tracks.msgs[-1].detections == []  # tracks restart at every change: none confirmed
    assert pipe.stats.errors == {"frame_id_changed": frames - 1}
    assert pipe.stats.processed == frames  # a notice, no frame lost (load-test's accounting):
    assert set(pipe.stats.errors) <= STREAM_NOTICES
    assert len(warnings) == 1, warnings
    assert "'ir_small' after frames of 'ir_wide'" in warnings[0]
    assert "its own topic and node" in warnings[0]
    from diagnostic_msgs.msg import DiagnosticStatus

    status = pipe.diagnostics("irstd").status[0]
    assert {kv.key: kv.value for kv in status.values}["errors.frame_id_changed"] == str(frames - 1)
    assert status.level == DiagnosticStatus.WARN  # while it goes on


def test_one_camera_s_stream_still_reports_its_own_size_change():
    """The frame_id check does not hide a change within one camera's stream."""
    import numpy as np

    warnings: list[str] = []
    pipe, _, _ = _tracking_pipeline(warnings)
    blobs = frame_for("mono8")
    assert pipe.process(_camera_frame(blobs, "ir_cam", 2_000_000_000))
    half = np.ascontiguousarray(blobs[: blobs.shape[0] // 2])
    assert pipe.process(_camera_frame(half, "ir_cam", 1_000_000_000))
    assert set(pipe.stats.errors) == {"size_changed", "stamp_backwards"}


def _quiet_pipeline(params: dict, warnings: list[str], clock_ns=lambda: 0) -> FramePipeline:
    return FramePipeline(make_detector(), Outputs(*(Collect() for _ in range(6))),
                         params=lambda: params, logger=noting(warnings), clock_ns=clock_ns)


def test_a_period_without_a_frame_is_a_warning_naming_incompatible_qos_publishers():
    """Before, once the first report was out every status was OK with received 0 and
    input_hz 0 while no frame arrived: a best-effort camera on the reliable default
    (errors.incompatible_qos 1), or no camera at all."""
    from diagnostic_msgs.msg import DiagnosticStatus

    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False}
    warnings: list[str] = []
    pipe = _quiet_pipeline(params, warnings)
    pipe.submit(image_msg(frame_for("mono8"), "mono8"))
    status = pipe.diagnostics("irstd").status[0]
    assert (status.level, status.message) == (DiagnosticStatus.OK, "ok")
    assert "received_since_last" not in {kv.key for kv in status.values}
    status = pipe.diagnostics("irstd").status[0]  # nothing since
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "no input: no frame received since the last report"
    pipe.report("incompatible_qos", "a publisher of the image topic offers QoS ...")
    for _ in range(2):  # still said once the count stops rising
        status = pipe.diagnostics("irstd").status[0]
        assert status.level == DiagnosticStatus.WARN and status.message.startswith("no input")
        assert "errors.incompatible_qos" in status.message
        assert "qos.reliability:=best_effort" in status.message
    params["qos.reliability"] = "best_effort"  # another policy: the hint would be wrong
    assert "qos.reliability:=best_effort" not in pipe.diagnostics("irstd").status[0].message
    inactive = pipe.diagnostics("irstd", expects_frames=False).status[0]
    assert (inactive.level, inactive.message) == (DiagnosticStatus.OK, "ok")


NOW_NS = 1_800_000_000 * 1_000_000_000  # the node's clock: wall time


def _live_track_run(offsets_s, warnings: list[str]):
    """The blobs on frames 0.1 s apart, each arriving as it is stamped on the node's clock
    but for ``offsets_s[k]`` (s ahead of its arrival); each frame's (track id, hits) and
    the pipeline."""
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    target_tracks = Collect()
    outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                      overlay=Collect(), tracks=Collect(), target_tracks=target_tracks)
    now = [NOW_NS]
    pipe = FramePipeline(make_detector(), outputs, params=lambda: params,
                         logger=noting(warnings), clock_ns=lambda: now[0],
                         steady_ns=lambda: now[0])
    states = []
    for offset in offsets_s:
        now[0] += 100_000_000
        msg = _stamped(frame_for("mono8"), now[0] + round(offset * 1_000_000_000))
        assert pipe.process(msg, _Arrival(now[0], 0.0, now[0]))
        assert target_tracks.msgs[-1].header.stamp == msg.header.stamp  # its own stamp kept
        states.append(sorted((t.id, t.hits) for t in target_tracks.msgs[-1].tracks))
    return states, pipe


@pytest.mark.parametrize("ahead_s", [5.0, 600.0])
def test_a_frame_stamped_ahead_of_the_clock_does_not_move_the_tracker(ahead_s):
    """A stamp glitch 5 s (or 10 min) ahead: before, the tracker jumped to it (the tracks
    dropped, new ones started), and the next correct frame was a stamp_backwards and a
    tracker_reset. It is answered and counted; the tracks go on through it."""
    warnings: list[str] = []
    offsets = [0.0] * 6 + [ahead_s] + [0.0] * 3
    states, pipe = _live_track_run(offsets, warnings)
    ids = {i for i, _ in states[5]}
    assert len(ids) == 2
    assert all({i for i, _ in s} == ids for s in states[5:])  # the same tracks throughout
    assert [h for _, h in states[-1]] == [len(offsets)] * 2  # each frame a hit, the glitch's too
    assert pipe.stats.errors == {"stamp_future": 1}
    assert len(warnings) == 1 and warnings[0].startswith("stamp_future:")
    assert f"{ahead_s:.3f} s ahead" in warnings[0]
    assert pipe.stats.processed == len(offsets)


def test_a_camera_clock_ahead_is_counted_and_gives_no_negative_latency():
    """A camera clock 0.3 s ahead: before, /diagnostics reported a negative latency at
    level OK. A skew below the tolerance is no error, and no latency is measured from it."""
    from diagnostic_msgs.msg import DiagnosticStatus

    from irstd_ros.ros.pipeline import FUTURE_STAMP_TOLERANCE_S

    warnings: list[str] = []
    _, pipe = _live_track_run([0.3] * 8, warnings)
    assert pipe.stats.errors == {"stamp_future": 8} and len(warnings) == 1  # rate-limited
    assert list(pipe.stats.latency_ms) == [] and pipe.stats.processed == 8
    status = pipe.diagnostics("irstd").status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and values["errors.stamp_future"] == "8"
    assert values["latency_p50_ms"] == values["arrival_p50_ms"] == "n/a"
    small: list[str] = []
    _, pipe = _live_track_run([FUTURE_STAMP_TOLERANCE_S / 2] * 8, small)
    assert pipe.stats.errors == {} and small == []
    assert all(ms >= 0 for ms in pipe.stats.latency_ms)


def test_stamps_of_another_time_base_far_ahead_are_not_future_stamps():
    """The node on sim time (7 s) and a camera on the wall clock: not a live stream (as
    for input.max_age), its stamps drive the tracker as they are."""
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": True}
    pipe = _quiet_pipeline(params, [], clock_ns=lambda: 7_000_000_000)
    for k in range(5):
        assert pipe.process(_stamped(frame_for("mono8"), NOW_NS + k * 100_000_000))
    assert pipe.stats.errors == {}
    assert pipe.tracker is not None and pipe.tracker.last_stamp == (NOW_NS + 400_000_000) / 1e9


def test_a_track_s_unknown_velocity_is_published_as_unknown_not_as_zero():
    """A track born this frame (one detection) went out with vx = vy = 0 and, with a
    camera, has_bearing true and a zero line-of-sight rate: "stationary" for "unknown".
    has_velocity says which; velocity_std how well it is known."""
    import numpy as np
    from _support.tracking import Det

    from irstd_ros.msg import TrackArray
    from irstd_ros.ros.pipeline import fill_track_array
    from irstd_ros.tracking import CameraModel, Tracker, TrackerConfig

    camera = CameraModel(np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 256.0], [0.0, 0.0, 1.0]]))
    tr = Tracker(TrackerConfig(init_speed=30.0))
    tr.update(0.0, [Det(100, 100)])
    tracks = tr.update(0.1, [Det(103, 100), Det(300, 200)])  # the first again, one new
    moving, born = fill_track_array(TrackArray(), tracks, camera).tracks
    assert (moving.hits, born.hits) == (2, 1)
    assert moving.has_velocity and moving.vx > 0 and moving.has_bearing
    assert np.linalg.norm([moving.angular_rate.x, moving.angular_rate.y, moving.angular_rate.z]) > 0
    assert moving.velocity_std < 30.0
    assert not born.has_velocity and (born.vx, born.vy) == (0.0, 0.0)
    assert born.velocity_std == pytest.approx(30.0)
    assert born.has_bearing  # the bearing is known; its rate is not
    assert (born.angular_rate.x, born.angular_rate.y, born.angular_rate.z) == (0.0, 0.0, 0.0)


def test_coasting_tracks_on_tracks_carry_their_last_detection_s_stamp():
    """On ``tracks`` a coasting track could not be told from a detected one (its state is
    only on target_tracks): each Detection2D's stamp is now its last detection's frame's,
    the array's for a track detected in this frame; tracking.publish_coasting false leaves
    coasting tracks out."""
    import numpy as np

    from irstd_ros.core.stamps import stamp_ns

    def run(publish_coasting: bool) -> list:
        params = {p.name: p.default for p in PARAMS} | {
            "tracking.enabled": True, "tracking.publish_coasting": publish_coasting}
        tracks = Collect()
        outputs = Outputs(mask=Collect(), detections=Collect(), targets=Collect(),
                          overlay=Collect(), tracks=tracks, target_tracks=Collect())
        pipe = FramePipeline(make_detector(), outputs, params=lambda: params, logger=Log,
                             clock_ns=lambda: 0)
        blobs = frame_for("mono8")
        blank = np.full_like(blobs, blobs.min())
        for k in range(8):  # the blobs for 5 frames, then coasting
            assert pipe.process(_stamped(blobs if k < 5 else blank, 1_000_000_000 + k * 100_000_000))
        return tracks.msgs

    msgs = run(True)
    last_seen = 1_000_000_000 + 4 * 100_000_000
    for k, msg in enumerate(msgs):
        if k < 5:
            assert all(stamp_ns(d.header) == stamp_ns(msg.header) for d in msg.detections)
        else:  # coasting: older than the array
            assert len(msg.detections) == 2
            assert [stamp_ns(d.header) for d in msg.detections] == [last_seen] * 2
            assert stamp_ns(msg.header) > last_seen
    assert len(msgs[4].detections) == 2  # confirmed while detected
    held = run(False)
    assert len(held[4].detections) == 2 and all(m.detections == [] for m in held[5:])


def test_max_pixels_counts_the_padding_of_the_running_networks_stride():
    """The frame is refused when its input padded to *this* network's stride exceeds
    input.max_pixels, not the largest stride of any network: a 100 x 160 frame pads to
    112 x 160 for the shipped stride-16 ``tiny`` (accepted at 112 * 160 px), to 128 x 160
    for a stride-32 network (refused)."""
    params = {p.name: p.default for p in PARAMS} | {"tracking.enabled": False,
                                                    "input.max_pixels": 112 * 160}
    warnings: list[str] = []
    pipe = _quiet_pipeline(params, warnings)
    assert pipe.detector.info.model.stride == 16
    import numpy as np

    frame = np.tile(frame_for("mono8"), (3, 3))[:100, :160].copy()
    assert pipe.process(_camera_frame(frame, "ir_cam", 1_000_000_000))
    assert "max_pixels" not in " ".join(warnings) and not pipe.stats.errors
    params["input.max_pixels"] = 112 * 160 - 1
    assert not pipe.process(_camera_frame(frame, "ir_cam", 2_000_000_000))
    assert "padded to 160x112 for the network's stride 16" in " ".join(warnings)
