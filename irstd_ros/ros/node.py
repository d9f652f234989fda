"""``irstd_node``: IR image in; target mask, Detection2DArray and TargetArray out.

A thin rclpy adapter (messages, parameters, threads) over
:class:`irstd_ros.ros.pipeline.FramePipeline`, which runs
:class:`irstd_ros.inference.detector.Detector` (itself in charge of inference failures):

* subscribes ``image`` (sensor_msgs/Image; with ``input.transport`` compressed,
  ``image/compressed``, sensor_msgs/CompressedImage) with the ``qos.*`` profile; a worker thread
  runs inference while the executor keeps taking messages into a queue of
  ``input.queue_size`` frames, and a frame pushed out of the full queue before it was
  processed is dropped and counted (never a backlog);
* publishes ``mask`` (mono8 0/255, input size, same header), ``detections``
  (vision_msgs/Detection2DArray), ``targets`` (irstd_ros/TargetArray),
  optionally ``overlay`` (bgr8), and ``/diagnostics`` at ``diagnostics.period``;
* with ``tracking.enabled``, runs :class:`irstd_ros.tracking.Tracker` on each frame's
  targets (driven by the header stamps) and publishes ``tracks``
  (vision_msgs/Detection2DArray of the confirmed tracks, ``id`` = track id) and
  ``target_tracks`` (irstd_ros/TrackArray: every track with velocity, age, hits,
  state, and, once a ``camera_info`` (sensor_msgs/CameraInfo) has been received,
  its bearing and line-of-sight rate);
* frames older than ``input.max_age`` on arrival are dropped and counted (``stale``);
* bad frames are logged (rate-limited per kind), counted, and skipped;
* a stream whose time goes back (a bag replayed in a loop; with ``use_sim_time``, the
  node's clock going back with it) starts afresh (:meth:`FramePipeline.restart_stream`,
  called from the clock's jump callback; counted as ``stream_restarts``).

The parameters marked "restart" in the README (``ParamSpec.read_only``) are read once, at
start: setting one to the value in force is accepted (a whole parameters file loads with
``load_parameter_file_atomically``), changing it is refused with the reason ("restart the
node to change it"). They are not declared read-only, which would refuse the whole atomic
batch even with their values unchanged.

The node imports no torch: the detector (and with it torch or OpenVINO) is loaded only
when the node is built, after :func:`set_process_environment`.

Topic names are relative so that one namespace per camera works.

The package's Python log records (the backend choice and why faster backends were skipped,
the cache's warnings) go to the node's ROS log while the node lives
(:mod:`irstd_ros.ros.log_bridge`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.clock import ClockChange, JumpHandle, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from irstd_ros.core.constants import CAMERA_INFO_INPUT, DIAGNOSTICS_TOPIC, IMAGE_INPUT
from irstd_ros.core.parsing import parse_size
from irstd_ros.core.paths import creation_problem
from irstd_ros.core.stamps import NS_PER_S
from irstd_ros.errors import ConfigError, IrstdError
from irstd_ros.ros.health import PipelineStats
from irstd_ros.ros.log_bridge import LogRoute, route_package_logs
from irstd_ros.ros.params import (
    PARAMS,
    SPECS,
    ParamSpec,
    check_together,
    check_value,
    coerce,
    unknown_hint,
)
from irstd_ros.ros.pipeline import (
    BEST_EFFORT_HINT,
    OUTPUT_QOS_DEPTH,
    STREAM_RESTART_S,
    FramePipeline,
    create_outputs,
)
from irstd_ros.tracking import CameraModel

if TYPE_CHECKING:  # loaded by build_detector(), after the process environment is set
    from rclpy.subscription import Subscription
    from rclpy.timer import Timer

    from irstd_ros.checkpoint import CheckpointInfo
    from irstd_ros.inference.detector import Detector

MODEL_SUFFIX = ".safetensors"  # the only checkpoint format loaded (nothing is unpickled)
PATH_PARAMS = ("model.path", "model.cache_dir")  # validated as paths at start
MODEL_HINT = (
    "set model.path to a .safetensors checkpoint (train one with `irstd train`), "
    "or leave it empty to use the shipped model"
)
# Set for the node process before torch/OpenMP load (unless the user set them): idle
# inference threads sleep instead of spinning, leaving the cores to the executor and to
# other processes (issue "CPU real time").
PROCESS_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}
QOS_OVERRIDES_PREFIX = "qos_overrides."  # rclpy's QoS overrides, which this node does not take
QOS_OVERRIDES_HINT = "; this node's image QoS is set by qos.reliability and qos.depth"
# what a change of a "restart" parameter is refused with, by the plain node (the lifecycle
# node's says cleanup, set, configure)
RESTART_HINT = "read at start: restart the node to change it"
CAMERA_INFO_QOS = QoSProfile(  # best effort matches reliable and best-effort publishers
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)


def _descriptor(spec: ParamSpec, restart_hint: str = RESTART_HINT) -> ParameterDescriptor:
    """``spec``'s descriptor. A float parameter is dynamically typed: rclpy would refuse an
    int for it (``ros2 param set /irstd_node detection.threshold 1``: "Wrong parameter type,
    expected '3' got '2'"), so the node's own check takes the type, converts an int
    (:func:`~irstd_ros.ros.params.coerce`) and says what a wrong one (a string) should be.

    None is ``read_only``: rclpy refuses a read-only parameter in a batch even at its value
    in force, and with it the whole ``set_parameters_atomically`` batch (a parameters file
    loaded atomically). A "restart" one (``ParamSpec.read_only``) says ``restart_hint`` in
    its constraints; the node refuses a change of it itself (:func:`restart_refusal`)."""
    d = ParameterDescriptor(description=spec.description, read_only=False)
    d.dynamic_typing = _dynamic(spec)
    constraints = ["one of: " + ", ".join(spec.choices)] if spec.choices else []
    if spec.read_only:
        constraints.append(restart_hint)
    d.additional_constraints = "; ".join(constraints)
    if spec.min is None or spec.max is None:
        return d
    if isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return d


def _dynamic(spec: ParamSpec) -> bool:
    """Whether ``spec``'s parameter is declared dynamically typed (see :func:`_descriptor`)."""
    return isinstance(spec.default, float)


def path_problem(name: str, value: str) -> str | None:
    """Why the path parameter ``name`` (model.path, model.cache_dir) is unusable, or None.

    Empty means the default. ``model.path`` must name a shipped model (``tiny``, ``fast``)
    or an existing regular ``.safetensors`` file; ``model.cache_dir`` a directory, or
    creatable below a writable directory. Nothing is created or opened here.
    """
    if name not in PATH_PARAMS or not value:
        return None
    path = Path(value).expanduser()
    if name == "model.path":
        from irstd_ros.inference.detector import resolve_model_path

        path = resolve_model_path(value)
        if not path.exists():
            return f"model.path: model file not found: {path}"
        if not path.is_file():
            return f"model.path: model file {path} is not a regular file"
        if path.suffix != MODEL_SUFFIX:
            return f"model.path: model file {path} is not a {MODEL_SUFFIX} checkpoint"
        return None
    reason = cache_dir_problem(path)
    return f"model.cache_dir: {reason}" if reason else None


def cache_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the cache directory, or None: it must be a directory (one
    that is not writable serves artefacts built already), or creatable below a writable
    directory. Nothing is created. The check of ``model.cache_dir`` (:func:`path_problem`)
    and of ``$IRSTD_CACHE_DIR`` (:func:`cache_dir_in_effect`)."""
    if path.exists():
        return None if path.is_dir() else f"{path} exists and is not a directory"
    return creation_problem(path)


# --- set-up steps shared by the plain and the lifecycle node ---------------------------------
def declare_parameters(
    node: Node, restart_hint: str = RESTART_HINT, lenient: bool = False
) -> dict[str, str]:
    """Declare every parameter of :data:`PARAMS` (once); bad overrides become an IrstdError.

    The parameters that need a restart (``ParamSpec.read_only``) are declared settable
    (see :func:`_descriptor`): the node refuses a change of one itself while it is in use
    (:func:`restart_refusal`, whose ``restart_hint`` their descriptors carry). ``lenient``:
    an override of the wrong type is not raised; its parameter is declared with its
    default so that it and every later one can still be listed and set, and the reasons
    are returned by name (the lifecycle node refuses to configure until each is set).
    """
    bad: dict[str, str] = {}
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them nowhere public
    for spec in PARAMS:
        if node.has_parameter(spec.name):
            continue
        # a dynamically typed one takes an override of any type: checked here instead
        override = overrides.get(spec.name) if _dynamic(spec) else None
        reason = check_value(spec.name, coerce(spec.name, override.value)) if override is not None else None
        if not reason:
            try:
                node.declare_parameter(spec.name, spec.default, _descriptor(spec, restart_hint))
                continue
            except ParameterException as exc:
                reason = str(exc)
        if not lenient:
            raise IrstdError(f"invalid parameter: {reason}")
        node.declare_parameter(spec.name, spec.default, _descriptor(spec, restart_hint), ignore_override=True)
        bad[spec.name] = f"invalid parameter override: {reason}"
    return bad


def warn_unknown_overrides(node: Node) -> list[str]:
    """Warn of each parameter given to ``node`` (parameters file, ``-p``) that it never
    declared: rclpy ignores it without a word, so a misspelt ``detection.treshold`` left the
    default in force. Returns their names (call once every parameter is declared)."""
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them nowhere public
    unknown = sorted(name for name in overrides if not node.has_parameter(name))
    for name in unknown:
        hint = QOS_OVERRIDES_HINT if name.startswith(QOS_OVERRIDES_PREFIX) else unknown_hint(name)
        node.get_logger().warning(f"parameter {name!r} is not one of this node's: ignored{hint}")
    return unknown


def parameter_values(node: Node) -> dict[str, Any]:
    """The values of the parameters ``node`` has declared, as the node uses them (an int
    given for a float parameter as that float: :func:`~irstd_ros.ros.params.coerce`)."""
    return {s.name: coerce(s.name, node.get_parameter(s.name).value) for s in PARAMS if node.has_parameter(s.name)}


def read_parameters(node: Node) -> dict[str, Any]:
    """Current values, validated (each alone: range, file path; then the cross-checks, once)."""
    params = parameter_values(node)
    for name, value in params.items():
        reason = check_value(name, value) or path_problem(name, value)
        if reason:
            raise IrstdError(f"invalid parameter: {reason}")
    reason = check_together(params)
    if reason:
        raise IrstdError(f"invalid parameter: {reason}")
    return params


def check_for_model(params: dict[str, Any], model: CheckpointInfo) -> None:
    """Raise if the parameters left to the checkpoint (-1) clash with it (the tracker's
    thresholds)."""
    reason = check_together(params, model)
    if reason:
        raise IrstdError(f"invalid parameter: {reason}")


def restart_refusal(
    current: dict[str, Any], changes: Sequence[Any], hint: str
) -> SetParametersResult | None:
    """The refusal of the batch ``changes`` (rclpy Parameters) when it changes a "restart"
    parameter (``ParamSpec.read_only``) from its value in ``current`` (the one in force),
    saying ``hint`` (what to do instead); None when it changes none: one set to its value
    in force is no change (a parameters file loaded whole, ``ros2 param set`` of the same
    value)."""
    changed = [
        p.name for p in changes
        if p.name in SPECS and SPECS[p.name].read_only
        and (p.value is None or not _same(coerce(p.name, p.value), current.get(p.name)))
    ]
    if not changed:
        return None
    return SetParametersResult(successful=False, reason=f"{', '.join(changed)}: {hint}")


def _same(a: Any, b: Any) -> bool:
    """Whether parameter values ``a`` and ``b`` are one value (of one type: 1 is not True)."""
    return type(a) is type(b) and a == b


def stage_parameters(
    current: dict[str, Any], changes: Sequence[Any], model: CheckpointInfo | None = None
) -> tuple[dict[str, Any] | None, SetParametersResult]:
    """``current`` with the batch ``changes`` (rclpy Parameters) applied, or None and the
    reason to refuse them all (``model``: the loaded checkpoint, for the values left to it).

    Each change is checked alone (type, range, choices; an int for a float taken as that
    float), then the rules between parameters once, on the result of the whole batch: a
    consistent set of linked values (``tracking.confirm_m`` <= ``confirm_n``,
    ``detection.min_area`` <= ``max_area``, ``input.percentile_low`` < ``_high``,
    ``input.low`` < ``high`` with fixed scaling) is taken in any order. rclpy passes
    ``set_parameters_atomically`` as one batch, but each parameter of ``set_parameters``
    (``ros2 param set``, ``ros2 param load``) as a batch of its own, checked against the
    values in force: linked values are moved together atomically (or from the parameters
    file at start).
    """
    staged = dict(current)
    for param in changes:
        if param.name not in SPECS:
            continue
        if param.value is None:  # rclpy's "not set": ros2 param delete of a dynamic one
            reason: str | None = f"{param.name} cannot be deleted"
        else:
            value = coerce(param.name, param.value)
            reason = check_value(param.name, value)
        if reason:
            return None, SetParametersResult(successful=False, reason=reason)
        staged[param.name] = value
    reason = check_together(staged, model)
    if reason:
        return None, SetParametersResult(successful=False, reason=reason)
    return staged, SetParametersResult(successful=True)


def model_path(params: dict[str, Any]) -> Path:
    from irstd_ros.inference.detector import resolve_model_path

    return resolve_model_path(params["model.path"])


def cache_dir_in_effect(params: dict[str, Any]) -> Path:
    """The cache directory the backends will use (``model.cache_dir``, else
    ``$IRSTD_CACHE_DIR``, else the default), absolute. ``$IRSTD_CACHE_DIR`` is checked here
    (ConfigError naming it when it cannot serve: :func:`cache_dir_problem`);
    ``model.cache_dir`` was by :func:`read_parameters` (:func:`path_problem`). The default
    is not refused: a node on a read-only home still runs the backends that need no cache
    (``auto`` says why it skipped the others)."""
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.graph_export import CACHE_ENV, cache_root

    value = params["model.cache_dir"]
    root = cache_root(BackendOptions(cache_dir=value or None))
    reason = cache_dir_problem(root) if not value and os.environ.get(CACHE_ENV) else None
    if reason:
        raise ConfigError(f"invalid environment: ${CACHE_ENV}: {reason}")
    return root


def build_detector(params: dict[str, Any]) -> Detector:
    """The detector the parameters describe (``model.threads`` 0: the cores available;
    ``model.frame_size``: the size the backend is warmed up at; the cache directory in
    effect checked and made absolute first: :func:`cache_dir_in_effect`)."""
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.detector import Detector
    from irstd_ros.inference.resources import available_cores

    backend = params["model.backend"]
    cache_dir = cache_dir_in_effect(params)
    width, height = parse_size(params["model.frame_size"]) if params["model.frame_size"] else (None, None)
    options = BackendOptions(
        height=height,
        width=width,
        precision=params["model.precision"],
        cuda_graphs=params["model.cuda_graphs"],
        compile=params["model.compile"],
        threads=params["model.threads"] or available_cores(),
        cache_dir=str(cache_dir),
    )
    path = model_path(params)
    try:
        return Detector.from_checkpoint(path, backend=backend, options=options)
    except ConfigError as exc:  # e.g. an architecture this version does not know
        if str(path) in str(exc):
            raise
        raise ConfigError(f"{exc} (checkpoint {path}, backend {backend!r})") from None


def image_qos(params: dict[str, Any]) -> QoSProfile:
    reliability = (
        ReliabilityPolicy.RELIABLE
        if params["qos.reliability"] == "reliable"
        else ReliabilityPolicy.BEST_EFFORT
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=params["qos.depth"], reliability=reliability
    )


def image_input(node: Node, params: dict[str, Any]) -> tuple[type, str]:
    """The image subscription's message type and topic for ``input.transport``: raw,
    sensor_msgs/Image on ``image``; compressed, sensor_msgs/CompressedImage on
    ``<image>/compressed``, where ``<image>`` is the image topic resolved and remapped (as
    image_transport names it: ``image:=/cam/image_raw`` subscribes ``/cam/image_raw/compressed``)."""
    if params["input.transport"] == "compressed":
        return CompressedImage, node.resolve_topic_name(IMAGE_INPUT) + "/compressed"
    return Image, IMAGE_INPUT


def image_events(pipeline: FramePipeline, params: dict[str, Any]) -> Any:
    """The image subscription's event callbacks: a publisher whose QoS cannot match (no
    frame ever arrives from it) is counted and logged with the parameter that fixes it."""
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:  # Humble
        from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef]
    from rclpy.qos import qos_policy_name_from_kind

    def incompatible(info: Any) -> None:
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        hint = (
            f"; {BEST_EFFORT_HINT}"
            if policy == "RELIABILITY" and params["qos.reliability"] == "reliable"
            else ""
        )
        pipeline.report(
            "incompatible_qos",
            f"a publisher of the image topic offers QoS this subscription cannot match "
            f"({policy}): no frames arrive from it{hint}",
        )

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)


def set_process_environment(environ: Any = os.environ) -> None:
    """:data:`PROCESS_ENVIRONMENT`, where not set already (call before loading the detector)."""
    for key, value in PROCESS_ENVIRONMENT.items():
        environ.setdefault(key, value)


def watch_clock(node: Node, pipeline: Callable[[], FramePipeline | None]) -> JumpHandle:
    """Tell ``pipeline()`` (the node's pipeline, None: none now) when the node's clock goes
    back by more than :data:`~irstd_ros.ros.pipeline.STREAM_RESTART_S` (sim time: a replay
    looping, a simulation reset) or switches between system and ROS time
    (:meth:`FramePipeline.restart_stream`). The handle must be kept while it should watch,
    and unregistered before the node is destroyed."""

    def on_jump(jump: TimeJump) -> None:
        current = pipeline()
        if current is None:
            return
        if jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
            kind = "ROS" if jump.clock_change == ClockChange.ROS_TIME_ACTIVATED else "system"
            current.restart_stream(f"the node's clock switched to {kind} time")
        else:
            back = -jump.delta.nanoseconds
            current.restart_stream(f"the node's clock went back {back / NS_PER_S:.1f} s", back)

    threshold = JumpThreshold(
        min_forward=None,
        min_backward=Duration(nanoseconds=-round(STREAM_RESTART_S * NS_PER_S)),
        on_clock_change=True,
    )
    return node.get_clock().create_jump_callback(threshold, post_callback=on_jump)


def make_pipeline(
    node: Node,
    detector: Detector,
    create: Callable[..., Any],
    params: Callable[[], dict[str, Any]],
    first_track_id: int = 1,
) -> FramePipeline:
    """The node's pipeline, its outputs made with ``create`` (plain or lifecycle publishers);
    ``first_track_id``: see :class:`FramePipeline`."""
    return FramePipeline(
        detector,
        create_outputs(create),
        params=params,
        logger=lambda: node.get_logger(),
        clock_ns=lambda: node.get_clock().now().nanoseconds,
        ok=node.context.ok,
        rmw=rclpy.get_rmw_implementation_identifier(),
        first_track_id=first_track_id,
    )


def start_inputs(
    node: Node,
    pipeline: FramePipeline,
    params: dict[str, Any],
    on_image: Callable[[Any], None],
    on_diagnostics: Callable[[], None],
) -> tuple[Subscription[Any], Subscription[CameraInfo], Timer | None]:
    """Start ``pipeline``'s worker, then subscribe the image input (to ``on_image``) and
    ``camera_info``, and call ``on_diagnostics`` every ``diagnostics.period`` s (none at 0):
    (image subscription, camera_info subscription, timer or None), both nodes' inputs.
    When a later one fails, the subscriptions made before it are destroyed again (a
    lifecycle node's failed ``configure`` leaves none behind); the worker is the caller's."""
    pipeline.start()
    made: list[Subscription[Any]] = []
    try:
        made.append(node.create_subscription(
            *image_input(node, params), on_image, image_qos(params),
            event_callbacks=image_events(pipeline, params),
        ))
        made.append(node.create_subscription(
            CameraInfo, CAMERA_INFO_INPUT, pipeline.on_camera_info, CAMERA_INFO_QOS
        ))
        period = params["diagnostics.period"]
        timer = node.create_timer(period, on_diagnostics) if period > 0 else None
    except BaseException:
        for sub in made:
            node.destroy_subscription(sub)
        raise
    return made[0], made[1], timer


def route_logs(node: Node) -> LogRoute:
    """The package's Python log records to ``node``'s ROS log until the route is closed (by
    the node's ``destroy_node``) or the node's context shuts down."""
    route = route_package_logs(node.get_logger())
    node.context.on_shutdown(lambda: route.close())  # held strongly: a bound method would be weakly
    return route


def usage_text(header: str) -> str:
    """A node's ``--help``: ``header``, then one line per parameter."""
    rows = [f"  {p.name:28s} {p.default!r:>14}  {p.description}" for p in PARAMS]
    return header + "\n".join(rows)


def log_ready(node: Node, pipeline: FramePipeline, p: dict[str, Any], topic: str) -> None:
    """The node's ``ready`` line: the backend (with why the ones a choice tried before it
    were skipped, as the choice said them), model, thresholds and input."""
    from irstd_ros.inference.backends.select import selection_of  # loaded with the detector

    det = pipeline.detector
    assert det is not None
    tracker = ", ".join(
        f"{name} {'off' if value is None else f'{value:.3g}'}"
        for name, value in (("candidates", det.candidate_threshold), ("gated", det.gated_threshold))
    )
    selection = selection_of(det.backend)
    chosen = ""
    if selection is not None and selection.skipped:  # a choice that skipped faster backends
        chosen = f" ({selection.choice}: {selection.reasons()})"
    node.get_logger().info(
        f"ready: backend {det.backend.name} on {det.backend.device}{chosen}, "
        f"model {det.info.model.arch}, threshold {det.post.threshold:.3g} (tracker: {tracker}), "
        f"listening on {topic} ({p['qos.reliability']}, depth {p['qos.depth']})"
    )


class IrstdNode(Node):
    """The detection node; ``detector`` may be injected (tests), else built from parameters."""

    def __init__(
        self, node_name: str = "irstd_node", *, detector: Detector | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._log_route = route_logs(self)
        try:
            declare_parameters(self)
            warn_unknown_overrides(self)
            self.params: dict[str, Any] = read_parameters(self)
            detector = detector or build_detector(self.params)
            check_for_model(self.params, detector.info)
        except BaseException:
            self._log_route.close()
            raise
        self.pipeline = make_pipeline(self, detector, self.create_publisher, lambda: self.params)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS_DEPTH)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.sub, self.camera_info_sub, self.diag_timer = start_inputs(
            self, self.pipeline, self.params, self.pipeline.submit, self._publish_diagnostics
        )
        self._clock_watch: JumpHandle | None = watch_clock(self, lambda: self.pipeline)
        log_ready(self, self.pipeline, self.params, self.sub.topic_name)

    @property
    def detector(self) -> Detector:
        detector = self.pipeline.detector
        assert detector is not None, "the node was closed"
        return detector

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    @property
    def camera(self) -> CameraModel | None:
        return self.pipeline.camera

    def process(self, msg: Image) -> bool:
        """Run one frame end to end (see :meth:`FramePipeline.process`)."""
        return self.pipeline.process(msg)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        refused = restart_refusal(self.params, params, RESTART_HINT)
        if refused is not None:
            return refused
        staged, result = stage_parameters(self.params, params, self.detector.info)
        if staged is not None:
            self.params = staged
            self.pipeline.apply_params()
        return result

    def diagnostics(self) -> DiagnosticArray:
        return self.pipeline.diagnostics(f"{self.get_fully_qualified_name()}: pipeline")

    def _publish_diagnostics(self) -> None:
        self.diag_pub.publish(self.diagnostics())

    def close(self) -> None:
        """Stop watching the clock, stop the worker (waits for the frame in progress) and
        destroy the node."""
        watch, self._clock_watch = self._clock_watch, None
        if watch is not None:
            watch.unregister()
        self.pipeline.stop()
        self.destroy_node()

    def destroy_node(self) -> None:
        """Destroy the node; the package's log records no longer come to it."""
        self._log_route.close()
        super().destroy_node()


USAGE = """usage: irstd_node [--ros-args --params-file config/irstd.yaml -r image:=/camera/image ...]

Detects and tracks infrared small targets. Subscribes 'image' (and, optionally,
'camera_info'); publishes 'mask', 'detections', 'targets', 'tracks', 'target_tracks',
optional 'overlay', and /diagnostics. Parameters:
"""


def _usage() -> str:
    return usage_text(USAGE)


def run(
    argv: Sequence[str],
    make_node: Callable[[list[str]], Node],
    prog: str = "irstd_node",
    usage: Callable[[], str] = _usage,
) -> int:
    """Spin the node ``make_node(user_args)`` builds until SIGINT/SIGTERM; 0 on a clean exit.

    An :class:`IrstdError` at start (bad parameter, model file), or ROS arguments rcl
    cannot parse (a missing or malformed parameters file), is one line on stderr and exit
    code 1, without a traceback.
    """
    argv = list(argv)
    set_process_environment()
    user_args = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(usage())
        return 0
    from rclpy._rclpy_pybind11 import RCLError  # rclpy exports it nowhere public

    try:
        rclpy.init(args=argv)
    except RCLError as exc:
        print(f"{prog}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
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
    except RCLError:
        # SIGINT/SIGTERM shut the context down while the executor was building its wait
        # set: rcl says "context is not valid" instead of ExternalShutdownException
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.close()  # type: ignore[attr-defined]  # IrstdNode, IrstdLifecycleNode
        with contextlib.suppress(Exception):
            rclpy.try_shutdown()
    return 0


def main(args: Sequence[str] | None = None) -> int:
    return run(sys.argv if args is None else args, lambda _user_args: IrstdNode())


if __name__ == "__main__":
    sys.exit(main())
