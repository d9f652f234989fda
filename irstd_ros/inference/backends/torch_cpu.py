"""Eager PyTorch on the CPU: the reference every other backend is checked against."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.inference.backends.base import BackendOptions, finish_output, prepare_input


class TorchCPUBackend:
    """``torch-cpu``: eager FP32 inference in ``torch.inference_mode``."""

    name = "torch-cpu"
    device = "cpu"

    def __init__(self, model: nn.Module, info: CheckpointInfo, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self.model = model.eval().float().cpu()
        self.info = info
        self.stride = info.model.stride

    @torch.inference_mode()
    def predict(self, frame: np.ndarray) -> np.ndarray:
        x, size = prepare_input(frame, self.stride)
        return finish_output(self.model(x), size)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "device": self.device, "threads": torch.get_num_threads()}
