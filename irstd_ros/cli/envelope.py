"""``irstd envelope``: Pd against SNR x size x encoding x scene, and false targets per frame."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from irstd_ros.cli._options import (
    check_network_options,
    check_output_dir,
    positive_float,
    positive_int,
    probability,
)
from irstd_ros.core.constants import WEIGHTS_HELP
from irstd_ros.errors import ConfigError
from irstd_ros.evaluation.envelope import (
    MIN_SIDE_PX,
    EnvelopeConfig,
    check_size,
    run_envelope,
    write_envelope,
)
from irstd_ros.evaluation.evaluate import EvalConfig, build_scorer


def _side(text: str) -> int:
    """argparse ``type``: a frame side in px, at least :data:`MIN_SIDE_PX`."""
    value = positive_int(text)
    if value < MIN_SIDE_PX:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_SIDE_PX} px, got {text}")
    return value


def _size(text: str) -> str:
    """argparse ``type``: ``point`` or an extended area in px."""
    try:
        return check_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "envelope", help="detection envelope: where the detector stops working",
        description="Synthetic 14-bit scenes (flat, gradient, cloud) with targets of known peak "
        "SNR and size, sent as mono8, mono16 and 32FC1. Writes envelope.json and envelope.png.",
    )
    p.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    p.add_argument("--method", default="network", choices=("network", "tophat"))
    p.add_argument("--backend", default="auto")
    p.add_argument("--threshold", type=probability, help="default: the checkpoint's own")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--width", type=_side, default=640)
    p.add_argument("--height", type=_side, default=512)
    p.add_argument("--frames", type=positive_int, default=4, help="frames per cell")
    p.add_argument("--targets", type=positive_int, default=8, help="targets per frame")
    p.add_argument("--snrs", type=positive_float, nargs="+", help="peak SNR grid")
    p.add_argument("--sizes", type=_size, nargs="+", help="'point' and/or extended areas in px")
    p.add_argument("--out", type=Path, default=Path("out/envelope"))
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> EnvelopeConfig:
    """The envelope's grid: SNRs in order and sizes as given, each once (a repeat would be
    a second cell, and a second row in the summary)."""
    cfg = EnvelopeConfig(width=args.width, height=args.height, frames=args.frames,
                         targets_per_frame=args.targets)
    if args.snrs:
        cfg = replace(cfg, snrs=tuple(sorted(set(args.snrs))))
    if args.sizes:
        cfg = replace(cfg, sizes=tuple(dict.fromkeys(args.sizes)))
    cfg.validate()
    return cfg


def format_snr_at_pd90(row: dict) -> str:
    """A summary row's SNR for Pd 0.9 as a bound where the grid bounds it: ``<= 2.0`` (met
    at the lowest grid SNR), ``> 30`` (not met by the highest), else the interpolated value."""
    snr = row["snr_at_pd90"]
    if snr is None:
        top = row.get("grid_top_snr")
        return "not in the grid" if top is None else f"> {top:g} (not reached within the grid)"
    return f"<= {snr:.1f}" if row.get("below_grid") else f"{snr:.1f}"


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_network_options(args)
    check_output_dir(args.out, "--out")
    backend, norm, threshold, described = build_scorer(
        EvalConfig(data=Path("."), weights=args.weights, method=args.method, backend=args.backend,
                   threshold=args.threshold, threads=args.threads)
    )
    report = run_envelope(backend, norm, threshold, cfg)
    report["scorer"] = described
    files = write_envelope(report, args.out, title=f"{described.get('weights', 'tophat')}")
    if args.json:
        print(json.dumps({"snr_at_pd90": report["snr_at_pd90"], "false_targets_per_frame":
                          report["false_targets_per_frame"], "goal_point_snr6": report["goal_point_snr6"]}))
    else:
        for row in report["snr_at_pd90"]:
            print(f"{row['scene']:9s} {row['encoding']:7s} {row['size']:6s} Pd>=0.9 at SNR "
                  + format_snr_at_pd90(row))
        for k, v in report["false_targets_per_frame"].items():
            print(f"false targets per frame {k}: {v:.3f}")
        for f in files:
            print(f"wrote {f}")
    return 0
