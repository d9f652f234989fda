"""The package's one percentile (nearest rank, for latencies and timings alike), its one
ratio of a figure that may be undefined, and its one way to print such a figure."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def percentile(values: Iterable[float] | np.ndarray, q: float) -> float:
    """Nearest-rank ``q``-th percentile: the smallest value with at least ``q`` % of the
    values at or below it (numpy's ``inverted_cdf``; no interpolation between few samples).

    Raises ValueError for no values.
    """
    a = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("percentile of no values")
    # numpy's own index rule for inverted_cdf, computed here: its ``method=`` is numpy 1.22+
    # (Ubuntu 22.04 / ROS 2 Humble ship 1.21), and a partition is no full sort
    k = min(max(math.ceil(a.size * (q / 100.0) - 1), 0), a.size - 1)
    return float(np.partition(a, k)[k])


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or None where the figure is undefined (an empty denominator): never
    0 nor NaN in a report."""
    return num / den if den else None


def format_number(value: float | None, spec: str = ".1f", undefined: str = "-") -> str:
    """``value`` formatted with ``spec``, or ``undefined`` where the figure is undefined
    (None or NaN): a report never prints "nan" nor a made-up 0."""
    if value is None or value != value:  # NaN of any float type (np.float32 too)
        return undefined
    return format(value, spec)
