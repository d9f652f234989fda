"""``torch-compile`` with several backends in one process (one per camera): dynamo keeps
its graphs per code object, so they share one cache, and its ``recompile_limit`` (8, set
by the backend for the whole process) counted the frame sizes of them all. Past it, frames
of a new size silently ran eager. Now each backend compiles its own
:data:`~irstd_ros.inference.backends.torch_compile.MAX_COMPILED_SIZES` sizes, and the
frames of further sizes run eager on purpose: logged once, counted in ``describe()``.

The fast test traces with dynamo's ``eager`` backend (the same cache and limits, no C++
build); the slow one compiles with Inductor."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo, InputNorm
from irstd_ros.inference.backends import torch_compile as tc
from irstd_ros.models import named_config

INFO = CheckpointInfo(named_config("tiny"), InputNorm())
STRIDE = INFO.model.stride


class _Net(nn.Module):
    """A one-conv stand-in for the network: its ``forward`` is the code object dynamo caches."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 2.0


@pytest.fixture
def graphs(monkeypatch):
    """The sizes dynamo compiles graphs for (torch.compile with a recording backend); the
    process-wide limits as they were, and dynamo's cache emptied, before and after."""
    compiled: list[tuple[int, ...]] = []

    def recording(gm, example_inputs):  # the frame: the largest input (the weights are inputs too)
        compiled.append(tuple(max(example_inputs, key=lambda t: t.numel()).shape))
        return gm.forward

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, **{**kw, "backend": recording}))
    with _dynamo_as_it_was(monkeypatch):
        yield compiled


@contextlib.contextmanager
def _dynamo_as_it_was(monkeypatch):
    """No backend made yet, dynamo's cache empty; its limit set back after (not with
    monkeypatch, whose undo deletes a config module's entry)."""
    monkeypatch.setattr(tc.TorchCompileBackend, "_made", 0)
    saved = torch._dynamo.config.recompile_limit
    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.config.recompile_limit = saved
        torch._dynamo.reset()


def _frame(i: int) -> np.ndarray:
    """A frame of the i-th padded size (one stride taller each)."""
    return np.random.default_rng(i).random((STRIDE * (i + 1), STRIDE), dtype=np.float32)


def test_each_backend_compiles_its_own_sizes_and_says_when_it_runs_eager(graphs, caplog):
    a, b = tc.TorchCompileBackend(_Net(), INFO), tc.TorchCompileBackend(_Net(), INFO)
    limit = tc.MAX_COMPILED_SIZES
    for i in range(limit):  # camera a fills its sizes
        a.predict(_frame(i))
    assert len(graphs) == limit
    b.predict(_frame(limit))  # camera b's first size: compiled, not eager behind a's
    assert len(graphs) == limit + 1 and graphs[-1][-2:] == (STRIDE * (limit + 1), STRIDE)
    assert b.describe()["compiled_sizes"] == [[STRIDE * (limit + 1), STRIDE]]

    with caplog.at_level(logging.WARNING, logger=tc.__name__):
        for _ in range(2):  # a's next size: eager on purpose, said once, counted
            prob = a.predict(_frame(limit + 1))
    assert len(graphs) == limit + 1
    info = a.describe()
    assert info["eager_frames"] == 2 and info["size_limit"] == limit and len(info["compiled_sizes"]) == limit
    (record,) = [r for r in caplog.records if r.name == tc.__name__]
    assert f"frame size {STRIDE}x{STRIDE * (limit + 2)} (padded) is past the {limit} sizes" in record.getMessage()
    with torch.inference_mode():
        eager = torch.sigmoid(a.eager(torch.from_numpy(_frame(limit + 1))[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(prob, eager, rtol=1e-6, atol=1e-6)

    a.predict(_frame(0))  # sizes it compiled go on compiled
    assert a.describe()["eager_frames"] == 2 and len(graphs) == limit + 1


def test_the_recompile_limit_is_raised_never_lowered(graphs):
    torch._dynamo.config.recompile_limit = 100
    tc.TorchCompileBackend(_Net(), INFO)
    assert torch._dynamo.config.recompile_limit == 100  # another user's higher setting kept
    torch._dynamo.config.recompile_limit = 8
    tc.TorchCompileBackend(_Net(), INFO)
    assert torch._dynamo.config.recompile_limit == 2 * tc.MAX_COMPILED_SIZES


@pytest.mark.slow
def test_two_backends_compile_with_inductor_past_a_shared_limit(monkeypatch):
    """Inductor (C++), one size per backend: the second backend's size is compiled too, and
    matches eager PyTorch."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(tc, "MAX_COMPILED_SIZES", 1)
    with _dynamo_as_it_was(monkeypatch):
        torch._dynamo.config.recompile_limit = 1  # as the old code set it (to its limit)
        a, b = tc.TorchCompileBackend(_Net(), INFO), tc.TorchCompileBackend(_Net(), INFO)
        before = counters["stats"]["unique_graphs"]
        for backend, i in ((a, 0), (b, 1)):
            prob = backend.predict(_frame(i))
            with torch.inference_mode():
                ref = torch.sigmoid(backend.eager(torch.from_numpy(_frame(i))[None, None]))[0, 0].numpy()
            np.testing.assert_allclose(prob, ref, rtol=1e-5, atol=1e-5)
        assert counters["stats"]["unique_graphs"] - before == 2
        assert a.describe()["eager_frames"] == b.describe()["eager_frames"] == 0
