"""What the GPU backends (``cuda``, ``tensorrt``) share: their device, staging, device
pre/post-processing, the predict tail, and keeping the SGEM attention in FP32 under reduced
precision.

Each GPU backend implements ``_prob(frame) -> (H, W) probabilities on the device`` and gets
``predict`` / ``predict_mask`` from :class:`CudaPredictMixin`: the frame goes up through one
reused pinned buffer, stride padding and the sigmoid run on the device, and the
probabilities (or the thresholded mask, one byte per pixel) come back through another.
Those buffers (and a CUDA graph's static tensors) serve one frame at a time, so ``predict``
holds the buffers' lock: a backend shared by several threads serialises its frames.
"""

from __future__ import annotations

import threading
import types

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.errors import BackendError
from irstd_ros.inference.preprocess import crop_to, pad_to_stride
from irstd_ros.models.blocks import SGEM

FP32_MARK = "_irstd_fp32_forward"  # set on SGEM modules already wrapped
DISABLE_AUTOCAST_MARK = "_irstd_fp32_no_autocast"
CAST_BACK_MARK = "_irstd_fp32_cast_back"


def _sgem_fp32_forward(self: SGEM, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
    """SGEM forward on FP32 inputs; see :func:`keep_sgem_fp32` (flags stored on the module)."""
    if getattr(self, DISABLE_AUTOCAST_MARK):
        with torch.autocast(device_type=enc.device.type, enabled=False):
            out = type(self).forward(self, enc.float(), dec.float())
    else:
        out = type(self).forward(self, enc.float(), dec.float())
    return out.to(enc.dtype) if getattr(self, CAST_BACK_MARK) else out


def keep_sgem_fp32(model: nn.Module, *, for_export: bool = False) -> int:
    """Make every SGEM of ``model`` compute in FP32; returns how many were wrapped.

    Default (autocast): the forward runs under ``autocast(enabled=False)`` on FP32 inputs.
    ``for_export`` (a half model for a strongly typed TensorRT network): the SGEM's own
    weights are made FP32 and its inputs/output cast explicitly (``_to_copy`` nodes that
    torch.export records and strong typing honours); no autocast context, which
    ``torch.export`` would turn into a higher-order op.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, SGEM) and not getattr(module, FP32_MARK, False):
            if for_export:
                module.float()
            setattr(module, DISABLE_AUTOCAST_MARK, not for_export)
            setattr(module, CAST_BACK_MARK, for_export)
            # a bound method (not a closure): deepcopy rebinds it to the copy
            module.forward = types.MethodType(_sgem_fp32_forward, module)  # type: ignore[method-assign]
            setattr(module, FP32_MARK, True)
            count += 1
    return count


def current_cuda_device(backend: str) -> torch.device:
    """The current CUDA device, on which GPU ``backend`` runs; BackendError without one."""
    if not torch.cuda.is_available():
        raise BackendError(f"{backend} backend: no CUDA device (torch.cuda.is_available() is False)")
    return torch.device("cuda", torch.cuda.current_device())


def cuda_device_name(device: torch.device) -> str:
    props = torch.cuda.get_device_properties(device)
    return f"{device} ({props.name}, sm_{props.major}{props.minor})"


class StagingBuffers:
    """One pinned host buffer for frames going up and one for probabilities coming back.

    Reallocated only when the frame size changes, so steady-state frames allocate nothing
    on the host; the device copies are asynchronous from pinned memory. ``lock``: held by
    the backend from staging to download (one frame at a time in the buffers).
    """

    def __init__(self, out_dtype: torch.dtype = torch.float32) -> None:
        self.lock = threading.Lock()
        self.size: tuple[int, int] | None = None
        self.out_dtype = out_dtype
        self.host_in: torch.Tensor | None = None
        self.host_out: torch.Tensor | None = None
        self.host_mask: torch.Tensor | None = None

    def stage(self, frame: np.ndarray, pin: bool) -> torch.Tensor:
        """Copy (H, W) float32 into the (re)used host input buffer and return it."""
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if size != self.size:
            # normal tensors even when called under inference_mode (predict's _prob is):
            # download() writes into them outside it, which inference tensors refuse
            with torch.inference_mode(False):
                self.host_in = torch.empty(size, dtype=torch.float32, pin_memory=pin)
                self.host_out = torch.empty(size, dtype=self.out_dtype, pin_memory=pin)
                self.host_mask = torch.empty(size, dtype=torch.bool, pin_memory=pin)
            self.size = size
        assert self.host_in is not None
        self.host_in.numpy()[...] = frame
        return self.host_in

    def upload(self, frame: np.ndarray, device: torch.device) -> torch.Tensor:
        """(H, W) float32 -> (1, 1, H, W) float32 on ``device`` via the pinned buffer."""
        host = self.stage(frame, pin=device.type == "cuda")
        return host.to(device, non_blocking=True)[None, None]

    def download(self, prob: torch.Tensor) -> np.ndarray:
        """(H, W) probabilities on the device -> float32 numpy (waits for the copy)."""
        assert self.host_out is not None
        self.host_out.copy_(prob.to(self.out_dtype), non_blocking=True)
        if prob.device.type == "cuda":
            torch.cuda.current_stream(prob.device).synchronize()
        return self.host_out.numpy().astype(np.float32, copy=True)

    def download_mask(self, prob: torch.Tensor, threshold: float) -> np.ndarray:
        """Threshold on the device and bring back one byte per pixel (bool)."""
        assert self.host_mask is not None
        self.host_mask.copy_(prob > threshold, non_blocking=True)
        if prob.device.type == "cuda":
            torch.cuda.current_stream(prob.device).synchronize()
        return self.host_mask.numpy().copy()


def gpu_preprocess(x: torch.Tensor, info: CheckpointInfo) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad a (1, 1, H, W) float32 device tensor (the network input); returns it and (H, W)."""
    return pad_to_stride(x, info.model.stride)


def gpu_postprocess(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cropped (H, W) FP32 probabilities, still on the device."""
    return torch.sigmoid(crop_to(logits.float(), size))[0, 0]


class CudaPredictMixin:
    """``predict`` / ``predict_mask`` over the backend's ``_prob`` and ``buffers``."""

    buffers: StagingBuffers

    def _prob(self, frame: np.ndarray) -> torch.Tensor:  # pragma: no cover - implemented by each backend
        raise NotImplementedError

    def predict(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) float32 network input -> (H, W) float32 probabilities."""
        with self.buffers.lock:
            return self.buffers.download(self._prob(frame))

    def predict_mask(self, frame: np.ndarray, threshold: float) -> np.ndarray:
        """Thresholded on the GPU: (H, W) bool, one byte per pixel copied back."""
        with self.buffers.lock:
            return self.buffers.download_mask(self._prob(frame), threshold)
