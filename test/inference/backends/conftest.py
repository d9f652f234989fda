"""Fixtures of the backend tests: small random-weight models, never runs/ or the shipped file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irstd_ros.checkpoint import CheckpointInfo, InputNorm
from irstd_ros.models import build_model, named_config

MODEL_SEED = 0
FRAME_SEED = 1
TEST_NORM = InputNorm(mean=0.4, std=0.2)  # not the identity, so normalisation is exercised


@pytest.fixture(scope="session")
def tiny_model() -> tuple[torch.nn.Module, CheckpointInfo]:
    torch.manual_seed(MODEL_SEED)
    cfg = named_config("tiny")
    return build_model(cfg).eval(), CheckpointInfo(cfg, TEST_NORM)


@pytest.fixture(scope="session")
def backend_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One cache directory for the session: the ONNX export happens once."""
    return str(tmp_path_factory.mktemp("backend_cache"))


def random_frame(h: int, w: int, seed: int = FRAME_SEED) -> np.ndarray:
    """A [0, 1] float32 frame with a few bright spots."""
    rng = np.random.default_rng(seed)
    frame = rng.random((h, w), dtype=np.float32) * 0.3
    for _ in range(3):
        frame[rng.integers(h), rng.integers(w)] = 1.0
    return frame


@pytest.fixture
def make_frame():
    return random_frame
