"""The detection envelope: where the detector stops working.

Synthetic radiometric frames (14-bit counts, temporal noise ``noise`` counts) of three
scene types -- ``flat``, ``gradient`` (a tilted sky) and ``cloud`` (the project's
generator's cloudy sky, :func:`irstd_ros.sim.scenes.make_scene`, at 16 counts per DN)
-- carry targets of one peak SNR and one size. The SNR is the peak pixel's amplitude over
the frame's pixel noise as the normalisation measures it (:func:`noise_sigma`, on the
float counts before the targets and before encoding): the temporal noise on flat and
gradient scenes, temporal noise and pixel-scale cloud texture together on cloudy ones.
``mono8``'s quantisation adds to that noise where its AGC spans many counts (gradient
and cloud: the detector sees 2-7 % less SNR). Sizes are (a point: Gaussian PSF sigma
0.5-1.5 px; or extended: ``area`` px before the PSF), rendered by the project's
implantation (:mod:`irstd_ros.sim.implant`): ``targets_per_frame`` of them at random
places at least ``MIN_SEPARATION_PX`` apart, as a real scene holds a few (the shipped
model's Pd falls in frames crowded with tens of targets, a measured limit:
docs/results.md). Each frame is sent as the camera would: ``mono16`` (the counts),
``mono8`` (a linear AGC) or ``32FC1`` (a float radiometric image at another gain and
offset). The detector sees it through the checkpoint's normalisation at full
resolution, and the report gives Pd per (scene, encoding, size, SNR), false targets per
frame, and the SNR from which Pd stays at or above 0.9 (:func:`snr_at_pd`). Each cell's
frames are drawn from the run's seed and the cell's own values (:func:`cell_rng`), so a
cell gives the same figures in any grid that holds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.core.normalization import noise_sigma, normalize
from irstd_ros.core.paths import atomic_path, write_text_atomic
from irstd_ros.errors import ConfigError
from irstd_ros.evaluation.metrics import MetricAccumulator
from irstd_ros.inference.backends.base import Backend, finite_probabilities
from irstd_ros.sim.implant import TRUTH_FRACTION, ImplantConfig, clipped, render_target
from irstd_ros.sim.scenes import make_scene
from irstd_ros.sim.sensor import SensorConfig, encode

log = logging.getLogger(__name__)

SCENE_TYPES = ("flat", "gradient", "cloud")
ENVELOPE_ENCODINGS = ("mono8", "mono16", "32FC1")
POINT = "point"
BASE_COUNTS = 3000.0  # 14-bit sky level
GRADIENT_COUNTS = 1500.0  # top-to-bottom rise of the gradient scene
CLOUD_OFFSET, CLOUD_GAIN = 3000.0, 16.0  # generator sky radiance (DN) -> counts
CLOUD_PSF_PX = 0.6
FLOAT_GAIN, FLOAT_OFFSET = 0.04, 250.0  # 32FC1: kelvin-like units
MIN_SEPARATION_PX = 40.0  # between targets of one frame
EDGE_MARGIN_PX = 16
PLACEMENT_TRIES = 200
PD_GOAL = 0.9
MIN_SIDE_PX = 2 * EDGE_MARGIN_PX + 1  # room to place a target inside the edge margins


@dataclass(frozen=True)
class EnvelopeConfig:
    """The grid of the envelope; every cell gets ``frames`` frames."""

    width: int = 640
    height: int = 512
    noise: float = 8.0  # counts, temporal noise sigma
    snrs: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0)
    sizes: tuple[str, ...] = (POINT, "9", "25", "80")  # point, or extended area in px
    scenes: tuple[str, ...] = SCENE_TYPES
    encodings: tuple[str, ...] = ENVELOPE_ENCODINGS
    targets_per_frame: int = 8
    frames: int = 4
    seed: int = 0

    def validate(self) -> None:
        """:class:`ConfigError` naming the first bad field."""
        if self.width < MIN_SIDE_PX or self.height < MIN_SIDE_PX:
            raise ConfigError(
                f"frame size {self.width}x{self.height} is too small: width and height must be "
                f">= {MIN_SIDE_PX} px (targets keep {EDGE_MARGIN_PX} px from the edges)"
            )
        for name in ("frames", "targets_per_frame"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        room = max_targets(self.width, self.height)
        if self.targets_per_frame > room:
            raise ConfigError(
                f"{self.targets_per_frame} targets per frame do not fit a {self.width}x{self.height} "
                f"frame {MIN_SEPARATION_PX:g} px apart and {EDGE_MARGIN_PX} px from the edges: at most {room}"
            )
        if not self.noise > 0:
            raise ConfigError(f"noise must be > 0, got {self.noise}")
        if not self.snrs or not all(0 < v < float("inf") for v in self.snrs):
            raise ConfigError(f"snrs must be positive numbers, got {list(self.snrs)}")
        if not self.sizes:
            raise ConfigError("sizes must not be empty")
        side = min(self.width, self.height) - 2 * EDGE_MARGIN_PX
        for size in self.sizes:
            if check_size(size) != POINT and float(size) > side * side:
                raise ConfigError(
                    f"size {size} px does not fit a {self.width}x{self.height} frame: extended "
                    f"targets must be <= {side * side} px ({side} px square inside the margins)"
                )
        for name, valid in (("scenes", SCENE_TYPES), ("encodings", ENVELOPE_ENCODINGS)):
            bad = [v for v in getattr(self, name) if v not in valid]
            if bad or not getattr(self, name):
                raise ConfigError(f"{name} {bad or 'empty'}: valid: {', '.join(valid)}")


def max_targets(width: int, height: int) -> int:
    """Targets a ``width`` x ``height`` frame holds at most, :data:`MIN_SEPARATION_PX` apart
    inside the edge margins (on a square grid; random placement may find fewer)."""
    def per_side(n: int) -> int:
        return int((n - 1 - 2 * EDGE_MARGIN_PX) // MIN_SEPARATION_PX) + 1
    return per_side(width) * per_side(height)


def check_size(size: str) -> str:
    """``size`` if it is ``point`` or a positive extended area in px, else :class:`ConfigError`."""
    if size == POINT:
        return size
    try:
        area = float(size)
    except ValueError:
        area = 0.0
    if not 0 < area < float("inf"):
        raise ConfigError(f"size {size!r}: expected {POINT!r} or a positive area in px")
    return size


def scene_counts(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Noise-free 14-bit background of ``kind`` (float counts)."""
    h, w = shape
    if kind == "flat":
        return np.full(shape, BASE_COUNTS)
    if kind == "gradient":
        return BASE_COUNTS + GRADIENT_COUNTS * np.linspace(0, 1, h)[:, None] * np.ones((1, w))
    if kind == "cloud":
        return CLOUD_OFFSET + CLOUD_GAIN * make_scene("sky", rng, shape, 10.0, CLOUD_PSF_PX).at(0, rng)
    raise ValueError(f"unknown scene {kind!r}; valid: {', '.join(SCENE_TYPES)}")


