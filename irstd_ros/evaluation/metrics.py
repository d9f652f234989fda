"""Metrics of the IRSTD field, with their definitions.

Pixel level (as the paper's Table 1):
* IoU  = sum over the set of |P and T| / sum over the set of |P or T|.
* nIoU = mean over the images *with targets* of |P and T| / |P or T|: the field's
  ``SamplewiseSigmoidMetric`` on sets where every image has a target (NUDT-SIRST). On an
  image without targets that metric gives 0 whatever is predicted (0 / eps), so it would
  only count background frames; they are left out here and measured by the false
  targets per background frame instead. The field's figure on a set with background
  frames is this one times (images with targets / images). (Before 2026-12-03 they
  counted as 1 when silent, which raised SIRST-v2 nIoU by the share of silent
  background frames.)
* precision, recall, F1 from the set's pixel totals; F1 = 2|P and T| / (|P| + |T|), so
  0 (not undefined) when nothing was predicted but targets exist, or the reverse.

Target level (BasicIRSTD / DNANet ``PD_FA``): targets are 8-connected
components; centroids are unweighted means of their pixels. Targets are taken in
label (raster) order; each is detected by the *nearest* still-unmatched predicted
component whose centroid is closer than ``MATCH_DISTANCE`` px (strictly). BasicIRSTD
takes the *first* such component in label order instead: the two differ only where two
predicted components lie within 3 px of one target (which one is charged as a false
alarm, rarely whether a neighbouring target is found). Pd = detected / all targets.
Fa = pixels of unmatched predicted components / all pixels of the set. BasicIRSTD's and
DNANet's code computes that sum by area *value* (``x not in image_area_match``): an
unmatched component whose area equals a matched one's in the same image is left out of
their Fa. Here every unmatched component counts, so where both match alike this Fa is
never below theirs. (DNANet also scores at 256 x 256, resized; BasicIRSTD and this code
at full resolution.) False targets = unmatched predicted components, counted per frame
and per megapixel, on background-only frames too.

A figure whose denominator is empty is undefined and reported as ``None`` (JSON
null), never as 0: Pd of a set without targets, IoU of a set where nothing was
predicted nor true, precision without predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from irstd_ros.core.components import components
from irstd_ros.core.statistics import ratio

MATCH_DISTANCE = 3.0  # px, the field's standard centroid tolerance


def _centroids_and_areas(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, n = components(mask)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    idx = np.arange(1, n + 1)
    cents = np.asarray(ndimage.center_of_mass(mask, labels, idx), dtype=np.float64).reshape(n, 2)
    areas = np.asarray(ndimage.sum_labels(mask, labels, idx), dtype=np.int64)
    return cents, areas


@dataclass(frozen=True)
class TargetMatch:
    """Target-level result of one image: centroids (y, x) of misses and false targets."""

    targets: int
    detected: int
    false_px: int
    missed: np.ndarray  # (n, 2) centroids of undetected true targets
    false: np.ndarray  # (m, 2) centroids of unmatched predicted components

    @property
    def false_targets(self) -> int:
        return len(self.false)


def match_components(pred: np.ndarray, truth: np.ndarray) -> TargetMatch:
    """Greedy centroid matching of true targets to predicted components (module doc);
    any non-zero pixel is target or prediction, whatever the arrays' dtype."""
    gt_c, _ = _centroids_and_areas(truth.astype(bool))
    pr_c, pr_a = _centroids_and_areas(pred.astype(bool))
    used = np.zeros(len(pr_c), dtype=bool)
    hit = np.zeros(len(gt_c), dtype=bool)
    for i, c in enumerate(gt_c):
        if len(pr_c) == 0:
            break
        d = np.hypot(*(pr_c - c).T)
        d[used] = np.inf
        j = int(np.argmin(d))
        if d[j] < MATCH_DISTANCE:
            used[j] = True
            hit[i] = True
    return TargetMatch(len(gt_c), int(hit.sum()), int(pr_a[~used].sum()), gt_c[~hit], pr_c[~used])


