"""The torch twin of the input normalisation equals the numpy rule (to 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irstd_ros.core.normalization import InputNorm, normalize
from irstd_ros.errors import ConfigError
from irstd_ros.training.torch_norm import normalize_torch

TOL = 1e-4


def _frames(dtype, shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return [rng.normal(0.3, 0.01, shape).astype(np.float32) for _ in range(n)]
    hi = 256 if dtype == np.uint8 else 16384
    out = []
    for _ in range(n):
        f = rng.normal(hi * 0.4, hi * 0.02, shape).clip(0, hi - 1)
        f[rng.integers(shape[0]), rng.integers(shape[1])] = hi - 1  # a bright target
        out.append(f.astype(dtype))
    return out


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [(np.uint8, (256, 256)), (np.uint8, (37, 53)), (np.uint16, (512, 640)), (np.float32, (64, 80)),
     (np.uint8, (9, 1)), (np.uint8, (1, 9)), (np.uint8, (130, 260)), (np.uint16, (2000, 1))],
)
@pytest.mark.parametrize(("knee", "background"), [(4.0, 0), (2.5, 0), (4.0, 32), (3.0, 16)])
def test_robust_twin_matches_numpy(dtype, shape, knee, background):
    norm = InputNorm(kind="robust", knee=knee, background=background)
    frames = _frames(dtype, shape)
    ref = np.stack([normalize(f, norm) for f in frames])
    t = torch.from_numpy(np.stack(frames).astype(np.float32) if dtype == np.uint16 else np.stack(frames))
    out = normalize_torch(t, norm, integer=dtype != np.float32).numpy()
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() <= TOL


@pytest.mark.parametrize("background", [0, 32])
def test_a_column_frame_is_normalised_as_its_row(background):
    """A line-scan column: the whole column, as numpy takes it (a ramp's slope is not noise)."""
    rng = np.random.default_rng(3)
    ramp = (np.linspace(1000, 9000, 2000) + rng.normal(0, 5, 2000)).astype(np.float32)
    norm = InputNorm(kind="robust", knee=4.0, background=background)
    column = normalize_torch(torch.from_numpy(ramp[None, :, None].copy()), norm, integer=False)
    row = normalize_torch(torch.from_numpy(ramp[None, None, :].copy()), norm, integer=False)
    assert np.abs(column.numpy()[0, :, 0] - row.numpy()[0, 0, :]).max() <= TOL


@pytest.mark.parametrize("background", [0, 32])
def test_constant_frames_match_numpy(background):
    norm = InputNorm(kind="robust", background=background)
    for frame in (np.full((16, 16), 7, np.uint8), np.zeros((16, 16), np.float32)):
        ref = normalize(frame, norm)
        out = normalize_torch(torch.from_numpy(frame)[None], norm, integer=frame.dtype == np.uint8)[0].numpy()
        assert np.abs(out - ref).max() <= TOL


def test_global_twin_for_8_bit_frames():
    norm = InputNorm(kind="global", mean=0.4, std=0.2)
    frame = _frames(np.uint8, (20, 30), n=1)[0]
    out = normalize_torch(torch.from_numpy(frame)[None], norm)[0].numpy()
    assert np.abs(out - normalize(frame, norm)).max() <= TOL
    with pytest.raises(ConfigError, match="8-bit"):
        normalize_torch(torch.zeros(1, 4, 4), norm)


@pytest.mark.gpu
@pytest.mark.parametrize("background", [0, 32])
def test_twin_on_cuda_matches_numpy(background):
    """On the GPU too (TF32 on: the background's matmul runs in float64 regardless)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    norm = InputNorm(kind="robust", background=background)
    frames = _frames(np.uint8, (256, 256), n=8)
    ref = np.stack([normalize(f, norm) for f in frames])
    out = normalize_torch(torch.from_numpy(np.stack(frames)).cuda(), norm).cpu().numpy()
    assert np.abs(out - ref).max() <= TOL


def test_noise_free_float_frames_over_many_blocks_match_numpy():
    """A constant float frame's background is the constant itself: the interpolation weights
    of a pixel sum to exactly 1 (float32 ``1 - t`` and ``t`` did not, and a noise-free
    frame's tiny sigma blew that up to 0.011)."""
    norm = InputNorm(kind="robust", background=7)
    frame = np.full((512, 640), 3.5, np.float32)
    ref = normalize(frame, norm)
    out = normalize_torch(torch.from_numpy(frame)[None], norm, integer=False)[0].numpy()
    assert np.abs(ref).max() == 0.0
    assert np.abs(out - ref).max() <= TOL


@pytest.mark.parametrize("scale", [1e-30, 1e-22, 1e20, 1e35])
def test_float_frames_in_extreme_units_match_numpy(scale):
    """The noise is squared in float64 in both twins: in float32 it overflowed (sigma inf)
    or vanished (sigma at the floor), and the frame normalised to 0."""
    norm = InputNorm(kind="robust", knee=4.0, background=0)
    frames = [f * np.float32(scale) for f in _frames(np.float32, (64, 80))]
    ref = np.stack([normalize(f, norm) for f in frames])
    out = normalize_torch(torch.from_numpy(np.stack(frames)), norm, integer=False).numpy()
    assert np.abs(ref).max() > 0.5  # the noise is there, not normalised to 0
    assert np.abs(out - ref).max() <= TOL


@pytest.mark.parametrize("background", [0, 32])
def test_denormal_noise_is_a_flat_frame_as_numpy_takes_it(background):
    """Pixel noise below float32's smallest normal number: numpy's rule takes the frame as
    noise-free (finite, about 0); the twin must not divide by it either."""
    rng = np.random.default_rng(5)
    frame = (rng.normal(0.0, 1.0, (32, 48)) * 1e-45).astype(np.float32)
    norm = InputNorm(kind="robust", background=background)
    ref = normalize(frame, norm)
    out = normalize_torch(torch.from_numpy(frame[None].copy()), norm, integer=False).numpy()[0]
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= TOL


@pytest.mark.parametrize("background", [0, 32])
def test_a_pixel_near_float32_s_limit_is_clipped_as_numpy_clips_it(background):
    """The twin clips a value that overflowed to inf (a FLT_MAX marker) as numpy does."""
    frame = np.random.default_rng(6).normal(300.0, 0.05, (32, 48)).astype(np.float32)
    frame[3, 5] = np.finfo(np.float32).max
    norm = InputNorm(kind="robust", background=background)
    ref = normalize(frame, norm)
    out = normalize_torch(torch.from_numpy(frame[None].copy()), norm, integer=False).numpy()[0]
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= TOL


def _plateau_frames(dtype, shape):
    """Noisy frames with plateaus: black columns, saturated rows, black rectification
    corners, and a target on a black frame (nearly all plateau: estimated as before)."""
    hi = 255 if dtype == np.uint8 else 16383 if dtype == np.uint16 else 400.0
    rng = np.random.default_rng(7)
    h, w = shape
    frames = [100 + 4 * rng.standard_normal(shape) for _ in range(4)]
    frames[0][:, : w // 2] = 0
    frames[1][: 2 * h // 3] = hi
    yy, xx = np.mgrid[:h, :w]
    frames[2][np.minimum(yy, h - 1 - yy) + np.minimum(xx, w - 1 - xx) < min(h, w) // 3] = 0
    frames[3][:] = 0
    frames[3][h // 2, w // 2] = hi
    if dtype != np.float32:
        return [np.rint(f).clip(0, hi).astype(dtype) for f in frames]
    return [f.astype(np.float32) for f in frames]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(256, 320), (37, 53), (3, 40), (40, 3), (2, 40)])
@pytest.mark.parametrize("background", [0, 32])
def test_twin_leaves_plateaus_out_of_the_noise_as_numpy_does(dtype, shape, background):
    """Plateaus at a frame's extremes are left out of both twins' noise estimate, frame by
    frame in one batch (each frame keeps its own number of differences)."""
    from irstd_ros.core.normalization import noise_sigma
    from irstd_ros.training.torch_norm import noise_sigma_torch

    norm = InputNorm(kind="robust", knee=4.0, background=background)
    frames = _plateau_frames(dtype, shape)
    batch = torch.from_numpy(np.stack(frames).astype(np.float32))
    integer = dtype != np.float32
    sigma = noise_sigma_torch(batch, integer).numpy()
    assert np.abs(sigma - [noise_sigma(f) for f in frames]).max() <= 1e-9 * sigma.max()
    ref = np.stack([normalize(f, norm) for f in frames])
    assert np.abs(normalize_torch(batch, norm, integer=integer).numpy() - ref).max() <= TOL


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_twin_on_cuda_leaves_plateaus_out_as_numpy_does(dtype):
    norm = InputNorm(kind="robust", background=32)
    frames = _plateau_frames(dtype, (256, 320))
    ref = np.stack([normalize(f, norm) for f in frames])
    batch = torch.from_numpy(np.stack(frames).astype(np.float32)).cuda()
    out = normalize_torch(batch, norm, integer=dtype != np.float32).cpu().numpy()
    assert np.abs(out - ref).max() <= TOL