def render_encoding(counts: np.ndarray, encoding: str, rng: np.random.Generator) -> np.ndarray:
    """The frame a camera driver would publish for these counts."""
    if encoding == "mono16":
        return np.clip(np.rint(counts), 0, 16383).astype(np.uint16)
    if encoding == "mono8":
        # a linear AGC over the frame's full range: one with tail rejection clips the
        # targets themselves on flat scenes (their peak is the frame's top 0.1 %)
        return encode(counts.astype(np.float32), rng, np.dtype(np.float32), SensorConfig(), "mono8",
                      agc_percentiles=(0.0, 100.0))
    if encoding == "32FC1":
        return (counts * FLOAT_GAIN + FLOAT_OFFSET).astype(np.float32)
    raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENVELOPE_ENCODINGS)}")


def envelope_frame(
    cfg: EnvelopeConfig, scene: str, size: str, snr: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(float counts with noise and targets, truth mask) of one cell frame."""
    shape = (cfg.height, cfg.width)
    counts = scene_counts(scene, shape, rng) + cfg.noise * rng.standard_normal(shape)
    amplitude = snr * noise_sigma(counts.astype(np.float32))
    mask = np.zeros(shape, bool)
    implant = ImplantConfig(extended_area=(float(size), float(size)) if size != POINT else (4.0, 4.0))
    placed: list[tuple[float, float]] = []
    m = EDGE_MARGIN_PX
    for _ in range(PLACEMENT_TRIES):
        if len(placed) == cfg.targets_per_frame:
            break
        x, y = rng.uniform(m, cfg.width - 1 - m), rng.uniform(m, cfg.height - 1 - m)
        if any(np.hypot(x - px, y - py) < MIN_SEPARATION_PX for px, py in placed):
            continue
        placed.append((x, y))
        x0, y0, patch = render_target(rng, implant, x, y, size == POINT)
        frame, inside = clipped(x0, y0, patch.shape, shape)  # a large target may cross the edge
        counts[frame] += amplitude * patch[inside]
        mask[frame] |= patch[inside] >= TRUTH_FRACTION
    return counts, mask


def snr_at_pd(snrs: list[float], pds: list[float], goal: float = PD_GOAL) -> float | None:
    """The SNR from which Pd stays at or above ``goal``: the lowest grid SNR at which Pd
    reaches it and at every higher grid SNR too (in SNR order, whatever order the grid
    comes in), interpolated linearly from the grid SNR just below it, which fails. A pass
    followed by a failure higher up (noise) does not count. None when the top SNR fails
    (nothing is known above it). Where every grid SNR reaches it, the lowest is returned:
    an upper bound (:func:`reached_below_grid`)."""
    pairs = sorted(zip(snrs, pds))
    lasting = len(pairs)  # index of the lowest point from which every point passes
    while lasting > 0 and pairs[lasting - 1][1] >= goal:
        lasting -= 1
    if lasting == len(pairs):
        return None
    s, p = pairs[lasting]
    if lasting == 0:
        return s
    s0, p0 = pairs[lasting - 1]
    return s0 + (goal - p0) / (p - p0) * (s - s0)


def reached_below_grid(snrs: list[float], pds: list[float], goal: float = PD_GOAL) -> bool:
    """Whether Pd reaches ``goal`` at every grid SNR, the lowest included (so
    :func:`snr_at_pd` is only an upper bound: the grid says nothing below it)."""
    return bool(pds) and all(p >= goal for p in pds)


def cell_rng(seed: int, *identity: str | float | int) -> np.random.Generator:
    """A generator seeded by ``seed`` and a cell's own values (scene, size, SNR, frame,
    encoding), hashed stably (SHA-256 of their text, not Python's salted ``hash()``): a
    cell draws the same frames whichever other cells the grid holds, in every process."""
    digest = hashlib.sha256(repr(identity).encode()).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest, np.uint32).tolist()])


def run_envelope(backend: Backend, norm: Any, threshold: float, cfg: EnvelopeConfig) -> dict[str, Any]:
    """Score ``backend`` over the grid; returns the JSON-able report."""
    cfg.validate()
    cells: list[dict[str, Any]] = []
    asked = cfg.frames * cfg.targets_per_frame  # per cell
    false: dict[tuple[str, str], MetricAccumulator] = {}
    for scene in cfg.scenes:
        for size in cfg.sizes:
            for snr in cfg.snrs:
                per_enc = {e: MetricAccumulator() for e in cfg.encodings}
                cell = (scene, str(size), float(snr))  # by value: 30 and 30.0 are one cell
                for f in range(cfg.frames):
                    counts, truth = envelope_frame(cfg, scene, size, snr, cell_rng(cfg.seed, *cell, f))
                    for enc in cfg.encodings:
                        frame = render_encoding(counts, enc, cell_rng(cfg.seed, *cell, f, enc))
                        prob = backend.predict(normalize(frame, norm))
                        prob = finite_probabilities(prob, f"{scene} {enc} frame {f}")
                        pred = prob > threshold
                        per_enc[enc].update(pred, truth)
                        false.setdefault((scene, enc), MetricAccumulator()).update(pred, truth)
                for enc, acc in per_enc.items():
                    r = acc.result()
                    cells.append({"scene": scene, "encoding": enc, "size": size, "snr": snr,
                                  "pd": r["pd"], "targets": r["targets"], "targets_asked": asked,
                                  "false_targets_per_frame": r["false_targets_per_frame"]})
    short = [c for c in cells if c["targets"] < asked]
    if short:  # random placement ran out of room: say so, never a silently thinner cell
        log.warning(
            "%d of %d cells hold fewer targets than asked (as few as %d of %d): a %dx%d frame has no "
            "room for %d targets %g px apart on every try; ask for fewer (--targets)",
            len(short), len(cells), min(c["targets"] for c in short), asked, cfg.width, cfg.height,
            cfg.targets_per_frame, MIN_SEPARATION_PX,
        )
    summary = []
    for scene in cfg.scenes:
        for enc in cfg.encodings:
            for size in cfg.sizes:
                rows = [c for c in cells if (c["scene"], c["encoding"], c["size"]) == (scene, enc, size)]
                snrs, pds = [c["snr"] for c in rows], [c["pd"] for c in rows]
                summary.append({"scene": scene, "encoding": enc, "size": size,
                                "snr_at_pd90": snr_at_pd(snrs, pds),
                                "below_grid": reached_below_grid(snrs, pds),
                                "grid_top_snr": max(snrs, default=None)})  # None above: not by it
    fpf = {f"{s}/{e}": acc.result()["false_targets_per_frame"] for (s, e), acc in false.items()}
    points = [c for c in cells if c["size"] == POINT and c["snr"] >= 6]
    return {
        "config": asdict(cfg),
        "threshold": threshold,
        "cells": cells,
        "snr_at_pd90": summary,
        "false_targets_per_frame": fpf,
        "goal_point_snr6": {
            "min_pd": min((c["pd"] for c in points), default=None),
            "max_false_targets_per_frame": max((v for v in fpf.values() if v is not None), default=None),
        },
    }


def plot_envelope(report: dict[str, Any], path: Path, title: str = "") -> None:
    """Pd against SNR, one panel per (scene, encoding), one curve per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    scenes, encs = cfg["scenes"], cfg["encodings"]
    fig, axes = plt.subplots(len(scenes), len(encs), figsize=(3.2 * len(encs), 2.6 * len(scenes)),
                             dpi=100, squeeze=False, sharex=True, sharey=True)
    for i, scene in enumerate(scenes):
        for j, enc in enumerate(encs):
            ax = axes[i][j]
            for size in cfg["sizes"]:
                rows = [c for c in report["cells"] if (c["scene"], c["encoding"], c["size"]) == (scene, enc, size)]
                ax.plot([c["snr"] for c in rows], [c["pd"] for c in rows], "o-", ms=3,
                        label=size if size == POINT else f"{size} px")
            ax.axhline(PD_GOAL, color="k", lw=0.6, ls="--")
            ax.set_xscale("log")
            fpf = report["false_targets_per_frame"][f"{scene}/{enc}"]
            ax.set_title(f"{scene}, {enc}: {fpf:.2f} false/frame", fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            if i == len(scenes) - 1:
                ax.set_xlabel("peak SNR")
            if j == 0:
                ax.set_ylabel("Pd")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_envelope(report: dict[str, Any], out: Path, title: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "envelope.json", json.dumps(report, indent=1))
    plot_envelope(report, out / "envelope.png", title)
    return [out / "envelope.json", out / "envelope.png"]
