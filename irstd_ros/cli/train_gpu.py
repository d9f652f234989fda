"""``irstd train-gpu``: parser over :func:`irstd_ros.training.gpu.train_gpu`."""

from __future__ import annotations

import argparse
import json

from irstd_ros.cli._options import check_output_dir
from irstd_ros.core.constants import TERMINATED_EXIT
from irstd_ros.training.gpu import (
    TERMINATED,
    add_arguments,
    config_from_args,
    sigterm_stop,
    train_gpu,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-gpu",
        help="train on a GPU with the data path on the device (pack or folder, bf16, time budget)",
        description="GPU training: crops, normalisation and augmentation as batched tensor ops on "
        "the device, bf16 autocast, channels_last, optional torch.compile, --minutes budget, "
        "resumable, full-resolution eval at the end. Recipes: paper (1500 epochs, batch 8, "
        "lr 1e-4, SoftIoU) and large (batch 64, lr 3e-4, warm-up + cosine over the budget). "
        "Example: irstd train-gpu --recipe large --pack out/pack/irstd_pack.npz --minutes 5 --out runs/gpu",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_output_dir(cfg.out, "--out")  # before any data is read: not at the first checkpoint
    # SIGTERM (`timeout`, `kill`) ends the training after the step in progress, with its
    # checkpoints and summary written (no evaluation), not mid-step as irstd's Terminated
    with sigterm_stop() as stop:
        summary = train_gpu(cfg, stop)
    print(json.dumps(summary))
    return TERMINATED_EXIT if summary.get("stop") == TERMINATED else 0
