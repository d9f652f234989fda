"""Backend registry and selection: ``auto`` = the best available backend, with fallback.

Names (``model.backend``): ``tensorrt``, ``cuda`` (GPU); ``torch-cpu`` (eager reference),
``torch-compile``, ``onnxruntime``, ``openvino``, ``openvino-bf16``, ``openvino-int8``,
``openvino-int8-bf16`` (CPU); and two choices:

* ``cpu``: the fastest CPU backend available, in the order :data:`~irstd_ros.core.constants.CPU_PREFERENCE`
  (measured on the project's machine, see docs/benchmarks.md): ``openvino-int8-bf16`` (the
  INT8 IR with its float ops in bf16) and ``openvino-bf16`` only on a CPU with native bf16
  and with an accuracy record of these weights within tolerance
  (:func:`~irstd_ros.inference.backends.openvino_int8_bf16.auto_refusal`,
  :func:`~irstd_ros.inference.backends.openvino_bf16.auto_refusal`), ``openvino-int8``
  only when its artefact is cached *and* its recorded accuracy delta against FP32 is within
  tolerance (:func:`~irstd_ros.inference.backends.openvino_int8.auto_refusal`), then the
  FP32 backends. When the reduced precisions that may run here have all recorded their
  speed on this CPU (``irstd export`` measures it; :func:`~irstd_ros.inference.backends.openvino_int8.recorded_speeds`),
  the one with the smaller share of the FP32 time measured beside it is tried first (on
  Zen 4 INT8 for 0.7, bf16 for ``fast``), and one whose record shows it no faster than
  FP32 on this CPU is skipped;
* ``auto``: ``tensorrt`` -> ``cuda`` -> the ``cpu`` order.

A choice tries each candidate in turn: construction (imports happen inside the backend
modules, and ``import torch_tensorrt`` may fail with any exception on a machine without a
driver) and one warm-up ``predict`` (a compiled engine can fail only on its first call)
must both succeed, else the next candidate is tried. One log line says what was chosen
and why the ones before it were not, in the order they were tried; the backend keeps that
account (:func:`selection_of`, for the node's ``ready`` line). A backend named explicitly
is built as asked (and warmed up when the options give the frame size: a compile, a
capture or an engine is made before the first frame), and its failure is an error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.constants import (
    BACKEND_CHOICES,
    BACKEND_NAMES,
    GPU_BACKENDS,
    VALID_BACKENDS,
)
from irstd_ros.errors import BackendError, ConfigError, one_line
from irstd_ros.inference.backends.base import CPU_REQUIREMENTS, Backend, BackendOptions

if TYPE_CHECKING:
    from irstd_ros.inference.backends.openvino_int8 import RecordedSpeed

log = logging.getLogger(__name__)

Factory = Callable[[nn.Module, CheckpointInfo, BackendOptions], Backend]


def _tensorrt(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(model, info, options)


def _cuda(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.torch_cuda import TorchCUDABackend

    return TorchCUDABackend(model, info, options)


def _torch_cpu(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.torch_cpu import TorchCPUBackend

    return TorchCPUBackend(model, info, options)


def _torch_compile(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.torch_compile import TorchCompileBackend

    return TorchCompileBackend(model, info, options)


def _onnxruntime(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model, info, options)


def _openvino(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend

    return OpenVINOBackend(model, info, options, precision="fp32")


def _openvino_bf16(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.openvino_bf16 import OpenVINOBf16Backend

    return OpenVINOBf16Backend(model, info, options)


def _openvino_int8(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.openvino_int8 import OpenVINOInt8Backend

    return OpenVINOInt8Backend(model, info, options)


def _openvino_int8_bf16(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> Backend:
    from irstd_ros.inference.backends.openvino_int8_bf16 import OpenVINOInt8Bf16Backend

    return OpenVINOInt8Bf16Backend(model, info, options)


def _int8_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> str | None:
    from irstd_ros.inference.backends.openvino_int8 import auto_refusal

    return auto_refusal(model, info, options)


def _bf16_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> str | None:
    from irstd_ros.inference.backends.openvino_bf16 import auto_refusal

    return auto_refusal(model, info, options)


def _int8_bf16_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> str | None:
    from irstd_ros.inference.backends.openvino_int8_bf16 import auto_refusal

    return auto_refusal(model, info, options)


def _int8_speed(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> RecordedSpeed | None:
    from irstd_ros.inference.backends.openvino_int8 import int8_path, load_accuracy, recorded_speeds

    return recorded_speeds(load_accuracy(int8_path(model, info, options)[0]))


def _bf16_speed(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> RecordedSpeed | None:
    from irstd_ros.inference.backends.openvino_bf16 import bf16_artifact
    from irstd_ros.inference.backends.openvino_int8 import load_accuracy, recorded_speeds

    return recorded_speeds(load_accuracy(bf16_artifact(model, info, options)[0]))


def _int8_bf16_speed(model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> RecordedSpeed | None:
    from irstd_ros.inference.backends.openvino_int8 import load_accuracy, recorded_speeds
    from irstd_ros.inference.backends.openvino_int8_bf16 import int8_bf16_artifact

    return recorded_speeds(load_accuracy(int8_bf16_artifact(model, info, options)))


REGISTRY: dict[str, Factory] = {
    "tensorrt": _tensorrt,
    "cuda": _cuda,
    "torch-cpu": _torch_cpu,
    "torch-compile": _torch_compile,
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "openvino-bf16": _openvino_bf16,
    "openvino-int8": _openvino_int8,
    "openvino-int8-bf16": _openvino_int8_bf16,
}
BACKENDS = BACKEND_NAMES  # REGISTRY's keys, in that order (a test holds them equal)
# Candidates of a choice that must also pass a check of the model's cached artefact
# (reason or None); a backend named explicitly skips it.
ACCURACY_GATES: dict[str, Callable[[nn.Module, CheckpointInfo, BackendOptions], str | None]] = {
    "openvino-bf16": _bf16_refusal,
    "openvino-int8": _int8_refusal,
    "openvino-int8-bf16": _int8_bf16_refusal,
}
# Their speed and FP32's on this CPU as their records keep them (None: not measured here).
RECORDED_SPEEDS: dict[str, Callable[[nn.Module, CheckpointInfo, BackendOptions], RecordedSpeed | None]] = {
    "openvino-bf16": _bf16_speed,
    "openvino-int8": _int8_speed,
    "openvino-int8-bf16": _int8_bf16_speed,
}
CHOICES = BACKEND_CHOICES
WARMUP_SIDE = 64  # warm-up frame side when the options name no frame size
SELECTION_ATTR = "irstd_selection"  # the attribute of a chosen backend holding its Selection


@dataclass(frozen=True)
class Selection:
    """How a choice (``auto``, ``cpu``) came to a backend: the ``choice``, and ``skipped``,
    why each candidate before it was not used, in the order they were tried (with any note
    of the recorded speeds that ordered them)."""

    choice: str
    skipped: tuple[str, ...] = ()

    def reasons(self) -> str:
        """The ``skipped`` entries on one line, ``first choice`` when there are none."""
        return "; ".join(self.skipped) if self.skipped else "first choice"


def selection_of(backend: object) -> Selection | None:
    """The :class:`Selection` of a backend a choice made (None: named explicitly, or not
    made by :func:`create_backend`)."""
    found = getattr(backend, SELECTION_ATTR, None)
    return found if isinstance(found, Selection) else None


# The packages each CPU backend imports at run time (onnx: the sigmoid appended to the graph).
_MODULES = {
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino",),
    "openvino-bf16": ("openvino",),
    "openvino-int8": ("openvino",),
    "openvino-int8-bf16": ("openvino",),
}
NATIVE_BF16 = ("openvino-bf16", "openvino-int8-bf16")  # emulated bf16 is slower than FP32


def valid_names() -> tuple[str, ...]:
    return VALID_BACKENDS


def _unknown(name: str) -> ConfigError:
    return ConfigError(f"unknown backend {name!r}; valid: {', '.join(valid_names())}")


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (cheap checks, nothing is built), or None."""
    if name not in REGISTRY:
        raise _unknown(name)
    if name in GPU_BACKENDS and not torch.cuda.is_available():
        return "no CUDA device"
    if name == "tensorrt":
        try:
            import torch_tensorrt  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any failure means "not here"
            return f"torch_tensorrt unavailable ({type(exc).__name__}: {exc})"
    for module in _MODULES.get(name, ()):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed ({CPU_REQUIREMENTS})"
    if name in NATIVE_BF16:
        from irstd_ros.inference.backends.openvino_backend import cpu_has_native_bf16

        if not cpu_has_native_bf16():
            return "no native bf16 on this CPU (emulated bf16 is slower than FP32)"
    if name == "torch-compile" and not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler for Inductor"
    return None


