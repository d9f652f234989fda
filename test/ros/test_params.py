"""The node's parameter table, its validation, and config/irstd.yaml (no rclpy)."""

from pathlib import Path

import pytest
import yaml

from irstd_ros.errors import ConfigError
from irstd_ros.ros.params import PARAMS, SPECS, check_value, parse_override, validate

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {p.name: p.default for p in PARAMS}


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_params_file_covers_every_parameter_with_valid_values():
    data = yaml.safe_load((ROOT / "config" / "irstd.yaml").read_text())
    values = flatten(data["/**"]["ros__parameters"])
    assert set(values) == set(SPECS)
    for name, value in values.items():
        assert validate(name, value, DEFAULTS) is None, name
        assert type(value) is type(SPECS[name].default), name


def test_defaults_are_valid():
    for p in PARAMS:
        assert validate(p.name, p.default, DEFAULTS) is None, p.name


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("detection.threshold", 1.5, "in \\[-1.0, 1.0\\]"),
        ("detection.threshold", float("nan"), "NaN"),
        ("detection.threshold", 0.0, "whole frame one target"),  # every pixel above 0
        ("detection.threshold", 1.0, "nothing is above 1"),
        ("tracking.candidate_threshold", 1.0, "0 for off"),
        ("tracking.gated_threshold", 1.0, "nothing is above 1"),
        ("input.high", float("inf"), "finite"),  # fixed scaling would map every frame to 0
        ("input.low", float("-inf"), "finite"),
        ("detection.min_area", 0, "in \\[1"),
        ("detection.min_area", 2.5, "integer"),
        ("detection.max_area", "big", "number"),
        ("qos.reliability", "sometimes", "one of reliable, best_effort"),
        ("input.scaling", "gamma", "one of"),
        ("model.backend", "bogus", "one of auto, cpu, tensorrt, cuda, torch-cpu"),  # the registry's
        ("publish.overlay", 1, "bool"),
        ("nope", 1, "unknown parameter"),
    ],
)
def test_invalid_values_are_refused_with_a_reason(name, value, reason):
    msg = validate(name, value, DEFAULTS)
    assert msg is not None
    import re

    assert re.search(reason, msg), msg


@pytest.mark.parametrize(
    ("name", "value"),
    [("detection.threshold", -1.0), ("detection.threshold", 0.3), ("tracking.candidate_threshold", 0.0),
     ("tracking.gated_threshold", 0.0), ("tracking.gated_threshold", -0.5)],
)
def test_thresholds_take_the_checkpoint_s_own_a_probability_or_off(name, value):
    assert check_value(name, value) is None


def test_cross_parameter_rules():
    assert "min_area" in validate("detection.min_area", 50, {**DEFAULTS, "detection.max_area": 10})
    assert validate("detection.max_area", 5, {**DEFAULTS, "detection.min_area": 6})
    assert validate("input.percentile_low", 99.9, DEFAULTS)
    assert validate("input.scaling", "fixed", {**DEFAULTS, "input.low": 9.0, "input.high": 1.0})


def test_gated_threshold_must_be_below_the_candidate_threshold():
    explicit = {**DEFAULTS, "tracking.candidate_threshold": 0.2, "tracking.gated_threshold": 0.05}
    assert "gated_threshold" in validate("tracking.gated_threshold", 0.2, explicit)
    assert "gated_threshold" in validate("tracking.candidate_threshold", 0.03, explicit)
    no_candidates = {**explicit, "tracking.candidate_threshold": 0.0}
    no_gated = {**explicit, "tracking.gated_threshold": 0.0}
    assert validate("tracking.gated_threshold", 0.3, no_candidates) is None
    assert validate("tracking.candidate_threshold", 0.03, no_gated) is None


