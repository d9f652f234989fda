"""Parsers of command-line values shared by the CLI and the tools."""

from __future__ import annotations

from irstd_ros.errors import ConfigError


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
