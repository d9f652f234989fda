"""GPU training: the whole data path on the device, bf16, channels_last, a time budget.

The CPU loop (:mod:`irstd_ros.training.train`) feeds the network through a DataLoader of
numpy crops; on a GPU that starves the card. Here every training frame sits on the device
once (uint8, a few tens of MB for NUDT-SIRST), and each batch is made there with batched
tensor ops: random ``crop`` x ``crop`` windows (one gather), the checkpoint's input
normalisation (:func:`~irstd_ros.training.torch_norm.normalize_torch`, the same rule as
:func:`irstd_ros.core.normalize`, on the crop as the CPU path does), then random
horizontal/vertical flips and 90-degree turns. The network runs under bf16 autocast in
channels_last, optionally through ``torch.compile``; Adam is fused on CUDA; the loss is
read back once per epoch (no per-step host sync). With ``teacher`` (checkpoints of the run's
input normalisation), the mean of their logits on the same batch is distilled as in
:mod:`irstd_ros.training.train` (``distill``, ``distill_keep_labels``), on every sample:
the GPU loop has one data source.

Recipes (:data:`RECIPES`, field ``recipe``; explicit fields override them):

* ``paper``: 1,500 epochs, batch 8, Adam lr 1e-4 constant, SoftIoU (Deng & Yang);
* ``large``: the same number of samples per epoch at batch 64, lr 3e-4 (square-root
  scaling of 1e-4 for 8x the batch), 3 warm-up epochs, then a cosine to 1e-6 driven by
  *time* when ``minutes`` is set (``schedule_by: time``: the schedule's progress is the
  elapsed share of the budget, so the run anneals fully within the budget whatever the
  card's speed), else by epochs.

Data: a pack (``pack``, :mod:`irstd_ros.data.pack`; groups ``train_groups``, evaluated on
``eval_group``) or a dataset folder (``data`` / ``split``, evaluated on ``eval_split``).
Checkpoints: ``<out>/last.safetensors`` (weights, Adam state, loop state) at most every
``save_every_s`` and at the end; a run with the same ``out`` resumes (``minutes`` is the
budget of the whole run, resumptions included, so the time-driven schedule continues). At the end:
``model.safetensors`` (FP32), ``model_fp16.safetensors`` (half weights, what a GPU
deployment ships) and ``eval.json``: IoU, nIoU, F1, Pd, Fa at full resolution
(:class:`~irstd_ros.evaluation.metrics.MetricAccumulator`) at the checkpoint's threshold.

Runs on the CPU too (``device: cpu``, tiny model and sizes) for tests and dry runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.core.constants import TERMINATED_EXIT
from irstd_ros.core.fields import (
    FieldRule,
    Number,
    as_flag,
    as_names,
    as_optional_path,
    as_optional_text,
    as_text,
    check_fields,
    flag_type,
)
from irstd_ros.core.normalization import InputNorm, centred_wide
from irstd_ros.core.parsing import check_keys, path_tuple
from irstd_ros.core.paths import output_dir_problem, write_text_atomic
from irstd_ros.data.transforms import pad_to
from irstd_ros.errors import ConfigError, DatasetError, IrstdError
from irstd_ros.models import build_model, named_config
from irstd_ros.training.loss import training_loss
from irstd_ros.training.scoring import Item, evaluate_items, scored, torch_frames
from irstd_ros.training.teachers import Teachers
from irstd_ros.training.torch_norm import normalize_torch
from irstd_ros.training.train import (
    INIT_NAME,
    RUN_FILES,
    TRAIN_FIELDS,
    TrainConfig,
    _load_ema,
    _load_opt,
    _resume_tensors,
    check_resume,
    clear_previous_run,
    cwd_record,
    distillation_term,
    evaluation_set,
    evaluation_split,
    init_from,
    mixture_options,
    optimizer_step,
    read_config,
    resolve_device,
    transformed_start,
    weight_average,
    with_memory_format,
)

log = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 1500, "batch_size": 8, "lr": 1e-4, "schedule": "constant", "loss": "softiou",
              "warmup_epochs": 0, "schedule_by": "epochs"},
    "large": {"epochs": 1500, "batch_size": 64, "lr": 3e-4, "schedule": "cosine", "min_lr": 1e-6,
              "loss": "softiou", "warmup_epochs": 3, "schedule_by": "time"},
}
SCHEDULE_BY = ("epochs", "time")
DEFAULT_TRAIN_GROUPS = ("nudt_train",)
DEFAULT_EVAL_GROUP = "nudt_test"
TERMINATED = "terminated"  # the summary's stop when train_gpu's stop was set (SIGTERM)
# what a run writes (irstd train's and its own), removed by a run started afresh
GPU_RUN_FILES = (*RUN_FILES, "model_fp16.safetensors", "eval.json", "summary.json")


# what a GPU run's checkpoints record beside :data:`~irstd_ros.training.train.RESERVED_EXTRA`
GPU_RECORDS = frozenset({"trainer", "device"})


@dataclass
class GPUTrainConfig(TrainConfig):
    """A GPU training run: :class:`TrainConfig` plus what the device path adds."""

    recipe: str = "paper"  # the recipe the other fields started from (recorded)
    pack: Path | None = None  # read the data from this pack instead of folders
    train_groups: list[str] = field(default_factory=lambda: list(DEFAULT_TRAIN_GROUPS))
    eval_group: str | None = DEFAULT_EVAL_GROUP  # pack group scored at the end (None: none)
    eval_split: str | None = "test"  # folder data: split scored at the end (TrainConfig's field, default test here)
    bf16: bool = True  # bf16 autocast (CUDA; on the CPU only when asked)
    channels_last: bool = True
    compile: bool = False  # torch.compile the training forward/backward
    warmup_epochs: int = 0
    schedule_by: str = "epochs"  # epochs | time (cosine over the `minutes` budget)
    save_every_s: float = 120.0
    eval_batch: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, GPU_FIELDS)
        self.eval_group = self.eval_group or None  # "" (command line "none"): no evaluation
        if self.schedule_by not in SCHEDULE_BY:
            raise ConfigError(f"unknown schedule_by {self.schedule_by!r}; valid: {', '.join(SCHEDULE_BY)}")
        if self.schedule_by == "time" and not self.minutes:
            self.schedule_by = "epochs"  # no budget: the schedule follows the epochs
        mixture = [name for name in ("sources", "samples_per_epoch") if getattr(self, name)]
        if mixture or mixture_options(self):
            raise ConfigError(
                "GPU training reads one dataset or pack groups (no mixture): "
                f"{', '.join(mixture + mixture_options(self))} need irstd train"
            )
        if self.consistency > 0:
            raise ConfigError("GPU training has no turn-consistency term (consistency); use irstd train")

    def reserved_extra(self) -> frozenset[str]:
        return super().reserved_extra() | GPU_RECORDS

    def resume_fixed(self) -> tuple[str, ...]:
        return (*super().resume_fixed(), "warmup_epochs", "schedule_by")


GPU_FIELDS: dict[str, FieldRule] = {
    "recipe": as_text,
    "pack": as_optional_path,
    "train_groups": as_names,
    "eval_group": as_optional_text,
    "channels_last": as_flag,
    "compile": as_flag,
    "warmup_epochs": Number(integer=True, low=0),
    "schedule_by": as_text,
    "save_every_s": Number(low=0),
    "eval_batch": Number(integer=True, low=1),
}


PACK_ONLY = ("train_groups", "eval_group")  # fields read only from a pack


def recipe_config(recipe: str, **overrides: Any) -> GPUTrainConfig:
    """A config from a named recipe, explicit fields overriding it. The data is a dataset
    folder (``data``) or a pack, not both (``data`` may repeat the pack's path, as a
    recorded config does); the pack-only fields (:data:`PACK_ONLY`) need a pack (a folder
    run would ignore them)."""
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**RECIPES[recipe], **given}
    if "data" not in values:
        if not values.get("pack"):
            raise ConfigError("give a dataset folder (data) or a pack")
        values["data"] = values["pack"]
    cfg = GPUTrainConfig(recipe=recipe, **values)  # field values first: their own messages
    if cfg.pack is not None and "data" in given and cfg.data != cfg.pack:  # the pack's own path: one source
        raise ConfigError("give a dataset folder (data, --data) or a pack (pack, --pack), not both")
    pack_only = [k for k in PACK_ONLY if k in given]
    if cfg.pack is None and pack_only:
        flags = ", ".join("--" + k.replace("_", "-") for k in pack_only)
        verb = "applies" if len(pack_only) == 1 else "apply"
        raise ConfigError(f"{', '.join(pack_only)} ({flags}) only {verb} to a pack (pack, --pack); "
                          "a dataset folder trains on split and evaluates on eval_split")
    return cfg


# --- data on the device -----------------------------------------------------------------------
def load_items(cfg: GPUTrainConfig, training: bool, eval_split: str | None = None) -> list[Item]:
    """Training (or evaluation) items from the pack or the folder: of a folder, ``split``
    (or ``eval_split``, :func:`~irstd_ros.training.train.evaluation_split`'s choice; None:
    none)."""
    if cfg.pack is not None:
        from irstd_ros.data.pack import Pack

        pack = Pack(cfg.pack)
        try:
            if training:
                return [it for g in cfg.train_groups for it in pack.items(g)]
            if cfg.eval_group and cfg.eval_group not in pack.groups:
                raise DatasetError(f"{cfg.pack} has no group {cfg.eval_group!r} to evaluate on (eval_group); it has: "
                                   f"{', '.join(pack.groups)} (eval_group none, --eval-group none: no evaluation)")
            return pack.items(cfg.eval_group) if cfg.eval_group else []
        finally:
            pack.close()
    from irstd_ros.data import DatasetSpec, IRSTDDataset, find_pairs

    split = cfg.split if training else eval_split
    if split is None:
        return []
    return IRSTDDataset(find_pairs(DatasetSpec(cfg.data, split, cfg.mask_suffix))).items


class DeviceBatches:
    """Every training frame on the device; batches of augmented, normalised crops."""

    def __init__(self, items: list[Item], crop: int, norm: InputNorm, device: torch.device) -> None:
        if not items:
            raise DatasetError("no training frames")
        # reflect, as the CPU path; wide frames centred before the zeros below join them
        padded = [pad_to(centred_wide(img), mask, crop) for img, mask, _ in items]
        hmax = max(i.shape[0] for i, _ in padded)
        wmax = max(i.shape[1] for i, _ in padded)
        imgs, masks = [], []
        for img, mask in padded:
            ph, pw = hmax - img.shape[0], wmax - img.shape[1]
            imgs.append(np.pad(img, ((0, ph), (0, pw))))  # never sampled: windows stay inside
            masks.append(np.pad(mask, ((0, ph), (0, pw))))
        frames, self.integer = torch_frames(imgs, centre=False)  # once: about the frame's own median
        self.images = frames.to(device)
        self.masks = torch.from_numpy(np.stack(masks).astype(bool)).to(device)
        self.sizes = torch.tensor([i.shape for i, _ in padded], dtype=torch.int64, device=device)
        self.crop, self.norm, self.device = crop, norm, device
        self.ar = torch.arange(crop, device=device)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def epoch(self, batch_size: int, seed: int):
        """Yield (input (B, 1, c, c) float32, mask (B, 1, c, c) float32) over one permutation."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        n = len(self)
        perm = torch.randperm(n, generator=gen, device=self.device)
        steps = max(n // batch_size, 1)  # drop_last, but at least one (tiny sets)
        for s in range(steps):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            yield self.batch(idx, gen)

    def batch(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b, c = idx.numel(), self.crop
        size = self.sizes[idx]
        u = torch.rand((b, 2), generator=gen, device=self.device)
        off = (u * (size - c + 1).double()).long().clamp(min=0)  # uniform window corner
        rows = (off[:, 0:1] + self.ar)[:, :, None]
        cols = (off[:, 1:2] + self.ar)[:, None, :]
        bi = idx[:, None, None]
        x = normalize_torch(self.images[bi, rows, cols], self.norm, self.integer)  # before turning
        m = self.masks[bi, rows, cols].float()
        flips = torch.rand((b, 2), generator=gen, device=self.device) < 0.5
        k = torch.randint(0, 4, (b,), generator=gen, device=self.device)
        x, m = augment_batch(x, m, flips, k)
        return x[:, None].contiguous(), m[:, None].contiguous()


def augment_batch(
    x: torch.Tensor, m: torch.Tensor, flips: torch.Tensor, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample flips (``flips[:, 0]`` left-right, ``[:, 1]`` up-down) then ``rot90`` by
    ``k`` quarter turns, as :func:`irstd_ros.data.transforms.augment` does one frame."""
    lr = flips[:, 0, None, None]
    ud = flips[:, 1, None, None]
    x, m = torch.where(lr, x.flip(-1), x), torch.where(lr, m.flip(-1), m)
    x, m = torch.where(ud, x.flip(-2), x), torch.where(ud, m.flip(-2), m)
    if x.shape[-1] == x.shape[-2]:  # square crops: every sample turns in one select
        out_x, out_m = x, m
        for q in (1, 2, 3):
            sel = (k == q)[:, None, None]
            out_x = torch.where(sel, torch.rot90(x, q, (-2, -1)), out_x)
            out_m = torch.where(sel, torch.rot90(m, q, (-2, -1)), out_m)
        return out_x, out_m
    return x, m  # non-square crops are not turned (they would change shape)


# --- schedule ---------------------------------------------------------------------------------
def lr_at_progress(cfg: GPUTrainConfig, progress: float, epoch_float: float) -> float:
    """The learning rate at ``progress`` in [0, 1] of the run (warm-up in epochs first)."""
    if cfg.warmup_epochs and epoch_float < cfg.warmup_epochs:
        return cfg.lr * max(epoch_float, 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "constant":
        return cfg.lr
    t = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


# --- the loop ---------------------------------------------------------------------------------
def half_copy(model: nn.Module) -> nn.Module:
    """An FP16 copy of the weights (BatchNorm statistics included) for shipping."""
    import copy

    return with_memory_format(copy.deepcopy(model), torch.contiguous_format).cpu().half()


def train_gpu(cfg: GPUTrainConfig, stop: threading.Event | None = None) -> dict[str, Any]:
    """Train, evaluate, write the checkpoints; returns a summary (also ``<out>/summary.json``).
    ``stop`` set (SIGTERM from ``timeout``, :func:`main`): the loop ends after the step in
    progress with ``stop: terminated``, and the weights and the summary are written with no
    evaluation, so a time limit that cuts the training short still leaves its checkpoints.
    As with ``max_steps``, the epoch so cut counts as done (its history entry says
    ``partial``): a resumption starts at the next one, without the rest of its batches. A
    :class:`SigtermStop` defers SIGTERM only during the steps (its ``deferring``)."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    use_bf16 = cfg.bf16 and (device.type == "cuda" or cfg.device == "cpu")
    norm = InputNorm(kind="robust", knee=cfg.knee, background=cfg.background) if cfg.norm == "robust" else None
    if norm is None:
        raise ConfigError("GPU training uses the robust input normalisation (norm: robust)")

    cwd = cwd_record(cfg.out)  # where this invocation's relative paths are (recorded in train_state)
    # first, before any frame is read: an evaluation split sharing training frames is refused
    eval_split = None if cfg.pack is not None else evaluation_split(cfg)
    t_load = time.perf_counter()
    items = load_items(cfg, training=True)
    # now, not after the training: a missing evaluation group or split fails before any epoch
    eval_items = load_items(cfg, training=False, eval_split=eval_split)
    data = DeviceBatches(items, cfg.crop, norm, device)
    load_s = time.perf_counter() - t_load
    seen = {
        "pack": str(cfg.pack) if cfg.pack else None,
        "groups": list(cfg.train_groups) if cfg.pack else None,
        "root": None if cfg.pack else str(cfg.data),
        "split": None if cfg.pack else cfg.split,
        "images": len(items),
    }
    del items

    model_cfg = named_config(cfg.model)
    model: nn.Module = build_model(model_cfg)
    start: CheckpointInfo | None = None
    if cfg.init is not None:
        init_from(model, cfg.init, cfg.model, partial=cfg.init_partial, widen=cfg.init_widen, norm=norm)
        start = transformed_start(cfg, model_cfg, norm)  # written below, by a fresh run only
    model = model.to(device)
    if cfg.channels_last:
        model = with_memory_format(model, torch.channels_last)
    fused = device.type == "cuda"
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    ema = weight_average(model, cfg.ema) if cfg.ema > 0 else None

    last = cfg.out / "last.safetensors"
    start_epoch, step, history, elapsed0 = 0, 0, [], 0.0
    if cfg.resume and last.is_file():
        loaded, info, extra = load_checkpoint(last, expect_arch=model_cfg.arch)
        check_resume(last, info, model_cfg, norm, seen, cfg)
        model.load_state_dict(loaded.state_dict())
        _load_opt(opt, {k: v.to(device) for k, v in extra.items()})
        _load_ema(ema, last, extra)
        state = info.extra["train_state"]
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        elapsed0 = float(state.get("elapsed_s", 0.0))
        log.info("resumed from %s at epoch %d (%.0f s trained)", last, start_epoch, elapsed0)
    elif start is not None:  # not before: a resumption keeps (a refused one too) the run's own
        save_checkpoint(cfg.out / INIT_NAME, model, start)

    # distillation: the run's teacher set on every sample (no per-source sets: no mixture)
    teachers = Teachers([path_tuple(cfg.teacher)], norm, device) if cfg.teacher is not None else None
    if teachers is not None and cfg.channels_last:
        for path, teacher in teachers.models.items():
            teachers.models[path] = with_memory_format(teacher, torch.channels_last)
    one_source = torch.zeros(cfg.batch_size, dtype=torch.long)  # every sample: set 0

    net: Any = model
    compile_s = None
    if cfg.compile:
        net = torch.compile(model)

    def info_for(epoch: int, elapsed: float, metrics: dict | None = None) -> CheckpointInfo:
        extra = {
            "train_config": cfg.recorded(),
            "train_state": {"epoch": epoch, "step": step, "history": history, "elapsed_s": elapsed,
                            **cwd},
            "data": seen,
            "trainer": "irstd_ros.training.gpu",
            "device": _device_name(device),
            **({"metrics": metrics} if metrics else {}),
            **cfg.extra,
        }
        return CheckpointInfo(model=model_cfg, norm=norm, threshold=cfg.threshold, extra=extra)

    steps_per_epoch = max(len(data) // cfg.batch_size, 1)
    budget_s = cfg.minutes * 60.0 if cfg.minutes else None
    if not cfg.resume:  # after every load and check that may refuse the run (its teacher too)
        clear_previous_run(cfg.out, GPU_RUN_FILES)
    started = time.perf_counter()
    last_save = started
    stop_reason = "epochs"
    end_epoch = cfg.epochs
    if budget_s is not None and elapsed0 >= budget_s:  # resumed with the whole budget spent
        stop_reason, end_epoch = "minutes", start_epoch
        log.warning("the run's --minutes budget (%g min) was spent by its earlier invocations "
                    "(%.1f min trained): nothing to train; a larger --minutes goes on", cfg.minutes,
                    elapsed0 / 60.0)
    elif cfg.max_steps is not None and step >= cfg.max_steps:
        stop_reason, end_epoch = "max_steps", start_epoch
    if isinstance(stop, SigtermStop):
        stop.deferring = True  # a checkpoint follows every way out of the loop
    for epoch in range(start_epoch, end_epoch):
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        n = 0
        for i, (x, m) in enumerate(data.epoch(cfg.batch_size, cfg.seed * 100003 + epoch)):
            elapsed = elapsed0 + time.perf_counter() - started
            if cfg.schedule_by == "time" and budget_s:
                progress = elapsed / budget_s
            else:
                progress = (epoch + i / steps_per_epoch) / max(cfg.epochs - 1, 1)
            for group in opt.param_groups:
                group["lr"] = lr_at_progress(cfg, progress, epoch + i / steps_per_epoch)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = net(x)
                if teachers is not None:
                    teacher_logits, taught = teachers.logits(x, one_source[: x.shape[0]])
            loss = training_loss(cfg.loss, logits, m)
            if teachers is not None:
                loss = loss + distillation_term(cfg, logits, teacher_logits, taught, m)
            optimizer_step(opt, loss, ema, model)
            loss_sum += loss.detach()
            n += 1
            step += 1
            if compile_s is None and cfg.compile:
                compile_s = round(time.perf_counter() - t0, 2)  # first step: mostly the compile
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stop_reason = "max_steps"
                break
            if stop is not None and stop.is_set():
                stop_reason = TERMINATED
                break
        mean_loss = float((loss_sum / max(n, 1)).item())  # the epoch's one host sync
        dt = time.perf_counter() - t0
        elapsed = elapsed0 + time.perf_counter() - started
        history.append({"epoch": epoch + 1, "loss": round(mean_loss, 5), "seconds": round(dt, 3),
                        "img_per_s": round(n * cfg.batch_size / max(dt, 1e-9), 1),
                        "lr": opt.param_groups[0]["lr"]})
        if n < steps_per_epoch:  # cut by max_steps or a stop: counted as done all the same
            history[-1]["partial"] = True
        if epoch == start_epoch or (epoch + 1) % 10 == 0:
            log.info("epoch %d/%d loss %.4f lr %.2e %.0f img/s (%.0f s)", epoch + 1, cfg.epochs,
                     mean_loss, opt.param_groups[0]["lr"], history[-1]["img_per_s"], elapsed)
        if stop is not None and stop.is_set():  # also during the step max_steps ended on
            stop_reason = TERMINATED
        if budget_s is not None and elapsed >= budget_s and stop_reason == "epochs":
            stop_reason = "minutes"
        if stop_reason != "epochs" or time.perf_counter() - last_save >= cfg.save_every_s:
            save_checkpoint(last, model, info_for(epoch + 1, elapsed), _resume_tensors(opt, ema))
            last_save = time.perf_counter()
        if stop_reason != "epochs":
            break
    else:
        elapsed = elapsed0 + time.perf_counter() - started
        if history:
            save_checkpoint(last, model, info_for(len(history), elapsed), _resume_tensors(opt, ema))
    if stop is not None and stop.is_set():  # during the last checkpoint: still no time for more
        stop_reason = TERMINATED
    if isinstance(stop, SigtermStop):
        stop.deferring = False
    train_s = time.perf_counter() - started

    final, half = cfg.out / "model.safetensors", cfg.out / "model_fp16.safetensors"
    raw = model
    if ema is not None:  # the average is the run's model; the raw weights stay in last
        model = ema.module

    def save_final(metrics: dict[str, Any] | None) -> None:  # the model stays where it is
        save_checkpoint(final, model, info_for(len(history), elapsed, metrics))
        save_checkpoint(half, half_copy(model), info_for(len(history), elapsed, metrics))

    summary: dict[str, Any] = {
        "out": str(cfg.out),
        "model": str(final),
        "model_fp16": str(half),
        "device": _device_name(device),
        "recipe": cfg.recipe,
        "config": cfg.recorded(),
        "epochs_done": len(history),
        "steps": step,
        "stop": stop_reason,
        "train_s": round(train_s, 2),
        "load_s": round(load_s, 2),
        "compile_first_step_s": compile_s,
        "img_per_s_median": float(np.median([h["img_per_s"] for h in history[-20:]])) if history else None,
        "epoch_s_median": float(np.median([h["seconds"] for h in history[-20:]])) if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "eval": None,
        "peak_gpu_mem_mb": None,
    }

    def write_summary() -> None:
        if device.type == "cuda":
            summary["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        write_text_atomic(cfg.out / "summary.json", json.dumps(summary, indent=1))

    # first without metrics: an evaluation cut off by a time limit loses no weights and no summary
    save_final(None)
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg.out / "history.json", json.dumps(history, indent=1))
    write_summary()
    if eval_items and stop_reason != TERMINATED:  # a stop asked for: no time for the evaluation
        where = str(cfg.eval_group) if cfg.pack else evaluation_set(cfg.data, str(eval_split))
        metrics = scored(model, eval_items, norm, cfg.threshold, device, model_cfg.stride, cfg.eval_batch, where)
        summary["eval"] = metrics
        if ema is not None:  # what the average adds, on the same trajectory
            raw_metrics = evaluate_items(raw, eval_items, norm, cfg.threshold, device, model_cfg.stride,
                                         cfg.eval_batch)
            raw_metrics["set"] = where
            summary["eval_raw_weights"] = raw_metrics
        save_final(metrics)
        write_summary()
        write_text_atomic(cfg.out / "eval.json", json.dumps(metrics, indent=1))
    return summary


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


# --- command line (also ``irstd train-gpu``) ---------------------------------------------------
FIELDS_CLI: tuple[str, ...] = (
    "split", "model", "epochs", "batch-size", "lr", "schedule", "min-lr", "crop", "seed", "device",
    "threads", "threshold", "max-steps", "minutes", "knee", "background", "loss", "init", "warmup-epochs",
    "schedule-by", "save-every-s", "eval-group", "eval-split", "eval-batch", "weight-decay", "ema",
    "distill",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="starting recipe (default: the --config's recipe, else paper)")
    p.add_argument("--config", type=Path, help="YAML file of fields (after the recipe, before the flags)")
    p.add_argument("--data", type=Path, help="dataset folder (NUDT-SIRST layout)")
    p.add_argument("--pack", type=Path, help="a pack written by `irstd pack` (instead of --data)")
    p.add_argument("--out", type=Path, help="run folder (resumes when it holds last.safetensors)")
    p.add_argument("--train-groups", help="comma-separated pack groups to train on (default nudt_train)")
    for name in FIELDS_CLI:  # numbers: the range the field itself checks
        p.add_argument(f"--{name}", type=flag_type({**TRAIN_FIELDS, **GPU_FIELDS}, name))
    p.add_argument("--teacher", type=Path, nargs="+", metavar="CHECKPOINT",
                   help="distil from these checkpoints (their mean logits; the run's input normalisation)")
    p.add_argument("--distill-keep-labels", action="store_true", default=None,
                   help="raise the teacher's probability to the label on target pixels")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", default=None)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None)


def config_from_args(args: argparse.Namespace) -> GPUTrainConfig:
    """The recipe (``--recipe``, else the YAML's, else ``paper``), then the ``--config``
    YAML, then the flags."""
    values: dict[str, Any] = {}
    if args.config:
        values.update(read_config(args.config))
    for key in GPUTrainConfig.__dataclass_fields__:
        v = getattr(args, key, None)
        if v is not None and key != "recipe":
            values[key] = v
    if args.train_groups:
        values["train_groups"] = [g.strip() for g in args.train_groups.split(",") if g.strip()]
    for key in ("eval_group", "eval_split"):
        if key in values and values[key] in (None, "", "none"):  # YAML null too
            values[key] = ""  # no evaluation (None would mean "not given": the default)
    check_keys(values, list(GPUTrainConfig.__dataclass_fields__), "training")
    recipe = values.pop("recipe", "paper")
    return recipe_config(args.recipe or recipe, **values)


class SigtermStop(threading.Event):
    """Set by SIGTERM in :func:`sigterm_stop`. While :attr:`deferring` (:func:`train_gpu`'s
    loop: its steps and the checkpoints saved between epochs) the signal only sets it: the
    loop ends after the step or checkpoint in progress, saves, and the summary says
    ``terminated`` (no evaluation). At any other time (reading the data, the final
    checkpoints, the evaluation), or on a
    second SIGTERM, the command ends at once, as it would without this (the handler before
    it: ``irstd``'s "terminated", exit 143; else exit 143)."""

    deferring = False


@contextlib.contextmanager
def sigterm_stop() -> Iterator[SigtermStop]:
    """A :class:`SigtermStop` SIGTERM sets while the block runs, for :func:`train_gpu`'s
    ``stop`` (the handler in the main thread only, where a signal handler can be installed;
    elsewhere the event is never set), and the previous handler back after it."""
    stop = SigtermStop()
    handled = threading.current_thread() is threading.main_thread()
    previous: Any = None

    def handler(signum: int, frame: Any) -> None:
        deferred = stop.deferring and not stop.is_set()
        stop.set()
        if deferred:
            return
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            log.warning("stopped by SIGTERM outside the training steps: written so far is kept")
            raise SystemExit(TERMINATED_EXIT)

    if handled:
        previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        if handled:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """``python -m irstd_ros.training.gpu ...`` (the same flags as ``irstd train-gpu``).
    SIGTERM (``timeout``: scripts/gpu_session.sh) stops the training after the step in
    progress; the checkpoints and the summary are written, then the exit code is 143 (in
    the main thread: only there can a signal handler be installed, as for ``irstd``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m irstd_ros.training.gpu", description=__doc__.split("\n")[0],
        epilog="The same options as `irstd train-gpu`, whose --help says each one's meaning and default.",
    )
    add_arguments(parser)
    try:
        with sigterm_stop() as stop:
            cfg = config_from_args(parser.parse_args(argv))
            reason = output_dir_problem(cfg.out)  # before the pack is read and the first epoch runs
            if reason:
                parser.error(f"--out {reason}")
            summary = train_gpu(cfg, stop)
    except IrstdError as exc:  # one readable line, as `irstd train-gpu` gives
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    if summary["stop"] == TERMINATED:
        log.warning("terminated (SIGTERM) after %d epochs; checkpoints written, no evaluation", summary["epochs_done"])
        return TERMINATED_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
