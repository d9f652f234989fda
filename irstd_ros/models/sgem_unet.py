"""SGEM-UNet (Deng & Yang, ACSS 2025): a residual U-Net whose E3 -> D2 skip
goes through the Semantic Gap Elimination Module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from irstd_ros.models.blocks import SGEM, res_stage, upsample_to
from irstd_ros.models.config import ModelConfig
from irstd_ros.models.heads import SegmentationHead


class SGEMUNet(nn.Module):
    """Encoder E1..E5 (strides 1..16), decoder D1..D4 (strides 8..1).

    D1 = dec(E5 up, E4); D2 = dec(D1 up, SGEM(E3, D1)); D3 = dec(D2 up, E2);
    D4 = dec(D3 up, E1); logits = head(D4). Input H and W must be multiples
    of ``config.stride``; :func:`irstd_ros.inference.preprocess.pad_to_stride`
    does that for arbitrary frames.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w, eb, db = config.widths, config.enc_blocks, config.dec_blocks
        ins = (config.in_channels, *w[:-1])
        self.encoder = nn.ModuleList(res_stage(i, o, n) for i, o, n in zip(ins, w, eb))
        # Decoder level k joins the upsampled deeper map with the skip of width w[3-k].
        self.decoder = nn.ModuleList(
            res_stage(w[4 - k] + w[3 - k], w[3 - k], db[k]) for k in range(4)
        )
        self.sgem = SGEM(enc_ch=w[2], dec_ch=w[3], heads=config.sgem_heads)
        self.head = SegmentationHead(w[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        e1, e2, e3, e4, e5 = feats
        d1 = self.decoder[0](torch.cat([upsample_to(e5, e4), e4], dim=1))
        d2 = self.decoder[1](torch.cat([upsample_to(d1, e3), self.sgem(e3, d1)], dim=1))
        d3 = self.decoder[2](torch.cat([upsample_to(d2, e2), e2], dim=1))
        d4 = self.decoder[3](torch.cat([upsample_to(d3, e1), e1], dim=1))
        logits: torch.Tensor = self.head(d4)
        return logits
