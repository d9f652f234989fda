"""Model configuration: a plain dataclass saved inside every checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from irstd_ros.core.parsing import dataclass_from_dict
from irstd_ros.errors import ConfigError

FUSIONS = ("concat", "add")
STEMS = (1, 2)
# Upper bounds a config is checked against: far beyond any network that fits a device, so
# only a corrupt or hostile file meets them (its widths would ask for terabytes).
MAX_WIDTH = 65536  # channels of a level, of the refinement, of the input
MAX_BLOCKS = 1024  # residual blocks of one level
# Fields added after checkpoints were shipped: left out of the saved config at these values.
_OMITTED_DEFAULTS: dict[str, Any] = {"stem": 1, "refine": 0, "logit_knee": False}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network with the same weights layout.

    ``widths``: channels of the five encoder levels E1..E5 (E1 full resolution,
    E5 the bottleneck at stride 16). ``enc_blocks`` / ``dec_blocks``: residual
    blocks per encoder level / per decoder level D1..D4. ``fusion``: how a decoder
    level joins the deeper map to its skip (one of :data:`FUSIONS`): ``concat`` (the
    paper) upsamples the deeper map and concatenates; ``add`` projects it 1x1 to the
    skip's width at its own (lower) resolution, upsamples and adds, so that the costly
    high-resolution convs see half the channels and no concatenation is copied.
    ``stem``: space-to-depth factor (one of :data:`STEMS`). With 2 the frame is
    rearranged losslessly into 4 channels at half resolution (``pixel_unshuffle``)
    before E1, and the head's 4 logits per pixel are put back at full resolution
    (``pixel_shuffle``): every pixel still has its own logit, but no conv runs at full
    resolution.
    ``refine``: channels of a full-resolution refinement after the head (0: none). Two
    3x3 convs see the network's input and its logits at full resolution and add a
    correction to the logits; the last conv starts at zero, so a network initialised
    from one without refinement starts out computing the same logits.
    ``logit_knee``: a two-piece calibration after the logits
    (:class:`~irstd_ros.models.heads.LogitKnee`), set by ``irstd calibrate --two-piece``.
    """

    arch: str = "sgem_unet"
    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    enc_blocks: tuple[int, ...] = (1, 1, 1, 1, 1)
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    sgem_heads: int = 4
    fusion: str = "concat"
    stem: int = 1
    refine: int = 0
    logit_knee: bool = False

    def __post_init__(self) -> None:
        """:class:`ConfigError` for any field the network could not be built from (a saved
        config is checked here, so a bad one names its file instead of failing in torch)."""
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {self.fusion!r}; valid: {', '.join(FUSIONS)}")
        if not _whole(self.stem) or self.stem not in STEMS:
            raise ConfigError(f"unknown stem {self.stem!r}; valid: {', '.join(map(str, STEMS))}")
        if not _whole(self.refine) or self.refine < 0:
            raise ConfigError(f"refine must be 0 (none) or a channel count, got {self.refine!r}")
        if not isinstance(self.logit_knee, bool):
            raise ConfigError(f"logit_knee must be true or false, got {self.logit_knee!r}")
        if not _whole(self.in_channels) or self.in_channels < 1:
            raise ConfigError(f"in_channels must be a whole number >= 1, got {self.in_channels!r}")
        levels = (("widths", self.widths, 5), ("enc_blocks", self.enc_blocks, 5))
        for name, value, n in (*levels, ("dec_blocks", self.dec_blocks, 4)):
            whole = isinstance(value, tuple) and all(_whole(v) and v >= 1 for v in value)
            if not whole or len(value) != n:
                raise ConfigError(f"{name} must be {n} whole numbers >= 1, got {value!r}")
        # a corrupt or hostile file's sizes: refused before anything is built or listed
        sizes = (
            ("in_channels", (self.in_channels,), MAX_WIDTH),
            ("refine", (self.refine,), MAX_WIDTH),
            ("widths", self.widths, MAX_WIDTH),
            ("enc_blocks", self.enc_blocks, MAX_BLOCKS),
            ("dec_blocks", self.dec_blocks, MAX_BLOCKS),
        )
        for name, value, most in sizes:
            if max(value) > most:
                raise ConfigError(
                    f"{name} must be at most {most} each, got {value!r}"
                    if len(value) > 1
                    else f"{name} must be at most {most}, got {value[0]!r}"
                )
        e3 = self.widths[2]
        if not _whole(self.sgem_heads) or self.sgem_heads < 1 or e3 % self.sgem_heads:
            valid = ", ".join(map(str, _divisors(e3)))
            raise ConfigError(
                f"sgem_heads must divide the SGEM's width (E3, {e3}), got {self.sgem_heads!r}; "
                f"valid: {valid}"
            )

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this (4 poolings, the stem)."""
        return 16 * self.stem

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; ``stem``, ``refine`` and ``logit_knee`` only when set, so
        the saved config and the weights fingerprint of every network without them stay
        what they were before the fields existed (cached exports and accuracy records
        remain valid)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        for key, default in _OMITTED_DEFAULTS.items():
            if out[key] == default:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return dataclass_from_dict(cls, data, "model config")


def _divisors(n: int) -> list[int]:
    """The divisors of ``n`` >= 1, ascending; about sqrt(n) steps."""
    low = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return low + [n // d for d in reversed(low) if d * d != n]


def _whole(value: Any) -> bool:
    """An integer, not a bool (``True`` is 1 to Python, never a width or a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _scaled(
    base: int,
    enc: tuple[int, ...],
    dec: tuple[int, ...],
    heads: int,
    fusion: str = "concat",
    stem: int = 1,
    refine: int = 0,
) -> ModelConfig:
    return ModelConfig(
        widths=tuple(base * m for m in (1, 2, 4, 8, 16)),
        enc_blocks=enc,
        dec_blocks=dec,
        sgem_heads=heads,
        fusion=fusion,
        stem=stem,
        refine=refine,
    )


# Named configurations. ``paper`` is sized to the paper's 8.69 M parameters and
# 15.92 GMACs at 1x256x256 (checked by test/models/test_sgem_unet.py); the others are
# for CPUs and small Jetsons; ``lite`` is ``tiny`` with the add fusion (its encoder, SGEM
# and head have tiny's shapes, so it can start from tiny's weights); ``fast`` is ``tiny``
# behind a 2x2 space-to-depth stem (every tensor but E1's input convs and the head has
# tiny's shape); ``fast_refine`` is ``fast`` with an 8-channel full-resolution refinement
# (all of ``fast``'s tensors, plus the refinement's); ``fast_wide`` is ``fast`` with every
# width but E3's grown, so that it can start from ``fast`` computing the same logits
# (:mod:`irstd_ros.models.widen`); ``tiny_deep`` is ``tiny`` with E4 and E5 twice as wide
# (capacity where the frame is small), to start from ``tiny`` the same way; ``tiny_wide``
# is ``tiny`` with E1, E4 and E5 doubled and E2 at 24 (at 32, E3's width, E3 would lose
# its shortcut projection and the layout would no longer widen), started the same way.
NAMED_CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig(
        widths=(28, 56, 128, 256, 512), enc_blocks=(1, 2, 2, 1, 1), dec_blocks=(1, 1, 1, 1)
    ),
    "small": _scaled(16, (1, 1, 1, 1, 1), (1, 1, 1, 1), 4),
    "tiny": _scaled(8, (1, 1, 1, 1, 1), (1, 1, 1, 1), 2),
    "lite": _scaled(8, (1, 1, 1, 1, 1), (1, 1, 1, 1), 2, fusion="add"),
    "fast": _scaled(8, (1, 1, 1, 1, 1), (1, 1, 1, 1), 2, stem=2),
    "fast_refine": _scaled(8, (1, 1, 1, 1, 1), (1, 1, 1, 1), 2, stem=2, refine=8),
    "fast_wide": ModelConfig(widths=(16, 24, 32, 96, 192), sgem_heads=2, stem=2),
    "tiny_deep": ModelConfig(widths=(8, 16, 32, 128, 256), sgem_heads=2),
    "tiny_wide": ModelConfig(widths=(16, 24, 32, 128, 256), sgem_heads=2),
}


def named_config(name: str) -> ModelConfig:
    """Look up a named configuration; the error lists the valid names."""
    try:
        return NAMED_CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model config {name!r}; valid: {', '.join(sorted(NAMED_CONFIGS))}"
        ) from None
