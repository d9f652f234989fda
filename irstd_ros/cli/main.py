"""Entry point of ``irstd``. Each subcommand lives in ``irstd_ros/cli/<name>.py``
with ``register(subparsers)`` that adds its parser and sets ``func``, a function
of the parsed namespace returning an exit code. Errors of this package become
one readable line on stderr and exit code 2 (``irstd <command>: error: <message>``), as do
the user-input failures that escape them: file and folder problems (:class:`OSError`:
a directory where a file is expected, a permission denied...), malformed YAML, bad
values (:class:`ValueError`) and sizes no memory holds (:class:`MemoryError`). Ctrl-C, also
while the subcommands load, is one line (``irstd <command>: interrupted``) and exit code
130; SIGTERM the same clean-up (``terminated``, exit code 143), so no partial output is left
by ``kill`` or ``timeout``. ``record`` is the exception: Ctrl-C (or SIGTERM) is how it is
ended, so it finishes cleanly (the recording closed) and exits 0. An interrupted ``replay``
stops cleanly too, and exits 130 (143), so a chained ``irstd replay ... && irstd eval-bag``
stops with it.

Environment: ``IRSTD_DEBUG=1`` re-raises any of these errors instead, for the full
traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import yaml

from irstd_ros.cli._options import PlainHelpParser
from irstd_ros.core.constants import INTERRUPTED_EXIT, TERMINATED_EXIT
from irstd_ros.errors import IrstdError
from irstd_ros.errors import one_line as joined

DEBUG_ENV = "IRSTD_DEBUG"  # "1": tracebacks instead of one-line errors
ERROR_EXIT = 2

SUBCOMMANDS = (
    "train",
    "eval",
    "envelope",
    "calibrate",
    "soup",
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
    """``irstd``'s parser: its help and its subcommands' (parsers of its class) are plain
    text, the docstrings' reST markup shown bare (:class:`PlainHelpParser`)."""
    parser = PlainHelpParser(
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a launch system stopping us), raised where Ctrl-C
    would be, so that every subcommand cleans up as it does for Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """The ``irstd`` entry point; SIGTERM is handled as Ctrl-C while it runs (main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(command: str, exc: KeyboardInterrupt) -> int:
    what, code = ("terminated", TERMINATED_EXIT) if isinstance(exc, Terminated) else ("interrupted", INTERRUPTED_EXIT)
    print(f"{command}: {what}", file=sys.stderr)
    return code


def _main(argv: Sequence[str] | None) -> int:
    try:  # the subcommands' imports (torch...) take seconds: Ctrl-C there is no traceback either
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt as exc:
        return _stopped("irstd", exc)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (IrstdError, OSError, yaml.YAMLError, ValueError, MemoryError) as exc:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"irstd {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return ERROR_EXIT
    except KeyboardInterrupt as exc:
        return _stopped(f"irstd {args.command}", exc)


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: a file error names the file, YAML's multi-line report is
    joined, and an unexpected ValueError says how to get its traceback."""
    if isinstance(exc, IrstdError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename is not None else "")
    elif isinstance(exc, yaml.YAMLError):
        text = f"malformed YAML: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc} ({DEBUG_ENV}=1 for the traceback)"
    return joined(text)


if __name__ == "__main__":
    sys.exit(main())
