"""The one input rule: invariant to encoding, gain and offset; noise never stretched."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irstd_ros.core.normalization import (
    InputNorm,
    ScalingConfig,
    asinh_inplace,
    frame_stats,
    noise_sigma,
    normalize,
    to_grey,
    to_unit_range,
)
from irstd_ros.errors import ConfigError, ImageConversionError

ROBUST = InputNorm(kind="robust")
SHAPE = (128, 160)


def scene(kind: str, sigma: float = 8.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    base = np.full(SHAPE, 3000.0)
    if kind == "gradient":
        base += np.linspace(0, 1500, h)[:, None]
    elif kind == "edges":  # a hard horizon and a bright block: clutter the estimate must ignore
        base[h // 2 :] += 800.0
        base[10:30, 20:60] += 2000.0
    return base + sigma * rng.standard_normal(SHAPE)


@pytest.mark.parametrize("kind", ["flat", "gradient", "edges"])
def test_noise_sigma_is_the_pixel_noise_not_the_scene_contrast(kind):
    assert noise_sigma(scene(kind, 8.0)) == pytest.approx(8.0, rel=0.06)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32])
@pytest.mark.parametrize("spread", [0.0, 0.4, 3.0, 40.0, 9000.0])
def test_the_trimmed_rms_is_exact_whichever_path_computes_it(dtype, spread):
    """Small integer frames take a histogram of |d|, the others a partition; both give the
    RMS of exactly the 90 % smallest differences (ties included), as a full sort does."""
    from irstd_ros.core import normalization as n

    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    raw = np.random.default_rng(3).normal(0, spread, (16, 301)) + (info.max + max(info.min, -1e6)) / 2
    rows = raw.clip(info.min, min(info.max, 1e6)).astype(dtype)
    d = np.sort(np.abs(np.diff(rows.astype(np.float64), axis=1)).ravel())
    k = int(n.TRIM_QUANTILE * d.size)
    assert n._trimmed_rms(rows) == pytest.approx(np.sqrt(np.mean(d[:k] ** 2)), rel=1e-6, abs=1e-9)


def test_integer_frames_add_their_quantisation_noise():
    flat = np.full(SHAPE, 100, np.uint8)
    assert noise_sigma(flat) == pytest.approx(np.sqrt(1 / 12), rel=1e-6)
    assert np.isfinite(normalize(flat, ROBUST)).all()


@given(
    gain=st.floats(1e-3, 1e3), offset=st.floats(-1e4, 1e4), seed=st.integers(0, 2**16),
    kind=st.sampled_from(["flat", "gradient", "edges"]),
)
@settings(max_examples=30, deadline=None)
def test_float_frames_are_gain_and_offset_invariant(gain, offset, seed, kind):
    x = scene(kind, seed=seed)
    a = normalize(x.astype(np.float32), ROBUST)
    # offset in units of the scaled scene, so float32 can still resolve the noise
    b = normalize((x * gain + offset * gain).astype(np.float32), ROBUST)
    np.testing.assert_allclose(a, b, atol=2e-3)


@pytest.mark.parametrize("gain", [1e-30, 1e-22, 1e18, 1e30])
@pytest.mark.parametrize("background", [0, 32])
def test_float_frames_of_extreme_units_keep_their_noise(gain, background):
    """The noise of a float32 frame in tiny or huge units is measured, not overflowed to inf
    (or underflowed to the floor), which normalised the whole frame, targets too, to 0."""
    x = scene("edges")
    x[60:63, 70:73] += 200.0  # a 25-sigma target
    norm = InputNorm(kind="robust", background=background)
    scaled = (x * gain).astype(np.float32)
    assert noise_sigma(scaled) == pytest.approx(noise_sigma(x.astype(np.float32)) * gain, rel=1e-4)
    np.testing.assert_allclose(normalize(scaled, norm), normalize(x.astype(np.float32), norm), atol=1e-4)


@pytest.mark.parametrize(
    ("dtype", "offset"), [(np.int32, 1e8), (np.uint32, 3e9), (np.int64, 1e12), (np.float64, 1e12)]
)
@pytest.mark.parametrize("background", [0, 32])
def test_wide_frames_at_a_large_offset_keep_their_noise_and_targets(dtype, offset, background):
    """32/64-bit frames are not rounded to float32 before their offset is taken away: at
    3e9 counts float32 steps by 256, which erased the noise and a 12-sigma target."""
    x = np.random.default_rng(5).normal(0.0, 8.0, SHAPE).round()
    x[60:63, 70:73] += 100.0
    norm = InputNorm(kind="robust", background=background)
    wide = (x + offset).astype(dtype)
    narrow = x.astype(np.int32 if np.issubdtype(dtype, np.integer) else np.float32)  # exact
    assert noise_sigma(wide) == pytest.approx(noise_sigma(narrow), rel=1e-6)
    np.testing.assert_allclose(normalize(wide, norm), normalize(narrow, norm), atol=1e-3)


def test_mono16_mono8_agc_and_float_agree():
    counts = scene("gradient", sigma=8.0)
    counts[60:63, 80:83] += 150.0  # a target, ~19 sigma
    mono16 = np.rint(counts).astype(np.uint16)
    lo, hi = counts.min(), counts.max()
    mono8 = np.rint((counts - lo) / (hi - lo) * 255).astype(np.uint8)
    kelvin = (counts * 0.04 + 250).astype(np.float32)
    y16, y8, yf = (normalize(f, ROBUST) for f in (mono16, mono8, kelvin))
    # the same up to the rounding of the counts (0.5 count = 0.016 here)
    assert np.abs(y16 - yf).mean() < 0.01 and np.abs(y16 - yf).max() < 0.05
    # mono8 re-quantises a 1500-count range into 255 steps (~6 counts each): close, not equal
    assert np.abs(y8 - yf).mean() < 0.15
    # the offset is the median of a row sample: on this steep gradient (12 counts a row)
    # it is within a row's step of the frame's median, 0.2 after normalisation
    for y in (y16, y8, yf):
        assert y[61, 81] > 1.5 and np.median(y) == pytest.approx(0.0, abs=0.25)


def test_flat_noisy_frames_are_not_stretched_to_full_range():
    y = normalize(np.rint(scene("flat", sigma=8.0)).astype(np.uint16), ROBUST)
    # noise stays around +-1/knee; the old percentile stretch made it span [0, 1] fully
    assert 0.2 < y.std() < 0.3
    stretched = to_unit_range(np.rint(scene("flat", sigma=8.0)).astype(np.uint16))
    assert stretched.max() - stretched.min() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2)])
def test_tiny_frames_are_finite(shape):
    for dtype in (np.uint8, np.uint16, np.float32):
        y = normalize(np.arange(np.prod(shape)).reshape(shape).astype(dtype), ROBUST)
        assert y.shape == shape and np.isfinite(y).all()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_a_column_frame_has_the_noise_of_the_same_row(dtype):
    """An N x 1 frame (a line scan) is measured as its 1 x N transpose: noise from the
    neighbour differences along all of it and the median of all of it, not of every
    (N // 64)-th pixel, which on a ramp read the scene's slope as noise (2000 px, noise 5:
    sigma 41 before, 5.2 as a row) and moved the median by 3 sigma."""
    rng = np.random.default_rng(0)
    line = (np.linspace(0, 3000, 2000) + rng.normal(0, 5, 2000)).astype(dtype)[None, :]
    assert noise_sigma(line) == pytest.approx(5.0, rel=0.1)
    assert noise_sigma(line.T) == noise_sigma(line)
    for background in (0, 32):
        norm = InputNorm(kind="robust", background=background)
        np.testing.assert_allclose(normalize(line.T, norm), normalize(line, norm).T, atol=1e-5)


def test_constant_float_frame_is_all_zero_not_nan():
    y = normalize(np.full(SHAPE, 7.5, np.float32), ROBUST)
    assert np.isfinite(y).all() and (y == 0).all()


@pytest.mark.parametrize(("dtype", "noise"), [(np.float32, 1e-45), (np.float32, 1e-39), (np.float64, 1e-100)])
@pytest.mark.parametrize("background", [0, 32])
def test_noise_below_float32_s_smallest_normal_is_normalised_as_a_flat_frame(dtype, noise, background):
    """Denormal pixel noise (a 32FC1 frame of ~1e-45): its gain 1 / (knee * sigma)
    overflowed float32 to inf, 0 * inf gave a frame of NaN, answered as no target without a
    word. Such a frame is noise-free for float32: measured and normalised as a flat one."""
    frame = np.random.default_rng(0).normal(0.0, noise, SHAPE).astype(dtype)
    assert noise_sigma(frame) == noise_sigma(np.zeros(SHAPE, dtype))
    y = normalize(frame, InputNorm(kind="robust", background=background))
    assert np.isfinite(y).all() and np.abs(y).max() < 1e-6


@pytest.mark.parametrize("kind", ["robust", "global"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_float_frame_with_nan_or_inf_is_refused_not_turned_to_nan(kind, bad, dtype):
    frame = np.random.default_rng(0).normal(100, 4, SHAPE).astype(dtype)
    frame[5, 7] = frame[9, 1] = bad
    with pytest.raises(ImageConversionError, match="2 NaN or infinite values") as err:
        normalize(frame, InputNorm(kind=kind))
    assert err.value.kind == "non_finite"


@pytest.mark.parametrize("marker", [np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e38])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("background", [0, 32])
def test_a_pixel_near_float32_s_limit_stays_one_finite_pixel(marker, dtype, background):
    """A driver's invalid-pixel marker (FLT_MAX) in a 32FC1 frame: (x - b) * gain overflowed
    to inf, asinh kept it, and the network spread it into NaN over the whole frame (no
    target, no error). It is clipped: every value finite, the other pixels as without it."""
    frame = np.random.default_rng(3).normal(300.0, 0.05, SHAPE).astype(dtype)
    clean = normalize(frame, InputNorm(kind="robust", background=background))
    frame[4, 6] = marker
    y = normalize(frame, InputNorm(kind="robust", background=background))
    assert np.isfinite(y).all()
    assert np.sign(y[4, 6]) == np.sign(marker) and abs(y[4, 6]) > 80  # asinh(FLT_MAX) is 89.4
    others = np.ones(SHAPE, bool)
    others[4, 6] = False
    assert np.abs(y - clean)[others].max() < 0.05  # one pixel moves a median hardly at all


@pytest.mark.parametrize("kind", ["robust", "global"])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U8", "datetime64[s]"])
def test_a_frame_of_no_real_numbers_is_refused_not_cast(kind, dtype):
    # complex frames lost their imaginary part with a mere ComplexWarning
    frame = np.zeros(SHAPE, dtype=dtype)
    for step in (to_grey, lambda f: normalize(f, InputNorm(kind=kind))):
        with pytest.raises(ImageConversionError, match="real numbers") as err:
            step(frame)
        assert err.value.kind == "bad_dtype"


def _not_arrays() -> list:
    torch = pytest.importorskip("torch")
    return [([[1, 2], [3, 4]], "builtins.list"), (torch.ones(8, 8), "torch.Tensor"), (7.0, "builtins.float")]


def test_a_frame_that_is_not_a_numpy_array_is_refused_by_name():
    # a list gave "AttributeError: 'list' object has no attribute 'dtype'"
    for frame, named in _not_arrays():
        for step in (to_grey, lambda f: normalize(f, ROBUST)):
            with pytest.raises(ImageConversionError, match=f"frame of type {named}; a numpy array is expected") as err:
                step(frame)
            assert err.value.kind == "bad_type"


@pytest.mark.parametrize("shape", [(0, 80), (80, 0), (0, 0), (0, 80, 3)])
def test_an_empty_frame_is_refused_not_an_index_error(shape):
    frame = np.zeros(shape, np.uint16)
    for step in (to_grey, lambda f: normalize(f, ROBUST)):
        with pytest.raises(ImageConversionError, match="empty frame") as err:
            step(frame)
        assert err.value.kind == "empty_image"


@pytest.mark.parametrize("shape", [(64,), (8, 8, 2), (8, 8, 5), (1, 8, 8), (2, 8, 8, 1)])
def test_a_frame_of_no_image_shape_is_an_image_conversion_error(shape):
    frame = np.ones(shape, np.float32)
    with pytest.raises(ImageConversionError, match="single-channel frame") as err:
        to_grey(frame)
    assert err.value.kind == "bad_shape"
    with pytest.raises(ImageConversionError, match=r"takes \(H, W\)") as err:
        normalize(np.ones((8, 8, 3), np.float32), ROBUST)
    assert err.value.kind == "bad_shape"


@pytest.mark.parametrize(
    "dtype, level",
    [(np.uint32, 2**32 - 1), (np.int32, 2**31 - 1), (np.int32, -(2**31)), (np.int64, 2**40 + 3)],
)
def test_colour_frames_of_wide_integers_keep_their_values_as_grey(dtype, level):
    # luma in float32: a full-scale uint32 pixel came back 0, int32's as -2**31, and 2**40
    # counts in steps of 2**17
    rgb = np.full((4, 5, 3), level, dtype)
    rgb[0, 0] = level - 1 if level > 0 else level + 1
    grey = to_grey(rgb)
    assert grey.dtype == np.dtype(dtype)
    assert grey[0, 0] == rgb[0, 0, 0] and (grey.ravel()[1:] == level).all()


def test_colour_float64_frames_keep_float64():
    rgb = np.full((3, 3, 3), 1e8, np.float64)
    rgb[1, 1] += 0.25  # float32 steps by 8 at 1e8
    grey = to_grey(rgb)
    assert grey.dtype == np.float64 and grey[1, 1] - grey[0, 0] == pytest.approx(0.25)


def test_median_and_noise_are_measured_on_a_row_sample():
    x = scene("flat")
    med, sigma = frame_stats(x)
    assert med == pytest.approx(3000, abs=1.0) and sigma == pytest.approx(8.0, rel=0.06)


def test_global_kind_is_the_0_1_rule():
    frame = np.array([[0, 255]], np.uint8)
    y = normalize(frame, InputNorm(mean=0.5, std=0.25, kind="global"))
    np.testing.assert_allclose(y, [[-2.0, 2.0]])
    y16 = normalize(np.array([[100, 300]], np.uint16), InputNorm(kind="global"), ScalingConfig("fixed", 100, 300))
    np.testing.assert_allclose(y16, [[0.0, 1.0]])


def test_bad_norms_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="valid: robust, global"):
        InputNorm(kind="zscore")
    with pytest.raises(ConfigError, match="knee > 0"):
        InputNorm(kind="robust", knee=0.0)
    # as a checkpoint's config could hold them: refused on loading, not NaN inputs later
    for bad in ({"knee": float("nan")}, {"std": float("inf")}, {"mean": float("nan")},
                {"background": 32.0}, {"background": True}):
        with pytest.raises(ConfigError, match="finite numbers"):
            InputNorm(kind="robust", **bad)
    assert InputNorm(kind="robust", background=np.int64(32), knee=np.float32(4.0)).background == 32


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.uint8, np.float64, np.int32])
@pytest.mark.parametrize(
    ("shape", "block"),
    [((512, 640), 32), ((37, 1000), 32), ((16, 16), 32), ((5, 7), 32), ((1080, 1918), 32),
     ((100, 99), 33), ((70, 200), 7)],
)
def test_local_background_is_the_bilinear_interpolation_of_block_medians(shape, block, dtype):
    """Broadcast runs between block centres, along the columns and then the rows (no BLAS;
    even and odd blocks, frames that blocks do not tile), over medians of the sorted float
    samples, give ``np.median`` and the interpolation matrices' product, which the torch
    twin (irstd_ros/training/torch_norm.py) computes."""
    from irstd_ros.core import normalization as n

    frame = np.random.default_rng(1).normal(100, 5, shape).astype(dtype)
    if dtype == np.int32:  # beyond float32's exact integers: the medians take float64
        frame = frame * 1_000_003 + 2**28
    h, w = shape
    gh, gw = max(1, h // block), max(1, w // block)
    bh, bw = h // gh, w // gw
    s = n.BACKGROUND_SAMPLING if min(bh, bw) >= 2 * n.BACKGROUND_SAMPLING else 1
    cells = frame[: gh * bh, : gw * bw].reshape(gh, bh, gw, bw)[:, ::s, :, ::s]
    grid = np.median(cells.transpose(0, 2, 1, 3).reshape(gh, gw, -1), axis=-1).astype(np.float32)
    expected = n._interpolation(h, gh, bh) @ grid @ n._interpolation(w, gw, bw).T
    got = n.local_background(frame, block)
    assert got.dtype == np.float32 and got.shape == shape
    atol = 1e-4 * max(1.0, float(np.abs(expected).max()) / 100)
    np.testing.assert_array_equal(n.block_medians(frame, block), grid)
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    np.testing.assert_allclose(n.local_background(frame, block, scale=0.25), expected * 0.25, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(9, 1), (1, 9), (5, 7), (64, 64), (512, 640)])
def test_normalize_leaves_the_frame_untouched(shape, dtype):
    """The background's medians sort a copy of the samples, never the caller's frame
    (a single-block frame's samples are a view of it)."""
    frame = (np.random.default_rng(2).normal(100, 5, shape)).clip(0, 255).astype(dtype)
    before = frame.copy()
    normalize(frame, InputNorm(kind="robust", knee=4.0, background=32))
    assert np.array_equal(frame, before)


ASINH_TOL = 1e-6  # float32 asinh near 8 is 1 ulp = 9.5e-7


@pytest.mark.parametrize("log_form", [False, True])
def test_asinh_inplace_matches_float64_asinh_either_way(log_form):
    rng = np.random.default_rng(3)
    scales = rng.choice([1e-6, 1e-2, 1.0, 30.0, 1e4], size=(64, 80))
    z = (rng.standard_normal((64, 80)) * scales).astype(np.float32)
    ref = np.arcsinh(z.astype(np.float64))
    out = asinh_inplace(z.copy(), log_form=log_form)
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() <= ASINH_TOL
    assert np.array_equal(np.signbit(out), np.signbit(z))


@pytest.mark.parametrize("special", [1e30, np.inf, -np.inf, np.nan])
def test_asinh_inplace_log_form_never_overflows_where_arcsinh_does_not(special):
    z = np.array([[0.5, -2.0, special]], np.float32)
    with np.errstate(all="raise"):
        out = asinh_inplace(z.copy(), log_form=True)
    expected = np.arcsinh(z.astype(np.float64)).astype(np.float32)
    assert np.allclose(out, expected, rtol=1e-6, equal_nan=True)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


def test_asinh_inplace_writes_into_its_argument():
    z = np.array([[-0.0, 0.0, 1.0]], np.float32)
    out = asinh_inplace(z, log_form=True)
    assert out is z
    assert np.signbit(out[0, 0]) and not np.signbit(out[0, 1])


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({"AVX2": True, "FMA3": True, "AVX512_SKX": False}, True),  # Zen 3, Haswell...: SIMD log, libm arcsinh
        ({"AVX2": True, "FMA3": True, "AVX512_SKX": True}, False),  # SVML arcsinh
        ({"ASIMD": True, "NEON": True}, False),  # ARM: arcsinh stays
    ],
)
def test_asinh_log_form_is_chosen_only_where_it_pays(monkeypatch, features, expected):
    import importlib

    from irstd_ros.core import normalization

    umath = importlib.import_module("numpy._core._multiarray_umath")
    monkeypatch.setattr(umath, "__cpu_features__", features)
    assert normalization._log_form_pays() is expected


