"""Dataset evaluation, streaming: metrics at the model's threshold, a Pd-Fa curve,
calibration, false targets per frame, and crops of the hardest misses and false targets.

Frames are read in their own units (:func:`irstd_ros.data.images.read_image`),
normalised by the checkpoint's rule (:func:`irstd_ros.core.normalize`) exactly as the
node does, and run at full resolution. Memory stays bounded whatever the set's size:
only running sums and a few small crops are kept. The probability map is thresholded
as is (no area filtering) for the pixel metrics, as in the paper's Table 1 and the
field's code. ``method="tophat"`` scores the classical reference
(:class:`~irstd_ros.inference.classical.TopHatBackend`) on the same data.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.core.normalization import normalize
from irstd_ros.core.paths import atomic_path, write_text_atomic
from irstd_ros.core.pillow import RESAMPLING
from irstd_ros.data import DatasetSpec, find_pairs
from irstd_ros.data.datasets import split_list
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.errors import ConfigError, DatasetError
from irstd_ros.evaluation.metrics import (
    CalibrationAccumulator,
    CurveAccumulator,
    MetricAccumulator,
    TargetMatch,
    peak_near,
)
from irstd_ros.inference.backends.base import Backend, BackendOptions, finite_probabilities
from irstd_ros.inference.backends.select import create_backend
from irstd_ros.inference.classical import TOPHAT_NORM, TOPHAT_THRESHOLD, TopHatBackend
from irstd_ros.inference.detector import resolve_model_path
from irstd_ros.inference.resources import available_cores

log = logging.getLogger(__name__)

CURVE_THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.05, 0.95, 19))
METHODS = ("network", "tophat")
CROP_PX = 48  # side of a hard-case crop
ROC_FA_FLOOR = 1e-9  # where the ROC's log axis starts when no Fa was measured above 0
ZERO_FA_DECADE = 10.0  # Fa 0 drawn this factor below the smallest measured
CROP_ZOOM = 3  # crops are enlarged this much in hardest.png
DISPLAY_RANGE = (-1.0, 4.0)  # normalised input shown black..white


@dataclass
class EvalConfig:
    """An evaluation run; ``weights`` None is the shipped default model."""

    data: Path
    split: str = "test"
    weights: Path | None = None
    mask_suffix: str = ""
    threshold: float | None = None  # None: the checkpoint's own (0.5 for tophat)
    backend: str = "auto"
    method: str = "network"  # network | tophat
    threads: int | None = None
    out: Path | None = Path("out/eval")
    hardest: int = 8  # crops of missed targets and of false targets, each
    limit: int | None = None  # first N images only (smoke runs)
    thresholds: tuple[float, ...] = field(default=CURVE_THRESHOLDS)
    reference: bool = True  # the network's report also scores the top-hat on the same frames

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")


@dataclass(order=True)
class HardCase:
    """One crop around a missed or false target; ``priority`` orders the keepers."""

    priority: float
    label: str = field(compare=False)
    tiles: np.ndarray = field(compare=False, repr=False)


class HardCases:
    """The ``n`` hardest misses (lowest score at the target) and the ``n`` most confident
    false targets (highest score), each scored by :func:`~irstd_ros.evaluation.metrics.peak_near`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.missed: list[HardCase] = []
        self.false: list[HardCase] = []

    def _push(self, heap: list[HardCase], case: HardCase) -> None:
        if len(heap) < self.n:
            heapq.heappush(heap, case)
        elif case > heap[0]:
            heapq.heapreplace(heap, case)

    def add(self, name: str, x: np.ndarray, truth: np.ndarray, prob: np.ndarray, thr: float, m: TargetMatch) -> None:
        if self.n <= 0:
            return
        for kind, centres, heap in (("miss", m.missed, self.missed), ("false", m.false, self.false)):
            for cy, cx in centres:
                sl = crop_slices(x.shape, cy, cx)
                # the score at this place (as mining reads it), not the crop's brightest
                # neighbour: a miss beside a detected target is no less a miss
                score = peak_near(prob, cy, cx)
                # misses: the lower the network's score there, the harder; false: the higher
                priority = -score if kind == "miss" else score
                if len(heap) >= self.n and priority <= heap[0].priority:
                    continue
                tiles = np.concatenate(
                    [_display(x[sl]), truth[sl] * 255.0, (prob[sl] > thr) * 255.0], axis=1
                ).astype(np.uint8)
                self._push(heap, HardCase(priority, f"{name} {kind} p={score:.2f}", tiles))

    def rows(self) -> list[HardCase]:
        return sorted(self.missed, reverse=True) + sorted(self.false, reverse=True)


