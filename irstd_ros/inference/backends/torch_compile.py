"""``torch-compile``: ``torch.compile`` (Inductor, C++ codegen) of the model on the CPU.

Compiled per padded frame size (``dynamic=False``: static shapes give Inductor the
most to fuse); the first frame of each size pays the compile (tens of seconds on a
small CPU, see docs/benchmarks.md), later ones run the generated kernels. Needs a C++
compiler at run time. FP32: parity with eager PyTorch to float rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends.base import BackendOptions, finish_output, prepare_input

RECOMPILE_LIMIT = 8  # distinct frame sizes compiled before torch falls back to eager


class TorchCompileBackend:
    """``torch-compile``: Inductor-compiled FP32 inference in ``torch.inference_mode``."""

    name = "torch-compile"
    device = "cpu"

    def __init__(self, model: nn.Module, info: CheckpointInfo, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self.info = info
        self.stride = info.model.stride
        self.eager = model.eval().float().cpu()
        try:
            torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT
        except AttributeError:  # older spelling
            torch._dynamo.config.cache_size_limit = RECOMPILE_LIMIT
        try:
            self.model = torch.compile(self.eager, dynamic=False)
        except Exception as exc:  # a torch without dynamo support on this platform
            raise BackendError(f"torch.compile unavailable: {exc}") from exc

    @torch.inference_mode()
    def predict(self, frame: np.ndarray) -> np.ndarray:
        x, size = prepare_input(frame, self.stride)
        return finish_output(self.model(x), size)

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "device": self.device,
            "threads": torch.get_num_threads(),
            "precision": "fp32",
            "compiler": "inductor (dynamic=False, one graph per frame size)",
        }
