"""Weight averaging ("model soup", Wortsman et al., ICML 2022) of checkpoints.

Runs fine-tuned from one starting point stay in one loss basin, so the average of their
weights is a model of its own, often better than each run and exactly as fast. Here it
combines runs of one recipe that trade real-frame false targets against dim points
(docs/results.md, "Label-keeping distillation").

Every input must hold the same architecture and input normalisation, and be another
network: a file given twice (by any path) or a copy of one (the same weights) is refused.
Floating-point tensors (weights and BatchNorm statistics) are averaged with the given
coefficients; integer buffers (BatchNorm's step counter) are taken from the first input. A Platt
calibration folded into a head is a weight like any other, so averaging calibrated
inputs mixes their calibrations: average the uncalibrated runs, then run ``irstd
calibrate`` on the result. A two-piece calibration's knee (``logit_knee``) is no weight:
it is left out, so the result is the plain network and can be calibrated again, with
or without ``--two-piece``. The output records its parents under ``extra.soup``: path,
weights digest, coefficient and each parent's own run metadata (data, training config,
recipe, version, a GPU run's trainer and device, a widened start's init; and its
calibration and its own parents, so that a soup of soups still knows which weights hold a
folded calibration). Its ``extra.data`` (the data it saw) lists every parent's. Of the
first input it keeps the remaining metadata, but not its calibration, metrics and
resume state, which no longer describe the average.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.fingerprint import weights_digest
from irstd_ros.inference.detector import resolve_model_path
from irstd_ros.models import ModelConfig

log = logging.getLogger(__name__)

# metadata of the first input that does not describe the average
STALE_KEYS = ("calibration", "metrics", "train_state", "operating_point")
# metadata of one training run (a GPU run's trainer and device, a widened start's init
# included): kept per parent, never as the average's own
RUN_KEYS = ("data", "train_config", "recipe", "version", "trainer", "device", "init")


@dataclass(frozen=True)
class SoupConfig:
    """Inputs, output and one coefficient per input (None: all equal)."""

    weights: tuple[Path, ...]
    out: Path
    coefficients: tuple[float, ...] | None = None


def soup_coefficients(count: int, given: Sequence[float] | None) -> tuple[float, ...]:
    """The coefficients to use: equal by default, else the given ones, which must be
    positive, one per input, and sum to 1 (within 1e-6)."""
    if count < 2:
        raise ConfigError(f"a weight average needs at least two checkpoints, got {count}")
    if given is None:
        return (1.0 / count,) * count
    if len(given) != count:
        raise ConfigError(f"{len(given)} coefficients for {count} checkpoints; give one per checkpoint")
    if any(not math.isfinite(c) or c <= 0 for c in given):
        raise ConfigError(f"coefficients must be positive numbers, got {list(given)}")
    if abs(sum(given) - 1.0) > 1e-6:
        raise ConfigError(f"coefficients must sum to 1, got {list(given)} (sum {sum(given):.6g})")
    return tuple(float(c) for c in given)


def average_models(
    models: Sequence[nn.Module], coefficients: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The coefficient-weighted average of the models' state dicts (float tensors;
    others from the first model). The models must share one architecture."""
    states = [m.state_dict() for m in models]
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            out[key] = first.clone()
            continue
        acc = torch.zeros_like(first, dtype=torch.float64)
        for c, state in zip(coefficients, states):
            acc += c * state[key].to(torch.float64)
        out[key] = acc.to(first.dtype)
    return out


def _differences(first: ModelConfig, other: ModelConfig) -> str:
    """The fields in which ``other`` differs from ``first``: ``"stem: 2 vs 1, refine: 8 vs 0"``."""
    return ", ".join(
        f"{f.name}: {_shown(getattr(other, f.name))} vs {_shown(getattr(first, f.name))}"
        for f in fields(first)
        if _shown(getattr(other, f.name)) != _shown(getattr(first, f.name))
    )


def _shown(value: object) -> str:
    return str(list(value)) if isinstance(value, (tuple, list)) else str(value)


def _check_alike(paths: Sequence[Path], infos: Sequence[CheckpointInfo]) -> None:
    ref_model, ref_norm = infos[0].model, infos[0].norm
    for path, info in zip(paths[1:], infos[1:]):
        if info.model.to_dict() != ref_model.to_dict():
            raise ConfigError(
                f"{path} holds a different network than {paths[0]} "
                f"({_differences(ref_model, info.model)}); "
                "only checkpoints of one architecture can be averaged"
            )
        if info.norm != ref_norm:
            raise ConfigError(f"{path} uses a different input normalisation than {paths[0]}")


