"""One rule from a raw IR frame to the network input, used everywhere.

Training, ``irstd eval``, the envelope, the node and every backend call
:func:`normalize` with the checkpoint's :class:`InputNorm`. Two kinds exist:

``robust`` (every model trained since 0.2; docs/model.md, "Input normalisation"):
    ``y = asinh((x - b) / (knee * sigma))``. ``b`` is the local background: the
    median of each ``background`` x ``background`` px block (robust to targets
    smaller than half a block), bilinearly interpolated between block centres; with
    ``background = 0`` it is the frame's median. ``sigma`` is the pixel noise,
    estimated from horizontal neighbour differences (a high-pass that cancels the
    scene's smooth structure) by a trimmed RMS of the 90 % smallest differences
    (edges and targets ignored), plus the quantisation noise of integer frames
    (step^2 / 12); differences inside plateaus (exactly constant 3 x 3 blocks at the
    frame's lowest or highest value: saturation, a rectified image's black corners, a
    lens mask, letterboxing) are left out, as their zeros would read the noise low.
    The result is in units of the noise over the local background: a
    target of peak SNR 6 is 6 / knee before compression wherever it is in the frame
    (over a dark sky above bright ground too) and whatever the encoding (mono8,
    mono16 of any bit depth, 32FC1), gain or offset; flat scenes are never stretched
    to full range; ``asinh`` is linear near 0 and logarithmic for strong structure,
    so a 500-sigma cloud edge does not dwarf a 6-sigma target.
``global`` (checkpoints of 0.1):
    the frame is scaled to [0, 1] (:func:`to_unit_range`, the node's
    ``input.scaling``), then ``(x - mean) / std`` with the training set's statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from irstd_ros.errors import ConfigError, ImageConversionError

NORM_KINDS = ("robust", "global")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, R G B
GREY_WEIGHTS = np.array(LUMA_WEIGHTS, dtype=np.float32)
# Noise estimate: neighbour differences of about STATS_ROWS evenly spaced rows.
STATS_ROWS = 64
TRIM_QUANTILE = 0.9  # keep the 90 % smallest |differences|
# RMS of a unit Gaussian restricted to |d| <= its two-sided 90 % quantile (1.6449):
# sqrt(1 - 2 q phi(q) / 0.9) = 0.7893; divides the trimmed RMS back to a sigma.
TRIM_RMS_FACTOR = 0.7893
# Plateaus (see noise_sigma) are left out of the noise estimate unless they hold more than
# this share of its differences: then the frame is taken as the constant one it nearly is
PLATEAU_SHARE_MAX = 0.95
QUANTISATION_VARIANCE = 1.0 / 12.0  # of a uniform rounding error, in steps^2
DEFAULT_KNEE = 4.0  # noise sigmas where asinh turns from linear to logarithmic
DEFAULT_BACKGROUND = 32  # px, block of the local median background of new models
BACKGROUND_SAMPLING = 2  # every 2nd row and column of a block enters its median
FLOAT_FLOOR = 1e-6  # relative noise floor of noise-free float frames
# float32's smallest normal number: a noise below it (denormal pixel noise, ~1e-45) is none
# float32 can compute with, and its gain 1 / (knee * sigma) overflowed to inf (0 * inf: a
# frame of NaN probabilities, answered as no target): such a frame is noise-free
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
# asinh's log form squares |z|: above this it would overflow float32 (max 3.4e38)
ASINH_LOG_FORM_MAX = 1e18


@dataclass(frozen=True)
class InputNorm:
    """How the network input is made from a raw frame; stored in every checkpoint.

    ``kind`` ``robust``: local (``background`` px blocks; 0: global) median and the
    frame's noise, then asinh with ``knee``.
    ``kind`` ``global``: [0, 1] scaling, then ``(x - mean) / std`` (0.1 checkpoints).
    """

    mean: float = 0.0
    std: float = 1.0
    kind: str = "global"
    knee: float = DEFAULT_KNEE
    background: int = 0

    def __post_init__(self) -> None:
        if self.kind not in NORM_KINDS:
            raise ConfigError(f"unknown input normalisation {self.kind!r}; valid: {', '.join(NORM_KINDS)}")
        finite = all(isinstance(v, Real) and math.isfinite(v) for v in (self.mean, self.std, self.knee))
        whole = isinstance(self.background, Integral) and not isinstance(self.background, bool)
        if not finite or not whole or self.std <= 0 or self.knee <= 0 or self.background < 0:
            raise ConfigError(
                "normalisation needs finite numbers with std > 0 and knee > 0, and a whole "
                f"background >= 0 (px); got mean {self.mean}, std {self.std}, knee {self.knee}, "
                f"background {self.background!r}"
            )


@dataclass(frozen=True)
class ScalingConfig:
    """How a raw frame becomes [0, 1] for ``global`` models (see :func:`to_unit_range`)."""

    mode: str = "auto"
    low: float = 0.0
    high: float = 65535.0
    percentile_low: float = 0.5
    percentile_high: float = 99.5


def check_frame(frame: np.ndarray) -> None:
    """:class:`ImageConversionError` unless ``frame`` is a numpy array (``bad_type``: a list
    or a torch tensor), holds real numbers (bool, integers, floats; ``bad_dtype``: complex
    values would lose their imaginary part) and at least one pixel (``empty_image``)."""
    if not isinstance(frame, np.ndarray):
        kind = type(frame)
        raise ImageConversionError(
            "bad_type", f"frame of type {kind.__module__}.{kind.__qualname__}; a numpy array is expected"
        )
    if frame.dtype.kind not in "biuf":
        raise ImageConversionError(
            "bad_dtype", f"frame of dtype {frame.dtype}; it must hold real numbers (bool, integer, float)"
        )
    if frame.size == 0:
        raise ImageConversionError("empty_image", f"empty frame of shape {frame.shape}")


def _float_range(dtype: np.dtype) -> tuple[float, float]:
    """The widest float interval whose every value casts into integer ``dtype`` (a maximum
    that a float cannot hold, 2**63 - 1 say, rounds up past the dtype: the float below it)."""
    info = np.iinfo(dtype)
    lo, hi = float(info.min), float(info.max)
    return lo, hi if hi == info.max else float(np.nextafter(hi, 0.0))


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W) stays; (H, W, 1) loses its axis; (H, W, 3|4) RGB(A) becomes luma in the
    input's units: integers keep their dtype (rounded, within its range), floats become
    float32, or float64 for a wide dtype (:func:`is_wide`). Any other shape, or a frame
    :func:`check_frame` refuses, is an :class:`ImageConversionError` (``bad_shape``,
    ``bad_type``, ``bad_dtype``, ``empty_image``).

    Channel order does not matter much for grey IR rendered as colour (R = G = B);
    the BT.601 weights assume RGB order. Alpha is ignored.
    """
    check_frame(frame)
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        # float64 for wide dtypes: float32 steps by 256 at 4e9 counts, and rounded a full
        # scale 32-bit pixel past its dtype's maximum (uint32 4294967295 came back as 0)
        work = np.float64 if is_wide(frame.dtype) else np.float32
        rgb = frame[..., :3].astype(work)
        w = np.array(LUMA_WEIGHTS, dtype=work)  # not float32 ones widened: their sum is 1 + 7e-9
        # a weighted sum, not ``@``: no OpenBLAS threads left spinning (see local_background)
        luma: np.ndarray = rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]
        if np.issubdtype(frame.dtype, np.integer):
            rounded: np.ndarray = np.clip(np.rint(luma), *_float_range(frame.dtype))
            return rounded.astype(frame.dtype)
        return luma
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    raise ImageConversionError(
        "bad_shape", f"cannot make a single-channel frame of shape {frame.shape}; expected (H, W), (H, W, 1|3|4)"
    )


