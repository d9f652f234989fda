"""SoftIoU loss, eq. (4) of Deng & Yang: 1 - (sum p*y + s) / (sum p + sum y - sum p*y + s)."""

from __future__ import annotations

import torch

SMOOTH = 1.0  # the field's usual smoothing term (DNANet, BasicIRSTD)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """Mean over the batch of per-image SoftIoU loss; ``logits`` before the sigmoid."""
    p = torch.sigmoid(logits.float())
    t = target.float()
    dims = tuple(range(1, p.ndim))
    inter = (p * t).sum(dims)
    union = p.sum(dims) + t.sum(dims) - inter
    return 1.0 - ((inter + smooth) / (union + smooth)).mean()
