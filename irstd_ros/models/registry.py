"""One registry from architecture names to constructors."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from irstd_ros.errors import ConfigError
from irstd_ros.models.config import ModelConfig
from irstd_ros.models.sgem_unet import SGEMUNet

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "sgem_unet": SGEMUNet,
}


def build_model(config: ModelConfig) -> nn.Module:
    """Instantiate ``config.arch``; unknown names list the valid choices."""
    try:
        ctor = MODELS[config.arch]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {config.arch!r}; valid: {', '.join(sorted(MODELS))}"
        ) from None
    return ctor(config)
