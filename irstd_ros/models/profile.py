"""Size of a network: parameters and multiply-accumulates.

MACs come from torch's own ``torch.utils.flop_counter.FlopCounterMode``, which
counts 2 FLOPs per multiply-accumulate of convolutions and matrix products;
we report FLOPs / 2 as "GMACs", the convention of the IRSTD field (thop,
ptflops) under which the paper states 15.92 "GFLOPs". Element-wise ops
(BN, ReLU, softmax, interpolation) are not counted; the SGEM's matmuls are (thop
misses functional matmuls but adds BN): docs/model.md, "Named configurations".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_PER_MAC = 2


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int = 256, width: int = 256, in_channels: int | None = None) -> int:
    """Multiply-accumulates of one forward pass on a (1, C, H, W) input; C None is the
    model's ``config.in_channels`` (1 for a model without one)."""
    if in_channels is None:
        in_channels = getattr(getattr(model, "config", None), "in_channels", 1)
    x = torch.zeros(1, in_channels, height, width)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops() // FLOPS_PER_MAC)