def test_tracker_thresholds_left_to_the_checkpoint_are_checked_against_its_own():
    from irstd_ros.checkpoint import CheckpointInfo
    from irstd_ros.models import named_config

    assert DEFAULTS["tracking.candidate_threshold"] < 0 and DEFAULTS["tracking.gated_threshold"] < 0
    own = CheckpointInfo(named_config("tiny"), candidate_threshold=0.53, gated_threshold=0.41)
    assert validate("tracking.candidate_threshold", 0.3, DEFAULTS) is None  # no model loaded yet
    assert "0.41" in validate("tracking.candidate_threshold", 0.3, DEFAULTS, own)
    assert validate("tracking.candidate_threshold", 0.5, DEFAULTS, own) is None
    assert "0.53" in validate("tracking.gated_threshold", 0.6, DEFAULTS, own)
    assert validate("tracking.max_coast_long_s", -1.0, DEFAULTS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("qos.depth:=1", ("qos.depth", 1)),
        ("input.max_age:=0", ("input.max_age", 0.0)),  # an integer where a float is due
        ("publish.overlay:=true", ("publish.overlay", True)),
        ("publish.overlay:=y", ("publish.overlay", True)),  # rcl: y/Y/n/N are booleans
        ("publish.overlay:=N", ("publish.overlay", False)),
        ("publish.overlay:=Off", ("publish.overlay", False)),
        ("model.path:=y", ("model.path", "y")),  # a bool to rcl: the string as typed, like 1.5
        ("model.path:=", ("model.path", "")),
        ("model.path:=1.5", ("model.path", "1.5")),  # strings stay as typed
        ("qos.reliability:=best_effort", ("qos.reliability", "best_effort")),
        ("input.high:=1e4", ("input.high", 10000.0)),  # rcl: strtod; YAML 1.1: a string
        ("tracking.min_score:=1e-3", ("tracking.min_score", 0.001)),
        ("detection.min_area:=0x10", ("detection.min_area", 16)),
        ("detection.min_area:=010", ("detection.min_area", 8)),  # strtol base 0: octal
        ("input.high:=08", ("input.high", 8.0)),  # not octal: strtod's 8.0
        ("input.high:=+5", ("input.high", 5.0)),
        ("qos.depth:= 4 ", ("qos.depth", 4)),  # YAML's spaces: rcl reads 4, not " 4 "
        ("input.high:=1e4 ", ("input.high", 10000.0)),
        ("detection.min_area:= 0x10", ("detection.min_area", 16)),
        ("publish.overlay:= y", ("publish.overlay", True)),
    ],
)
def test_overrides_are_read_as_ros_reads_them(text, expected):
    name, value = parse_override(text)
    assert (name, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("qos.depth=1", "NAME:=VALUE"),
        (":=1", "NAME:=VALUE"),
        ("qos.dept:=1", "unknown node parameter 'qos.dept'; did you mean qos.depth"),
        ("zzz:=1", "unknown node parameter 'zzz' \\(README"),
        ("qos.depth:=0", "in \\[1"),
        ("qos.depth:=[1", "cannot read"),
        ("publish.overlay:=1", "bool"),
        ("publish.overlay:='y'", "bool"),  # quoted: a string for rcl too
        ("input.high:=.inf", "finite"),
        ("input.high:='1e4'", "number"),  # quoted: a string for ROS too
        ("qos.depth:=1_0", "number"),  # rcl reads 1_0 as a string, YAML 1.1 as 10
        ("detection.min_area:=1e2", "integer"),  # a double for ROS
        ("detection.min_area:=08", "integer"),  # strtod's 8.0
        ("input.max_age:=61", "in \\[0.0, 60.0\\]"),  # older stamps are not live: never checked
        ("detection.min_area:=0b1", "number"),  # YAML 1.1 and Python: 1; rcl: a string
        ("detection.min_area:=0o10", "number"),  # Python: 8; rcl: a string
        ("detection.min_area:=1:30", "number"),  # YAML 1.1 sexagesimal 90; rcl: a string
        ("input.high:=1:30.5", "number"),
    ],
)
def test_bad_overrides_are_refused_with_a_reason(text, reason):
    with pytest.raises(ConfigError, match=reason):
        parse_override(text)


def readme_parameter_rows():
    """name -> (default cell, change cell, names sharing the row) of README's 'Parameters'."""
    import re

    section = (ROOT / "README.md").read_text().split("\n## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        names: list[str] = []
        for n in re.findall(r"`([^`]+)`", cells[0]):  # `a.b`, `c` (a.c), `_high` (a.b_high)
            if "." in n:
                names.append(n)
            elif n.startswith("_"):
                names.append(re.sub(r"_[a-z]+$", n, names[-1]))
            else:
                names.append(names[0].rsplit(".", 1)[0] + "." + n)
        for n in names:
            rows[n] = (cells[1], cells[3], len(names))
    return rows


def test_readme_parameter_table_matches_the_parameters():
    rows = readme_parameter_rows()
    assert set(rows) == set(SPECS)
    for p in PARAMS:
        default, change, shared = rows[p.name]
        assert change == ("restart" if p.read_only else "run time"), p.name
        if shared == 1:
            want = str(p.default).lower() if isinstance(p.default, bool) else str(p.default) or "''"
            assert default == f"`{want}`", p.name


def test_gate_description_says_only_a_tentative_tracks_gate_widens():
    # the tracker never widens a confirmed track's gate (irstd_ros/tracking/tracker.py)
    assert "tentative" in SPECS["tracking.gate_px"].description