def available_backends() -> list[str]:
    """Registered backends that pass :func:`unavailable_reason` on this machine."""
    return [n for n in BACKENDS if unavailable_reason(n) is None]


def warm_up(backend: Backend, options: BackendOptions) -> None:
    """One predict on a blank frame; BackendError if it raises or returns garbage.

    The frame has the options' size, else the backend's ``warmup_size`` where it has one
    (``tensorrt``: the engine it loaded or built at start, so the warm-up builds no engine
    of a size no camera sends), else :data:`WARMUP_SIDE` square."""
    default = getattr(backend, "warmup_size", None) or (WARMUP_SIDE, WARMUP_SIDE)
    h = options.height or default[0]
    w = options.width or default[1]
    frame = np.zeros((h, w), dtype=np.float32)
    try:
        prob = backend.predict(frame)
    except Exception as exc:  # noqa: BLE001 - a lazily compiled engine fails in any way
        raise BackendError(f"warm-up predict failed ({type(exc).__name__}: {exc})") from exc
    if prob.shape != frame.shape or not np.isfinite(prob).all():
        raise BackendError(f"warm-up predict returned shape {prob.shape} / non-finite values")


def _wrap(backend: Backend, options: BackendOptions, info: CheckpointInfo) -> Backend:
    if options.tile_size > 0:
        from irstd_ros.inference.tiling import TilingBackend

        return TilingBackend(backend, options.tile_size, options.tile_overlap, info.model.stride)
    return backend


