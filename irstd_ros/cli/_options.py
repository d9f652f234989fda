"""Option blocks shared by subcommands (the bag tools; eval and mine; ``--weights``,
``--backend``, ``--threads``, ``--json``, ``--method``: one definition, one wording), the
argparse ``type=`` helpers for ranged numbers (defined in :mod:`irstd_ros.core.parsing`,
for the tools too), the up-front checks of input and output paths, and the help formatter
that shows docstring markup as plain text.

The bag constants are imported inside the functions: ``rosbags`` is optional and
``irstd eval`` must not need it.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from irstd_ros.core.constants import BACKEND_NAMES, DEFAULT_SHIPPED_MODEL, WEIGHTS_HELP
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
    "DATA_HELP",
    "MASK_SUFFIX_HELP",
    "MASK_SUFFIX_METAVAR",
    "OWN_THRESHOLD_HELP",
    "PlainHelpFormatter",
    "PlainHelpParser",
    "add_backend",
    "add_bag_writing",
    "add_image_topic",
    "add_json",
    "add_method",
    "add_model_on_data",
    "add_outputs_ns",
    "add_threads",
    "add_weights",
    "check_bag_out",
    "check_dataset_dir",
    "check_datasets_found",
    "check_distinct_paths",
    "check_network_options",
    "check_output_dir",
    "check_output_file",
    "describe_options",
    "mask_suffixes",
    "non_negative_float",
    "non_negative_int",
    "plain_text",
    "positive_float",
    "positive_int",
    "probability",
    "tracker_threshold",
    "unit_interval",
    "weights_input",
    "weights_path",
]

DATA_HELP = "dataset folder: images/ and masks/, and split lists"
SPLIT_HELP = "split list name, or 'all' for every image of a folder without lists (default: %(default)s)"
MASK_SUFFIX_HELP = "generic layout: a mask is named <image stem><suffix>"
MASK_SUFFIX_METAVAR = "[NAME=]SUFFIX"  # a repeatable --mask-suffix of datasets by name (mask_suffixes)
# --threshold beside --method (eval, envelope)
OWN_THRESHOLD_HELP = ("detection threshold, a probability in (0, 1) (default: the checkpoint's own; "
                      "0.5 with --method tophat)")

# --- help as plain text -----------------------------------------------------------------------
# Descriptions are often a module's docstring: its reST markup is for Sphinx, not a terminal.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]*?)(?:\s*<[^`>]*>)?`")  # :mod:`x`, :func:`~a.b`
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)  # ``code``
_INTERPRETED = re.compile(r"`([^`]+)`")  # `text` (Markdown-style code in a help string)


def plain_text(text: str) -> str:
    """``text`` with its reST markup as a terminal shows it, no backquote left: a role
    (:mod:, :func:...) and a double-backquoted literal as their bare text (a role's
    ``~a.b.c`` as ``c``), a single-backquoted text in quotes."""
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = _LITERAL.sub(r"\1", text)
    return _INTERPRETED.sub(r"'\1'", text)


class PlainHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, the descriptions and helps shown through :func:`plain_text`."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))


class PlainHelpParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose help is plain text (:class:`PlainHelpFormatter`
    unless given another); ``irstd``'s, whose subcommands' parsers are of its class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """A wrong argument is one line, as every other error of ``irstd`` (argparse's own
        prints the whole usage first: 6-13 lines), pointing at ``--help``; exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def describe_options(p: argparse.ArgumentParser, helps: Mapping[str, str]) -> None:
    """Set the help of ``p``'s options by destination (``batch_size``: ``--batch-size``), for
    options defined elsewhere without one (a module's ``add_arguments``). A destination in
    ``helps`` that ``p`` lacks is a :class:`KeyError`: a help left over from a removed
    option is found, not kept."""
    actions = {a.dest: a for a in p._actions}
    for dest, text in helps.items():
        actions[dest].help = text


# --- shared options ---------------------------------------------------------------------------
def weights_path(text: str) -> Path:
    """``--weights``' argparse ``type``: the path given, or the default shipped model's name
    for an empty one (as the node's ``model.path: ''``; ``Path("")`` would be ``.``)."""
    return Path(text or DEFAULT_SHIPPED_MODEL)


def add_weights(p: argparse.ArgumentParser, context: str = "", required: bool = False) -> None:
    """``--weights``: a checkpoint file or a shipped model (``context``: what it is for, e.g.
    ``for --run-detector``); empty: the default shipped model."""
    p.add_argument("--weights", type=weights_path, required=required,
                   help=f"{context}: {WEIGHTS_HELP}" if context else WEIGHTS_HELP)


def weights_input(weights: Path | None) -> Path | None:
    """The checkpoint file ``--weights`` names (a shipped model's by its name), as an input
    of :func:`check_distinct_paths`; None when not given."""
    if weights is None:  # nothing to import (torch) for
        return None
    from irstd_ros.inference.detector import resolve_model_path

    return resolve_model_path(weights)


def add_backend(p: argparse.ArgumentParser, context: str = "") -> None:
    """``--backend``: the inference backend by name, ``auto`` by default."""
    what = f"inference backend{' ' + context if context else ''}"
    p.add_argument(
        "--backend", default="auto", metavar="NAME",
        help=f"{what}: auto (the fastest available here), cpu (the fastest CPU one) or one of "
        f"{', '.join(BACKEND_NAMES)} (default: %(default)s)",
    )


def add_threads(p: argparse.ArgumentParser, what: str = "inference") -> None:
    """``--threads``: CPU threads (None: the library's own choice)."""
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help=f"CPU threads for {what} (default: the backend's own choice)")


