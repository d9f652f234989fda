"""Option blocks shared by subcommands (the bag tools; eval and mine), the argparse ``type=``
helpers for ranged numbers (defined in :mod:`irstd_ros.core.parsing`, for the tools too),
and the up-front checks of output paths.

The bag constants are imported inside the functions: ``rosbags`` is optional and
``irstd eval`` must not need it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from irstd_ros.core.constants import WEIGHTS_HELP
from irstd_ros.core.parsing import (  # the ranged-number types live there; re-exported here
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    tracker_threshold,
    unit_interval,
)
from irstd_ros.core.paths import creation_problem, output_dir_problem
from irstd_ros.errors import ConfigError

__all__ = [
    "add_bag_writing",
    "add_image_topic",
    "add_model_on_data",
    "add_outputs_ns",
    "check_bag_out",
    "check_distinct_paths",
    "check_network_options",
    "check_output_dir",
    "check_output_file",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "tracker_threshold",
    "unit_interval",
]


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing folder above ``path`` must be a writable directory."""
    reason = creation_problem(path)
    if reason:
        raise ConfigError(f"{option} {reason}")


def check_output_file(path: Path | None, option: str) -> None:
    """:class:`ConfigError` up front, before the long work, unless a file can be written at
    ``path`` (None: nothing to check): it must not be a directory and its folder must be
    (or become) a writable directory."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path}: file is not writable")
    _check_parent(path, option)


def check_distinct_paths(outputs: Sequence[tuple[Path | None, str]], inputs: Sequence[Path] = ()) -> None:
    """:class:`ConfigError` up front when two outputs (path, option) name one file, or an
    output names one of the ``inputs``: one would replace the other, or the input be lost."""
    seen: dict[Path, str] = {path.resolve(): "an input" for path in inputs}
    for path, option in outputs:
        if path is None:
            continue
        key = path.resolve()
        if key in seen:
            raise ConfigError(f"{option} {path} is also {seen[key]}; give another path")
        seen[key] = option


def check_output_dir(path: Path | None, option: str) -> None:
    """:class:`ConfigError` up front unless ``path`` is (or can be created as) a writable
    directory (None: nothing to check)."""
    if path is None:
        return
    reason = output_dir_problem(path)
    if reason:
        raise ConfigError(f"{option} {reason}")


def network_options_given(args: argparse.Namespace) -> list[str]:
    """The options naming a network that were given: ``--weights``, a ``--backend`` other
    than ``auto``."""
    return [option for option, value in (("--weights", args.weights), ("--backend", args.backend))
            if value is not None and value != "auto"]


def check_network_options(args: argparse.Namespace) -> None:
    """:class:`ConfigError` when ``--method tophat`` comes with ``--weights`` or a
    ``--backend``: the top-hat reference runs no network, so they would be ignored and
    the report would not be the model's the command line names."""
    if args.method != "tophat":
        return
    given = network_options_given(args)
    if given:
        raise ConfigError(f"{', '.join(given)}: not with --method tophat (the top-hat reference runs no network)")


def add_model_on_data(p: argparse.ArgumentParser, split: str, threshold_help: str) -> None:
    """A checkpoint scored on a dataset split: ``--data``, ``--split``, ``--weights``,
    ``--mask-suffix``, ``--threshold``, ``--backend``, ``--threads``, ``--limit``."""
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default=split, help=f"split list name, or 'all' for every image of a folder without lists (default: {split})")
    p.add_argument("--weights", type=Path, help=WEIGHTS_HELP)
    p.add_argument("--mask-suffix", default="", help="generic layout: mask name suffix")
    p.add_argument("--threshold", type=probability, help=threshold_help)
    p.add_argument("--backend", default="auto", help="inference backend (default: the fastest available)")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--limit", type=positive_int, help="first N images only")


def add_bag_writing(p: argparse.ArgumentParser) -> None:
    """``--storage``, ``--compress`` and ``--overwrite`` of a subcommand that writes a bag at ``--out``."""
    from irstd_ros.bags.io import STORAGES

    p.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    p.add_argument("--compress", action="store_true", help="zstd-compressed chunks (mcap only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")


def check_bag_out(args: argparse.Namespace) -> None:
    """:class:`ConfigError` up front unless ``--out`` of :func:`add_bag_writing` can take the
    new bag: a folder that can be made, and an existing bag only with ``--overwrite``."""
    check_output_dir(args.out, "--out")
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} exists; give --overwrite to replace it, or another path")


def add_image_topic(p: argparse.ArgumentParser) -> None:
    """``--image-topic``: the camera topic read from a bag."""
    from irstd_ros.bags.io import IMAGE_TOPIC

    p.add_argument(
        "--image-topic", default=IMAGE_TOPIC,
        help="the camera topic: sensor_msgs/Image, or CompressedImage (png, jpeg; image_transport's "
        "'<topic>/compressed') (default: %(default)s)",
    )


def add_outputs_ns(p: argparse.ArgumentParser) -> None:
    """``--outputs-ns``: the node whose outputs a bag tool reads, in a bag of several."""
    p.add_argument(
        "--outputs-ns", metavar="NAMESPACE",
        help="the namespace of the node whose outputs are read, e.g. /cam1/irstd, when the "
        "bag holds several nodes' (one camera each)",
    )
