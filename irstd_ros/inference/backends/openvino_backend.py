"""``openvino`` / ``openvino-bf16``: OpenVINO's CPU plugin on an IR converted from PyTorch.

The model is converted from PyTorch once per weights (``ov.convert_model``, about 2 s)
into an FP32 IR in the cache (or ahead of time by ``irstd export --backend openvino``)
and read from there; for each padded frame size the model is reshaped to that static
size and compiled (a few hundred ms, once per size; at most :data:`MAX_COMPILED_SHAPES` are
kept, and a size compiled again after it was dropped is logged once and counted:
:class:`~irstd_ros.inference.backends.shape_cache.ShapeCache`). Static shapes let the CPU
plugin pick its blocked layouts and fuse without shape inference at run time. With
``BackendOptions.dynamic_shapes`` (``irstd eval`` over sets of hundreds of sizes) one model compiled for ``[1, 1, ?, ?]`` serves every size: the same
outputs to float rounding (other kernels: at 640x512 about half the pixels differ, by at
most 6e-9 in probability, the masks not at all; tested to 1e-5), somewhat slower per
frame than static shapes (docs/backends.md).

Precision: OpenVINO's CPU plugin *defaults* to bf16 on CPUs with native bf16
(AVX512-BF16, AMX). ``openvino`` therefore sets ``INFERENCE_PRECISION_HINT=f32``
explicitly (parity with eager PyTorch to float rounding); ``openvino-bf16`` asks for
bf16 (about 2x faster here, slightly different masks: see docs/benchmarks.md) and
refuses to start on a CPU without native bf16 (it would be emulated, slower than f32).

The sigmoid runs inside the compiled model (:func:`with_sigmoid`, appended when the IR is
read; the IR itself keeps its logits, which NNCF quantises), where numpy's ``expit``
took 0.8 ms over a 640x512 frame; the whole predict is 0.4-0.9 ms faster
(docs/benchmarks.md). Only the crop to the frame is copied out of the request's buffer.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.padding import crop_to, network_input
from irstd_ros.errors import BackendError, one_line
from irstd_ros.inference.backends.base import BackendOptions, not_installed
from irstd_ros.inference.backends.shape_cache import ShapeCache

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

DEVICE = "CPU"
# Compiled models kept (one per padded frame size), least recent dropped. Each holds its
# activation buffers: measured (RSS) about 70 MB at 640x512 for the tiny model, 27 MB for
# fast, 15 MB at 160x160, so the bound stays small; many sizes want dynamic_shapes instead.
MAX_COMPILED_SHAPES = 4
# What a stream of more alternating sizes than that should do (ShapeCache's warning).
SHAPES_REMEDY = (
    "Feed fewer frame sizes, tile them (tile_size), or set BackendOptions.dynamic_shapes: one "
    "model compiled for every size, somewhat slower per frame (irstd eval and irstd bench's "
    "openvino-dynamic use it)."
)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
BF16_CAPABILITY = "BF16"  # in the CPU plugin's OPTIMIZATION_CAPABILITIES


def cpu_has_native_bf16() -> bool:
    """True when OpenVINO's CPU plugin reports native bf16 (AVX512-BF16 or AMX)."""
    try:
        import openvino as ov

        return BF16_CAPABILITY in ov.Core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
    except Exception:  # not installed, or a plugin that cannot answer
        return False


def with_sigmoid(graph: Any) -> Any:
    """``graph`` (one output: logits) with a sigmoid after its output: probabilities."""
    import openvino as ov
    from openvino import opset13

    results = graph.get_results()
    if len(results) != 1:
        raise BackendError(f"openvino model has {len(results)} outputs; expected one (logits)")
    prob = opset13.sigmoid(results[0].input_value(0))
    return ov.Model([prob], graph.get_parameters(), graph.get_friendly_name())


class OpenVINOBackend:
    """OpenVINO on the CPU; ``precision`` is ``fp32`` (``openvino``) or ``bf16``."""

    device = "cpu"

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        precision: str = "fp32",
        model_path: str | Path | None = None,
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise not_installed("openvino", exc) from None
        if precision not in PRECISION_HINTS:
            raise BackendError(f"openvino precision {precision!r}; valid: {', '.join(PRECISION_HINTS)}")
        if precision == "bf16" and not cpu_has_native_bf16():
            raise BackendError("bf16 inference (openvino-bf16, openvino-int8-bf16) needs a CPU with native bf16 "
                               "(AVX512-BF16 or AMX)")
        self.name = "openvino" if precision == "fp32" else "openvino-bf16"
        self.precision = precision
        self.options = options or BackendOptions()
        self.info = info
        if model_path is None:
            # torch is needed for the export only
            from irstd_ros.inference.backends.graph_export import export_openvino_ir

            model_path = export_openvino_ir(model, info, self.options)
        self.model_path = Path(model_path)
        self.core = ov.Core()
        try:
            self.graph = with_sigmoid(self.core.read_model(str(self.model_path)))
        except BackendError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"openvino cannot read {self.model_path}: {one_line(exc)}") from exc
        self.config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if self.options.threads:
            self.config["INFERENCE_NUM_THREADS"] = self.options.threads
        self.version = ov.__version__
        self._compiled: ShapeCache[tuple[int, ...], Any] = ShapeCache(  # infer requests
            self.name, MAX_COMPILED_SHAPES, SHAPES_REMEDY
        )
        # one infer request per size, its input and output buffers reused by every call: one
        # frame at a time, or a thread's result is read from a buffer another's frame overwrote
        self._lock = threading.Lock()

    def _request(self, shape: tuple[int, ...]) -> Any:
        """An infer request of the model compiled for ``shape`` (compiled on first use);
        with ``dynamic_shapes``, one request compiled for any size."""
        if self.options.dynamic_shapes:
            shape = (shape[0], shape[1], -1, -1)
        return self._compiled.get(shape, self._compile)

    def _compile(self, shape: tuple[int, ...]) -> Any:
        graph = self.graph.clone()
        graph.reshape(list(shape))
        try:
            compiled = self.core.compile_model(graph, DEVICE, self.config)
        except Exception as exc:
            raise BackendError(f"openvino cannot compile for input {shape}: {one_line(exc)}") from exc
        return compiled.create_infer_request()

    def predict(self, frame: np.ndarray) -> np.ndarray:
        """One frame; thread-safe (frames from several threads run one after another)."""
        x, size = network_input(frame, self.info.model.stride)
        with self._lock:
            request = self._request(x.shape)
            request.infer({0: x})
            prob = request.get_output_tensor(0).data  # the request's own buffer, reused next call
            return np.array(crop_to(prob, size)[0, 0], dtype=np.float32, copy=True)

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "device": self.device,
            "openvino": self.version,
            "precision": self.precision,
            "threads": self.options.threads or "default",
            "compiled_shapes": [list(s) for s in self._compiled],
            **self._compiled.stats(),
            "model_file": str(self.model_path),
        }
