"""``openvino-int8-bf16``: the INT8 IR of ``openvino-int8`` with its non-quantised ops in bf16.

``openvino-int8`` compiles its IR with ``INFERENCE_PRECISION_HINT=f32``: the ops NNCF left
in floating point (the SGEM attention, the head, the upsampling and the additions between
the INT8 convolutions) run in FP32. On a CPU with native bf16 (AVX512-BF16, AMX) the same IR
compiled with the bf16 hint runs them in bf16: the INT8 convolutions are unchanged, the rest
is about as fast as ``openvino-bf16`` makes it (0.8 at 640x512 on Zen 5, one ``irstd
bench`` run: 14.4 ms against INT8's 20.2, bf16's 19.1 and FP32's 42.0;
docs/benchmarks.md). It is another precision, so it has its own accuracy record, measured as INT8's and bf16's are (``irstd export --backend
openvino-int8-bf16``: :func:`irstd_ros.tools.quantize.export_int8_bf16`) and gated by the
same tolerances and coverage
(:func:`~irstd_ros.inference.backends.openvino_int8.accuracy_refusal`).

Nothing is built: the backend reads the cached INT8 IR (``irstd export --backend
openvino-int8`` builds it; its fingerprint is checked as ``openvino-int8`` checks it). The
record lies beside the IR, ``<arch>-<digest>-int8.xml`` ->
``<arch>-<digest>-int8-bf16.accuracy.json`` (:func:`record_artifact`), and holds the sha256
of the IR files it measured (:data:`~irstd_ros.inference.backends.openvino_int8.IR_DIGESTS`):
an IR rebuilt or replaced since (recalibrated, another recipe) is another measurement, and
a record without the digests is refused (there is no older format to accept); so is one
measured with another OpenVINO version than the one installed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends import openvino_backend
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend
from irstd_ros.inference.backends.openvino_int8 import (
    IR_DIGESTS,
    accuracy_refusal,
    cached_int8,
    describe_accuracy,
    int8_path,
    ir_mismatch,
    load_accuracy,
    measurement_conditions,
)

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

NAME = "openvino-int8-bf16"
RECIPE = "openvino-int8-ir-bf16-hint-v1"  # bump when the compile settings change
RECORD_SUFFIX = "-bf16"  # <stem>-int8.xml -> <stem>-int8-bf16(.accuracy.json)
MEASURE_HINT = f"irstd export --backend {NAME} measures it"


def record_artifact(ir: str | Path) -> Path:
    """The name the accuracy record of the INT8 IR ``ir`` hangs from (no file has it: the
    record is its :func:`~irstd_ros.inference.backends.openvino_int8.accuracy_path`)."""
    ir = Path(ir)
    return ir.with_name(f"{ir.stem}{RECORD_SUFFIX}")


def int8_bf16_artifact(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> Path:
    """:func:`record_artifact` of these weights' INT8 IR in the cache (whether or not it is
    there): what :func:`~irstd_ros.inference.backends.openvino_int8.load_accuracy` reads."""
    return record_artifact(int8_path(model, info, options)[0])


def openvino_version() -> str | None:
    """The installed OpenVINO's version (None: not installed): the record names the one
    that compiled what it measured (bf16 kernels change with it)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return str(ov.__version__)


def record_refusal(record: Mapping[str, Any] | None, ir: str | Path, digest: str, info: CheckpointInfo) -> str | None:
    """Why ``auto`` must not run the INT8 IR ``ir`` of the weights ``digest`` with bf16 on
    this ``record`` (None: it may): none, one that names no IR files or other ones than
    ``ir``'s, one measured with another OpenVINO, or INT8's gate (other weights, threshold
    or normalisation, another recipe, less than the whole held-out splits, a loss out of
    tolerance)."""
    if record is not None:
        if not isinstance(record.get(IR_DIGESTS), Mapping):
            return f"the accuracy record names no INT8 IR files ({MEASURE_HINT})"
        mismatch = ir_mismatch(record, ir, NAME)
        if mismatch:
            return mismatch
        measured, running = (record.get("versions") or {}).get("openvino"), openvino_version()
        if measured != running:
            return f"the accuracy record was measured with OpenVINO {measured}, this is {running} ({MEASURE_HINT})"
    return accuracy_refusal(record, digest, measurement_conditions(info), recipes=(RECIPE,), backend=NAME)


def auto_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> str | None:
    """Why ``auto`` / ``cpu`` skip ``openvino-int8-bf16`` here (None: use it). Builds
    nothing. The CPU check (native bf16) is ``select.unavailable_reason``'s."""
    try:
        ir, digest = cached_int8(model, info, options)
    except BackendError as exc:
        return str(exc)
    return record_refusal(load_accuracy(record_artifact(ir)), ir, digest, info)


class OpenVINOInt8Bf16Backend(OpenVINOBackend):
    """``openvino-int8-bf16``: the cached INT8 IR compiled with the bf16 precision hint.

    Named explicitly, it runs whatever its record says (a warning when a record exists and
    refuses); ``auto`` / ``cpu`` check :func:`auto_refusal` first. Needs native bf16, as
    ``openvino-bf16`` does, checked before the INT8 IR is looked for.
    """

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        model_path: str | Path | None = None,
    ) -> None:
        digest = None
        if not openvino_backend.cpu_has_native_bf16():  # before the INT8 IR: building it would not help
            raise BackendError(f"{NAME} needs a CPU with native bf16 (AVX512-BF16 or AMX)")
        if model_path is None:
            model_path, digest = cached_int8(model, info, options)
        super().__init__(model, info, options, precision="bf16", model_path=model_path)
        self.name = self._compiled.owner = NAME
        self.precision = "int8+bf16"
        self.accuracy = load_accuracy(record_artifact(self.model_path))
        if digest is not None and self.accuracy is not None:  # no record yet: the export is measuring it
            refusal = record_refusal(self.accuracy, self.model_path, digest, info)
            if refusal:
                log.warning("%s requested explicitly: %s", NAME, refusal)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["precision"] = "int8 (SGEM attention and the rest bf16)"
        out["accuracy_delta"] = describe_accuracy(self.accuracy)
        return out
