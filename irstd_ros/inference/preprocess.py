"""Frame pre-processing: intensity scaling of raw IR frames, normalisation, stride padding."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from irstd_ros.errors import ConfigError


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


def to_unit_range(
    frame: np.ndarray,
    mode: str = "auto",
    low: float = 0.0,
    high: float = 1.0,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Scale a raw single-channel frame to float32 [0, 1].

    Rules (the ``input.scaling`` parameter):
    * ``auto``: uint8 / 255; floats clipped to [0, 1]; integer frames of more
      than 8 bits use ``percentile`` (radiometric 14/16-bit frames occupy a
      narrow band: dividing by 256 would crush a cold-sky scene to black).
    * ``fixed``: (x - low) / (high - low), clipped: a known sensor range.
    * ``percentile``: per-frame stretch between the given percentiles.
    * ``minmax``: per-frame stretch between min and max.
    """
    f = frame.astype(np.float32, copy=False)
    if mode == "auto":
        if frame.dtype == np.uint8:
            return f / 255.0
        if np.issubdtype(frame.dtype, np.floating):
            return np.clip(f, 0.0, 1.0)
        mode = "percentile"
    if mode == "fixed":
        if high <= low:
            raise ConfigError(f"fixed scaling needs high > low, got [{low}, {high}]")
        return np.clip((f - low) / (high - low), 0.0, 1.0)
    if mode == "percentile":
        lo, hi = np.percentile(f, percentiles)
    elif mode == "minmax":
        lo, hi = float(f.min()), float(f.max())
    else:
        raise ConfigError(f"unknown scaling {mode!r}; valid: auto, fixed, percentile, minmax")
    if hi <= lo:
        return np.zeros_like(f)
    return np.clip((f - lo) / (hi - lo), 0.0, 1.0)
