"""``openvino-int8``: OpenVINO's CPU plugin on an INT8 IR quantised by NNCF (post-training).

The artefact is built ahead of time by ``irstd export --backend openvino-int8``
(:mod:`irstd_ros.tools.quantize`: calibration frames from the training splits of both
datasets, then the accuracy of INT8 against FP32 on held-out frames) and read here; the
backend never quantises by itself (calibration needs data, which a node does not have).

Files in the cache, beside the FP32 IR of the same weights
(:func:`~irstd_ros.inference.backends.graph_export.export_openvino_ir`):

* ``<arch>-<digest>-int8.xml`` / ``.bin``: the quantised IR (FakeQuantize nodes; the CPU
  plugin runs the convolutions in INT8 with VNNI / AMX where the CPU has them); the digest
  is of the weights and the checkpoint's threshold and normalisation
  (:func:`conditioned_digest`), so a new checkpoint, or the same weights recalibrated, has
  another file name and its INT8 IR is built anew beside the other;
* ``<...>-int8.xml.json``: its :class:`~irstd_ros.inference.backends.fingerprint.Fingerprint`
  (the weights digest, the conditions, the recipe :data:`INT8_RECIPE`, the OpenVINO
  version, the sha256 of the ``.xml`` and ``.bin``: a replaced or corrupt file is refused
  and ``auto`` keeps FP32 until ``irstd export`` rebuilds it);
* ``<...>-int8.xml.accuracy.json``: the measured accuracy of this IR against FP32
  (:func:`accuracy_refusal` reads it: ``auto`` / ``cpu`` use INT8 only within
  :data:`PD_TOLERANCE_POINTS` and :data:`IOU_TOLERANCE_POINTS` on every dataset of
  :data:`REQUIRED_DATASETS`, each measured on its whole held-out split,
  :data:`REQUIRED_COVERAGE`) and its speed on the exporting CPU (:func:`recorded_speed`);
  it names the IR's recipe and holds the sha256 of the IR files it measured
  (:data:`IR_DIGESTS`): the gate (:func:`int8_refusal`) takes only a record of the IR's
  own recipe and, where the record has them, of its own files.

The accuracy record (:func:`save_accuracy`, :func:`load_accuracy`, :func:`dataset_delta`,
:func:`accuracy_refusal`, :func:`describe_accuracy`) is shared with ``openvino-bf16``
(:mod:`~irstd_ros.inference.backends.openvino_bf16`) and ``openvino-int8-bf16``
(:mod:`~irstd_ros.inference.backends.openvino_int8_bf16`), gated with the same tolerances.

Quantisation (:func:`quantize_ir`): ``nncf.quantize`` with NNCF's default preset, which
for a model that is not a transformer is ``PERFORMANCE`` (not ``MIXED``, despite the
recipe's name): weights symmetric per output channel, activations symmetric per tensor
(unsigned after a ReLU), Fast Bias Correction; each activation's range is the minimum
and maximum over all the calibration frames (NNCF's ``MINMAX``), not NNCF's default mean
of the per-frame ranges (``MEAN_MINMAX``), which clips the rare strong responses of
bright real targets (0.7, SIRST-v2 val: 4 targets lost against FP32 with the mean, none
with the extremes; docs/benchmarks.md). Two parts stay FP32:

* the head, which writes the logits, and, for checkpoints of ``global`` normalisation
  only, the first layer's convolutions, which read the normalised frame
  (:func:`fp32_convolutions`): quantised, a [0, 1]-scaled frame loses a faint target's
  contrast (0.1 model, NUDT-SIRST: 1.7 points of Pd and 3 of IoU), while the ``robust``
  input is in noise sigmas, asinh-compressed, whose 256 levels are a sixth of the noise;
* the SGEM attention (the L2 normalisation, both matmuls, the softmax and the 1x1 mix on
  the (heads, d, d) affinity; :data:`IGNORED_PATTERNS`): a negligible share of the work,
  the softmax is where reduced precision loses most (as for FP16 on the GPU), and with
  it quantised the CPU plugin of OpenVINO 2026.4 refuses to compile the model
  (``Check 'any_of(scale.size(), OC, 1U)' failed``, dnnl_postops_composer).

The non-quantised ops run in FP32 (``INFERENCE_PRECISION_HINT=f32``, as ``openvino``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy.special import logit

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.padding import network_input
from irstd_ros.core.paths import write_text_atomic
from irstd_ros.errors import BackendError, one_line
from irstd_ros.inference.backends.base import (
    CPU_REQUIREMENTS,
    BackendOptions,
    not_installed,
)
from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend

if TYPE_CHECKING:
    from torch import nn

    from irstd_ros.inference.backends.fingerprint import Fingerprint

log = logging.getLogger(__name__)

NAME = "openvino-int8"
INT8_RECIPE = "nncf-ptq-mixed-minmax-fp32-head-sgem-v5"  # bump when quantize_ir's settings change
# INT8_RECIPE plus NNCF's accuracy control (quantize_ir with validation frames)
INT8_RECIPE_AC = "nncf-ptq-minmax-accuracy-control-agreement-sgem-v6"
INT8_RECIPES = (INT8_RECIPE, INT8_RECIPE_AC)
# accuracy control: the mean per-frame IoU of the quantised model's mask against the FP32
# model's own mask (1.0 for FP32) may drop by this much before NNCF reverts the layers that
# cost most to FP32. Against FP32, not the truth: on training frames the network fits the
# truth so well that a truth-based IoU hardly moved (0.3 model: one layer reverted) while
# held-out IoU fell by 2.4 points; agreement measures the quantisation error itself.
MAX_IOU_DROP = 0.02
THRESHOLD_CLIP = 1e-6  # the checkpoint's threshold is clipped to [c, 1 - c] before its logit
INT8_SUFFIX = "-int8.xml"
ACCURACY_SUFFIX = ".accuracy.json"
# key of an INT8 accuracy record: the sha256 of the IR's files it measured, by suffix
# (fingerprint.file_digests), so that a record is of one IR, not of any with its recipe
IR_DIGESTS = "ir_sha256"
ACCURACY_FORMAT = 1
# The SGEM attention stays FP32: OpenVINO node names of the traced model (ov.convert_model
# names them after the PyTorch module path); q/k/v/restore convolutions are quantised.
# The convolutions that read the network input and the one that writes the logits stay
# FP32 too (fp32_convolutions).
IGNORED_PATTERNS = (r"__module\.sgem/aten::.*",)
MAX_CALIBRATION_FRAMES = 300
# auto / cpu choose INT8 only when, on every required dataset, INT8 loses at most (points):
PD_TOLERANCE_POINTS = 0.5  # target-level Pd, percentage points
IOU_TOLERANCE_POINTS = 1.0  # pixel IoU, percentage points
REQUIRED_DATASETS = ("NUDT-SIRST", "SIRST-v2")


class Coverage(NamedTuple):
    """What an accuracy record must have scored on one dataset: its held-out ``split``,
    whole, with at least ``frames`` frames and ``targets`` targets."""

    split: str
    frames: int
    targets: int


# The gate also takes only a record that measured each required dataset on its whole
# held-out split: that split, no frame limit, and at least the frames and targets of the
# split as published (NUDT-SIRST test: 664 frames, 945 targets; SIRST-v2 val: 164 frames,
# 144 targets). A delta from a handful of frames (an export with a frame limit, a subset or
# a small copy of the data) says nothing: 0 there is what a network that finds nothing
# scores, and one target moves Pd by more points the fewer targets there are. A record that
# does not say what it scored (written by hand, or unreadable counts) is unverified, refused
# as well (coverage_refusal).
REQUIRED_COVERAGE: dict[str, Coverage] = {
    "NUDT-SIRST": Coverage("test", 664, 945),
    "SIRST-v2": Coverage("val", 164, 144),
}
# the speed a record keeps (irstd export measures it on the CPU it runs on): the
# reference camera's frame, (height, width)
SPEED_SIZE = (512, 640)


# --- the artefact ---------------------------------------------------------------------------
def int8_path(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> tuple[Path, str]:
    """(the INT8 IR's path in the cache, the weights digest) for these weights, named by
    :func:`conditioned_digest`: checkpoints of the same weights under another threshold or
    normalisation (a recalibrated copy) each keep their own IR."""
    from irstd_ros.inference.backends.fingerprint import weights_digest
    from irstd_ros.inference.backends.graph_export import artifact_stem, cache_root

    digest = weights_digest(model, info)
    stem = artifact_stem(info, conditioned_digest(digest, info))
    return cache_root(options) / f"{stem}{INT8_SUFFIX}", digest


def conditioned_digest(digest: str, info: CheckpointInfo) -> str:
    """sha256 of the weights ``digest`` and the checkpoint's :func:`measurement_conditions`,
    what the INT8 fingerprint holds besides the software: the name of its IR."""
    key = json.dumps({"weights_sha256": digest, "conditions": measurement_conditions(info)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def int8_fingerprint(info: CheckpointInfo, digest: str, recipe: str = INT8_RECIPE) -> Fingerprint:
    """What the INT8 IR depends on: weights, recipe (one of :data:`INT8_RECIPES`), the
    OpenVINO that reads it, and the checkpoint's :func:`measurement_conditions` (its
    calibration frames are normalised by the checkpoint's rule, and the accuracy-controlled
    recipe validates at its threshold: the same weights under another normalisation
    quantise to other ranges).

    NNCF's version is recorded in the accuracy record, not here: a machine that only
    runs the IR does not need NNCF installed.
    """
    import openvino as ov

    from irstd_ros.inference.backends.fingerprint import Fingerprint
    from irstd_ros.inference.backends.graph_export import MAX_FRAME_SIDE, MIN_BLOCKS

    return Fingerprint(
        backend=NAME,
        precision="int8",
        input_shape=(1, 1, -1, -1),
        shape_range=((MIN_BLOCKS * info.model.stride,) * 2, (MAX_FRAME_SIDE, MAX_FRAME_SIDE)),
        weights_sha256=digest,
        recipe=recipe,
        versions={"openvino": ov.__version__},
        conditions=fingerprint_conditions(info),
    )


def accuracy_path(artifact: str | Path) -> Path:
    """The accuracy record beside an INT8 IR (``x-int8.xml`` -> ``x-int8.xml.accuracy.json``)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ACCURACY_SUFFIX)


