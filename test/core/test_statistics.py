"""The package's one percentile (nearest rank)."""

import numpy as np
import pytest

from irstd_ros.core.statistics import (
    TAIL_SAMPLES,
    format_number,
    format_tail,
    json_safe,
    percentile,
    ratio,
)


def test_nearest_rank():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 100.0], 99) == 100.0
    assert percentile([5.0], 99) == 5.0
    assert percentile(range(1, 101), 0) == 1.0 and percentile(range(1, 101), 100) == 100.0
    values = np.arange(1, 11, dtype=np.float64)
    for q in (10, 25, 50, 90, 95):
        rank = max(1, int(np.ceil(q / 100 * len(values))))
        assert percentile(values, q) == values[rank - 1]  # a sample, never interpolated


def test_the_rank_is_numpy_s_inverted_cdf_without_its_method_keyword(monkeypatch):
    """numpy's ``percentile(method=...)`` is 1.22+ (ROS 2 Humble's Ubuntu 22.04 ships 1.21:
    the node died at its first diagnostics after a frame); the rule is computed here, to
    the same sample as numpy's ``inverted_cdf`` for every size and percentile."""
    rng = np.random.default_rng(0)
    cases = [(n, q) for n in (1, 2, 3, 7, 10, 100, 1000) for q in (0, 0.1, 7, 29, 50, 57, 90, 99, 99.9, 100)]
    cases += [(int(rng.integers(1, 500)), float(rng.uniform(0, 100))) for _ in range(200)]
    expected = {}
    for n, q in cases:
        values = rng.normal(size=n)
        expected[n, q] = (values, float(np.percentile(values, q, method="inverted_cdf")))

    def numpy_1_21(a, q, *args, **kwargs):
        raise TypeError("_percentile_dispatcher() got an unexpected keyword argument 'method'")

    monkeypatch.setattr(np, "percentile", numpy_1_21)
    for (n, q), (values, want) in expected.items():
        assert percentile(values, q) == want, (n, q)


def test_no_values_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ratio_is_undefined_for_an_empty_denominator():
    assert ratio(3, 4) == 0.75
    assert ratio(0, 0) is None


@pytest.mark.parametrize("value", [None, float("nan"), np.float64("nan"), np.float32("nan")])
def test_an_undefined_figure_prints_as_undefined_never_nan(value):
    assert format_number(value, ".3f") == "-"
    assert format_number(value, ".4g", "undefined") == "undefined"


def test_a_defined_figure_prints_with_its_spec():
    assert format_number(0.12345, ".3f") == "0.123"
    assert format_number(0, ".2e") == "0.00e+00"  # a measured 0 stays 0
    assert format_number(12.34) == "12.3"


@pytest.mark.parametrize(("value", "n", "text"), [
    (2.63, 4, "max 2.6 (n=4)"),
    (2.63, TAIL_SAMPLES - 1, f"max 2.6 (n={TAIL_SAMPLES - 1})"),
    (2.63, TAIL_SAMPLES, "2.6"),
    (None, 0, "-"),
    (float("nan"), 5, "-"),
])
def test_a_p99_of_fewer_than_100_samples_is_printed_as_their_max(value, n, text):
    assert format_tail(value, n) == text


def test_json_safe_writes_an_undefined_figure_as_null_and_the_rest_as_json_holds_it():
    """The one JSON cleaner of load-test's report and bench's backend descriptions."""
    from pathlib import Path

    data = {"a": (1.0, float("nan"), np.int64(3), np.array([0.5, -np.inf])), "p": Path("/x"), "ok": True, "n": None}
    assert json_safe(data) == {"a": [1.0, None, 3, [0.5, None]], "p": "/x", "ok": True, "n": None}
