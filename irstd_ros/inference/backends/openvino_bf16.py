"""``openvino-bf16``: the FP32 OpenVINO IR compiled with ``INFERENCE_PRECISION_HINT=bf16``,
and the accuracy record that lets ``auto`` / ``cpu`` choose it.

bf16 has no IR of its own: the backend compiles the FP32 IR of
:func:`~irstd_ros.inference.backends.graph_export.export_openvino_ir` with a precision
hint (:class:`~irstd_ros.inference.backends.openvino_backend.OpenVINOBackend`). Its only
artefact is the accuracy record, a small JSON file in the cache named after the weights,
``<arch>-<digest>-bf16.accuracy.json`` (:func:`bf16_artifact`), written by
``irstd export --backend openvino-bf16`` (:func:`irstd_ros.tools.quantize.export_bf16`:
``irstd eval`` of FP32 and bf16 on NUDT-SIRST test and SIRST-v2 val, the INT8
measurement's code). It has the INT8 record's format and helpers
(:func:`~irstd_ros.inference.backends.openvino_int8.save_accuracy`, ``load_accuracy``,
``accuracy_refusal``) plus the :class:`~irstd_ros.inference.backends.fingerprint.Fingerprint`
it was measured under (:func:`bf16_fingerprint`: the weights digest, :data:`BF16_RECIPE`,
the torch and OpenVINO versions that made and compile the IR); a record whose fingerprint
differs from the expected one is stale and refused, naming the fields.

``auto`` / ``cpu`` try ``openvino-bf16`` first on the CPU, but only where the CPU has
native bf16 (:func:`~irstd_ros.inference.backends.openvino_backend.cpu_has_native_bf16`;
emulated bf16 is slower than FP32) and :func:`auto_refusal` passes: the same tolerances
as INT8 on both datasets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend
from irstd_ros.inference.backends.openvino_int8 import (
    accuracy_refusal,
    describe_accuracy,
    load_accuracy,
    measurement_conditions,
)

if TYPE_CHECKING:
    from torch import nn

    from irstd_ros.inference.backends.fingerprint import Fingerprint

log = logging.getLogger(__name__)

NAME = "openvino-bf16"
BF16_RECIPE = "openvino-fp32-ir-bf16-hint-sigmoid-v2"  # bump when the bf16 compile settings change (v2: the sigmoid runs in the graph)
BF16_SUFFIX = "-bf16"  # the record is <arch>-<digest>-bf16.accuracy.json
MEASURE_HINT = f"irstd export --backend {NAME} measures it"


def bf16_artifact(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> tuple[Path, str]:
    """(the name bf16's accuracy record hangs from, ``<cache>/<arch>-<digest>-bf16``, the
    weights digest). No file has that name: the record is its ``accuracy_path``."""
    from irstd_ros.inference.backends.fingerprint import weights_digest
    from irstd_ros.inference.backends.graph_export import artifact_stem, cache_root

    digest = weights_digest(model, info)
    return cache_root(options) / f"{artifact_stem(info, digest)}{BF16_SUFFIX}", digest


def bf16_fingerprint(digest: str, stride: int) -> Fingerprint:
    """The FP32 IR's fingerprint (weights, torch and OpenVINO versions) as bf16 compiles it."""
    from irstd_ros.inference.backends.graph_export import openvino_fingerprint

    return dataclasses.replace(openvino_fingerprint(digest, stride), backend=NAME, precision="bf16", recipe=BF16_RECIPE)


def stale_reason(record: Mapping[str, Any], digest: str, stride: int) -> str | None:
    """Why ``record`` was measured under another fingerprint than these weights and this
    software would have (None: it applies)."""
    from irstd_ros.inference.backends.fingerprint import Fingerprint, differences

    try:
        found = Fingerprint.from_dict(record["fingerprint"])
    except (KeyError, TypeError, ValueError, AttributeError):  # absent, or not a fingerprint
        return f"the accuracy record has no readable fingerprint ({MEASURE_HINT})"
    diff = differences(bf16_fingerprint(digest, stride), found)
    if diff:
        return f"the accuracy record is stale, fingerprint mismatch: {'; '.join(diff)} ({MEASURE_HINT})"
    return None


def record_refusal(record: Mapping[str, Any] | None, digest: str, info: CheckpointInfo) -> str | None:
    """Why ``auto`` must not use bf16 with this record for the checkpoint ``info`` (None:
    measured within tolerance): no record, a stale one (:func:`stale_reason`), or INT8's
    gate (:func:`~irstd_ros.inference.backends.openvino_int8.accuracy_refusal`: other
    weights, threshold or normalisation, or a loss out of tolerance)."""
    if record is not None:
        stale = stale_reason(record, digest, info.model.stride)
        if stale:
            return stale
    return accuracy_refusal(record, digest, measurement_conditions(info), recipes=(BF16_RECIPE,), backend=NAME)


def auto_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> str | None:
    """Why ``auto`` / ``cpu`` skip ``openvino-bf16`` here (None: use it). Reads one JSON file,
    builds nothing. The CPU check (native bf16) is ``select.unavailable_reason``'s."""
    path, digest = bf16_artifact(model, info, options)
    return record_refusal(load_accuracy(path), digest, info)


class OpenVINOBf16Backend(OpenVINOBackend):
    """``openvino-bf16``: OpenVINOBackend with ``precision="bf16"`` and its accuracy record.

    Named explicitly, it runs whatever its record says (a warning when a record exists and
    refuses); ``auto`` / ``cpu`` check :func:`auto_refusal` first.
    """

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        model_path: str | Path | None = None,
    ) -> None:
        super().__init__(model, info, options, precision="bf16", model_path=model_path)
        path, digest = bf16_artifact(model, info, options)
        self.accuracy = load_accuracy(path)
        refusal = record_refusal(self.accuracy, digest, info)
        if self.accuracy is not None and refusal:
            log.warning("openvino-bf16 requested explicitly: %s", refusal)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["accuracy_delta"] = describe_accuracy(self.accuracy)
        return out
