"""Stride padding of the network input (normalisation: :mod:`irstd_ros.core.normalization`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irstd_ros.core.normalization import to_unit_range

__all__ = ["crop_to", "pad_to_stride", "to_unit_range"]


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right to multiples of ``stride``.

    Reflection padding (replicate when the frame is too small to reflect) so
    that no artificial edge appears near targets on the border. Returns the
    padded tensor and the original (H, W) to crop back to.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_stride`."""
    return x[..., : size[0], : size[1]]
