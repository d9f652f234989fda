"""``cuda``: PyTorch on a CUDA GPU: FP32, FP16 or BF16 (autocast, SGEM kept in FP32),
optionally ``torch.compile`` (Inductor) and CUDA-graph replay.

Reduced precision runs under ``torch.autocast``. The SGEM computes its attention
(normalisation, channel affinity, softmax) in FP32 under autocast itself;
:func:`keep_sgem_fp32` wraps every SGEM's whole forward in ``autocast(enabled=False)`` with
FP32 inputs, so its 1x1 convs run in FP32 too, everything else in FP16/BF16.
FP32 means FP32: the backend turns TF32 off for cuDNN convolutions and matmuls
(process-wide flags; PyTorch's default lets cuDNN use TF32).

Options (:class:`~irstd_ros.inference.backends.base.BackendOptions`):

* ``compile``: ``torch.compile(dynamic=False)`` of the model, one graph per padded frame size
  (the first frame of a size pays the compile, tens of seconds for the paper model);
* ``cuda_graphs``: batch-1 inference of a small network is launch-bound (one kernel launch
  per op, ~100 ops). The whole chain (stride padding, network, sigmoid, crop) is captured
  once per frame size into a CUDA graph (after warm-up calls on a side stream; capture
  errors are thread-local, so another camera's backend working in its own thread does
  not break it: :func:`capture_graph`), and each
  frame is one copy into the graph's static input, one replay and one copy back. Up to
  :data:`GRAPH_SIZES` sizes are kept (least recently used dropped; one captured again after
  it was dropped is logged once and counted: :mod:`~irstd_ros.inference.backends.shape_cache`);
* ``channels_last``: NHWC activations (tensor cores' layout in FP16/BF16);
* ``pad_channels``: the network's widths padded with zero channels to multiples of this
  (:func:`~irstd_ros.models.widen.pad_channels`: the same logits; FP16 tensor-core kernels
  want multiples of 8, the paper configuration's E1 has 28).

Normalisation happens before the backend (:func:`irstd_ros.core.normalize`); stride
padding and the sigmoid run on the GPU; the frame goes up through one reused pinned staging
buffer (:mod:`~irstd_ros.inference.backends._cuda`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.errors import BackendError, ConfigError
from irstd_ros.inference.backends._cuda import (
    CudaPredictMixin,
    StagingBuffers,
    cuda_device_name,
    current_cuda_device,
    gpu_postprocess,
    gpu_preprocess,
    keep_sgem_fp32,
)
from irstd_ros.inference.backends.base import BackendOptions, raise_recompile_limit
from irstd_ros.inference.backends.shape_cache import ShapeCache
from irstd_ros.models.widen import pad_channels

__all__ = ["GRAPH_SIZES", "PRECISIONS", "TorchCUDABackend", "capture_graph"]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GRAPH_SIZES = 4  # frame sizes whose captured graph is kept
GRAPHS_REMEDY = "Feed fewer frame sizes, tile them (tile_size), or turn cuda_graphs off."
GRAPH_WARMUP = 3  # calls on a side stream before capture (cuDNN autotuning, lazy init, compile)
RECOMPILE_LIMIT = 8  # torch.compile: distinct frame sizes before dynamo falls back to eager
CAPTURE_ERROR_MODE = "thread_local"  # other threads' CUDA calls do not break a capture (capture_graph)


def capture_graph(fn: Callable[[torch.Tensor], Any], static_in: torch.Tensor,
                  warmup: int = GRAPH_WARMUP) -> tuple[torch.cuda.CUDAGraph, Any]:
    """``fn(static_in)`` captured into a CUDA graph, after ``warmup`` calls on a side stream
    (cuDNN autotuning, lazy initialisation, compilation); (graph, its static output).

    Captured with ``capture_error_mode="thread_local"``: the default ("global") makes an
    unsafe CUDA call (``cudaMalloc``...) in *any* thread fail and invalidate the capture,
    so a second camera's backend allocating in its own thread during this capture broke
    one of the two; "thread_local" only refuses this thread's own unsafe calls.
    """
    dev = static_in.device
    side = torch.cuda.Stream(dev)  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(static_in)
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode=CAPTURE_ERROR_MODE):
        static_out = fn(static_in)
    return graph, static_out


@dataclass
class CapturedGraph:
    """One frame size's CUDA graph and its static input / output tensors."""

    graph: torch.cuda.CUDAGraph
    static_in: torch.Tensor  # (1, 1, H, W) float32
    static_out: torch.Tensor  # (H, W) float32 probabilities


