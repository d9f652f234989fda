"""``irstd render``: annotated video and contact sheet of a bag (boxes, scores, truth)."""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.bags.render import RenderConfig, render
from irstd_ros.cli._options import (
    add_image_topic,
    add_outputs_ns,
    check_distinct_paths,
    check_output_file,
    positive_float,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="annotated MP4/GIF and PNG contact sheet of a bag",
        description="Draw detections (red, with scores) and truth (green) on a bag's frames.",
    )
    p.add_argument("bag", type=Path, help="bag with the image topic (and truth, if any)")
    p.add_argument(
        "--outputs", type=Path, help="bag of recorded node outputs (default: BAG itself)"
    )
    p.add_argument("--out", type=Path, required=True, help="video file, .mp4 or .gif")
    p.add_argument("--sheet", type=Path, metavar="PNG", help="also write a contact sheet")
    add_image_topic(p)
    add_outputs_ns(p)
    p.add_argument("--fps", type=positive_float, help="video frame rate (default: the bag's)")
    p.add_argument("--scale", type=positive_int, default=1, help="integer magnification (default: %(default)s)")
    p.add_argument("--max-frames", type=positive_int, help="render at most N frames (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out")
    check_output_file(args.sheet, "--sheet")
    check_distinct_paths([(args.out, "--out"), (args.sheet, "--sheet")],
                         inputs=[(args.bag, "BAG"), (args.outputs, "--outputs")])
    cfg = RenderConfig(
        bag=args.bag,
        out=args.out,
        outputs=args.outputs,
        sheet=args.sheet,
        image_topic=args.image_topic,
        outputs_ns=args.outputs_ns,
        fps=args.fps,
        scale=args.scale,
        max_frames=args.max_frames,
    )
    s = render(cfg)
    print(f"wrote {s.video} ({s.frames} frames)" + (f" and {s.sheet}" if s.sheet else ""))
    return 0
