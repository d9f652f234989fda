"""Parity of every backend available here with eager PyTorch (``torch-cpu``), odd sizes included.

Thresholds are named per precision class. Masks are compared at the reference's 99th
percentile (pixels within the probability tolerance of it left out) (about 1 % of the pixels positive, like a frame with targets), which a
random-weight model's near-constant output would otherwise never cross.
"""

from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.inference.backends import select
from irstd_ros.inference.backends.base import BackendOptions

FP32_PROB_ATOL = 1e-4  # max |p - p_ref|: same FP32 maths, other kernels (1.3e-5 on real frames)
FP32_MASK_AGREEMENT = 0.999  # fraction of pixels with the same thresholded value
BF16_PROB_ATOL = 2e-2  # bf16 keeps 8 mantissa bits
BF16_MASK_AGREEMENT = 0.98
MASK_QUANTILE = 0.99
TEST_THREADS = 1  # parity does not depend on it; one thread keeps a loaded 2-core box usable
TOLERANCES = {"bf16": (BF16_PROB_ATOL, BF16_MASK_AGREEMENT)}
DEFAULT_TOLERANCE = (FP32_PROB_ATOL, FP32_MASK_AGREEMENT)
ODD_SIZES = [(1, 1), (9, 20), (45, 77), (64, 64), (100, 130)]
# torch-compile compiles for tens of seconds per size: its parity is a slow test.
# openvino-int8 needs an exported, calibrated artefact and has its own tolerance:
# test_openvino_int8.py checks its parity.
EXPORTED_BACKENDS = ("openvino-int8",)
CPU_BACKENDS = [
    pytest.param(n, marks=pytest.mark.slow) if n == "torch-compile" else n
    for n in select.BACKENDS
    if n not in select.GPU_BACKENDS and n != "torch-cpu" and n not in EXPORTED_BACKENDS
]


def mask_agreement(prob: np.ndarray, ref: np.ndarray, atol: float) -> float:
    """Fraction of pixels thresholded alike at the reference's 99th percentile.

    Pixels within ``atol`` of the threshold are left out: the probability tolerance
    already covers them (and a 1-pixel frame's quantile is its only pixel).
    """
    thr = float(np.quantile(ref, MASK_QUANTILE))
    clear = np.abs(ref - thr) > atol
    if not clear.any():
        return 1.0
    return float(((prob > thr) == (ref > thr))[clear].mean())


def _tolerance(name: str) -> tuple[float, float]:
    return TOLERANCES.get("bf16" if name.endswith("bf16") else "", DEFAULT_TOLERANCE)


@pytest.fixture(scope="module")
def reference(tiny_model):
    model, info = tiny_model
    return select.create_backend("torch-cpu", model, info, BackendOptions(threads=TEST_THREADS))


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_cpu_backend_matches_eager_pytorch(name, tiny_model, backend_cache, reference, make_frame):
    reason = select.unavailable_reason(name)
    if reason:
        pytest.skip(f"{name}: {reason}")
    model, info = tiny_model
    backend = select.create_backend(name, model, info, BackendOptions(threads=TEST_THREADS, cache_dir=backend_cache))
    atol, agreement = _tolerance(name)
    sizes = ODD_SIZES if name != "torch-compile" else ODD_SIZES[-1:]
    for h, w in sizes:
        frame = make_frame(h, w)
        ref = reference.predict(frame)
        prob = backend.predict(frame)
        assert prob.shape == (h, w) and prob.dtype == np.float32
        assert np.abs(prob - ref).max() <= atol, (name, h, w)
        assert mask_agreement(prob, ref, atol) >= agreement, (name, h, w)
    assert backend.describe()["backend"] == name


# The stem's pixel_unshuffle / pixel_shuffle and the full-resolution refinement through
# each export path (bf16 runs the openvino graph): static ONNX, static OpenVINO IR,
# dynamic shapes at stride 32.
STEM_PATHS = [("onnxruntime", False), ("openvino", False), ("openvino", True)]


@pytest.mark.parametrize(("name", "dynamic"), STEM_PATHS)
def test_space_to_depth_stem_matches_eager_pytorch(name, dynamic, fast_model, tmp_path, make_frame):
    reason = select.unavailable_reason(name)
    if reason:
        pytest.skip(f"{name}: {reason}")
    model, info = fast_model
    reference = select.create_backend("torch-cpu", model, info, BackendOptions(threads=TEST_THREADS))
    options = BackendOptions(threads=TEST_THREADS, cache_dir=str(tmp_path), dynamic_shapes=dynamic)
    backend = select.create_backend(name, model, info, options)
    atol, agreement = _tolerance(name)
    for h, w in ODD_SIZES[2:]:  # padded to the stem's stride of 32
        frame = make_frame(h, w)
        ref, prob = reference.predict(frame), backend.predict(frame)
        assert prob.shape == (h, w)
        assert np.abs(prob - ref).max() <= atol, (name, h, w)
        assert mask_agreement(prob, ref, atol) >= agreement, (name, h, w)


@pytest.mark.parametrize("size", ODD_SIZES)
def test_reference_pads_and_crops_odd_sizes(reference, make_frame, size):
    prob = reference.predict(make_frame(*size))
    assert prob.shape == size and np.isfinite(prob).all()