def add_json(p: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: the result as one JSON object on stdout instead of the text."""
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON object instead of text")


def add_method(p: argparse.ArgumentParser) -> None:
    """``--method``: the network, or the classical top-hat reference."""
    p.add_argument("--method", default="network", choices=("network", "tophat"),
                   help="network: the checkpoint (--weights); tophat: the classical white top-hat "
                   "reference, no network (default: %(default)s)")


def check_dataset_dir(path: Path, option: str, hint: str = "") -> None:
    """:class:`ConfigError` up front when ``path`` is a file: a dataset is a folder (a
    missing one is the dataset reader's own error). ``hint``: what to do with such a file
    instead, e.g. ``a pack goes to --pack``."""
    if path.is_file():
        raise ConfigError(f"{option} {path}: is a file, not a dataset folder (the folder holding images/ "
                          f"and masks/){'; ' + hint if hint else ''}")


def check_datasets_found(roots: Sequence[tuple[Path, str]]) -> None:
    """:class:`ConfigError` up front, before any conversion or reading, unless each dataset
    ``(root, option)`` is a folder (:func:`check_dataset_dir` of all first): a missing one
    is named with the folder a relative path is looked up from (a default such as
    ``../shared/data/...`` is relative to the current directory) and the option that sets it."""
    for root, option in roots:
        check_dataset_dir(root, option)
    for root, option in roots:
        if not root.exists():
            where = "" if root.is_absolute() else f" (relative to the current directory {Path.cwd()})"
            raise ConfigError(f"dataset folder not found: {root}{where}; give its path with {option}")


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


def check_distinct_paths(
    outputs: Sequence[tuple[Path | None, str]], inputs: Sequence[tuple[Path | None, str]] = ()
) -> None:
    """:class:`ConfigError` up front when two outputs (path, option) name one file, or an
    output is, or lies inside, one of the ``inputs`` (path, option; None: not given): a
    checkpoint, a bag folder, a dataset root. One output would replace the other, or an
    input be overwritten or changed; the message names both."""
    given = [(path.resolve(), path, option) for path, option in inputs if path is not None]
    seen: dict[Path, str] = {}
    for path, option in outputs:
        if path is None:
            continue
        key = path.resolve()
        for resolved, input_path, input_option in given:
            if key == resolved or resolved in key.parents:
                where = "lies inside" if resolved in key.parents else "is"
                raise ConfigError(f"{option} {path} {where} the input {input_option} {input_path}; "
                                  "give a path outside the inputs")
        if key in seen:
            raise ConfigError(f"{option} {path} is also {seen[key]}; give another path")
        seen[key] = option


def mask_suffixes(
    values: Sequence[str] | None, names: Sequence[str], option: str = "--mask-suffix"
) -> tuple[str, dict[str, str]]:
    """The values of a repeatable ``option`` (:data:`MASK_SUFFIX_METAVAR`) read: the suffix
    of every dataset (``SUFFIX``, default ``""``) and those of single datasets
    (``NAME=SUFFIX``, NAME one of ``names``), each given once at most. A
    :class:`ConfigError` names an unknown NAME with the valid ones, or what was given twice."""
    every: str | None = None
    single: dict[str, str] = {}
    for value in values or ():
        name, sep, suffix = value.partition("=")
        if not sep:
            if every is not None:
                raise ConfigError(f"{option} {every!r} and {value!r}: give one suffix for every dataset, "
                                  "or NAME=SUFFIX for one")
            every = value
        elif name not in names:
            raise ConfigError(f"{option} {value!r}: no dataset named {name!r}; "
                              f"NAME is one of {', '.join(names)}")
        elif name in single:
            raise ConfigError(f"{option} {name}= given twice ({single[name]!r} and {suffix!r}); give it once")
        else:
            single[name] = suffix
    return every or "", single


def check_output_dir(path: Path | None, option: str) -> None:
    """:class:`ConfigError` up front unless ``path`` is (or can be created as) a writable
    directory (None: nothing to check)."""
    if path is None:
        return
    reason = output_dir_problem(path)
    if reason:
        raise ConfigError(f"{option} {reason}")


def check_output_outside_datasets(path: Path | None, option: str) -> None:
    """:class:`ConfigError` up front when the output folder ``path`` is, or lies inside, a
    dataset folder: one holding the folders the dataset reader reads
    (:data:`~irstd_ros.data.datasets.DATA_DIRS`, ``images/`` and ``masks/``), where a report
    would be mixed into the data (None: nothing to check)."""
    if path is None:
        return
    from irstd_ros.data.datasets import DATA_DIRS  # torch: only when an output is checked

    resolved = path.resolve()
    for folder in (resolved, *resolved.parents):
        if all((folder / d).is_dir() for d in DATA_DIRS):
            where = "is" if folder == resolved else "lies inside"
            held = " and ".join(f"{d}/" for d in DATA_DIRS)
            raise ConfigError(f"{option} {path} {where} the dataset folder {folder} (it holds {held}); "
                              "give a path outside datasets")


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
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--split", default=split, help=SPLIT_HELP)
    add_weights(p)
    p.add_argument("--mask-suffix", default="", help=f"{MASK_SUFFIX_HELP} (default: none)")
    p.add_argument("--threshold", type=probability, help=threshold_help)
    add_backend(p)
    add_threads(p)
    p.add_argument("--limit", type=positive_int, metavar="N", help="score the first N images only")


def add_bag_writing(p: argparse.ArgumentParser) -> None:
    """``--storage``, ``--compress`` and ``--overwrite`` of a subcommand that writes a bag at ``--out``."""
    from irstd_ros.bags.io import STORAGES

    p.add_argument("--storage", choices=tuple(STORAGES), default="mcap",
                   help="rosbag2 storage format (default: %(default)s)")
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
