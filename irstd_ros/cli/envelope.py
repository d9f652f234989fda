"""``irstd envelope``: Pd against SNR x size x encoding x scene, and false targets per frame."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.core.constants import WEIGHTS_HELP
from irstd_ros.evaluation.envelope import EnvelopeConfig, run_envelope, write_envelope
from irstd_ros.evaluation.evaluate import EvalConfig, build_scorer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "envelope", help="detection envelope: where the detector stops working",
        description="Synthetic 14-bit scenes (flat, gradient, cloud) with targets of known peak "
        "SNR and size, sent as mono8, mono16 and 32FC1. Writes envelope.json and envelope.png.",
    )
    p.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    p.add_argument("--method", default="network", choices=("network", "tophat"))
    p.add_argument("--backend", default="auto")
    p.add_argument("--threshold", type=float, help="default: the checkpoint's own")
    p.add_argument("--threads", type=int)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--frames", type=int, default=4, help="frames per cell")
    p.add_argument("--targets", type=int, default=8, help="targets per frame")
    p.add_argument("--snrs", type=float, nargs="+", help="peak SNR grid")
    p.add_argument("--sizes", nargs="+", help="'point' and/or extended areas in px")
    p.add_argument("--out", type=Path, default=Path("out/envelope"))
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    backend, norm, threshold, described = build_scorer(
        EvalConfig(data=Path("."), weights=args.weights, method=args.method, backend=args.backend,
                   threshold=args.threshold, threads=args.threads)
    )
    cfg = EnvelopeConfig(width=args.width, height=args.height, frames=args.frames,
                         targets_per_frame=args.targets)
    if args.snrs:
        cfg = EnvelopeConfig(**{**cfg.__dict__, "snrs": tuple(args.snrs)})
    if args.sizes:
        cfg = EnvelopeConfig(**{**cfg.__dict__, "sizes": tuple(args.sizes)})
    report = run_envelope(backend, norm, threshold, cfg)
    report["scorer"] = described
    files = write_envelope(report, args.out, title=f"{described.get('weights', 'tophat')}")
    if args.json:
        print(json.dumps({"snr_at_pd90": report["snr_at_pd90"], "false_targets_per_frame":
                          report["false_targets_per_frame"], "goal_point_snr6": report["goal_point_snr6"]}))
    else:
        for row in report["snr_at_pd90"]:
            snr = row["snr_at_pd90"]
            print(f"{row['scene']:9s} {row['encoding']:7s} {row['size']:6s} Pd>=0.9 at SNR "
                  + (f"{snr:.1f}" if snr is not None else "never"))
        for k, v in report["false_targets_per_frame"].items():
            print(f"false targets per frame {k}: {v:.3f}")
        for f in files:
            print(f"wrote {f}")
    return 0
