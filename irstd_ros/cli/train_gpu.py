"""``irstd train-gpu``: parser over :func:`irstd_ros.training.gpu.train_gpu`."""

from __future__ import annotations

import argparse
import json
import sys

from irstd_ros.cli._options import (
    check_dataset_dir,
    check_distinct_paths,
    check_output_dir,
    describe_options,
)
from irstd_ros.cli._training import training_help, training_inputs
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
    # the options add_arguments defines with no help (or another wording of a shared one)
    describe_options(p, training_help((a.dest for a in p._actions), gpu=True))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    data_option = "--data" if args.data is not None else "--config's data"
    if cfg.pack is None:  # a pack's own path may stand as data too
        check_dataset_dir(cfg.data, data_option, "a pack (irstd pack) goes to --pack")
    check_output_dir(cfg.out, "--out")  # before any data is read: not at the first checkpoint
    # a pack is one file (its own check names a folder given as one), which data may repeat
    inputs = [(path, option) for path, option in training_inputs(cfg, data_option)
              if cfg.pack is None or path != cfg.pack]
    check_distinct_paths([(cfg.out, "--out")], inputs=inputs)  # not in a dataset
    # SIGTERM (`timeout`, `kill`) ends the training after the step in progress, with its
    # checkpoints and summary written (no evaluation), not mid-step as irstd's Terminated
    with sigterm_stop() as stop:
        summary = train_gpu(cfg, stop)
    print(json.dumps(summary))
    if summary.get("stop") == TERMINATED:  # one readable line, as every command stopped says
        print(f"irstd train-gpu: terminated after {summary['epochs_done']} epochs "
              "(checkpoints written, no evaluation)", file=sys.stderr)
        return TERMINATED_EXIT
    return 0
