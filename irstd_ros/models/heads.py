"""Prediction heads: map decoder features to one-channel target logits."""

from __future__ import annotations

import math

import torch
from torch import nn

# Targets cover well under 1 % of an IR frame. Starting the head at that prior
# (RetinaNet's bias trick) instead of p = 0.5 everywhere spares the first
# epochs of SoftIoU training from unlearning a frame full of false alarms.
TARGET_PRIOR = 0.01


class SegmentationHead(nn.Conv2d):
    """1x1 conv to one logit per pixel (sigmoid gives the target probability)."""

    def __init__(self, in_ch: int, out_ch: int = 1, prior: float = TARGET_PRIOR) -> None:
        super().__init__(in_ch, out_ch, kernel_size=1)
        assert self.bias is not None
        nn.init.constant_(self.bias, -math.log((1 - prior) / prior))

    @torch.no_grad()
    def fold_affine(self, a: float, b: float) -> None:
        """Make every logit ``a * logit + b`` (a calibration, folded into the conv)."""
        assert self.bias is not None
        self.weight.mul_(a)
        self.bias.mul_(a).add_(b)


class LogitRefinement(nn.Module):
    """A full-resolution correction of coarse logits: two 3x3 convs over the input
    frame and the logits, added to the logits. The last conv starts at zero, so the
    block starts as the identity (a network gaining it keeps its logits). ``scale`` and
    ``shift`` (buffers, 1 and 0 until :meth:`fold_affine`) map the sum to the output, so
    a calibration ``a * logit + b`` is folded exactly, which scaling the convs could not
    do (the body sees the logits, and zero padding does not commute with a shift)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, in_ch: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch + 1, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("shift", torch.zeros(1))

    def forward(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        correction = self.out(self.body(torch.cat([image, logits], dim=1)))
        out: torch.Tensor = (logits + correction) * self.scale + self.shift
        return out

    @torch.no_grad()
    def fold_affine(self, a: float, b: float) -> None:
        """Make the output ``a * output + b``."""
        self.scale.mul_(a)
        self.shift.mul_(a).add_(b)


class LogitKnee(nn.Module):
    """A two-piece calibration: ``min(z, knee + slope * (z - knee))`` with ``slope >= 1``.

    Above ``knee`` the logits pass unchanged; below it they fall ``slope`` times as fast.
    One line (:meth:`SegmentationHead.fold_affine`) cannot calibrate both the pixels a
    threshold decides on and the certain background: fitted to the first it lifts the
    second to p 0.05-0.1. The knee keeps the flatter line above and a steep one below.
    Buffers (identity until set); the exported graphs gain four element-wise ops (``Sub``,
    ``Mul``, ``Add``, ``Min``)."""

    knee: torch.Tensor
    slope: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("knee", torch.zeros(1))
        self.register_buffer("slope", torch.ones(1))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.minimum(logits, self.knee + self.slope * (logits - self.knee))

    @torch.no_grad()
    def set(self, knee: float, slope: float) -> None:
        if slope < 1.0:
            raise ValueError(f"the knee's slope must be >= 1, got {slope}")
        self.knee.fill_(knee)
        self.slope.fill_(slope)

    @torch.no_grad()
    def fold_affine(self, a: float, b: float) -> None:
        """Follow an affine map ``a * z + b`` (a > 0) applied before the knee, so that the
        whole output becomes ``a * output + b``."""
        self.knee.mul_(a).add_(b)