def save_accuracy(artifact: str | Path, record: Mapping[str, Any]) -> Path:
    """Write the accuracy record beside ``artifact`` (atomically); BackendError naming it
    and the OS's reason when it cannot be written."""
    from irstd_ros.inference.backends.graph_export import write_error

    path = accuracy_path(artifact)
    text = json.dumps({"format": ACCURACY_FORMAT, **record}, indent=1, sort_keys=True) + "\n"
    try:
        return write_text_atomic(path, text)
    except OSError as exc:
        raise write_error("accuracy record", path, exc, len(text.encode())) from exc


def load_accuracy(artifact: str | Path) -> dict[str, Any] | None:
    """The accuracy record of ``artifact``, or None when missing or unreadable (not JSON,
    or its ``datasets`` not the mapping of deltas :func:`accuracy_refusal` reads; warned
    about once while the file stays as it is)."""
    from irstd_ros.inference.backends.fingerprint import warn_once

    path = accuracy_path(artifact)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        warn_once(log, path, "unreadable accuracy record %s (%s)", path, one_line(exc))
        return None
    if not isinstance(data, dict) or not _well_formed_datasets(data.get("datasets")):
        warn_once(log, path, "unreadable accuracy record %s: not the format irstd export writes", path)
        return None
    return data


def _well_formed_datasets(datasets: Any) -> bool:
    """Whether ``datasets`` is None or ``{name: {"delta": {metric: number or None}}}``."""
    if datasets is None:
        return True
    if not isinstance(datasets, dict):
        return False
    for entry in datasets.values():
        delta = entry.get("delta") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(delta or {}, dict):
            return False
        values = (delta or {}).values()
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values):
            return False
    return True


