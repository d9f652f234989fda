"""The Detector: raw frame in, mask and targets out. Used by the node, the CLI and the benchmark."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint
from irstd_ros.core.normalization import ScalingConfig, normalize, to_grey
from irstd_ros.core.targets import PostprocessConfig, Target, extract_targets
from irstd_ros.inference.backends.base import Backend, BackendOptions
from irstd_ros.inference.backends.select import create_backend

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "irstd_tiny.safetensors"


def default_model_path() -> Path:
    """The model shipped inside the package (``irstd_ros/weights``)."""
    return Path(str(resources.files("irstd_ros") / "weights" / DEFAULT_MODEL_NAME))


@dataclass
class DetectionResult:
    """What one frame gave: probabilities, the kept-target mask, targets, timings (ms)."""

    prob: np.ndarray
    mask: np.ndarray
    targets: list[Target]
    timings: dict[str, float] = field(default_factory=dict)


class Detector:
    """Normalisation -> backend -> post-processing, with per-stage timings.

    ``scaling`` applies only to ``global``-normalised (0.1) checkpoints; ``robust``
    ones are invariant to the frame's encoding, gain and offset.
    """

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

    def detect(self, frame: np.ndarray) -> DetectionResult:
        t0 = time.perf_counter()
        grey = to_grey(frame)
        x = normalize(grey, self.info.norm, self.scaling)
        t1 = time.perf_counter()
        prob = self.backend.predict(x)
        t2 = time.perf_counter()
        mask, targets = extract_targets(prob, grey, self.post)
        t3 = time.perf_counter()
        return DetectionResult(
            prob,
            mask,
            targets,
            {"pre_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "post_ms": (t3 - t2) * 1e3},
        )
