"""``irstd eval``: parser over :func:`irstd_ros.evaluation.evaluate.evaluate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.cli._options import (
    OWN_THRESHOLD_HELP,
    add_json,
    add_method,
    add_model_on_data,
    check_dataset_dir,
    check_distinct_paths,
    check_network_options,
    check_output_dir,
    weights_input,
)
from irstd_ros.core.statistics import format_number
from irstd_ros.evaluation.evaluate import EvalConfig, evaluate

SUMMARY_KEYS = (
    "iou", "niou", "precision", "recall", "f1", "pd", "fa", "false_targets_per_frame",
    "false_targets_per_mpx", "false_targets_per_background_frame",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="IoU, nIoU, F1, Pd, Fa of a model on a dataset split",
        description="Without --weights, evaluates the shipped default model.",
    )
    add_model_on_data(p, "test", OWN_THRESHOLD_HELP)
    add_method(p)
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="leave out the top-hat reference the network's report shows beside it, scored on "
                   "the same frames (a few seconds per hundred frames; default: shown)")
    p.add_argument("--out", type=Path, default=Path("out/eval"),
                   help="report folder: report.json, roc.png, reliability.png, hardest.png (default: %(default)s)")
    add_json(p, "the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_network_options(args)
    check_dataset_dir(args.data, "--data")
    check_output_dir(args.out, "--out")
    check_distinct_paths([(args.out, "--out")],  # the report folder: not inside the dataset
                         inputs=[(args.data, "--data"), (weights_input(args.weights), "--weights")])
    report = evaluate(
        EvalConfig(
            data=args.data, split=args.split, weights=args.weights, mask_suffix=args.mask_suffix,
            threshold=args.threshold, backend=args.backend, method=args.method,
            threads=args.threads, out=args.out, limit=args.limit, reference=args.reference,
        )
    )
    if args.json:
        skip = ("curve", "hardest", "calibration", "model")
        summary = {k: v for k, v in report.items() if k not in skip}
        summary["ece"] = report["calibration"]["ece"]
        print(json.dumps(summary))
    else:
        print(scored_line(args, report))
        print("  ".join(f"{k} {format_number(report[k], '.4g', 'undefined')}" for k in SUMMARY_KEYS))
        print(f"ece {format_number(report['calibration']['ece'], '.4g', 'undefined')}  (threshold {report['threshold']}, backend {report['backend']})")
        ref = report.get("reference")
        if ref is not None:
            print("tophat reference: " + "  ".join(f"{k} {format_number(ref[k], '.4g', 'undefined')}"
                                                   for k in SUMMARY_KEYS))
        for f in report.get("files", []):
            print(f"wrote {f}")
    return 0


def scored_line(args: argparse.Namespace, report: dict) -> str:
    """What was scored: ``664 images, 1071 targets (split test: <data>/50_50/test.txt)``,
    or ``... (split all: every image, no list)``; ``--limit`` said when it cut the split."""
    listed = report["split_list"]
    source = listed if listed is not None else "every image, no list"
    limit = f", --limit {args.limit}" if args.limit is not None else ""
    images, targets = report["images"], report["targets"]
    return (f"{images} image{'s' if images != 1 else ''}, {targets} target{'s' if targets != 1 else ''} "
            f"(split {args.split}: {source}{limit})")

