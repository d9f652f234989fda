"""Parsers of command-line and config-file values shared by the CLI, the tools and the configs."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from irstd_ros.core.constants import OWN_THRESHOLD, OWN_WORD
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


def check_keys(data: Mapping[Any, Any], valid: Sequence[str], what: str) -> None:
    """:class:`ConfigError` for keys of ``data`` not in ``valid``: it names them, the
    nearest valid key of each (a typo), and every valid one."""
    unknown = sorted(map(str, set(data) - set(valid)))
    if unknown:
        near = {k: difflib.get_close_matches(k, valid, n=1) for k in unknown}
        hints = [f"{k!r} -> {m[0]!r}" for k, m in near.items() if m]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise ConfigError(f"unknown {what} keys {unknown}{hint}; valid: {', '.join(valid)}")


def dataclass_from_dict(cls: type[D], data: Mapping[str, Any], what: str) -> D:
    """``cls(**data)`` for a config dataclass read from YAML/JSON, lists as tuples; unknown
    keys are one :class:`ConfigError` that lists the valid ones, and so is ``data`` that
    is not a mapping (a string would otherwise be read as its characters' keys)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a JSON object for {what}, got {type(data).__name__}")
    check_keys(data, [f.name for f in fields(cls)], what)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def path_tuple(value: str | Path | Sequence[str | Path] | None) -> tuple[Path, ...]:
    """A config field that holds one path, a list of paths or nothing, as a tuple."""
    if not value:
        return ()
    if isinstance(value, (str, Path)):
        return (Path(value),)
    return tuple(Path(v) for v in value)


# --- argparse ``type=`` helpers for ranged numbers (the CLI's and the tools') ---------------
def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def positive_int(text: str) -> int:
    """argparse ``type``: an integer >= 1."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type``: an integer >= 0 (a count, a seed)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type``: a finite number > 0."""
    value = _number(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse ``type``: a finite number >= 0."""
    value = _number(text, float)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """argparse ``type``: a probability threshold, strictly between 0 and 1."""
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def tracker_threshold(text: str) -> float:
    """argparse ``type``: a tracker threshold: a probability in (0, 1), 0 for off, or
    ``own`` for the model's own (:data:`OWN_THRESHOLD`)."""
    if text.strip().lower() == OWN_WORD:
        return OWN_THRESHOLD
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"must be in (0, 1), 0 for off, or {OWN_WORD!r} for the model's own, got {text}"
        )
    return value


def unit_interval(text: str) -> float:
    """argparse ``type``: a number in [0, 1] (``nan`` refused)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value
