"""The training loop: seeded, resumable, CPU or CUDA, optional DDP under torchrun.

Checkpoints (``<out>/last.safetensors``) hold the weights, the optimizer
state and the loop state, so ``irstd train`` with the same ``--out`` resumes
where a killed run stopped (with its network, data and recipe: :func:`check_resume`
refuses others; ``epochs`` may grow). ``<out>/model.safetensors`` is the final model.

Data: one dataset (``data``/``split``, the paper's setting), or a weighted mixture
(``sources``) with implanted targets, sensor augmentation and the project's own
generator frames (:mod:`irstd_ros.data.mixture`). Frames are normalised by the
checkpoint's :class:`~irstd_ros.core.InputNorm` exactly as at run time.

At the end the final model is scored on ``eval_split`` of ``data`` at full resolution
(``auto``: the dataset's held-out split, :mod:`irstd_ros.evaluation.splits`), as
``irstd train-gpu`` does, and the metrics are recorded in ``model.safetensors``
(``extra.metrics``, with the ``set`` they were measured on: ``<data>:<split>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import yaml
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from irstd_ros.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_info,
    save_checkpoint,
    weights_mismatch,
)
from irstd_ros.core.fields import (
    FieldRule,
    Number,
    as_flag,
    as_mapping,
    as_mappings,
    as_optional_path,
    as_optional_text,
    as_path,
    as_paths,
    as_scale,
    as_text,
    check_fields,
    flag_type,
)
from irstd_ros.core.normalization import NORM_KINDS, InputNorm, to_unit_range
from irstd_ros.core.parsing import check_keys, dataclass_from_dict, path_tuple
from irstd_ros.core.paths import write_text_atomic
from irstd_ros.data import DatasetSpec, IRSTDDataset, find_pairs
from irstd_ros.data.datasets import seed_worker
from irstd_ros.data.mixture import AugmentConfig, MixtureSamples, SourceSpec, is_pack
from irstd_ros.data.paste import PasteConfig
from irstd_ros.errors import ConfigError
from irstd_ros.evaluation.splits import auto_held_out, describe_shared, shared_frames, split_frames
from irstd_ros.inference.detector import resolve_model_path
from irstd_ros.models import ModelConfig, build_model, named_config
from irstd_ros.models.widen import widen_state_dict
from irstd_ros.sim.implant import ImplantConfig
from irstd_ros.sim.sensor import SensorConfig
from irstd_ros.training.loss import (
    LOSSES,
    consistency_loss,
    consistency_region,
    dihedral,
    distillation_loss,
    random_symmetry,
    training_loss,
    undo_dihedral,
)
from irstd_ros.training.scoring import scored
from irstd_ros.training.teachers import Teachers

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)

log = logging.getLogger(__name__)

# a run's starting point when its init was transformed (widened or partly copied)
INIT_NAME = "init.safetensors"
SHM_PATH = "/dev/shm"  # where DataLoader workers hand their batches over (Linux)
PREFETCH_FACTOR = 2  # batches each DataLoader worker keeps ready (torch's default)
SHM_HEADROOM = 2  # shared memory per batch in flight: it and the one being freed
AUTO_EVAL_SPLIT = "auto"  # eval_split: the dataset's held-out split, where it has one
NO_EVAL_SPLIT = ("", "none")  # eval_split (None too): no evaluation at the end
EVAL_BATCH = 4  # frames per batch of irstd train's final evaluation (train-gpu: eval_batch)
RUN_FILES = ("last.safetensors", "model.safetensors", "history.json")  # what a run writes
MAX_REASON_WORDS = 40  # of a library's error quoted in a one-line refusal
# a batch of one crop needs a bottleneck of at least this many values on a side: BatchNorm
# cannot train on one value per channel (a crop of one stride)
MIN_BOTTLENECK_SIDE = 2


def check_batch_of_one(crop: int, stride: int, batch: int) -> None:
    """:class:`ConfigError` when batches of ``batch`` crops of ``crop`` px (a network of
    ``stride``) would hand BatchNorm one value per channel at the bottleneck."""
    smallest = MIN_BOTTLENECK_SIDE * stride
    if batch == 1 and crop < smallest:
        raise ConfigError(
            f"a batch of one {crop} px crop leaves the bottleneck one value per channel, which "
            f"BatchNorm cannot train on: crop >= {smallest} or batches of >= 2 crops (a data set "
            f"of one image makes batches of one)"
        )


@dataclass
class TrainConfig:
    """A training run. Defaults are the paper's recipe (1,500 epochs, batch 8,
    Adam lr 1e-4, SoftIoU, random 256x256 crops) on the ``paper`` network."""

    data: Path
    out: Path = Path("runs/train")
    split: str = "train"
    mask_suffix: str = ""
    model: str = "paper"
    epochs: int = 1500
    batch_size: int = 8
    lr: float = 1e-4
    schedule: str = "constant"  # constant | cosine
    min_lr: float = 1e-6
    weight_decay: float = 0.0
    crop: int = 256
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None
    bf16: bool = False  # CPU autocast to bfloat16 (AVX512-BF16/AMX CPUs), channels-last
    threshold: float = 0.5
    # the split of ``data`` the final model is scored on, its metrics recorded in the model
    # file; auto: the held-out split (test, else val) where ``data`` has one; None: none
    eval_split: str | None = AUTO_EVAL_SPLIT
    resume: bool = True
    # stop early (tests, smoke runs) after this many optimizer steps of the whole run; the
    # epoch it cuts counts as done (its history entry, the schedule, the checkpoint), so a
    # resumption with a higher or no max_steps goes on at the next epoch, by design: the
    # checkpoints resume at epoch boundaries only (that epoch's rest is not owed)
    max_steps: int | None = None
    minutes: float | None = None  # time budget of this invocation (a resumed run gets it afresh): stop and save after the epoch that passes it
    norm: str = "robust"  # input normalisation kind (robust | global), see irstd_ros.core
    knee: float = 4.0  # robust normalisation: asinh knee in noise sigmas
    background: int = 32  # robust normalisation: local median block (px); 0: the frame's median
    loss: str = "softiou"  # softiou | softiou+bce (calibrated probabilities)
    init: Path | None = None  # start from these weights (same architecture)
    init_partial: bool = False  # take only the init tensors whose name and shape fit the model
    init_widen: bool = False  # init is a narrower network: embed it (irstd_ros.models.widen)
    # distil from this checkpoint's probabilities, or a list's mean logits (same input norm);
    # a mixture source's own ``teacher`` overrides it for that source's samples (an empty
    # list: none); the generator frames take this one. One path stays a path, so a single
    # teacher is recorded as before.
    teacher: Path | list[Path] | None = None
    distill: float = 0.5  # weight of the distillation term when a teacher is given
    # raise the teacher's probability to the label on target pixels (labelled and implanted
    # targets are never unlearnt from a teacher that misses them); false: the teacher as is
    distill_keep_labels: bool = False
    # weight of the turn-consistency term: each batch also goes through the network turned
    # by a random non-identity element of the square's symmetries (90° turns, mirror); both
    # views take the label loss (averaged), and each is pulled towards the other's
    # probabilities, so the decision does not turn with the frame. 0: off (one pass/step)
    consistency: float = 0.0
    # > 0: the consistency term only within this many px of a labelled target and where
    # either view fires (the mean over those pixels); 0: over every pixel
    consistency_radius: int = 0
    # > 0: also keep an exponential moving average of the weights and BatchNorm statistics
    # (torch.optim.swa_utils; the decay per step, e.g. 0.998 weighs about the last 500
    # steps); the final model is the average, the raw weights stay in last.safetensors. 0: off
    ema: float = 0.0
    # Mixture training (irstd_ros.data.mixture): list of {root, split, weight, implant_prob}.
    sources: list[dict[str, Any]] = field(default_factory=list)
    samples_per_epoch: int | None = None  # None: one pass over the single dataset
    generator_frames: int = 0  # target-free frames of the project's generator in the mixture
    generator_weight: float = 0.0
    generator_implant: float = 0.8
    implant: dict[str, Any] = field(default_factory=dict)  # ImplantConfig overrides, e.g. count: [1, 6]
    # real targets pasted (irstd_ros.data.paste): PasteConfig overrides, e.g. gain: [0.5, 1.5];
    # sources take `paste_prob`, `border_prob` and `bank: true`; the generator frames take generator_paste
    paste: dict[str, Any] = field(default_factory=dict)
    generator_paste: float = 0.0
    sensor: dict[str, Any] = field(default_factory=dict)  # SensorConfig overrides, e.g. row_fpn_prob: 0.2
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # mixture zoom range [low, high]
    scale_prob: float = 0.0  # share of mixture samples zoomed by a log-uniform factor in `scale`
    workers: int = 0  # DataLoader worker processes
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self, TRAIN_FIELDS)
        if self.eval_split in NO_EVAL_SPLIT:  # "none" (a command line's word), "" or YAML null
            self.eval_split = None
        teachers = path_tuple(self.teacher)
        self.teacher = None if not teachers else teachers[0] if len(teachers) == 1 else list(teachers)
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"unknown schedule {self.schedule!r}; valid: constant, cosine")
        if self.norm not in NORM_KINDS:
            raise ConfigError(f"unknown norm {self.norm!r}; valid: {', '.join(NORM_KINDS)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        reserved = self.reserved_extra()
        taken = sorted(reserved.intersection(self.extra))
        if taken:  # spread into the checkpoints' extra, they replaced the run's own records
            raise ConfigError(f"extra may not set {', '.join(taken)}: the checkpoints record "
                              f"{', '.join(sorted(reserved))} themselves")
        stride = named_config(self.model).stride  # also refuses an unknown model name
        if self.crop < stride:
            raise ConfigError(f"crop must be >= {stride} (the stride of model {self.model!r}), got {self.crop}")
        check_batch_of_one(self.crop, stride, self.batch_size)
        if self.crop % stride:  # the network sees stride multiples only: inference pads to them
            raise ConfigError(
                f"crop must be a multiple of {stride} (the stride of model {self.model!r}), got "
                f"{self.crop}; e.g. {max(stride, self.crop // stride * stride)}"
            )
        for name, value in asdict(self).items():  # the checkpoints record it: found now, not
            try:  # when the first epoch is saved
                json.dumps(plain(value))
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{name} must hold plain values (numbers, strings, lists, mappings): {exc}"
                ) from None

    def reserved_extra(self) -> frozenset[str]:
        """What this run's checkpoints record themselves: not for ``extra``."""
        return RESERVED_EXTRA

    def resume_fixed(self) -> tuple[str, ...]:
        """The fields a resumption must share with the run it resumes."""
        return RESUME_FIXED

    def recorded(self) -> dict[str, Any]:
        """The config as its checkpoints record it (``extra.train_config``, JSON values)."""
        return {k: plain(v) for k, v in asdict(self).items()}


