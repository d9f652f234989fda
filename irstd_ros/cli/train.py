"""``irstd train``: parser over :func:`irstd_ros.training.train.train`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.cli._options import check_dataset_dir, check_output_dir, describe_options
from irstd_ros.cli._training import training_help
from irstd_ros.core.fields import flag_type
from irstd_ros.core.parsing import check_keys
from irstd_ros.errors import ConfigError
from irstd_ros.training.train import TRAIN_FIELDS, TrainConfig, read_config, train

FIELD_OPTIONS = (
    "split", "mask-suffix", "model", "epochs", "batch-size", "lr", "schedule", "min-lr",
    "crop", "seed", "device", "threads", "threshold", "max-steps", "minutes", "norm",
    "knee", "background", "loss", "init", "distill", "samples-per-epoch",
    "generator-frames", "generator-weight", "workers",
)
# a short placeholder where the default one (the upper-cased name) says less
METAVARS = {"init": "CHECKPOINT", "max-steps": "N", "threads": "N", "workers": "N", "minutes": "MIN",
            "crop": "PX", "background": "PX", "mask-suffix": "SUFFIX"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (resumable)",
        description="Train SGEM-UNet. The paper's recipe is the default: "
        "irstd train --data DIR --model paper  (1500 epochs, batch 8, lr 1e-4, 256 crops). "
        "Multi-GPU: torchrun --nproc_per_node N -m irstd_ros.cli.main train ...",
    )
    p.add_argument("--config", type=Path,
                   help="YAML file of training fields (see config/train/); the options given override it")
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path)
    for name in FIELD_OPTIONS:
        # numbers: the range the field itself checks (threshold in (0, 1), lr > 0, finite...)
        p.add_argument(f"--{name}", type=flag_type(TRAIN_FIELDS, name), metavar=METAVARS.get(name))
    p.add_argument(
        "--teacher", type=Path, nargs="+",
        help="distil from this checkpoint, or the mean logits of several (replaces the YAML's "
        "teacher; a source's own teacher stays)",
    )
    p.add_argument("--bf16", action="store_true", default=None)
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None)
    describe_options(p, training_help(a.dest for a in p._actions))
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML file first, command-line overrides second."""
    values: dict = {}
    if args.config:
        values.update(read_config(args.config))
    for key in TrainConfig.__dataclass_fields__:
        v = getattr(args, key.replace("-", "_"), None)
        if v is not None:
            values[key] = v
    if "data" not in values:
        raise ConfigError("--data (or data: in --config) is required")
    check_keys(values, list(TrainConfig.__dataclass_fields__), "training")
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if not cfg.sources:  # a mixture reads its sources' folders
        check_dataset_dir(cfg.data, "--data" if args.data is not None else "--config's data")
    check_output_dir(cfg.out, "--out")  # before any data is read: not after the first epoch
    final = train(cfg)
    print(json.dumps({"model": str(final)}))
    return 0
