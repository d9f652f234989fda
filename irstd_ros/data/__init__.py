"""Datasets of IR images with target masks (NUDT-SIRST layout and a generic one).

The dataset classes (and with them torch) load on first use, so that the image reader
(:mod:`irstd_ros.data.images`, which the node decodes CompressedImage frames with) does not
load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irstd_ros.data.datasets import DatasetSpec, IRSTDDataset, find_pairs, load_image, load_mask

__all__ = ["DatasetSpec", "IRSTDDataset", "find_pairs", "load_image", "load_mask"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("irstd_ros.data.datasets"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
