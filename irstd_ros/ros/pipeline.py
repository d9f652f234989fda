"""The node's pipeline: a short frame queue, worker thread, processing, tracking, health.

One :class:`FramePipeline` serves the plain node and the lifecycle node alike; neither
node has a data path of its own. It needs no rclpy: publishers are anything with
``publish(msg)``, the clock is a function, the logger is asked for at each use (so that
it can be replaced). The executor thread calls :meth:`FramePipeline.submit` and
:meth:`FramePipeline.on_camera_info`; the worker thread runs :meth:`FramePipeline.process`.

* A frame whose header stamp is older than ``input.max_age`` on arrival is dropped and
  counted as ``stale`` (a node starved of CPU catches up with the present, not its
  backlog). Only live stamps are checked, within :data:`LIVE_STAMP_WINDOW_S` of the
  node's clock: a replayed bag keeps its old stamps and is not stale for it; nor is a
  stamp that does not advance (the same on :data:`FROZEN_STAMP_FRAMES` frames in a row: a
  camera that does not stamp each frame; its age says nothing about the frame's); nor the
  first frame of a stream restart (a replay's loop: see below).
* Frames wait for the worker in a queue of ``input.queue_size`` (default 2). A frame that
  arrives when it is full drops the oldest waiting one, which is counted as superseded:
  never a backlog. 1 keeps only the newest frame; 2 lets one slow frame (a scheduler
  hiccup) pass without a drop, at the cost of up to one frame of extra wait.
* Bad frames and inference failures are logged (rate-limited per kind), counted, skipped.
* Each answered frame's latency (from a live header stamp: none from a stamp of 0, a
  replayed bag's or one ahead of the node's clock) is split into stages
  (:data:`~irstd_ros.ros.health.STAGES`: arrival, queue, conversion, the detector's
  three, publishing), whose p50s go to ``/diagnostics``. The small messages (tracks,
  detections, targets) go out before the mask and the overlay, so a large image does not
  delay them.
* An output with no subscriber is not built (:func:`subscribed`); the tracker is updated
  all the same.
* The tracker runs on header stamps. A frame whose stamp does not advance (0, "unknown",
  or the same stamp on :data:`FROZEN_STAMP_FRAMES` frames in a row: a driver that does not
  stamp, or stamps from a sim clock without ``/clock``) is timed by its arrival instead:
  the node's clock, or a steady clock while that stands still (sim time without
  ``/clock``), continuing the tracker's time, so tracks still coast and end. It is counted
  as ``stamp_not_advancing`` and logged at the start of each such stretch; its outputs
  keep its header as it came. A stamp repeated on fewer frames is the same instant.
* A live frame stamped more than :data:`FUTURE_STAMP_TOLERANCE_S` ahead of the node's
  clock (a camera clock ahead of this host's, a stamp glitch) is answered with its stamp
  but timed by its arrival like the frames above, and its stamp is not taken as the
  stream's: the next correctly stamped frame goes on with the tracks (no jump, no
  ``stamp_backwards``, no reset). Counted as ``stamp_future`` and logged (rate-limited).
* ``/diagnostics`` warns of a period without a frame while frames are expected (the
  lifecycle node's inactive state expects none), naming incompatible-QoS publishers when
  any was seen: the most common reason a camera's frames never arrive.
* One node serves one camera. A frame whose ``header.frame_id`` is not the previous
  frame's (several cameras on one topic, or a switch between cameras) starts its stream
  afresh: the tracks (in the other camera's pixels) are dropped, ids counting on, and its
  stamps and size are not compared with the other camera's (no ``stamp_backwards``,
  ``size_changed`` or tracker reset warnings for it). Counted as ``frame_id_changed`` and
  logged once, saying to run one node per camera: interleaved cameras keep restarting
  the tracks, so none is ever confirmed. An empty ``frame_id`` names no camera: it
  neither ends the named camera's stream nor starts one.
* A stream whose time goes back (a bag replayed with ``ros2 bag play --loop``, with
  ``--clock`` or without; a simulation reset) restarts: the tracks are dropped (ids count
  on), the stamp history and the tracker's time start afresh. Counted as
  ``stream_restarts`` (no error, no WARN) and logged (info, rate-limited). Two signs,
  whichever comes first, make one restart:

  - the frames: a stamp more than :data:`STREAM_RESTART_S` behind the stream's latest
    (the same camera; smaller steps back are frames out of order: below). Such a frame is
    not stale either: a live camera's frames arrive in order, so a late one is never behind
    the frame before it (and is still dropped by ``input.max_age``). While the node's
    clock has not gone back with the stream (``/clock`` a tick later than the loop's first
    frame), the frames after it are aged from it: their age less its age, so a frame
    later than ``input.max_age`` behind it is still stale; this ends when the clock goes
    back (:meth:`FramePipeline.restart_stream`), a frame is within ``input.max_age`` of
    the clock, or the stamps are back where they were before the step (a glitch);
  - the node's clock (:meth:`FramePipeline.restart_stream`, the nodes' clock-jump
    callback): going back by more than :data:`STREAM_RESTART_S` (sim time: a replay
    looping, a simulation reset), or switching between system and ROS time. It is applied
    at the first frame that arrives after it, in the worker (the frames queued before it
    are the old stream's): a frame stamped ahead of the clock but not of the clock before
    the jump (the replay's last frame, delivered after its ``/clock`` went back) still ends
    the old stream, and is no ``stamp_future``; the next one restarts the stream if its
    stamp is behind the stream's last (by any amount: the clock says why), or it is
    unstamped, or the clock changed. A stream whose stamps go on (another time base than
    the clock's; one restarted by its stamps already) is left alone.
* A frame stamped behind the stream's latest stamp by at most :data:`STREAM_RESTART_S` (the
  threshold is the tracker's, :mod:`irstd_ros.tracking.tracker`) is out of order: reordered
  by the network, or a second publisher. It is answered (its detections, targets and mask
  published under its own header) but not tracked: the tracker skips it and the tracks are
  published as they were after the latest frame, under its header (on ``tracks``, the
  detections of the tracks detected in that frame carry its stamp, newer than the
  array's). Counted once, as ``stamp_backwards`` (warned, rate-limited), and in the
  tracker's ``tracks_out_of_order``; no ``tracker_reset`` (before, every step back reset
  the tracks). The tracker skips a frame behind its own latest tracked one, which may be
  older than the stream's (the latest frame failed inference, or ended a stretch timed by
  arrival): such a frame is tracked (``Tracker.last_skip``). A stamp of 0 is no step back (``stamp_not_advancing``). ``irstd eval-bag``
  runs its tracker over a bag's frames in stamp order, so none is out of order there.
* ``tracks`` (vision_msgs/Detection2DArray) tells coasting tracks apart the vision_msgs
  way: each Detection2D's own ``header.stamp`` is the stamp of the frame of the track's
  last detection, the array's own for a track detected in this frame, older for a
  coasting one (with stamps that do not advance, the same). ``tracking.publish_coasting``
  false leaves coasting tracks out of ``tracks``; ``target_tracks`` has every track with
  its state either way.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from irstd_ros.core.constants import (
    DETECTIONS_TOPIC,
    LIVE_STAMP_WINDOW_S,
    MASK_TOPIC,
    OVERLAY_TOPIC,
    TARGET_TRACKS_TOPIC,
    TARGETS_TOPIC,
    TRACKS_TOPIC,
)
from irstd_ros.core.overlay import TRAIL_POINTS
from irstd_ros.core.ratelimit import RateLimiter
from irstd_ros.core.stamps import NS_PER_S, stamp_ns
from irstd_ros.core.statistics import format_number
from irstd_ros.core.targets import Target
from irstd_ros.errors import DeviceOutOfMemory, ImageConversionError, IrstdError
from irstd_ros.msg import TargetArray, TrackArray
from irstd_ros.msg import Track as TrackMsg
from irstd_ros.ros.conversions import array_to_image_fields, frame_to_array
from irstd_ros.ros.health import NOT_MEASURED, STAGES, PipelineStats
from irstd_ros.ros.messages import (
    detections_array,
    rclpy_types,
    targets_array,
    track_detections_array,
)
from irstd_ros.ros.params import detector_settings
from irstd_ros.ros.transport import large_frame_hint
from irstd_ros.tracking import (
    STREAM_RESTART_S,
    CameraModel,
    Track,
    Tracker,
    TrackerConfig,
    TrackState,
    bearings,
)

if TYPE_CHECKING:
    from irstd_ros.inference.detector import Detector

MESSAGE_TYPES = rclpy_types()  # the output message classes, by full type name
WARN_PERIOD_S = 5.0  # at most one warning per error kind in this period
OUTPUT_QOS_DEPTH = 10
# a stamp on this many frames in a row does not advance: they are timed by their arrival
# (fewer: the same instant, e.g. a frame published twice)
FROZEN_STAMP_FRAMES = 3
# A frame timed by its arrival steps on the node's clock only while that runs smoothly: it
# also advanced at the previous frame, by at most this many times the steady clock's step
# (a sim clock replaying up to 10x) plus the slack (scheduling jitter, ns); otherwise (a
# clock that jumps: /clock starting, an NTP step; one coarser than the frames) steady.
MAX_CLOCK_RATE = 10.0
CLOCK_SLACK_NS = 10_000_000
# A live frame stamped further ahead of the node's clock on arrival is a stamp_future (see
# the module's notes): above the skew of clocks kept by NTP (ms) or PTP (us) and the step of
# a sim clock published at 10 Hz or more (its frames stamped up to a step ahead of it);
# below an unsynchronised camera's skew or a stamp glitch. Smaller skews are taken as they
# are (no latency is measured from a stamp ahead of the clock).
FUTURE_STAMP_TOLERANCE_S = 0.2
# what fixes the most common camera misconfiguration (a camera with rclcpp's sensor-data QoS)
BEST_EFFORT_HINT = "a best-effort (sensor-data QoS) camera needs qos.reliability:=best_effort"
TRACK_STATE_CODES = {
    TrackState.TENTATIVE: TrackMsg.STATE_TENTATIVE,
    TrackState.CONFIRMED: TrackMsg.STATE_CONFIRMED,
    TrackState.COASTING: TrackMsg.STATE_COASTING,
}


@dataclass(frozen=True)
class _Arrival:
    """When :meth:`FramePipeline.submit` queued a frame: the node's clock (ns, to compare
    with header stamps; to time a frame whose stamp does not advance),
    ``time.perf_counter`` (s, for the queue wait) and the pipeline's steady clock (ns, the
    same when the node's clock stands still; None: not taken)."""

    clock_ns: int
    perf_s: float
    steady_ns: int | None = None
    # aged from a stream restart's first frame (see the module's notes): no latency is
    # measured from its stamp, which the clock has not followed back yet
    rebased: bool = False
    # the clock jumps (FramePipeline.restart_stream) before it arrived (None: all of them)
    clock_jumps: int | None = None


