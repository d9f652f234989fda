"""Typed fields of config dataclasses read from YAML or flags: one rule per field checks
(and converts) its value, and the same rule is the flag's argparse ``type``, so a flag and
a YAML value get the same range. PyYAML reads ``1e-3`` (no dot) as a string: numeric
strings are converted; bools, NaN and infinity are refused."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from irstd_ros.errors import ConfigError

FieldRule = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Number:
    """A numeric config field: an integer or a finite number in a range, or None where
    ``optional``. A numeric string (PyYAML reads ``1e-3``, without a dot, as one) is
    converted; a bool, a non-numeric string, NaN or infinity is refused."""

    integer: bool = False
    low: float = -math.inf
    low_open: bool = False  # > low rather than >= low
    high: float = math.inf
    high_open: bool = False  # < high rather than <= high
    optional: bool = False  # None (null) allowed: not set

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low > -math.inf and self.high < math.inf:
            bounds = f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low > -math.inf:
            bounds = f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high < math.inf:
            bounds = f" {'<' if self.high_open else '<='} {self.high:g}"
        else:
            bounds = ""
        return kind + bounds + (" or null" if self.optional else "")

    def convert(self, value: Any) -> int | float | None:
        """``value`` checked and converted; ValueError ``must be ..., got ...`` if it is not one."""
        if value is None and self.optional:
            return None
        number = _numeric(value, self.integer)
        if number is None or not (
            (number > self.low if self.low_open else number >= self.low)
            and (number < self.high if self.high_open else number <= self.high)
        ):
            raise ValueError(f"must be {self.describe()}, got {value!r}")
        return number

    def __call__(self, name: str, value: Any) -> int | float | None:
        try:
            return self.convert(value)
        except ValueError as exc:
            raise ConfigError(f"{name} {exc}") from None

    def arg(self, text: str) -> int | float:
        """argparse ``type`` of the field's flag: the same check, as a usage error."""
        try:
            number = replace(self, optional=False).convert(text)  # a flag left out is the null
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        assert number is not None  # a command-line value is never None
        return number


def _numeric(value: Any, integer: bool) -> int | float | None:
    """``value`` as a finite int (``integer``: whole numbers only) or float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            try:
                value = float(text)  # "1e3" for an integer
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value) or (integer and not value.is_integer()):
            return None
        return int(value) if integer else value
    if integer:
        return int(value)
    try:
        return float(value)
    except OverflowError:  # an integer beyond float's range (YAML reads 1000...0 as one)
        return None


def as_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def as_optional_text(name: str, value: Any) -> str | None:
    return None if value is None else as_text(name, value)


def as_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def as_path(name: str, value: Any) -> Path:
    if isinstance(value, Path) or (isinstance(value, str) and value.strip()):
        return Path(value)
    raise ConfigError(f"{name} must be a path (a non-empty string), got {value!r}")


def as_optional_path(name: str, value: Any) -> Path | None:
    return None if value is None or value == "" else as_path(name, value)


def as_paths(name: str, value: Any) -> Any:
    """None, one path, or a list of paths (kept as given; :func:`path_tuple` reads it)."""
    if value is None or isinstance(value, (str, Path)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) and str(v).strip() for v in value):
        return list(value)
    raise ConfigError(f"{name} must be a path or a list of paths, got {value!r}")


def as_mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping (key: value), got {value!r}")
    return dict(value)


def as_mappings(name: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{name} must be a list of mappings (root: ..., weight: ...), got {value!r}")
    return [dict(v) for v in value]


def as_scale(name: str, value: Any) -> list[float]:
    """[low, high]: two finite numbers with 0 < low <= high."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = (_numeric(v, integer=False) for v in value)
        if lo is not None and hi is not None and 0 < lo <= hi:
            return [float(lo), float(hi)]
    raise ConfigError(f"{name} must be [low, high], two numbers with 0 < low <= high, got {value!r}")


def as_names(name: str, value: Any) -> list[str]:
    """A non-empty list of names (pack groups)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    raise ConfigError(f"{name} must be a non-empty list of names, got {value!r}")


def flag_type(rules: Mapping[str, FieldRule], flag: str) -> Callable[[str], Any]:
    """The argparse ``type`` of ``--flag``: its field's own range check for a number (the
    same as a YAML value gets), :class:`Path` for a path, else ``str``."""
    rule = rules[flag.replace("-", "_")]
    if isinstance(rule, Number):
        return rule.arg
    return Path if rule in (as_path, as_optional_path) else str


def check_fields(cfg: Any, rules: Mapping[str, FieldRule]) -> None:
    """Check (and convert, e.g. ``"1e-3"`` to 0.001) each field of ``cfg`` named in
    ``rules``: one :class:`ConfigError` naming the field and what it must be."""
    for name, rule in rules.items():
        setattr(cfg, name, rule(name, getattr(cfg, name)))
