"""Synthetic targets implanted into real (or generated) backgrounds, with exact masks.

The same PSF rendering as the sequence generator (:func:`render_blob`) and the same
truth rule (signal >= half its peak pixel). A target's amplitude is ``snr x sigma``,
``sigma`` the background's pixel noise (:func:`irstd_ros.core.noise_sigma`), so the
SNR is the one the detector sees after normalisation -- unless the frame is then
re-encoded with clipping. Used by training augmentation and by the detection envelope.

Training (:mod:`irstd_ros.data.mixture`) re-encodes the implanted frame, in about 14 % of
its samples (``sensor_prob`` 0.7 x the mono8 share of ``encoding_probs``, 0.2) as mono8
through a linear AGC over the 0.1-99.9th percentiles (:func:`irstd_ros.sim.sensor.encode`),
which clips at 255 whatever is above the 99.9th percentile: on a flat crop, every
implanted target. Measured (out/v44/audit_sim/agc_clip.py: 256x256 crops of 100 DN with
4 DN noise, 2 point targets each, 20 crops per SNR; delivered SNR = encoded peak minus the
encoded crop's median, over its ``noise_sigma``): every peak clipped, delivered at a
median 0.63, 0.32 and 0.11 of the requested SNR 5, 10 and 30 -- about 3 whatever was
asked. On cloudy-sky crops (the generator's) 0, 0 and 4 of 20 peaks clipped. Real AGC
cameras clip small hot targets the same way, so this is kept; the truth (mask,
:attr:`Implanted.snr`) is the target as requested, before encoding. The envelope's mono8
uses the full range (AGC 0-100 %) and clips no target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from irstd_ros.errors import ConfigError
from irstd_ros.sim.sequence import TRUTH_FRACTION
from irstd_ros.sim.targets import render_blob

POINT_OBJECT_PX = 0.2  # object extent of a "point" target: the PSF alone shapes it
EDGE_QUANTILE = 0.97  # "near clutter": positions among the top 3 % gradient magnitudes
SEPARATION_PX = 4  # implanted targets keep this far from existing ones (dilation)
PLACEMENT_TRIES = 20
BORDER_OUTSIDE_PX = 1.0  # a border target's centre lies at most this far outside the frame
BORDER_INSIDE_PX = 2.0  # ... and at most this far inside it (the default margin)


@dataclass(frozen=True)
class ImplantConfig:
    """What to implant; ranges are drawn per target (SNR log-uniformly)."""

    count: tuple[int, int] = (1, 3)
    point_fraction: float = 0.6  # the rest are extended targets
    point_psf: tuple[float, float] = (0.5, 1.5)  # px, Gaussian sigma of point targets
    extended_area: tuple[float, float] = (4.0, 80.0)  # px, object area before the PSF
    extended_psf: tuple[float, float] = (0.4, 1.0)
    aspect: tuple[float, float] = (1.0, 2.5)
    snr: tuple[float, float] = (3.0, 30.0)
    edge_fraction: float = 0.3  # placed on strong gradients (cloud edges, horizons)
    margin: int = 2  # px from the border
    border_fraction: float = 0.0  # placed on the border instead, cut by it (entering the view)

    def __post_init__(self) -> None:
        lo, hi = self.count
        if not 0 <= lo <= hi:
            raise ConfigError(f"implant count must be 0 <= low <= high, got {self.count}")
        for name in ("point_fraction", "edge_fraction", "border_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"implant {name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("point_psf", "extended_area", "extended_psf", "aspect", "snr"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi < float("inf"):
                raise ConfigError(f"implant {name} must be a range 0 < low <= high, got {getattr(self, name)}")
        if self.margin < 0:
            raise ConfigError(f"implant margin must be >= 0, got {self.margin}")


@dataclass(frozen=True)
class Implanted:
    """One implanted target: centre, peak SNR, truth area, point or extended."""

    x: float
    y: float
    snr: float
    area: int
    point: bool


def render_target(
    rng: np.random.Generator, cfg: ImplantConfig, cx: float, cy: float, point: bool
) -> tuple[int, int, np.ndarray]:
    """(x0, y0, patch with peak 1) of a point or extended target centred at (cx, cy)."""
    theta = rng.uniform(0, np.pi)
    if point:
        return render_blob(cx, cy, POINT_OBJECT_PX, POINT_OBJECT_PX, theta, rng.uniform(*cfg.point_psf))
    area = np.exp(rng.uniform(*np.log(cfg.extended_area)))
    aspect = rng.uniform(*cfg.aspect)
    width = np.sqrt(4 * area / (np.pi * aspect))
    return render_blob(cx, cy, width * aspect, width, theta, rng.uniform(*cfg.extended_psf))


def border_place(h: int, w: int, rng: np.random.Generator) -> tuple[float, float]:
    """A centre (x, y) on a random side of an h x w frame, from ``BORDER_OUTSIDE_PX`` outside
    it to ``BORDER_INSIDE_PX`` inside, so the target is cut by the frame's edge or touches it."""
    side = int(rng.integers(4))
    depth = rng.uniform(-BORDER_OUTSIDE_PX, BORDER_INSIDE_PX)
    if side < 2:  # top, bottom
        return float(rng.uniform(0, w - 1)), float(depth if side == 0 else h - 1 - depth)
    return float(depth if side == 2 else w - 1 - depth), float(rng.uniform(0, h - 1))


