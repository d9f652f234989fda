"""``irstd mine``: parser over :func:`irstd_ros.evaluation.mining.mine_hard_examples`."""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.evaluation.mining import (
    MINING_THRESHOLD,
    MiningConfig,
    mine_hard_examples,
    write_hard_examples,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mine", help="false targets and misses of a model on a training split, for hard-example training",
        description="Writes a JSON file that a training source names as `hard:` (see config/train/).",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default="train", help="split list name (default: train; never mine the split you report)")
    p.add_argument("--weights", type=Path, help="checkpoint (default: the shipped model)")
    p.add_argument("--mask-suffix", default="", help="generic layout: mask name suffix")
    p.add_argument("--threshold", type=float, help=f"score threshold (default: {MINING_THRESHOLD})")
    p.add_argument("--backend", default="auto", help="inference backend (default: the fastest available)")
    p.add_argument("--threads", type=int)
    p.add_argument("--limit", type=int, help="first N images only")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = mine_hard_examples(
        MiningConfig(
            data=args.data, split=args.split, weights=args.weights, mask_suffix=args.mask_suffix,
            threshold=args.threshold, backend=args.backend, threads=args.threads, limit=args.limit,
        )
    )
    path = write_hard_examples(report, args.out)
    print(f"{report['false_targets']} false targets and {report['missed_targets']} missed targets "
          f"in {len(report['frames'])} of {report['images']} images; wrote {path}")
    return 0
