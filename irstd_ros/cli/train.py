"""``irstd train``: parser over :func:`irstd_ros.training.train.train`."""

from __future__ import annotations

import argparse
import json

from irstd_ros.cli._options import (
    check_dataset_dir,
    check_distinct_paths,
    check_output_dir,
    describe_options,
)
from irstd_ros.cli._training import training_help, training_inputs
from irstd_ros.training.train import add_arguments, config_from_args, read_config, train

__all__ = ["config_from_args", "read_config", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (resumable)",
        description="Train SGEM-UNet. The paper's recipe is the default: "
        "irstd train --data DIR --model paper  (1500 epochs, batch 8, lr 1e-4, 256 crops). "
        "Multi-GPU: torchrun --nproc_per_node N -m irstd_ros.cli.main train ...",
    )
    add_arguments(p)
    describe_options(p, training_help(a.dest for a in p._actions))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    data_option = "--data" if args.data is not None else "--config's data"
    if not cfg.sources:  # a mixture reads its sources' folders
        check_dataset_dir(cfg.data, data_option)
    check_output_dir(cfg.out, "--out")  # before any data is read: not after the first epoch
    check_distinct_paths([(cfg.out, "--out")], inputs=training_inputs(cfg, data_option))  # not in a dataset
    final = train(cfg)
    print(json.dumps({"model": str(final)}))
    return 0
