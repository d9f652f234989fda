"""Sequence-level tracking metrics against ground truth with target ids.

Truth and hypotheses are, per frame (header stamp, ns), lists of :class:`Point`
(id, sub-pixel position). They are matched frame by frame by py-motmetrics (Hungarian
on the squared Euclidean distance, at most ``match_px`` apart, keeping last frame's matches when
still valid), which gives MOTA, IDF1 and ID switches. From its match events:

* ``pd``: truth instances (target, frame) matched by a hypothesis;
* ``pd_after_warmup``: the same over instances whose target has been visible for at
  least ``warmup_s`` (a tracker needs a few frames to confirm a track);
* ``false_tracks``: hypothesis ids matched to truth in fewer than half of their frames;
  ``false_tracks_per_min`` divides by the sequence's duration. Fed per-frame detections
  with ids unique to each detection, this counts single-frame false detections;
* ``id_switches_per_100_target_s``: ID switches per 100 target-seconds of truth.

A figure whose denominator is empty is undefined and reported as ``None`` (JSON null),
never as 0 nor NaN (as :mod:`irstd_ros.evaluation.metrics`): every figure of
:data:`TARGET_METRICS` of a sequence without truth instances (clutter alone: only its
false tracks are defined, as the per-frame Pd of a background-only set is), the rate per
minute of a single frame (its duration is unknown).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from irstd_ros.core.stamps import NS_PER_S
from irstd_ros.core.statistics import ratio

DEFAULT_MATCH_PX = 5.0
DEFAULT_WARMUP_S = 1.0
FALSE_TRACK_MATCHED_FRACTION = 0.5
# the figures that need a truth instance (None without any): all but the false tracks and
# the counts of frames, time and hypotheses
TARGET_METRICS = (
    "pd", "pd_after_warmup", "id_switches", "id_switches_per_100_target_s", "mota",
    "position_rms_px", "idf1", "mostly_tracked", "mostly_lost",
)


@dataclass(frozen=True)
class Point:
    id: str
    x: float
    y: float




def _finite(v: Any) -> float | None:
    """A motmetrics figure, ``None`` where it is undefined (NaN, or MOTA's -inf without
    truth objects)."""
    v = float(v)
    return v if np.isfinite(v) else None


def _frame_period_s(stamps: Sequence[int]) -> float:
    if len(stamps) < 2:
        return 0.0
    return float(np.median(np.diff(np.asarray(stamps, dtype=np.int64)))) / NS_PER_S


def tracking_metrics(
    truth: Mapping[int, Sequence[Point]],
    hyps: Mapping[int, Sequence[Point]],
    *,
    match_px: float = DEFAULT_MATCH_PX,
    warmup_s: float = DEFAULT_WARMUP_S,
) -> dict[str, Any]:
    """Metrics over the frames of ``truth`` (a frame missing from ``hyps`` has no
    hypotheses); JSON-ready."""
    import motmetrics as mm  # a large import (pandas): only when scoring

    stamps = sorted(truth)
    # motmetrics keeps ids in float columns: map ours (any strings) to integers
    oids: dict[str, int] = {}
    hids: dict[str, int] = {}
    acc = mm.MOTAccumulator(auto_id=False)
    first_seen: dict[str, int] = {}
    instances: dict[tuple[int, str], bool] = {}  # (frame, truth id) -> after warmup
    for frame, s in enumerate(stamps):
        objs, hs = truth[s], hyps.get(s, ())
        for o in objs:
            first_seen.setdefault(o.id, s)
            instances[(frame, o.id)] = (s - first_seen[o.id]) / NS_PER_S >= warmup_s
        a = np.array([[o.x, o.y] for o in objs], float).reshape(-1, 2)
        b = np.array([[h.x, h.y] for h in hs], float).reshape(-1, 2)
        dist = mm.distances.norm2squared_matrix(a, b, max_d2=match_px**2)
        acc.update(
            [oids.setdefault(o.id, len(oids)) for o in objs],
            [hids.setdefault(h.id, len(hids)) for h in hs],
            dist,
            frameid=frame,
        )

    summary = mm.metrics.create().compute(
        acc,
        metrics=[
            "mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses",
            "num_objects", "num_unique_objects", "mostly_tracked", "mostly_lost",
        ],
        name="seq",
    ).iloc[0]
    events = acc.mot_events
    matched = events[events["Type"].isin(["MATCH", "SWITCH"])]
    oid_names = {v: k for k, v in oids.items()}
    hid_names = {v: k for k, v in hids.items()}
    matched_instances = {
        (int(f), oid_names[int(o)]) for (f, _), o in zip(matched.index, matched["OId"])
    }
    hyp_frames: Counter[str] = Counter()
    for s in stamps:
        hyp_frames.update(h.id for h in hyps.get(s, ()))
    hyp_matched: Counter[str] = Counter(hid_names[int(h)] for h in matched["HId"])
    false_ids = [
        h for h, n in hyp_frames.items() if hyp_matched[h] < FALSE_TRACK_MATCHED_FRACTION * n
    ]
    period = _frame_period_s(stamps)
    duration_s = (stamps[-1] - stamps[0]) / NS_PER_S + period if stamps else 0.0
    target_s = len(instances) * period
    warm = [k for k, after in instances.items() if after]
    switches = int(summary["num_switches"])
    per_target: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key in instances:
        per_target[key[1]][0] += 1
        per_target[key[1]][1] += key in matched_instances
    metrics = {
        "match_px": match_px,
        "warmup_s": warmup_s,
        "frames": len(stamps),
        "duration_s": duration_s,
        "truth_instances": len(instances),
        "truth_targets": len(per_target),
        "pd": ratio(len(matched_instances), len(instances)),
        "pd_after_warmup": ratio(sum(k in matched_instances for k in warm), len(warm)),
        "hypotheses": len(hyp_frames),
        "false_tracks": len(false_ids),
        "false_tracks_per_min": ratio(len(false_ids), duration_s / 60.0),
        "false_positive_instances": int(summary["num_false_positives"]),
        "id_switches": switches,
        "id_switches_per_100_target_s": ratio(100.0 * switches, target_s),
        "mota": _finite(summary["mota"]),
        "position_rms_px": _finite(np.sqrt(summary["motp"])),
        "idf1": _finite(summary["idf1"]),
        "mostly_tracked": int(summary["mostly_tracked"]),
        "mostly_lost": int(summary["mostly_lost"]),
    }
    if not instances:  # motmetrics' 0 switches, IDF1 0 of hypotheses alone: undefined
        metrics.update(dict.fromkeys(TARGET_METRICS))
    return metrics