# what the checkpoints record of the run (and what calibrate and soup add): not in ``extra``
RESERVED_EXTRA = frozenset({"data", "train_config", "train_state", "metrics", "calibration", "soup"})
# the recipe: changed on a resumption, the run goes on as another than the one begun, and
# its record claims the new recipe for every epoch (the model, the normalisation and the
# data are checked on their own; epochs may grow, and the budget, threads, device, bf16
# and threshold go with the invocation; ema has its own rules: a kept average keeps its
# decay (check_resume), one may be dropped but not started mid-run (_load_ema)). The
# masks read (mask_suffix) and the generator frames' implantation are data the record of
# what was seen leaves out; the loader's worker count seeds the crops each worker draws.
RESUME_FIXED = (
    "seed", "batch_size", "crop", "lr", "schedule", "min_lr", "weight_decay", "loss", "init",
    "init_partial", "init_widen", "teacher", "distill", "distill_keep_labels", "consistency",
    "consistency_radius", "mask_suffix", "generator_implant", "workers",
)


# --- field types and ranges (YAML values arrive unchecked; irstd_ros.core.fields) ---------
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


TRAIN_FIELDS: dict[str, FieldRule] = {
    "data": as_path,
    "out": as_path,
    "split": as_text,
    "mask_suffix": as_text,
    "model": as_text,
    "epochs": Number(integer=True, low=1),
    "batch_size": Number(integer=True, low=1),
    "lr": Number(low=0, low_open=True),
    "schedule": as_text,
    "min_lr": Number(low=0),
    "weight_decay": Number(low=0),
    "crop": Number(integer=True, low=1),
    "seed": Number(integer=True, low=0),
    "device": as_text,
    "threads": Number(integer=True, low=1, optional=True),
    "bf16": as_flag,
    "threshold": Number(low=0, low_open=True, high=1, high_open=True),
    "eval_split": as_optional_text,
    "resume": as_flag,
    "max_steps": Number(integer=True, low=1, optional=True),
    "minutes": Number(low=0, low_open=True, optional=True),
    "norm": as_text,
    "knee": Number(low=0, low_open=True),
    "background": Number(integer=True, low=0),
    "loss": as_text,
    "init": as_optional_path,
    "init_partial": as_flag,
    "init_widen": as_flag,
    "teacher": as_paths,
    "distill": Number(low=0),
    "distill_keep_labels": as_flag,
    "consistency": Number(low=0),
    "consistency_radius": Number(integer=True, low=0),
    "ema": Number(low=0, high=1, high_open=True),
    "sources": as_mappings,
    "samples_per_epoch": Number(integer=True, low=1, optional=True),
    "generator_frames": Number(integer=True, low=0),
    "generator_weight": Number(low=0),
    "generator_implant": Number(low=0, high=1),
    "implant": as_mapping,
    "paste": as_mapping,
    "generator_paste": Number(low=0, high=1),
    "sensor": as_mapping,
    "scale": as_scale,
    "scale_prob": Number(low=0, high=1),
    "workers": Number(integer=True, low=0),
    "extra": as_mapping,
}


