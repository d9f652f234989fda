"""Post-hoc calibration: make the network's probability mean something.

SoftIoU training drives logits to large magnitudes, so probabilities are 0 or 1 and
the threshold does nothing. Platt scaling fits ``logit' = a * logit + b`` by weighted
binary cross-entropy on training frames (full resolution, the checkpoint's own
normalisation) and folds it into the head's 1x1 conv: the exported graphs and every
backend get calibrated scores at no run-time cost. The fit and the frames it used are
stored in the checkpoint (``extra.calibration``), with the input's measured
``extra.metrics`` moved there as ``metrics_before``: they scored the probabilities before
the fit, not the output's.

Pixels: every target pixel and every pixel the network scores above
:data:`CANDIDATE_LOGIT` (the ones that decide Pd and Fa), plus a random
:data:`BACKGROUND_RATE` of the rest, weighted back by ``1 / BACKGROUND_RATE``. (Fitting
the pixels above :data:`CANDIDATE_LOGIT` alone calibrates them well but flattens the
map, so that the certain background reaches p 0.05-0.1: docs/results.md, "One line
cannot calibrate both".)

``keep_operating_point`` moves the checkpoint's threshold with the fit
(``t' = sigmoid(a * logit(t) + b)``), so the detections at the new threshold are the
old ones, and its tracker thresholds (candidate, gated) alike, so the tracks are too.
A calibrated checkpoint can be calibrated again (the affine maps compose, and the
earlier fit is kept as ``previous``).

``two_piece`` fits the line on the pixels above :data:`CANDIDATE_LOGIT` alone (chosen by
score, targets or not: the pixels a threshold decides on), and below that cut a steeper
line through the same point, its slope fitted on all the sampled pixels, the weighted
background included (:class:`~irstd_ros.models.heads.LogitKnee`; the model config gains
``logit_knee``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.core.normalization import normalize
from irstd_ros.data import DatasetSpec, find_pairs
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.errors import ConfigError, DatasetError
from irstd_ros.evaluation.splits import check_not_held_out
from irstd_ros.inference.backends.base import prepare_input
from irstd_ros.models import build_model
from irstd_ros.models.heads import LogitKnee

log = logging.getLogger(__name__)

CANDIDATE_LOGIT = -6.0  # p > 0.25 %: pixels that may become detections
BACKGROUND_RATE = 0.01
SCALE_BOUNDS = (0.02, 5.0)
OFFSET_BOUNDS = (-20.0, 20.0)
KNEE_SLOPE_BOUNDS = (1.0, 50.0)
# a model file's stamp of the weights it describes (release, recipe, operating point): moved into
# the calibration record, as it no longer describes the calibrated weights
STAMP_KEYS = ("version", "recipe", "operating_point")


@dataclass(frozen=True)
class CalibrationConfig:
    """Which frames to fit on: ``frames`` per source, chosen at random with ``seed``."""

    weights: Path
    out: Path
    sources: tuple[tuple[Path, str], ...]  # (dataset root, split)
    frames: int = 60
    seed: int = 0
    keep_operating_point: bool = False  # move the threshold so detections stay the same
    two_piece: bool = False  # a line for the candidates, a steeper one below (LogitKnee)
    mask_suffix: str = ""  # generic layout: a mask is named <image stem><mask_suffix>


def _logits(model: torch.nn.Module, x: np.ndarray, stride: int) -> np.ndarray:
    t, size = prepare_input(x, stride)
    with torch.inference_mode():
        out = model(t)
    return out[..., : size[0], : size[1]][0, 0].float().numpy()


def collect(
    model: torch.nn.Module, info, pairs: Sequence[tuple[Path, Path]], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, labels, weights) of the sampled pixels of ``pairs``."""
    zs, ys, ws = [], [], []
    for img_path, mask_path in pairs:
        img, mask = read_image(img_path), read_mask(mask_path)
        if img.shape != mask.shape:  # flattened, a transposed mask would fit pixel for pixel
            raise DatasetError(f"size mismatch: {img_path.name} is {img.shape}, its mask {mask.shape}")
        z = _logits(model, normalize(img, info.norm), info.model.stride).ravel()
        y = mask.ravel()
        keep = y | (z > CANDIDATE_LOGIT)
        extra = ~keep & (rng.random(z.size) < BACKGROUND_RATE)
        for sel, weight in ((keep, 1.0), (extra, 1.0 / BACKGROUND_RATE)):
            zs.append(z[sel])
            ys.append(y[sel])
            ws.append(np.full(int(sel.sum()), weight))
    return np.concatenate(zs), np.concatenate(ys).astype(np.float64), np.concatenate(ws)


