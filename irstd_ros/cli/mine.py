"""``irstd mine``: parser over :func:`irstd_ros.evaluation.mining.mine_hard_examples`."""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.cli._options import (
    add_model_on_data,
    check_dataset_dir,
    check_distinct_paths,
    check_output_file,
    weights_input,
)
from irstd_ros.evaluation.evaluate import EvalConfig
from irstd_ros.evaluation.mining import MINING_THRESHOLD, mine_hard_examples, write_hard_examples


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mine", help="false targets and misses of a model on a training split, for hard-example training",
        description="Writes a JSON file that a training source names as `hard:` (see config/train/). "
        "Mine training splits only, never the split you report on: a held-out split (a list named "
        "test* or val*: NUDT-SIRST's test, SIRST-v2's val, BasicIRSTD's test_NUDT-SIRST, SIRST-v1's "
        "idx_427/test), or one holding any of its frames (trainval, all), is refused, since a "
        "training mixture crops around the places mined.",
    )
    add_model_on_data(p, "train", f"detection threshold, a probability in (0, 1) (default: {MINING_THRESHOLD}, "
                      "or the checkpoint's own where lower)")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_dataset_dir(args.data, "--data")
    check_output_file(args.out, "--out")
    check_distinct_paths([(args.out, "--out")],
                         inputs=[(args.data, "--data"), (weights_input(args.weights), "--weights")])
    report = mine_hard_examples(
        EvalConfig(
            data=args.data, split=args.split, weights=args.weights, mask_suffix=args.mask_suffix,
            threshold=args.threshold, backend=args.backend, threads=args.threads, out=None,
            limit=args.limit,
        )
    )
    path = write_hard_examples(report, args.out)
    print(f"{report['false_targets']} false targets and {report['missed_targets']} missed targets "
          f"in {len(report['frames'])} of {report['images']} images; wrote {path}")
    return 0
