"""Option blocks shared by subcommands (the bag tools; eval and mine).

The bag constants are imported inside the functions: ``rosbags`` is optional and
``irstd eval`` must not need it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.core.constants import WEIGHTS_HELP


def add_model_on_data(p: argparse.ArgumentParser, split: str, threshold_help: str) -> None:
    """A checkpoint scored on a dataset split: ``--data``, ``--split``, ``--weights``,
    ``--mask-suffix``, ``--threshold``, ``--backend``, ``--threads``, ``--limit``."""
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default=split, help=f"split list name (default: {split})")
    p.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    p.add_argument("--mask-suffix", default="", help="generic layout: mask name suffix")
    p.add_argument("--threshold", type=float, help=threshold_help)
    p.add_argument("--backend", default="auto", help="inference backend (default: the fastest available)")
    p.add_argument("--threads", type=int)
    p.add_argument("--limit", type=int, help="first N images only")


def add_bag_writing(p: argparse.ArgumentParser) -> None:
    """``--storage``, ``--compress`` and ``--overwrite`` of a subcommand that writes a bag at ``--out``."""
    from irstd_ros.bags.io import STORAGES

    p.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    p.add_argument("--compress", action="store_true", help="zstd-compressed chunks (mcap only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")


def add_image_topic(p: argparse.ArgumentParser) -> None:
    """``--image-topic``: the camera topic read from a bag."""
    from irstd_ros.bags.io import IMAGE_TOPIC

    p.add_argument("--image-topic", default=IMAGE_TOPIC)