def dataset_delta(fp32: Mapping[str, Any], reduced: Mapping[str, Any]) -> dict[str, float | None]:
    """Reduced precision (INT8, bf16) - FP32 in percentage points for Pd and IoU (None
    where a metric is undefined)."""
    out: dict[str, float | None] = {}
    for key in ("pd", "iou"):
        a, b = fp32.get(key), reduced.get(key)
        out[f"{key}_points"] = None if a is None or b is None else round((float(b) - float(a)) * 100.0, 4)
    return out


def measurement_conditions(info: CheckpointInfo) -> dict[str, Any]:
    """What an accuracy record's figures depend on besides the weights: the checkpoint's
    threshold and input normalisation (the compiled graph depends on neither). A record
    measured under others does not describe this checkpoint."""
    conditions: dict[str, Any] = json.loads(json.dumps(
        {"threshold": float(info.threshold), "norm": dataclasses.asdict(info.norm)}))
    return conditions


def fingerprint_conditions(info: CheckpointInfo) -> dict[str, str]:
    """:func:`measurement_conditions` as a fingerprint's ``conditions`` hold them: each
    value as its JSON (keys sorted)."""
    return {key: json.dumps(value, sort_keys=True) for key, value in measurement_conditions(info).items()}


def record_mismatch(
    record: Mapping[str, Any], digest: str, conditions: Mapping[str, Any], recipes: tuple[str, ...], backend: str
) -> str | None:
    """Why ``record`` does not describe the weights ``digest`` measured under ``conditions``
    by one of ``recipes`` (None: it does). The exports re-measure on it; the gate refuses."""
    if record.get("weights_sha256") != digest:
        return "the accuracy record is for other weights"
    if record.get("conditions") != dict(conditions):
        return (f"the accuracy record was measured under {record.get('conditions')}, not this checkpoint's "
                f"{dict(conditions)} (irstd export --backend {backend} measures it)")
    if record.get("recipe") not in recipes:
        wanted = repr(recipes[0]) if len(recipes) == 1 else f"one of {', '.join(recipes)}"
        return f"the accuracy record is for recipe {record.get('recipe')!r}, not {wanted}"
    return None