class Publisher(Protocol):
    def publish(self, msg: Any) -> None: ...


@dataclass(frozen=True)
class Outputs:
    """The pipeline's publishers (plain or lifecycle ones)."""

    mask: Publisher
    detections: Publisher
    targets: Publisher
    overlay: Publisher
    tracks: Publisher
    target_tracks: Publisher

    def all(self) -> tuple[Publisher, ...]:
        return (self.mask, self.detections, self.targets, self.overlay, self.tracks,
                self.target_tracks)


# each output's topic (relative; the field of :class:`Outputs` of the same name) and type
OUTPUT_TYPES: dict[str, type] = {
    MASK_TOPIC: Image, DETECTIONS_TOPIC: Detection2DArray, TARGETS_TOPIC: TargetArray,
    OVERLAY_TOPIC: Image, TRACKS_TOPIC: Detection2DArray, TARGET_TRACKS_TOPIC: TrackArray,
}


def create_outputs(create: Callable[..., Any]) -> Outputs:
    """The output publishers, made with ``create(type, topic, depth)`` (``create_publisher``
    or ``create_lifecycle_publisher``)."""
    # the fields are named as the topics
    return Outputs(**{topic: create(kind, topic, OUTPUT_QOS_DEPTH) for topic, kind in OUTPUT_TYPES.items()})


