"""``irstd soup``: parser over :func:`irstd_ros.training.soup.soup`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from irstd_ros.cli._options import add_json, check_distinct_paths, check_output_file, positive_float
from irstd_ros.inference.detector import resolve_model_path
from irstd_ros.training.soup import SoupConfig, soup


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soup", help="average the weights of checkpoints of one architecture",
        description="Writes the weighted average of two or more checkpoints of one network "
        "(a model soup). Average uncalibrated runs, then run irstd calibrate on the result.",
    )
    p.add_argument("weights", type=Path, nargs="+", help="checkpoint files (at least two different ones)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write (the average)")
    p.add_argument("--coefficients", type=positive_float, nargs="+", metavar="C",
                   help="one per checkpoint, summing to 1 (default: equal)")
    add_json(p, "the soup's whole provenance record (its parents' own, nested)")
    p.set_defaults(func=run)


def summary(out: Path, record: dict[str, Any]) -> str:
    """What ``soup`` wrote, in a few lines: the output, then each parent's coefficient and path."""
    parents = record["parents"]
    lines = [f"wrote {out}: the average of {len(parents)} checkpoints"]
    lines += [f"  {p['coefficient']:.4g} x {p['path']}" for p in parents]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out")
    check_distinct_paths([(args.out, "--out")], inputs=[(resolve_model_path(w), "checkpoint") for w in args.weights])
    coefficients = tuple(args.coefficients) if args.coefficients else None
    record = soup(SoupConfig(tuple(args.weights), args.out, coefficients))
    print(json.dumps(record) if args.json else summary(args.out, record))
    return 0
