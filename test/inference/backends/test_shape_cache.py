"""The per-size LRU of the OpenVINO, CUDA-graph and TensorRT backends: bounded, and a size
built again after it was dropped (sizes alternating past the bound) is logged once and counted."""

from __future__ import annotations

import logging

from irstd_ros.inference.backends import shape_cache
from irstd_ros.inference.backends.shape_cache import ShapeCache

REMEDY = "Feed fewer sizes."


def test_makes_once_keeps_the_most_recent_and_hands_back_the_dropped():
    made, dropped = [], []
    cache: ShapeCache = ShapeCache("test", 2, REMEDY, evict=dropped.append)

    def make(key):
        made.append(key)
        return f"engine {key}"

    for key in ((1, 1), (2, 2), (1, 1), (3, 3)):  # (1, 1) used again before (3, 3): (2, 2) is the least recent
        cache.get(key, make)
    assert made == [(1, 1), (2, 2), (3, 3)]
    assert dropped == ["engine (2, 2)"]
    assert list(cache) == [(1, 1), (3, 3)] and (3, 3) in cache and len(cache) == 2
    assert cache.values() == ["engine (1, 1)", "engine (3, 3)"]
    assert cache.stats() == {"size_limit": 2, "size_evictions": 1, "size_rebuilds": 0}


def test_sizes_alternating_past_the_limit_are_logged_once_and_counted(caplog):
    """Five sizes round robin through four places: each frame rebuilds (OpenVINO: 54-57 ms a
    frame instead of 1-4) and nothing said so."""
    cache: ShapeCache = ShapeCache("openvino", 4, REMEDY)
    sizes = [(1, 1, 16 * k, 32) for k in range(2, 7)]
    with caplog.at_level(logging.WARNING, logger=shape_cache.__name__):
        for _ in range(3):
            for size in sizes:
                cache.get(size, lambda key: object())
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("openvino: padded frame size 32x32 built again after it was dropped")
    assert "than the 4 it keeps" in warnings[0] and "32x48, 32x64" in warnings[0] and REMEDY in warnings[0]
    assert cache.stats() == {"size_limit": 4, "size_evictions": 11, "size_rebuilds": 10}


def test_a_failed_make_keeps_nothing_and_a_size_change_is_no_rebuild(caplog):
    cache: ShapeCache = ShapeCache("x", 1, REMEDY)

    def fail(key):
        raise RuntimeError("compile failed")

    try:
        cache.get((8, 8), fail)
    except RuntimeError:
        pass
    assert len(cache) == 0
    with caplog.at_level(logging.WARNING, logger=shape_cache.__name__):
        for size in ((8, 8), (16, 16), (32, 32)):  # a stream changing size: each new
            cache.get(size, lambda key: key)
    assert cache.stats()["size_rebuilds"] == 0 and not caplog.records
