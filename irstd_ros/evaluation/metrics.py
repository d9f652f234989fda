"""Metrics of the IRSTD field, with their definitions.

Pixel level (as the paper's Table 1):
* IoU  = sum over the set of |P and T| / sum over the set of |P or T|.
* nIoU = mean over images of |P and T| / |P or T| (an image with neither
  prediction nor target counts as 1).
* precision, recall, F1 from the set's pixel totals.

Target level (BasicIRSTD / DNANet ``PD_FA``): targets are 8-connected
components. A ground-truth target is detected when a still-unmatched predicted
component has its centroid within ``MATCH_DISTANCE`` px of the target's
centroid. Pd = detected / all targets. Fa = pixels of unmatched predicted
components / all pixels of the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

MATCH_DISTANCE = 3.0  # px, the field's standard centroid tolerance
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels of a boolean mask."""
    return ndimage.label(mask, structure=EIGHT_CONNECTED)


def _centroids_and_areas(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, n = components(mask)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    idx = np.arange(1, n + 1)
    cents = np.asarray(ndimage.center_of_mass(mask, labels, idx), dtype=np.float64).reshape(n, 2)
    areas = np.asarray(ndimage.sum_labels(mask, labels, idx), dtype=np.int64)
    return cents, areas


def match_targets(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(targets, detected targets, false-alarm pixels) for one image."""
    gt_c, _ = _centroids_and_areas(truth)
    pr_c, pr_a = _centroids_and_areas(pred)
    used = np.zeros(len(pr_c), dtype=bool)
    detected = 0
    for c in gt_c:
        if len(pr_c) == 0:
            break
        d = np.hypot(*(pr_c - c).T)
        d[used] = np.inf
        j = int(np.argmin(d))
        if d[j] < MATCH_DISTANCE:
            used[j] = True
            detected += 1
    return len(gt_c), detected, int(pr_a[~used].sum())


@dataclass
class MetricAccumulator:
    """Accumulates pixel and target statistics over a set at one threshold."""

    inter: int = 0
    union: int = 0
    pred_px: int = 0
    true_px: int = 0
    pixels: int = 0
    targets: int = 0
    detected: int = 0
    false_px: int = 0
    per_image_iou: list[float] = field(default_factory=list)

    def update(self, pred: np.ndarray, truth: np.ndarray) -> float:
        """Add one image (boolean arrays of one shape); returns its IoU."""
        if pred.shape != truth.shape:
            raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in size")
        pred, truth = pred.astype(bool), truth.astype(bool)
        i = int(np.logical_and(pred, truth).sum())
        u = int(np.logical_or(pred, truth).sum())
        self.inter += i
        self.union += u
        self.pred_px += int(pred.sum())
        self.true_px += int(truth.sum())
        self.pixels += pred.size
        t, d, f = match_targets(pred, truth)
        self.targets += t
        self.detected += d
        self.false_px += f
        iou = i / u if u else 1.0
        self.per_image_iou.append(iou)
        return iou

    def result(self) -> dict[str, float]:
        precision = self.inter / self.pred_px if self.pred_px else 0.0
        recall = self.inter / self.true_px if self.true_px else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "iou": self.inter / self.union if self.union else 0.0,
            "niou": float(np.mean(self.per_image_iou)) if self.per_image_iou else 0.0,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "pd": self.detected / self.targets if self.targets else 0.0,
            "fa": self.false_px / self.pixels if self.pixels else 0.0,
            "images": len(self.per_image_iou),
            "targets": self.targets,
        }


def pd_fa_curve(
    probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], thresholds: Sequence[float]
) -> list[dict[str, float]]:
    """Pd and Fa of the set at each threshold (the ROC of the field)."""
    rows = []
    for thr in thresholds:
        acc = MetricAccumulator()
        for p, t in zip(probs, truths):
            acc.update(p > thr, t > 0)
        r = acc.result()
        rows.append({"threshold": float(thr), "pd": r["pd"], "fa": r["fa"], "iou": r["iou"]})
    return rows