def accuracy_refusal(
    record: Mapping[str, Any] | None,
    digest: str,
    conditions: Mapping[str, Any],
    recipes: tuple[str, ...] = INT8_RECIPES,
    backend: str = NAME,
) -> str | None:
    """Why ``auto`` must not use ``backend`` (None: its measured delta is within tolerance).

    The gate of every reduced-precision CPU backend (``openvino-int8`` and, with their own
    ``recipes``, ``openvino-bf16`` and ``openvino-int8-bf16``). Each dataset must have been measured on its whole
    held-out split (:func:`coverage_refusal`, :data:`REQUIRED_COVERAGE`): a delta of a
    handful of frames says nothing. ``record["datasets"][name]["delta"]`` holds
    ``pd_points`` / ``iou_points`` (reduced - FP32); on each of :data:`REQUIRED_DATASETS`
    neither may be below ``-``:data:`PD_TOLERANCE_POINTS` / ``-``:data:`IOU_TOLERANCE_POINTS`.
    The tolerance bounds a *loss*: a gain is not refused. On SIRST-v2 ``val`` (144 targets)
    one target is 0.7 points of Pd, so a two-sided bound would refuse any network that
    finds one more target than FP32. A delta that is not finite (NaN, infinity: JSON
    allows both) is refused.
    """
    if record is None:
        return f"no accuracy record (irstd export --backend {backend} measures it)"
    mismatch = record_mismatch(record, digest, conditions, recipes, backend)
    if mismatch:
        return mismatch
    partial = coverage_refusal(record, backend)
    if partial:
        return partial
    datasets = record.get("datasets") or {}
    problems = []
    for name in REQUIRED_DATASETS:
        delta = (datasets.get(name) or {}).get("delta")
        if not delta:
            problems.append(f"{name} not measured")
            continue
        for key, label, tol in (("pd_points", "Pd", PD_TOLERANCE_POINTS), ("iou_points", "IoU", IOU_TOLERANCE_POINTS)):
            value = delta.get(key)
            if value is None:
                problems.append(f"{name} {label} undefined")
            elif not math.isfinite(float(value)):
                problems.append(f"{name} {label} {value} is not a finite delta (a broken measurement)")
            elif float(value) < -tol:
                problems.append(f"{name} {label} {float(value):+.2f} points (tolerance {tol})")
    if problems:
        return "accuracy delta vs FP32 out of tolerance: " + "; ".join(problems)
    return None


def coverage_refusal(record: Mapping[str, Any], backend: str = NAME) -> str | None:
    """Why ``record``'s measurement does not count (None: it does): on a dataset of
    :data:`REQUIRED_COVERAGE` it scored another split, ran with a frame limit, scored fewer
    frames or targets than the whole split has, scored FP32 and the candidate on different
    frames, or does not say how many it scored (unverified). A dataset missing from the
    record is left to :func:`accuracy_refusal` ("not measured")."""
    datasets = record.get("datasets") or {}
    problems = []
    for name, need in REQUIRED_COVERAGE.items():
        entry = datasets.get(name)
        if isinstance(entry, Mapping) and entry.get("delta"):
            problem = _coverage_problem(entry, need)
            if problem:
                problems.append(f"{name} {problem}")
    if not problems:
        return None
    return (f"the accuracy record does not cover the whole held-out splits: {'; '.join(problems)} "
            f"(irstd export --backend {backend} measures them)")


