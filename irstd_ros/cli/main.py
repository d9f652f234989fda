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
    "info",
    "export",
    "bench",
    "replay",
    "record",
    "eval_bag",
    "render",
    "generate",
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
            raise
        module.register(sub)
    return parser


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
