"""The node's parameters: one table of names, defaults, ranges and meanings.

Pure Python: the node declares its parameters from :data:`PARAMS`, validates
values with :func:`validate` (each alone, :func:`check_value`; the rules between them,
:func:`check_together`), and the README's parameter table and ``config/irstd.yaml`` are
checked against it by the tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from irstd_ros.core.constants import (
    CANDIDATE_THRESHOLD,
    DEFAULT_MAX_PIXELS,
    GATED_THRESHOLD,
    LIVE_STAMP_WINDOW_S,
    OWN_THRESHOLD,
    VALID_BACKENDS,
)
from irstd_ros.core.normalization import ScalingConfig
from irstd_ros.core.parsing import parse_size
from irstd_ros.core.targets import PostprocessConfig
from irstd_ros.errors import ConfigError
from irstd_ros.tracking.tracker import TrackerConfig

if TYPE_CHECKING:  # no torch at import: the node sets its environment first
    from irstd_ros.checkpoint import CheckpointInfo

_POST = PostprocessConfig()
QOS_DEPTH = 5  # rclpy's sensor-data profile; depth 1 lost frames unseen when the executor was late
_TRACK = TrackerConfig()


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: default (its type is the parameter's type), limits, meaning."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False  # needs a restart (model, QoS)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "model.path", "", "checkpoint (.safetensors), or a shipped model: tiny (empty: the default) or fast", read_only=True
    ),
    ParamSpec("model.backend", "auto", "inference backend (auto, tensorrt, cuda, torch-cpu, ...); auto: tensorrt > cuda > best CPU", read_only=True, choices=VALID_BACKENDS),
    ParamSpec("model.precision", "fp16", "GPU precision (CPU backends run fp32)", choices=("fp32", "fp16"), read_only=True),
    ParamSpec("model.cuda_graphs", True, (
        "GPU backends: capture the network once per frame size and replay it per frame "
        "(cuda, shipped model, fp16, H200: 5.4 -> 2.5 ms at 640x512; tensorrt: Torch-TensorRT's "
        "CUDA-graph mode, not yet run on a device); CPU backends ignore it"
    ), read_only=True),
    ParamSpec("model.compile", False, (
        "cuda backend: torch.compile (Inductor) the network too (H200: 2.5 -> 1.05 ms with "
        "graphs); the first frame of each size takes 10-20 s"
    ), read_only=True),
    ParamSpec("model.frame_size", "", (
        "the camera's frame size, WIDTHxHEIGHT (e.g. 640x512): the backend is warmed up at it, so "
        "the first frame pays no torch.compile, CUDA-graph capture or TensorRT engine build; empty: "
        "a 64x64 check frame (tensorrt: its start engine's size), the first frame of each size pays"
    ), read_only=True),
    ParamSpec("model.threads", 0, "CPU inference threads; 0: the cores available to the process", min=0, max=256, read_only=True),
    ParamSpec("model.cache_dir", "", (
        "where compiled models are kept (ONNX, OpenVINO IR, INT8, TensorRT engines, bf16 accuracy "
        "records); empty: $IRSTD_CACHE_DIR, else ~/.cache/irstd_ros"
    ), read_only=True),
    ParamSpec("detection.threshold", OWN_THRESHOLD, "probability threshold in (0, 1); < 0: the checkpoint's own", min=-1.0, max=1.0),
    ParamSpec("detection.min_area", _POST.min_area, "smallest target kept, pixels", min=1, max=1_000_000),
    ParamSpec("detection.max_area", _POST.max_area, "largest target kept, pixels", min=1, max=100_000_000),
    ParamSpec("detection.max_detections", _POST.max_detections, "most targets per frame (best scores kept)", min=1, max=10_000),
    ParamSpec("input.scaling", "auto", "models with 'global' normalisation (0.1) only, raw frame to [0,1]: auto (8-bit /255, 16-bit percentile), fixed, percentile, minmax; 'robust' models (0.2+) normalise every encoding themselves", choices=("auto", "fixed", "percentile", "minmax")),
    ParamSpec("input.low", 0.0, "fixed scaling: raw value mapped to 0"),
    ParamSpec("input.high", 65535.0, "fixed scaling: raw value mapped to 1"),
    ParamSpec("input.percentile_low", 0.5, "percentile scaling: lower percentile", min=0.0, max=100.0),
    ParamSpec("input.percentile_high", 99.5, "percentile scaling: upper percentile", min=0.0, max=100.0),
    ParamSpec("input.max_age", 0.5, "frames whose header stamp is older than this on arrival are dropped and counted (stale), seconds; 0 disables; only live stamps (within a minute of the node's clock) that advance are checked, so at most that minute; a frame stamped over 1 s behind the stream's latest restarts the stream (a replay's loop), it is not stale", min=0.0, max=LIVE_STAMP_WINDOW_S),
    ParamSpec("input.queue_size", 2, "frames waiting for inference; a frame arriving when it is full drops the oldest waiting one (counted as dropped); 1 keeps only the newest frame, 2 lets one slow frame pass without a drop", min=1, max=10),
    ParamSpec("input.max_pixels", DEFAULT_MAX_PIXELS, "frames declaring more pixels, or more once padded to the network's stride (16 px for the shipped model: 1920x1080 is 1920x1088), are refused before allocation", min=1, max=1 << 30),
    ParamSpec("input.transport", "raw", "image_transport of the input: raw (sensor_msgs/Image on 'image') or compressed (sensor_msgs/CompressedImage, png or jpeg, on '<image>/compressed', the remapped image topic's, as image_transport names it)", choices=("raw", "compressed"), read_only=True),
    ParamSpec("qos.reliability", "reliable", "image subscription reliability", choices=("reliable", "best_effort"), read_only=True),
    ParamSpec("qos.depth", QOS_DEPTH, "image subscription depth: frames DDS keeps until the executor takes them, so a late executor loses none unseen; the node's own queue (input.queue_size) then keeps the newest and counts the rest", min=1, max=100, read_only=True),
    ParamSpec("publish.overlay", False, "also publish an annotated bgr8 image on 'overlay'"),
    ParamSpec("tracking.enabled", True, "track the detections and publish 'tracks' and 'target_tracks'"),
    ParamSpec("tracking.publish_coasting", True, "publish coasting tracks (confirmed, not detected in this frame: predicted) on 'tracks', each stamped with its last detection's frame; false: only the tracks detected in this frame ('target_tracks' keeps every track, with its state)"),
    ParamSpec("tracking.gate_px", _TRACK.gate_px, "association gate around a track's predicted position, px (a tentative track's widens with its uncertainty; a confirmed one's never)", min=0.1, max=10_000.0),
    ParamSpec("tracking.init_speed", _TRACK.init_speed, "expected target speed, px/s: the std of a new track's unknown velocity; a tentative track's gate widens to 3 sigmas of its prediction's uncertainty, so a target moving more than about max(gate_px, 3 * init_speed * frame interval) between frames starts a new tentative track each frame and is never confirmed; raise it for fast targets or low frame rates", min=0.1, max=100_000.0),
    ParamSpec("tracking.confirm_m", _TRACK.confirm_m, "M of M-of-N: detections a track needs within its first N frames to be confirmed", min=1, max=1000),
    ParamSpec("tracking.confirm_n", _TRACK.confirm_n, "N of M-of-N: frames from a track's birth to reach M detections, else it is dropped", min=1, max=1000),
    ParamSpec("tracking.max_coast_s", _TRACK.max_coast_s, "seconds a track is kept without a detection (a young track, or one predicted outside the image)", min=0.0, max=3600.0),
    ParamSpec("tracking.max_coast_long_s", _TRACK.max_coast_long_s, "longest coast: a confirmed track predicted inside the image is kept without a detection as long as it has been held by detections, up to this many seconds (never less than max_coast_s)", min=0.0, max=3600.0),
    ParamSpec("tracking.min_score", _TRACK.min_score, "smoothed detection score a track needs to be confirmed", min=0.0, max=1.0),
    ParamSpec("tracking.candidate_threshold", OWN_THRESHOLD, f"low-SNR confirmation: components with probabilities between this and detection.threshold are fed to the tracker only (never to 'detections'), so a dim target consistent over frames is confirmed by M-of-N; < 0: the checkpoint's own ({CANDIDATE_THRESHOLD:g} where it records none); 0: off", min=-1.0, max=1.0),
    ParamSpec("tracking.gated_threshold", OWN_THRESHOLD, f"gated low threshold: components between this probability and tracking.candidate_threshold (detection.threshold when that is 0) are taken only inside a confirmed track's gate and never start a track, so a dim target keeps its track and id through glint; < 0: the checkpoint's own ({GATED_THRESHOLD:g} where it records none); 0: off", min=-1.0, max=1.0),
    ParamSpec("diagnostics.period", 1.0, "seconds between /diagnostics messages; 0 disables", min=0.0, max=3600.0, read_only=True),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
# probability thresholds (p > threshold): 0 and 1 are no thresholds, except where 0 turns
# the stage off (True)
_PROBABILITIES: dict[str, bool] = {
    "detection.threshold": False,
    "tracking.candidate_threshold": True,
    "tracking.gated_threshold": True,
}
# a parameter's type as its error names it, with its article ("must be an int", not "a int")
_A_TYPE: dict[type, str] = {bool: "a bool", int: "an int", float: "a float", str: "a string"}


def _threshold_problem(name: str, value: float, zero_is_off: bool) -> str | None:
    """Why ``value`` is no threshold of probabilities for ``name`` (p > threshold), or None:
    1 passes nothing and 0 every pixel (the whole frame one target), unless 0 turns the
    stage off; a negative value is the checkpoint's own."""
    if value < 0 or 0 < value < 1 or (value == 0 and zero_is_off):
        return None
    valid = "a probability in (0, 1), " + ("0 for off, " if zero_is_off else "") + "or < 0 for the checkpoint's own"
    why = "nothing is above 1" if value >= 1 else "every pixel is above 0: the whole frame one target"
    return f"{name} must be {valid}; got {value:g} ({why})"


