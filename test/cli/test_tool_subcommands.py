"""The tools are ``irstd`` subcommands: ``irstd demo``, ``irstd load-test``, ``irstd envelope`` (``irstd bench``
is tested with the benchmark)."""

from __future__ import annotations

from irstd_ros.cli.main import build_parser
from irstd_ros.tools import demo, load_test


def test_demo_subcommand_takes_the_demo_options():
    args = build_parser().parse_args(["demo", "--frames", "5", "--snr", "4:10"])
    assert args.func is demo.run and args.frames == 5 and args.snr == "4:10"


def test_load_test_subcommand_takes_the_load_test_options():
    args = build_parser().parse_args(["load-test", "--rate", "50", "--size", "320x256"])
    assert args.func is load_test.run and args.rate == 50.0 and args.size == (320, 256)
    assert args.weights is None  # the shipped model
    args = build_parser().parse_args(["load-test", "--weights", "w/fast.safetensors"])
    assert str(args.weights) == "w/fast.safetensors"


def test_envelope_grid_options_are_read_in_order_each_once():
    from irstd_ros.cli.envelope import config_from_args

    args = build_parser().parse_args(["envelope", "--snrs", "30", "2", "2", "--sizes", "9", "point", "9"])
    cfg = config_from_args(args)
    assert cfg.snrs == (2.0, 30.0) and cfg.sizes == ("9", "point")
