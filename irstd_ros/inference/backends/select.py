"""Backend registry and selection (``auto``: best available, with fallback)."""

from __future__ import annotations

import logging

from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.base import Backend, BackendOptions

log = logging.getLogger(__name__)

BACKENDS = ("torch-cpu",)


def create_backend(
    name: str, model: nn.Module, info: CheckpointInfo, options: BackendOptions | None = None
) -> Backend:
    """Build backend ``name`` (``auto`` picks the best available one)."""
    if name in ("auto", "cpu", "torch-cpu"):
        from irstd_ros.inference.backends.torch_cpu import TorchCPUBackend

        backend = TorchCPUBackend(model, info, options)
        log.info("inference backend: %s (%s)", backend.name, "requested" if name != "auto" else "auto: no GPU backend")
        return backend
    raise ConfigError(f"unknown backend {name!r}; valid: auto, {', '.join(BACKENDS)}")