def read_config(path: Path) -> dict:
    """The mapping of TrainConfig fields in a YAML file (empty file: {}); one-line
    :class:`ConfigError` naming the file when it is missing, a folder, not YAML or not a
    mapping."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"config file {path}: malformed YAML{at}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not a text (YAML) file") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"config file {path}: nested more than {MAX_CONFIG_DEPTH} levels deep") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of training options (key: value), "
            f"got a YAML {type(loaded).__name__}"
        )
    _check_tree(loaded, path)
    return loaded


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (``epochs: 1`` then
    ``epochs: 2``: safe_load keeps the last without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


MAX_CONFIG_DEPTH = 32  # levels of nested lists and mappings in a config file
MAX_CONFIG_VALUES = 100_000  # values in one, each alias counted as what it stands for


# irstd train's flags (cli/train.py adds the help; tools/gpu_session.py's preflight reads a
# device call's flags through the same parser)
FIELD_OPTIONS = (
    "split", "mask-suffix", "model", "epochs", "batch-size", "lr", "schedule", "min-lr",
    "crop", "seed", "device", "threads", "threshold", "max-steps", "minutes", "norm",
    "knee", "background", "loss", "init", "distill", "samples-per-epoch",
    "generator-frames", "generator-weight", "workers", "eval-split",
)
# a short placeholder where the default one (the upper-cased name) says less
METAVARS = {"init": "CHECKPOINT", "max-steps": "N", "threads": "N", "workers": "N", "minutes": "MIN",
            "crop": "PX", "background": "PX", "mask-suffix": "SUFFIX", "eval-split": "SPLIT"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``irstd train``'s flags: the YAML, the data and run folders, the fields."""
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


def _check_tree(loaded: dict, path: Path) -> None:
    """:class:`ConfigError` unless ``loaded`` is a tree of modest size. YAML aliases can
    make a value hold itself (every copy of the config then recursed without end) or, an
    alias of aliases of aliases, make a few lines stand for billions of values (a "billion
    laughs": copying the config took hours and all memory)."""
    seen = 0
    stack: list[tuple[Any, frozenset[int]]] = [(loaded, frozenset())]  # a value, its containers
    while stack:
        value, above = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"config file {path}: holds more than {MAX_CONFIG_VALUES} values "
                "(counting each YAML alias as what it stands for)"
            )
        if isinstance(value, (dict, list)):
            if id(value) in above:
                raise ConfigError(f"config file {path}: a value holds itself (a YAML alias of its own anchor)")
            if len(above) >= MAX_CONFIG_DEPTH:
                raise ConfigError(f"config file {path}: nested more than {MAX_CONFIG_DEPTH} levels deep")
            inner = above | {id(value)}
            stack.extend((v, inner) for v in (value.values() if isinstance(value, dict) else value))


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; asking for CUDA without one, for a CUDA
    device index that is not there, or for another device is a :class:`ConfigError`."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device must be one of {DEVICE_CHOICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 ...)")
    return device


def lr_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, start_epoch: int = 0) -> LRScheduler:
    """The per-epoch schedule (stepped after each epoch): ``cosine`` from ``lr`` at the first
    epoch to ``min_lr`` at the last, or ``constant``. A resumed run replays the steps of the
    epochs it has done, so each epoch gets the very lr of an uninterrupted run."""
    sched: LRScheduler
    if cfg.schedule == "cosine":
        sched = CosineAnnealingLR(opt, T_max=max(cfg.epochs - 1, 1), eta_min=cfg.min_lr)
    else:
        sched = LambdaLR(opt, lambda _: 1.0)
    with warnings.catch_warnings():  # replaying steps before any optimizer step is intended
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)", category=UserWarning)
        for _ in range(start_epoch):
            sched.step()
    return sched


