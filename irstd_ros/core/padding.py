"""Stride padding of the network input, and cropping back, in numpy.

The numpy twins of :func:`irstd_ros.inference.preprocess.pad_to_stride` /
:func:`~irstd_ros.inference.preprocess.crop_to` (same rule: reflect, replicate when the
frame is too small to reflect): the ONNX Runtime and OpenVINO backends run on numpy
arrays end to end and need no torch at run time.
"""

from __future__ import annotations

import numpy as np

# The largest stride of any network: 16 (four poolings) times the largest space-to-depth
# stem (irstd_ros.models.config.STEMS; a test keeps the two equal). A frame padded to it
# is at least as large as padded to any network's own.
MAX_STRIDE = 32


def padded_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``stride`` (what :func:`pad_to_stride` makes)."""
    return -(-height // stride) * stride, -(-width // stride) * stride


def pad_to_stride(x: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad (..., H, W) at the bottom/right to multiples of ``stride``; also the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
        x = np.pad(x, pad, mode="reflect") if ph < h and pw < w else np.pad(x, pad, mode="edge")
    return x, (h, w)


def crop_to(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_to_stride`."""
    return x[..., : size[0], : size[1]]


def network_input(frame: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W) network input -> (1, 1, H', W') float32 padded to the stride, and (H, W)."""
    if frame.ndim != 2:
        raise ValueError(f"network input must be one (H, W) plane, got shape {frame.shape}")
    x = np.ascontiguousarray(frame, dtype=np.float32)[None, None]
    return pad_to_stride(x, stride)