def consume_outputs(node: Any, namespace: str = "", skip: tuple[str, ...] = ()) -> list[Any]:
    """Subscriptions of ``node`` to every output of the node in ``namespace`` but ``skip``,
    with no callback work: a consumer like a deployment's (rviz, a recorder), so that the
    node builds every output as there (it builds none nobody subscribes to)."""
    prefix = namespace.rstrip("/") + "/" if namespace else ""
    return [
        node.create_subscription(kind, prefix + topic, lambda _msg: None, OUTPUT_QOS_DEPTH)
        for topic, kind in OUTPUT_TYPES.items() if topic not in skip
    ]


def subscribed(publisher: Publisher) -> bool:
    """Whether ``publisher`` has a subscriber (one that cannot say, a bag writer or a test's
    collector: yes). An output nobody subscribes to is neither built nor published: the
    overlay alone costs 5-10 ms a 640x512 frame, the messages of 100 targets a few ms."""
    count = getattr(publisher, "get_subscription_count", None)
    return count is None or count() > 0


def _age_ms(now_ns: int, stamp: int) -> float | None:
    """Milliseconds from header stamp ``stamp`` (ns) to ``now_ns`` (negative: the stamp is
    ahead), or None when the stamp is not a live one (0, or more than
    :data:`LIVE_STAMP_WINDOW_S` from ``now_ns``: a replayed bag's)."""
    ms = (now_ns - stamp) / 1e6
    return ms if stamp and abs(ms) <= LIVE_STAMP_WINDOW_S * 1e3 else None


def _live_ms(now_ns: int, stamp: int) -> float | None:
    """The latency from ``stamp`` to ``now_ns`` (ms), or None when none can be measured: the
    stamp is not live (:func:`_age_ms`), or it is ahead of ``now_ns`` (a camera clock ahead
    of this host's; a negative latency would pull the percentiles below the truth)."""
    ms = _age_ms(now_ns, stamp)
    return ms if ms is not None and ms >= 0 else None


def fill_track_array(
    msg: TrackArray, tracks: Sequence[Track], camera: CameraModel | None = None
) -> TrackArray:
    """Every track, with its bearing and line-of-sight rate when ``camera`` is given. A
    track whose velocity is not known yet (``has_velocity`` false: one detection so far)
    has vx, vy and angular_rate 0, "unknown" (Track.msg), and its velocity_std."""
    rays = bearings(camera, tracks) if camera is not None else [None] * len(tracks)
    for t, ray in zip(tracks, rays):
        known = t.has_velocity
        m = TrackMsg(
            id=t.id, state=TRACK_STATE_CODES[t.state], score=float(t.score),
            x=t.x, y=t.y, vx=t.vx if known else 0.0, vy=t.vy if known else 0.0,
            position_std=t.position_std, has_velocity=known, velocity_std=t.velocity_std,
            width=float(t.width), height=float(t.height), age=t.age_s,
            time_since_update=t.time_since_update_s, hits=t.hits, misses=t.misses,
        )
        if ray is not None:
            b, w = ray
            if np.isfinite(b).all() and (not known or np.isfinite(w).all()):
                m.has_bearing = True
                m.bearing.x, m.bearing.y, m.bearing.z = (float(v) for v in b)
                if known:
                    m.angular_rate.x, m.angular_rate.y, m.angular_rate.z = (float(v) for v in w)
        msg.tracks.append(m)
    return msg


