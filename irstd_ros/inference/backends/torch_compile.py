"""``torch-compile``: ``torch.compile`` (Inductor, C++ codegen) of the model on the CPU.

Compiled per padded frame size (``dynamic=False``: static shapes give Inductor the
most to fuse); the first frame of each size pays the compile (tens of seconds on a
small CPU, see docs/benchmarks.md), later ones run the generated kernels. Needs a C++
compiler at run time. FP32: parity with eager PyTorch to float rounding.

Each backend compiles at most :data:`MAX_COMPILED_SIZES` padded sizes; a frame of a
further size runs eager PyTorch, said once in the log and counted by :meth:`describe`
(``eager_frames``). Dynamo keeps its compiled graphs per code object (the network class's
``forward``), so every backend in the process (one per camera) shares one cache, and its
``recompile_limit`` (a process-wide setting) counts the sizes of them all: the limit is
raised to :data:`MAX_COMPILED_SIZES` times the backends made, so that each gets its own
sizes compiled (before, 8 sizes among all of them, the rest silently eager).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends.base import (
    BackendOptions,
    finish_output,
    prepare_input,
    raise_recompile_limit,
)

log = logging.getLogger(__name__)

MAX_COMPILED_SIZES = 8  # padded frame sizes one backend compiles; its further sizes run eager


class TorchCompileBackend:
    """``torch-compile``: Inductor-compiled FP32 inference in ``torch.inference_mode``."""

    name = "torch-compile"
    device = "cpu"
    _made = 0  # backends made in this process: dynamo's cache is shared by them all

    def __init__(self, model: nn.Module, info: CheckpointInfo, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self.info = info
        self.stride = info.model.stride
        self.eager = model.eval().float().cpu()
        self.size_limit = MAX_COMPILED_SIZES
        self._sizes: list[tuple[int, int]] = []  # padded sizes sent to the compiled model
        self.eager_frames = 0  # frames of sizes past size_limit, run eager
        self._lock = threading.Lock()
        try:
            self.model = torch.compile(self.eager, dynamic=False)
            TorchCompileBackend._made += 1
            raise_recompile_limit(self.size_limit * TorchCompileBackend._made)
        except Exception as exc:  # a torch without dynamo support on this platform
            raise BackendError(f"torch.compile unavailable: {exc}") from exc

    def _compiled(self, size: tuple[int, int]) -> bool:
        """Whether a frame of this padded size runs the compiled model (its size is one of
        the first :attr:`size_limit` this backend met), else eager (said once, counted)."""
        with self._lock:
            if size in self._sizes:
                return True
            if len(self._sizes) < self.size_limit:
                self._sizes.append(size)
                return True
            self.eager_frames += 1
            first = self.eager_frames == 1
        if first:
            log.warning(
                "torch-compile: frame size %dx%d (padded) is past the %d sizes this backend "
                "compiles (%s); frames of new sizes run eager PyTorch, slower (counted in "
                "eager_frames). Feed frames of one size, or tile them (tile_size).",
                size[1], size[0], self.size_limit,
                ", ".join(f"{w}x{h}" for h, w in self._sizes),
            )
        return False

    @torch.inference_mode()
    def predict(self, frame: np.ndarray) -> np.ndarray:
        x, size = prepare_input(frame, self.stride)
        h, w = x.shape[-2:]
        model = self.model if self._compiled((int(h), int(w))) else self.eager
        return finish_output(model(x), size)

    def describe(self) -> dict[str, object]:
        with self._lock:
            sizes, eager = [list(s) for s in self._sizes], self.eager_frames
        return {
            "backend": self.name,
            "device": self.device,
            "threads": torch.get_num_threads(),
            "precision": "fp32",
            "compiler": "inductor (dynamic=False, one graph per frame size)",
            "compiled_sizes": sizes,  # padded (height, width), in the order met
            "size_limit": self.size_limit,
            "eager_frames": eager,
        }
