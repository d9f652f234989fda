"""Fingerprints of compiled artefacts (TensorRT engines, exported graphs) and the rebuild rule.

A compiled engine is only valid for the software that built it (torch, torch_tensorrt,
TensorRT), the GPU it was tuned on (name, compute capability), the input shape range,
the precision and the weights. Each saved artefact gets a JSON file beside it; at start
the backend builds the fingerprint it *expects* and loads the artefact only when the
stored one matches field by field, otherwise it rebuilds (and says which fields differed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.paths import write_text_atomic

log = logging.getLogger(__name__)

FINGERPRINT_FORMAT = 1
FINGERPRINT_SUFFIX = ".json"
DIGEST_PREFIX_LEN = 12  # hex digits of the weights digest used in cache file names


@dataclass(frozen=True)
class Fingerprint:
    """Everything a compiled artefact depends on; equal fingerprints mean "reuse it".

    ``input_shape`` is the (N, C, H, W) the engine was optimised for (H, W padded to the
    stride); ``shape_range`` the [min, max] (H, W) it accepts. ``weights_sha256`` is
    :func:`weights_digest` (tensors + model config), so the same weights saved with other
    metadata reuse the engine while any retrained weight rebuilds it. ``recipe`` names the
    compile settings of this package (bumped when they change) and ``versions`` holds the
    software versions (torch, torch_tensorrt, tensorrt, ...). ``conditions`` holds what a
    build read besides the weights (INT8: the input normalisation and threshold its
    calibration and accuracy control ran under; empty for graphs that read neither).
    """

    backend: str
    precision: str
    input_shape: tuple[int, ...]
    shape_range: tuple[tuple[int, int], tuple[int, int]]
    weights_sha256: str
    recipe: str
    versions: dict[str, str] = field(default_factory=dict)
    device: dict[str, str] = field(default_factory=dict)  # GPU name, compute capability
    conditions: dict[str, str] = field(default_factory=dict)
    format: int = FINGERPRINT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["shape_range"] = [list(s) for s in self.shape_range]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(
            backend=str(data["backend"]),
            precision=str(data["precision"]),
            input_shape=tuple(int(v) for v in data["input_shape"]),
            shape_range=tuple(tuple(int(v) for v in s) for s in data["shape_range"]),  # type: ignore[arg-type]
            weights_sha256=str(data["weights_sha256"]),
            recipe=str(data["recipe"]),
            versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
            device={str(k): str(v) for k, v in data.get("device", {}).items()},
            conditions={str(k): str(v) for k, v in data.get("conditions", {}).items()},
            format=int(data.get("format", 0)),
        )


def weights_digest(model: nn.Module, info: CheckpointInfo | None = None) -> str:
    """sha256 of the model's tensors (name, dtype, shape, bytes, sorted) and its config."""
    h = hashlib.sha256()
    if info is not None:
        h.update(json.dumps(info.model.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint_path(artifact: str | Path) -> Path:
    """The JSON file that describes ``artifact`` (``engine.ep`` -> ``engine.ep.json``)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + FINGERPRINT_SUFFIX)


def save_fingerprint(artifact: str | Path, fp: Fingerprint) -> Path:
    """Write the fingerprint beside ``artifact`` (atomically)."""
    path = fingerprint_path(artifact)
    return write_text_atomic(path, json.dumps(fp.to_dict(), indent=2, sort_keys=True) + "\n")


def load_fingerprint(artifact: str | Path) -> Fingerprint | None:
    """The stored fingerprint of ``artifact``, or None when missing or unreadable."""
    path = fingerprint_path(artifact)
    try:
        return Fingerprint.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON / not a fingerprint
        log.warning("unreadable fingerprint %s (%s); the artefact will be rebuilt", path, exc)
        return None


def differences(expected: Fingerprint, found: Fingerprint) -> list[str]:
    """Human-readable ``field: found -> expected`` for every field that differs."""
    a, b = expected.to_dict(), found.to_dict()
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            for sub in sorted(set(a[key]) | set(b[key])):
                if a[key].get(sub) != b[key].get(sub):
                    out.append(f"{key}.{sub}: {b[key].get(sub)} -> {a[key].get(sub)}")
        else:
            out.append(f"{key}: {b.get(key)} -> {a.get(key)}")
    return out


def rebuild_reason(artifact: str | Path, expected: Fingerprint) -> str | None:
    """Why ``artifact`` cannot be reused for ``expected`` (None: load it as it is)."""
    artifact = Path(artifact)
    if not artifact.is_file():
        return f"no compiled artefact at {artifact}"
    found = load_fingerprint(artifact)
    if found is None:
        return f"no readable fingerprint beside {artifact}"
    diff = differences(expected, found)
    if diff:
        return "fingerprint mismatch: " + "; ".join(diff)
    return None