def match_targets(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(targets, detected targets, false-alarm pixels) for one image."""
    m = match_components(pred, truth)
    return m.targets, m.detected, m.false_px


def peak_near(prob: np.ndarray, cy: float, cx: float, radius: float = MATCH_DISTANCE) -> float:
    """The highest score within ``radius`` px (a square) of (``cy``, ``cx``): the network's
    answer at that place, not a neighbour's."""
    r, y, x = math.ceil(radius), round(cy), round(cx)
    return float(prob[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1].max())


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
    false_targets: int = 0
    background_frames: int = 0
    background_false_targets: int = 0
    per_image_iou: list[float] = field(default_factory=list)
    target_image_iou: list[float] = field(default_factory=list)  # nIoU's images

    def update(self, pred: np.ndarray, truth: np.ndarray) -> float:
        """Add one image (boolean arrays of one shape); returns its IoU."""
        return self.add(pred, truth)[0]

    def add(self, pred: np.ndarray, truth: np.ndarray) -> tuple[float, TargetMatch]:
        """Add one image; returns its IoU and its target-level match."""
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
        m = match_components(pred, truth)
        self.targets += m.targets
        self.detected += m.detected
        self.false_px += m.false_px
        self.false_targets += m.false_targets
        if m.targets == 0:
            self.background_frames += 1
            self.background_false_targets += m.false_targets
        iou = i / u if u else 1.0
        self.per_image_iou.append(iou)
        if m.targets:
            self.target_image_iou.append(iou)
        return iou, m

    def result(self) -> dict[str, float | int | None]:
        """The set's figures; ``None`` where a figure is undefined (see the module doc)."""
        precision = ratio(self.inter, self.pred_px)
        recall = ratio(self.inter, self.true_px)
        f1 = ratio(2 * self.inter, self.pred_px + self.true_px)  # 0 when only one is empty
        frames = len(self.per_image_iou)
        return {
            "iou": ratio(self.inter, self.union),
            "niou": float(np.mean(self.target_image_iou)) if self.target_image_iou else None,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "pd": ratio(self.detected, self.targets),
            "fa": ratio(self.false_px, self.pixels),
            "false_targets_per_frame": ratio(self.false_targets, frames),
            "false_targets_per_mpx": ratio(self.false_targets * 1e6, self.pixels),
            "background_frames": self.background_frames,
            "false_targets_per_background_frame": ratio(
                self.background_false_targets, self.background_frames
            ),
            "images": frames,
            "targets": self.targets,
        }


class CurveAccumulator:
    """Pd, Fa, IoU and false targets at several thresholds, one image at a time."""

    def __init__(self, thresholds: Sequence[float]) -> None:
        self.accs = {float(t): MetricAccumulator() for t in thresholds}

    def update(self, prob: np.ndarray, truth: np.ndarray) -> None:
        truth = truth != 0  # a target where non-zero, as MetricAccumulator and read_mask take it
        for thr, acc in self.accs.items():
            acc.update(prob > thr, truth)

    def rows(self) -> list[dict[str, float | None]]:
        out = []
        for thr, acc in self.accs.items():
            r = acc.result()
            out.append(
                {"threshold": thr, "pd": r["pd"], "fa": r["fa"], "iou": r["iou"],
                 "false_targets_per_frame": r["false_targets_per_frame"],
                 "false_targets_per_background_frame": r["false_targets_per_background_frame"]}
            )
        return out


def pd_fa_curve(
    probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], thresholds: Sequence[float]
) -> list[dict[str, float | None]]:
    """Pd and Fa of the set at each threshold (the ROC of the field)."""
    curve = CurveAccumulator(thresholds)
    for p, t in zip(probs, truths):
        curve.update(p, t)
    return curve.rows()


CALIBRATION_BINS = 10
CALIBRATION_MIN_PROB = 0.05  # pixels below are the certain background: left out of the ECE


class CalibrationAccumulator:
    """Pixel reliability diagram and expected calibration error (ECE) of the target class.

    ``bins`` equal bins over [:data:`CALIBRATION_MIN_PROB`, 1] (1.0 in the last);
    ECE = sum over bins of (pixels / all) x |mean probability - fraction of target
    pixels|. Pixels with probability below :data:`CALIBRATION_MIN_PROB` are left out:
    they are >99.9 % of an IR frame and would make any model look calibrated. (Not the
    top-label ECE of classifiers, whose confidence max(p, 1 - p) would be those pixels'.)
    """

    def __init__(self, bins: int = CALIBRATION_BINS) -> None:
        self.edges = np.linspace(CALIBRATION_MIN_PROB, 1.0, bins + 1)
        self.count = np.zeros(bins, dtype=np.int64)
        self.prob_sum = np.zeros(bins)
        self.true_sum = np.zeros(bins)

    def update(self, prob: np.ndarray, truth: np.ndarray) -> None:
        keep = prob >= CALIBRATION_MIN_PROB
        p, t = prob[keep].astype(np.float64), truth[keep] != 0
        idx = np.clip(np.searchsorted(self.edges, p, side="right") - 1, 0, len(self.count) - 1)
        self.count += np.bincount(idx, minlength=len(self.count))
        self.prob_sum += np.bincount(idx, weights=p, minlength=len(self.count))
        self.true_sum += np.bincount(idx, weights=t, minlength=len(self.count))

    def result(self) -> dict[str, object]:
        n = int(self.count.sum())
        nz = self.count > 0
        conf = np.divide(self.prob_sum, self.count, out=np.zeros_like(self.prob_sum), where=nz)
        freq = np.divide(self.true_sum, self.count, out=np.zeros_like(self.true_sum), where=nz)
        ece = float((self.count[nz] * np.abs(conf[nz] - freq[nz])).sum() / n) if n else None
        return {
            "ece": ece,
            "pixels": n,
            "bins": [
                {"low": float(lo), "high": float(hi), "pixels": int(c), "mean_prob": float(cf), "target_fraction": float(fr)}
                for lo, hi, c, cf, fr in zip(self.edges[:-1], self.edges[1:], self.count, conf, freq)
            ],
        }