class _HeldWarnings:
    """The tracker's logger: its warnings held until :meth:`FramePipeline._track` reports
    them (counted by kind and rate-limited like the pipeline's other problems)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def warning(self, msg: str) -> None:
        self.texts.append(msg)

    def take(self) -> list[str]:
        texts, self.texts = self.texts, []
        return texts


class FramePipeline:
    """Frames in, outputs published; see the module docstring.

    ``params`` returns the node's current parameter values; ``logger`` the node's logger
    (``warning``/``info``/``error``); ``clock_ns`` the node's time (ROS time: simulated
    time when the node uses it); ``ok`` whether the node's context is still running;
    ``rmw`` the RMW implementation's name (for the one-time transport hint on large frames);
    ``first_track_id`` the first track's id (:attr:`next_track_id` of the pipeline this one
    replaces: ids are never reused in the node's life); ``steady_ns`` a clock that always
    advances (ns), for the frames whose stamps do not.
    """

    def __init__(
        self,
        detector: Detector,
        outputs: Outputs,
        *,
        params: Callable[[], Mapping[str, Any]],
        logger: Callable[[], Any],
        clock_ns: Callable[[], int],
        ok: Callable[[], bool] = lambda: True,
        rmw: str = "",
        first_track_id: int = 1,
        steady_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.detector: Detector | None = detector
        self._steady_ns = steady_ns
        self._first_track_id = first_track_id
        self._rmw = rmw
        # the largest frame (bytes) checked against the transport's defaults; a frame size
        # that grows later is checked again, and once a hint is given it is not repeated
        self._transport_checked_bytes = 0
        self.outputs = outputs
        self._params, self._logger, self._clock_ns, self._ok = params, logger, clock_ns, ok
        self.stats = PipelineStats()
        self._warn = RateLimiter(WARN_PERIOD_S)
        self._last_stamp: tuple[int, int] | None = None
        # the stream's latest stamp (ns; None: none since it started): a frame behind it is
        # out of order (``stamp_backwards``, not tracked), one over STREAM_RESTART_S behind
        # it restarts the stream, as the tracker skips and resets against its latest frame
        self._latest_stamp_ns: int | None = None
        self._stamp_repeats = 0  # frames in a row with the previous frame's stamp
        # the same, of the frames submitted (executor thread; for input.max_age): the
        # previous stamp (repeats), the latest (restarts; stale frames' too), the camera
        self._submit_stamp: int | None = None
        self._submit_latest: int | None = None
        self._submit_repeats = 0
        self._submit_frame_id: str | None = None
        # a stream restart the node's clock has not followed (yet): what is taken from the
        # ages of the frames after it (ns; 0: none), and the stamp before that restart (a
        # stream back there ends it); under _stream_lock, as the clock's jump callback
        # clears it (any thread)
        self._age_lead_ns = 0
        self._lead_until_ns = 0
        # the node's clock went back (or changed) and no frame has arrived since: (why, the
        # clock before the jump (ns; None: another clock), the jump's number in _clock_jumps)
        self._clock_restart: tuple[str, int | None, int] | None = None
        self._clock_jumps = 0
        self._stream_lock = threading.Lock()
        self._stamps_frozen = False  # the last frame's stamp did not advance
        self._stamps_live = False  # the stream's last stamp was live (see _stamp_ahead_s)
        # the tracker's time: the last tracked frame's (tracker ns, its arrival on the node's
        # and the steady clock (ns), whether the node's clock ran then), whether it was timed
        # by arrival, and what is added to
        # header stamps (nonzero only after a stretch timed by arrival: the tracker's time
        # goes on from there without a jump)
        self._track_time: tuple[int, tuple[int, int], bool] | None = None
        self._arrival_timed = False
        self._track_offset_ns = 0
        self._last_size: tuple[int, int] | None = None
        self._frame_id: str | None = None  # the last frame's header.frame_id (None: no frame yet)
        self._frame_id_change_logged = False
        self._cond = threading.Condition()
        self._pending: deque[tuple[Any, _Arrival]] = deque()
        self._busy = False  # the worker is processing a frame (under _cond)
        self._closing = False
        self.worker: threading.Thread | None = None
        self.tracker: Tracker | None = None
        self._tracker_warnings = _HeldWarnings()
        self.camera: CameraModel | None = None
        # the camera and the (height, width) of the images its camera_info describes (None:
        # not given), replaced together: the worker reads them as one
        self._camera_key: tuple[Any, ...] | None = None
        self._trails: dict[int, deque[tuple[float, float]]] = {}
        # track id -> the header stamp (ns) of the frame of its last detection: the stamp
        # of its Detection2D on ``tracks`` (older than the frame's while it coasts)
        self._last_hits: dict[int, int] = {}
        self._track_counts = (0, 0)  # live, confirmed: for /diagnostics
        # times tracking.enabled was switched off (by apply_params), and as the worker has
        # seen it: off and on again between two frames starts afresh too
        self._tracking_enabled, self._tracking_offs, self._tracking_offs_seen = True, 0, 0
        self.apply_params()

    # --- life -------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker = threading.Thread(target=self._work, name="irstd_inference", daemon=True)
        self.worker.start()

    def stop(self) -> None:
        """Stop the worker; waits for the frame in progress."""
        with self._cond:
            self._closing = True
            self._pending.clear()
            self._cond.notify_all()
        if self.worker is not None:
            self.worker.join()

    def release(self) -> None:
        """Stop, and drop the detector and the tracker (the model can be freed; its id
        counter stays in :attr:`next_track_id`)."""
        self.stop()
        self.detector = None
        self._first_track_id = self.next_track_id
        self.tracker = None

    @property
    def next_track_id(self) -> int:
        """The id the next new track gets."""
        return self.tracker.next_id if self.tracker is not None else self._first_track_id

    def discard_pending(self) -> None:
        """Forget the frames waiting in the queue, if any (counted as dropped), then wait
        for the frame in progress to be answered (before the outputs are disabled: a frame
        counted as processed is one whose outputs went out)."""
        with self._cond:
            discarded = len(self._pending)
            self._pending.clear()
            while self._busy:
                self._cond.wait()
        self.stats.on_dropped(discarded)

    def apply_params(self) -> None:
        """Apply the run-time parameters (thresholds, areas, scaling, the tracking-only
        candidate and gated thresholds) to the detector."""
        p = self._params()
        if self._tracking_enabled and not p["tracking.enabled"]:
            self._tracking_offs += 1
        self._tracking_enabled = p["tracking.enabled"]
        if self.detector is None:
            return
        # at once: a frame in the network sees the old set or the new
        self.detector.apply(**detector_settings(self.detector.info, p))

    # --- executor thread --------------------------------------------------------------------
    def submit(self, msg: Image | CompressedImage) -> None:
        """A frame arrived: drop it if stale, else queue it (dropping the oldest waiting
        frame when the queue is full)."""
        age_s, rebased = self._stale_age(msg.header)
        jumps = self._clock_jumps  # before the clock is read for the arrival
        if age_s is not None:
            n = self.stats.on_stale()
            if self._warn.allow("stale"):  # counted as ``stale``, not as an error
                self._logger().warning(
                    f"stale: a frame {age_s:.2f} s old on arrival, over input.max_age "
                    f"{self._params()['input.max_age']} s, skipped ({n} so far); check the "
                    "camera's clock against this host's, or raise input.max_age (0: off)"
                )
            return
        size = max(1, int(self._params().get("input.queue_size", 1)))
        with self._cond:
            superseded = 0
            while len(self._pending) >= size:
                self._pending.popleft()
                superseded += 1
            self._pending.append(
                (msg, _Arrival(self._clock_ns(), time.perf_counter(), self._steady_ns(),
                               rebased, jumps))
            )
            self._cond.notify()
        self.stats.on_received(superseded)

    def _stale_age(self, header: Any) -> tuple[float | None, bool]:
        """The frame's age (s) if it is stale, else None (a stamp that is not live never is,
        nor one that does not advance, nor a stream restart's first: see the module's
        notes); and whether it is aged from a stream restart the clock has not followed."""
        stamp, frame_id = stamp_ns(header), header.frame_id
        prev_camera, latest = self._submit_frame_id, self._submit_latest
        self._submit_repeats = self._submit_repeats + 1 if stamp == self._submit_stamp else 0
        self._submit_stamp = stamp
        if frame_id or prev_camera is None:  # as _check_stream: '' names no camera
            self._submit_frame_id = frame_id
        same_camera = not (prev_camera and frame_id and frame_id != prev_camera)
        # as _check_stream, against the stream's latest stamp, not the previous frame's:
        # after a late frame (out of order, or dropped as stale) a loop's first frame is
        # still a restart
        restarted = bool(
            same_camera and stamp and latest and latest - stamp > STREAM_RESTART_S * NS_PER_S
        )
        if stamp and (restarted or not same_camera or latest is None or stamp > latest):
            self._submit_latest = stamp
        max_age = self._params().get("input.max_age", 0.0)
        age_ms = _live_ms(self._clock_ns(), stamp)
        with self._stream_lock:
            if restarted:
                # restarted: this frame is no later than the stream; aged from it on while
                # the clock is not back with it
                late = age_ms is not None and max_age > 0 and age_ms / 1e3 > max_age
                self._age_lead_ns = round(age_ms * 1e6) if late and age_ms else 0
                self._lead_until_ns = latest or 0
            elif self._age_lead_ns and (
                stamp >= self._lead_until_ns or age_ms is not None and age_ms / 1e3 <= max_age
            ):
                self._age_lead_ns = 0  # a glitch's end, or the clock caught up
            lead_ns = self._age_lead_ns
        if max_age <= 0 or self._submit_repeats >= FROZEN_STAMP_FRAMES - 1 or age_ms is None:
            return None, bool(lead_ns)
        age_s = (age_ms - lead_ns / 1e6) / 1e3
        return (age_s if age_s > max_age else None), bool(lead_ns)

    def restart_stream(self, reason: str, back_ns: int | None = None) -> None:
        """The node's clock went back by ``back_ns`` (ns, > 0), or switched between system
        and ROS time (None): ``reason`` says which. Any thread (the clock's jump callback).
        Ages are the clock's own again at once; the stream restarts, if it went back with
        the clock, at the first frame that arrives after this (:meth:`_follow_clock`; see
        the module's notes)."""
        before = None if back_ns is None else self._clock_ns() + back_ns
        with self._stream_lock:
            self._age_lead_ns = 0
            self._clock_jumps += 1
            self._clock_restart = (reason, before, self._clock_jumps)

    def on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the camera model for bearings (rebuilt only when the calibration changes),
        with the image size its camera_info describes (frames of another size get none)."""
        key = (
            msg.header.frame_id, tuple(msg.k), tuple(msg.d), msg.distortion_model, msg.binning_x, msg.binning_y,
            msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height, msg.width,
            msg.height,
        )
        if key == self._camera_key:
            return
        self._camera_key = key
        try:
            camera = CameraModel.from_camera_info(msg)
        except ValueError as exc:
            self.camera = None
            self.report("camera_info", f"no bearings: {exc}")
            return
        self.camera = camera
        if self._warn.allow("camera_info_received"):  # two alternating: not 30 lines a second
            self._logger().info(
                f"camera_info received ({msg.distortion_model or 'no distortion'}): "
                "tracks carry bearings"
            )

    # --- worker thread ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                msg, arrival = self._pending.popleft()
                self._busy = True
            try:
                self.process(msg, arrival)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if self._closing or not self._ok():
                    return  # shutting down: publishing the frame in flight may fail
                self.report("internal_error", f"frame skipped after an unexpected error: {exc!r}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def report(self, kind: str, text: str) -> None:
        """Count a problem of ``kind``; log it unless one of its kind was logged lately."""
        n = self.stats.on_error(kind)
        if self._warn.allow(kind):
            self._logger().warning(f"{kind}: {text} ({n} so far)")

    def process(self, msg: Image | CompressedImage, arrival: _Arrival | None = None) -> bool:
        """Run one frame end to end; False if it was refused (logged and counted).
        ``arrival``: when :meth:`submit` queued it (else its arrival and queue stages are
        not measured)."""
        started = time.perf_counter()
        if arrival is not None and arrival.steady_ns is not None:
            received = (arrival.clock_ns, arrival.steady_ns)
        else:
            received = (self._clock_ns(), self._steady_ns())
        params = self._params()
        detector = self.detector
        if detector is None:
            return False
        try:
            frame = frame_to_array(
                msg, max_pixels=params["input.max_pixels"], stride=detector.info.model.stride
            )
        except ImageConversionError as exc:
            self.report(exc.kind, str(exc))
            return False
        frozen = self._check_stream(
            msg, frame.shape[:2], received[0], None if arrival is None else arrival.clock_jumps
        )
        if len(msg.data) > self._transport_checked_bytes:
            self._transport_checked_bytes = len(msg.data)
            hint = large_frame_hint(len(msg.data), self._rmw)
            if hint:
                self._transport_checked_bytes = sys.maxsize
                self._logger().warning(hint)
        converted = time.perf_counter()
        try:
            result = detector.detect(frame)
        except DeviceOutOfMemory as exc:
            self.report(exc.kind, str(exc))
            if exc.fallback:
                self._logger().error(exc.fallback)
            return False
        except (IrstdError, RuntimeError, ValueError) as exc:
            self.report("inference_error", f"frame skipped: {exc}")
            return False
        detected = time.perf_counter()
        header = msg.header
        # tracks before the per-frame outputs: whoever has a frame's detections has its tracks
        tracks = self._track(
            header, result.targets, frame.shape[:2], result.candidates, result.gated,
            received=received, frozen=frozen,
        )
        out = self.outputs
        # no ids: a target's (its rank in this frame) is no identity across frames; the
        # tracks carry those
        if subscribed(out.detections):
            out.detections.publish(
                detections_array(MESSAGE_TYPES, header, result.targets, with_ids=False)
            )
        if subscribed(out.targets):
            out.targets.publish(targets_array(MESSAGE_TYPES, header, result.targets))
        if subscribed(out.mask):
            mask_msg = Image(header=header)
            mask = result.mask.view(np.uint8) * np.uint8(255)  # one frame-sized array, not two
            for key, value in array_to_image_fields(mask, "mono8").items():
                setattr(mask_msg, key, value)
            out.mask.publish(mask_msg)
        if params["publish.overlay"] and subscribed(out.overlay):
            self._publish_overlay(header, frame, result.targets, tracks)
        stamp = stamp_ns(header)
        stages = {s: result.timings[f"{s}_ms"] for s in STAGES if f"{s}_ms" in result.timings}
        stages["convert"] = (converted - started) * 1e3
        stages["publish"] = (time.perf_counter() - detected) * 1e3
        rebased = arrival is not None and arrival.rebased
        if arrival is not None:
            stages["queue"] = (started - arrival.perf_s) * 1e3
            arrival_ms = None if rebased else _live_ms(arrival.clock_ns, stamp)
            if arrival_ms is not None:
                stages["arrival"] = arrival_ms
        self.stats.on_processed(None if rebased else _live_ms(self._clock_ns(), stamp), stages)
        return True

    def _tracker_config(self, p: Mapping[str, Any]) -> TrackerConfig:
        return TrackerConfig(
            gate_px=p["tracking.gate_px"],
            init_speed=p["tracking.init_speed"],
            confirm_m=p["tracking.confirm_m"],
            confirm_n=p["tracking.confirm_n"],
            max_coast_s=p["tracking.max_coast_s"],
            max_coast_long_s=p["tracking.max_coast_long_s"],
            min_score=p["tracking.min_score"],
        )

    def _track(
        self,
        header: Any,
        targets: Sequence[Target],
        size: tuple[int, int],
        candidates: Sequence[Target] = (),
        gated: Sequence[Target] = (),
        received: tuple[int, int] | None = None,
        frozen: bool = False,
    ) -> list[Track] | None:
        """Update the tracker with this frame (detections, the sub-threshold candidates of
        ``tracking.candidate_threshold`` and the gated ones of ``tracking.gated_threshold``)
        and publish the tracks.

        Disabling ``tracking.enabled`` drops the tracks; enabling it starts afresh, with
        ids counting on (never one reused in the node's life). ``received``: the frame's
        arrival on the node's and the steady clock (None: now); ``frozen``: its stamp does
        not advance (see :meth:`_tracker_ns`).
        """
        p = self._params()
        offs = self._tracking_offs
        if not p["tracking.enabled"] or offs != self._tracking_offs_seen:
            self._tracking_offs_seen = offs
            self._drop_tracks()
            if not p["tracking.enabled"]:
                return None
        cfg = self._tracker_config(p)
        if self.tracker is None:
            self.tracker = Tracker(
                cfg, logger=self._tracker_warnings, first_id=self._first_track_id
            )
        elif self.tracker.config != cfg:
            self.tracker.configure(cfg)
        if received is None:
            received = (self._clock_ns(), self._steady_ns())
        t_ns = self._tracker_ns(stamp_ns(header), received, frozen)
        tracker = self.tracker
        resets = tracker.resets
        try:
            tracks = tracker.update(
                t_ns / NS_PER_S, targets, image_size=size, candidates=candidates, gated=gated
            )
        finally:
            # the tracker's warnings (at most one a frame), by what it did with the frame:
            # reset, time went back over STREAM_RESTART_S (its tracks dropped; the stream
            # restarts before that, so this is rare here); skipped as out of order (already
            # counted and said as ``stamp_backwards`` by _check_stream, so not again); or
            # skipped as a repeated stamp, warned (so counted) once a stretch (each such
            # frame is in Tracker.repeated_stamps; the pipeline times such frames by arrival
            # from the third on, so this is rare here)
            texts = self._tracker_warnings.take()
            if tracker.resets != resets:
                kind: str | None = "tracker_reset"
            else:
                kind = "stamp_repeated" if tracker.last_skip == "repeated" else None
            if kind is not None:
                for text in texts:
                    self.report(kind, text)
        if tracker.last_skip is None:  # the frame was tracked
            stamp = stamp_ns(header)
            for t in tracks:
                if t.misses == 0:  # detected in this frame (or born in it)
                    self._last_hits[t.id] = stamp
        if subscribed(self.outputs.tracks):
            coasting = p["tracking.publish_coasting"]
            out = track_detections_array(MESSAGE_TYPES, header, tracks, self._last_hits, coasting)
            self.outputs.tracks.publish(out)
        camera = self._camera_for(size, header.frame_id)
        if subscribed(self.outputs.target_tracks):
            self.outputs.target_tracks.publish(
                fill_track_array(TrackArray(header=header), tracks, camera)
            )
        self._track_counts = (len(tracks), sum(t.confirmed for t in tracks))
        live = {t.id for t in tracks}
        for tid in (self._trails.keys() | self._last_hits.keys()) - live:
            self._trails.pop(tid, None)
            self._last_hits.pop(tid, None)
        for t in tracks:
            if t.confirmed:
                self._trails.setdefault(t.id, deque(maxlen=TRAIL_POINTS)).append((t.x, t.y))
        return tracks

    def _tracker_ns(self, stamp: int, received: tuple[int, int], frozen: bool) -> int:
        """The tracker's time (ns) for a frame stamped ``stamp`` that arrived at
        ``received`` (the node's clock, a steady clock): the stamp; for a ``frozen`` one
        (its stamp does not advance), the previous frame's time plus the time since its
        arrival: on the node's clock while that runs smoothly (see :data:`MAX_CLOCK_RATE`;
        sim time replayed at another rate), else on the steady one (sim time without
        ``/clock``, a clock that jumps or steps back, or ticks coarser than the frames). The
        first frame whose stamps advance again goes on from there too, and the stamps after
        it are offset to match: no jump, no reset, their differences kept. With stamps that
        always advance this is the stamp itself."""
        prev = self._track_time
        clock_runs = received[0] > 0 and (prev is None or received[0] > prev[1][0])
        if not frozen and not self._arrival_timed:
            t_ns = stamp + self._track_offset_ns
        elif prev is None:
            t_ns = received[1]
        else:
            t_prev, (clock, steady), clock_ran = prev
            clock_step, steady_step = received[0] - clock, max(0, received[1] - steady)
            smooth = clock_ran and 0 < clock_step <= MAX_CLOCK_RATE * steady_step + CLOCK_SLACK_NS
            t_ns = t_prev + (clock_step if smooth else steady_step)
        if self._arrival_timed and not frozen:  # the stamps advance again: on them from here
            self._track_offset_ns = t_ns - stamp
        self._arrival_timed = frozen
        self._track_time = (t_ns, received, clock_runs)
        return t_ns

    def _camera_for(
        self, size: tuple[int, int] | None, frame_id: str = "", report: bool = True
    ) -> CameraModel | None:
        """The camera model for frames of ``size`` (height, width): None (and reported)
        when the camera_info describes images of another size, whose bearings would be
        wrong (e.g. a camera_info of the full resolution with a resized image). A
        camera_info of another frame than the image's (``frame_id``) is reported and used:
        it may be a naming difference, or another camera's calibration."""
        camera = self.camera  # one read: the model, its size and frame together
        if camera is None:
            return None
        if report and camera.frame_id and frame_id and camera.frame_id != frame_id:
            self.report(
                "camera_info_frame",
                f"camera_info is of frame {camera.frame_id!r}, images of {frame_id!r}: bearings "
                "from it, in the image's frame (check the camera_info remapping)",
            )
        if camera.image_size in (None, size):
            return camera
        expected = camera.image_size
        if report and size is not None:
            self.report(
                "camera_info_mismatch",
                f"camera_info describes {expected[1]}x{expected[0]} images, frames are "
                f"{size[1]}x{size[0]}: tracks without bearings (remap camera_info to this "
                "image's own)",
            )
        return None

    def _check_stream(
        self, msg: Image | CompressedImage, size: tuple[int, int], clock_ns: int,
        clock_jumps: int | None = None,
    ) -> bool:
        """Report stamps going back and size changes; start afresh on another frame_id
        (:meth:`_frame_id_changed`); True when the frame's stamp cannot time the tracker:
        it does not advance (0, or the same on :data:`FROZEN_STAMP_FRAMES` frames in a
        row), counted as ``stamp_not_advancing`` and logged once a stretch (rate-limited),
        or it is ahead of the node's clock at arrival, ``clock_ns``
        (:meth:`_stamp_ahead_s`), counted as ``stamp_future`` and not taken as the
        stream's last stamp. A clock jump (:meth:`restart_stream`) before its arrival
        (``clock_jumps``: those before it; None: all) is applied first (:meth:`_follow_clock`),
        and stream restarts are taken (see the module's notes)."""
        frame_id = msg.header.frame_id
        # an empty frame_id names no camera (a driver's first frames before its frame is
        # set, a bag that lost it): it neither ends the named camera's stream nor starts one
        if self._frame_id and frame_id and frame_id != self._frame_id:
            self._frame_id_changed(self._frame_id, frame_id)
        if frame_id or self._frame_id is None:
            self._frame_id = frame_id
        t_ns = stamp_ns(msg.header)
        old_stream = self._follow_clock(t_ns, clock_ns, clock_jumps)
        ahead_s = None if old_stream else self._stamp_ahead_s(t_ns, clock_ns)
        if ahead_s is not None:
            self.report(
                "stamp_future",
                f"header stamp {ahead_s:.3f} s ahead of this node's clock (tolerance "
                f"{FUTURE_STAMP_TOLERANCE_S} s): the frame is answered with its stamp and tracked "
                "by its arrival; check the camera's clock (NTP, PTP) against this host's",
            )
            self._check_size(size)
            return True
        latest = self._latest_stamp_ns
        if t_ns and latest is not None and latest - t_ns > STREAM_RESTART_S * NS_PER_S:
            self._restart(f"header stamps went back {(latest - t_ns) / NS_PER_S:.1f} s")
            latest = None
        self._stamps_live = _age_ms(clock_ns, t_ns) is not None
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if t_ns and latest is not None and t_ns < latest:
            self.report(
                "stamp_backwards",
                f"header stamp {stamp} is {(latest - t_ns) / NS_PER_S:.3f} s behind the stream's "
                f"latest ({divmod(latest, NS_PER_S)}): a frame out of order (the tracker skips "
                "a frame behind its latest tracked one and keeps the tracks; over "
                f"{STREAM_RESTART_S:g} s back restarts the stream)",
            )
        if t_ns and (latest is None or t_ns > latest):
            self._latest_stamp_ns = t_ns
        self._stamp_repeats = self._stamp_repeats + 1 if stamp == self._last_stamp else 0
        frozen = stamp == (0, 0) or self._stamp_repeats >= FROZEN_STAMP_FRAMES - 1
        if frozen:
            n = self.stats.on_error("stamp_not_advancing")
            if not self._stamps_frozen and self._warn.allow("stamp_not_advancing"):
                what = "stamped 0 (unknown)" if stamp == (0, 0) else f"all stamped {stamp}"
                self._logger().warning(
                    f"stamp_not_advancing: frames {what}: tracks are timed by their arrival, "
                    f"outputs keep the input's stamp ({n} so far); stamp the frames at capture "
                    "(the camera driver's time stamps; with use_sim_time, publish /clock)"
                )
        self._stamps_frozen = frozen
        self._check_size(size)
        self._last_stamp = stamp
        return frozen

    def _last_stamp_ns(self) -> int | None:
        """The stream's last stamp (ns; None: no frame since it started)."""
        last = self._last_stamp
        return None if last is None else last[0] * NS_PER_S + last[1]

    def _follow_clock(self, stamp: int, clock_ns: int, clock_jumps: int | None) -> bool:
        """Apply a clock jump (:meth:`restart_stream`) at the first frame that arrived after
        it (``clock_jumps``: the jumps before its arrival; None: all), stamped ``stamp`` (ns)
        and arrived at ``clock_ns``: restart the stream when the stamp is behind the stream's
        last, or 0, or the clock changed (see the module's notes). True: the frame is the
        old stream's, stamped ahead of the clock at its arrival but not of the clock before
        the jump (which waits for the next frame)."""
        with self._stream_lock:
            pending = self._clock_restart
        if pending is None:
            return False
        reason, before, number = pending
        if clock_jumps is not None and clock_jumps < number:
            return False  # queued before the jump: the old stream's
        tolerance = FUTURE_STAMP_TOLERANCE_S * NS_PER_S
        if before is not None and stamp and clock_ns + tolerance < stamp <= before + tolerance:
            return True
        with self._stream_lock:
            if self._clock_restart is pending:  # not replaced by a later jump meanwhile
                self._clock_restart = None
        last = self._last_stamp_ns()
        # before None: another clock, every stamp means something else; unstamped frames:
        # the clock is all there is to go by; else the stream went back with the clock
        if last is not None and (before is None or not stamp or stamp < last):
            self._restart(reason)
        return False

    def _restart(self, reason: str) -> None:
        """The stream's time went back (see the module's notes): count it, say so (info,
        rate-limited), and start afresh."""
        n = self.stats.on_restart()
        if self._warn.allow("stream_restart"):
            self._logger().info(
                f"stream restarted ({reason}): tracks start afresh, ids counting on "
                f"(stream_restarts {n} so far: a replay's loop, a simulation reset)"
            )
        self._start_afresh()

    def _drop_tracks(self) -> None:
        """Drop the tracks and their trails (the tracker is kept for its id counter)."""
        if self.tracker is not None:
            self.tracker.reset()
        self._trails.clear()
        self._last_hits.clear()
        self._track_counts = (0, 0)

    def _start_afresh(self) -> None:
        """Forget the stream: tracks, trails, stamp history and the tracker's time (the id
        counter goes on; the frame size is kept)."""
        self._drop_tracks()
        self._last_stamp = None
        self._latest_stamp_ns = None
        self._stamp_repeats = 0
        self._stamps_frozen = False  # frozen stamps are said again
        self._stamps_live = False
        self._track_time = None
        self._arrival_timed = False
        self._track_offset_ns = 0

    def _check_size(self, size: tuple[int, int]) -> None:
        """Report a change of frame size and drop the tracks (in the old frame's pixels)."""
        if self._last_size is not None and size != self._last_size:
            self.report("size_changed", f"frame size changed from {self._last_size} to {size}")
            self._drop_tracks()
        self._last_size = size

    def _stamp_ahead_s(self, stamp: int, clock_ns: int) -> float | None:
        """How far (s) header stamp ``stamp`` (ns) is ahead of the node's clock ``clock_ns``,
        when by more than :data:`FUTURE_STAMP_TOLERANCE_S` in a live stream: the stamp is
        within :data:`LIVE_STAMP_WINDOW_S` of the clock, or the stream's previous one was
        (a glitch of minutes counts; a stream of another time base, the node on sim time
        and the camera on the wall clock, does not); else None. A stamp of 0, or a clock
        at 0 (sim time without ``/clock``), is never ahead."""
        ahead_ns = stamp - clock_ns
        if not stamp or clock_ns <= 0 or ahead_ns <= FUTURE_STAMP_TOLERANCE_S * NS_PER_S:
            return None
        if ahead_ns > LIVE_STAMP_WINDOW_S * NS_PER_S and not self._stamps_live:
            return None
        return ahead_ns / NS_PER_S

    def _frame_id_changed(self, old: str, new: str) -> None:
        """Another camera's frame: count it, say once that one node serves one camera, and
        start the stream afresh (tracks, trails, stamp and size history, the tracker's
        time; the id counter goes on)."""
        n = self.stats.on_error("frame_id_changed")
        if not self._frame_id_change_logged:
            self._frame_id_change_logged = True
            self._logger().warning(
                f"frame_id_changed: a frame of {new!r} after frames of {old!r}: one node tracks "
                "one camera, so its tracks restart at every change of frame_id (counted as "
                f"errors.frame_id_changed, {n} so far; said once). Several cameras on one topic "
                "never get a confirmed track: give each camera its own topic and node "
                "(ros2 launch irstd_ros irstd.launch.py namespace:=<camera> image_topic:=<its image>)"
            )
        self._start_afresh()  # its tracks are in the other camera's pixels
        self._last_size = None

    def _publish_overlay(
        self, header: Any, frame: np.ndarray, targets: list[Target], tracks: list[Track] | None
    ) -> None:
        from irstd_ros.core.overlay import draw_overlay  # optional output: import only when used

        shown = [t for t in tracks or () if t.confirmed]
        trails = {t.id: list(self._trails.get(t.id, ())) for t in shown}
        image = draw_overlay(frame, targets, tracks=shown, trails=trails)
        out = Image(header=header)
        for key, value in array_to_image_fields(image, "bgr8").items():
            setattr(out, key, value)
        self.outputs.overlay.publish(out)

    # --- health -----------------------------------------------------------------------------
    def diagnostics(
        self, name: str, extra: Mapping[str, Any] | None = None, expects_frames: bool = True
    ) -> DiagnosticArray:
        """/diagnostics: one status ``name`` with the counters, rates and latencies; WARN
        for errors, drops or stale frames since the last report, and, while
        ``expects_frames`` (not the lifecycle node's inactive state), for a period without
        a frame (:meth:`_no_input`)."""
        snap = self.stats.snapshot()
        errors = snap.pop("errors")
        assert isinstance(errors, dict)
        problems = bool(snap.pop("problems_since_last"))  # WARN clears once they stop
        starved = not snap.pop("received_since_last") and expects_frames
        warnings = [self._no_input(errors)] if starved else []
        if problems:
            warnings.append("errors or dropped frames since the last report")
        detector = self.detector
        status = DiagnosticStatus(
            name=name,
            hardware_id=str(detector.backend.device) if detector else "",
            level=DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK,
            message="; ".join(warnings) or "ok",
        )
        values: dict[str, Any] = {
            "backend": detector.backend.name if detector else "",
            "queue_size": self._params().get("input.queue_size", 1),
            "qos_depth": self._params().get("qos.depth", ""),  # the node's subscription; none without a node
            **snap,
        }
        if self._params().get("tracking.enabled"):
            values["tracks"], values["tracks_confirmed"] = self._track_counts
            if self.tracker is not None:  # frames not tracked: see Tracker.update
                values["tracks_repeated_stamps"] = self.tracker.repeated_stamps
                values["tracks_out_of_order"] = self.tracker.out_of_order
            # for the frames of the last size seen
            values["bearings"] = self._camera_for(self._last_size, report=False) is not None
        values.update({f"errors.{k}": v for k, v in errors.items()})
        values.update(extra or {})
        status.values = [
            KeyValue(key=k, value=format_number(v, ".3f", NOT_MEASURED) if v is None or isinstance(v, float) else str(v))
            for k, v in values.items()
        ]
        msg = DiagnosticArray(status=[status])
        t = self._clock_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, NS_PER_S)
        return msg

    def _no_input(self, errors: Mapping[str, int]) -> str:
        """The warning of a period without a frame, naming incompatible-QoS publishers when
        any was seen (with the fix when the subscription is reliable)."""
        text = "no input: no frame received since the last report"
        if errors.get("incompatible_qos"):
            text += (", and a publisher of the image topic offers QoS this subscription "
                     "cannot match (errors.incompatible_qos)")
            if self._params().get("qos.reliability") == "reliable":
                text += f": {BEST_EFFORT_HINT}"
        return text
