import argparse

import pytest

from irstd_ros.core.parsing import dataclass_from_dict, parse_range, parse_size, size_arg
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


@pytest.mark.parametrize(("data", "kind"), [("tiny", "str"), ([["a", 1]], "list"), (None, "NoneType"), (3, "int")])
def test_dataclass_from_dict_refuses_what_is_not_a_mapping(data, kind):
    """A string was read as its characters: "unknown model config keys ['i', 'n', 't', 'y']"."""
    from irstd_ros.models import ModelConfig

    with pytest.raises(ConfigError, match=rf"^expected a JSON object for model config, got {kind}$"):
        dataclass_from_dict(ModelConfig, data, "model config")
    assert dataclass_from_dict(ModelConfig, {"widths": [8, 16, 32, 64, 128]}, "model config").widths[0] == 8