def fit_platt(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the weighted BCE of ``sigmoid(a z + b)`` within :data:`SCALE_BOUNDS`
    and :data:`OFFSET_BOUNDS` (a fit stopped at a bound is logged as a warning)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = params
        s = a * z + b
        p = expit(s)  # 1 / (1 + exp(-s)) overflows (a warning) below s = -709
        loss = np.sum(w * (np.logaddexp(0.0, s) - y * s))
        g = w * (p - y)
        return float(loss / w.sum()), np.array([np.sum(g * z), np.sum(g)]) / w.sum()

    res = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                   bounds=[SCALE_BOUNDS, OFFSET_BOUNDS])
    a, b = float(res.x[0]), float(res.x[1])
    if a in SCALE_BOUNDS or b in OFFSET_BOUNDS:  # clamped: not the best fit, and a sign of bad data
        log.warning("the calibration fit stopped at its bound (a=%.4g in [%g, %g], b=%.4g in [%g, %g]): "
                    "not the best fit of these pixels, whose scores rank targets over background "
                    "barely, inversely or perfectly",
                    a, *SCALE_BOUNDS, b, *OFFSET_BOUNDS)
    return a, b


def knee_map(u: np.ndarray, knee: float, slope: float) -> np.ndarray:
    """:class:`LogitKnee` in NumPy: ``min(u, knee + slope * (u - knee))``."""
    return np.minimum(u, knee + slope * (u - knee))


def fit_two_piece(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """(a, b, knee, slope): ``sigmoid(min(u, knee + slope * (u - knee)))``, ``u = a z + b``,
    with (a, b) fitted on the pixels above :data:`CANDIDATE_LOGIT`, the knee at that cut
    and the slope on every pixel (weighted BCE)."""
    from scipy.optimize import minimize_scalar

    above = z > CANDIDATE_LOGIT
    if not (y[above].any() and not y[above].all()):
        raise ConfigError("a two-piece calibration needs targets and false alarms above the "
                          f"cut (logit {CANDIDATE_LOGIT:g}); these frames lack one or the other")
    a, b = fit_platt(z[above], y[above], np.ones(int(above.sum())))
    knee = a * CANDIDATE_LOGIT + b
    u = a * z + b

    def nll(slope: float) -> float:
        v = knee_map(u, knee, slope)
        return float(np.sum(w * (np.logaddexp(0.0, v) - y * v)) / w.sum())

    slope = minimize_scalar(nll, bounds=KNEE_SLOPE_BOUNDS, method="bounded").x
    return a, b, float(knee), float(slope)


def _with_knee(model: torch.nn.Module, info: CheckpointInfo) -> torch.nn.Module:
    """The same network with an (identity) :class:`LogitKnee` after its logits."""
    if info.model.logit_knee:
        raise ConfigError("the checkpoint already has a two-piece calibration: calibrate it "
                          "with one line on top, or start from the checkpoint before it")
    info.model = replace(info.model, logit_knee=True)
    new = build_model(info.model)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("knee.") for k in missing), (missing, unexpected)
    return new.eval()


