"""The Detector: raw frame in, mask and targets out. Used by the node, the CLI and the benchmark."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint
from irstd_ros.inference.backends.base import Backend, BackendOptions
from irstd_ros.inference.backends.select import create_backend
from irstd_ros.inference.postprocess import PostprocessConfig, Target, extract_targets
from irstd_ros.inference.preprocess import to_unit_range

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "irstd_tiny.safetensors"
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma


def default_model_path() -> Path:
    """The model shipped inside the package (``irstd_ros/weights``)."""
    return Path(str(resources.files("irstd_ros") / "weights" / DEFAULT_MODEL_NAME))


@dataclass(frozen=True)
class ScalingConfig:
    """How a raw frame becomes [0, 1] (see :func:`to_unit_range`)."""

    mode: str = "auto"
    low: float = 0.0
    high: float = 65535.0
    percentile_low: float = 0.5
    percentile_high: float = 99.5


@dataclass
class DetectionResult:
    """What one frame gave: probabilities, the kept-target mask, targets, timings (ms)."""

    prob: np.ndarray
    mask: np.ndarray
    targets: list[Target]
    timings: dict[str, float] = field(default_factory=dict)


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W) stays; (H, W, 3|4) RGB(A) becomes luma in the input's dtype and units.

    Channel order does not matter much for grey IR rendered as colour (R = G = B);
    the BT.601 weights assume RGB order.
    """
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        luma = frame[..., :3].astype(np.float32) @ GREY_WEIGHTS
        if np.issubdtype(frame.dtype, np.integer):
            return np.rint(luma).astype(frame.dtype)
        return luma
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    raise ValueError(f"cannot make a single-channel frame of shape {frame.shape}")


class Detector:
    """Scaling -> backend -> post-processing, with per-stage timings."""

    def __init__(
        self,
        backend: Backend,
        info: CheckpointInfo,
        post: PostprocessConfig | None = None,
        scaling: ScalingConfig | None = None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.post = post or PostprocessConfig(threshold=info.threshold)
        self.scaling = scaling or ScalingConfig()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        backend: str = "auto",
        options: BackendOptions | None = None,
        post: PostprocessConfig | None = None,
        scaling: ScalingConfig | None = None,
    ) -> Detector:
        """Load a checkpoint (the shipped model when ``path`` is None) onto a backend."""
        path = Path(path) if path else default_model_path()
        model, info, _ = load_checkpoint(path)
        impl = create_backend(backend, model, info, options)
        log.info("model %s (%s) on backend %s", path, info.model.arch, impl.name)
        return cls(impl, info, post, scaling)

    def update_post(self, **changes: object) -> None:
        """Change threshold / area limits at run time (validated by the caller)."""
        self.post = replace(self.post, **changes)

    def detect(self, frame: np.ndarray) -> DetectionResult:
        t0 = time.perf_counter()
        grey = to_grey(frame)
        s = self.scaling
        unit = to_unit_range(grey, s.mode, s.low, s.high, (s.percentile_low, s.percentile_high))
        t1 = time.perf_counter()
        prob = self.backend.predict(unit)
        t2 = time.perf_counter()
        mask, targets = extract_targets(prob, grey, self.post)
        t3 = time.perf_counter()
        return DetectionResult(
            prob,
            mask,
            targets,
            {"pre_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "post_ms": (t3 - t2) * 1e3},
        )
