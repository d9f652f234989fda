"""Function-preserving widening: start a wider SGEM-UNet from a narrower one's weights.

Every channel of the narrow network keeps its place in the wide one (a concatenation's
second part moves up by the wider first part). Each old output channel gets the old
weights on the old input channels and zero on the new ones, so the new channels cannot
change it; the new channels keep their fresh initialisation, and the layer after them
reads them through zero weights. The wide network therefore computes exactly the narrow
one's logits until it trains (in eval mode: new BatchNorm channels start at the identity
statistics), and the new channels start learning at the first step (their outgoing
weights get gradients). This is Net2Net's aim (Chen et al., ICLR 2016) by zero padding
instead of copying units.

The SGEM's attention takes a softmax over its E3 channels, which new channels would
enter; so E3's width must stay, and every other width may grow.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from irstd_ros.errors import ConfigError
from irstd_ros.models.config import ModelConfig
from irstd_ros.models.registry import build_model

# (output channel positions, input channel positions) of a module's tensors in the wide
# network; None for modules without an input channel dimension (BatchNorm).
_Maps = tuple[torch.Tensor, torch.Tensor | None]


def check_widenable(narrow: ModelConfig, wide: ModelConfig) -> None:
    """Raise :class:`ConfigError` unless ``wide`` is ``narrow`` with some widths grown."""
    same = (
        "arch",
        "in_channels",
        "enc_blocks",
        "dec_blocks",
        "sgem_heads",
        "fusion",
        "stem",
        "refine",
    )
    differ = [f for f in same if getattr(narrow, f) != getattr(wide, f)]
    if differ:
        raise ConfigError(
            f"cannot widen: the configs differ in {', '.join(differ)}, not only in widths"
        )
    if any(w < n for n, w in zip(narrow.widths, wide.widths)):
        raise ConfigError(f"cannot widen {narrow.widths} to {wide.widths}: a width shrinks")
    if narrow.widths[2] != wide.widths[2]:
        raise ConfigError(
            f"cannot widen E3 ({narrow.widths[2]} -> {wide.widths[2]}): the SGEM's softmax runs over its channels"
        )


def _block_maps(prefix: str, in_map: torch.Tensor, out_map: torch.Tensor) -> dict[str, _Maps]:
    return {
        f"{prefix}.conv1.0": (out_map, in_map),
        f"{prefix}.conv1.1": (out_map, None),
        f"{prefix}.conv2.0": (out_map, out_map),
        f"{prefix}.conv2.1": (out_map, None),
        f"{prefix}.shortcut.0": (out_map, in_map),
        f"{prefix}.shortcut.1": (out_map, None),
    }


def _channel_maps(narrow: ModelConfig, wide: ModelConfig) -> dict[str, _Maps]:
    """Module name -> where its narrow output / input channels sit in the wide network."""
    n, w = narrow.widths, wide.widths
    level = [torch.arange(c) for c in n]  # E_i and the decoder level of the same width
    maps: dict[str, _Maps] = {}
    ins = [torch.arange(narrow.in_channels * narrow.stem**2), *level[:-1]]
    for i, blocks in enumerate(narrow.enc_blocks):
        for b in range(blocks):
            maps.update(_block_maps(f"encoder.{i}.{b}", ins[i] if b == 0 else level[i], level[i]))
    for k, blocks in enumerate(narrow.dec_blocks):
        deep, skip = 4 - k, 3 - k
        if narrow.fusion == "add":
            joined = level[skip]
            maps[f"project.{k}.0"] = (level[skip], level[deep])
            maps[f"project.{k}.1"] = (level[skip], None)
        else:  # torch.cat([upsampled deeper, skip]): the skip starts after the wide deeper
            joined = torch.cat([level[deep], w[deep] + level[skip]])
        for b in range(blocks):
            maps.update(
                _block_maps(f"decoder.{k}.{b}", joined if b == 0 else level[skip], level[skip])
            )
    maps["sgem.k"] = (level[2], level[3])
    maps["sgem.v"] = (level[2], level[3])
    maps["head"] = (torch.arange(narrow.stem**2), level[0])
    return maps


def widen_state_dict(narrow: nn.Module, wide: nn.Module) -> dict[str, torch.Tensor]:
    """``wide``'s state dict with ``narrow``'s weights embedded (see the module doc).
    Both are networks built from their ``config``; ``wide`` supplies the new channels'
    initialisation."""
    ncfg: ModelConfig = narrow.config  # type: ignore[assignment]
    wcfg: ModelConfig = wide.config  # type: ignore[assignment]
    check_widenable(ncfg, wcfg)
    src, dst = narrow.state_dict(), wide.state_dict()
    if set(src) != set(dst):  # a shortcut projection appears or disappears
        extra = sorted(set(src) ^ set(dst))
        raise ConfigError(
            f"cannot widen {ncfg.widths} to {wcfg.widths}: layouts differ at {extra[0]}"
        )
    maps = _channel_maps(ncfg, wcfg)
    out: dict[str, torch.Tensor] = {}
    for name, target in dst.items():
        source = src[name]
        module = name.rpartition(".")[0]
        if module not in maps or source.dim() == 0:
            if source.shape != target.shape:
                raise ConfigError(
                    f"cannot widen: {name} has shape {tuple(source.shape)} -> {tuple(target.shape)}"
                )
            out[name] = source.clone()
            continue
        out_map, in_map = maps[module]
        new = target.clone()
        if source.dim() == 1:  # BatchNorm statistics and affine, conv biases
            new[out_map] = source
        else:  # conv weight (out, in, kh, kw)
            assert in_map is not None
            new[out_map] = 0.0
            new[out_map[:, None], in_map[None, :]] = source
        out[name] = new
    return out


def padded_widths(config: ModelConfig, multiple: int) -> tuple[int, ...]:
    """``config.widths`` rounded up to multiples of ``multiple``, E3's kept (the SGEM's
    softmax runs over its channels, see :func:`check_widenable`)."""
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise ConfigError(f"channel multiple must be a whole number >= 1, got {multiple!r}")
    return tuple(
        w if i == 2 else -(-w // multiple) * multiple for i, w in enumerate(config.widths)
    )


def pad_channels(model: nn.Module, multiple: int = 8) -> nn.Module:
    """An inference copy of ``model`` whose widths are multiples of ``multiple`` (E3 kept).

    Tensor-core convolutions (FP16/BF16 cuDNN, TensorRT) want channel counts that are
    multiples of 8; the paper configuration's E1 (28) is not. The new channels read zero
    weights and carry zero bias and running mean (scale and variance 1), so they are exactly 0 after every
    BatchNorm and ReLU, and every old channel sees zero weights on them: the padded network
    computes ``model``'s logits (in eval mode). ``model`` itself is returned when nothing
    needs padding. Not for training (BatchNorm in train mode would normalise the new
    channels by their batch statistics, still 0, but the optimiser would move them)."""
    cfg: ModelConfig = model.config  # type: ignore[assignment]
    widths = padded_widths(cfg, multiple)
    if widths == cfg.widths:
        return model
    wcfg = dataclasses.replace(cfg, widths=widths)
    wide = build_model(wcfg)
    state = widen_state_dict(model, wide)
    maps = _channel_maps(cfg, wcfg)
    for name, tensor in state.items():
        module, _, leaf = name.rpartition(".")
        if module not in maps or tensor.dim() == 0:
            continue
        out_map = maps[module][0]
        new_rows = torch.ones(tensor.shape[0], dtype=torch.bool)
        new_rows[out_map] = False
        if leaf in ("weight", "running_var") and tensor.dim() == 1:
            tensor[new_rows] = 1  # BatchNorm scale / variance
        else:  # conv weights and biases, BatchNorm shift and mean: 0
            tensor[new_rows] = 0
    wide.load_state_dict(state)
    return wide.eval()
