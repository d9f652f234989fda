"""``irstd pack``: datasets as one compressed uint8 ``.npz`` (:mod:`irstd_ros.data.pack`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.cli._options import (
    MASK_SUFFIX_HELP,
    MASK_SUFFIX_METAVAR,
    check_datasets_found,
    check_distinct_paths,
    check_output_file,
    mask_suffixes,
    non_negative_int,
    positive_int,
)
from irstd_ros.data.pack import (
    CROP,
    DATASETS,
    DEFAULT_NUDT,
    DEFAULT_OUT,
    DEFAULT_SIRST,
    MAX_CROP,
    NUDT_SPLITS,
    RANDOM_CROPS,
    TARGET_CROPS,
    PackConfig,
    build_pack,
)
from irstd_ros.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        help="write NUDT-SIRST train/test and SIRST-v2 crops into one compressed .npz",
        description="One file for a GPU machine (irstd train-gpu --pack FILE): NUDT-SIRST "
        "50_50 train and test (--no-nudt-test: train only) at full resolution and 256x256 crops of "
        "SIRST-v2 splits/train.txt. "
        "Write it to an ignored path (default out/pack/): it is never committed.",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    p.add_argument("--nudt", type=Path, default=DEFAULT_NUDT, help=f"NUDT-SIRST root (default: {DEFAULT_NUDT})")
    p.add_argument("--sirst", type=Path, default=DEFAULT_SIRST, help=f"SIRST-v2 root (default: {DEFAULT_SIRST})")
    p.add_argument("--mask-suffix", action="append", metavar=MASK_SUFFIX_METAVAR,
                   help=f"{MASK_SUFFIX_HELP}: SUFFIX of both datasets, NAME=SUFFIX of one "
                   f"(NAME: {', '.join(DATASETS)}); repeatable (default: none)")
    p.add_argument("--no-nudt", action="store_true", help="leave NUDT-SIRST out")
    p.add_argument("--no-sirst", action="store_true", help="leave SIRST-v2 out")
    p.add_argument("--no-nudt-test", action="store_true",
                   help="leave NUDT-SIRST test out (a smaller pack; train with --eval-group none, score it here)")
    p.add_argument("--crop", type=positive_int, default=CROP,
                   help=f"SIRST-v2 crop side, px, at most {MAX_CROP} (default: {CROP})")
    p.add_argument("--target-crops", type=non_negative_int, default=TARGET_CROPS,
                   help=f"SIRST-v2 crops with a target per frame (default: {TARGET_CROPS})")
    p.add_argument("--random-crops", type=non_negative_int, default=RANDOM_CROPS,
                   help=f"random SIRST-v2 crops per frame (default: {RANDOM_CROPS})")
    p.add_argument("--hard", type=Path, nargs="+", default=[], metavar="FILE",
                   help="mined false-target places in SIRST-v2 train (irstd mine; config/train/hard/*sirst*.json): "
                   "one crop around each, in the group sirst_hard (default: none)")
    p.add_argument("--sirst-frames", action="store_true",
                   help="SIRST-v2 train frames whole as well (group sirst_train): what `irstd train`'s recipes read "
                   "on the device (scripts/gpu_session.sh, IRSTD_GPU_TRAIN_CONFIG)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed of the SIRST-v2 crops (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out")  # before reading the datasets
    if args.no_nudt and args.no_nudt_test:  # it would be ignored: there is no NUDT-SIRST test to leave out
        raise ConfigError("--no-nudt-test with --no-nudt: NUDT-SIRST is left out whole; give one")
    suffix, suffixes = mask_suffixes(args.mask_suffix, DATASETS)
    # each dataset of DATASETS: its root, its option, and whether --no-NAME leaves it out
    given = {
        "nudt": (args.nudt, "--nudt", args.no_nudt),
        "sirst": (args.sirst, "--sirst", args.no_sirst),
    }
    for name in suffixes:
        if given[name][2]:  # it would be ignored
            raise ConfigError(f"--mask-suffix {name}=... with --no-{name}: that dataset is left out; give one")
    roots = [(root, option) for root, option, left in given.values() if not left]
    check_datasets_found(roots)
    check_distinct_paths([(args.out, "--out")], inputs=[*roots, *((f, "--hard") for f in args.hard)])
    cfg = PackConfig(
        out=args.out,
        nudt=None if args.no_nudt else args.nudt,
        sirst=None if args.no_sirst else args.sirst,
        crop=args.crop, target_crops=args.target_crops, random_crops=args.random_crops, seed=args.seed,
        nudt_splits=("train",) if args.no_nudt_test else NUDT_SPLITS, hard=tuple(args.hard),
        sirst_frames=args.sirst_frames, mask_suffix=suffix, mask_suffixes=suffixes,
    )
    print(json.dumps(build_pack(cfg)))
    return 0
