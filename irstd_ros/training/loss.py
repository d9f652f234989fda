"""Losses. SoftIoU, eq. (4) of Deng & Yang: 1 - (sum p*y + s) / (sum p + sum y - sum p*y + s).

SoftIoU alone drives probabilities to 0 or 1 (the threshold then does nothing);
``softiou+bce`` adds per-pixel binary cross-entropy, a proper scoring rule, so that
scores are calibrated and the threshold trades Pd for Fa.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH = 1.0  # the field's usual smoothing term (DNANet, BasicIRSTD)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """Mean over the batch of per-image SoftIoU loss; ``logits`` before the sigmoid."""
    p = torch.sigmoid(logits.float())
    t = target.float()
    dims = tuple(range(1, p.ndim))
    inter = (p * t).sum(dims)
    union = p.sum(dims) + t.sum(dims) - inter
    return 1.0 - ((inter + smooth) / (union + smooth)).mean()


LOSSES = ("softiou", "softiou+bce")


def training_loss(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss named ``name`` (one of :data:`LOSSES`)."""
    if name == "softiou":
        return soft_iou_loss(logits, target)
    if name == "softiou+bce":
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return soft_iou_loss(logits, target) + bce
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


def distillation_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    samples: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pixel binary cross-entropy of the student against the teacher's probabilities
    (knowledge distillation, Hinton et al. 2015, at temperature 1). ``samples``: an (N,)
    0/1 weight, the samples that have a teacher; the others add 0, so each taught sample
    weighs the same whatever the rest of its batch (the sum is divided by N, as the label
    loss's mean is). ``labels``: the ground-truth mask; where given, the teacher's
    probability is raised to it, so a teacher that misses a labelled (e.g. implanted dim)
    target never teaches the student to miss it too; it still softens the background."""
    target = torch.sigmoid(teacher_logits.float())
    if labels is not None:
        target = torch.maximum(target, labels.float())
    if samples is None:
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    per_sample = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").flatten(1).mean(1)
    return (per_sample * samples).sum() / per_sample.shape[0]


def random_symmetry(generator: torch.Generator | None = None) -> tuple[int, bool]:
    """(turns, mirror) of one of the square's 7 non-identity symmetries, uniformly
    (torch's random stream: seeded and resumed with the training)."""
    index = int(torch.randint(1, 8, (1,), generator=generator))
    return index % 4, index >= 4


def dihedral(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    """``x`` (..., H, W) mirrored left-right if ``mirror``, then turned ``turns`` x 90°."""
    if mirror:
        x = x.flip(-1)
    return torch.rot90(x, turns, dims=(-2, -1))


def undo_dihedral(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    """The inverse of :func:`dihedral`: back to the frame's own orientation."""
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if mirror else x


def consistency_region(
    mask: torch.Tensor, logits: torch.Tensor, other: torch.Tensor, radius: int
) -> torch.Tensor:
    """Where the turn-consistency term is taken when restricted: pixels within ``radius``
    px (a square) of a labelled target, and pixels where either view decides "target"
    (p > 0.5), the decisions that can turn. Elsewhere, background that both views
    already call background, the term would only dilute the hard blobs."""
    near = F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0
    fired = (logits.detach() > 0) | (other.detach() > 0)
    return near | fired


def consistency_loss(
    logits: torch.Tensor, other: torch.Tensor, region: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric per-pixel binary cross-entropy between two views' logits of the same
    crops (in the same orientation), each towards the other's detached probability: the
    decision must not change when the frame turns. ``region`` (boolean, the logits'
    shape): the mean over its pixels only (0 when it is empty)."""
    a, b = logits.float(), other.float()
    per_pixel = 0.5 * (
        F.binary_cross_entropy_with_logits(a, torch.sigmoid(b).detach(), reduction="none")
        + F.binary_cross_entropy_with_logits(b, torch.sigmoid(a).detach(), reduction="none")
    )
    if region is None:
        return per_pixel.mean()
    weight = region.to(per_pixel.dtype)
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)
