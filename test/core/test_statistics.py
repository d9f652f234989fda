"""The package's one percentile (nearest rank)."""

import numpy as np
import pytest

from irstd_ros.core.statistics import percentile


def test_nearest_rank():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 100.0], 99) == 100.0
    assert percentile([5.0], 99) == 5.0
    assert percentile(range(1, 101), 0) == 1.0 and percentile(range(1, 101), 100) == 100.0
    values = np.arange(1, 11, dtype=np.float64)
    for q in (10, 25, 50, 90, 95):
        rank = max(1, int(np.ceil(q / 100 * len(values))))
        assert percentile(values, q) == values[rank - 1]  # a sample, never interpolated


def test_no_values_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)
