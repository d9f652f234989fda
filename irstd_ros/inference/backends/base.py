"""The one interface every inference backend implements.

A backend turns the network input (float32, H x W, any size: the raw frame after
:func:`irstd_ros.core.normalize` with the checkpoint's
:class:`~irstd_ros.core.InputNorm`) into a target probability map of the same size.
Padding to the network stride and cropping back happen inside the backend, so a GPU
backend can do them on the device and a CPU backend with :func:`prepare_input` /
:func:`finish_output`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from irstd_ros.errors import BackendError
from irstd_ros.inference.preprocess import crop_to, pad_to_stride

CPU_REQUIREMENTS = "requirements/backends-cpu.txt"  # the CPU backends' optional packages


@dataclass(frozen=True)
class BackendOptions:
    """Options shared by the backends (each ignores what it cannot use)."""

    precision: str = "fp32"  # fp32 | fp16 (GPU backends) | bf16 (cuda)
    threads: int | None = None  # CPU intra-op threads
    cache_dir: str | None = None  # compiled engines / exported graphs
    height: int | None = None  # expected frame size (engines are built for it)
    width: int | None = None
    cuda_graphs: bool = False  # cuda, tensorrt: capture once per frame size, replay per frame
    compile: bool = False  # cuda: torch.compile (Inductor) the model, one graph per frame size
    channels_last: bool = False  # cuda: NHWC activations
    pad_channels: int = 0  # cuda: > 0: widths padded to multiples of this (same logits; tensor cores)
    tile_size: int = 0  # > 0: run tiles of this size (multiple of the stride) instead of full frames
    tile_overlap: int = 32  # pixels shared by neighbouring tiles (context for the seams)
    dynamic_shapes: bool = False  # openvino: one model compiled for any size (sets of many sizes)


@runtime_checkable
class Backend(Protocol):
    """An inference backend: ``predict`` maps a normalised frame to probabilities.

    ``predict`` may be called from several threads at once (one detector serving several
    camera callbacks); a backend that reuses buffers or requests between frames holds a
    lock around them, so each frame gets its own probabilities. A backend prepared for one
    frame size (``tensorrt``: its start engine) may also have ``warmup_size`` (H, W), the
    size the selection's warm-up frame takes when the options name none."""

    name: str  # registry name, e.g. "torch-cpu"
    device: str  # human-readable device, e.g. "cpu", "cuda:0 (NVIDIA H100)"

    def predict(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) float32 network input -> (H, W) float32 probabilities."""
        ...

    def describe(self) -> dict[str, object]:
        """What runs where (for logs, diagnostics and the benchmark)."""
        ...


def not_installed(package: str, exc: ImportError) -> BackendError:
    """The error of a CPU backend whose optional ``package`` does not import (raise it
    ``from None``): what failed and where the requirement is listed."""
    return BackendError(f"{package} is not installed ({exc}); see {CPU_REQUIREMENTS}")


def non_finite(prob: np.ndarray) -> int:
    """How many values of ``prob`` are NaN or infinite: one reduction when none is (a sum
    is finite unless a value is not, or it overflows), counted only then."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, or an overflow: counted below
        if np.isfinite(prob.sum()):
            return 0
    return prob.size - int(np.count_nonzero(np.isfinite(prob)))


def finite_probabilities(prob: np.ndarray, name: str) -> np.ndarray:
    """``prob`` unless it holds NaN or an infinity: ``NaN > threshold`` is False, so such a
    map would be scored as silent background (Pd 0, no false alarm) instead of failing.
    :class:`BackendError` naming the frame ``name`` and how many pixels."""
    bad = non_finite(prob)
    if bad:
        raise BackendError(f"{name}: {bad} of {prob.size} probabilities are NaN or infinite")
    return prob


def prepare_input(frame: np.ndarray, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad a normalised frame to the stride: (1, 1, H', W') float32 and the original size."""
    x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None, None]
    return pad_to_stride(x, stride)


def finish_output(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Crop padded logits back and turn them into a (H, W) probability array."""
    return torch.sigmoid(crop_to(logits.float(), size))[0, 0].cpu().numpy()


def raise_recompile_limit(limit: int) -> None:
    """Let dynamo keep at least ``limit`` compiled graphs per code object (``torch.compile``
    of one network class, whichever backend made it): never lowered, the setting is the
    process's and other compiled code has it too."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the older spelling second
        try:
            if getattr(config, name) < limit:
                setattr(config, name, limit)
            return
        except AttributeError:
            continue
