"""``irstd envelope``: Pd against SNR x size x encoding x scene, and false targets per frame."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from irstd_ros.cli._options import (
    OWN_THRESHOLD_HELP,
    add_backend,
    add_json,
    add_method,
    add_threads,
    add_weights,
    check_distinct_paths,
    check_network_options,
    check_output_dir,
    check_output_outside_datasets,
    positive_float,
    positive_int,
    probability,
    weights_input,
)
from irstd_ros.errors import ConfigError
from irstd_ros.evaluation.envelope import (
    MIN_SIDE_PX,
    EnvelopeConfig,
    check_size,
    run_envelope,
    write_envelope,
)
from irstd_ros.evaluation.evaluate import EvalConfig, build_scorer

_GRID = EnvelopeConfig()  # the defaults


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
    add_weights(p)
    add_method(p)
    add_backend(p)
    p.add_argument("--threshold", type=probability, help=OWN_THRESHOLD_HELP)
    add_threads(p)
    p.add_argument("--width", type=_side, default=_GRID.width, metavar="PX",
                   help=f"frame width, px, at least {MIN_SIDE_PX} (default: %(default)s)")
    p.add_argument("--height", type=_side, default=_GRID.height, metavar="PX",
                   help=f"frame height, px, at least {MIN_SIDE_PX} (default: %(default)s)")
    p.add_argument("--frames", type=positive_int, default=_GRID.frames,
                   help="frames per cell of the grid (default: %(default)s)")
    p.add_argument("--targets", type=positive_int, default=_GRID.targets_per_frame,
                   help="targets per frame (default: %(default)s)")
    p.add_argument("--snrs", type=positive_float, nargs="+", metavar="SNR",
                   help=f"peak SNR grid (default: {' '.join(f'{v:g}' for v in _GRID.snrs)})")
    p.add_argument("--sizes", type=_size, nargs="+", metavar="SIZE",
                   help=f"target sizes: 'point' and/or extended areas in px (default: {' '.join(_GRID.sizes)})")
    p.add_argument("--out", type=Path, default=Path("out/envelope"),
                   help="report folder: envelope.json and envelope.png (default: %(default)s)")
    add_json(p, "the summary")
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
    """A summary row's SNR from which Pd stays at 0.9 or above
    (:func:`~irstd_ros.evaluation.envelope.snr_at_pd`), as a bound where the grid bounds it:
    ``<= 2.0`` (met at every grid SNR, the lowest included), ``> 30`` (not met at the
    highest), else the interpolated value."""
    snr = row["snr_at_pd90"]
    if snr is None:
        top = row.get("grid_top_snr")
        return "not in the grid" if top is None else f"> {top:g} (not reached within the grid)"
    return f"<= {snr:.1f}" if row.get("below_grid") else f"{snr:.1f}"


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_network_options(args)
    # first: --out at the --weights file is named as that input, not only as a file
    check_distinct_paths([(args.out, "--out")], inputs=[(weights_input(args.weights), "--weights")])
    check_output_outside_datasets(args.out, "--out")
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