def _coverage_problem(entry: Mapping[str, Any], need: Coverage) -> str | None:
    """What is wrong with one dataset's measurement against ``need`` (None: nothing). The
    counts are the entry's ``frames`` / ``targets`` and those of each run in it (``fp32``
    and the candidate's ``images`` / ``targets``, all a record written before ``frames``
    was added has): all must agree."""
    counts: set[tuple[Any, Any]] = set()
    if "frames" in entry or "targets" in entry:
        counts.add((entry.get("frames"), entry.get("targets")))
    for run in entry.values():
        if isinstance(run, Mapping) and "images" in run:
            counts.add((run.get("images"), run.get("targets")))
    if not counts:
        return "unverified: the record does not say how many frames and targets it scored (an older record?)"
    if len(counts) > 1:
        return f"unverified: its runs scored different frames ({', '.join(f'{f} / {t}' for f, t in sorted(counts, key=str))})"
    frames, targets = counts.pop()
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (frames, targets)):
        return f"unverified: unreadable counts of frames and targets ({frames!r}, {targets!r})"
    split = entry.get("split")
    if split != need.split:
        return f"measured on split {split!r}, not its held-out {need.split!r}"
    if entry.get("limit") is not None:
        return f"measured with a frame limit ({entry.get('limit')}), not on the whole {need.split} split"
    if frames < need.frames or targets < need.targets:
        return (f"{need.split}: {frames} frames with {targets} targets scored, fewer than the whole split's "
                f"{need.frames} frames with {need.targets} targets")
    return None


def describe_accuracy(record: Mapping[str, Any] | None) -> str:
    """``NUDT-SIRST Pd +0.00 IoU -0.12, SIRST-v2 ...`` (for logs and describe())."""
    if not record:
        return "not measured"
    parts = []
    for name, entry in sorted((record.get("datasets") or {}).items()):
        d = entry.get("delta") or {}
        parts.append(
            f"{name} Pd {_points(d.get('pd_points'))} IoU {_points(d.get('iou_points'))}"
        )
    return ", ".join(parts) or "not measured"


class RecordedSpeed(NamedTuple):
    """A record's speed on this CPU: its p50 and FP32's (ms per :data:`SPEED_SIZE`
    frame), and its time as a fraction of FP32's in the same measurement (the median of
    the rounds' ratios; from the two p50s for a record without rounds; None without FP32)."""

    p50_ms: float
    fp32_p50_ms: float | None
    ratio: float | None


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def recorded_speeds(record: Mapping[str, Any] | None) -> RecordedSpeed | None:
    """The speed ``record`` measured on *this* CPU
    (:func:`~irstd_ros.inference.resources.cpu_identity`, cores included), else None.

    ``auto`` / ``cpu`` put the reduced-precision backends that all have one fastest first,
    by their ratio to FP32 (each measured beside FP32, so a host busier at one export than
    at the other does not decide), and skip one that was not faster than FP32 here
    (:mod:`~irstd_ros.inference.backends.select`): which is faster depends on the CPU (Zen
    4: INT8 for 0.7, bf16 for ``fast``; docs/benchmarks.md)."""
    from irstd_ros.inference.resources import cpu_identity

    speed = (record or {}).get("speed")
    if not isinstance(speed, Mapping) or speed.get("cpu") != cpu_identity():
        return None
    if list(speed.get("size") or ()) != list(SPEED_SIZE):
        return None
    p50, fp32 = _positive(speed.get("p50_ms")), _positive(speed.get("fp32_p50_ms"))
    if p50 is None:
        return None
    ratio = _positive(speed.get("ratio")) if fp32 is not None else None
    if ratio is None and fp32 is not None:
        ratio = p50 / fp32
    return RecordedSpeed(p50, fp32, ratio)


def recorded_speed(record: Mapping[str, Any] | None) -> float | None:
    """The p50 of :func:`recorded_speeds` (None: not measured on this CPU)."""
    speeds = recorded_speeds(record)
    return None if speeds is None else speeds[0]


def _points(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):+.2f}"


# --- building (irstd export --backend openvino-int8) ----------------------------------------
def calibration_inputs(frames: Iterable[np.ndarray], stride: int) -> list[np.ndarray]:
    """Normalised (H, W) frames -> (1, 1, H', W') network inputs padded to the stride."""
    return [network_input(np.asarray(f, dtype=np.float32), stride)[0] for f in frames]


CONVOLUTIONS = ("Convolution", "GroupConvolution")
HEAD_SEARCH_DEPTH = 12  # node levels walked up from the output to the convolutions writing the logits


