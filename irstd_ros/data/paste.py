"""Real targets pasted into other frames: copy-paste augmentation with the labels' masks.

Synthetic implants (:mod:`irstd_ros.sim.implant`) are Gaussian blobs; the real targets
a network misses are not (docs/results.md, "What 0.7 misses"). A bank holds the
labelled targets of a source's training frames, each as its pixels minus the median of
a ring around it, feathered over a few pixels beyond its mask, in units of its frame's
noise (:func:`noise_sigma`). Pasted into a crop, a target is turned and mirrored at
random, scaled to the crop's noise times a drawn gain (so it keeps its SNR, times the
gain) and added at a free place, its mask with it. The labels are the masks of the
dataset, so pasted truth is as exact as the dataset's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from irstd_ros.core.components import EIGHT_CONNECTED
from irstd_ros.core.normalization import is_wide, noise_sigma
from irstd_ros.errors import ConfigError
from irstd_ros.sim.implant import PLACEMENT_TRIES, SEPARATION_PX, clipped, placements, reserve

RING_INNER_PX = 2  # the local background: a ring from this far from the mask ...
RING_OUTER_PX = 6  # ... to this far
MIN_RING_PX = 8  # fewer ring pixels than this: no background estimate, target left out
FEATHER_PX = 2.0  # the residual fades to 0 over this many px beyond the mask's 1-px rim


@dataclass(frozen=True)
class PasteConfig:
    """How many bank targets a pasted sample gets, and how bright (gain: log-uniform
    factor on the target's own SNR)."""

    count: tuple[int, int] = (1, 2)
    gain: tuple[float, float] = (0.5, 1.5)
    max_area: int = 400  # px: larger labelled targets stay out of the bank
    edge_fraction: float = 0.3  # placed on strong gradients (cloud edges, horizons)
    margin: int = 2  # px from the border

    def __post_init__(self) -> None:
        lo, hi = self.count
        if not 0 <= lo <= hi:
            raise ConfigError(f"paste count must be 0 <= low <= high, got {self.count}")
        lo_g, hi_g = self.gain
        if not 0 < lo_g <= hi_g < float("inf"):
            raise ConfigError(f"paste gain must be a range 0 < low <= high, got {self.gain}")
        if self.max_area < 1 or self.margin < 0 or not 0 <= self.edge_fraction <= 1:
            raise ConfigError(
                "paste needs max_area >= 1, margin >= 0 and edge_fraction in [0, 1], got "
                f"{self.max_area}, {self.margin}, {self.edge_fraction}"
            )


@dataclass(frozen=True)
class BankTarget:
    """One real target: its background-free pixels in noise sigmas, and its mask."""

    residual: np.ndarray  # float32, 0 beyond the feather
    mask: np.ndarray  # bool, same shape
    name: str  # the frame it came from

    @property
    def snr(self) -> float:
        """Peak |residual| in noise sigmas: the target's own SNR."""
        return float(np.abs(self.residual[self.mask]).max())


def cut_targets(raw: np.ndarray, mask: np.ndarray, name: str, max_area: int) -> list[BankTarget]:
    """The labelled targets of one frame as bank entries (too large, cut by the frame's
    edge, or with no ring of background around them: left out)."""
    if not mask.any():
        return []
    # float64 for wide dtypes: in float32 4e9 counts go in steps of 512 (the target rounded away)
    img = raw.astype(np.float64 if is_wide(raw.dtype) else np.float32)
    sigma = noise_sigma(raw)
    if not sigma > 0:
        return []
    labels, _ = ndimage.label(mask, EIGHT_CONNECTED)  # targets as the evaluation counts them
    h, w = mask.shape
    pad = RING_OUTER_PX
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w:
            continue  # the frame's edge cuts it: pasted elsewhere, a half-target with a straight edge
        y0, y1 = max(sl[0].start - pad, 0), min(sl[0].stop + pad, h)
        x0, x1 = max(sl[1].start - pad, 0), min(sl[1].stop + pad, w)
        comp = labels[y0:y1, x0:x1] == i
        if comp.sum() > max_area:
            continue
        others = mask[y0:y1, x0:x1] & ~comp
        dist = ndimage.distance_transform_edt(~comp)
        ring = (dist > RING_INNER_PX) & (dist <= RING_OUTER_PX) & ~ndimage.binary_dilation(others, iterations=2)
        if ring.sum() < MIN_RING_PX:
            continue
        patch = img[y0:y1, x0:x1]
        weight = np.clip(1.0 - (dist - 1.0) / FEATHER_PX, 0.0, 1.0)
        weight[others] = 0.0
        residual = (patch - np.median(patch[ring])) * weight / sigma
        ys, xs = np.nonzero(weight > 0)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        out.append(BankTarget(residual[box].astype(np.float32), comp[box].copy(), name))
    return out


def target_bank(items: Sequence[tuple[np.ndarray, np.ndarray, str]], max_area: int) -> tuple[BankTarget, ...]:
    """Every usable labelled target of ``items`` (raw frame, mask, name)."""
    return tuple(t for raw, mask, name in items for t in cut_targets(raw, mask, name, max_area))


def paste_targets(
    img: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    sigma: float,
    bank: Sequence[BankTarget],
    cfg: PasteConfig | None = None,
    count: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Add bank targets to a float frame (its own units, pixel noise ``sigma``) and its
    bool mask; returns the new arrays and how many were pasted. A target that would touch
    an existing one (dilated by ``SEPARATION_PX``) goes elsewhere, or is skipped after
    ``PLACEMENT_TRIES``."""
    cfg = cfg or PasteConfig()
    if not bank:
        raise ConfigError("paste needs a bank of at least one labelled target")
    img = np.array(img, dtype=np.float32, copy=True)
    mask = mask.copy()
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1)) if count is None else count
    taken = ndimage.binary_dilation(mask, iterations=SEPARATION_PX) if mask.any() else mask.copy()
    pasted = 0
    for _ in range(n):
        target = bank[int(rng.integers(len(bank)))]
        turns = int(rng.integers(4))
        res, m = np.rot90(target.residual, turns), np.rot90(target.mask, turns)
        if rng.random() < 0.5:
            res, m = res[:, ::-1], m[:, ::-1]
        gain = float(np.exp(rng.uniform(*np.log(cfg.gain))))
        ph, pw = m.shape
        for cx, cy in placements(img, rng, cfg.edge_fraction, cfg.margin, PLACEMENT_TRIES):
            frame, inside = clipped(int(round(cx - pw / 2)), int(round(cy - ph / 2)), m.shape, img.shape)
            part, on = res[inside], m[inside]
            if not on.any() or taken[frame][part != 0].any():
                continue
            img[frame] += np.float32(gain * sigma) * part
            mask[frame] |= on
            reserve(taken, frame, part != 0)
            pasted += 1
            break
    return img, mask, pasted