@pytest.mark.parametrize(("level", "sigma", "dtype"), [(300.0, 0.05, np.float32), (60000.0, 1.0, np.uint16)])
def test_local_background_is_subtracted_before_the_gain(level, sigma, dtype):
    """A frame far from 0 in units of its noise (300 K at 50 mK; mono16 at 60000 counts,
    1 count of noise) loses no precision: x * gain - b * gain rounded both terms at
    ~1500-15000 (3e-4 and 1.9e-3 off); (x - b) * gain is exact to 1e-6."""
    from irstd_ros.core import normalization as n

    frame = np.random.default_rng(1).normal(level, sigma, (128, 160)).astype(dtype)
    norm = InputNorm(kind="robust", background=32)
    b = n.local_background(frame, 32).astype(np.float64)
    truth = np.arcsinh((frame.astype(np.float64) - b) / (norm.knee * noise_sigma(frame)))
    assert np.abs(normalize(frame, norm) - truth).max() < 1e-5


def _noisy(dtype, shape=(512, 640), sigma=4.0, level=100.0, seed=0) -> np.ndarray:
    """``level`` + Gaussian noise of ``sigma``, rounded and clipped for integer dtypes."""
    f = level + sigma * np.random.default_rng(seed).standard_normal(shape)
    if np.issubdtype(dtype, np.integer):
        f = np.rint(f).clip(np.iinfo(dtype).min, np.iinfo(dtype).max)
    return f.astype(dtype)