def crop_slices(shape: tuple[int, ...], cy: float, cx: float) -> tuple[slice, slice]:
    h, w = shape
    y0 = int(np.clip(round(cy) - CROP_PX // 2, 0, max(h - CROP_PX, 0)))
    x0 = int(np.clip(round(cx) - CROP_PX // 2, 0, max(w - CROP_PX, 0)))
    return slice(y0, y0 + CROP_PX), slice(x0, x0 + CROP_PX)


def _display(x: np.ndarray) -> np.ndarray:
    lo, hi = DISPLAY_RANGE
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # unreadable: read_image raises the clear error later
        return (0, 0)


def build_scorer(cfg: EvalConfig) -> tuple[Backend, Any, float, dict[str, Any]]:
    """(backend, input norm, threshold, description) for the method of ``cfg``."""
    if cfg.method == "tophat":
        backend: Backend = TopHatBackend()
        threshold = TOPHAT_THRESHOLD if cfg.threshold is None else cfg.threshold
        return backend, TOPHAT_NORM, threshold, {"method": "tophat", **backend.describe()}
    weights = resolve_model_path(cfg.weights)
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(threads=cfg.threads or available_cores(), dynamic_shapes=True)
    backend = create_backend(cfg.backend, model, info, options)
    threshold = info.threshold if cfg.threshold is None else cfg.threshold
    described = {"method": "network", "weights": str(weights), "model": info.model.to_dict(),
                 "norm": info.norm.__dict__, "data_seen": info.extra.get("data")}
    return backend, info.norm, threshold, described


def frame_pairs(cfg: EvalConfig) -> list[tuple[Path, Path]]:
    """(image, mask) files of ``cfg``'s split, at most ``cfg.limit``; callers look them up
    before loading the model too, so that a wrong folder or split fails at once."""
    return find_pairs(DatasetSpec(Path(cfg.data), cfg.split, cfg.mask_suffix))[: cfg.limit]


def read_frames(
    pairs: list[tuple[Path, Path]], desc: str
) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, raw frame, truth mask) of each pair, frames of one size together, so
    that a backend that compiles per shape compiles each once."""
    for img_path, mask_path in tqdm(sorted(pairs, key=lambda p: _image_size(p[0])), desc=desc, leave=False):
        raw, truth = read_image(img_path), read_mask(mask_path)
        if raw.shape != truth.shape:
            raise DatasetError(f"size mismatch: {img_path.name} {raw.shape} vs mask {truth.shape}")
        yield img_path, raw, truth


def scored_frames(
    cfg: EvalConfig, backend: Backend, norm: Any, desc: str, pairs: list[tuple[Path, Path]] | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(stem, network input, truth mask, probabilities) of each frame of ``cfg``'s split
    (``pairs``: its :func:`frame_pairs`, when the caller looked them up already), at full
    resolution (:func:`read_frames`). A frame whose probabilities are not all finite is a
    :class:`~irstd_ros.errors.BackendError`, never silent background."""
    for img_path, raw, truth in read_frames(frame_pairs(cfg) if pairs is None else pairs, desc):
        x, prob = score_frame(backend, norm, raw, img_path.name)
        yield img_path.stem, x, truth, prob


def score_frame(backend: Backend, norm: Any, raw: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(network input, probabilities) of the raw frame ``name``; non-finite probabilities
    are a :class:`~irstd_ros.errors.BackendError`
    (:func:`~irstd_ros.inference.backends.base.finite_probabilities`)."""
    x = normalize(raw, norm)
    return x, finite_probabilities(backend.predict(x), name)


def evaluate(cfg: EvalConfig) -> dict:
    """Score a checkpoint (or the top-hat) on a dataset split; writes report.json,
    roc.png, reliability.png and hardest.png under ``cfg.out``. The report names the
    split's list file scored (``split_list``; None: every image of a folder without one)."""
    pairs = frame_pairs(cfg)  # a wrong folder or split fails before the model loads
    listed = split_list(DatasetSpec(Path(cfg.data), cfg.split, cfg.mask_suffix))  # the list read: for the report
    backend, norm, threshold, described = build_scorer(cfg)
    acc, curve, calib = MetricAccumulator(), CurveAccumulator(cfg.thresholds), CalibrationAccumulator()
    hard = HardCases(cfg.hardest if cfg.out is not None else 0)
    tophat = TopHatBackend() if cfg.reference and cfg.method == "network" else None
    ref = MetricAccumulator()
    for img_path, raw, truth in read_frames(pairs, "eval"):
        x, prob = score_frame(backend, norm, raw, img_path.name)
        _, match = acc.add(prob > threshold, truth)
        curve.update(prob, truth)
        calib.update(prob, truth)
        hard.add(img_path.stem, x, truth, prob, threshold, match)
        if tophat is not None:  # on the same frames, its own input and threshold
            ref.add(tophat.predict(normalize(raw, TOPHAT_NORM)) > TOPHAT_THRESHOLD, truth)
    report: dict[str, Any] = {
        "data": str(cfg.data),
        "split": cfg.split,
        "split_list": None if listed is None else str(listed),  # None: every image, no list
        "threshold": threshold,
        "backend": backend.name,
        **described,
        **acc.result(),
        "calibration": calib.result(),
        "curve": curve.rows(),
    }
    if tophat is not None:  # what the network adds over the classical reference
        report["reference"] = {"method": "tophat", "threshold": TOPHAT_THRESHOLD, **ref.result()}
    if cfg.out is not None:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = hard.rows()
        report["hardest"] = [r.label for r in rows]
        write_text_atomic(out / "report.json", json.dumps(report, indent=1))
        name = Path(described.get("weights", "tophat")).name
        plot_roc(report["curve"], out / "roc.png", title=f"{name} on {cfg.split}")
        plot_reliability(report["calibration"], out / "reliability.png")
        plot_hardest(rows, out / "hardest.png")
        report["files"] = [str(out / f) for f in ("report.json", "roc.png", "reliability.png", "hardest.png")]
    return report


def roc_points(curve: list[dict]) -> tuple[list[dict], list[float], list[bool]]:
    """(rows where Pd and Fa are defined, their Fa as plotted, whether each Fa is 0): Fa 0
    has no place on a log axis, so it is drawn :data:`ZERO_FA_DECADE` below the smallest
    measured Fa (below :data:`ROC_FA_FLOOR` when none is) and flagged, never passed off as
    a measured point."""
    rows = [r for r in curve if r["pd"] is not None and r["fa"] is not None]
    floor = min((r["fa"] for r in rows if r["fa"] > 0), default=ROC_FA_FLOOR) / ZERO_FA_DECADE
    return rows, [r["fa"] if r["fa"] > 0 else floor for r in rows], [r["fa"] == 0 for r in rows]


def plot_roc(curve: list[dict], path: Path, title: str = "") -> None:
    """Pd against Fa over thresholds (the field's ROC), log-scaled Fa."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, fa, zero = roc_points(curve)
    pd = [r["pd"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(fa, pd, "-", color="C0")
    ax.plot([x for x, z in zip(fa, zero) if not z], [y for y, z in zip(pd, zero) if not z], "o", ms=3, color="C0")
    if any(zero):
        ax.plot([x for x, z in zip(fa, zero) if z], [y for y, z in zip(pd, zero) if z], "o", ms=5,
                mfc="none", color="C0", label="Fa 0 (no false pixel), placed left of the measured")
        ax.legend(fontsize=7, loc="lower right")
    for r, x, y in zip(rows, fa, pd):
        if r["threshold"] in (0.05, 0.5, 0.95):
            ax.annotate(f"t={r['threshold']:.2f}", (x, y), fontsize=7)
    if not rows:  # a background-only set: Pd has no targets to count
        ax.text(0.5, 0.5, "Pd undefined: no targets in this set\n(false targets in report.json)",
                ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.set_xscale("log")
    ax.set_xlabel("Fa (false-alarm pixels / all pixels)")
    ax.set_ylabel("Pd (detected targets / targets)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def plot_reliability(calibration: dict, path: Path) -> None:
    """Reliability diagram: fraction of target pixels against mean probability per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in calibration["bins"] if b["pixels"]]
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot([b["mean_prob"] for b in bins], [b["target_fraction"] for b in bins], "o-")
    ece = calibration["ece"]
    ax.set_title(f"reliability, ECE {ece:.3f}" if ece is not None else "reliability", fontsize=9)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction of target pixels")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def plot_hardest(rows: list[HardCase], path: Path) -> None:
    """A grid of crops (input | truth | prediction), misses first, then false targets."""
    from PIL import ImageDraw

    if not rows:
        with atomic_path(path) as tmp:
            Image.new("RGB", (CROP_PX * 3 * CROP_ZOOM, 24)).save(tmp)
        return
    tiles = []
    for row in rows:
        tile = Image.fromarray(row.tiles).convert("RGB")
        tile = tile.resize((tile.width * CROP_ZOOM, tile.height * CROP_ZOOM), RESAMPLING.NEAREST)
        ImageDraw.Draw(tile).text((3, 3), row.label, fill=(255, 64, 64))
        tiles.append(np.asarray(tile))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 2), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(tiles, axis=0)).save(tmp)