def with_memory_format(model: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """``model.to(memory_format=fmt)``, which torch's type stubs do not know."""
    return model.to(memory_format=fmt)  # type: ignore[call-overload]


def dataset_norm(ds: IRSTDDataset, cfg: TrainConfig) -> InputNorm:
    """The checkpoint's input normalisation: per-frame robust, or the ``global`` mean and
    std of the training frames scaled to [0, 1]."""
    if cfg.norm == "robust":
        return InputNorm(kind="robust", knee=cfg.knee, background=cfg.background)
    px = np.concatenate([to_unit_range(img).ravel() for img, _, _ in ds.items])
    return InputNorm(kind="global", mean=float(px.mean()), std=float(px.std()) or 1.0)


# what only the mixture (``sources`` or ``samples_per_epoch``) applies
MIXTURE_ONLY = ("implant", "paste", "generator_paste", "sensor", "scale_prob", "generator_frames", "generator_weight")


def mixture_options(cfg: TrainConfig) -> list[str]:
    """The :data:`MIXTURE_ONLY` options that ``cfg`` sets (non-empty, non-zero)."""
    return [name for name in MIXTURE_ONLY if getattr(cfg, name)]


def source_specs(cfg: TrainConfig) -> list[SourceSpec]:
    """A run's data sources: ``sources``, else its one dataset (``data``/``split``) as a
    mixture without ``sources`` draws from it (weight 1, no implants)."""
    return [SourceSpec.from_dict(d) for d in cfg.sources] or [
        SourceSpec(cfg.data, cfg.split, 1.0, 0.0, cfg.mask_suffix)
    ]


def build_training_data(cfg: TrainConfig, rank: int) -> tuple[IRSTDDataset | MixtureSamples, InputNorm, dict]:
    """The training dataset, its normalisation and a description of the data seen. Options
    of the mixture set for a single dataset are a :class:`ConfigError` (not ignored)."""
    if not cfg.sources and cfg.samples_per_epoch is None:
        unused = mixture_options(cfg)
        if unused:
            raise ConfigError(
                f"mixture options set without a mixture: {', '.join(unused)}; set "
                "samples_per_epoch (or sources) to use them, or leave them out"
            )
        pairs = find_pairs(DatasetSpec(cfg.data, cfg.split, cfg.mask_suffix))
        ds = IRSTDDataset(pairs, crop=cfg.crop, train=True, seed=cfg.seed + rank)
        ds.norm = dataset_norm(ds, cfg)
        return ds, ds.norm, {"root": str(cfg.data), "split": cfg.split, "images": len(ds)}
    if cfg.norm != "robust":
        raise ConfigError("mixture training needs norm: robust (samples are re-encoded)")
    norm = InputNorm(kind="robust", knee=cfg.knee, background=cfg.background)
    specs = source_specs(cfg)
    samples = cfg.samples_per_epoch or 1000
    mix = MixtureSamples.from_specs(
        specs, cfg.crop, samples, norm, augment_config(cfg), seed=cfg.seed + rank,
        generator=(cfg.generator_frames, cfg.generator_weight, cfg.generator_implant),
        generator_paste=cfg.generator_paste,
    )
    seen = {
        "sources": [
            {"root": str(s.root), "split": s.split, "weight": s.weight, "implant_prob": s.implant_prob,
             "images": len(src.items),
             **({"hard": [str(h) for h in s.hard], "hard_prob": s.hard_prob, "hard_misses": s.hard_misses,
                 "hard_places": len(src.hard)} if src.hard else {}),
             **({"teacher": [str(t) for t in s.teacher]} if s.teacher is not None else {}),
             **({"paste_prob": s.paste_prob} if s.paste_prob > 0 else {}),
             **({"border_prob": s.border_prob} if s.border_prob > 0 else {}),
             **({"bank": True} if s.bank else {})}
            for s, src in zip(specs, mix.sources)
        ],
        "generator_frames": cfg.generator_frames if cfg.generator_weight > 0 else 0,
        "generator_weight": cfg.generator_weight,
        "samples_per_epoch": samples,
        **({"implant": cfg.implant} if cfg.implant else {}),
        **({"paste": cfg.paste, "bank_targets": len(mix.bank), "generator_paste": cfg.generator_paste}
           if mix.bank else {}),
        **({"sensor": cfg.sensor} if cfg.sensor else {}),
        **({"scale": list(cfg.scale), "scale_prob": cfg.scale_prob} if cfg.scale_prob > 0 else {}),
        "images": sum(len(src.items) for src in mix.sources),
    }
    return mix, norm, seen


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    """The mixture's augmentation: implantation and sensor overrides and the zoom range."""
    if len(cfg.scale) != 2:
        raise ConfigError(f"scale is [low, high], got {cfg.scale}")
    lo, hi = (float(v) for v in cfg.scale)
    return AugmentConfig(
        implant=implant_config(cfg.implant),
        paste=overrides(PasteConfig, cfg.paste, "paste"),
        sensor=overrides(SensorConfig, cfg.sensor, "sensor"),
        scale=(lo, hi),
        scale_prob=cfg.scale_prob,
    )


def overrides(cls: type[D], values: dict[str, Any], what: str) -> D:
    """``cls`` with the YAML overrides ``values`` (lists become the config's ranges); a
    value of the wrong shape (``count: 5`` for a range) is a :class:`ConfigError` naming
    ``what``, not a traceback."""
    try:
        return dataclass_from_dict(cls, values, what)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} {values}: a value of the wrong type or shape ({exc})") from None