def placements(
    img: np.ndarray,
    rng: np.random.Generator,
    edge_fraction: float,
    margin: int,
    n: int,
    border_fraction: float = 0.0,
) -> list[tuple[float, float]]:
    """``n`` candidate centres (x, y): ``border_fraction`` of them on the frame's border
    (:func:`border_place`), ``edge_fraction`` of the rest on the frame's strongest
    gradients ("near clutter"), the rest uniform, ``margin`` px from the border."""
    h, w = img.shape
    m = margin
    edges = None
    out = []
    for _ in range(n):
        # drawn only where asked, so that configs without border targets keep their samples
        if border_fraction > 0 and rng.random() < border_fraction:
            out.append(border_place(h, w, rng))
            continue
        if rng.random() < edge_fraction:
            if edges is None:
                g = np.hypot(ndimage.sobel(img, 0), ndimage.sobel(img, 1))
                g[:m], g[h - m :], g[:, :m], g[:, w - m :] = 0, 0, 0, 0
                # a flat region is no edge: without the > 0 a frame whose gradients are
                # mostly zero would count every pixel, the zeroed margin included
                edges = np.flatnonzero((g >= np.quantile(g, EDGE_QUANTILE)) & (g > 0))
            if edges.size:
                idx = int(edges[rng.integers(edges.size)])
                out.append((idx % w + rng.uniform(-0.5, 0.5), idx // w + rng.uniform(-0.5, 0.5)))
                continue
        out.append((rng.uniform(m, max(w - 1 - m, m)), rng.uniform(m, max(h - 1 - m, m))))
    return out


Window = tuple[slice, slice]


def clipped(x0: int, y0: int, patch_shape: tuple[int, ...], frame_shape: tuple[int, ...]) -> tuple[Window, Window]:
    """The frame's and the patch's windows of a patch whose corner is at (x0, y0), clipped
    to the frame (either may be empty)."""
    ph, pw = patch_shape
    h, w = frame_shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
    return (slice(fy0, fy1), slice(fx0, fx1)), (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))


def reserve(taken: np.ndarray, frame: Window, support: np.ndarray) -> None:
    """Mark a placed target's ``support`` (in ``frame``'s window), dilated by
    ``SEPARATION_PX``, as taken for later targets. The dilation reaches past the window
    (clipped to the frame): a target's box is often its support's own extent."""
    ys, xs = frame
    y0, x0 = max(ys.start - SEPARATION_PX, 0), max(xs.start - SEPARATION_PX, 0)
    y1, x1 = min(ys.stop + SEPARATION_PX, taken.shape[0]), min(xs.stop + SEPARATION_PX, taken.shape[1])
    grown = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    grown[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = support
    taken[y0:y1, x0:x1] |= ndimage.binary_dilation(grown, iterations=SEPARATION_PX)


def implant_targets(
    img: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    sigma: float,
    cfg: ImplantConfig | None = None,
    count: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Implanted]]:
    """Add targets to a float frame (its own units) and its bool mask; returns new arrays.

    Targets that would touch an existing target (dilated by ``SEPARATION_PX``) are
    placed elsewhere, or skipped after ``PLACEMENT_TRIES``.
    """
    cfg = cfg or ImplantConfig()
    img = np.array(img, dtype=np.float32, copy=True)
    mask = mask.copy()
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1)) if count is None else count
    taken = ndimage.binary_dilation(mask, iterations=SEPARATION_PX) if mask.any() else mask.copy()
    done: list[Implanted] = []
    for _ in range(n):
        point = rng.random() < cfg.point_fraction
        for (cx, cy) in placements(
            img, rng, cfg.edge_fraction, cfg.margin, PLACEMENT_TRIES, cfg.border_fraction
        ):
            x0, y0, patch = render_target(rng, cfg, cx, cy, point)
            frame, inside = clipped(x0, y0, patch.shape, img.shape)
            part = patch[inside]
            on = part >= TRUTH_FRACTION
            if not on.any() or taken[frame][part > 0.05].any():
                continue
            snr = float(np.exp(rng.uniform(*np.log(cfg.snr))))
            img[frame] += np.float32(snr * sigma) * part.astype(np.float32)
            mask[frame] |= on
            reserve(taken, frame, part > 0.05)
            done.append(Implanted(float(cx), float(cy), snr, int(on.sum()), point))
            break
    return img, mask, done
