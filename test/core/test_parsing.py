import argparse

import pytest

from irstd_ros.core.parsing import parse_range, parse_size, size_arg
from irstd_ros.errors import ConfigError


def test_parse_size_is_width_by_height_as_written():
    assert parse_size("640x512") == (640, 512)
    assert parse_size("320X256") == (320, 256)
    for bad in ("640", "ax2", "0x512", "640x-1"):
        with pytest.raises(ConfigError, match="size must be"):
            parse_size(bad)


def test_size_arg_reports_the_message_through_argparse():
    assert size_arg("32x16") == (32, 16)
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT"):
        size_arg("big")


def test_parse_range():
    assert parse_range("6") == (6.0, 6.0) and parse_range("4:10") == (4.0, 10.0)
    with pytest.raises(ConfigError):
        parse_range("1:2:3")