def fp32_convolutions(graph: Any, input_layer: bool = False) -> list[str]:
    """Names of the convolutions :func:`quantize_ir` keeps FP32, found from the graph's
    structure: those whose output becomes the logits without another convolution between
    (the head; in ``fast_refine`` models also the refinement's last conv) and, with
    ``input_layer``, those fed by the model's input (the first layer: its conv and its 1x1
    shortcut), input layer first.

    The head writes the logits that are thresholded (0.2 model, SIRST-v2 val IoU -1.05
    points with it quantised, -0.98 kept FP32). ``input_layer`` is for checkpoints of
    ``global`` normalisation: quantised, their input (the frame scaled to [0, 1]) gets 256
    levels over the frame's whole range, and a faint target a few noise sigmas above its
    background loses most of its contrast (0.1 model, NUDT-SIRST test: Pd -1.7, IoU -3.0
    points against FP32; kept FP32: -0.1, -0.2). The ``robust`` input is in noise sigmas,
    asinh-compressed to about [-4, 6], so its 256 levels are a sixth of the noise (0.7 with
    its first layer quantised, SIRST-v2 val and NUDT-SIRST test: no target lost).
    """
    names = []
    for parameter in graph.get_parameters() if input_layer else ():
        for output in parameter.outputs():
            for target in output.get_target_inputs():
                node = target.get_node()
                if node.get_type_name() in CONVOLUTIONS:
                    names.append(node.get_friendly_name())
    # up from the output through what follows the head (its bias Add, a calibration's
    # Minimum, pixel_shuffle's Reshape / Transpose / Reshape in ``stem: 2`` models, a
    # refinement's Add) to the convolutions that write the logits; constants not followed
    frontier = [result.input_value(0).get_node() for result in graph.get_results()]
    seen: set[str] = set()
    for _ in range(HEAD_SEARCH_DEPTH):
        step: list[Any] = []
        for node in frontier:
            name = node.get_friendly_name()
            if name in seen or node.get_type_name() == "Constant":
                continue
            seen.add(name)
            if node.get_type_name() in CONVOLUTIONS:
                names.append(name)
            else:
                step.extend(node.input_value(i).get_node() for i in range(node.get_input_size()))
        frontier = step
    return names


ValidationItem = tuple[np.ndarray, np.ndarray]  # (network input (1, 1, H', W') padded, reference (H, W))


def iou_validation(threshold_logit: float) -> Callable[[Any, Iterable[ValidationItem]], tuple[float, list[float]]]:
    """NNCF's ``validation_fn``: the mean and per-item IoU of ``logits > threshold_logit``
    against the items' reference masks (an item with neither: 1.0)."""

    def validate(compiled: Any, items: Iterable[ValidationItem]) -> tuple[float, list[float]]:
        values = []
        for x, truth in items:
            h, w = truth.shape  # the input is padded at the bottom/right
            pred = np.asarray(compiled(x)[0])[0, 0, :h, :w] > threshold_logit
            union = int(np.count_nonzero(pred | truth))
            values.append(1.0 if union == 0 else int(np.count_nonzero(pred & truth)) / union)
        return float(np.mean(values)) if values else 1.0, values

    return validate


def quantize_ir(
    fp32_xml: str | Path,
    calibration: list[np.ndarray],
    out_xml: str | Path,
    validation: list[np.ndarray] | None = None,
    threshold_logit: float = 0.0,
    max_drop: float = MAX_IOU_DROP,
    input_layer_fp32: bool = False,
) -> Path:
    """``nncf.quantize`` of the FP32 IR at ``fp32_xml`` on ``calibration`` network inputs,
    activation ranges from their extremes (``MINMAX``), the head and the SGEM attention
    FP32, and the first layer too with ``input_layer_fp32`` (:func:`fp32_convolutions`).

    With ``validation`` network inputs, ``nncf.quantize_with_accuracy_control`` instead:
    the FP32 IR's masks (``logits > threshold_logit``) on those inputs are the reference;
    after the same quantisation, NNCF ranks the quantised layers by how much each costs on
    the per-frame IoU against them (:func:`iou_validation`) and reverts the costliest to
    FP32 until the mean is at least ``1 - max_drop``.
    Writes ``out_xml`` (+ ``.bin``) atomically into its existing folder; raises
    BackendError when NNCF is missing or fails, and a failed write as the writer does
    (:func:`build_int8` says it: ``writing_artifact``).
    """
    try:
        import nncf
        import openvino as ov
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    except ImportError as exc:
        raise BackendError(f"INT8 quantisation needs nncf and openvino ({exc}); see {CPU_REQUIREMENTS}") from None
    if not calibration:
        raise BackendError("INT8 quantisation needs at least one calibration frame")
    from irstd_ros.inference.backends.graph_export import atomic_ir

    calibration = calibration[:MAX_CALIBRATION_FRAMES]
    out_xml = Path(out_xml)
    nncf_log = logging.getLogger("nncf")
    saved_level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # one INFO line per node otherwise
    try:
        graph = ov.Core().read_model(str(fp32_xml))
        # NNCF's progress bars go to stdout, which carries results (irstd export --json)
        ignored = nncf.IgnoredScope(
            names=fp32_convolutions(graph, input_layer_fp32), patterns=list(IGNORED_PATTERNS), validate=False
        )
        ranges = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
        with contextlib.redirect_stdout(sys.stderr):
            if validation:
                fp32 = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                items = [(x, np.asarray(fp32(x)[0])[0, 0] > threshold_logit) for x in validation]
                quantized = nncf.quantize_with_accuracy_control(
                    graph,
                    nncf.Dataset(calibration),
                    nncf.Dataset(items),
                    iou_validation(threshold_logit),
                    max_drop=max_drop,
                    subset_size=len(calibration),
                    ignored_scope=ignored,
                    advanced_quantization_parameters=ranges,
                )
            else:
                quantized = nncf.quantize(
                    graph,
                    nncf.Dataset(calibration),
                    subset_size=len(calibration),
                    ignored_scope=ignored,
                    advanced_parameters=ranges,
                )
    except BackendError:
        raise
    except Exception as exc:  # NNCF / OpenVINO raise their own types
        raise BackendError(f"INT8 quantisation failed: {type(exc).__name__}: {exc}") from exc
    finally:
        nncf_log.setLevel(saved_level)
    with atomic_ir(out_xml) as tmp:
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    return out_xml


