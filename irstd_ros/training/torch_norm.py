"""The network-input rule of :mod:`irstd_ros.core.normalization`, in torch, batched, on any device.

:func:`normalize_torch` computes for a batch of equally sized frames what
:func:`irstd_ros.core.normalization.normalize` computes for one frame in numpy, so that GPU
training and GPU evaluation see exactly the input the detector gives the network at run
time (tested to 1e-4 against the numpy rule). ``robust``: the local background (median of
``background`` px blocks, sampled every 2nd pixel, bilinearly interpolated between block
centres; ``background = 0``: the median of about 64 evenly spaced rows), the noise from
those rows' horizontal neighbour differences (RMS of the 90 % smallest, plateaus at the
frame's extremes left out, plus the quantisation noise of integer frames), then
``asinh((x - b) / (knee * sigma))``.
``global``: 8-bit frames / 255 (the ``auto`` scaling of uint8), then ``(x - mean) / std``.

The constants and the interpolation weights come from the numpy module itself, so a change
there is a change here; the tests compare the two.
"""

from __future__ import annotations

import torch

from irstd_ros.core import normalization as core
from irstd_ros.core.normalization import InputNorm
from irstd_ros.errors import ConfigError

UINT8_MAX = 255.0


def _median_last(x: torch.Tensor) -> torch.Tensor:
    """Median over the last dim as numpy's: the mean of the two middle values for even N."""
    s = x.sort(dim=-1).values
    n = s.shape[-1]
    return (s[..., (n - 1) // 2] + s[..., n // 2]) / 2.0


def _row_sample(frames: torch.Tensor) -> torch.Tensor:
    """numpy's ``_row_sample`` per frame: about STATS_ROWS evenly spaced rows; a single
    column whole, as the row it is transposed."""
    h, w = frames.shape[1:]
    if w < 2 <= h:
        return frames.transpose(1, 2)
    return frames[:, core.row_indices(h)]


def _plateau_differences(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """numpy's ``_plateau_differences`` per frame, (B, R, W - 1) bool: differences whose
    left pixel has an exactly constant 3 x 3 neighbourhood at the sampled rows' lowest or
    highest value; none in frames under 3 px high or wide."""
    b, h, w = frames.shape
    if min(h, w) < 3:
        return torch.zeros_like(rows[..., 1:], dtype=torch.bool)
    idx = torch.arange(h, device=frames.device)[core.row_indices(h)]
    above = frames[:, (idx - 1).clamp(min=0)]
    below = frames[:, (idx + 1).clamp(max=h - 1)]
    flat = rows.reshape(b, -1)
    lo, hi = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
    column = ((rows == lo) | (rows == hi)) & (above == rows) & (below == rows)
    pair = column[..., :-1] & column[..., 1:] & (rows[..., 1:] == rows[..., :-1])
    block = pair.clone()
    block[..., 1:] &= pair[..., :-1]
    return block


def noise_sigma_torch(frames: torch.Tensor, integer: bool) -> torch.Tensor:
    """Pixel noise per frame of (B, H, W) float32 frames, as a float64 (B,) tensor.

    ``integer``: the frames hold integer values (uint8/uint16 files): one step's
    quantisation noise is added, as numpy does for integer dtypes. Plateaus are left out
    as numpy leaves them out (unless they hold more than ``PLATEAU_SHARE_MAX`` of a frame's
    differences).
    """
    b = frames.shape[0]
    rows = _row_sample(frames)
    q = core.QUANTISATION_VARIANCE if integer else 0.0
    var = torch.full((b,), q, dtype=torch.float64, device=frames.device)
    if rows.shape[2] >= 2:
        # the k smallest |d| of each frame's kept ones, squared and averaged in float64 as
        # numpy does (float32 squares overflow or vanish for frames in extreme units)
        plateau = _plateau_differences(frames, rows).reshape(b, -1)
        share = plateau.sum(dim=1).double() / plateau.shape[1]
        plateau &= (share <= core.PLATEAU_SHARE_MAX)[:, None]  # a nearly constant frame: all
        d = torch.diff(rows.float(), dim=2).reshape(b, -1).abs()
        d = d.masked_fill(plateau, float("inf"))  # sorted last, never among the k smallest
        kept = (~plateau).sum(dim=1).double()
        k = (core.TRIM_QUANTILE * kept).floor().clamp(min=1.0)  # exactly the k smallest
        small = d.sort(dim=1).values.double()
        taken = torch.arange(small.shape[1], device=frames.device)[None, :] < k[:, None]
        small = torch.where(taken, small, torch.zeros_like(small))
        rms = ((small * small).sum(dim=1) / k).sqrt()
        var = var + (rms / core.TRIM_RMS_FACTOR) ** 2 / 2.0
    sigma = var.sqrt()
    peak = frames.reshape(b, -1).abs().amax(dim=1).double().clamp(min=1.0)
    return torch.where(sigma >= core.FLOAT32_TINY, sigma, core.FLOAT_FLOOR * peak)


def local_background_torch(frames: torch.Tensor, block: int) -> torch.Tensor:
    """(B, H, W) float32 -> the local median background (B, H, W) float32 (numpy's rule)."""
    b, h, w = frames.shape
    gh, gw = max(1, h // block), max(1, w // block)
    bh, bw = h // gh, w // gw
    s = core.BACKGROUND_SAMPLING if min(bh, bw) >= 2 * core.BACKGROUND_SAMPLING else 1
    blocks = frames[:, : gh * bh, : gw * bw].reshape(b, gh, bh, gw, bw)[:, :, ::s, :, ::s]
    grid = _median_last(blocks.permute(0, 1, 3, 2, 4).reshape(b, gh, gw, -1))
    ih = torch.from_numpy(core._interpolation(h, gh, bh)).to(frames.device, torch.float64)
    iw = torch.from_numpy(core._interpolation(w, gw, bw)).to(frames.device, torch.float64)
    # float64: no TF32 on the GPU, whatever the process's matmul settings
    return (ih @ grid.double() @ iw.T).float()


def normalize_torch(frames: torch.Tensor, norm: InputNorm, integer: bool = True) -> torch.Tensor:
    """(B, H, W) raw frames (any real dtype; their own units) -> (B, H, W) float32 input."""
    x = frames.float()
    if norm.kind == "robust":
        sigma = noise_sigma_torch(x, integer)
        if norm.background:
            z = x - local_background_torch(x, norm.background)
        else:
            b = x.shape[0]
            median = _median_last(_row_sample(x).reshape(b, -1).double())
            z = x - median.float()[:, None, None]
        scale = (1.0 / (norm.knee * sigma)).float()[:, None, None]
        # inf from a value near float32's limit clipped, as the numpy rule does
        return torch.asinh((z * scale).clamp_(-float(core.FLOAT32_MAX), float(core.FLOAT32_MAX)))
    if frames.dtype != torch.uint8:
        raise ConfigError("normalize_torch: global normalisation needs 8-bit frames (auto scaling / 255)")
    return (x / UINT8_MAX - norm.mean) / norm.std