def fastest_first(
    candidates: tuple[str, ...], model: nn.Module, info: CheckpointInfo, options: BackendOptions
) -> tuple[tuple[str, ...], list[str], dict[str, str]]:
    """``candidates`` ordered by what the records of :data:`RECORDED_SPEEDS` measured on
    this CPU (the order a choice goes through and reports them), notes saying how they were
    reordered (empty: they were not), and why each one left out was (by name):

    * one that was not faster than FP32 in its own measurement is left out (skipped), in
      the place it held;
    * when every remaining one has a speed measured here, they are sorted fastest first,
      in the places they held: by their time as a fraction of FP32's when all have one
      (each export times FP32 beside its candidate, so the comparison survives a host
      that was busier at one export), else by milliseconds. Of those without a speed here,
      one that cannot run on this machine (:func:`unavailable_reason`: no native bf16) or
      whose accuracy gate refuses it (no record, out of tolerance: the export times only a
      record within tolerance) keeps its place and does not stop the others being sorted
      (an ``openvino-int8-bf16`` out of tolerance on a machine whose INT8 and bf16 are
      timed); the gate's reason is returned with the others left out, so it is not
      evaluated twice. Gates are evaluated only when two or more have speeds to sort.

    Without speeds measured here, or on any error reading the records, the static order
    stands."""
    timed = [c for c in candidates if c in RECORDED_SPEEDS]
    try:
        speeds = {c: RECORDED_SPEEDS[c](model, info, options) for c in timed}
    except Exception:  # noqa: BLE001 - a broken cache must not stop the choice
        return candidates, [], {}
    notes: list[str] = []
    left_out: dict[str, str] = {}
    for c, s in speeds.items():
        if s is not None and s.fp32_p50_ms is not None and s.ratio is not None and s.ratio >= 1.0:
            left_out[c] = (
                f"not faster than FP32 on this CPU "
                f"({s.p50_ms:.1f} against {s.fp32_p50_ms:.1f} ms, {s.ratio:.2f} of its time)"
            )
            timed.remove(c)
    if sum(speeds[c] is not None for c in timed) >= 2:
        for c in [c for c in timed if speeds[c] is None]:
            if unavailable_reason(c) is not None:  # skipped for it by the choice, in its place
                timed.remove(c)
                continue
            refusal = _gate_refusal(c, model, info, options)
            if refusal is not None:
                left_out[c] = refusal
                timed.remove(c)
    order = candidates
    known = {c: s for c, s in speeds.items() if c in timed and s is not None}
    if len(timed) >= 2 and len(known) == len(timed):
        relative = all(s.ratio is not None for s in known.values())

        def key(c: str) -> float:
            s = known[c]
            return s.ratio if relative and s.ratio is not None else s.p50_ms

        fastest = iter(sorted(timed, key=key))
        ordered = tuple(next(fastest) if c in known else c for c in order)
        if ordered != order:
            measured = ", ".join(
                f"{c} {known[c].p50_ms:.1f} ms" + (f" ({key(c):.2f} of FP32's)" if relative else "")
                for c in sorted(timed, key=key)
            )
            notes.insert(0, f"recorded speed on this CPU: {measured}")
            order = ordered
    return order, notes, left_out


