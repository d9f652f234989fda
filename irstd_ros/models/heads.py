"""Prediction heads: map decoder features to one-channel target logits."""

from __future__ import annotations

import math

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
