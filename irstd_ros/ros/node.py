"""``irstd_node``: IR image in; target mask, Detection2DArray and TargetArray out.

A thin rclpy adapter over :class:`irstd_ros.inference.detector.Detector`:

* subscribes ``image`` (sensor_msgs/Image) with the ``qos.*`` profile and keeps
  only the newest frame: a worker thread runs inference while the executor
  keeps taking messages, and a frame superseded before it was processed is
  dropped and counted (never a backlog);
* publishes ``mask`` (mono8 0/255, input size, same header), ``detections``
  (vision_msgs/Detection2DArray), ``targets`` (irstd_ros/TargetArray),
  optionally ``overlay`` (bgr8), and ``/diagnostics`` at ``diagnostics.period``;
* with ``tracking.enabled``, runs :class:`irstd_ros.tracking.Tracker` on each frame's
  targets (driven by the header stamps) and publishes ``tracks``
  (vision_msgs/Detection2DArray of the confirmed tracks, ``id`` = track id) and
  ``target_tracks`` (irstd_ros/TrackArray: every track with velocity, age, hits,
  state, and, once a ``camera_info`` (sensor_msgs/CameraInfo) has been received,
  its bearing and line-of-sight rate);
* bad frames are logged (rate-limited per kind), counted, and skipped.

Topic names are relative so that one namespace per camera works.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from irstd_ros.core.constants import (
    CAMERA_INFO_INPUT,
    DETECTIONS_TOPIC,
    DIAGNOSTICS_TOPIC,
    IMAGE_INPUT,
    MASK_TOPIC,
    OVERLAY_TOPIC,
    TARGET_TRACKS_TOPIC,
    TARGETS_TOPIC,
    TRACKS_TOPIC,
)
from irstd_ros.core.targets import PostprocessConfig, Target
from irstd_ros.errors import ConfigError, ImageConversionError, IrstdError
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.detector import Detector, ScalingConfig, default_model_path
from irstd_ros.msg import TargetArray, TrackArray
from irstd_ros.msg import Track as TrackMsg
from irstd_ros.ros.conversions import array_to_image_fields, image_to_array
from irstd_ros.ros.health import PipelineStats, RateLimiter
from irstd_ros.ros.messages import (
    detections_array,
    rclpy_types,
    targets_array,
    track_detections_array,
)
from irstd_ros.ros.params import PARAMS, SPECS, validate
from irstd_ros.tracking import CameraModel, Track, Tracker, TrackerConfig, TrackState

MESSAGE_TYPES = rclpy_types()  # the output message classes, by full type name
WARN_PERIOD_S = 5.0  # at most one warning per error kind in this period
OUTPUT_QOS_DEPTH = 10
TRAIL_POINTS = 30  # positions of a track kept for the overlay's trail
TRACK_STATE_CODES = {
    TrackState.TENTATIVE: TrackMsg.STATE_TENTATIVE,
    TrackState.CONFIRMED: TrackMsg.STATE_CONFIRMED,
    TrackState.COASTING: TrackMsg.STATE_COASTING,
}
MODEL_SUFFIX = ".safetensors"  # the only checkpoint format loaded (nothing is unpickled)
OOM_FALLBACK_AFTER = 3  # consecutive out-of-memory frames before falling back to the CPU
CPU_FALLBACK_BACKEND = "torch-cpu"
PATH_PARAMS = ("model.path", "model.cache_dir")  # validated as paths at start
MODEL_HINT = (
    "set model.path to a .safetensors checkpoint (train one with `irstd train`), "
    "or leave it empty to use the shipped model"
)


def _descriptor(spec: Any) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.min is not None and isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
    elif spec.min is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return d


def path_problem(name: str, value: str) -> str | None:
    """Why the path parameter ``name`` (model.path, model.cache_dir) is unusable, or None.

    Empty means the default. ``model.path`` must be an existing regular ``.safetensors``
    file; ``model.cache_dir`` a directory, or creatable below a writable directory.
    Nothing is created or opened here.
    """
    if name not in PATH_PARAMS or not value:
        return None
    path = Path(value).expanduser()
    if name == "model.path":
        if not path.exists():
            return f"model.path: model file not found: {path}"
        if not path.is_file():
            return f"model.path: model file {path} is not a regular file"
        if path.suffix != MODEL_SUFFIX:
            return f"model.path: model file {path} is not a {MODEL_SUFFIX} checkpoint"
        return None
    if path.exists():
        return None if path.is_dir() else f"model.cache_dir: {path} exists and is not a directory"
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"model.cache_dir: {path} cannot be created ({parent} is not a writable directory)"
    return None


def fill_track_array(
    msg: TrackArray, tracks: Sequence[Track], camera: CameraModel | None = None
) -> TrackArray:
    """Every track, with its bearing and line-of-sight rate when ``camera`` is given."""
    for t in tracks:
        m = TrackMsg(
            id=t.id, state=TRACK_STATE_CODES[t.state], score=float(t.score),
            x=t.x, y=t.y, vx=t.vx, vy=t.vy, position_std=t.position_std,
            width=float(t.width), height=float(t.height), age=t.age_s,
            time_since_update=t.time_since_update_s, hits=t.hits, misses=t.misses,
        )
        if camera is not None:
            b, w = camera.bearing(t.x, t.y), camera.angular_rate(t.x, t.y, t.vx, t.vy)
            if np.isfinite(b).all() and np.isfinite(w).all():
                m.has_bearing = True
                m.bearing.x, m.bearing.y, m.bearing.z = (float(v) for v in b)
                m.angular_rate.x, m.angular_rate.y, m.angular_rate.z = (float(v) for v in w)
        msg.tracks.append(m)
    return msg


class _ReportingLogger:
    """The tracker's warnings, counted and rate-limited like the node's other problems."""

    def __init__(self, report: Callable[[str, str], None]) -> None:
        self._report = report

    def warning(self, msg: str) -> None:
        self._report("tracker_reset", msg)


class IrstdNode(Node):
    """The detection node; ``detector`` may be injected (tests), else built from parameters."""

    def __init__(
        self, node_name: str = "irstd_node", *, detector: Detector | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.params: dict[str, Any] = self._read_parameters()
        self.detector: Detector | None = detector or self._build_detector()
        self._apply_runtime_params()
        self._reset_pipeline()
        (
            self.mask_pub, self.det_pub, self.targets_pub, self.overlay_pub,
            self.tracks_pub, self.track_array_pub,
        ) = self._create_outputs(self.create_publisher)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS_DEPTH)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._start_worker()
        self.sub = self._create_input()
        self.camera_info_sub = self._create_camera_info_input()
        self.diag_timer = self._create_diag_timer()
        self._log_ready()

    # --- set-up (steps shared with the lifecycle variant) ----------------------------------
    def _declare_parameters(self) -> None:
        """Declare every parameter of :data:`PARAMS`; bad overrides become an IrstdError."""
        for spec in PARAMS:
            if self.has_parameter(spec.name):
                continue
            try:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except ParameterException as exc:
                raise IrstdError(f"invalid parameter: {exc}") from None

    def _read_parameters(self) -> dict[str, Any]:
        """Current values, validated (ranges, cross-checks, file paths)."""
        params = {s.name: self.get_parameter(s.name).value for s in PARAMS}
        for name, value in params.items():
            reason = validate(name, value, params) or path_problem(name, value)
            if reason:
                raise IrstdError(f"invalid parameter: {reason}")
        return params

    def _model_path(self) -> Path:
        return Path(self.params["model.path"] or default_model_path()).expanduser()

    def _build_detector(self, backend: str | None = None) -> Detector:
        """The detector of the parameters, on ``backend`` (default: ``model.backend``)."""
        p = self.params
        backend = backend or p["model.backend"]
        threads = p["model.threads"] or None
        cache_dir = str(Path(p["model.cache_dir"]).expanduser()) if p["model.cache_dir"] else None
        options = BackendOptions(
            precision=p["model.precision"], threads=threads, cache_dir=cache_dir
        )
        path = self._model_path()
        try:
            return Detector.from_checkpoint(path, backend=backend, options=options)
        except ConfigError as exc:  # e.g. an architecture this version does not know
            if str(path) in str(exc):
                raise
            raise ConfigError(f"{exc} (checkpoint {path}, backend {backend!r})") from None

    def _reset_pipeline(self) -> None:
        """Fresh counters, stream checks and newest-frame slot."""
        self.stats = PipelineStats()
        self._warn = RateLimiter(WARN_PERIOD_S)
        self._last_stamp: tuple[int, int] | None = None
        self._last_size: tuple[int, int] | None = None
        self._oom_streak = 0
        self._fell_back = False
        self._cond = threading.Condition()
        self._pending: Image | None = None
        self._closing = False
        self.tracker: Tracker | None = None
        self.camera: CameraModel | None = None
        self._camera_key: tuple | None = None
        self._trails: dict[int, deque[tuple[float, float]]] = {}
        self._track_counts = (0, 0)  # live, confirmed: for /diagnostics

    def _create_outputs(
        self, create: Callable[..., Publisher]
    ) -> tuple[Publisher, Publisher, Publisher, Publisher, Publisher, Publisher]:
        """mask, detections, targets, overlay, tracks and target_tracks publishers made
        with ``create``."""
        return (
            create(Image, MASK_TOPIC, OUTPUT_QOS_DEPTH),
            create(Detection2DArray, DETECTIONS_TOPIC, OUTPUT_QOS_DEPTH),
            create(TargetArray, TARGETS_TOPIC, OUTPUT_QOS_DEPTH),
            create(Image, OVERLAY_TOPIC, OUTPUT_QOS_DEPTH),
            create(Detection2DArray, TRACKS_TOPIC, OUTPUT_QOS_DEPTH),
            create(TrackArray, TARGET_TRACKS_TOPIC, OUTPUT_QOS_DEPTH),
        )

    def _create_camera_info_input(self) -> Any:
        """``camera_info``, optional: best effort matches reliable and best-effort publishers."""
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
        )
        return self.create_subscription(CameraInfo, CAMERA_INFO_INPUT, self._on_camera_info, qos)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the camera model for bearings (rebuilt only when the calibration changes)."""
        key = (
            tuple(msg.k), tuple(msg.d), msg.distortion_model, msg.binning_x, msg.binning_y,
            msg.roi.x_offset, msg.roi.y_offset,
        )
        if key == self._camera_key:
            return
        self._camera_key = key
        try:
            self.camera = CameraModel.from_camera_info(msg)
        except ValueError as exc:
            self.camera = None
            self._report("camera_info", f"no bearings: {exc}")
            return
        self.get_logger().info(
            f"camera_info received ({msg.distortion_model or 'no distortion'}): "
            "tracks carry bearings"
        )

    def _create_input(self) -> Any:
        reliability = (
            ReliabilityPolicy.RELIABLE
            if self.params["qos.reliability"] == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        )
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=self.params["qos.depth"], reliability=reliability
        )
        return self.create_subscription(Image, IMAGE_INPUT, self._on_image, qos)

    def _create_diag_timer(self) -> Any:
        period = self.params["diagnostics.period"]
        return self.create_timer(period, self._publish_diagnostics) if period > 0 else None

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name="irstd_inference", daemon=True)
        self._worker.start()

    def _stop_worker(self) -> None:
        """Stop the worker; waits for the frame in progress."""
        with self._cond:
            self._closing = True
            self._pending = None
            self._cond.notify_all()
        self._worker.join()

    def _log_ready(self) -> None:
        self.get_logger().info(
            f"ready: backend {self.detector.backend.name} on {self.detector.backend.device}, "
            f"model {self.detector.info.model.arch}, listening on {self.sub.topic_name} "
            f"({self.params['qos.reliability']}, depth {self.params['qos.depth']})"
        )

    def _apply_runtime_params(self) -> None:
        if self.detector is None:  # lifecycle node, unconfigured
            return
        p = self.params
        thr = p["detection.threshold"]
        self.detector.post = PostprocessConfig(
            threshold=thr if thr >= 0 else self.detector.info.threshold,
            min_area=p["detection.min_area"],
            max_area=p["detection.max_area"],
            max_detections=p["detection.max_detections"],
        )
        self.detector.scaling = ScalingConfig(
            mode=p["input.scaling"],
            low=p["input.low"],
            high=p["input.high"],
            percentile_low=p["input.percentile_low"],
            percentile_high=p["input.percentile_high"],
        )

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        staged = dict(self.params)
        for param in params:
            if param.name not in SPECS:
                continue
            reason = validate(param.name, param.value, staged)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            staged[param.name] = param.value
        self.params = staged
        self._apply_runtime_params()
        return SetParametersResult(successful=True)

    # --- data path --------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        with self._cond:
            superseded = self._pending is not None
            self._pending = msg
            self._cond.notify()
        self.stats.on_received(superseded)

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                msg, self._pending = self._pending, None
            try:
                self.process(msg)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if self._closing or not self.context.ok():
                    return  # shutting down: publishing the frame in flight may fail
                self._report("internal_error", f"frame skipped after an unexpected error: {exc!r}")

    def _report(self, kind: str, text: str) -> None:
        n = self.stats.on_error(kind)
        if self._warn.allow(kind):
            self.get_logger().warning(f"{kind}: {text} ({n} so far)")

    def process(self, msg: Image) -> bool:
        """Run one frame end to end; False if it was refused (logged and counted)."""
        try:
            frame = image_to_array(msg, max_pixels=self.params["input.max_pixels"])
        except ImageConversionError as exc:
            self._report(exc.kind, str(exc))
            return False
        self._check_stream(msg, frame.shape[:2])
        try:
            result = self.detector.detect(frame)
        except torch.OutOfMemoryError as exc:  # before RuntimeError, its base class
            self._on_out_of_memory(exc)
            return False
        except (IrstdError, RuntimeError, ValueError) as exc:
            self._report("inference_error", f"frame skipped: {exc}")
            return False
        self._oom_streak = 0
        header = msg.header
        mask_msg = Image(header=header)
        for key, value in array_to_image_fields(result.mask.astype(np.uint8) * 255, "mono8").items():
            setattr(mask_msg, key, value)
        # tracks before the per-frame outputs: whoever has a frame's detections has its tracks
        tracks = self._track(header, result.targets, frame.shape[:2])
        self.mask_pub.publish(mask_msg)
        self.det_pub.publish(detections_array(MESSAGE_TYPES, header, result.targets))
        self.targets_pub.publish(targets_array(MESSAGE_TYPES, header, result.targets))
        if self.params["publish.overlay"]:
            self._publish_overlay(header, frame, result.targets, tracks)
        now = self.get_clock().now().nanoseconds
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        latency = (now - stamp) / 1e6 if stamp else 0.0
        self.stats.on_processed(latency, result.timings.get("infer_ms", 0.0))
        return True

    def _tracker_config(self) -> TrackerConfig:
        p = self.params
        return TrackerConfig(
            gate_px=p["tracking.gate_px"],
            confirm_m=p["tracking.confirm_m"],
            confirm_n=p["tracking.confirm_n"],
            max_coast_s=p["tracking.max_coast_s"],
            min_score=p["tracking.min_score"],
        )

    def _track(
        self, header: Any, targets: Sequence[Target], size: tuple[int, int]
    ) -> list[Track] | None:
        """Update the tracker with this frame and publish the tracks (worker thread only).

        Disabling ``tracking.enabled`` drops the tracker; enabling it starts afresh. A
        frame without a stamp (0) is placed at the node's clock time.
        """
        if not self.params["tracking.enabled"]:
            self.tracker = None
            self._trails.clear()
            self._track_counts = (0, 0)
            return None
        cfg = self._tracker_config()
        if self.tracker is None:
            self.tracker = Tracker(cfg, logger=_ReportingLogger(self._report))
        elif self.tracker.config != cfg:
            self.tracker.configure(cfg)
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        if stamp_ns == 0:
            stamp_ns = self.get_clock().now().nanoseconds
        tracks = self.tracker.update(stamp_ns / 1e9, targets, image_size=size)
        self.tracks_pub.publish(track_detections_array(MESSAGE_TYPES, header, tracks))
        self.track_array_pub.publish(
            fill_track_array(TrackArray(header=header), tracks, self.camera)
        )
        self._track_counts = (len(tracks), sum(t.confirmed for t in tracks))
        live = {t.id for t in tracks}
        for tid in [k for k in self._trails if k not in live]:
            del self._trails[tid]
        for t in tracks:
            if t.confirmed:
                self._trails.setdefault(t.id, deque(maxlen=TRAIL_POINTS)).append((t.x, t.y))
        return tracks

    def _on_out_of_memory(self, exc: torch.OutOfMemoryError) -> None:
        """Drop the frame; after :data:`OOM_FALLBACK_AFTER` in a row, move to the CPU once."""
        self._oom_streak += 1
        backend = self.detector.backend.name
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self._report("out_of_memory", f"frame dropped, backend {backend} out of memory: {reason}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self._oom_streak < OOM_FALLBACK_AFTER or self._fell_back:
            return
        if backend == CPU_FALLBACK_BACKEND:
            return
        self._fell_back = True  # one attempt, logged once
        try:
            detector = self._build_detector(CPU_FALLBACK_BACKEND)
        except (IrstdError, OSError, RuntimeError) as err:
            self.get_logger().error(
                f"out of memory {self._oom_streak} frames in a row on {backend}; "
                f"falling back to {CPU_FALLBACK_BACKEND} failed: {err}"
            )
            return
        self.detector = detector
        self._apply_runtime_params()
        self._oom_streak = 0
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.get_logger().error(
            f"out of memory {OOM_FALLBACK_AFTER} frames in a row on {backend}; "
            f"fell back to {CPU_FALLBACK_BACKEND} with model {self._model_path()}"
        )

    def _check_stream(self, msg: Image, size: tuple[int, int]) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if self._last_stamp is not None and stamp < self._last_stamp:
            self._report("stamp_backwards", f"header stamp went back from {self._last_stamp} to {stamp}")
        if self._last_size is not None and size != self._last_size:
            self._report("size_changed", f"frame size changed from {self._last_size} to {size}")
        self._last_stamp, self._last_size = stamp, size

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
        self.overlay_pub.publish(out)

    # --- health -----------------------------------------------------------------------------
    def diagnostics(self) -> DiagnosticArray:
        snap = self.stats.snapshot()
        errors = snap.pop("errors")
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: pipeline",
            hardware_id=str(self.detector.backend.device),
            level=DiagnosticStatus.WARN if errors or snap["dropped"] else DiagnosticStatus.OK,
            message="errors or dropped frames" if errors or snap["dropped"] else "ok",
        )
        values = {"backend": self.detector.backend.name, **snap}
        if self.params.get("tracking.enabled"):
            values["tracks"], values["tracks_confirmed"] = self._track_counts
            values["bearings"] = self.camera is not None
        values.update({f"errors.{k}": v for k, v in errors.items()})
        status.values = [
            KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v))
            for k, v in values.items()
        ]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _publish_diagnostics(self) -> None:
        self.diag_pub.publish(self.diagnostics())

    def close(self) -> None:
        """Stop the worker (waits for the frame in progress) and destroy the node."""
        self._stop_worker()
        self.destroy_node()


