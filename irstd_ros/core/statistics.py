"""The package's one percentile (nearest rank, for latencies and timings alike), its one
ratio of a figure that may be undefined, its one way to print such a figure (a p99 of few
samples too), and its one way to write one in JSON (null)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

TAIL_SAMPLES = 100  # a nearest-rank p99 of fewer samples is their maximum


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
    if _undefined(value):
        return undefined
    return format(value, spec)


def format_tail(value: float | None, n: int, spec: str = ".1f") -> str:
    """A p99 for a report (:func:`format_number`): the figure when it comes from
    :data:`TAIL_SAMPLES` samples or more; from fewer, a nearest-rank p99 is their maximum,
    said so with the count (``max 2.6 (n=4)``); ``-`` for none."""
    if not n or _undefined(value):
        return format_number(None)
    figure = format_number(value, spec)
    return figure if n >= TAIL_SAMPLES else f"max {figure} (n={n})"


def _undefined(value: float | None) -> bool:
    """None or NaN of any float type (np.float32 too): a figure not measured."""
    return value is None or value != value


def json_safe(obj: Any) -> Any:
    """``obj`` as JSON holds it: dicts, lists and tuples item by item, numpy scalars and
    arrays as Python's, a non-finite float (a figure not measured: NaN) as None, anything
    else JSON has no type for (a path) as its ``str``. ``json.dumps(allow_nan=False)``
    writes it (a bare NaN is no JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):  # bool is an int
        return obj
    return str(obj)
