"""SGEM-UNet (Deng & Yang, ACSS 2025): a residual U-Net whose E3 -> D2 skip
goes through the Semantic Gap Elimination Module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from irstd_ros.models.blocks import SGEM, res_stage, upsample_to
from irstd_ros.models.config import ModelConfig
from irstd_ros.models.heads import LogitKnee, LogitRefinement, SegmentationHead


class SGEMUNet(nn.Module):
    """Encoder E1..E5 (strides 1..16), decoder D1..D4 (strides 8..1).

    D1 = dec(E5 up, E4); D2 = dec(D1 up, SGEM(E3, D1)); D3 = dec(D2 up, E2);
    D4 = dec(D3 up, E1); logits = head(D4) (then, with ``config.refine``, corrected at
    full resolution from the input and the logits), where dec(up, skip) joins the two by
    ``config.fusion`` (concatenation, or a 1x1 projection before the upsampling and
    a sum) and applies the level's residual blocks. Input H and W must be multiples
    of ``config.stride``; :func:`irstd_ros.inference.preprocess.pad_to_stride`
    does that for arbitrary frames.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w, eb, db = config.widths, config.enc_blocks, config.dec_blocks
        self.stem = config.stem
        ins = (config.in_channels * self.stem**2, *w[:-1])
        self.encoder = nn.ModuleList(res_stage(i, o, n) for i, o, n in zip(ins, w, eb))
        # Decoder level k joins the upsampled deeper map with the skip of width w[3-k].
        self.add_fusion = config.fusion == "add"
        joined = [w[3 - k] if self.add_fusion else w[4 - k] + w[3 - k] for k in range(4)]
        self.decoder = nn.ModuleList(res_stage(joined[k], w[3 - k], db[k]) for k in range(4))
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w[4 - k], w[3 - k], 1, bias=False), nn.BatchNorm2d(w[3 - k]))
            for k in range(4 if self.add_fusion else 0)
        )
        self.sgem = SGEM(enc_ch=w[2], dec_ch=w[3], heads=config.sgem_heads)
        self.head = SegmentationHead(w[0], out_ch=self.stem**2)
        self.refine = LogitRefinement(config.in_channels, config.refine) if config.refine else None
        self.knee = LogitKnee() if config.logit_knee else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        if self.stem > 1:
            x = F.pixel_unshuffle(x, self.stem)
        feats = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        e1, e2, e3, e4, e5 = feats
        d1 = self._decode(0, e5, e4)
        d2 = self._decode(1, d1, self.sgem(e3, d1))
        d3 = self._decode(2, d2, e2)
        d4 = self._decode(3, d3, e1)
        logits: torch.Tensor = self.head(d4)
        if self.stem > 1:
            logits = F.pixel_shuffle(logits, self.stem)
        if self.refine is not None:
            logits = self.refine(image, logits)
        if self.knee is not None:
            logits = self.knee(logits)
        return logits

    def fold_logit_affine(self, a: float, b: float) -> None:
        """Make the network's logits ``a * logit + b`` (a calibration), in the last layer
        that writes them: the refinement when there is one, else the head (a two-piece
        calibration's knee moves with it)."""
        if a <= 0:
            raise ValueError(f"a calibration's scale must be positive, got {a}")
        (self.refine if self.refine is not None else self.head).fold_affine(a, b)
        if self.knee is not None:
            self.knee.fold_affine(a, b)

    def _decode(self, level: int, deeper: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.add_fusion:
            joined = upsample_to(self.project[level](deeper), skip) + skip
        else:
            joined = torch.cat([upsample_to(deeper, skip), skip], dim=1)
        out: torch.Tensor = self.decoder[level](joined)
        return out