def implant_config(values: dict[str, Any]) -> ImplantConfig:
    """:class:`ImplantConfig` with YAML overrides (lists become the config's ranges)."""
    return overrides(ImplantConfig, values, "implant")


def _opt_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            out[f"opt/{idx}/{name}"] = torch.as_tensor(value)
    return out


def _load_opt(opt: torch.optim.Optimizer, extra: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in extra.items():
        if key.startswith("opt/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)


EMA_PREFIX = "ema/"  # the average's tensors among a checkpoint's extra tensors


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (BatchNorm
    statistics), updated by ``update_parameters(model)`` after each optimizer step."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def distillation_term(
    cfg: TrainConfig,
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    taught: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The loss's distillation term (both trainers): ``distill`` times
    :func:`~irstd_ros.training.loss.distillation_loss` on the ``taught`` samples, the
    teacher raised to the labels ``mask`` with ``distill_keep_labels``."""
    labels = mask if cfg.distill_keep_labels else None
    return cfg.distill * distillation_loss(logits, teacher_logits, taught, labels)


def optimizer_step(
    opt: torch.optim.Optimizer, loss: torch.Tensor, ema: AveragedModel | None, model: nn.Module
) -> None:
    """One training step's update (both trainers): ``loss``'s gradients, the optimizer's
    step, then the weight average (``ema``, when kept) of ``model``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        ema.update_parameters(model)


def _resume_tensors(opt: torch.optim.Optimizer, ema: AveragedModel | None) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors beside the weights: the optimizer's state and the average's."""
    out = _opt_tensors(opt)
    if ema is not None:
        out.update({EMA_PREFIX + name: value.detach().cpu() for name, value in ema.state_dict().items()})
    return out


def _load_ema(ema: AveragedModel | None, last: Path, extra: dict[str, torch.Tensor]) -> None:
    """Resume the run's average from ``last``'s tensors; a resumption that drops one (ema: 0)
    is logged, one that would start an average over mid-run is refused."""
    state = {k[len(EMA_PREFIX):]: v for k, v in extra.items() if k.startswith(EMA_PREFIX)}
    if ema is None:
        if state:
            log.warning("%s holds a weight average that this run (ema: 0) drops: its model will "
                        "be the raw weights", last)
        return
    if not state:  # the run was started without ema: the average would start over unseen
        raise ConfigError(f"{last} holds no weight average (its run had ema: 0); use a new --out "
                          f"(with init: {last}) to continue it with one")
    ema.load_state_dict(state)


def transformed_start(
    cfg: TrainConfig, model_cfg: ModelConfig, norm: InputNorm
) -> CheckpointInfo | None:
    """The record of a start that ``init_widen`` or ``init_partial`` made of ``cfg.init``
    (None for any other run). That start is no file of its own, so a fresh run keeps it as
    :data:`INIT_NAME` beside its checkpoints (both trainers): a weight average of runs from
    it needs it as a parent (irstd soup). It has seen its source's data, not the run's."""
    if cfg.init is None or not (cfg.init_widen or cfg.init_partial):
        return None
    source_data = read_info(resolve_model_path(cfg.init)).extra.get("data")
    return CheckpointInfo(model=model_cfg, norm=norm, threshold=cfg.threshold,
                          extra={"init": str(cfg.init), "data": source_data})


def clear_previous_run(out: Path, names: tuple[str, ...]) -> None:
    """Remove the files ``names`` a run before left in ``out`` (a run started afresh there,
    ``--no-resume``): interrupted, it would leave another run's model and history beside its
    own last checkpoint, nothing saying which is whose."""
    for name in names:
        stale = out / name
        if stale.is_file():
            stale.unlink()
            log.info("no resume: %s of the run before removed (this run replaces it)", stale)


def init_from(
    model: nn.Module, path: Path, name: str, partial: bool = False, widen: bool = False,
    norm: InputNorm | None = None,
) -> None:
    """Load ``path``'s weights into ``model``. ``partial``: only the tensors whose name and
    shape fit (e.g. ``tiny``'s encoder, SGEM and head into ``lite``), logged by count.
    ``widen``: ``path`` is a narrower network of the same layout, embedded so that
    ``model`` starts out computing its logits (:func:`widen_state_dict`).

    ``norm`` (the run's input normalisation) stays the run's: a start trained on inputs
    normalised otherwise is a warning naming both, not a refusal (the shipped recipe starts
    its ``robust`` run from the ``global`` 0.1 model on purpose), nor adopted (the run's
    config and every checkpoint it writes say ``norm``)."""
    if partial and widen:
        raise ConfigError("init_partial and init_widen exclude each other")
    path = resolve_model_path(path)  # a shipped model's name (``init: fast``) too
    loaded, info, _ = load_checkpoint(path)
    if norm is not None and info.norm != norm:
        log.warning("init %s was trained on inputs normalised as %s, this run normalises them as %s: "
                    "its weights start on inputs of another scale (set norm, knee and background to "
                    "its own to fine-tune it on the inputs it knows)", path, info.norm, norm)
    if getattr(loaded, "knee", None) is not None and getattr(model, "knee", None) is None:
        # a two-piece calibration (the shipped model's) is no tensor of the network trained:
        # the start keeps the line folded into the head (widened too); calibrate the result again
        loaded.knee = None  # type: ignore[assignment]  # out of its state dict and its forward
        log.info("init %s: its two-piece calibration's knee left out", path)
    if widen:
        model.load_state_dict(widen_state_dict(loaded, model))
        log.info("initialised %r by widening %s", name, path)
        return
    source = loaded.state_dict()
    if not partial:
        try:
            model.load_state_dict(source)
        except RuntimeError as exc:  # torch's report names every tensor (24,767 characters)
            why = weights_mismatch(source, named_config(name)) or " ".join(str(exc).split()[:MAX_REASON_WORDS])
            raise ConfigError(
                f"init {path} (widths {list(info.model.widths)}) does not fit model {name!r} (widths "
                f"{list(named_config(name).widths)}): {why}; init_partial takes the tensors that fit"
            ) from None
        return
    target = model.state_dict()
    fitting = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not fitting:
        raise ConfigError(f"init {path} has no tensor that fits model {name!r}")
    model.load_state_dict(fitting, strict=False)
    log.info("initialised %d of %d tensors of %r from %s", len(fitting), len(target), name, path)


def teacher_sets(cfg: TrainConfig, ds: IRSTDDataset | MixtureSamples) -> list[tuple[Path, ...]]:
    """Each source's distillation teachers: its own ``teacher`` when it names one (an
    empty list: none), else the run's."""
    run = path_tuple(cfg.teacher)
    if isinstance(ds, MixtureSamples):
        return [run if src.teacher is None else src.teacher for src in ds.sources]
    return [run]


def check_resume(last: Path, info: CheckpointInfo, model_cfg: Any, norm: Any, seen: Any, cfg: TrainConfig) -> None:
    """:class:`ConfigError` unless the run left in ``last`` can go on as this one: the same
    network, input normalisation and data (else its record would claim this run's data
    alone for the epochs done on the other), and the same recipe (``cfg``'s
    :meth:`~TrainConfig.resume_fixed` fields that ``last`` records, and the decay of a
    weight average both keep). Paths compare as the files they name
    (:func:`resolved_paths`): ``last``'s relative ones from the directory they were given in
    (:func:`recorded_cwds`: it may go on if one of them agrees), this run's from the current one. ``last`` must be a run's
    checkpoint, with its training state (a model file copied there, e.g. a calibrated or
    averaged one, has none)."""
    if not isinstance(info.extra.get("train_state"), dict):
        raise ConfigError(f"{last} holds no training state (a model file, not a run's last "
                          f"checkpoint); use a new --out (with init: {last} to start from it)")
    done = info.extra["train_state"].get("epoch", 0)
    if done > cfg.epochs:  # its record would say fewer epochs than its history holds
        raise ConfigError(f"{last} has trained {done} epochs, more than epochs {cfg.epochs}: epochs "
                          f"may grow on a resumption, not shrink; give >= {done}, or a new --out")
    if info.model != model_cfg:
        was, now_model = info.model.to_dict(), model_cfg.to_dict()
        changed = [f"{k} {json.dumps(was.get(k))} -> {json.dumps(now_model.get(k))}"
                   for k in sorted(set(was) | set(now_model)) if was.get(k) != now_model.get(k)]
        raise ConfigError(f"{last} was trained with another model config ({', '.join(changed)}); "
                          "use a new --out")
    if info.norm != norm:  # its weights expect the other inputs
        raise ConfigError(f"{last} was trained on inputs normalised as {info.norm}, this run's "
                          f"are {norm}; use a new --out")
    config, now = info.extra.get("train_config") or {}, json.loads(json.dumps(cfg.recorded()))
    fixed = [*cfg.resume_fixed(), *(["ema"] if config.get("ema") and now["ema"] else [])]
    recorded, mine = info.extra.get("data"), json.loads(json.dumps(plain(seen)))
    problems = []
    for base in recorded_cwds(info.extra["train_state"], last.parent):  # one that agrees will do
        problem = _resume_difference(last, base, recorded, mine, config, now, fixed)
        if problem is None:
            return
        problems.append(problem)
    raise ConfigError(problems[0])


def _resume_difference(last: Path, base: Path | None, recorded: Any, mine: Any, config: dict[str, Any],
                       now: dict[str, Any], fixed: list[str]) -> str | None:
    """What refuses resuming ``last`` with its relative paths taken from ``base``: other
    data, or another recipe; None where it may go on."""
    if recorded is not None:  # said with the paths resolved: "data/x" may be two folders
        was, new = resolved_paths(recorded, base=base), resolved_paths(mine)
        if was != new:
            return (f"{last} was trained on other data ({json.dumps(was)}) than this run's "
                    f"({json.dumps(new)}); use a new --out (with init: {last})")
    pairs = {name: (resolved_paths(config[name], name, base), resolved_paths(now[name], name))
             for name in fixed if name in config}
    changed = [f"{name} {json.dumps(a)} -> {json.dumps(b)}" for name, (a, b) in pairs.items() if a != b]
    if changed:
        return (f"{last} was trained with another recipe ({', '.join(changed)}); resume it with "
                f"its own, or use a new --out (with init: {last}) to continue it with this one")
    return None


# the keys of the records compared on a resumption (train_config, data) that hold paths
PATH_KEYS = frozenset({"init", "teacher", "root", "pack", "hard"})
# train_state's record of the directory the run's relative paths were given in
CWD_KEY = "cwd"  # absolute: right while the checkout stays where it was
RUN_CWD_KEY = "cwd_from_run"  # relative to the run's folder: right after a move of both together


def cwd_record(out: Path) -> dict[str, str]:
    """The current directory as a run's records keep it (``train_state``): absolute, and
    relative to the run's folder ``out``; a resumption tries each (:func:`recorded_cwds`),
    so a checkout moved with its runs inside, or a run folder moved alone, still finds the
    directory its relative paths were given in."""
    here = Path.cwd()
    return {CWD_KEY: str(here), RUN_CWD_KEY: os.path.relpath(here, Path(out).resolve())}


def recorded_cwds(state: dict[str, Any], folder: Path) -> list[Path | None]:
    """The directories a checkpoint's relative paths may have been given in, that exist:
    ``train_state.cwd_from_run`` from the run's ``folder``, then ``train_state.cwd``; [None]
    for a checkpoint written before either was recorded, or whose directories are gone
    (its relative paths are then taken from the current directory, as they were then)."""
    found: list[Path | None] = []
    for key in (RUN_CWD_KEY, CWD_KEY):
        cwd = state.get(key)
        if isinstance(cwd, str) and cwd:
            path = (Path(folder) / cwd).resolve()  # an absolute cwd stays itself
            if path.is_dir() and path not in found:
                found.append(path)
    return found or [None]


def resolved_paths(value: Any, key: str | None = None, base: Path | None = None) -> Any:
    """A recorded value (JSON) with the paths under :data:`PATH_KEYS` resolved, to compare
    them as the files they name: ``data/x`` and its absolute spelling are one folder. A
    relative path is taken from ``base`` (the directory it was given in; None: the current
    one), so a run started in one directory and resumed from another compares the same
    files. The records keep the paths as given."""
    if isinstance(value, dict):
        return {k: resolved_paths(v, k, base) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved_paths(v, key, base) for v in value]
    if key in PATH_KEYS and isinstance(value, str):
        return str(((base or Path.cwd()) / value).resolve())
    return value


def plain(value: Any) -> Any:
    """A config value as JSON: paths (alone, in lists or in dicts) become strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def loader_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shuffle (and of its loader workers' base seed)."""
    return int(np.random.default_rng([seed, epoch]).integers(2**62))


def reseed(ds: IRSTDDataset | MixtureSamples, seed: int) -> None:
    """Seed the random streams of the next epoch, alike whether the run goes on or resumes
    there: the crops and flips of a single dataset, and torch's (turn-consistency views)."""
    if isinstance(ds, IRSTDDataset):
        ds.rng = np.random.default_rng(seed)
    torch.manual_seed(seed)


def training_frames(cfg: TrainConfig) -> set[Path]:
    """The image files (resolved) a run trains on: its dataset's split, or each folder
    source's of a mixture (a pack source's frames have no file to compare)."""
    return {frame for spec in source_specs(cfg) if not is_pack(spec.root)
            for frame in split_frames(spec.root, spec.split)}


def evaluation_split(cfg: TrainConfig) -> str | None:
    """The split of ``cfg.data`` the final model is scored on: ``eval_split`` as given, or
    for ``auto`` the held-out list of the dataset matching the training split
    (:func:`~irstd_ros.evaluation.splits.auto_held_out`: ``test`` for ``train``,
    ``test_X`` for ``train_X``) that shares no frame with the training data; None: no
    evaluation (``eval_split`` none, or ``auto`` finding none: a folder without lists, a
    pack file, a training split holding the held-out frames; logged, with why). A given
    ``eval_split`` sharing frames with the training data is a :class:`ConfigError`: its
    metrics would be measured on frames the model trained on."""
    if cfg.eval_split is None:
        return None
    if cfg.eval_split != AUTO_EVAL_SPLIT:
        shared = shared_frames(training_frames(cfg), cfg.data, cfg.eval_split)
        if shared:
            raise ConfigError(
                f"eval_split {cfg.eval_split!r} of {cfg.data} shares {describe_shared(shared)} with the "
                f"training data ({'its sources' if cfg.sources else f'split {cfg.split!r}'}): its metrics "
                "would be measured on frames the model trained on; give a split disjoint from them, or none"
            )
        return cfg.eval_split
    chosen, why = auto_held_out(cfg.data, cfg.split, training_frames(cfg))
    if chosen is None:
        log.warning("eval_split auto: no evaluation, no metrics recorded: %s", why)
    return chosen


def evaluation_set(data: Path | str, split: str) -> str:
    """How a checkpoint's ``extra.metrics`` name the frames they were measured on (their
    ``set``): ``<dataset folder>:<split>``."""
    return f"{data}:{split}"


def loader_workers(requested: int, batch_bytes: int, shm: str = SHM_PATH) -> int:
    """The DataLoader workers whose batches fit the free shared memory (``shm``): each
    worker keeps ``PREFETCH_FACTOR`` batches there, and a container's default /dev/shm
    (Docker: 64 MiB) is far too small for batches of 64 crops of 256 px (32 MiB each):
    the first epoch dies of a bus error or hangs. Fewer workers are taken, with a warning
    naming the remedy; where there is no such folder (not Linux) the request stands."""
    if requested <= 0:
        return requested
    try:
        st = os.statvfs(shm)
    except OSError:
        return requested
    free = st.f_bavail * st.f_frsize
    fit = int(free // (batch_bytes * PREFETCH_FACTOR * SHM_HEADROOM))
    if fit >= requested:
        return requested
    log.warning(
        "data workers: %d of the %d asked for, as %s has %d MiB free and each worker keeps "
        "%d batches of %d MiB there (with room to free them); give the container more shared "
        "memory (docker run --shm-size=2g) to use them all",
        fit, requested, shm, free >> 20, PREFETCH_FACTOR, batch_bytes >> 20,
    )
    return fit


def _dist_info() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def train(cfg: TrainConfig) -> Path:
    """Train and return the path of the final model checkpoint. Resumes at an epoch
    boundary: an epoch cut by ``max_steps`` counts as done (see :class:`TrainConfig`)."""
    rank, world, local_rank = _dist_info()
    device = resolve_device(cfg.device)
    if cfg.bf16 and device.type != "cpu":
        log.warning("bf16 is CPU autocast: ignored on %s (irstd train-gpu has its own precision)", device)
    # first, on every rank (lists only, no frame read): an evaluation split sharing training
    # frames, or missing, fails before the data is loaded and the process group formed
    eval_split = evaluation_split(cfg)
    eval_pairs = find_pairs(DatasetSpec(cfg.data, eval_split, cfg.mask_suffix)) if eval_split else []
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)

    cwd = cwd_record(cfg.out)  # where this invocation's relative paths are (recorded in train_state)
    ds, norm, seen = build_training_data(cfg, rank)
    model_cfg = named_config(cfg.model)
    model: nn.Module = build_model(model_cfg)
    start: CheckpointInfo | None = None
    if cfg.init is not None:
        init_from(model, cfg.init, cfg.model, partial=cfg.init_partial, widen=cfg.init_widen, norm=norm)
        if rank == 0:  # written below, by a fresh run only
            start = transformed_start(cfg, model_cfg, norm)
    model = model.to(device)
    teachers = Teachers(teacher_sets(cfg, ds), norm, device)
    use_bf16 = cfg.bf16 and device.type == "cpu"
    if use_bf16:
        model = with_memory_format(model, torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = weight_average(model, cfg.ema) if cfg.ema > 0 else None

    last = cfg.out / "last.safetensors"
    start_epoch, step, history = 0, 0, []
    if cfg.resume and last.is_file():
        loaded, info, extra = load_checkpoint(last, expect_arch=model_cfg.arch)
        check_resume(last, info, model_cfg, norm, seen, cfg)
        model.load_state_dict(loaded.state_dict())
        _load_opt(opt, extra)
        _load_ema(ema, last, extra)
        state = info.extra["train_state"]
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        reseed(ds, state["seed_next"] + rank)
        log.info("resumed from %s at epoch %d", last, start_epoch)
    elif start is not None:  # not before: a resumption keeps (a refused one too) the run's own
        save_checkpoint(cfg.out / INIT_NAME, model, start)

    sched = lr_scheduler(cfg, opt, start_epoch)
    sampler: torch.utils.data.DistributedSampler | None = (
        torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=rank, seed=cfg.seed)
        if world > 1
        else None
    )
    gen = torch.Generator()  # reseeded every epoch (loader_seed): a resumed run shuffles alike
    check_batch_of_one(cfg.crop, model_cfg.stride, min(cfg.batch_size, len(ds)))
    # a crop and its mask, float32 each, per sample of a batch
    workers = loader_workers(cfg.workers, cfg.batch_size * cfg.crop * cfg.crop * 4 * 2)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
        drop_last=len(ds) >= cfg.batch_size, generator=gen, num_workers=workers,
        persistent_workers=False, worker_init_fn=seed_worker,
    )
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def info_for(epoch: int, seed_next: int, metrics: dict[str, Any] | None = None) -> CheckpointInfo:
        extra = {
            "train_config": cfg.recorded(),
            "train_state": {"epoch": epoch, "step": step, "history": history, "seed_next": seed_next,
                            **cwd},
            "data": seen,
            **({"metrics": metrics} if metrics else {}),
            **cfg.extra,
        }
        return CheckpointInfo(model=model_cfg, norm=norm, threshold=cfg.threshold, extra=extra)

    if not cfg.resume and rank == 0:  # after every load and check that may refuse the run
        clear_previous_run(cfg.out, RUN_FILES)
    started = time.time()
    done = cfg.max_steps is not None and step >= cfg.max_steps  # resumed after its last step
    for epoch in range(start_epoch, start_epoch if done else cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if isinstance(ds, MixtureSamples):
            ds.set_epoch(epoch)
        gen.manual_seed(loader_seed(cfg.seed, epoch))
        net.train()
        t0, losses = time.time(), []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, leave=False)
        for batch in bar:
            img, mask = batch[0].to(device), batch[1].to(device)
            source = batch[2] if len(batch) > 2 else torch.zeros(img.shape[0], dtype=torch.long)
            if use_bf16:
                img = img.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = net(img)
                if teachers:
                    teacher_logits, taught = teachers.logits(img, source)
            loss = training_loss(cfg.loss, logits, mask)
            if cfg.consistency > 0:
                turns, mirror = random_symmetry()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    other = undo_dihedral(net(dihedral(img, turns, mirror)), turns, mirror)
                loss = 0.5 * (loss + training_loss(cfg.loss, other, mask))
                region = (
                    consistency_region(mask, logits, other, cfg.consistency_radius)
                    if cfg.consistency_radius > 0
                    else None
                )
                loss = loss + cfg.consistency * consistency_loss(logits, other, region)
            if teachers:
                loss = loss + distillation_term(cfg, logits, teacher_logits, taught, mask)
            optimizer_step(opt, loss, ema, model)
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                done = True
                break
        dt = time.time() - t0
        lr = opt.param_groups[0]["lr"]
        sched.step()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lr, "seconds": round(dt, 2)})
        if len(losses) < len(loader):  # cut by max_steps: counted as done all the same (as train-gpu)
            history[-1]["partial"] = True
        seed_next = int(np.random.default_rng(cfg.seed + epoch + 1).integers(2**31))
        reseed(ds, seed_next + rank)  # what a run resumed here starts from
        if rank == 0:
            log.info(
                "epoch %d/%d loss %.4f lr %.2e %.1f img/s",
                epoch + 1, cfg.epochs, history[-1]["loss"], lr,
                len(losses) * cfg.batch_size / max(dt, 1e-9),
            )
            save_checkpoint(last, model, info_for(epoch + 1, seed_next), _resume_tensors(opt, ema))
        if cfg.minutes is not None and time.time() - started > cfg.minutes * 60:
            log.info("time budget of %g min reached after epoch %d", cfg.minutes, epoch + 1)
            done = True
        if done:
            break

    final = cfg.out / "model.safetensors"
    if rank == 0:
        if ema is not None:  # the average is the run's model
            model = ema.module
        model = with_memory_format(model, torch.contiguous_format)
        # first without metrics: an evaluation cut short (a time limit) loses no weights
        save_checkpoint(final, model, info_for(len(history), 0))
        write_text_atomic(cfg.out / "history.json", json.dumps(history, indent=1))
        if eval_split is not None:
            metrics = scored(model, IRSTDDataset(eval_pairs).items, norm, cfg.threshold, device, model_cfg.stride,
                             EVAL_BATCH, evaluation_set(cfg.data, eval_split))
            save_checkpoint(final, model, info_for(len(history), 0, metrics))
    if world > 1:
        torch.distributed.destroy_process_group()
    return final
