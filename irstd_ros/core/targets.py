"""From a probability map to targets: threshold, 8-connected components, IR statistics.

Coordinates are pixel indices of the input frame (pixel (0, 0) is centred at
0.0, 0.0). A target's box is ``x, y, width, height`` with (x, y) its top-left
pixel; its box centre is ``x + (width - 1) / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from irstd_ros.core.components import components

BACKGROUND_MARGIN = 4  # px of ring around a target's box used as its local background


class BoxCentre:
    """The box centre of anything with a top-left pixel (``x``, ``y``) and a size:
    ``x + (width - 1) / 2``, ``y + (height - 1) / 2``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center_x(self) -> float:
        return self.x + (self.width - 1) / 2.0

    @property
    def center_y(self) -> float:
        return self.y + (self.height - 1) / 2.0


@dataclass(frozen=True)
class Target(BoxCentre):
    """One detected target, with what IR users need besides the box."""

    id: int
    score: float  # peak network probability inside the target
    x: int
    y: int
    width: int
    height: int
    area: int  # pixels of the component
    centroid_x: float  # intensity-weighted (background-subtracted) sub-pixel centroid
    centroid_y: float
    peak_intensity: float  # in the input frame's own units
    mean_intensity: float
    local_contrast: float  # target mean minus local background mean
    snr: float  # (peak - background mean) / background std


@dataclass(frozen=True)
class PostprocessConfig:
    """Limits applied to components (``detection.*`` node parameters)."""

    threshold: float = 0.5
    min_area: int = 1
    max_area: int = 10_000
    max_detections: int = 100


def extract_targets(
    prob: np.ndarray, intensity: np.ndarray, cfg: PostprocessConfig
) -> tuple[np.ndarray, list[Target]]:
    """Return (mask of the kept targets, targets sorted by score).

    ``intensity`` is the frame in its own units (one channel, same size).
    Components outside [min_area, max_area] are dropped; of the rest, the
    ``max_detections`` best-scoring are kept. The returned mask holds exactly
    the kept components, so mask and targets always agree.
    """
    if prob.shape != intensity.shape:
        raise ValueError(f"probability {prob.shape} and intensity {intensity.shape} differ")
    binary = prob > cfg.threshold
    labels, n = components(binary)
    return _targets(prob, intensity, binary, labels, n, cfg, first_id=0)


def extract_candidates(
    prob: np.ndarray,
    intensity: np.ndarray,
    cfg: PostprocessConfig,
    threshold: float,
    first_id: int = 0,
) -> list[Target]:
    """Sub-threshold candidates, for a tracker only: the components of ``prob >
    threshold`` whose every pixel is at most ``cfg.threshold`` (so no detection is part of
    one), with the detections' area limits and cap, sorted by score; ids from
    ``first_id``. Empty when ``threshold`` is not below ``cfg.threshold``.
    """
    if prob.shape != intensity.shape:
        raise ValueError(f"probability {prob.shape} and intensity {intensity.shape} differ")
    if threshold >= cfg.threshold:
        return []
    binary = prob > threshold
    labels, n = components(binary)
    above = np.unique(labels[prob > cfg.threshold])
    labels[np.isin(labels, above[above > 0])] = 0
    return _targets(prob, intensity, binary, labels, n, cfg, first_id)[1]


def _targets(
    prob: np.ndarray,
    intensity: np.ndarray,
    binary: np.ndarray,
    labels: np.ndarray,
    n: int,
    cfg: PostprocessConfig,
    first_id: int,
) -> tuple[np.ndarray, list[Target]]:
    """Targets of the labelled components (a label without pixels is skipped)."""
    mask = np.zeros(prob.shape, dtype=bool)
    if n == 0:
        return mask, []
    slices = ndimage.find_objects(labels)
    h, w = prob.shape
    intensity = intensity.astype(np.float64, copy=False)
    candidates = []
    for label, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        comp = labels[sl] == label
        area = int(comp.sum())
        if not cfg.min_area <= area <= cfg.max_area:
            continue
        candidates.append((float(prob[sl][comp].max()), sl, comp, area))
    candidates.sort(key=lambda c: -c[0])
    targets: list[Target] = []
    for score, sl, comp, area in candidates[: cfg.max_detections]:
        ys, xs = sl
        by0, by1 = max(ys.start - BACKGROUND_MARGIN, 0), min(ys.stop + BACKGROUND_MARGIN, h)
        bx0, bx1 = max(xs.start - BACKGROUND_MARGIN, 0), min(xs.stop + BACKGROUND_MARGIN, w)
        ring = ~binary[by0:by1, bx0:bx1]
        bg = intensity[by0:by1, bx0:bx1][ring]
        bg_mean = float(bg.mean()) if bg.size else 0.0
        bg_std = float(bg.std()) if bg.size > 1 else 0.0
        vals = intensity[sl][comp]
        peak, mean = float(vals.max()), float(vals.mean())
        cy, cx = np.nonzero(comp)
        weights = np.clip(vals - bg_mean, 0.0, None)
        if weights.sum() <= 0:
            weights = np.ones_like(vals)
        targets.append(
            Target(
                id=first_id + len(targets),
                score=score,
                x=int(xs.start),
                y=int(ys.start),
                width=int(xs.stop - xs.start),
                height=int(ys.stop - ys.start),
                area=area,
                centroid_x=float(xs.start + np.average(cx, weights=weights)),
                centroid_y=float(ys.start + np.average(cy, weights=weights)),
                peak_intensity=peak,
                mean_intensity=mean,
                local_contrast=mean - bg_mean,
                snr=(peak - bg_mean) / bg_std if bg_std > 0 else float("inf") if peak > bg_mean else 0.0,
            )
        )
        mask[sl] |= comp
    return mask, targets
