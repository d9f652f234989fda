"""Parsers of command-line and config-file values shared by the CLI, the tools and the configs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from irstd_ros.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)


def parse_range(text: str) -> tuple[float, float]:
    """``6`` -> (6, 6); ``4:10`` -> (4, 10)."""
    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        raise ConfigError(f"expected a number or LO:HI, got {text!r}") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ConfigError(f"expected a number or LO:HI, got {text!r}")


def parse_size(text: str) -> tuple[int, int]:
    """``640x512`` (WIDTHxHEIGHT) -> (640, 512): (width, height), in the order written."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must be WIDTHxHEIGHT, e.g. 640x512, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return w, h


def size_arg(text: str) -> tuple[int, int]:
    """:func:`parse_size` as an argparse ``type``: its message becomes the usage error."""
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def dataclass_from_dict(cls: type[D], data: Mapping[str, Any], what: str) -> D:
    """``cls(**data)`` for a config dataclass read from YAML/JSON, lists as tuples; unknown
    keys are one :class:`ConfigError` that lists the valid ones."""
    valid = [f.name for f in fields(cls)]
    unknown = set(data) - set(valid)
    if unknown:
        raise ConfigError(f"unknown {what} keys {sorted(unknown)}; valid: {', '.join(valid)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def path_tuple(value: str | Path | Sequence[str | Path] | None) -> tuple[Path, ...]:
    """A config field that holds one path, a list of paths or nothing, as a tuple."""
    if not value:
        return ()
    if isinstance(value, (str, Path)):
        return (Path(value),)
    return tuple(Path(v) for v in value)
