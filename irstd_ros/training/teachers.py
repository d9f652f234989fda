"""Distillation teachers: one checkpoint, an ensemble, or one ensemble per data source.

A teacher set is a tuple of checkpoints whose logits are averaged (an ensemble in logit
space, as ``docs/results.md`` "Cheap levers" scored them). The run's ``teacher`` is the
default set; a mixture source may name its own (``sources[i].teacher``), e.g. an ensemble
that is quiet on real clutter for the real frames and the accurate model alone for the
synthetic ones. Each checkpoint is loaded once and run only on the samples of the batch
whose set holds it. Calibrated checkpoints (Platt scaling folded into the head) output
calibrated logits, so an ensemble of differently calibrated models averages like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.core.normalization import InputNorm
from irstd_ros.errors import ConfigError
from irstd_ros.inference.detector import resolve_model_path

TeacherSet = tuple[Path, ...]


def load_teacher(path: Path, norm: InputNorm, device: torch.device) -> nn.Module:
    """A frozen teacher in eval mode; its input normalisation must be the run's."""
    teacher, info, _ = load_checkpoint(resolve_model_path(path))  # a shipped model's name too
    if info.norm != norm:
        raise ConfigError(f"teacher {path} normalises inputs as {info.norm}, the run as {norm}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device).eval()


class Teachers:
    """Per-source teacher sets; ``sets[i]`` is source ``i``'s (empty: no distillation).

    A checkpoint named twice in a set counts twice in its mean; one file named by two
    spellings of its path is loaded once.
    """

    def __init__(self, sets: Sequence[TeacherSet], norm: InputNorm, device: torch.device) -> None:
        # a shipped model's name (``teacher: tiny``) before the path is made absolute
        self.sets = [tuple(resolve_model_path(p).resolve() for p in s) for s in sets]
        self.models: dict[Path, nn.Module] = {}
        for path in dict.fromkeys(p for s in self.sets for p in s):
            self.models[path] = load_teacher(path, norm, device)
        # one set for every sample (the GPU trainer's, a run without per-source sets): the
        # whole batch through each model, no per-sample selection (no host sync on a GPU)
        same = bool(self.sets) and bool(self.sets[0]) and all(s == self.sets[0] for s in self.sets)
        self.uniform: TeacherSet | None = self.sets[0] if same else None

    def __bool__(self) -> bool:
        return bool(self.models)

    def logits(self, img: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean teacher logits, float32 (N,) mask of the samples that have a teacher).

        ``source`` holds each sample's source index. Samples without a teacher get
        logits 0 and mask 0; each checkpoint runs only on the samples that use it.
        """
        if self.uniform is not None:
            with torch.no_grad():  # a checkpoint named twice runs once and counts twice
                total = sum(self.models[p](img).float() * self.uniform.count(p) for p in dict.fromkeys(self.uniform))
            return total / len(self.uniform), torch.ones(img.shape[0], dtype=torch.float32, device=img.device)
        total = torch.zeros((img.shape[0], 1, *img.shape[2:]), dtype=torch.float32, device=img.device)
        count = torch.zeros(img.shape[0], dtype=torch.float32, device=img.device)
        with torch.no_grad():
            for path, model in self.models.items():
                times = torch.tensor(
                    [self.sets[int(s)].count(path) for s in source.tolist()], dtype=torch.float32, device=img.device
                )
                users = times > 0
                if not bool(users.any()):
                    continue
                total[users] += model(img[users]).float() * times[users].view(-1, 1, 1, 1)
                count += times
        mean = total / count.clamp(min=1.0).view(-1, 1, 1, 1)
        return mean, (count > 0).float()
