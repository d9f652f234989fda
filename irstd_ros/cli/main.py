"""Entry point of ``irstd``. Each subcommand lives in ``irstd_ros/cli/<name>.py``
with ``register(subparsers)`` that adds its parser and sets ``func``, a function
of the parsed namespace returning an exit code. Errors of this package become
one readable line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from irstd_ros.errors import IrstdError

SUBCOMMANDS = (
    "train",
    "eval",
    "envelope",
    "calibrate",
    "mine",
    "info",
    "export",
    "bench",
    "replay",
    "record",
    "eval_bag",
    "render",
    "generate",
    "pack",
    "train_gpu",
    "demo",
    "load_test",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irstd", description="Infrared small target detection (SGEM-UNet) tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"irstd_ros.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"irstd_ros.cli.{name}":
                continue  # subcommand not present in this build
            if exc.name and not exc.name.startswith("irstd_ros"):
                _register_missing(sub, name, exc)  # an optional dependency (rosbags, rclpy)
                continue
            raise
        module.register(sub)
    return parser


def _register_missing(sub: argparse._SubParsersAction, name: str, exc: ModuleNotFoundError) -> None:
    """A subcommand whose optional dependency is missing (e.g. rosbags on a GPU machine
    without ROS): listed, and running it is one readable error, while the rest work."""
    why = f"needs the Python package {exc.name!r}, not installed here"
    # no option prefixes: whatever follows (--help included) is taken and answered with `why`
    p = sub.add_parser(name.replace("_", "-"), help=f"(unavailable: {why})", add_help=False, prefix_chars="\0")
    p.add_argument("rest", nargs="*")

    def unavailable(_args: argparse.Namespace) -> int:
        raise IrstdError(why)

    p.set_defaults(func=unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except IrstdError as exc:
        print(f"irstd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"irstd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
