"""Sensor augmentation: what different IR cameras do to the same scene.

:func:`degrade` adds temporal noise, optical blur and column and row fixed-pattern noise
(stripes) to a float frame; :func:`encode` renders it the way a camera driver would publish it:
as is, 14-bit radiometric counts (gain, offset), 8-bit through a linear AGC, or
float32 at an arbitrary gain. Integer sources are dithered by half a step first, so
re-encoding does not invent a noise-free staircase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from irstd_ros.core.fields import Number
from irstd_ros.errors import ConfigError

ENCODINGS = ("native", "mono16", "mono8", "float")
MAX_14BIT = 16383
MAX_8BIT = 255
AGC_PERCENTILES = (0.1, 99.9)  # linear AGC range of the 8-bit rendering
PROBABILITY = Number(low=0, high=1)
AMOUNT = Number(low=0)  # a range's ends


@dataclass(frozen=True)
class SensorConfig:
    """Probabilities and ranges of the augmentations (noise in units of the frame's sigma)."""

    noise_prob: float = 0.5
    noise: tuple[float, float] = (0.3, 1.5)
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 0.8)
    fpn_prob: float = 0.2  # column offsets
    fpn: tuple[float, float] = (0.2, 1.0)
    row_fpn_prob: float = 0.0  # row offsets (horizontal stripes); 0: off, as in every recipe before real_v8
    row_fpn: tuple[float, float] = (0.2, 1.0)
    encoding_probs: tuple[float, float, float, float] = (0.4, 0.25, 0.2, 0.15)  # ENCODINGS order
    counts_per_unit: tuple[float, float] = (2.0, 40.0)  # mono16 gain
    counts_offset: tuple[float, float] = (500.0, 6000.0)

    def __post_init__(self) -> None:
        """Every field checked (and a numeric string converted) when made: YAML overrides
        arrive unchecked, and a wrong value is a :class:`ConfigError` naming it, not a
        traceback while samples are drawn."""
        for name in ("noise_prob", "blur_prob", "fpn_prob", "row_fpn_prob"):
            object.__setattr__(self, name, PROBABILITY(f"sensor {name}", getattr(self, name)))
        for name in ("noise", "blur_sigma", "fpn", "row_fpn", "counts_per_unit", "counts_offset"):
            v = getattr(self, name)
            ends = _numbers(v, AMOUNT)
            if ends is None or len(ends) != 2 or ends[0] > ends[1]:
                raise ConfigError(f"sensor {name} must be a range 0 <= low <= high, got {v!r}")
            object.__setattr__(self, name, ends)
        p = _numbers(self.encoding_probs, PROBABILITY)
        if p is None or len(p) != len(ENCODINGS) or not math.isclose(sum(p), 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"sensor encoding_probs must be {len(ENCODINGS)} probabilities summing to 1 "
                f"({', '.join(ENCODINGS)}), got {self.encoding_probs!r}"
            )
        object.__setattr__(self, "encoding_probs", p)


def _numbers(values: object, rule: Number) -> tuple[float, ...] | None:
    """``values`` (a list or tuple) as floats each within ``rule``, else None."""
    if not isinstance(values, (list, tuple)):
        return None
    try:
        return tuple(float(rule.convert(v)) for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def degrade(img: np.ndarray, rng: np.random.Generator, sigma: float, cfg: SensorConfig) -> np.ndarray:
    """Blur, column and row FPN and extra temporal noise on a float32 frame (its own units)."""
    out = np.array(img, dtype=np.float32, copy=True)
    if rng.random() < cfg.blur_prob:
        out = ndimage.gaussian_filter(out, rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.fpn_prob:
        out += np.float32(rng.uniform(*cfg.fpn) * sigma) * rng.standard_normal((1, out.shape[1])).astype(
            np.float32
        )
    if cfg.row_fpn_prob > 0 and rng.random() < cfg.row_fpn_prob:  # off: no draw, older recipes' streams unchanged
        out += np.float32(rng.uniform(*cfg.row_fpn) * sigma) * rng.standard_normal((out.shape[0], 1)).astype(
            np.float32
        )
    if rng.random() < cfg.noise_prob:
        out += np.float32(rng.uniform(*cfg.noise) * sigma) * rng.standard_normal(out.shape).astype(np.float32)
    return out


def _dn_units(x: np.ndarray, native: np.dtype) -> np.ndarray:
    """``x`` in the 8-bit DN that ``counts_per_unit`` is per: an 8-bit source as it is; any
    other (16-bit counts, float radiance) with its range mapped to 0..255, since its own
    units would put a 16-bit frame far above 14 bits (every pixel clipped) and a 0..1
    float frame on a few dozen counts (its noise and targets rounded away)."""
    if np.dtype(native) == np.uint8:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - np.float32(lo)) * np.float32(MAX_8BIT / max(hi - lo, 1e-6))


def encode(
    img: np.ndarray,
    rng: np.random.Generator,
    native: np.dtype,
    cfg: SensorConfig,
    encoding: str | None = None,
    agc_percentiles: tuple[float, float] = AGC_PERCENTILES,
) -> np.ndarray:
    """Render a float frame as one of :data:`ENCODINGS` (drawn when ``encoding`` is None);
    ``mono8`` maps ``agc_percentiles`` of the frame linearly to 0..255; ``mono16`` is
    ``offset + gain x DN`` counts (``counts_offset``, ``counts_per_unit``) clipped to 14
    bits, a source that is not 8-bit first brought to 8-bit DN (its range to 0..255)."""
    if encoding is None:
        encoding = ENCODINGS[int(rng.choice(len(ENCODINGS), p=cfg.encoding_probs))]
    if encoding == "native":
        if np.issubdtype(native, np.integer):
            # clipped in float64: in float32 the bounds of 32-bit integers round up (2**32 - 1
            # to 2**32), and a pixel there wrapped round (to 0, or to -2**31)
            info = np.iinfo(native)
            hi = float(info.max)
            if hi > info.max:  # int64's largest is no float64: the largest float below it
                hi = math.nextafter(hi, 0.0)
            return np.clip(np.rint(img.astype(np.float64)), float(info.min), hi).astype(native)
        return img.astype(np.float32)
    x = img.astype(np.float32)
    if np.issubdtype(native, np.integer):
        x = x + rng.uniform(-0.5, 0.5, x.shape).astype(np.float32)
    if encoding == "mono16":
        offset = rng.uniform(*cfg.counts_offset)
        counts = offset + rng.uniform(*cfg.counts_per_unit) * _dn_units(x, native)
        return np.clip(np.rint(counts), 0, MAX_14BIT).astype(np.uint16)
    if encoding == "mono8":
        lo, hi = np.percentile(x, agc_percentiles)
        scale = MAX_8BIT / max(float(hi - lo), 1e-6)
        return np.clip(np.rint((x - lo) * scale), 0, MAX_8BIT).astype(np.uint8)
    if encoding == "float":
        return (x * np.float32(rng.uniform(1e-3, 10.0)) + np.float32(rng.uniform(-100, 100))).astype(np.float32)
    raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