def _gate_refusal(name: str, model: nn.Module, info: CheckpointInfo, options: BackendOptions) -> str | None:
    """Why :data:`ACCURACY_GATES` refuses ``name`` (None: it passes, or has no gate); an
    exception is a reason, not a crash (a broken cache must not stop the choice)."""
    gate = ACCURACY_GATES.get(name)
    if gate is None:
        return None
    try:
        return gate(model, info, options)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def create_backend(
    name: str, model: nn.Module, info: CheckpointInfo, options: BackendOptions | None = None
) -> Backend:
    """Build backend ``name``; ``auto`` / ``cpu`` pick the best available one (see module doc)."""
    options = options or BackendOptions()
    if name in REGISTRY:
        backend = _wrap(REGISTRY[name](model, info, options), options, info)
        if options.height and options.width:  # the frame size is known (the node's model.frame_size):
            warm_up(backend, options)  # compile, capture, build now, not on the first frame
        log.info("inference backend: %s on %s (requested)", backend.name, backend.device)
        return backend
    if name not in CHOICES:
        raise _unknown(name)
    order, notes, left_out = fastest_first(CHOICES[name], model, info, options)
    skipped: list[str] = []
    for candidate in order:
        if candidate not in GPU_BACKENDS:  # the CPU's recorded speeds say nothing of a GPU choice
            skipped.extend(notes)
            notes = []
        reason = left_out.get(candidate) or unavailable_reason(candidate)
        if reason is None:
            reason = _gate_refusal(candidate, model, info, options)
        if reason is None:
            started, reason = try_start(candidate, model, info, options)
            if started is not None:
                selection = Selection(name, tuple(skipped))
                with contextlib.suppress(AttributeError):  # a backend with __slots__ keeps none
                    setattr(started, SELECTION_ATTR, selection)
                why = selection.reasons()
                delta = started.describe().get("accuracy_delta") if candidate in ACCURACY_GATES else None
                if delta is not None:  # a reduced precision: what its record measured against FP32
                    why += f"; recorded accuracy vs FP32: {delta}"
                log.info("inference backend: %s on %s (%s: %s)", started.name, started.device, name, why)
                return started
        skipped.append(f"{candidate} skipped: {one_line(reason)}")
    raise BackendError(f"no inference backend could start ({'; '.join(skipped)})")


def try_start(
    name: str, model: nn.Module, info: CheckpointInfo, options: BackendOptions
) -> tuple[Backend | None, str | None]:
    """Backend ``name`` built (tiled as the options say) and warmed up, as a choice tries
    it: (the backend, None), or (None, why it did not start). ConfigError (the options',
    not the backend's) is raised."""
    try:
        backend = _wrap(REGISTRY[name](model, info, options), options, info)  # warmed up as frames will run
        warm_up(backend, options)
    except ConfigError:
        raise
    except BackendError as exc:
        return None, one_line(exc)
    except Exception as exc:  # noqa: BLE001 - fall back whatever a backend raised
        return None, one_line(f"{type(exc).__name__}: {exc}")
    return backend, None
