"""``irstd eval-bag``: Pd, Fa, IoU (and latency) of a run against the truth in a bag."""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.bags.evaluate import EvalBagConfig, evaluate_bag, plot_over_time, write_json
from irstd_ros.bags.io import IMAGE_TOPIC, TRUTH_MASK_TOPIC

STDOUT = "-"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-bag",
        help="score recorded outputs (or the detector) against a bag's truth",
        description="Score detections against the truth of a generated bag, matching frames by "
        "header stamp: from recorded node outputs (--outputs) or by running the detector.",
    )
    p.add_argument("--truth", type=Path, required=True, help="bag with the image and truth topics")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--outputs", type=Path, help="bag of recorded node outputs")
    src.add_argument("--run-detector", action="store_true", help="run the detector over the frames")
    p.add_argument(
        "--weights", type=Path, help="checkpoint for --run-detector (default: shipped model)"
    )
    p.add_argument("--backend", default="auto", help="inference backend for --run-detector")
    p.add_argument(
        "--save-outputs",
        type=Path,
        metavar="BAG",
        help="with --run-detector: also write the outputs as the node would",
    )
    p.add_argument("--image-topic", default=IMAGE_TOPIC)
    p.add_argument("--truth-mask-topic", default=TRUTH_MASK_TOPIC)
    p.add_argument("--mask-topic", help="output mask topic (default: the */mask Image topic)")
    p.add_argument(
        "--json",
        nargs="?",
        const=STDOUT,
        metavar="FILE",
        help="print the metrics as JSON (or write them to FILE)",
    )
    p.add_argument("--plot", type=Path, metavar="PNG", help="Pd and Fa over time")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = EvalBagConfig(
        truth=args.truth,
        outputs=args.outputs,
        run_detector=args.run_detector,
        weights=args.weights,
        backend=args.backend,
        image_topic=args.image_topic,
        truth_mask_topic=args.truth_mask_topic,
        mask_topic=args.mask_topic,
        save_outputs=args.save_outputs,
        progress=True,
    )
    result = evaluate_bag(cfg)
    if args.plot:
        plot_over_time(result, args.plot)
    if args.json == STDOUT:
        print(write_json(result, None))
        return 0
    if args.json:
        write_json(result, Path(args.json))
    print(format_table(result))
    return 0


def format_table(r: dict) -> str:
    """A short human-readable summary of an evaluation result."""
    lat = r.get("latency_ms")
    lines = [
        f"frames      {r['frames']} scored, {r['frames_missing']} without output",
        f"targets     {r['targets']} ({r['detected']} detected)",
        f"Pd          {r['pd']:.4f}",
        f"Fa          {r['fa']:.3e}  ({r['false_px']} false-alarm pixels)",
        f"IoU / nIoU  {r['iou']:.4f} / {r['niou']:.4f}",
    ]
    if lat:
        lines.append(
            f"latency ms  mean {lat['mean']:.1f}, p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, "
            f"max {lat['max']:.1f} ({r['latency_source']})"
        )
    return "\n".join(lines)
