"""Small generated bags for the bag tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from irstd_ros.bags.generate import GenerateConfig, generate_bag
from irstd_ros.sim import SequenceConfig

TINY = SequenceConfig(width=96, height=64, frames=8, fps=10.0, n_targets=2, seed=11)


def make_bag(path: Path, storage: str = "mcap", **changes: object) -> Path:
    """A small generated bag at ``path`` (``changes``: SequenceConfig fields)."""
    generate_bag(GenerateConfig(path, replace(TINY, **changes), storage))
    return path