USAGE = """usage: irstd_node [--ros-args --params-file config/irstd.yaml -r image:=/camera/image ...]

Detects and tracks infrared small targets. Subscribes 'image' (and, optionally,
'camera_info'); publishes 'mask', 'detections', 'targets', 'tracks', 'target_tracks',
optional 'overlay', and /diagnostics. Parameters:
"""


def _usage() -> str:
    rows = [f"  {p.name:28s} {p.default!r:>14}  {p.description}" for p in PARAMS]
    return USAGE + "\n".join(rows)


def run(
    argv: Sequence[str],
    make_node: Callable[[list[str]], Node],
    prog: str = "irstd_node",
    usage: Callable[[], str] = _usage,
) -> int:
    """Spin the node ``make_node(user_args)`` builds until SIGINT/SIGTERM; 0 on a clean exit.

    An :class:`IrstdError` at start (bad parameter, model file) is one line on stderr and
    exit code 1, without a traceback.
    """
    argv = list(argv)
    user_args = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(usage())
        return 0
    rclpy.init(args=argv)
    node: Node | None = None
    try:
        node = make_node(user_args)
        rclpy.spin(node)
    except IrstdError as exc:
        hint = f"; {MODEL_HINT}" if "model file" in str(exc) else ""
        print(f"{prog}: error: {exc}{hint}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
        with contextlib.suppress(Exception):
            rclpy.try_shutdown()
    return 0


def main(args: Sequence[str] | None = None) -> int:
    return run(sys.argv if args is None else args, lambda _user_args: IrstdNode())


if __name__ == "__main__":
    sys.exit(main())