class TorchCUDABackend(CudaPredictMixin):
    """``cuda``: PyTorch on the GPU; FP32 / FP16 / BF16, optional compile and CUDA graphs.

    ``device`` (tests, dry runs): run the same code on another device, e.g. the CPU, where
    CUDA graphs are refused. ``compile_backend``: the ``torch.compile`` backend (tests use
    ``eager`` to exercise dynamo without Inductor's compile time).
    """

    name = "cuda"

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        *,
        device: torch.device | str | None = None,
        compile_backend: str = "inductor",
    ) -> None:
        self.options = options or BackendOptions()
        if self.options.precision not in PRECISIONS:
            raise BackendError(
                f"cuda precision {self.options.precision!r}; valid: {', '.join(PRECISIONS)}"
            )
        if device is None:
            self.torch_device = current_cuda_device(self.name)
            self.device = cuda_device_name(self.torch_device)
        else:
            self.torch_device = torch.device(device)
            self.device = str(self.torch_device)
        on_cuda = self.torch_device.type == "cuda"
        if self.options.cuda_graphs and not on_cuda:
            raise BackendError("CUDA graphs need a CUDA device")
        self.info = info
        self.dtype = PRECISIONS[self.options.precision]
        self.autocast = self.dtype != torch.float32
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # fixed frame sizes: fastest kernels once per size
            if not self.autocast:  # FP32 is the reference: no TF32 (PyTorch lets cuDNN use it)
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
        self.model = copy.deepcopy(model).eval().float()
        if self.options.pad_channels:
            try:
                self.model = pad_channels(self.model, self.options.pad_channels)
            except ConfigError as exc:
                raise BackendError(f"cuda pad_channels: {exc}") from exc
        self.model = self.model.to(self.torch_device)
        self.sgem_fp32 = keep_sgem_fp32(self.model) if self.autocast else 0
        self.channels_last = bool(self.options.channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.forward: Callable[..., Any] = self.model
        self.compile_backend = compile_backend if self.options.compile else None
        if self.options.compile:
            raise_recompile_limit(RECOMPILE_LIMIT)  # raised, never lowered (torch-compile's too)
            try:
                self.forward = torch.compile(self.model, dynamic=False, backend=compile_backend)
            except Exception as exc:  # a torch without dynamo support on this platform
                raise BackendError(f"torch.compile unavailable: {exc}") from exc
        self.graphs: ShapeCache[tuple[int, int], CapturedGraph] = ShapeCache(
            f"{self.name} (CUDA graphs)", GRAPH_SIZES, GRAPHS_REMEDY
        )
        self.captures = 0  # graphs captured so far (tests, describe)
        self.buffers = StagingBuffers()

    # --- the chain on the device --------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) network input on the device -> (H, W) FP32 probabilities."""
        x, size = gpu_preprocess(x, self.info)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # no autocast weight cache: cast copies made while a CUDA graph is captured would be
        # freed when the context exits (and each weight is used once per forward anyway)
        with torch.autocast(device_type=self.torch_device.type, dtype=self.dtype, enabled=self.autocast,
                            cache_enabled=False):
            logits = self.forward(x)
        return gpu_postprocess(logits, size)

    def _capture(self, size: tuple[int, int]) -> CapturedGraph:
        static_in = torch.zeros((1, 1, *size), dtype=torch.float32, device=self.torch_device)
        graph, static_out = capture_graph(self._run, static_in)
        self.captures += 1
        return CapturedGraph(graph, static_in, static_out)

    def _graph_for(self, size: tuple[int, int]) -> CapturedGraph:
        return self.graphs.get(size, self._capture)

    @torch.inference_mode()
    def _prob(self, frame: np.ndarray) -> torch.Tensor:
        frame = np.asarray(frame, dtype=np.float32)
        if not self.options.cuda_graphs:
            return self._run(self.buffers.upload(frame, self.torch_device))
        host = self.buffers.stage(frame, pin=True)
        captured = self._graph_for((int(frame.shape[0]), int(frame.shape[1])))
        captured.static_in[0, 0].copy_(host, non_blocking=True)
        captured.graph.replay()
        return captured.static_out

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.options.precision,
            "sgem_fp32_modules": self.sgem_fp32,
            "compile": self.compile_backend,
            "cuda_graphs": bool(self.options.cuda_graphs),
            "graphs_captured": self.captures,
            **self.graphs.stats(),
            "channels_last": self.channels_last,
            "widths": list(cfg.widths) if (cfg := getattr(self.model, "config", None)) else None,
            "torch": torch.__version__,
        }