def _unmasked_sigma(frame: np.ndarray) -> float:
    """noise_sigma as it was before plateaus were left out: over every sampled difference."""
    from irstd_ros.core import normalization as n

    rms = n._trimmed_rms(n._row_sample(frame))
    step = 1.0 if np.issubdtype(frame.dtype, np.integer) else 0.0
    var = n.QUANTISATION_VARIANCE * step * step + (rms / n.TRIM_RMS_FACTOR) ** 2 / 2.0
    return float(np.sqrt(var))


@pytest.mark.parametrize(
    ("dtype", "high"), [(np.uint8, 255), (np.uint16, 16383), (np.float32, 400.0)]
)
@pytest.mark.parametrize("share", [0.25, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("where", ["black columns", "saturated rows", "black corners"])
def test_a_constant_plateau_does_not_read_the_noise_low(dtype, high, share, where):
    """Saturation, a rectified image's black corners, a lens mask or letterboxing: their
    zero differences filled the 90 % smallest the estimate keeps (true 4 read 3.2 / 2.3 /
    1.3 at 25 / 50 / 70 % black columns), and faint targets were lost in the noise."""
    frame = _noisy(dtype)
    h, w = frame.shape
    if where == "black columns":
        frame[:, : int(share * w)] = 0
    elif where == "saturated rows":
        frame[: int(share * h)] = high
    else:  # four black triangles: what image_proc's rectification leaves
        yy, xx = np.mgrid[:h, :w]
        corner = np.minimum(yy / h, 1 - yy / h) + np.minimum(xx / w, 1 - xx / w)
        frame[corner < np.quantile(corner, share)] = 0
    truth = noise_sigma(_noisy(dtype))  # the same noise without the plateau: 4.0
    # within 6 %: at 90 % the plateau's edge is 1 of the 64 differences a row keeps
    assert noise_sigma(frame) == pytest.approx(truth, rel=0.06)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("sigma", [0.3, 0.5, 0.7, 1.0, 2.0])
def test_frames_without_plateaus_keep_their_noise_bit_for_bit(dtype, sigma):
    """Low-noise integer frames, whose differences are often 0 and whose 3 x 3 blocks are
    often exactly constant, between their darkest and brightest value: no plateau at an
    extreme, the estimate is that over every difference, bit for bit. A
    quantisation-limited scene (a smooth ramp, noise below one count, a hot and a cold
    spot at the extremes) too: its constant blocks are its noise, not a plateau."""
    from irstd_ros.core import normalization as n

    noisy = _noisy(dtype, sigma=sigma)
    ramp = np.linspace(60.0, 90.0, 640)[None, :] + _noisy(np.float32, sigma=sigma, level=0.0)
    ramp = np.rint(ramp).astype(dtype)
    ramp[100:103, 200:203], ramp[300:303, 400:403] = 20, 200
    for frame in (noisy, ramp):
        plateau = n._plateau_differences(frame)
        assert plateau is None or not plateau.any()
        assert noise_sigma(frame) == _unmasked_sigma(frame)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_target_on_a_constant_frame_keeps_the_constant_frame_s_noise(dtype):
    """A frame that is all plateau but a target (a synthetic test frame, a lens cap with a
    hot pixel) is the constant frame it nearly is: estimated over every difference as
    before, its target far above that noise; a constant frame normalises to exactly 0."""
    from irstd_ros.core.normalization import FLOAT_FLOOR

    flat = np.zeros((64, 64), dtype)
    frame = flat.copy()
    frame[30:33, 30:33] = 200
    if dtype == np.float32:  # noise-free: the floor, a millionth of the largest magnitude
        assert noise_sigma(frame) == pytest.approx(FLOAT_FLOOR * 200)
    else:  # a step's quantisation noise
        assert noise_sigma(frame) == _unmasked_sigma(frame) == noise_sigma(flat)
    assert normalize(frame, InputNorm(kind="robust", background=32))[31, 31] > 5.0
    assert (normalize(flat, InputNorm(kind="robust", background=32)) == 0).all()
