"""From a probability map to targets: threshold, 8-connected components, IR statistics.

Coordinates are pixel indices of the input frame (pixel (0, 0) is centred at
0.0, 0.0). A target's box is ``x, y, width, height`` with (x, y) its top-left
pixel; its box centre is ``x + (width - 1) / 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from irstd_ros.core.components import components
from irstd_ros.errors import ConfigError

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
    """One detected target, with what IR users need besides the box.

    Its local background is the pixels not above the threshold within
    :data:`BACKGROUND_MARGIN` px of its box. That is empty only when no pixel of the frame
    is (any beside the target would be part of it, so its box would span the frame): then
    ``local_contrast`` and ``snr`` are 0, nothing to measure against, and the centroid is
    the component's unweighted centre.
    """

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
    local_contrast: float  # target mean minus local background mean (0: no background)
    snr: float  # (peak - background mean) / background std (0: no background)


@dataclass(frozen=True)
class PostprocessConfig:
    """Limits applied to components (``detection.*`` node parameters).

    :class:`~irstd_ros.errors.ConfigError` unless ``threshold`` is a probability in
    [0, 1], ``min_area <= max_area`` and ``max_detections >= 0`` (no negative "no cap":
    -1 kept all but the weakest target; a NaN threshold passed no pixel).
    """

    threshold: float = 0.5
    min_area: int = 1
    max_area: int = 10_000
    max_detections: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"detection threshold must be a probability in [0, 1], got {self.threshold}")
        if not self.min_area <= self.max_area:
            raise ConfigError(f"min_area {self.min_area} must not exceed max_area {self.max_area}")
        if not self.max_detections >= 0:
            raise ConfigError(f"max_detections must be >= 0, got {self.max_detections}")


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
    return _targets(prob, intensity, binary, cfg, first_id=0)


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
    return _targets(prob, intensity, binary, cfg, first_id, above=cfg.threshold)[1]


def _lines_with_gaps(occupied: np.ndarray) -> np.ndarray:
    """Indices of the True entries of ``occupied``, with one ``-1`` between two runs."""
    idx = np.flatnonzero(occupied)
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    return np.insert(idx, breaks, -1)


def occupied_lines(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, cols): the indices of the rows and columns holding a True pixel, with ``-1``
    for one empty line kept between two runs of them; None when there is none.

    ``binary[rows][:, cols]`` with the ``-1`` lines blank is a small image whose
    8-connected components are exactly those of ``binary``, each a contiguous block of
    it: a component never crosses an empty row or column, and one blank line keeps apart
    what the dropped lines did. Labelling it instead of the frame costs what the
    targets occupy, not what lies between them (five point targets in a 640x512 frame,
    a 19x19 image: 0.12 ms to label their 260x230 box before, 0.06 ms now with finding
    the lines and gathering them).
    """
    rows_any = np.asarray(binary.any(axis=1))
    if not rows_any.any():
        return None
    rows = _lines_with_gaps(rows_any)
    cols_any = np.asarray(binary[rows[0] : rows[-1] + 1].any(axis=0))
    return rows, _lines_with_gaps(cols_any)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """(mean, population std) of a 1-D float64 array, 0.0 for none (std: for fewer than
    two values): the values ``mean()`` and ``std()`` give, bit for bit (the same sums,
    divided the same way), without their per-call overhead (21 us a target, now 7)."""
    n = values.size
    if n == 0:
        return 0.0, 0.0
    mean = float(values.sum()) / n
    if n == 1:
        return mean, 0.0
    d = values - mean
    d *= d
    return mean, math.sqrt(float(d.sum()) / n)


def _targets(
    prob: np.ndarray,
    intensity: np.ndarray,
    binary: np.ndarray,
    cfg: PostprocessConfig,
    first_id: int,
    above: float | None = None,
) -> tuple[np.ndarray, list[Target]]:
    """Targets of the components of ``binary`` (labelled on its :func:`occupied_lines`).

    With ``above``, components holding any pixel of ``prob > above`` are left out.
    """
    mask = np.zeros(prob.shape, dtype=bool)
    lines = occupied_lines(binary)
    if lines is None:
        return mask, []
    rows, cols = lines
    grid = np.ix_(np.maximum(rows, 0), np.maximum(cols, 0))
    compact = binary[grid]
    compact[rows < 0] = False
    compact[:, cols < 0] = False
    labels, n = components(compact)
    if above is not None:
        hit = np.unique(labels[prob[grid] > above])
        labels[np.isin(labels, hit[hit > 0])] = 0
    h, w = prob.shape
    # every component's area in one count: one outside the limits costs no Python step
    # (400 one-pixel specks under min_area 2: 2.8 -> 1.9 ms)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    objects = ndimage.find_objects(labels, max_label=n)
    candidates = []
    for i in np.flatnonzero((areas >= cfg.min_area) & (areas <= cfg.max_area)).tolist():
        local = objects[i]
        if local is None:  # a component left out (``above``)
            continue
        area, comp = int(areas[i]), labels[local] == i + 1
        sl = (
            slice(int(rows[local[0].start]), int(rows[local[0].stop - 1]) + 1),
            slice(int(cols[local[1].start]), int(cols[local[1].stop - 1]) + 1),
        )
        candidates.append((float(prob[sl][comp].max()), sl, comp, area))
    candidates.sort(key=lambda c: -c[0])
    targets: list[Target] = []
    for score, sl, comp, area in candidates[: cfg.max_detections]:
        ys, xs = sl
        by0, by1 = max(ys.start - BACKGROUND_MARGIN, 0), min(ys.stop + BACKGROUND_MARGIN, h)
        bx0, bx1 = max(xs.start - BACKGROUND_MARGIN, 0), min(xs.stop + BACKGROUND_MARGIN, w)
        ring = ~binary[by0:by1, bx0:bx1]
        bg = intensity[by0:by1, bx0:bx1][ring].astype(np.float64)  # crops only: no full-frame copy
        vals = intensity[sl][comp].astype(np.float64)
        peak, mean = float(vals.max()), float(vals.sum()) / vals.size
        if bg.size:
            bg_mean, bg_std = _mean_std(bg)
            contrast = mean - bg_mean
            if bg_std > 0:
                snr = (peak - bg_mean) / bg_std
            else:  # no spread: infinitely far above it, or not above it at all
                snr = float("inf") if peak > bg_mean else 0.0
            weights = np.maximum(vals - bg_mean, 0.0)
        else:  # the whole frame above the threshold (see Target): no background, no contrast
            contrast, snr, weights = 0.0, 0.0, np.zeros_like(vals)
        cy, cx = np.nonzero(comp)
        total = float(weights.sum())
        if total <= 0:  # no pixel above the background (or none): the component's centre
            weights, total = np.ones_like(vals), float(vals.size)
        targets.append(
            Target(
                id=first_id + len(targets),
                score=score,
                x=int(xs.start),
                y=int(ys.start),
                width=int(xs.stop - xs.start),
                height=int(ys.stop - ys.start),
                area=area,
                centroid_x=float(xs.start + float((cx * weights).sum()) / total),
                centroid_y=float(ys.start + float((cy * weights).sum()) / total),
                peak_intensity=peak,
                mean_intensity=mean,
                local_contrast=contrast,
                snr=snr,
            )
        )
        mask[sl] |= comp
    return mask, targets
