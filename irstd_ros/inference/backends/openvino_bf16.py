"""``openvino-bf16``: the FP32 OpenVINO IR compiled with ``INFERENCE_PRECISION_HINT=bf16``,
and the accuracy record that lets ``auto`` / ``cpu`` choose it.

bf16 has no IR of its own: the backend compiles the FP32 IR of
:func:`~irstd_ros.inference.backends.graph_export.export_openvino_ir` with a precision
hint (:class:`~irstd_ros.inference.backends.openvino_backend.OpenVINOBackend`). Its only
artefact is the accuracy record, a small JSON file in the cache named, like the INT8 IR,
after the weights *and* the checkpoint's threshold and normalisation
(:func:`~irstd_ros.inference.backends.openvino_int8.conditioned_digest`):
``<arch>-<digest>-bf16.accuracy.json`` (:func:`bf16_artifact`; a recalibrated copy of the
same weights keeps a record of its own instead of overwriting this one), written by
``irstd export --backend openvino-bf16`` (:func:`irstd_ros.tools.quantize.export_bf16`:
``irstd eval`` of FP32 and bf16 on NUDT-SIRST test and SIRST-v2 val, the INT8
measurement's code). It has the INT8 record's format and helpers
(:func:`~irstd_ros.inference.backends.openvino_int8.save_accuracy`, ``load_accuracy``,
``accuracy_refusal``) plus the :class:`~irstd_ros.inference.backends.fingerprint.Fingerprint`
it was measured under (:func:`bf16_fingerprint`: the weights digest, :data:`BF16_RECIPE`,
the torch and OpenVINO versions that made and compile the IR, the threshold and
normalisation, and :func:`ir_graph_digest` of the FP32 IR that was measured, the artefact
bf16 runs); a record whose fingerprint differs from the one expected for the IR bf16 would
compile now is stale and refused, naming the fields: a record says nothing of another graph
(an IR converted by another recipe, or another export's).

``auto`` / ``cpu`` try ``openvino-bf16`` second on the CPU (after ``openvino-int8-bf16``;
the recorded speeds reorder them), but only where the CPU has
native bf16 (:func:`~irstd_ros.inference.backends.openvino_backend.cpu_has_native_bf16`;
emulated bf16 is slower than FP32) and :func:`auto_refusal` passes: the same tolerances
and coverage of the held-out splits as INT8 on both datasets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend
from irstd_ros.inference.backends.openvino_int8 import (
    accuracy_path,
    accuracy_refusal,
    conditioned_digest,
    describe_accuracy,
    fingerprint_conditions,
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
GRAPH_KEY = "fp32_ir_graph"  # the fingerprint's ``conditions`` entry: ir_graph_digest of the IR measured
_NAMED_ELEMENTS = ("net", "layer")  # IR elements whose ``name`` ov.convert_model numbers per process


def bf16_artifact(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> tuple[Path, str]:
    """(the name bf16's accuracy record hangs from, ``<cache>/<arch>-<digest>-bf16`` with the
    digest of the weights and the checkpoint's threshold and normalisation, as the INT8
    IR's; the weights digest). No file has that name: the record is its ``accuracy_path``."""
    from irstd_ros.inference.backends.fingerprint import weights_digest
    from irstd_ros.inference.backends.graph_export import artifact_stem, cache_root

    digest = weights_digest(model, info)
    return cache_root(options) / f"{artifact_stem(info, conditioned_digest(digest, info))}{BF16_SUFFIX}", digest


def _legacy_record(info: CheckpointInfo, digest: str, options: BackendOptions | None) -> Path:
    """Where an older version put the record: named by the weights digest alone."""
    from irstd_ros.inference.backends.graph_export import artifact_stem, cache_root

    return accuracy_path(cache_root(options) / f"{artifact_stem(info, digest)}{BF16_SUFFIX}")


def ir_graph_digest(xml: str | Path) -> str:
    """sha256 of the OpenVINO IR ``xml`` (+ its ``.bin``) as a graph: the ``.xml`` without
    the model's and the layers' ``name`` attributes, which ``ov.convert_model`` numbers from
    a process-wide counter (two conversions of one model differ in them alone), and the
    ``.bin`` as it is, by its sha256 (:func:`~irstd_ros.inference.backends.fingerprint.file_digests`,
    hashed once while the file stays as it is). Any other change of the graph (an op, an
    attribute, a constant) changes it. OSError when a file cannot be read, ET.ParseError
    when the ``.xml`` is no XML."""
    from irstd_ros.inference.backends.fingerprint import IR_WEIGHTS_SUFFIX, file_digests

    xml = Path(xml)
    weights = file_digests(xml)[IR_WEIGHTS_SUFFIX]
    root = ET.parse(xml).getroot()
    for element in root.iter():
        if element.tag in _NAMED_ELEMENTS:
            element.attrib.pop("name", None)
    h = hashlib.sha256(ET.tostring(root))
    h.update(weights.encode())
    return h.hexdigest()


def bf16_fingerprint(digest: str, info: CheckpointInfo, graph: str | None) -> Fingerprint:
    """What a bf16 record describes: the FP32 IR's fingerprint (weights, torch and OpenVINO
    versions) as bf16 compiles it (:data:`BF16_RECIPE`), under the checkpoint's threshold and
    normalisation, on the IR whose :func:`ir_graph_digest` is ``graph`` (None: left out)."""
    from irstd_ros.inference.backends.graph_export import openvino_fingerprint

    conditions = fingerprint_conditions(info)
    if graph is not None:
        conditions[GRAPH_KEY] = graph
    return dataclasses.replace(openvino_fingerprint(digest, info.model.stride), backend=NAME, precision="bf16",
                               recipe=BF16_RECIPE, conditions=conditions)


def stale_reason(record: Mapping[str, Any], digest: str, info: CheckpointInfo, graph: str | None) -> str | None:
    """Why ``record`` was measured under another fingerprint than these weights, this
    checkpoint's threshold and normalisation, this software and the FP32 IR of
    :func:`ir_graph_digest` ``graph`` would have (None: it applies; ``graph`` None: all but
    the graph compared)."""
    from irstd_ros.inference.backends.fingerprint import Fingerprint, differences

    try:
        found = Fingerprint.from_dict(record["fingerprint"])
    except (KeyError, TypeError, ValueError, AttributeError):  # absent, or not a fingerprint
        return f"the accuracy record has no readable fingerprint ({MEASURE_HINT})"
    measured = found.conditions.get(GRAPH_KEY)
    diff = differences(bf16_fingerprint(digest, info, measured), found)  # all but the graph
    if diff:
        return f"the accuracy record is stale, fingerprint mismatch: {'; '.join(diff)} ({MEASURE_HINT})"
    if graph is not None and measured != graph:
        return (f"the accuracy record was measured on another FP32 IR graph ({(measured or 'none recorded')[:12]}, "
                f"not {graph[:12]}: converted by another recipe or version, or another export's) ({MEASURE_HINT})")
    return None


def record_refusal(
    record: Mapping[str, Any] | None, digest: str, info: CheckpointInfo, *, ir: str | Path
) -> str | None:
    """Why ``auto`` must not use bf16 with this record for the checkpoint ``info`` (None:
    measured within tolerance on the FP32 IR ``ir`` that bf16 compiles): no record, a stale
    one (:func:`stale_reason`) or one measured on another graph than ``ir``'s (refused when
    ``ir`` cannot be read, there being nothing to compare with), or INT8's gate
    (:func:`~irstd_ros.inference.backends.openvino_int8.accuracy_refusal`: other weights,
    threshold or normalisation, less than the whole held-out splits, or a loss out of
    tolerance)."""
    if record is not None:
        stale = stale_reason(record, digest, info, graph=None)
        if stale:
            return stale
        try:
            graph = ir_graph_digest(ir)
        except (OSError, ET.ParseError):
            return f"no FP32 IR to compare the accuracy record with in {Path(ir).parent}"
        stale = stale_reason(record, digest, info, graph)
        if stale:
            return stale
    return accuracy_refusal(record, digest, measurement_conditions(info), recipes=(BF16_RECIPE,), backend=NAME)


def auto_refusal(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> str | None:
    """Why ``auto`` / ``cpu`` skip ``openvino-bf16`` here (None: use it). Reads the record;
    when it applies to these weights and this software, compares it with the FP32 IR bf16
    would compile, converting that IR first if the cache lacks it (as the backend would).
    The CPU check (native bf16) is ``select.unavailable_reason``'s."""
    path, digest = bf16_artifact(model, info, options)
    record = load_accuracy(path)
    if record is None:
        legacy = _legacy_record(info, digest, options)
        note = f"; {legacy.name} is named by the weights alone: an older version's" if legacy.is_file() else ""
        return f"no accuracy record ({MEASURE_HINT}{note})"
    stale = stale_reason(record, digest, info, graph=None)
    if stale:
        return stale
    from irstd_ros.inference.backends.graph_export import export_openvino_ir

    ir = export_openvino_ir(model, info, options)  # what the backend compiles: its graph is compared
    return record_refusal(record, digest, info, ir=ir)


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
        refusal = record_refusal(self.accuracy, digest, info, ir=self.model_path)
        if self.accuracy is not None and refusal:
            log.warning("openvino-bf16 requested explicitly: %s", refusal)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["accuracy_delta"] = describe_accuracy(self.accuracy)
        return out
