"""``irstd train``: parser over :func:`irstd_ros.training.train.train`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from irstd_ros.errors import ConfigError
from irstd_ros.training.train import TrainConfig, train


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (resumable)",
        description="Train SGEM-UNet. The paper's recipe is the default: "
        "irstd train --data DIR --model paper  (1500 epochs, batch 8, lr 1e-4, 256 crops). "
        "Multi-GPU: torchrun --nproc_per_node N -m irstd_ros.cli.main train ...",
    )
    p.add_argument("--config", type=Path, help="YAML file of TrainConfig fields")
    p.add_argument("--data", type=Path, help="dataset root (images/, masks/, split lists)")
    p.add_argument("--out", type=Path, help="run folder (checkpoints; resumes if present)")
    for name, typ in (
        ("split", str), ("mask-suffix", str), ("model", str), ("epochs", int),
        ("batch-size", int), ("lr", float), ("schedule", str), ("min-lr", float),
        ("crop", int), ("seed", int), ("device", str), ("threads", int),
        ("threshold", float), ("max-steps", int), ("minutes", float), ("norm", str),
        ("knee", float), ("background", int), ("loss", str), ("init", Path), ("distill", float), ("samples-per-epoch", int),
        ("generator-frames", int), ("generator-weight", float), ("workers", int),
    ):
        p.add_argument(f"--{name}", type=typ)
    p.add_argument(
        "--teacher", type=Path, nargs="+",
        help="distil from this checkpoint, or the mean logits of several (replaces the YAML's "
        "teacher; a source's own teacher stays)",
    )
    p.add_argument("--bf16", action="store_true", default=None, help="CPU bfloat16 autocast")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None)
    p.set_defaults(func=run)


def read_config(path: Path) -> dict:
    """The mapping of TrainConfig fields in a YAML file (empty file: {}); one-line
    :class:`ConfigError` naming the file when it is not YAML or not a mapping."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"config file {path}: malformed YAML{at}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not a text (YAML) file") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of training options (key: value), "
            f"got a YAML {type(loaded).__name__}"
        )
    return loaded


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML file first, command-line overrides second."""
    values: dict = {}
    if args.config:
        if args.config.is_dir():
            raise ConfigError(f"config file {args.config} is a directory")
        if not args.config.is_file():
            raise ConfigError(f"config file not found: {args.config}")
        values.update(read_config(args.config))
    for key in TrainConfig.__dataclass_fields__:
        v = getattr(args, key.replace("-", "_"), None)
        if v is not None:
            values[key] = v
    if "data" not in values:
        raise ConfigError("--data (or data: in --config) is required")
    unknown = set(values) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown training options {sorted(unknown)}")
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    final = train(config_from_args(args))
    print(json.dumps({"model": str(final)}))
    return 0