def coerce(name: str, value: Any) -> Any:
    """``value`` as parameter ``name`` keeps it: an int where a float is due becomes that
    float (``ros2 param set ... detection.threshold 1``, a YAML file's ``high: 65535``);
    anything else unchanged (:func:`check_value` judges it)."""
    spec = SPECS.get(name)
    if spec is not None and isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_value(name: str, value: Any) -> str | None:
    """Reason to refuse ``name := value`` on its own (name, choices, type, range, format),
    or None; the rules between parameters are :func:`check_together`'s."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if isinstance(spec.default, bool) != isinstance(value, bool):
        return f"{name} must be {_A_TYPE[type(spec.default)]}"
    if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{name} must be a number, got {value!r}"
        if isinstance(spec.default, int) and not isinstance(value, int):
            return f"{name} must be an integer, got {value!r}"
        if value != value:  # NaN
            return f"{name} must not be NaN"
        if not math.isfinite(value):  # input.low/high have no range: inf would scale to 0
            return f"{name} must be finite, got {value}"
        if spec.min is not None and value < spec.min or spec.max is not None and value > spec.max:
            return f"{name} must be in [{spec.min}, {spec.max}], got {value}"
        if name in _PROBABILITIES:
            return _threshold_problem(name, value, zero_is_off=_PROBABILITIES[name])
    if name == "model.frame_size" and value:
        try:
            parse_size(value)
        except ConfigError as exc:
            return f"{name}: {exc}"
    return None


def check_together(values: dict[str, Any], model: CheckpointInfo | None = None) -> str | None:
    """Reason to refuse the parameter set ``values`` (a missing one: no constraint) for
    the rules between parameters (min_area <= max_area, percentile_low < _high, low < high
    with fixed scaling, confirm_m <= confirm_n, the tracker's thresholds), or None.
    ``model``: the loaded checkpoint, whose own tracker thresholds stand in for the
    parameters left at -1 (without it, only explicit values are checked)."""
    if values.get("detection.min_area", 1) > values.get("detection.max_area", 1 << 62):
        return "detection.min_area must not exceed detection.max_area"
    if values.get("input.percentile_low", 0.0) >= values.get("input.percentile_high", 100.0):
        return "input.percentile_low must be below input.percentile_high"
    if values.get("input.scaling") == "fixed" and values.get("input.low", 0.0) >= values.get("input.high", 1.0):
        return "input.low must be below input.high for fixed scaling"
    if values.get("tracking.confirm_m", 1) > values.get("tracking.confirm_n", 1 << 62):
        return "tracking.confirm_m must not exceed tracking.confirm_n"
    gated, cand = values.get("tracking.gated_threshold", 0.0), values.get("tracking.candidate_threshold", 0.0)
    if model is not None:
        try:
            model.tracking_thresholds(cand, gated)
        except ConfigError as exc:
            return f"tracking.gated_threshold, tracking.candidate_threshold: {exc}"
    elif gated > 0 and cand > 0 and gated >= cand:
        return "tracking.gated_threshold must be below tracking.candidate_threshold (or either 0)"
    return None


def validate(
    name: str, value: Any, current: dict[str, Any], model: CheckpointInfo | None = None
) -> str | None:
    """Reason to refuse ``name := value`` given the other current values, or None: the
    value on its own (:func:`check_value`), then with the others (:func:`check_together`)."""
    return check_value(name, value) or check_together({**current, name: value}, model)


def detector_settings(info: CheckpointInfo, params: Mapping[str, Any]) -> dict[str, Any]:
    """The :meth:`Detector.apply` keywords the node's parameters ``params`` set for the
    checkpoint ``info``: detection threshold, areas and cap (``post``), input scaling, and,
    tracking being on, the candidate and gated thresholds (each < 0: the checkpoint's own;
    tracking off: None, no candidates)."""
    candidate, gated = (
        info.tracking_thresholds(params["tracking.candidate_threshold"], params["tracking.gated_threshold"])
        if params["tracking.enabled"]
        else (None, None)
    )
    return {
        "post": PostprocessConfig(
            threshold=info.detection_threshold(params["detection.threshold"]),
            min_area=params["detection.min_area"],
            max_area=params["detection.max_area"],
            max_detections=params["detection.max_detections"],
        ),
        "scaling": ScalingConfig(
            mode=params["input.scaling"],
            low=params["input.low"],
            high=params["input.high"],
            percentile_low=params["input.percentile_low"],
            percentile_high=params["input.percentile_high"],
        ),
        "candidate_threshold": candidate,
        "gated_threshold": gated,
    }


def unknown_hint(name: str) -> str:
    """What to say after an unknown parameter ``name``: the closest known ones, else where
    the parameters are listed."""
    import difflib

    close = difflib.get_close_matches(name, SPECS, n=3)
    return f"; did you mean {', '.join(close)}?" if close else " (README, 'Parameters')"


_RCL_ONE_LETTER_BOOLS = {"y": True, "Y": True, "n": False, "N": False}
"""The booleans rcl reads beyond YAML 1.1's (yes/no/on/off/true/false in three cases)."""


def parse_override(text: str) -> tuple[str, Any]:
    """``NAME:=VALUE`` (a node parameter, as ``--ros-args -p`` takes it) -> (name, value).

    The value is read the way ROS reads ``-p`` values (YAML, with rcl's numbers: ``1e4`` a
    float, ``1_000`` a string), and checked against
    :data:`PARAMS` alone (the cross-checks between parameters are the node's, at start);
    an unknown name is refused with the closest known ones.
    """
    import yaml

    name, sep, raw = text.partition(":=")
    if not sep or not name:
        raise ConfigError(f"a node parameter is NAME:=VALUE, got {text!r}")
    if name not in SPECS:
        raise ConfigError(f"unknown node parameter {name!r}{unknown_hint(name)}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} as a value ({exc})") from exc
    if isinstance(value, str) and raw.strip() in _RCL_ONE_LETTER_BOOLS:  # rcl's get_value; YAML 1.1 has no y/n
        value = _RCL_ONE_LETTER_BOOLS[raw.strip()]
    numeric = isinstance(SPECS[name].default, (int, float)) and not isinstance(SPECS[name].default, bool)
    if numeric and not isinstance(value, bool) and not _yaml_special_float(value):
        # ROS reads numbers its own way: 1e4 a number, 1_000, 0b1, 0o10 and 1:30 strings
        value = _rcl_number(raw, value if isinstance(value, str) else raw)
    value = coerce(name, value)
    if isinstance(SPECS[name].default, str) and not isinstance(value, str):
        value = raw
    reason = validate(name, value, {})
    if reason is not None:
        raise ConfigError(reason)
    return name, value


# C's strtol in base 0, whole: decimal, 0x hexadecimal, leading-0 octal (no 0b, no 0o)
_STRTOL_BASE0 = re.compile(r"[+-]?(?:0[xX](?P<hex>[0-9a-fA-F]+)|0(?P<oct>[0-7]*)|(?P<dec>[1-9][0-9]*))")


def _yaml_special_float(value: Any) -> bool:
    """YAML's ``.inf``, ``-.inf`` and ``.nan``, which rcl reads as doubles too."""
    return isinstance(value, float) and not math.isfinite(value)


def _rcl_number(raw: str, value: Any) -> Any:
    """A scalar as rcl reads it (``strtol`` base 0, then ``strtod``, each over the whole
    text): ``1e4``, ``1e-3``, ``0x10``, ``010`` (8), ``08`` (8.0) numbers; where neither
    reads it (``1_000``, ``0b1``, ``0o10``, ``1:30``, which YAML 1.1 or Python take for
    numbers) or it was quoted, ``value`` unchanged. Spaces around ``raw`` are YAML's, not
    the scalar's (rcl reads `` 4 `` as 4)."""
    raw = raw.strip()
    if "_" in raw or raw[:1] in "'\"":
        return value
    whole = _STRTOL_BASE0.fullmatch(raw)
    if whole is not None:
        sign = -1 if raw.startswith("-") else 1
        if whole["hex"] is not None:
            return sign * int(whole["hex"], 16)
        if whole["oct"] is not None:
            return sign * int(whole["oct"] or "0", 8)
        return sign * int(whole["dec"])
    try:
        return float(raw)
    except ValueError:
        return value
