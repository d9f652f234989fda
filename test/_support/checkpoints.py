"""Checkpoints in states :func:`irstd_ros.checkpoint.save_checkpoint` refuses to write."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint


def diverged_checkpoint(path: Path, model: nn.Module, info: CheckpointInfo, tensor: str, value: float) -> Path:
    """``model``'s checkpoint with one ``value`` (NaN, inf) in ``tensor``, as a diverged
    training run or an older writer left one: saved whole, then that value written in."""
    save_checkpoint(path, model, info)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    tensors[tensor] = tensors[tensor].clone()
    tensors[tensor].view(-1)[0] = torch.tensor(value, dtype=tensors[tensor].dtype)
    save_file(tensors, str(path), metadata=metadata)
    return path
