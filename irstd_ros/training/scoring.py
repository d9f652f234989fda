"""A trained model's final scoring, shared by ``irstd train`` and ``irstd train-gpu``:
IoU, nIoU, F1, Pd, Fa... at full resolution
(:class:`~irstd_ros.evaluation.metrics.MetricAccumulator`), at the checkpoint's threshold,
recorded in the model file (``extra.metrics``) with the ``set`` they were measured on."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from irstd_ros.core.normalization import InputNorm, centred_wide
from irstd_ros.errors import BackendError
from irstd_ros.evaluation.metrics import MetricAccumulator
from irstd_ros.training.torch_norm import normalize_torch

log = logging.getLogger(__name__)

Item = tuple[np.ndarray, np.ndarray, str]  # (image, mask, name)


def torch_frames(arrays: list[np.ndarray], centre: bool = True) -> tuple[torch.Tensor, bool]:
    """Stacked frames as a compact tensor and whether they hold integers; wide ones
    (32-bit counts, float64) about their median first, so float32 keeps their noise
    (``centre`` false: the caller centred them already)."""
    integer = all(np.issubdtype(a.dtype, np.integer) for a in arrays)
    if all(a.dtype == np.uint8 for a in arrays):
        return torch.from_numpy(np.stack(arrays)), True
    frames = [centred_wide(a) for a in arrays] if centre else arrays
    return torch.from_numpy(np.stack(frames).astype(np.float32)), integer


@torch.no_grad()
def evaluate_items(
    model: nn.Module, items: list[Item], norm: InputNorm, threshold: float, device: torch.device,
    stride: int, batch: int = 16,
) -> dict[str, Any]:
    """Full-resolution metrics of ``model`` over ``items`` (FP32, frames of one size batched)."""
    from irstd_ros.inference.preprocess import pad_to_stride

    model = model.eval()
    acc = MetricAccumulator()
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, (img, _, _) in enumerate(items):
        by_shape.setdefault(img.shape, []).append(i)
    preds: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    for _, idxs in sorted(by_shape.items()):
        for s in range(0, len(idxs), batch):
            chunk = idxs[s : s + batch]
            frames, integer = torch_frames([items[i][0] for i in chunk])
            x = normalize_torch(frames.to(device), norm, integer)[:, None]
            x, size = pad_to_stride(x, stride)
            prob = torch.sigmoid(model(x).float()[..., : size[0], : size[1]])
            bad = int((~torch.isfinite(prob)).sum())  # NaN > threshold is False: silent background
            if bad:
                raise BackendError(f"evaluation: {bad} of {prob.numel()} probabilities are NaN or infinite "
                                   "(a diverged network?)")
            masks = (prob[:, 0] > threshold).cpu().numpy()
            for i, m in zip(chunk, masks):
                preds[i] = m
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    infer_s = time.perf_counter() - t0
    for i, (_, truth, _) in enumerate(items):
        acc.update(preds[i], truth)
    return {**acc.result(), "threshold": threshold, "inference_s": round(infer_s, 3)}


def scored(
    model: nn.Module, items: list[Item], norm: InputNorm, threshold: float, device: torch.device,
    stride: int, batch: int, where: str,
) -> dict[str, Any]:
    """:func:`evaluate_items` with the ``set`` the metrics were measured on (``where``: a
    pack group, or ``<dataset folder>:<split>``), logged in one line."""
    metrics = evaluate_items(model, items, norm, threshold, device, stride, batch)
    metrics["set"] = where
    log.info("eval %s: %s", metrics["set"], ", ".join(
        f"{k} {metrics.get(k)}" for k in ("iou", "niou", "f1", "pd", "fa", "images")))
    return metrics
