"""``irstd info``: size of an architecture/config, or what a checkpoint says about itself."""

from __future__ import annotations

import argparse
import json

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.cli._options import add_json, add_weights
from irstd_ros.errors import ConfigError
from irstd_ros.inference.detector import resolve_model_path
from irstd_ros.models import NAMED_CONFIGS, build_model, named_config
from irstd_ros.models.profile import count_macs, count_params
from irstd_ros.models.registry import MODELS

PROFILE_SIZE = 256
DEFAULT_CONFIG = "paper"
# text output; a checkpoint adds what it says of itself (its thresholds); --json: everything
TEXT_KEYS = ("arch", "config", "params", "gmacs_256", "threshold", "candidate_threshold", "gated_threshold")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters and GMACs of a model, or a checkpoint's metadata")
    p.add_argument("--arch", help=f"architecture ({', '.join(MODELS)}; default: the config's)")
    p.add_argument("--config", help=f"named config ({', '.join(NAMED_CONFIGS)}; default: {DEFAULT_CONFIG})")
    add_weights(p, "describe this instead")
    add_json(p)
    p.set_defaults(func=run)


def model_info(arch: str | None, config: str) -> dict:
    """Parameters and GMACs at 1x256x256 of a named configuration of ``arch`` (None: the
    configuration's own)."""
    cfg = named_config(config)
    arch = cfg.arch if arch is None else arch
    if arch not in MODELS:
        raise ConfigError(f"unknown architecture {arch!r}; valid: {', '.join(sorted(MODELS))}")
    if cfg.arch != arch:
        raise ConfigError(f"config {config!r} is for {cfg.arch!r}, not {arch!r}")
    model = build_model(cfg)
    return {
        "arch": arch,
        "config": config,
        "params": count_params(model),
        "gmacs_256": count_macs(model, PROFILE_SIZE, PROFILE_SIZE) / 1e9,
        "macs_convention": "multiply-accumulates = torch FlopCounterMode FLOPs / 2",
        "model": cfg.to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    if args.weights:
        given = [option for option, value in (("--arch", args.arch), ("--config", args.config)) if value is not None]
        if given:  # the checkpoint says what it is: they would be ignored
            raise ConfigError(f"{', '.join(given)}: not with --weights (the checkpoint names its own network)")
        # the tensors too, not only the metadata: a file whose weights are not of the network
        # its metadata names is refused here as everywhere, not described by that name
        model, info, _ = load_checkpoint(resolve_model_path(args.weights))
        out = json.loads(info.to_json())
        out["params"] = count_params(model)
        out["gmacs_256"] = count_macs(model, PROFILE_SIZE, PROFILE_SIZE) / 1e9
    else:
        out = model_info(args.arch, args.config or DEFAULT_CONFIG)
    if args.json:
        print(json.dumps(out))
    else:
        shown = {"arch": out["model"]["arch"], **out} if args.weights else out
        for key in TEXT_KEYS:
            if shown.get(key) is not None:
                print(f"{key:19s} {shown[key]}")
    return 0
