"""The Detector: raw frame in, mask and targets out. Used by the node, the CLI and the benchmark.

It owns the failure policy of inference too: a frame on which the device runs out of
memory is dropped (:class:`~irstd_ros.errors.DeviceOutOfMemory`) and the cached device
memory released; after :data:`OOM_FALLBACK_AFTER` such frames in a row the detector moves,
once, to :data:`CPU_FALLBACK_BACKEND` (its :class:`CpuFallback`), keeping its settings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint
from irstd_ros.core.constants import DEFAULT_SHIPPED_MODEL, SHIPPED_MODELS
from irstd_ros.core.normalization import ScalingConfig, normalize, to_grey
from irstd_ros.core.targets import (
    PostprocessConfig,
    Target,
    extract_candidates,
    extract_targets,
)
from irstd_ros.errors import BackendError, ConfigError, DeviceOutOfMemory, IrstdError
from irstd_ros.inference.backends.base import Backend, BackendOptions, non_finite
from irstd_ros.inference.backends.select import create_backend
from irstd_ros.inference.resources import is_out_of_memory, release_device_memory

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = SHIPPED_MODELS[DEFAULT_SHIPPED_MODEL]
OOM_FALLBACK_AFTER = 3  # consecutive out-of-memory frames before falling back to the CPU
CPU_FALLBACK_BACKEND = "torch-cpu"


def default_model_path(name: str = DEFAULT_SHIPPED_MODEL) -> Path:
    """A model shipped inside the package (``irstd_ros/weights``), by its name."""
    if name not in SHIPPED_MODELS:
        raise ConfigError(f"unknown shipped model {name!r}; valid: {', '.join(SHIPPED_MODELS)}")
    return Path(str(resources.files("irstd_ros") / "weights" / SHIPPED_MODELS[name]))


def resolve_model_path(value: str | Path | None) -> Path:
    """Where ``model.path`` / ``--weights`` point: the default shipped model when empty,
    a shipped model by name (:data:`SHIPPED_MODELS`), otherwise a checkpoint file path."""
    if value is None or str(value) == "":
        return default_model_path()
    if str(value) in SHIPPED_MODELS:
        return default_model_path(str(value))
    return Path(value).expanduser()


@dataclass(frozen=True)
class CpuFallback:
    """Where a detector that keeps running out of device memory gets its CPU backend:
    the checkpoint at ``path``, loaded again onto ``backend`` with ``options``."""

    path: Path
    options: BackendOptions | None = None
    backend: str = CPU_FALLBACK_BACKEND

    def load(self) -> Backend:
        model, info, _ = load_checkpoint(self.path)
        return create_backend(self.backend, model, info, self.options)


@dataclass
class DetectionResult:
    """What one frame gave: probabilities, the kept-target mask, targets, timings (ms), the
    sub-threshold candidates kept for a tracker (``Detector.candidate_threshold``) and the
    gated ones below them (``Detector.gated_threshold``)."""

    prob: np.ndarray
    mask: np.ndarray
    targets: list[Target]
    timings: dict[str, float] = field(default_factory=dict)
    candidates: list[Target] = field(default_factory=list)
    gated: list[Target] = field(default_factory=list)


@dataclass(frozen=True)
class DetectorSettings:
    """What a frame's pre- and post-processing read, swapped as one (:meth:`Detector.apply`):
    a frame sees one set, never half of a change made while it was in the network.

    The tracker's thresholds are probabilities in (0, 1], or None for none:
    :class:`~irstd_ros.errors.ConfigError` for any other (0 would take the whole frame as
    one component; the node's 0 for off and < 0 for the model's own are
    :meth:`CheckpointInfo.tracking_thresholds`' to resolve)."""

    post: PostprocessConfig
    scaling: ScalingConfig
    candidate_threshold: float | None = None
    gated_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("candidate_threshold", "gated_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ConfigError(
                    f"{name} must be a probability in (0, 1], or None for none, got {value!r}"
                    " (the node's 0 for off and < 0 for the model's own: "
                    "CheckpointInfo.tracking_thresholds)"
                )


class Detector:
    """Normalisation -> backend -> post-processing, with per-stage timings.

    ``scaling`` applies only to ``global``-normalised (0.1) checkpoints; ``robust``
    ones are invariant to the frame's encoding, gain and offset. ``fallback``: where the
    CPU backend comes from after repeated out-of-memory frames (None: no fall-back).
    ``candidate_threshold``: when below the detection threshold, components between the
    two are also returned as :attr:`DetectionResult.candidates` (for a tracker only;
    never in the mask or the targets); None: none. ``gated_threshold``: likewise, the
    components between it and the candidate threshold (the detection threshold without
    candidates) that hold no pixel above that, as :attr:`DetectionResult.gated` (for a
    tracker's gates only); None: none.
    """

    def __init__(
        self,
        backend: Backend,
        info: CheckpointInfo,
        post: PostprocessConfig | None = None,
        scaling: ScalingConfig | None = None,
        fallback: CpuFallback | None = None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.settings = DetectorSettings(post or PostprocessConfig(threshold=info.threshold), scaling or ScalingConfig())
        self.fallback = fallback
        self._oom_streak = 0
        self._fell_back = False

    def apply(self, **changes: Any) -> None:
        """Replace some of :class:`DetectorSettings`' fields, all at once (another thread's
        frame in :meth:`detect` keeps the set it started with)."""
        self.settings = replace(self.settings, **changes)

    # single fields, each swapped whole (several at once: :meth:`apply`)
    @property
    def post(self) -> PostprocessConfig:
        return self.settings.post

    @post.setter
    def post(self, value: PostprocessConfig) -> None:
        self.apply(post=value)

    @property
    def scaling(self) -> ScalingConfig:
        return self.settings.scaling

    @scaling.setter
    def scaling(self, value: ScalingConfig) -> None:
        self.apply(scaling=value)

    @property
    def candidate_threshold(self) -> float | None:
        return self.settings.candidate_threshold

    @candidate_threshold.setter
    def candidate_threshold(self, value: float | None) -> None:
        self.apply(candidate_threshold=value)

    @property
    def gated_threshold(self) -> float | None:
        return self.settings.gated_threshold

    @gated_threshold.setter
    def gated_threshold(self, value: float | None) -> None:
        self.apply(gated_threshold=value)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        backend: str = "auto",
        options: BackendOptions | None = None,
        post: PostprocessConfig | None = None,
        scaling: ScalingConfig | None = None,
    ) -> Detector:
        """Load a checkpoint (:func:`resolve_model_path`: the shipped model when ``path``
        is None, or a shipped model's name) onto a backend."""
        path = resolve_model_path(path)
        model, info, _ = load_checkpoint(path)
        impl = create_backend(backend, model, info, options)
        log.info("model %s (%s) on backend %s", path, info.model.arch, impl.name)
        return cls(impl, info, post, scaling, CpuFallback(path, options))

    def detect(self, frame: np.ndarray) -> DetectionResult:
        """One frame end to end.

        Raises :class:`~irstd_ros.errors.DeviceOutOfMemory` when the device ran out of
        memory on it (the frame is lost; see the module's failure policy).
        """
        t0 = time.perf_counter()
        settings = self.settings  # one set for the whole frame, whatever changes meanwhile
        post = settings.post
        grey = to_grey(frame)
        x = normalize(grey, self.info.norm, settings.scaling)
        t1 = time.perf_counter()
        try:
            prob = self.backend.predict(x)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise self._out_of_memory(exc) from None
            raise
        self._oom_streak = 0
        t2 = time.perf_counter()
        bad = non_finite(prob)
        if bad:
            raise BackendError(
                f"the network's output holds {bad} NaN values of {prob.size} (or infinities: a "
                f"numerical overflow in {self.backend.name}); no target can be read from it"
            )
        mask, targets = extract_targets(prob, grey, post)
        candidates: list[Target] = []
        if settings.candidate_threshold is not None:
            candidates = extract_candidates(
                prob, grey, post, settings.candidate_threshold, first_id=len(targets)
            )
        gated: list[Target] = []
        if settings.gated_threshold is not None:
            upper = settings.candidate_threshold
            if upper is None or upper >= post.threshold:
                upper = post.threshold
            gated = extract_candidates(
                prob,
                grey,
                replace(post, threshold=upper),
                settings.gated_threshold,
                first_id=len(targets) + len(candidates),
            )
        t3 = time.perf_counter()
        return DetectionResult(
            prob,
            mask,
            targets,
            {"pre_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "post_ms": (t3 - t2) * 1e3},
            candidates,
            gated,
        )

    def _out_of_memory(self, exc: BaseException) -> DeviceOutOfMemory:
        """Release cached device memory; after :data:`OOM_FALLBACK_AFTER` in a row, move to
        the CPU once. Returns the error to raise for this frame."""
        self._oom_streak += 1
        name = self.backend.name
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = f"frame dropped, backend {name} out of memory: {reason}"
        release_device_memory()
        fallback = self.fallback
        if (
            fallback is None
            or self._fell_back
            or self._oom_streak < OOM_FALLBACK_AFTER
            or name == fallback.backend
        ):
            return DeviceOutOfMemory(message)
        self._fell_back = True  # one attempt
        try:
            backend = fallback.load()
        except (IrstdError, OSError, RuntimeError) as err:
            return DeviceOutOfMemory(
                message,
                f"out of memory {self._oom_streak} frames in a row on {name}; "
                f"falling back to {fallback.backend} failed: {err}",
            )
        self.backend = backend
        self._oom_streak = 0
        release_device_memory(collect=True)
        return DeviceOutOfMemory(
            message,
            f"out of memory {OOM_FALLBACK_AFTER} frames in a row on {name}; "
            f"fell back to {fallback.backend} with model {fallback.path}",
        )