def is_wide(dtype: np.dtype) -> bool:
    """Whether float32 cannot hold every value of ``dtype`` (32- and 64-bit integers, float64)."""
    return dtype.itemsize > 2 and dtype != np.float32


def centred_wide(raw: np.ndarray) -> np.ndarray:
    """A frame of a wide dtype (:func:`is_wide`: 32-bit counts, float64) about its median, as
    int64 or float64, ready for float32: there 1e8 counts go in steps of 8 and 4e9 in steps
    of 512 (noise and targets rounded away). Every encoding and :func:`normalize` ignore the
    offset. Other frames are returned as they are."""
    if not is_wide(raw.dtype):
        return raw
    if np.issubdtype(raw.dtype, np.integer):
        return raw.astype(np.int64) - int(np.median(raw))
    centred: np.ndarray = raw.astype(np.float64) - float(np.median(raw))
    return centred


def _quantisation_step(dtype: np.dtype) -> float:
    return 1.0 if np.issubdtype(dtype, np.integer) else 0.0


def _trimmed_rms(rows: np.ndarray, keep: np.ndarray | None = None) -> float:
    """RMS of the ``TRIM_QUANTILE`` smallest |horizontal neighbour differences| of ``rows``:
    exactly the k smallest, so ties cannot bias it. ``keep``: a mask of the differences
    ((R, W - 1), :func:`_plateau_differences` negated) that count; None: all.

    Frames of at most 16-bit integers take a histogram of |d| (at most 65,536 bins): one
    counting pass instead of a partition, which on the many ties of such frames is slow
    (640x512 mono8: 1.75 ms against 0.10 ms; mono16: 0.35 against 0.08).
    """
    if np.issubdtype(rows.dtype, np.integer) and rows.dtype.itemsize <= 2:
        d = np.abs(np.diff(rows.astype(np.int32), axis=1))
        d = d.ravel() if keep is None else d[keep]
        k = max(int(TRIM_QUANTILE * d.size), 1)
        counts = np.bincount(d)
        cumulative = np.cumsum(counts)
        v = int(np.searchsorted(cumulative, k))  # the k-th smallest |d|
        below = int(cumulative[v - 1]) if v > 0 else 0
        values = np.arange(v, dtype=np.float64)
        # a product and sum, not ``@`` (no BLAS threads; see local_background)
        total = float((counts[:v] * (values * values)).sum()) + (k - below) * float(v) * v
        return float(np.sqrt(total / k))
    # the k smallest |d| (float64 ones for wide dtypes: float32 steps by 256 at 3e9 counts),
    # squared and summed in float64: float32 squares overflow above ~1e18 units of noise and
    # vanish below ~1e-19 (sigma inf or floored: the whole frame normalised to 0)
    d = np.abs(np.diff(rows.astype(np.float64 if is_wide(rows.dtype) else np.float32), axis=1))
    d = d.ravel() if keep is None else d[keep]
    k = max(int(TRIM_QUANTILE * d.size), 1)
    small = np.partition(d, k - 1)[:k].astype(np.float64)
    return float(np.sqrt(np.mean(small * small)))


