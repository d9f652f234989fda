"""``irstd export --backend openvino-int8``: calibrate, quantise, and measure the accuracy cost.

1. **Calibration frames** (:func:`calibration_frames`): at most
   :data:`~irstd_ros.inference.backends.openvino_int8.MAX_CALIBRATION_FRAMES` frames, half
   from each dataset's *training* split (NUDT-SIRST ``50_50/train.txt``, SIRST-v2
   ``splits/train.txt``), read with :func:`~irstd_ros.data.images.read_image`, normalised
   whole with the checkpoint's :class:`~irstd_ros.core.InputNorm` (as the node does), then
   cropped to :data:`CALIBRATION_CROP` px around a random target pixel (shifted by up to a
   third of the crop; frames without targets: a random place). The crops keep the target
   activations, which a random crop of a large frame would mostly miss, in the ranges.
2. **Quantisation**: :func:`~irstd_ros.inference.backends.openvino_int8.build_int8`
   (NNCF on the FP32 OpenVINO IR; reused when its fingerprint matches).
   The plain recipe first; when its measured delta (step 3) is out of tolerance, NNCF's
   accuracy control on top (recipe ``INT8_RECIPE_AC``; ``irstd export --accuracy-control
   auto``, the default, or ``always``): on :func:`validation_frames` (other
   crops of the same *training* splits, each holding a target) the per-frame IoU of the
   INT8 mask against the FP32 mask is scored, and the layers that cost most are reverted
   to FP32 until it drops by at most ``MAX_IOU_DROP``. The held-out splits of step 3 are never used to choose layers.
3. **Accuracy** (:func:`measure_accuracy`): ``irstd eval``'s
   :func:`~irstd_ros.evaluation.evaluate.evaluate` with ``backend="openvino"`` and
   ``backend="openvino-int8"`` on held-out frames (all 664 of NUDT-SIRST ``test``: in the
   first 100 alone one target is 0.8 points of Pd, more than the tolerance; all 164 of
   SIRST-v2 ``val``), full resolution; the difference is stored beside the IR, where
   ``auto`` reads it, with each dataset's split, frame limit, and the frames and targets
   scored: the gate refuses a record of less than the whole held-out splits
   (:data:`~irstd_ros.inference.backends.openvino_int8.REQUIRED_COVERAGE`), and the next
   export measures such a record again.

4. **Speed** (:func:`measure_speed`): the p50 of the reduced-precision backend and of FP32
   on a :data:`~irstd_ros.inference.backends.openvino_int8.SPEED_SIZE` frame on this CPU,
   kept in a record within tolerance (and added to such a record that has none for this
   CPU), so that ``auto`` can run the faster of INT8 and bf16 when both are within
   tolerance.

``irstd export --backend openvino-bf16`` (:func:`export_bf16`) is steps 3 and 4 alone, with
``backend="openvino-bf16"``: bf16 compiles the FP32 IR with a precision hint, so there
is nothing to build, only its accuracy record to write
(:mod:`~irstd_ros.inference.backends.openvino_bf16`). ``irstd export --backend
openvino-int8-bf16`` (:func:`export_int8_bf16`) is the same for the cached INT8 IR compiled
with that hint (:mod:`~irstd_ros.inference.backends.openvino_int8_bf16`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint
from irstd_ros.core.normalization import InputNorm, normalize
from irstd_ros.data import DatasetSpec, find_pairs
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.data.pack import DEFAULT_NUDT, DEFAULT_SIRST
from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.fingerprint import file_digests
from irstd_ros.inference.backends.graph_export import CACHE_ENV, cache_root, make_cache_dir
from irstd_ros.inference.backends.openvino_int8 import (
    INT8_RECIPE,
    INT8_RECIPE_AC,
    IOU_TOLERANCE_POINTS,
    IR_DIGESTS,
    MAX_CALIBRATION_FRAMES,
    MAX_IOU_DROP,
    NAME,
    PD_TOLERANCE_POINTS,
    SPEED_SIZE,
    accuracy_path,
    build_int8,
    coverage_refusal,
    dataset_delta,
    int8_fingerprint,
    int8_path,
    int8_refusal,
    ir_mismatch,
    ir_recipe,
    load_accuracy,
    measurement_conditions,
    record_mismatch,
    recorded_speed,
    save_accuracy,
)

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

CALIBRATION_CROP = 256  # px side of a calibration crop
CALIBRATION_SEED = 0
VALIDATION_FRAMES = 96  # accuracy control: target-holding crops, both training splits
VALIDATION_CROP = 384  # px; larger than the calibration crops, to see clutter around targets
VALIDATION_SEED = 1
NUDT_EVAL_FRAMES: int | None = None  # None: all 664 (one target of 100 frames is 0.8 points of Pd)
FP32_BACKEND = "openvino"  # the reference the INT8 IR is compared with
SPEED_WARMUP = 5  # calls before timing (the first compiles)
SPEED_ROUNDS = 6  # rounds, each timing the candidate then FP32: a slower host slows both
SPEED_CALLS = 6  # timed calls per backend per round (36 each in all)
SPEED_SEED = 2
METRIC_KEYS = ("pd", "iou", "niou", "fa", "f1", "false_targets_per_frame", "images", "targets")


@dataclass(frozen=True)
class Int8Dataset:
    """One dataset: where it is, which split calibrates, which split (and how much) scores."""

    name: str
    root: Path
    calibration_split: str = "train"
    eval_split: str = "test"
    eval_limit: int | None = None


def default_datasets(nudt: Path | None = None, sirst: Path | None = None) -> list[Int8Dataset]:
    """NUDT-SIRST (train / test) and SIRST-v2 (train / val)."""
    return [
        Int8Dataset("NUDT-SIRST", Path(nudt or DEFAULT_NUDT), "train", "test", NUDT_EVAL_FRAMES),
        Int8Dataset("SIRST-v2", Path(sirst or DEFAULT_SIRST), "train", "val", None),
    ]


def _crop(
    x: np.ndarray, truth: np.ndarray, crop: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``crop`` x ``crop`` window (frame, mask) around a random target pixel (or anywhere)."""
    h, w = x.shape
    if h < crop or w < crop:  # small frames: mirror up to the crop
        ph, pw = max(0, crop - h), max(0, crop - w)
        x = np.pad(x, ((0, ph), (0, pw)), mode="symmetric")
        truth = np.pad(truth, ((0, ph), (0, pw)), mode="symmetric")  # the mirrored targets are targets
        h, w = x.shape
    ys, xs = np.nonzero(truth)
    if len(ys):
        k = int(rng.integers(len(ys)))
        shift = crop // 3
        cy = int(ys[k]) + int(rng.integers(-shift, shift + 1))
        cx = int(xs[k]) + int(rng.integers(-shift, shift + 1))
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0 = int(np.clip(cy - crop // 2, 0, h - crop))
    x0 = int(np.clip(cx - crop // 2, 0, w - crop))
    window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    return np.ascontiguousarray(x[window], dtype=np.float32), np.ascontiguousarray(truth[window], dtype=bool)


def calibration_frames(
    norm: InputNorm,
    datasets: list[Int8Dataset],
    total: int = MAX_CALIBRATION_FRAMES,
    crop: int = CALIBRATION_CROP,
    seed: int = CALIBRATION_SEED,
) -> list[np.ndarray]:
    """Normalised calibration crops, ``total`` split evenly over ``datasets`` (seeded)."""
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    for want, pairs in _training_pairs(datasets, min(total, MAX_CALIBRATION_FRAMES), rng):
        for img, msk in pairs[:want]:
            x = normalize(read_image(img), norm)
            frames.append(_crop(x, read_mask(msk), crop, rng)[0])
    return frames


def _training_pairs(
    datasets: list[Int8Dataset], total: int, rng: np.random.Generator
) -> Iterator[tuple[int, list[tuple[Path, Path]]]]:
    """Per dataset: its share of ``total`` (split evenly) and its training-split (image,
    mask) pairs in a random order drawn from ``rng`` when the dataset's turn comes."""
    for i, ds in enumerate(datasets):
        want = total // len(datasets) + (1 if i < total % len(datasets) else 0)
        pairs = find_pairs(DatasetSpec(ds.root, ds.calibration_split))
        yield want, [pairs[int(j)] for j in rng.permutation(len(pairs))]


def validation_frames(
    norm: InputNorm,
    datasets: list[Int8Dataset],
    total: int = VALIDATION_FRAMES,
    crop: int = VALIDATION_CROP,
    seed: int = VALIDATION_SEED,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Accuracy-control items: (normalised crop, its truth mask) around a target of a
    training frame, ``total`` split evenly over ``datasets`` (seeded; frames without a
    target are skipped)."""
    rng = np.random.default_rng(seed)
    items: list[tuple[np.ndarray, np.ndarray]] = []
    for want, pairs in _training_pairs(datasets, total, rng):
        taken = 0
        for img, msk in pairs:
            if taken == want:
                break
            truth = read_mask(msk)
            if not truth.any():
                continue
            items.append(_crop(normalize(read_image(img), norm), truth, crop, rng))
            taken += 1
    return items


@contextlib.contextmanager
def _cache_env(cache: Path) -> Iterator[None]:
    """``irstd eval`` builds its backends in the default cache: point it at ``cache``."""
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(cache)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = saved


def _metrics(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report.get(k) for k in METRIC_KEYS}


def measure_accuracy(
    weights: Path,
    cache: Path,
    datasets: list[Int8Dataset],
    threads: int | None = None,
    fp32_backend: str = FP32_BACKEND,
    candidate: str = NAME,
    label: str = "int8",
) -> dict[str, dict[str, Any]]:
    """``evaluate`` FP32 and ``candidate`` (stored under ``label``) on each dataset's
    held-out split: metrics, the delta, and the split, frame limit, frames and targets
    scored (``coverage_refusal`` refuses a record of less than the whole split)."""
    from irstd_ros.evaluation.evaluate import EvalConfig, evaluate

    out: dict[str, dict[str, Any]] = {}
    with _cache_env(cache):
        for ds in datasets:
            entry: dict[str, Any] = {"data": str(ds.root), "split": ds.eval_split, "limit": ds.eval_limit}
            for key, backend in (("fp32", fp32_backend), (label, candidate)):
                t0 = time.perf_counter()
                report = evaluate(
                    EvalConfig(data=ds.root, split=ds.eval_split, weights=weights, backend=backend,
                               threads=threads, out=None, limit=ds.eval_limit, reference=False)
                )
                entry[key] = {**_metrics(report), "backend": report["backend"], "seconds": round(time.perf_counter() - t0, 1)}
            # what the gate checks against REQUIRED_COVERAGE: the whole held-out split was scored
            entry["frames"], entry["targets"] = entry["fp32"]["images"], entry["fp32"]["targets"]
            entry["delta"] = dataset_delta(entry["fp32"], entry[label])
            log.info("%s: %s - FP32 Pd %s, IoU %s points", ds.name, label.upper(), entry["delta"]["pd_points"],
                     entry["delta"]["iou_points"])
            out[ds.name] = entry
    return out


def _accuracy_record(
    weights: Path,
    cache: Path,
    datasets: list[Int8Dataset],
    threads: int | None,
    digest: str,
    conditions: dict[str, Any],
    recipe: str,
    candidate: str = NAME,
    label: str = "int8",
) -> dict[str, Any]:
    """The fields every accuracy record has: whose, under which threshold and
    normalisation, the tolerance, when, and :func:`measure_accuracy` of ``candidate``
    against FP32."""
    return {
        "weights_sha256": digest,
        "conditions": conditions,
        "recipe": recipe,
        "fp32_backend": FP32_BACKEND,
        "tolerance": {"pd_points": PD_TOLERANCE_POINTS, "iou_points": IOU_TOLERANCE_POINTS},
        "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "datasets": measure_accuracy(weights, cache, datasets, threads, candidate=candidate, label=label),
    }


def measure_speed(model: nn.Module, info: CheckpointInfo, options: BackendOptions, candidate: str) -> dict[str, Any]:
    """Milliseconds per :data:`SPEED_SIZE` frame of ``candidate`` and of FP32 on this CPU,
    with ``options``' threads, in :data:`SPEED_ROUNDS` interleaved rounds: the record's
    ``speed`` (read by ``recorded_speeds``). ``p50_ms`` / ``fp32_p50_ms`` are the medians
    of all calls; ``ratio``, the median of the rounds' candidate / FP32 medians, is what
    ``auto`` compares, since load that comes and goes on a shared host slows the two
    backends of one round alike."""
    import dataclasses

    from irstd_ros.inference.backends.select import create_backend
    from irstd_ros.inference.resources import available_cores, cpu_identity

    height, width = SPEED_SIZE
    frame = np.random.default_rng(SPEED_SEED).normal(0.0, 1.0, SPEED_SIZE).astype(np.float32)
    sized = dataclasses.replace(options, height=height, width=width)
    backends = [create_backend(name, model, info, sized) for name in (candidate, FP32_BACKEND)]
    for backend in backends:
        for _ in range(SPEED_WARMUP):
            backend.predict(frame)
    calls: list[list[float]] = [[], []]
    rounds: list[list[float]] = []
    for _ in range(SPEED_ROUNDS):
        medians = []
        for backend, times in zip(backends, calls):
            start = len(times)
            for _ in range(SPEED_CALLS):
                t0 = time.perf_counter()
                backend.predict(frame)
                times.append(1e3 * (time.perf_counter() - t0))
            medians.append(float(np.median(times[start:])))
        rounds.append([round(m, 2) for m in medians])
    ratio = float(np.median([c / f for c, f in rounds]))
    out: dict[str, Any] = {
        "cpu": cpu_identity(), "size": list(SPEED_SIZE), "threads": options.threads or available_cores(),
        "calls": SPEED_ROUNDS * SPEED_CALLS, "p50_ms": round(float(np.median(calls[0])), 2),
        "fp32_p50_ms": round(float(np.median(calls[1])), 2), "ratio": round(ratio, 3), "rounds": rounds,
    }
    log.info("%s: %.1f ms per %dx%d frame here, %.2f of FP32's time (FP32 %.1f ms; %d rounds)", candidate,
             out["p50_ms"], width, height, ratio, out["fp32_p50_ms"], SPEED_ROUNDS)
    return out


def _add_speed(record: dict[str, Any], path: Path, model: nn.Module, info: CheckpointInfo,
               options: BackendOptions, candidate: str, again: bool = False) -> None:
    """Measure and save the speed of a record that has none for this CPU, or one timed
    before the interleaved rounds (no ``rounds``), or any with ``again``."""
    if again or recorded_speed(record) is None or "rounds" not in record.get("speed", {}):
        record["speed"] = measure_speed(model, info, options, candidate)
        save_accuracy(path, record)


ACCURACY_CONTROL = ("auto", "always", "never")  # irstd export --accuracy-control


def export_int8(
    weights: Path,
    out: Path | None = None,
    datasets: list[Int8Dataset] | None = None,
    calibration: int = MAX_CALIBRATION_FRAMES,
    measure: bool = True,
    force: bool = False,
    threads: int | None = None,
    accuracy_control: str | bool = "auto",
    retime: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the INT8 IR of ``weights`` in ``out`` and record its accuracy delta.

    ``accuracy_control`` (one of :data:`ACCURACY_CONTROL`; True / False mean ``always`` /
    ``never``): ``never`` builds the plain recipe ``INT8_RECIPE``; ``always`` NNCF's
    accuracy-controlled quantisation on :func:`validation_frames` (``INT8_RECIPE_AC``);
    ``auto`` the plain recipe first, and the accuracy-controlled one only when the plain
    IR's measured delta is out of tolerance. Accuracy control reverts layers to FP32 until
    INT8 agrees with FP32 on training crops, and each revert costs speed (0.7 on Zen 4:
    41.7 ms against 34.1 ms plain, both within tolerance; docs/benchmarks.md), so the plain
    IR is kept wherever it passes the same gate ``auto`` applies. An accuracy-controlled IR
    already in the cache within tolerance is reused by ``auto`` unless ``force``.

    ``result["auto"]`` says what ``auto`` / ``cpu`` will do: ``uses openvino-int8`` only
    when the IR passes their gate and starts (:func:`_auto_refusal`), else why not.

    The accuracy is measured when the IR was built now, when no valid record is beside it
    (or one of less than the whole held-out splits), or with ``force``; a measurement of
    less than the whole splits (small datasets, a frame limit) is refused by the gate
    whatever the IR, so ``auto`` does not follow it with accuracy control
    (``result["partial"]``); ``measure=False`` leaves the IR without a record (``auto`` then keeps
    FP32 and says so). The speed (:func:`measure_speed`) is measured for a record within
    tolerance that has none from this CPU or one from before the interleaved rounds, and
    with ``retime`` (a host that was busy at the export) without re-measuring accuracy.
    """
    if isinstance(accuracy_control, bool):
        mode = "always" if accuracy_control else "never"
    else:
        mode = accuracy_control
    if mode not in ACCURACY_CONTROL:
        raise ConfigError(f"accuracy control {accuracy_control!r}; valid: {', '.join(ACCURACY_CONTROL)}")
    args = (weights, out, datasets or default_datasets(), calibration, measure, threads, retime)
    if mode != "auto":
        result = _export_int8(*args, force=force, accuracy_control=mode == "always")
    elif not force and _cached_controlled_ir_passes(weights, out):
        result = _export_int8(*args, force=False, accuracy_control=True)
    else:
        result = _export_int8(*args, force=force, accuracy_control=False)
        # a measurement of less than the whole splits is refused whatever the IR: controlling
        # the IR's accuracy would not change that
        if measure and result["auto"] != f"uses {NAME}" and not result.get("partial"):
            log.info("the plain INT8 IR is out of tolerance (%s); quantising again with accuracy control",
                     result["auto"])
            plain = result
            result = _export_int8(*args, force=False, accuracy_control=True)
            result["plain"] = {"accuracy": plain.get("accuracy"), "auto": plain["auto"]}
    if result["auto"] == f"uses {NAME}":
        result["auto"] = _auto_refusal(weights, out, threads) or result["auto"]
    return result


def _auto_refusal(weights: Path, out: Path | None, threads: int | None) -> str | None:
    """Why ``auto`` / ``cpu`` would not run the INT8 IR of ``weights`` in ``out`` after all
    (None: they would): its gate as they apply it (the files checked against the digests of
    their fingerprint, the record) and a start with a warm-up frame, not the record alone."""
    from irstd_ros.inference.backends.openvino_int8 import auto_refusal
    from irstd_ros.inference.backends.select import try_start

    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(cache_dir=str(out) if out else None, threads=threads)
    refusal = auto_refusal(model, info, options)
    return refusal if refusal is not None else try_start(NAME, model, info, options)[1]


def _cached_controlled_ir_passes(weights: Path, out: Path | None) -> bool:
    """Whether the cache holds an accuracy-controlled INT8 IR of ``weights`` whose record
    is valid and within tolerance."""
    from irstd_ros.inference.backends.fingerprint import load_fingerprint, rebuild_reason

    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(cache_dir=str(out) if out else None)
    path, digest = int8_path(model, info, options)
    found = load_fingerprint(path)
    if found is None or found.recipe != INT8_RECIPE_AC:
        return False
    if rebuild_reason(path, int8_fingerprint(info, digest, INT8_RECIPE_AC)) is not None:
        return False
    return int8_refusal(load_accuracy(path), path, digest, info) is None


def _export_int8(
    weights: Path,
    out: Path | None,
    datasets: list[Int8Dataset],
    calibration: int,
    measure: bool,
    threads: int | None,
    retime: bool,
    force: bool,
    accuracy_control: bool,
) -> dict[str, Any]:
    """One recipe of :func:`export_int8`: build or reuse, measure, record."""
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(cache_dir=str(out) if out else None, threads=threads)
    cache = cache_root(options)
    t0 = time.perf_counter()
    validation = None
    if accuracy_control:
        def validation() -> list[np.ndarray]:
            return [f for f, _ in validation_frames(info.norm, datasets, VALIDATION_FRAMES, VALIDATION_CROP)]

    recipe = INT8_RECIPE_AC if accuracy_control else INT8_RECIPE
    calibrated_on = {
        "frames": min(calibration, MAX_CALIBRATION_FRAMES), "crop": CALIBRATION_CROP,
        "seed": CALIBRATION_SEED,
        "splits": {ds.name: f"{ds.root} {ds.calibration_split}" for ds in datasets},
    }
    cached, digest = int8_path(model, info, options)
    before = load_accuracy(cached)
    if not force and before is not None and before.get("recipe") == recipe and before.get("calibration") not in (None, calibrated_on):
        # the fingerprint (what a node checks) cannot hold the calibration set: its record does
        log.info("the cached INT8 IR was calibrated on %s; quantising again on %s", before["calibration"], calibrated_on)
        force = True
    path, built = build_int8(
        model, info, options, lambda: calibration_frames(info.norm, datasets, calibration), force=force,
        validation=validation,
    )
    result: dict[str, Any] = {
        "backend": NAME, "weights": str(weights), "recipe": recipe, "built": built, "build_s": round(time.perf_counter() - t0, 1),
        "files": [str(path), str(path.with_suffix(".bin")), str(path) + ".json"],
    }
    conditions = measurement_conditions(info)
    record = load_accuracy(path)
    partial = None if record is None else coverage_refusal(record)
    # a record of part of the splits is measured again (on these datasets, whole)
    # so is one of other IR files (the IR rebuilt since, or replaced)
    stale = (
        record is None
        or record_mismatch(record, digest, conditions, (recipe,), NAME) is not None
        or ir_mismatch(record, path) is not None
        or partial is not None
    )
    if measure and (built or force or stale):
        import nncf
        import openvino as ov

        t1 = time.perf_counter()
        record = {
            **_accuracy_record(Path(weights), cache, datasets, threads, digest, conditions, recipe),
            # an IR reused without a record: how it was calibrated is not known here
            "calibration": calibrated_on if built else (
                (before or {}).get("calibration") or "unknown: an IR reused without a record"
            ),
            **({"accuracy_control": {
                "frames": VALIDATION_FRAMES, "crop": VALIDATION_CROP, "seed": VALIDATION_SEED,
                "metric": "mean per-frame IoU of the INT8 mask against the FP32 mask at the checkpoint's threshold", "max_drop": MAX_IOU_DROP,
            }} if accuracy_control else {}),
            "versions": {"nncf": nncf.__version__, "openvino": ov.__version__},
            IR_DIGESTS: file_digests(path),  # the gate takes the record for these files alone
        }
        refusal = int8_refusal(record, path, digest, info)
        record["verdict"] = refusal or "within tolerance: auto uses openvino-int8"
        save_accuracy(path, record)
        result["measure_s"] = round(time.perf_counter() - t1, 1)
        partial = coverage_refusal(record)
    else:
        refusal = int8_refusal(record, path, digest, info)
    # refused for its coverage: the gate checks it right after the record's identity (its
    # weights, conditions, recipe and IR files), before the deltas
    result["partial"] = partial is not None and refusal == partial
    if measure and record is not None and refusal is None:  # a refused IR's speed decides nothing
        _add_speed(record, path, model, info, options, NAME, again=retime)
    if record is not None:
        result["files"].append(str(accuracy_path(path)))
        result["accuracy"] = {k: record.get(k) for k in ("datasets", "verdict", "tolerance", "speed")}
    result["auto"] = refusal or "uses openvino-int8"
    return result


def _require_native_bf16(backend: str) -> None:
    """BackendError on a CPU without native bf16: a record of ``backend`` measured there
    would describe emulated bf16, which ``auto`` never runs."""
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends.openvino_backend import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        raise BackendError(f"{backend} needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has none")


def _timed_result(result: dict[str, Any], record: dict[str, Any], refusal: str | None, artifact: Path,
                  model: nn.Module, info: CheckpointInfo, options: BackendOptions, backend: str,
                  retime: bool) -> dict[str, Any]:
    """The end of a measured-only export of ``backend`` (bf16, INT8+bf16): a ``record``
    its gate takes (``refusal`` None) timed on this CPU (a refused record's speed decides
    nothing), then its accuracy and ``auto``'s verdict in ``result``."""
    if refusal is None:
        _add_speed(record, artifact, model, info, options, backend, again=retime)
    result["accuracy"] = {k: record.get(k) for k in ("datasets", "verdict", "tolerance", "speed")}
    result["auto"] = refusal or f"uses {backend}"
    return result


def export_bf16(
    weights: Path,
    out: Path | None = None,
    datasets: list[Int8Dataset] | None = None,
    force: bool = False,
    threads: int | None = None,
    retime: bool = False,
) -> dict[str, Any]:
    """Measure ``openvino-bf16`` against FP32 for ``weights`` and write the accuracy record
    its gate reads into the cache ``out``, bound to the FP32 IR in that cache that both
    compile (its :func:`~irstd_ros.inference.backends.openvino_bf16.ir_graph_digest` in the
    record's fingerprint); a record that still applies (same fingerprint, this IR's graph)
    is reused unless ``force``, and its speed timed as :func:`export_int8` times INT8's.
    BackendError on a CPU without native bf16 (the record would describe emulated bf16,
    which ``auto`` never runs)."""
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends import openvino_bf16 as bf16
    from irstd_ros.inference.backends.graph_export import export_openvino_ir

    _require_native_bf16(bf16.NAME)
    datasets = datasets or default_datasets()
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(cache_dir=str(out) if out else None, threads=threads)
    cache = cache_root(options)
    artifact, digest = bf16.bf16_artifact(model, info, options)
    ir = export_openvino_ir(model, info, options)  # the IR both backends compile
    graph = bf16.ir_graph_digest(ir)
    record = load_accuracy(artifact)
    result: dict[str, Any] = {"backend": bf16.NAME, "weights": str(weights), "measured": False,
                              "files": [str(accuracy_path(artifact))]}
    conditions = measurement_conditions(info)
    if (force or record is None or bf16.stale_reason(record, digest, info, graph) is not None
            or record_mismatch(record, digest, conditions, (bf16.BF16_RECIPE,), bf16.NAME) is not None
            or coverage_refusal(record, bf16.NAME) is not None):
        t0 = time.perf_counter()
        record = _accuracy_record(Path(weights), cache, datasets, threads, digest, conditions, bf16.BF16_RECIPE,
                                  bf16.NAME, "bf16")
        measured_on = bf16.ir_graph_digest(export_openvino_ir(model, info, options))
        if measured_on != graph:  # converted again while measuring: the record would describe neither
            raise BackendError(f"the FP32 IR in {cache} changed during the measurement; run the export again")
        record["fingerprint"] = bf16.bf16_fingerprint(digest, info, graph).to_dict()
        record["verdict"] = (bf16.record_refusal(record, digest, info, ir=ir)
                             or f"within tolerance: auto uses {bf16.NAME} where the CPU has native bf16")
        make_cache_dir(cache)
        save_accuracy(artifact, record)
        result.update(measured=True, measure_s=round(time.perf_counter() - t0, 1))
    refusal = bf16.record_refusal(record, digest, info, ir=ir)
    return _timed_result(result, record, refusal, artifact, model, info, options, bf16.NAME, retime)


def export_int8_bf16(
    weights: Path,
    out: Path | None = None,
    datasets: list[Int8Dataset] | None = None,
    force: bool = False,
    threads: int | None = None,
    retime: bool = False,
) -> dict[str, Any]:
    """Measure ``openvino-int8-bf16`` (the cached INT8 IR of ``weights`` in ``out``, its
    float ops in bf16) against FP32 and write the accuracy record its gate reads beside the
    IR, bound to the IR's files; a record that still applies (these weights, threshold,
    normalisation and IR files, the whole held-out splits) is reused unless ``force``, and
    its speed timed as :func:`export_int8` times INT8's. BackendError on a CPU without
    native bf16, and when no valid INT8 IR is cached (``irstd export --backend
    openvino-int8`` builds it: the calibration is INT8's, not repeated here)."""
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends import openvino_int8_bf16 as mixed
    from irstd_ros.inference.backends.openvino_int8 import cached_int8

    _require_native_bf16(mixed.NAME)
    datasets = datasets or default_datasets()
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(cache_dir=str(out) if out else None, threads=threads)
    try:
        ir, digest = cached_int8(model, info, options)
    except BackendError as exc:
        raise BackendError(f"{mixed.NAME} compiles the INT8 IR: {exc}") from None
    artifact = mixed.record_artifact(ir)
    record = load_accuracy(artifact)
    result: dict[str, Any] = {"backend": mixed.NAME, "weights": str(weights), "measured": False,
                              "files": [str(accuracy_path(artifact))], "int8_ir": str(ir)}
    conditions = measurement_conditions(info)
    if (force or record is None or not isinstance(record.get(IR_DIGESTS), dict)
            or ir_mismatch(record, ir, mixed.NAME) is not None
            or (record.get("versions") or {}).get("openvino") != mixed.openvino_version()
            or record_mismatch(record, digest, conditions, (mixed.RECIPE,), mixed.NAME) is not None
            or coverage_refusal(record, mixed.NAME) is not None):
        t0 = time.perf_counter()
        files = file_digests(ir)
        record = {
            **_accuracy_record(Path(weights), cache_root(options), datasets, threads, digest, conditions,
                               mixed.RECIPE, mixed.NAME, "int8-bf16"),
            "int8_recipe": ir_recipe(ir),
            "versions": {"openvino": mixed.openvino_version()},  # what compiled what was measured
            IR_DIGESTS: files,  # the gate takes the record for these files alone
        }
        if file_digests(ir) != files:  # rebuilt while measuring: the record would describe neither
            raise BackendError(f"the INT8 IR {ir} changed during the measurement; run the export again")
        record["verdict"] = (mixed.record_refusal(record, ir, digest, info)
                             or f"within tolerance: auto uses {mixed.NAME} where the CPU has native bf16")
        save_accuracy(artifact, record)
        result.update(measured=True, measure_s=round(time.perf_counter() - t0, 1))
    refusal = mixed.record_refusal(record, ir, digest, info)
    return _timed_result(result, record, refusal, artifact, model, info, options, mixed.NAME, retime)
