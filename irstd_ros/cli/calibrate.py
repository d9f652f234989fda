"""``irstd calibrate``: parser over :func:`irstd_ros.training.calibrate.calibrate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.cli._options import (
    MASK_SUFFIX_HELP,
    add_weights,
    check_dataset_dir,
    check_distinct_paths,
    check_output_file,
    non_negative_int,
    positive_int,
    weights_input,
)
from irstd_ros.errors import ConfigError
from irstd_ros.training.calibrate import CalibrationConfig, calibrate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fit calibrated probabilities (Platt scaling folded into the head)",
        description="Fits logit' = a*logit + b on training frames and writes a new checkpoint.",
    )
    add_weights(p, "the checkpoint to calibrate", required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write (the calibrated model)")
    p.add_argument("--data", nargs="+", required=True, metavar="ROOT[:SPLIT]",
                   help="dataset folders, each with the split list to fit on (default split: train; a "
                   "held-out split, test* or val*, or one sharing its frames, is refused)")
    p.add_argument("--mask-suffix", default="", help=f"{MASK_SUFFIX_HELP} (of every --data; default: none)")
    p.add_argument("--frames", type=positive_int, default=60,
                   help="frames per dataset, chosen at random (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed of the frames' choice (default: %(default)s)")
    p.add_argument("--keep-operating-point", action="store_true",
                   help="move the checkpoint's threshold and tracker thresholds with the fit: "
                        "the same detections and tracks")
    p.add_argument("--two-piece", action="store_true",
                   help="a line fitted to the pixels a threshold decides on, a steeper one below "
                        "(the certain background); adds four element-wise ops to the graph")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out")
    sources = []
    for item in args.data:
        root, _, split = item.partition(":")
        if not root:
            raise ConfigError(f"--data {item!r}: expected ROOT or ROOT:SPLIT")
        check_dataset_dir(Path(root), "--data")
        sources.append((Path(root), split or "train"))
    check_distinct_paths([(args.out, "--out")],
                         inputs=[(weights_input(args.weights), "--weights"), *((r, "--data") for r, _ in sources)])
    fit = calibrate(CalibrationConfig(args.weights, args.out, tuple(sources), args.frames, args.seed,
                                      args.keep_operating_point, args.two_piece, args.mask_suffix))
    print(json.dumps(fit))
    return 0