def row_indices(h: int) -> slice:
    """The rows of an ``h`` px high frame that the median and the noise are estimated on:
    about :data:`STATS_ROWS` evenly spaced ones, as a slice (numpy and torch index a view
    with it)."""
    return slice(0, h, max(1, h // STATS_ROWS))


def _row_sample(frame: np.ndarray) -> np.ndarray:
    """The :func:`row_indices` rows of a single-channel frame; a single column (an N x 1
    line scan) is taken whole, as the row it is transposed."""
    h, w = frame.shape
    if w < 2 <= h:
        return frame.T
    return frame[row_indices(h)]


def _row_neighbours(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows above and below each of :func:`_row_sample`'s (the sampled row itself at
    the frame's top and bottom edge) of a frame of at least 3 x 3 px."""
    h = frame.shape[0]
    rows = np.arange(h)[row_indices(h)]
    return frame[np.maximum(rows - 1, 0)], frame[np.minimum(rows + 1, h - 1)]


def _plateau_differences(frame: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray | None:
    """(R, W - 1) bool over the horizontal differences of :func:`_row_sample`'s rows
    (``rows``: those, when the caller has them): True where the difference's left pixel has
    an exactly constant 3 x 3 neighbourhood (clipped at the frame's edges) at the sampled
    rows' lowest or highest value: a plateau (saturation, a black border or mask), whose
    zero differences are no noise. None where there is none, and for frames under 3 px
    high or wide (a line has no 3 x 3 block).

    Only the extremes: a quantisation-limited mono8 scene (noise below one count) is
    exactly constant over many 3 x 3 blocks at values in between, and those zeros are its
    noise (SIRST-v2 has such frames). 640x512: 20 us where no three pixels in a sampled row
    are at an extreme, 40 us otherwise.
    """
    if min(frame.shape) < 3:  # no 3 x 3 block: in a line, three equal neighbours are common
        return None
    rows = _row_sample(frame) if rows is None else rows
    level = (rows == rows.min()) | (rows == rows.max())
    if not (level[:, :-2] & level[:, 1:-1] & level[:, 2:]).any():  # no three in a row
        return None
    above, below = _row_neighbours(frame)
    column = level & (above == rows) & (below == rows)  # a constant 3 x 1 at an extreme
    pair = column[:, :-1] & column[:, 1:] & (rows[:, 1:] == rows[:, :-1])  # 3 x 2
    block: np.ndarray = pair.copy()
    block[:, 1:] &= pair[:, :-1]  # 3 x 3 (pixels j - 1 .. j + 1); 3 x 2 at the left edge
    return block


def noise_sigma(frame: np.ndarray) -> float:
    """Pixel noise of a single-channel frame, in its own units (see the module doc).

    Plateaus (:func:`_plateau_differences`) are left out, unless they hold more than
    :data:`PLATEAU_SHARE_MAX` of the differences: such a frame is the constant one it
    nearly is (a target drawn on a flat frame), estimated over all of them, as is an
    exactly constant frame (normalised to exactly 0). A noise-free frame's, or one below
    :data:`FLOAT32_TINY`, is :data:`FLOAT_FLOOR` times its largest magnitude (at least 1),
    so it normalises to about 0."""
    rows = _row_sample(frame)
    step = _quantisation_step(frame.dtype)
    var = QUANTISATION_VARIANCE * step * step
    if rows.shape[1] >= 2:
        plateau = _plateau_differences(frame, rows)
        keep = None
        if (
            plateau is not None
            and 0 < np.count_nonzero(plateau) <= PLATEAU_SHARE_MAX * plateau.size
        ):
            keep = ~plateau
        rms = _trimmed_rms(rows, keep)
        var += (rms / TRIM_RMS_FACTOR) ** 2 / 2.0  # a difference has twice the variance
    sigma = float(np.sqrt(var))
    if sigma < FLOAT32_TINY:  # a noise-free float frame (or noise float32 cannot resolve)
        sigma = FLOAT_FLOOR * max(float(np.abs(frame).max(initial=0.0)), 1.0)
    return sigma


def frame_stats(frame: np.ndarray) -> tuple[float, float]:
    """(median, noise sigma) of a single-channel frame, in its own units."""
    return float(np.median(_row_sample(frame))), noise_sigma(frame)


def _interpolation_taps(n: int, blocks: int, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation between block centres, flat at the ends: for each of ``n``
    positions the lower and upper block index and the upper one's weight (float32)."""
    if blocks == 1:
        zero = np.zeros(n, np.intp)
        return zero, zero, np.zeros(n, np.float32)
    centres = (np.arange(blocks) + 0.5) * block - 0.5
    pos = np.arange(n, dtype=np.float64)
    idx = np.clip(np.searchsorted(centres, pos) - 1, 0, blocks - 2)
    t = np.clip((pos - centres[idx]) / block, 0.0, 1.0)
    return idx, idx + 1, t.astype(np.float32)


def _interpolation(n: int, blocks: int, block: int) -> np.ndarray:
    """The (n, blocks) float64 matrix of :func:`_interpolation_taps` (the torch twin's form).

    float64: each row's ``1 - t`` and ``t`` then sum to exactly 1, so a flat background
    stays exactly flat (in float32 they need not, and a noise-free frame's tiny sigma
    turned that last bit into 0.01 of output).
    """
    lo, hi, t = _interpolation_taps(n, blocks, block)
    m = np.zeros((n, blocks), np.float64)
    rows = np.arange(n)
    m[rows, lo] = 1.0 - t.astype(np.float64)
    m[rows, hi] += t
    return m


def _expand_rows(grid: np.ndarray, n: int, block: int) -> np.ndarray:
    """(n, M) float32: each column of the (blocks, M) ``grid`` interpolated along axis 0
    as :func:`_interpolation_taps` says, without a (n, blocks) product.

    Between two block centres the rows form a run of ``block`` whose weights are the
    same for every pair of centres (the centres are ``block`` apart): the runs are one
    (blocks - 1, block, M) view, filled by one broadcast multiply-add whose inner loops
    run along whole rows; above the first centre and below the last the value is flat.
    """
    blocks, m = grid.shape
    out = np.empty((n, m), np.float32)
    if blocks == 1:
        out[:] = grid
        return out
    _, _, t = _interpolation_taps(n, blocks, block)
    first = int(np.floor((block - 1) / 2.0)) + 1  # the first row below centre 0
    end = first + (blocks - 1) * block
    runs = out[first:end].reshape(blocks - 1, block, m)
    np.multiply((grid[1:] - grid[:-1])[:, None, :], t[first : first + block, None], out=runs)
    runs += grid[:-1, None, :]
    out[:first] = grid[:1]
    out[end:] = grid[-1:]
    return out


def block_medians(frame: np.ndarray, block: int) -> np.ndarray:
    """(gh, gw) float32 medians of ``block``-px blocks, sampled every 2nd px (any dtype).

    The samples are gathered as floats (float32, exact for integers of up to 16 bits;
    float64 for wider ones) and sorted along each block: NumPy's vectorised sort of a
    float row is about 15x faster than a partition of it (640x512 mono16: 0.03 against
    0.58 ms), and faster than sorting 8-bit rows, which it does not vectorise.
    """
    h, w = frame.shape
    gh, gw = max(1, h // block), max(1, w // block)
    bh, bw = h // gh, w // gw
    s = BACKGROUND_SAMPLING if min(bh, bw) >= 2 * BACKGROUND_SAMPLING else 1
    blocks = frame[: gh * bh, : gw * bw].reshape(gh, bh, gw, bw)[:, ::s, :, ::s]
    wide = is_wide(frame.dtype)
    gathered = np.empty((gh, gw, blocks.shape[1], blocks.shape[3]), np.float64 if wide else np.float32)
    np.copyto(gathered, blocks.transpose(0, 2, 1, 3), casting="unsafe")
    samples: np.ndarray = gathered.reshape(gh, gw, -1)
    samples.sort(axis=-1)
    n = samples.shape[-1]
    mid = n // 2
    if n % 2:
        return samples[..., mid].astype(np.float32)
    lower = samples[..., mid - 1].astype(np.float64)
    median: np.ndarray = ((lower + samples[..., mid]) / 2.0).astype(np.float32)
    return median


def local_background(frame: np.ndarray, block: int, scale: float = 1.0) -> np.ndarray:
    """Median of ``block``-px blocks (sampled every 2nd px), interpolated to (H, W) float32,
    times ``scale``.

    Separable: the small grid is interpolated along the columns first, to (gh, W), then
    along the rows by one broadcast multiply-add per run between block centres
    (:func:`_expand_rows`), whose inner loops span whole rows (0.28 → 0.15 ms at 640x512
    against runs along the columns, 32 px each). Neither is a BLAS product: NumPy's ``@``
    runs on OpenBLAS, whose worker threads keep spinning after the call and took the
    cores from the inference that follows (0.4 INT8 at 640x512: 50 ms alone, 105 ms right
    after a ``@``-based normalisation; docs/benchmarks.md).
    """
    h, w = frame.shape
    grid = block_medians(frame, block)
    bh, bw = h // grid.shape[0], w // grid.shape[1]
    if scale != 1.0:
        grid *= np.float32(scale)
    cols = np.ascontiguousarray(_expand_rows(np.ascontiguousarray(grid.T), w, bw).T)  # (gh, W)
    return _expand_rows(cols, h, bh)


def to_unit_range(
    frame: np.ndarray,
    mode: str = "auto",
    low: float = 0.0,
    high: float = 1.0,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Scale a raw single-channel frame to float32 [0, 1] (``global`` models only).

    Rules (the ``input.scaling`` parameter):
    * ``auto``: uint8 / 255; floats clipped to [0, 1]; integer frames of more
      than 8 bits use ``percentile``.
    * ``fixed``: (x - low) / (high - low), clipped: a known sensor range.
    * ``percentile``: per-frame stretch between the given percentiles.
    * ``minmax``: per-frame stretch between min and max.
    """
    f = frame.astype(np.float32, copy=False)
    if mode == "auto":
        if frame.dtype == np.uint8:
            return f / 255.0
        if np.issubdtype(frame.dtype, np.floating):
            return np.clip(f, 0.0, 1.0)
        mode = "percentile"
    if mode == "fixed":
        if high <= low:
            raise ConfigError(f"fixed scaling needs high > low, got [{low}, {high}]")
        lo, hi = low, high
    elif mode == "percentile":
        lo, hi = np.percentile(f, percentiles)
    elif mode == "minmax":
        lo, hi = float(f.min()), float(f.max())
    else:
        raise ConfigError(f"unknown scaling {mode!r}; valid: auto, fixed, percentile, minmax")
    if hi <= lo:
        return np.zeros_like(f)
    scaled: np.ndarray = np.clip((f - lo) / (hi - lo), 0.0, 1.0)
    return scaled


def _log_form_pays() -> bool:
    """True where :func:`asinh_inplace` should take its log form: x86 CPUs with AVX2 and
    FMA3 but without AVX512_SKX. There NumPy's float32 ``log`` is SIMD while its
    ``arcsinh`` calls libm once per element (Zen 3, 640x512: 7-9 ms against 2.0 ms for
    the log form; docs/benchmarks.md). With AVX512_SKX NumPy's ``arcsinh`` is SIMD (SVML),
    one pass; on other CPUs (ARM) its ``log`` is not known to be SIMD, so ``arcsinh`` stays."""
    import importlib

    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # NumPy 2, 1
        try:  # NumPy's own CPU-dispatch table (what ``numpy.show_runtime`` prints)
            features = dict(importlib.import_module(module).__cpu_features__)
            break
        except (ImportError, AttributeError):
            continue
    has = {name: bool(features.get(name, False)) for name in ("AVX2", "FMA3", "AVX512_SKX")}
    return has["AVX2"] and has["FMA3"] and not has["AVX512_SKX"]


ASINH_LOG_FORM = _log_form_pays()


def asinh_inplace(z: np.ndarray, log_form: bool | None = None) -> np.ndarray:
    """``z = asinh(z)`` in place (float32), the faster exact way on this CPU.

    With ``log_form`` (default :data:`ASINH_LOG_FORM`) ``copysign(log(|z| + sqrt(z^2 +
    1)), z)``, five vectorised passes, within 7·10⁻⁷ of float64 asinh as NumPy's
    ``arcsinh`` is; a frame with a value beyond :data:`ASINH_LOG_FORM_MAX` (or a NaN)
    takes ``arcsinh``, whose square cannot overflow. Otherwise NumPy's ``arcsinh``.
    """
    a = np.abs(z) if (ASINH_LOG_FORM if log_form is None else log_form) else None
    if a is None or not a.max(initial=0.0) <= ASINH_LOG_FORM_MAX:  # also true for a NaN
        np.arcsinh(z, out=z)
        return z
    s = np.multiply(a, a)
    s += np.float32(1.0)
    np.sqrt(s, out=s)
    s += a
    np.log(s, out=s)
    np.copysign(s, z, out=z)
    return z


def normalize(
    frame: np.ndarray, norm: InputNorm, scaling: ScalingConfig | None = None
) -> np.ndarray:
    """Raw single-channel frame (any real dtype, any units) -> float32 network input.

    A frame of a wide dtype (:func:`is_wide`) is first taken about its median in float64
    (the rule is offset-invariant): in float32 a large offset rounds its noise away.
    A float frame holding NaN or infinity is refused (:class:`ImageConversionError`,
    ``non_finite``): its median and noise, and so every probability, would be NaN; so is a
    frame that is not (H, W) (``bad_shape``: :func:`to_grey` makes one) or that
    :func:`check_frame` refuses.
    """
    check_frame(frame)
    if frame.ndim != 2:
        raise ImageConversionError("bad_shape", f"frame of shape {frame.shape}; normalize takes (H, W)")
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        bad = frame.size - int(np.count_nonzero(np.isfinite(frame)))
        raise ImageConversionError(
            "non_finite", f"frame holds {bad} NaN or infinite values of {frame.size}; it must be finite"
        )
    if norm.kind == "robust":
        # the noise of the frame as given (integers keep their quantisation step)
        gain = np.float32(1.0 / (norm.knee * noise_sigma(frame)))
        wide = is_wide(frame.dtype)
        # a value near float32's limit (a driver's invalid-pixel marker, FLT_MAX) may
        # overflow to inf below: clipped back, as asinh would keep it and the network
        # spread it into NaN over the whole frame
        with np.errstate(over="ignore"):
            if wide:
                frame = (frame - np.median(_row_sample(frame))).astype(np.float32)
            if norm.background:
                # four passes over the frame: the background, x - it, times the gain, asinh;
                # subtracted before scaling, so a large offset (300 K at 50 mK noise) costs
                # no precision (x * gain - b * gain lost 3e-4 there)
                z = local_background(frame, norm.background)
                np.subtract(frame, z, out=z, dtype=np.float32)
            else:
                z = frame if wide else frame.astype(np.float32)  # a wide one is a copy already
                z -= np.float32(np.median(_row_sample(frame)))
            z *= gain
        if frame.dtype.kind == "f":  # integers cannot reach float32's limit
            np.clip(z, -FLOAT32_MAX, FLOAT32_MAX, out=z)
        return asinh_inplace(z)
    s = scaling or ScalingConfig()
    unit = to_unit_range(frame, s.mode, s.low, s.high, (s.percentile_low, s.percentile_high))
    return ((unit - np.float32(norm.mean)) / np.float32(norm.std)).astype(np.float32, copy=False)
