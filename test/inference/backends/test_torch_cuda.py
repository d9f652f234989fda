"""``cuda`` backend: the SGEM-in-FP32 guard (checked with CPU autocast) and GPU parity."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.torch_cuda import StagingBuffers, keep_sgem_fp32
from irstd_ros.models.blocks import SGEM

ATTENTION_OPS = ("matmul", "softmax", "linalg_vector_norm")
# the same ops under their decomposed names (which level the dispatcher shows varies)
CANONICAL = {"bmm": "matmul", "_softmax": "softmax"}


class DtypeLog(TorchDispatchMode):
    """Records the output dtype of every attention op that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: dict[str, set[torch.dtype]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        name = CANONICAL.get(name, name)
        if name in ATTENTION_OPS and isinstance(out, torch.Tensor):
            self.dtypes.setdefault(name, set()).add(out.dtype)
        return out


def _attention_dtypes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, set[torch.dtype]]:
    log = DtypeLog()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), log:
        model(x)
    return log.dtypes


def test_autocast_alone_would_run_the_attention_in_low_precision(tiny_model):
    model, _ = tiny_model
    dtypes = _attention_dtypes(model, torch.rand(1, 1, 64, 64))
    assert torch.bfloat16 in dtypes["matmul"]  # why keep_sgem_fp32 exists
    assert torch.bfloat16 in dtypes["linalg_vector_norm"]


def test_keep_sgem_fp32_under_autocast(tiny_model):
    model, _ = tiny_model
    guarded = copy.deepcopy(model)
    assert keep_sgem_fp32(guarded) == 1
    assert keep_sgem_fp32(guarded) == 0  # idempotent
    dtypes = _attention_dtypes(guarded, torch.rand(1, 1, 64, 64))
    assert set(dtypes) == set(ATTENTION_OPS)
    assert all(d == {torch.float32} for d in dtypes.values()), dtypes
    with torch.inference_mode():  # no autocast: the guard changes nothing
        x = torch.rand(1, 1, 48, 80)
        torch.testing.assert_close(guarded(x), model(x))


def test_guard_survives_deepcopy(tiny_model):
    model, _ = tiny_model
    guarded = copy.deepcopy(model)
    keep_sgem_fp32(guarded)
    clone = copy.deepcopy(guarded)
    sgem = next(m for m in clone.modules() if isinstance(m, SGEM))
    assert sgem.forward.__self__ is sgem  # bound to the copy, not the original


def test_staging_buffers_are_reused_per_size():
    buffers = StagingBuffers()
    cpu = torch.device("cpu")
    a = np.random.rand(10, 12).astype(np.float32)
    x = buffers.upload(a, cpu)
    first = buffers.host_in
    assert x.shape == (1, 1, 10, 12) and np.array_equal(x[0, 0].numpy(), a)
    buffers.upload(np.zeros((10, 12), np.float32), cpu)
    assert buffers.host_in is first
    prob = torch.rand(10, 12)
    assert np.array_equal(buffers.download(prob), prob.numpy())
    assert np.array_equal(buffers.download_mask(prob, 0.5), prob.numpy() > 0.5)
    buffers.upload(np.zeros((4, 4), np.float32), cpu)
    assert buffers.host_in is not first


CUDA_PROB_ATOL = {"fp32": 1e-4, "fp16": 2e-2}
CUDA_MASK_AGREEMENT = 0.999


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_matches_eager_cpu(tiny_model, make_frame, precision):
    from irstd_ros.inference.backends.torch_cpu import TorchCPUBackend
    from irstd_ros.inference.backends.torch_cuda import TorchCUDABackend

    model, info = tiny_model
    backend = TorchCUDABackend(model, info, BackendOptions(precision=precision))
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays
    for h, w in [(45, 77), (512, 640)]:
        frame = make_frame(h, w)
        ref = TorchCPUBackend(model, info).predict(frame)
        prob = backend.predict(frame)
        assert prob.shape == (h, w)
        assert np.abs(prob - ref).max() <= CUDA_PROB_ATOL[precision]
        thr = float(np.quantile(ref, 0.99))
        assert ((prob > thr) == (ref > thr)).mean() >= CUDA_MASK_AGREEMENT
