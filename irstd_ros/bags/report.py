"""The human-readable summary of an ``irstd eval-bag`` result (CLI and demo)."""

from __future__ import annotations

from irstd_ros.core.statistics import format_number


def format_table(r: dict) -> str:
    """A short human-readable summary of an evaluation result ("-" for an undefined
    figure, such as Pd of a sequence without targets)."""
    lat = r.get("latency_ms")
    unmatched = r.get("outputs_without_truth")
    lines = [
        f"frames      {r['frames']} scored, {r['frames_missing']} without output"
        + (f", {unmatched} outputs without a truth frame" if unmatched else ""),
    ]
    by_topic = r.get("frames_missing_by_topic")
    if by_topic:
        lines.append(
            "            of those "
            + ", ".join(f"{n} without {topic}" for topic, n in by_topic.items())
            + " (left out of their figures)"
        )
    lines += [
        f"targets     {r['targets']} ({r['detected']} detected)",
        f"Pd          {format_number(r['pd'], '.4f')}",
        f"Fa          {format_number(r['fa'], '.3e')}  ({r['false_px']} false-alarm pixels)",
        f"IoU / nIoU  {format_number(r['iou'], '.4f')} / {format_number(r['niou'], '.4f')}",
    ]
    if lat:
        lines.append(
            f"latency ms  mean {lat['mean']:.1f}, p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, "
            f"max {lat['max']:.1f} ({r['latency_source']})"
        )
    if r.get("tracking"):
        lines += format_tracking(r["tracking"])
    return "\n".join(lines)


def format_tracking(t: dict) -> list[str]:
    """Rows of the tracking metrics, detections ("no tracking") beside tracks."""
    d, k = t["detections"], t["tracks"]
    rows = [
        ("Pd", "pd", ".4f"),
        (f"Pd after {k['warmup_s']:g} s", "pd_after_warmup", ".4f"),
        ("false /min", "false_tracks_per_min", ".1f"),
        ("false (count)", "false_tracks", "d"),
        ("ID switches", "id_switches", "d"),
        ("  /100 tgt-s", "id_switches_per_100_target_s", ".2f"),
        ("MOTA", "mota", ".4f"),
        ("IDF1", "idf1", ".4f"),
    ]
    out = [
        f"tracking    match {k['match_px']:g} px, {k['truth_targets']} targets, "
        f"{k['duration_s']:.1f} s; tracks: {t['tracks_source']}"
        + (f", candidates > {t['candidate_threshold']:g}" if t.get("candidate_threshold") else "")
        + (f", gated > {t['gated_threshold']:g}" if t.get("gated_threshold") else ""),
        f"  {'':14s} {'detections':>12s} {'tracks':>12s}",
    ]
    if d.get("frames") != k.get("frames"):  # a topic without a message of some frames: fewer scored
        rows.insert(0, ("frames", "frames", "d"))
    out += [f"  {name:14s} {format_number(d[key], fmt):>12s} {format_number(k[key], fmt):>12s}" for name, key, fmt in rows]
    return out
