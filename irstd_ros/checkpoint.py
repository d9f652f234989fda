"""Checkpoints: safetensors weights with their configuration in the file's metadata.

One ``.safetensors`` file holds the tensors and, under the metadata key
``irstd_ros``, a JSON object: model config, input normalisation, detection
threshold, training data/recipe and measured metrics. Nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from irstd_ros.core.constants import CANDIDATE_THRESHOLD, GATED_THRESHOLD, SHIPPED_MODELS
from irstd_ros.core.normalization import InputNorm
from irstd_ros.core.parsing import check_keys, dataclass_from_dict
from irstd_ros.core.paths import atomic_path
from irstd_ros.errors import CheckpointError, ConfigError
from irstd_ros.models import MODELS, ModelConfig, build_model

METADATA_KEY = "irstd_ros"
FORMAT_VERSION = 1
# the keys of the metadata object (what :meth:`CheckpointInfo.to_json` writes); any other is
# refused when read, as a misspelt key (``treshold``) would otherwise be dropped unnoticed
METADATA_FIELDS = (
    "format", "model", "norm", "threshold", "candidate_threshold", "gated_threshold", "extra"
)


@dataclass
class CheckpointInfo:
    """Everything a checkpoint says about itself besides the weights."""

    model: ModelConfig
    norm: InputNorm = field(default_factory=InputNorm)
    threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)  # data, recipe, metrics...
    # the tracker's operating points in this checkpoint's probabilities; None: the defaults
    # above (written only when set, so older files and their fingerprints stay as they were)
    candidate_threshold: float | None = None
    gated_threshold: float | None = None

    def detection_threshold(self, value: float = -1.0) -> float:
        """The detection threshold as a node or tool sets it: a value < 0 takes the
        checkpoint's own (:attr:`threshold`), any other is taken as given. The one place
        that rule lives for the detection threshold, as :meth:`tracking_thresholds` is for
        the tracker's."""
        return self.threshold if value < 0 else value

    def own_tracking_thresholds(self) -> tuple[float, float]:
        """(candidate, gated): this checkpoint's own, or the defaults where it records none."""
        return (
            CANDIDATE_THRESHOLD if self.candidate_threshold is None else self.candidate_threshold,
            GATED_THRESHOLD if self.gated_threshold is None else self.gated_threshold,
        )

    def tracking_thresholds(
        self, candidate: float = -1.0, gated: float = -1.0
    ) -> tuple[float | None, float | None]:
        """The tracker's (candidate, gated) probabilities as a node or tool sets them: a value
        < 0 takes the checkpoint's own (:meth:`own_tracking_thresholds`), 0 turns that
        stage off (None), > 0 is taken as given. Raises
        :class:`~irstd_ros.errors.ConfigError` when both are on and the gated one is not
        below the candidate one."""
        own = self.own_tracking_thresholds()
        cand, gate = (
            mine if value < 0 else (value if value > 0 else None)
            for value, mine in zip((candidate, gated), own)
        )
        if cand is not None and gate is not None and gate >= cand:
            raise ConfigError(
                f"the gated threshold {gate:g} must be below the candidate threshold {cand:g}"
                f" (this model's own: candidate {own[0]:g}, gated {own[1]:g}; 0 turns either off)"
            )
        return cand, gate

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "model": self.model.to_dict(),
            "norm": asdict(self.norm),
            "threshold": self.threshold,
        }
        for name in ("candidate_threshold", "gated_threshold"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        data["extra"] = self.extra
        return json.dumps(data)

    def check(self) -> None:
        """:class:`~irstd_ros.errors.CheckpointError` unless every threshold it records is
        a probability strictly between 0 and 1 (outside it a threshold passes every pixel
        or none), and its tracker's gated threshold is below its candidate one."""
        for name in ("threshold", "candidate_threshold", "gated_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise CheckpointError(f"{name} {value!r} must be a probability in (0, 1)")
        candidate, gated = self.own_tracking_thresholds()  # the defaults where none is recorded
        if gated >= candidate:  # every node start with the model's own would be refused
            raise CheckpointError(
                f"gated_threshold {gated:g} must be below candidate_threshold {candidate:g}"
            )

    @classmethod
    def from_json(cls, text: str) -> CheckpointInfo:
        """Parse and check the metadata. A format newer than :data:`FORMAT_VERSION`, an
        unknown architecture, a key not in :data:`METADATA_FIELDS` or a threshold outside
        (0, 1) raises :class:`~irstd_ros.errors.CheckpointError`;
        malformed JSON or fields raise ``ValueError``, ``KeyError`` or ``TypeError``."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("format", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"format must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"written by a newer irstd_ros (format {version}, this reads <= {FORMAT_VERSION})"
            )
        if version < 1:
            raise CheckpointError(f"format must be >= 1, got {version}")
        try:  # after the format: a newer one may add keys, and is refused as newer
            check_keys(data, METADATA_FIELDS, "checkpoint metadata")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
        model = ModelConfig.from_dict(data["model"])
        if model.arch not in MODELS:  # what build_model would refuse, before the weights load
            valid = ", ".join(sorted(MODELS))
            raise CheckpointError(f"unknown architecture {model.arch!r}; valid: {valid}")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise TypeError(f"extra must be a JSON object, got {type(extra).__name__}")
        info = cls(
            model=model,
            # no "kind": a 0.1 (global) checkpoint
            norm=dataclass_from_dict(InputNorm, data.get("norm", {}), "input normalisation"),
            threshold=float(data.get("threshold", 0.5)),
            extra=extra,
            candidate_threshold=_optional_float(data.get("candidate_threshold")),
            gated_threshold=_optional_float(data.get("gated_threshold")),
        )
        info.check()
        return info


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """:class:`~irstd_ros.errors.CheckpointError` naming the first floating-point tensor
    that holds a NaN or an infinity (a diverged run: its every score would be NaN, which no
    threshold passes). About 2 ms for a shipped model on one CPU core."""
    name = _first_non_finite(tensors)
    if name is not None:
        raise CheckpointError(f"{where} has non-finite values in tensor {name}")


def _first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def weights_mismatch(weights: dict[str, torch.Tensor], config: ModelConfig) -> str | None:
    """How ``weights`` (a state dict) differ from the network ``config`` builds: missing,
    unexpected, wrong shape, wrong kind of number; None where they fit."""
    with torch.device("meta"):  # shapes only: a config claiming huge widths allocates nothing
        expected = build_model(config).state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    common = set(expected) & set(weights)
    wrong = sorted(k for k in common if expected[k].shape != weights[k].shape)
    # integers where weights are floats (or floats for a counter): load_state_dict would
    # cast them silently (an int8-quantised state dict read as weights of -128..127)
    kind = sorted(k for k in common if expected[k].is_floating_point() != weights[k].is_floating_point())
    if not (missing or unexpected or wrong or kind):
        return None
    return (f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
            + (f", wrong dtype {[f'{k} ({weights[k].dtype})' for k in kind[:3]]}" if kind else ""))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    info: CheckpointInfo,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights (+ optional extra tensors such as optimizer state) atomically: a file
    already at ``path`` stays as it was unless the new one is complete. Raises
    :class:`~irstd_ros.errors.CheckpointError` naming ``path`` when the thresholds of
    ``info`` are not probabilities (the file could not be read back), when ``info.model``
    is not the network's own config, its weights do not fit it or any tensor holds a NaN
    or an infinity (the file would be refused when loaded: a diverged epoch would replace
    the last good file), or the write fails."""
    path = Path(path)
    try:
        info.check()
    except CheckpointError as exc:
        raise CheckpointError(f"cannot write model file {path}: {exc}") from None
    own = getattr(model, "config", None)
    if isinstance(own, ModelConfig) and own != info.model:
        raise CheckpointError(f"cannot write model file {path}: its config {info.model} is not the "
                              f"network's own, {own}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # a network without its config (a wrapper: DDP's or an average's ``module.`` keys, a
    # foreign module) is checked by its weights: a file they do not fit could not be loaded
    mismatch = weights_mismatch(tensors, info.model)
    if mismatch:
        raise CheckpointError(f"cannot write model file {path}: its weights do not fit its config "
                              f"{info.model.arch} {info.model.widths}: {mismatch}")
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra/{k}"] = v.detach().cpu().contiguous()
    # a diverged step (or a half-precision copy overflowing to inf) would replace a good file
    # with one the loader refuses, and the run could not resume from it: the old one stays
    bad = _first_non_finite(tensors)  # the loader's own check (check_finite)
    if bad is not None:
        raise CheckpointError(f"cannot write model file {path}: non-finite values in tensor {bad}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # whole or not at all
            save_file(tensors, str(tmp), metadata={METADATA_KEY: info.to_json()})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot write model file {path}: {exc}") from None
    return path


def read_info(path: str | Path) -> CheckpointInfo:
    """Read only the metadata of a checkpoint, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"model file {path} is a directory, not a checkpoint file")
    if not path.is_file():
        # a bare name (``--weights tinyy``) was most likely a shipped model's, misspelt
        bare = len(path.parts) == 1 and not path.suffix
        hint = f"; the shipped models are {', '.join(SHIPPED_MODELS)}" if bare else ""
        raise CheckpointError(f"model file not found: {path}{hint}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"model file {path} is not a readable safetensors file: {exc}") from None
    if METADATA_KEY not in meta:
        raise CheckpointError(f"model file {path} has no irstd_ros configuration in its metadata")
    try:
        return CheckpointInfo.from_json(meta[METADATA_KEY])
    except CheckpointError as exc:
        raise CheckpointError(f"model file {path} {_refusal(exc)}") from None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # RecursionError: JSON nested
        raise CheckpointError(f"model file {path} has an invalid configuration: {exc}") from None


def _refusal(exc: CheckpointError) -> str:
    """The tail of "model file PATH ..." for an error of :meth:`CheckpointInfo.from_json`."""
    text = str(exc)
    return f"was {text}" if text.startswith("written by") else f"has an invalid configuration: {text}"


def load_checkpoint(
    path: str | Path, expect_arch: str | None = None
) -> tuple[nn.Module, CheckpointInfo, dict[str, torch.Tensor]]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, info, extra tensors)."""
    path = Path(path)
    info = read_info(path)
    if expect_arch is not None and info.model.arch != expect_arch:
        raise CheckpointError(
            f"model file {path} holds architecture {info.model.arch!r}, expected {expect_arch!r}"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"model file {path} is corrupt: {exc}") from None
    check_finite(tensors, f"model file {path}")
    extra = {k[len("extra/") :]: v for k, v in tensors.items() if k.startswith("extra/")}
    weights = {k: v for k, v in tensors.items() if not k.startswith("extra/")}
    mismatch = weights_mismatch(weights, info.model)
    if mismatch:
        raise CheckpointError(f"model file {path} does not match its config {info.model.arch}: {mismatch}")
    model = build_model(info.model)  # now no larger than the file's own tensors
    model.load_state_dict(weights)
    return model.eval(), info, extra