def calibrate(cfg: CalibrationConfig) -> dict:
    """Fit, fold into the head, save to ``cfg.out``; returns the fit's description.
    ``cfg.weights`` may name a shipped model (``tiny``, ``fast``). A held-out split, or
    one holding frames of it, is a :class:`ConfigError` before the fit
    (:func:`~irstd_ros.evaluation.splits.check_not_held_out`): the calibrated threshold
    would be fitted to the frames results are reported on."""
    from irstd_ros.inference.detector import resolve_model_path

    model, info, _ = load_checkpoint(resolve_model_path(cfg.weights))
    if getattr(model, "fold_logit_affine", None) is None:
        raise ConfigError(f"{cfg.weights}: the model has no layer to fold the calibration into")
    if cfg.two_piece:
        model = _with_knee(model, info)
    rng = np.random.default_rng(cfg.seed)
    pairs: list[tuple[Path, Path]] = []
    for root, split in cfg.sources:
        check_not_held_out(Path(root), split, "a calibration fitted there")
        found = find_pairs(DatasetSpec(Path(root), split, cfg.mask_suffix))
        pick = rng.choice(len(found), size=min(cfg.frames, len(found)), replace=False)
        pairs += [found[i] for i in sorted(pick)]
    z, y, w = collect(model, info, pairs, rng)
    if not y.any():
        raise ConfigError("the calibration frames give no target pixels to fit on")
    knee: float | None = None
    slope = 1.0
    if cfg.two_piece:
        a, b, knee, slope = fit_two_piece(z, y, w)
    else:
        a, b = fit_platt(z, y, w)
    cast(Callable[[float, float], None], model.fold_logit_affine)(a, b)
    record: dict = {"method": "platt"}
    if knee is not None:
        layer = model.knee
        assert isinstance(layer, LogitKnee)
        layer.set(knee, slope)
        record.update(method="platt-two-piece", knee=knee, slope=slope)
    record.update({
        "a": a, "b": b, "frames": len(pairs), "frames_per_source": cfg.frames, "seed": cfg.seed,
        "sources": [{"root": str(r), "split": s, **({"mask_suffix": cfg.mask_suffix} if cfg.mask_suffix else {})}
                    for r, s in cfg.sources],
        "pixels": int(z.size), "target_pixels": int(y.sum()),
    })
    if cfg.keep_operating_point:  # the detection and tracker thresholds cut where they did
        record["threshold_before"] = info.threshold
        info.threshold = operating_point(info.threshold, a, b, knee, slope)
        candidate, gated = info.own_tracking_thresholds()
        info.candidate_threshold = operating_point(candidate, a, b, knee, slope)
        info.gated_threshold = operating_point(gated, a, b, knee, slope)
    if "metrics" in info.extra:  # measured before the fit (ECE, detections at the threshold)
        record["metrics_before"] = info.extra.pop("metrics")
    if "calibration" in info.extra:
        record["previous"] = info.extra["calibration"]
    # what described the input, not these weights and threshold: kept in the record
    before = {k: info.extra.pop(k) for k in STAMP_KEYS if k in info.extra}
    if before:
        record["stamp_before"] = before
    info.extra.pop("train_state", None)  # a run's state: calibrated weights resume no run
    info.extra["calibration"] = record
    save_checkpoint(cfg.out, model, info)
    log.info("calibration a=%.4f b=%.3f from %d frames, %d pixels; threshold %.4f",
             a, b, len(pairs), z.size, info.threshold)
    return record


def operating_point(threshold: float, a: float, b: float, knee: float | None = None, slope: float = 1.0) -> float:
    """The threshold that, after ``logit' = a * logit + b`` (then the knee, if any), cuts
    where ``threshold`` did."""
    from scipy.special import expit, logit

    v = a * logit(min(max(threshold, 1e-7), 1.0 - 1e-7)) + b
    return float(expit(v if knee is None else knee_map(v, knee, slope)))


__all__ = ["CalibrationConfig", "calibrate", "collect", "fit_platt", "fit_two_piece", "operating_point"]