def build_int8(
    model: nn.Module,
    info: CheckpointInfo,
    options: BackendOptions | None,
    calibration: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]],
    force: bool = False,
    validation: Callable[[], list[np.ndarray]] | None = None,
) -> tuple[Path, bool]:
    """The INT8 IR of these weights in the cache: (path, whether it was built now).

    Reused when its fingerprint matches (``calibration`` is then not consumed: pass a
    callable returning the frames to defer reading them); otherwise the FP32 IR is
    exported (or reused), quantised on ``calibration`` (normalised (H, W) frames), saved
    with its fingerprint, and any accuracy record of an earlier build is removed.
    ``validation``: a callable returning normalised (H, W) frames, for the
    accuracy-controlled recipe :data:`INT8_RECIPE_AC` (None: :data:`INT8_RECIPE`).
    """
    from irstd_ros.inference.backends.fingerprint import rebuild_reason, save_fingerprint
    from irstd_ros.inference.backends.graph_export import (
        export_bytes,
        export_openvino_ir,
        writing_artifact,
    )

    path, digest = int8_path(model, info, options)
    recipe = INT8_RECIPE_AC if validation is not None else INT8_RECIPE
    expected = int8_fingerprint(info, digest, recipe)
    reason = "forced" if force else rebuild_reason(path, expected)
    if reason is None:
        log.info("INT8 IR %s is up to date", path)
        return path, False
    fp32 = export_openvino_ir(model, info, options)
    frames = calibration() if callable(calibration) else calibration
    inputs = calibration_inputs(frames, info.model.stride)
    items = None
    if validation is not None:
        items = calibration_inputs(validation(), info.model.stride)
    log.info("quantising %s to INT8 on %d calibration frames (%s; %s)", fp32, len(inputs), reason,
             f"accuracy control on {len(items)} frames" if items is not None else "no accuracy control")
    accuracy_path(path).unlink(missing_ok=True)
    threshold_logit = float(logit(np.clip(info.threshold, THRESHOLD_CLIP, 1.0 - THRESHOLD_CLIP)))
    # the folder first (an unusable one fails before the minutes of quantisation); the IR with
    # its fingerprint (needed: at most the FP32 weights)
    with writing_artifact(path, "INT8 IR", export_bytes(model)):
        quantize_ir(
            fp32,
            inputs,
            path,
            items,
            threshold_logit=threshold_logit,
            input_layer_fp32=info.norm.kind != "robust",
        )
        save_fingerprint(path, expected)
    return path, True


