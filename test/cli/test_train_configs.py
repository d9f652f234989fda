"""Every committed training config (config/train/*.yaml) still reads as a TrainConfig, and
every file it names that lives in git (weights, candidates, hard-example lists) exists,
so the recipes in docs/results.md still reproduce. Files under runs/ or out/ are a
session's own chained runs and are not checked; neither are the datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from irstd_ros.cli.train import read_config
from irstd_ros.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config" / "train").glob("*.yaml"))
IN_GIT = ("candidates/", "irstd_ros/weights/", "config/")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def test_there_are_configs():
    assert len(CONFIGS) > 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_reads_and_names_only_files_that_exist(path):
    values = read_config(path)
    TrainConfig(**values)  # unknown or misspelt options raise TypeError
    named = [s for s in _strings(values) if s.startswith(IN_GIT)]
    missing = [s for s in named if not (ROOT / s).is_file()]
    assert not missing, f"{path.name} names files that are not in the repository: {missing}"
