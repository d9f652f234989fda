"""Dataset evaluation: metrics at the model's threshold, a Pd-Fa curve, plots.

The network's probability map is thresholded as is (no area filtering) for
the pixel metrics, as in the paper's Table 1 and the field's code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.data import DatasetSpec, find_pairs, load_image, load_mask
from irstd_ros.errors import DatasetError
from irstd_ros.evaluation.metrics import MetricAccumulator, pd_fa_curve
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.select import create_backend
from irstd_ros.inference.detector import default_model_path

log = logging.getLogger(__name__)

CURVE_THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.05, 0.95, 19))


@dataclass
class EvalConfig:
    """An evaluation run; ``weights`` None is the shipped default model."""

    data: Path
    split: str = "test"
    weights: Path | None = None
    mask_suffix: str = ""
    threshold: float | None = None  # None: the checkpoint's own
    backend: str = "torch-cpu"
    threads: int | None = None
    out: Path | None = Path("out/eval")
    hardest: int = 8
    limit: int | None = None  # first N images only (smoke runs)
    thresholds: tuple[float, ...] = field(default=CURVE_THRESHOLDS)


def evaluate(cfg: EvalConfig) -> dict:
    """Score a checkpoint on a dataset split; writes report.json, roc.png, hardest.png."""
    weights = Path(cfg.weights) if cfg.weights else default_model_path()
    model, info, _ = load_checkpoint(weights)
    backend = create_backend(cfg.backend, model, info, BackendOptions(threads=cfg.threads))
    pairs = find_pairs(DatasetSpec(Path(cfg.data), cfg.split, cfg.mask_suffix))[: cfg.limit]
    threshold = info.threshold if cfg.threshold is None else cfg.threshold
    acc = MetricAccumulator()
    probs, truths, images, names, ious = [], [], [], [], []
    for img_path, mask_path in tqdm(pairs, desc="eval", leave=False):
        img, truth = load_image(img_path), load_mask(mask_path)
        if img.shape != truth.shape:
            raise DatasetError(f"size mismatch: {img_path.name} {img.shape} vs mask {truth.shape}")
        prob = backend.predict(img)
        ious.append(acc.update(prob > threshold, truth > 0))
        probs.append(prob.astype(np.float16))
        truths.append(truth > 0)
        images.append(img)
        names.append(img_path.stem)
    report = {
        "weights": str(weights),
        "data": str(cfg.data),
        "split": cfg.split,
        "threshold": threshold,
        "backend": backend.name,
        **acc.result(),
        "curve": pd_fa_curve(probs, truths, cfg.thresholds),
        "model": info.model.to_dict(),
    }
    if cfg.out is not None:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        order = np.argsort(ious)[: cfg.hardest]
        hard = [(names[i], images[i], truths[i], probs[i] > threshold, ious[i]) for i in order]
        report["hardest"] = [{"image": n, "iou": float(i)} for n, _, _, _, i in hard]
        (out / "report.json").write_text(json.dumps(report, indent=1))
        plot_roc(report["curve"], out / "roc.png", title=f"{weights.name} on {cfg.split}")
        plot_hardest(hard, out / "hardest.png")
        report["files"] = [str(out / f) for f in ("report.json", "roc.png", "hardest.png")]
    return report


def plot_roc(curve: list[dict], path: Path, title: str = "") -> None:
    """Pd against Fa over thresholds (the field's ROC), log-scaled Fa."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fa = [max(r["fa"], 1e-9) for r in curve]
    pd = [r["pd"] for r in curve]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(fa, pd, "o-", ms=3)
    for r, x, y in zip(curve, fa, pd):
        if r["threshold"] in (0.05, 0.5, 0.95):
            ax.annotate(f"t={r['threshold']:.2f}", (x, y), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("Fa (false-alarm pixels / all pixels)")
    ax.set_ylabel("Pd (detected targets / targets)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_hardest(rows: list[tuple], path: Path) -> None:
    """A grid: one row per image (image | truth | prediction), worst IoU first."""
    from PIL import Image, ImageDraw

    if not rows:
        return
    tiles = []
    for name, img, truth, pred, iou in rows:
        row = np.concatenate(
            [np.clip(img, 0, 1) * 255, truth * 255.0, pred * 255.0], axis=1
        ).astype(np.uint8)
        tile = Image.fromarray(row).convert("RGB")
        ImageDraw.Draw(tile).text((3, 3), f"{name} IoU {iou:.2f}", fill=(255, 64, 64))
        tiles.append(np.asarray(tile))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 2), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    Image.fromarray(np.concatenate(tiles, axis=0)).save(path)
