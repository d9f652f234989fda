"""``irstd generate``: a synthetic IR sequence with ground truth, written as a rosbag2 bag."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from irstd_ros.bags.generate import GenerateConfig, generate_bag
from irstd_ros.cli._options import (
    add_bag_writing,
    check_bag_out,
    non_negative_float,
    positive_float,
)
from irstd_ros.core.parsing import parse_range, parse_size
from irstd_ros.errors import ConfigError
from irstd_ros.sim.scenes import SCENES
from irstd_ros.sim.sequence import BIT_DEPTHS, SequenceConfig

_DEFAULTS = SequenceConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="synthetic IR sequence with truth -> rosbag2 bag",
        description="Generate a deterministic synthetic IR sequence (camera frames plus truth "
        "mask and target boxes) into a rosbag2 bag.",
    )
    p.add_argument("--out", type=Path, required=True, help="bag folder to create")
    p.add_argument("--scene", choices=SCENES, default=_DEFAULTS.scene, help="background clutter (default: %(default)s)")
    p.add_argument("--frames", type=int, default=_DEFAULTS.frames, help="sequence length (default: %(default)s)")
    p.add_argument("--fps", type=positive_float, default=_DEFAULTS.fps,
                   help="frame rate of the stamps, Hz (default: %(default)s)")
    p.add_argument("--size", default=f"{_DEFAULTS.width}x{_DEFAULTS.height}",
                   help="frame size, WIDTHxHEIGHT (default: %(default)s)")
    p.add_argument("--targets", type=int, default=_DEFAULTS.n_targets, help="number of targets (default: %(default)s)")
    p.add_argument("--snr", default="{}:{}".format(*_DEFAULTS.snr),
                   help="target peak SNR over the local clutter, N or LO:HI (default: %(default)s)")
    p.add_argument(
        "--target-size",
        default="{}:{}".format(*_DEFAULTS.target_size),
        help="object extent before the sensor blur, px, N or LO:HI (default: %(default)s)",
    )
    sc = p.add_argument_group("tracking scenarios (ids in this order after --targets)")
    sc.add_argument(
        "--no-enter-leave", action="store_true", help="no target enters or leaves the frame"
    )
    sc.add_argument(
        "--dim-targets", type=int, default=_DEFAULTS.dim_targets, metavar="N",
        help="point targets at --dim-snr (default: %(default)s)",
    )
    sc.add_argument(
        "--dim-snr", default="{}:{}".format(*_DEFAULTS.dim_snr), help="dim SNR, N or LO:HI (default: %(default)s)"
    )
    sc.add_argument(
        "--crossings", type=int, default=_DEFAULTS.crossings, metavar="PAIRS",
        help="pairs of targets (at --snr) whose paths cross mid-sequence (default: %(default)s)",
    )
    sc.add_argument(
        "--manoeuvres", type=int, default=_DEFAULTS.manoeuvres, metavar="N",
        help="targets (at --snr) that turn sharply and change speed (default: %(default)s)",
    )
    sc.add_argument(
        "--flicker", type=non_negative_float, default=_DEFAULTS.flicker_rate, metavar="RATE",
        help="new flickering hot spots per frame (clutter lasting 1-3 frames, not in the truth) "
        "(default: %(default)g)",
    )
    sc.add_argument(
        "--flicker-snr", default="{}:{}".format(*_DEFAULTS.flicker_snr),
        help="flicker peak over local clutter, N or LO:HI (default: %(default)s)",
    )
    p.add_argument("--bit-depth", type=int, choices=BIT_DEPTHS, default=_DEFAULTS.bit_depth,
                   help="8: mono8 frames, 16: mono16 (default: %(default)s)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                   help="random seed: the same seed and options, the same bag (default: %(default)s)")
    add_bag_writing(p)
    p.set_defaults(func=run)


def _range(text: str, option: str) -> tuple[float, float]:
    """``N`` or ``LO:HI`` of finite numbers: ``inf`` would overflow the random draws."""
    lo, hi = parse_range(text)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"{option} must be finite numbers, N or LO:HI, got {text!r}")
    return lo, hi


def run(args: argparse.Namespace) -> int:
    check_bag_out(args)  # a folder that can be made (or --overwrite): before any work
    width, height = parse_size(args.size)
    seq = SequenceConfig(
        width=width,
        height=height,
        frames=args.frames,
        fps=args.fps,
        scene=args.scene,
        n_targets=args.targets,
        snr=_range(args.snr, "--snr"),
        target_size=_range(args.target_size, "--target-size"),
        enter_leave=not args.no_enter_leave,
        dim_targets=args.dim_targets,
        dim_snr=_range(args.dim_snr, "--dim-snr"),
        crossings=args.crossings,
        manoeuvres=args.manoeuvres,
        flicker_rate=args.flicker,
        flicker_snr=_range(args.flicker_snr, "--flicker-snr"),
        bit_depth=args.bit_depth,
        seed=args.seed,
    )
    cfg = GenerateConfig(
        args.out, seq, args.storage, compress=args.compress, overwrite=args.overwrite, progress=True
    )
    s = generate_bag(cfg)
    print(
        f"wrote {s.path}: {s.frames} frames, {s.target_instances} target instances, "
        f"{s.seconds:.1f} s"
    )
    return 0
