"""Typed config fields (irstd_ros.core.fields): one rule per field, for YAML and flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from irstd_ros.core.fields import Number, as_names, as_path, check_fields, flag_type
from irstd_ros.errors import ConfigError


@pytest.mark.parametrize(
    "rule, value, expected",
    [
        (Number(), "1e-3", 0.001),  # PyYAML's string for 1e-3
        (Number(integer=True), "1e3", 1000),
        (Number(integer=True), 40.0, 40),
        (Number(low=0, low_open=True), 2, 2.0),
        (Number(optional=True), None, None),
    ],
)
def test_numbers_are_converted(rule, value, expected):
    out = rule("x", value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    "rule, value, message",
    [
        (Number(), "abc", "x must be a number, got 'abc'"),
        (Number(), float("nan"), "x must be a number"),
        (Number(), float("inf"), "x must be a number"),
        (Number(), True, "x must be a number, got True"),
        (Number(integer=True), 2.5, "x must be an integer"),
        (Number(low=0, low_open=True), 0, "x must be a number > 0, got 0"),
        (Number(low=0, high=1, high_open=True), 1, "x must be a number in [0, 1), got 1"),
        (Number(), None, "x must be a number, got None"),
        # an integer beyond float's range (YAML reads 1 and 400 zeros as an int): was an
        # OverflowError traceback
        pytest.param(Number(), 10**400, "x must be a number, got 1000", id="huge-int"),
        pytest.param(Number(low=0), -(10**400), "x must be a number >= 0, got -1000", id="huge-negative-int"),
    ],
)
def test_bad_numbers_are_one_config_error_naming_the_field(rule, value, message):
    with pytest.raises(ConfigError) as err:
        rule("x", value)
    assert message in str(err.value)


def test_a_flag_gets_its_fields_rule_as_a_usage_error():
    rules = {"lr": Number(low=0, low_open=True), "out": as_path, "name": as_names}
    assert flag_type(rules, "lr")("1e-3") == 0.001
    with pytest.raises(argparse.ArgumentTypeError, match="must be a number > 0, got '-1'"):
        flag_type(rules, "lr")("-1")
    assert flag_type(rules, "out") is Path and flag_type(rules, "name") is str


def test_check_fields_converts_in_place_and_names_the_first_bad_field():
    @dataclass
    class Cfg:
        lr: Any = "1e-3"
        groups: Any = field(default_factory=lambda: ["a"])

    rules = {"lr": Number(low=0, low_open=True), "groups": as_names}
    cfg = Cfg()
    check_fields(cfg, rules)
    assert cfg.lr == 0.001 and cfg.groups == ["a"]
    with pytest.raises(ConfigError, match="groups must be a non-empty list of names"):
        check_fields(Cfg(groups=[]), rules)
