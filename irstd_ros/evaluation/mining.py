"""Hard-example mining: where a model raises false targets or misses, on training frames.

A checkpoint is run over a dataset split at full resolution (the node's normalisation
and backend). Each false target (a predicted component matched to no true target)
and each missed target is recorded by its centroid, with the network's peak score
there (within the matching distance, :data:`~irstd_ros.evaluation.metrics.MATCH_DISTANCE`). The JSON it writes is read by the training mixture
(:class:`irstd_ros.data.mixture.SourceSpec` ``hard``), which then centres a share of
its crops on these places: real clutter the model confuses with targets (power lines,
cloud edges, lamps) becomes hard negatives, and real targets it misses are seen more
often. Mine only training splits, never the split you report on: a held-out split, or
one sharing frames with it, is refused (:func:`~irstd_ros.evaluation.splits.check_not_held_out`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from irstd_ros.core.paths import write_text_atomic
from irstd_ros.data.mixture import HARD_FORMAT
from irstd_ros.evaluation.evaluate import EvalConfig, build_scorer, frame_pairs, scored_frames
from irstd_ros.evaluation.metrics import match_components, peak_near
from irstd_ros.evaluation.splits import check_not_held_out

MINING_THRESHOLD = 0.3  # below the operating threshold: near-false alarms count too


def mine_hard_examples(cfg: EvalConfig) -> dict[str, Any]:
    """``{"frames": {stem: {"false": [[y, x, score], ...], "miss": [[y, x, score], ...]}}}``
    plus a description of the run and counts; frames without a hard example are left out.

    ``cfg`` as for :func:`~irstd_ros.evaluation.evaluate.evaluate`; its ``split`` must be
    a training split: a held-out one (a list named ``test*``, ``val*``: ``test``,
    ``test_NUDT-SIRST``, ``idx_427/test``), or one holding frames of it, is a
    :class:`~irstd_ros.errors.ConfigError` before the model loads. ``threshold`` None is
    :data:`MINING_THRESHOLD`, or the checkpoint's own threshold where that is lower (what it raises at run time is mined); ``out`` is unused."""
    check_not_held_out(cfg.data, cfg.split, "hard examples mined there")
    pairs = frame_pairs(cfg)  # a wrong folder or split fails before the model loads
    backend, norm, operating, described = build_scorer(cfg)
    threshold = min(MINING_THRESHOLD, operating) if cfg.threshold is None else cfg.threshold
    frames: dict[str, dict[str, list[list[float]]]] = {}
    n_images = n_false = n_miss = 0
    for stem, _, truth, prob in scored_frames(cfg, backend, norm, "mine", pairs):
        n_images += 1
        match = match_components(prob > threshold, truth)
        entry: dict[str, list[list[float]]] = {}
        for kind, centres in (("false", match.false), ("miss", match.missed)):
            rows = []
            for cy, cx in centres:
                score = peak_near(prob, cy, cx)
                rows.append([round(float(cy), 1), round(float(cx), 1), round(score, 4)])
            if rows:
                entry[kind] = rows
        n_false += len(match.false)
        n_miss += len(match.missed)
        if entry:
            frames[stem] = entry
    return {
        "format": HARD_FORMAT,
        "data": str(cfg.data),
        "split": cfg.split,
        "threshold": threshold,
        "backend": backend.name,
        "weights": described.get("weights"),
        "images": n_images,
        "false_targets": n_false,
        "missed_targets": n_miss,
        "frames": frames,
    }


def write_hard_examples(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(report, indent=1))
    return path
