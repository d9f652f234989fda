"""Building blocks of the segmentation networks: conv units, residual blocks, SGEM.

The Semantic Gap Elimination Module (SGEM) follows Deng & Yang (ACSS 2025),
eq. (1)-(3). The paper leaves several details open; the choices made here are
marked ``CHOICE`` with their reason, and repeated in ``docs/model.md``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> ReLU, padding keeps the spatial size."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convs), 1x1 projection when widths differ."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch)
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch)
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.conv2(self.conv1(x)) + self.shortcut(x))
        return out


def res_stage(in_ch: int, out_ch: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` residual blocks, the first one changing the width."""
    if num_blocks < 1:
        raise ValueError(f"a stage needs at least one block, got {num_blocks}")
    blocks = [ResBlock(in_ch, out_ch)]
    blocks += [ResBlock(out_ch, out_ch) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref``."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class SGEM(nn.Module):
    """Semantic Gap Elimination Module.

    Inputs: ``enc`` = encoder level-3 features E3 (stride 4) and ``dec`` = the
    first decoder output D1 (stride 8). Output: a feature map of E3's shape
    that replaces the plain E3 -> decoder-level-2 skip.

    Paper: Q = Lin(Conv1x1(E3)), K = Lin(Conv1x1(D1)),
    M = Softmax(Conv1x1(Q (x) K)); per-channel convs restore a 3-D map; residual.

    CHOICE (Q (x) K): a *channel* affinity Q K^T of size (d x d) per head, as in
    transposed attention (Restormer's MDTA). A spatial affinity would cost
    O((HW)^2) memory: 4096 x 1024 entries at 256x256 but ~10^8 at 640x512, which
    a Jetson cannot hold. The channel form is linear in pixels and
    resolution-independent, so the node runs full frames.
    CHOICE (Lin): flatten to (B, heads, d, H*W) and L2-normalise along pixels, so
    logits are cosines in [-1, 1] times a learned temperature: bounded, which
    keeps the attention safe in FP16 (TensorRT) where raw dot products over
    10^5 pixels overflow.
    CHOICE (D1 resolution): D1 is bilinearly upsampled to E3's size before its
    1x1 conv, so Q and K share the pixel axis.
    CHOICE (Conv1x1 on the matrix): a 1x1 conv across heads, i.e. the (heads, d, d)
    stack is treated as a heads-channel image - the only reading in which a 1x1
    conv on an affinity matrix mixes anything.
    CHOICE (values, restoration, residual): the attention re-weights values
    V = Conv1x1(D1) (the deep, semantic features, so the module carries decoder
    semantics into the encoder's spatial detail); a depthwise 3x3 conv (the
    per-channel convs) and a 1x1 projection restore the feature map, and the
    residual adds E3 so the fine spatial detail of the skip is never lost.
    """

    def __init__(self, enc_ch: int, dec_ch: int, heads: int) -> None:
        super().__init__()
        if enc_ch % heads:
            raise ValueError(f"SGEM width {enc_ch} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Conv2d(enc_ch, enc_ch, 1, bias=False)
        self.k = nn.Conv2d(dec_ch, enc_ch, 1, bias=False)
        self.v = nn.Conv2d(dec_ch, enc_ch, 1, bias=False)
        self.temperature = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.mix = nn.Conv2d(heads, heads, 1)
        self.restore = nn.Sequential(
            nn.Conv2d(enc_ch, enc_ch, 3, padding=1, groups=enc_ch, bias=False),
            nn.Conv2d(enc_ch, enc_ch, 1, bias=False),
            nn.BatchNorm2d(enc_ch),
        )
        self.act = nn.ReLU(inplace=True)

    def _linearize(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, self.heads, c // self.heads, h * w)
        return F.normalize(x, dim=-1)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        b, c, h, w = enc.shape
        dec = upsample_to(dec, enc)
        q, k, v = self.q(enc), self.k(dec), self.v(dec)
        # Attention in FP32 whatever the surrounding precision: cheap (d x d) and the
        # softmax is where FP16 loses most. Autocast re-casts a matmul's operands to its
        # own dtype whatever ``.float()`` made them, so it is switched off here (only when
        # on: a graph traced without autocast, as the exports are, gains no context).
        device = enc.device.type
        fp32 = torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()
        with fp32:
            out = self._attend(q, k, v)
        result: torch.Tensor = self.act(enc + self.restore(out.to(enc.dtype).reshape(b, c, h, w)))
        return result

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """FP32 ``softmax(mix(cos(Q, K) * temperature)) @ V``, shape (B, heads, d, H*W)."""
        b, c, h, w = v.shape
        q, k = self._linearize(q.float()), self._linearize(k.float())
        logits = (q @ k.transpose(-2, -1)) * self.temperature.float()
        attn = torch.softmax(self._mix(logits), dim=-1)
        out: torch.Tensor = attn @ v.float().reshape(b, self.heads, c // self.heads, h * w)
        return out

    def _mix(self, logits: torch.Tensor) -> torch.Tensor:
        bias = self.mix.bias
        return F.conv2d(logits, self.mix.weight.float(), None if bias is None else bias.float())
