"""``onnxruntime``: the model exported to ONNX, run by ONNX Runtime's CPU execution provider.

The ONNX file is exported once per weights into the cache (see
:func:`~irstd_ros.inference.backends.graph_export.cached_onnx`) with symbolic
stride-multiple sizes, so every frame size runs without re-export. FP32 throughout:
results match eager PyTorch to float rounding.

The session runs the file with a ``Sigmoid`` appended to its logits (:func:`with_sigmoid`,
in memory, with the ``onnx`` package, which the backend therefore needs besides
``onnxruntime``; the cached file keeps its logits), as the OpenVINO backends do: no numpy
``expit`` over the frame (0.8 ms at 640x512; in the session the whole predict is 0.4-0.7
ms faster, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.padding import crop_to, network_input
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends.base import BackendOptions, not_installed

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

PROVIDER = "CPUExecutionProvider"
INTER_OP_THREADS = 1  # one graph, sequential execution: parallelism is intra-op
# Idle intra-op threads sleep instead of spinning: on a CPU shared with other processes
# (a robot's computer, the 2-core dev machine) spinning threads steal the slices the
# working ones need; measured 56 -> 30 ms (tiny model, 256x256) under load, no loss idle.
ALLOW_SPINNING = "0"


def with_sigmoid(path: Path) -> bytes:
    """The ONNX model at ``path`` (one output: logits) with a ``Sigmoid`` after its output,
    serialised: the output is probabilities."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    if len(model.graph.output) != 1:
        raise BackendError(f"{path} has {len(model.graph.output)} outputs; expected one (logits)")
    logits = model.graph.output[0]
    prob = onnx.ValueInfoProto()
    prob.CopyFrom(logits)
    prob.name = f"{logits.name}_sigmoid"
    model.graph.node.append(helper.make_node("Sigmoid", [logits.name], [prob.name]))
    del model.graph.output[:]
    model.graph.output.append(prob)
    return bytes(model.SerializeToString())


class OnnxRuntimeBackend:
    """``onnxruntime``: ONNX Runtime on the CPU, FP32, all graph optimisations on."""

    name = "onnxruntime"
    device = "cpu"

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        onnx_path: str | Path | None = None,
    ) -> None:
        try:
            import onnx  # noqa: F401 - with_sigmoid and the cache's fingerprint read it
            import onnxruntime as ort
        except ImportError as exc:
            raise not_installed(exc.name or "onnxruntime", exc) from None
        self.options = options or BackendOptions()
        self.info = info
        if onnx_path is None:
            from irstd_ros.inference.backends.graph_export import cached_onnx  # torch: export only

            onnx_path = cached_onnx(model, info, self.options)
        self.onnx_path = Path(onnx_path)
        so = ort.SessionOptions()
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        so.inter_op_num_threads = INTER_OP_THREADS
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", ALLOW_SPINNING)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(with_sigmoid(self.onnx_path), so, providers=[PROVIDER])
        except BackendError:
            raise
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; onnx.load OSError
            raise BackendError(f"onnxruntime cannot load {self.onnx_path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__
        self.threads = self.options.threads or 0

    def predict(self, frame: np.ndarray) -> np.ndarray:
        x, size = network_input(frame, self.info.model.stride)
        (prob,) = self.session.run(None, {self.input_name: x})
        return np.ascontiguousarray(crop_to(prob, size)[0, 0], dtype=np.float32)

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "device": self.device,
            "onnxruntime": self.version,
            "provider": PROVIDER,
            "threads": self.threads or "default",
            "precision": "fp32",
            "model_file": str(self.onnx_path),
        }
