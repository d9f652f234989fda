"""Fixtures of the backend tests: small random-weight models, never runs/ (test_parity's bf16
check loads the shipped tiny weights itself: a random model's output is too flat for bf16);
the OpenVINO artefact cache of the INT8 / bf16 tests and the ``cpu`` choice with its one log
line. ``fake_quantize`` (NNCF replaced by a copy) and ``native_bf16`` come from
test/_support/openvino.py."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from irstd_ros.checkpoint import CheckpointInfo, InputNorm
from irstd_ros.inference.backends.base import Backend, BackendOptions
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
def fast_model() -> tuple[torch.nn.Module, CheckpointInfo]:
    """The space-to-depth stem with the full-resolution refinement (``fast_refine``) and a
    two-piece calibration: pixel_unshuffle / pixel_shuffle, the refinement's concat, its
    calibration affine and the knee's ``Min`` in every graph. The refinement's last conv
    starts at zero; it is drawn here so the graphs compute it."""
    torch.manual_seed(MODEL_SEED)
    cfg = replace(named_config("fast_refine"), logit_knee=True)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.refine.out.weight.normal_(std=0.1)
        model.fold_logit_affine(0.5, -1.0)
        model.knee.set(-4.0, 3.0)  # near the random network's logits: both pieces used
    return model, CheckpointInfo(cfg, TEST_NORM)


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


@pytest.fixture(scope="module")
def fp32_ir(tiny_model, tmp_path_factory) -> Path:
    """The FP32 OpenVINO IR of the tiny model, exported once per module."""
    from irstd_ros.inference.backends.graph_export import export_openvino_ir

    model, info = tiny_model
    root = tmp_path_factory.mktemp("fp32_ir")
    export_openvino_ir(model, info, BackendOptions(cache_dir=str(root)))
    return root


@pytest.fixture
def cache(fp32_ir, tmp_path) -> Path:
    """A fresh cache holding only the FP32 IR."""
    root = tmp_path / "cache"
    shutil.copytree(fp32_ir, root)
    return root


@pytest.fixture
def choose_cpu(caplog) -> Callable[..., tuple[Backend, str]]:
    """``create_backend("cpu", ...)``: (the backend, its one ``inference backend`` log line)."""
    from irstd_ros.inference.backends import select

    def choose(model, info, options: BackendOptions) -> tuple[Backend, str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=select.__name__):
            backend = select.create_backend("cpu", model, info, options)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inference backend")]
        assert len(lines) == 1
        return backend, lines[0]

    return choose
