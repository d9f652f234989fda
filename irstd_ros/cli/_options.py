"""Option blocks shared by the bag subcommands."""

from __future__ import annotations

import argparse

from irstd_ros.bags.io import IMAGE_TOPIC, STORAGES


def add_bag_writing(p: argparse.ArgumentParser) -> None:
    """``--storage``, ``--compress`` and ``--overwrite`` of a subcommand that writes a bag at ``--out``."""
    p.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    p.add_argument("--compress", action="store_true", help="zstd-compressed chunks (mcap only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")


def add_image_topic(p: argparse.ArgumentParser) -> None:
    """``--image-topic``: the camera topic read from a bag."""
    p.add_argument("--image-topic", default=IMAGE_TOPIC)
