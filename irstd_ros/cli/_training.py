"""The help of the training options, one wording for ``irstd train`` and ``irstd train-gpu``
(whose options :func:`irstd_ros.training.gpu.add_arguments` defines), each with the default
the run takes when neither the option nor the ``--config`` YAML sets it: the config
dataclass's field, or for ``train-gpu`` the recipe's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from irstd_ros.cli._options import DATA_HELP, MASK_SUFFIX_HELP, weights_input
from irstd_ros.core.normalization import NORM_KINDS
from irstd_ros.core.parsing import path_tuple
from irstd_ros.models.config import NAMED_CONFIGS
from irstd_ros.training.gpu import RECIPES, GPUTrainConfig
from irstd_ros.training.loss import LOSSES
from irstd_ros.training.train import DEVICE_CHOICES, TrainConfig

# destination -> what the option is; the default is added by :func:`training_help`
# (destinations whose default None means something say what in their text)
TRAINING_HELP: dict[str, str] = {
    "data": DATA_HELP,
    "out": "run folder: checkpoints (last.safetensors, model.safetensors) and history; "
    "a run there is resumed",
    "split": "split list of --data to train on",
    "mask_suffix": MASK_SUFFIX_HELP,
    "model": f"network to train, a named config: {', '.join(NAMED_CONFIGS)}",
    "epochs": "epochs to train (--max-steps or --minutes may stop the run sooner)",
    "batch_size": "crops per optimizer step",
    "lr": "Adam learning rate (a schedule's highest)",
    "schedule": "learning rate schedule: constant, or cosine from --lr down to --min-lr",
    "min_lr": "the cosine schedule's last learning rate",
    "weight_decay": "Adam weight decay",
    "crop": "side of the square random training crops, px (a multiple of the model's stride)",
    "seed": "random seed: initial weights, crops, order and augmentation",
    "device": f"torch device: {DEVICE_CHOICES} (auto: CUDA when available, else the CPU)",
    "threads": "CPU threads for torch (default: torch's own choice)",
    "threshold": "detection threshold, a probability in (0, 1), recorded in the checkpoints as "
    "their own (what eval and the node use unless told otherwise)",
    "max_steps": "stop after N optimizer steps of the whole run, the epoch cut counted as done "
    "(smoke runs; default: no limit)",
    "minutes": "time budget of this invocation, minutes: stop and save after the epoch that "
    "passes it; a resumed run gets it afresh (default: no budget)",
    "norm": f"input normalisation: {' or '.join(NORM_KINDS)} (robust: per frame, local median "
    "background and asinh knee; global: the training frames' mean and std)",
    "knee": "robust normalisation: the asinh knee, in noise sigmas",
    "background": "robust normalisation: side of the local median blocks, px; 0: the frame's median",
    "loss": f"training loss: {' or '.join(LOSSES)} (+bce: calibrated probabilities)",
    "init": "start from this checkpoint file's weights, of --model's architecture "
    "(default: random initial weights)",
    "distill": "weight of the distillation term (with --teacher)",
    "samples_per_epoch": "mixture training: augmented crops per epoch; given alone, --data's split "
    "is the mixture's one source (default: 1000 with the --config's sources, else no mixture: "
    "one pass over --data)",
    "generator_frames": "mixture training: target-free frames of the project's generator, "
    "a source of weight --generator-weight",
    "generator_weight": "mixture training: sampling weight of the generator frames",
    "workers": "DataLoader worker processes (0: the data is loaded in the training process)",
    "ema": "decay per step of an exponential moving average of the weights (e.g. 0.998), "
    "the final model; 0: off",
    "eval_split": "the split of --data the final model is scored on at full resolution, its metrics "
    "recorded in model.safetensors (one sharing frames with the training data is refused); auto: "
    "the held-out list matching --split (train_X: test_X), else test or val, skipped with a "
    "warning if it shares training frames; none: no evaluation",
    "resume": "start afresh: the checkpoints, history and results of a run in --out are "
    "removed first (an interrupted new run leaves no other run's files beside its own)",
}

# train-gpu's own options (add_arguments leaves these without a help, or words a default otherwise)
GPU_HELP: dict[str, str] = {
    # not irstd train's (a budget per invocation): the time schedule spans the whole run
    "minutes": "time budget of the whole run, minutes, a resumed run's time already trained "
    "included (the time schedule spans it): stop and save after the epoch that passes it "
    "(default: no budget)",
    "train_groups": "with --pack: comma-separated pack groups to train on",
    "warmup_epochs": "epochs of linear learning rate warm-up to --lr",
    "schedule_by": "what the schedule follows: epochs, or time (the --minutes budget; epochs "
    "without one)",
    "save_every_s": "seconds between saves of last.safetensors, at an epoch's end (the last "
    "epoch is always saved)",
    "eval_group": "with --pack: the group scored at the end; none: no evaluation",
    "eval_split": "with --data: the split scored at the end; auto: the held-out list matching "
    "--split (train_X: test_X), else test or val, skipped with a warning if it shares training "
    "frames; none: no evaluation",
    "eval_batch": "frames per batch of the evaluation at the end",
    "bf16": "no bf16 autocast: train in FP32",
    "channels_last": "keep the contiguous memory format (no channels_last)",
}

TRAIN_ONLY_HELP: dict[str, str] = {
    "bf16": "bfloat16 autocast on the CPU (AVX512-BF16/AMX CPUs) with channels-last; "
    "ignored on a GPU",
}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "none" if value in ("", None) else str(value)


def _defaults(cls: type) -> dict[str, Any]:
    """The dataclass ``cls``'s field defaults by name (a factory's value made)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def training_help(dests: Iterable[str], gpu: bool = False) -> dict[str, str]:
    """The help of each destination in ``dests`` that this module describes, with the
    default the run takes: the config field's; for ``gpu`` the recipe's where a recipe sets
    it (``paper X, large Y`` where the recipes differ)."""
    defaults = _defaults(GPUTrainConfig if gpu else TrainConfig)
    texts = {**TRAINING_HELP, **(GPU_HELP if gpu else TRAIN_ONLY_HELP)}
    out = {}
    for dest in dests:
        if dest not in texts:
            continue
        text = texts[dest]
        if dest not in defaults or isinstance(defaults[dest], bool) or "default:" in text:
            out[dest] = text  # required (data), a switch, or a default told in the text
            continue
        default = defaults[dest]
        if gpu and any(dest in r for r in RECIPES.values()):
            values = {name: r.get(dest, default) for name, r in RECIPES.items()}
            if len(set(values.values())) > 1:
                told = ", ".join(f"{name} {_text(v)}" for name, v in values.items())
                out[dest] = f"{text} (default: the recipe's: {told})"
                continue
            default = next(iter(values.values()))
        out[dest] = f"{text} (default: {_text(default)})"
    return out


def training_inputs(cfg: TrainConfig, data_option: str) -> list[tuple[Path | None, str]]:
    """What a run reads, as inputs of :func:`~irstd_ros.cli._options.check_distinct_paths`:
    the dataset (``data``, named by ``data_option``), each mixture source's root, the
    starting weights and the teachers (a shipped model's name as its file)."""
    inputs: list[tuple[Path | None, str]] = [(cfg.data, data_option), (weights_input(cfg.init), "--init")]
    for i, source in enumerate(cfg.sources):
        root = source.get("root")
        if isinstance(root, (str, Path)):  # else the source's own check refuses it
            inputs.append((Path(root), f"--config's sources[{i}] root"))
    inputs.extend((weights_input(t), "--teacher") for t in path_tuple(cfg.teacher))
    return inputs