def _check_distinct(paths: Sequence[Path], keys: Sequence[object], relation: str) -> None:
    """:class:`ConfigError` naming both when two inputs share a key (resolved path, weights
    digest): averaging a checkpoint with itself weights it twice and records a soup of
    checkpoints it is not."""
    seen: dict[object, Path] = {}
    for path, key in zip(paths, keys):
        if key in seen:
            raise ConfigError(f"checkpoint {path} {relation} {seen[key]}; "
                              "a soup averages different checkpoints, each given once")
        seen[key] = path


def holds_calibration(extra: dict[str, Any]) -> bool:
    """Whether a checkpoint's weights hold a folded calibration: its own, or one of a
    parent's, however deep in a soup of soups (the parents' records keep theirs)."""
    record = extra.get("soup")  # a file's metadata: any JSON value, not only ours
    parents = record.get("parents") if isinstance(record, dict) else None
    return "calibration" in extra or (
        isinstance(parents, list) and any(isinstance(p, dict) and holds_calibration(p) for p in parents)
    )


def soup(config: SoupConfig) -> dict[str, Any]:
    """Average the checkpoints of ``config`` into ``config.out``; returns ``extra.soup``."""
    coefficients = soup_coefficients(len(config.weights), config.coefficients)
    paths = [resolve_model_path(w) for w in config.weights]
    _check_distinct(paths, [p.resolve() for p in paths], "is the same file as")  # before reading any
    loaded = [load_checkpoint(p) for p in paths]
    models, infos = [m for m, _, _ in loaded], [i for _, i, _ in loaded]
    digests = [weights_digest(m, i) for m, i in zip(models, infos)]  # each file's, knee and all
    kneed: list[Path] = []
    averaged = list(digests)  # the weights that are averaged: without a knee
    for n, (path, model, info) in enumerate(zip(paths, models, infos)):
        if info.model.logit_knee:
            # a two-piece calibration's knee is no weight to average (each was fit to its own
            # network): left out, as by init_from, so that the result can be calibrated again
            model.knee = None  # type: ignore[assignment]  # out of its state dict and its forward
            info.model = replace(info.model, logit_knee=False)
            model.config = info.model  # type: ignore[assignment]  # what it now is
            kneed.append(path)
            averaged[n] = weights_digest(model, info)
    _check_alike(paths, infos)
    # a copy (its knee aside): the same network twice
    _check_distinct(paths, averaged, "holds the same weights as")
    for path in kneed:
        log.warning("%s: its two-piece calibration's knee is left out of the average; "
                    "calibrate the result (irstd calibrate --two-piece)", path)
    calibrated = [str(p) for p, i in zip(paths, infos) if holds_calibration(i.extra)]
    if calibrated:
        log.warning("averaging calibrated checkpoints mixes their calibrations (%s hold one, "
                    "folded into their weights); run irstd calibrate on the result", ", ".join(calibrated))
    parents = [
        {"path": str(p), "weights_sha256": d, "coefficient": c}
        | {k: i.extra[k] for k in (*RUN_KEYS, "calibration", "soup") if k in i.extra}
        for p, d, i, c in zip(paths, digests, infos, coefficients)
    ]
    model = models[0]
    model.load_state_dict(average_models(models, coefficients))
    skip = (*STALE_KEYS, *RUN_KEYS)
    extra = {k: v for k, v in infos[0].extra.items() if k not in skip}
    extra["data"] = [i.extra.get("data") for i in infos]
    extra["soup"] = {"parents": parents}
    first = infos[0]  # its operating point whole: detection and tracker thresholds together
    others = [str(p) for p, i in zip(paths[1:], infos[1:]) if _thresholds(i) != _thresholds(first)]
    if others:
        log.warning("the average takes %s's thresholds %s; %s had others: choose the operating "
                    "point on the average (irstd calibrate)", paths[0], _thresholds(first), ", ".join(others))
    info = CheckpointInfo(
        model=first.model, norm=first.norm, threshold=first.threshold, extra=extra,
        candidate_threshold=first.candidate_threshold, gated_threshold=first.gated_threshold,
    )
    save_checkpoint(config.out, model, info)
    log.info("averaged %d checkpoints into %s", len(paths), config.out)
    return extra["soup"]


__all__ = ["RUN_KEYS", "STALE_KEYS", "SoupConfig", "average_models", "holds_calibration", "soup", "soup_coefficients"]


def _thresholds(info: CheckpointInfo) -> tuple[float, float | None, float | None]:
    """A model file's operating point: detection, candidate and gated thresholds."""
    return (info.threshold, info.candidate_threshold, info.gated_threshold)