# --- loading (the backend) ------------------------------------------------------------------
def cached_int8(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> tuple[Path, str]:
    """(INT8 IR path, weights digest) when a valid one is cached, else BackendError saying why."""
    path, digest, _ = _cached_int8(model, info, options)
    return path, digest


def _cached_int8(
    model: nn.Module, info: CheckpointInfo, options: BackendOptions | None
) -> tuple[Path, str, str]:
    """:func:`cached_int8` and the recipe its fingerprint names (:func:`ir_recipe`)."""
    from irstd_ros.inference.backends.fingerprint import rebuild_reason

    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        raise not_installed("openvino", exc) from None
    path, digest = int8_path(model, info, options)
    recipe = ir_recipe(path)
    reason = rebuild_reason(path, int8_fingerprint(info, digest, recipe))
    if reason is not None:
        if not path.is_file():
            from irstd_ros.inference.backends.graph_export import artifact_stem

            reason = f"no INT8 IR for these weights, threshold and normalisation in {path.parent}"
            legacy = path.with_name(f"{artifact_stem(info, digest)}{INT8_SUFFIX}")
            if legacy.is_file():
                reason += f" ({legacy.name} is named by the weights alone: an older version's)"
        raise BackendError(f"{reason} (build it: irstd export --backend openvino-int8)")
    return path, digest, recipe


def ir_recipe(path: str | Path) -> str:
    """The recipe of the INT8 IR ``path`` as its fingerprint says (one of
    :data:`INT8_RECIPES`; :data:`INT8_RECIPE` without a fingerprint or with another)."""
    from irstd_ros.inference.backends.fingerprint import load_fingerprint

    found = load_fingerprint(path)
    return found.recipe if found is not None and found.recipe in INT8_RECIPES else INT8_RECIPE


def ir_mismatch(record: Mapping[str, Any], path: str | Path, backend: str = NAME) -> str | None:
    """Why ``record`` was not measured on the files of the INT8 IR ``path`` (None: it was,
    or it does not say: a record written before :data:`IR_DIGESTS` was kept, accepted on
    its recipe alone); ``backend``: the one whose export measures it again."""
    from irstd_ros.inference.backends.fingerprint import file_digests

    recorded = record.get(IR_DIGESTS)
    if recorded is None:  # written before the digests were kept: taken on its recipe alone
        return None
    try:
        found = file_digests(path)
    except OSError as exc:
        return f"cannot read the INT8 IR {path} ({one_line(exc)})"
    if not isinstance(recorded, Mapping) or any(recorded.get(k) != v for k, v in found.items()):
        return (
            f"the accuracy record was measured on other files than the INT8 IR {Path(path).name} "
            f"(irstd export --backend {backend} measures it again)"
        )
    return None


def int8_refusal(
    record: Mapping[str, Any] | None,
    path: str | Path,
    digest: str,
    info: CheckpointInfo,
    recipe: str | None = None,
) -> str | None:
    """Why ``auto`` must not run the INT8 IR ``path`` of the weights ``digest`` with its
    accuracy ``record`` (None: it may): a record measured on other IR files
    (:func:`ir_mismatch`), or :func:`accuracy_refusal` with the IR's own recipe
    (:func:`ir_recipe`; ``recipe``: that, when the caller has read it) the only one
    accepted: a record of the plain recipe says nothing of an accuracy-controlled IR, nor
    the other way round."""
    if record is not None:
        mismatch = ir_mismatch(record, path)
        if mismatch:
            return mismatch
    conditions = measurement_conditions(info)
    return accuracy_refusal(record, digest, conditions, recipes=(recipe or ir_recipe(path),))


def auto_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> str | None:
    """Why ``auto`` / ``cpu`` skip ``openvino-int8`` here (None: use it). Builds nothing."""
    try:
        path, digest, recipe = _cached_int8(model, info, options)
    except BackendError as exc:
        return str(exc)
    return int8_refusal(load_accuracy(path), path, digest, info, recipe)


class OpenVINOInt8Backend(OpenVINOBackend):
    """``openvino-int8``: the cached NNCF INT8 IR on OpenVINO's CPU plugin.

    Named explicitly, it runs whatever its accuracy record says (a warning when the delta
    is out of tolerance); ``auto`` / ``cpu`` check :func:`auto_refusal` first. Shape
    handling (static per padded size, bounded LRU, ``dynamic_shapes``) is OpenVINOBackend's.
    """

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        model_path: str | Path | None = None,
    ) -> None:
        digest = recipe = None
        if model_path is None:
            model_path, digest, recipe = _cached_int8(model, info, options)
        super().__init__(model, info, options, precision="fp32", model_path=model_path)
        self.name = self._compiled.owner = NAME
        self.precision = "int8"
        self.accuracy = load_accuracy(self.model_path)
        if digest is not None:
            refusal = int8_refusal(self.accuracy, self.model_path, digest, info, recipe)
            if refusal:
                log.warning("openvino-int8 requested explicitly: %s", refusal)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["precision"] = "int8 (SGEM attention and the rest fp32)"
        out["accuracy_delta"] = describe_accuracy(self.accuracy)
        return out
