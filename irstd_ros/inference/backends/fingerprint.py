"""Fingerprints of compiled artefacts (TensorRT engines, exported graphs) and the rebuild rule.

A compiled engine is only valid for the software that built it (torch, torch_tensorrt,
TensorRT), the GPU it was tuned on (name, compute capability), the input shape range,
the precision and the weights. Each saved artefact gets a JSON file beside it; at start
the backend builds the fingerprint it *expects* and loads the artefact only when the
stored one matches field by field, otherwise it rebuilds (and says which fields differed).

The JSON also records the sha256 of the artefact's files (:data:`FILE_DIGESTS`, written by
:func:`save_fingerprint` once they exist), checked by :func:`rebuild_reason`: a file
replaced (another checkpoint's IR copied under this name) or corrupt is not used, and a
fingerprint written before digests were recorded is not trusted either.
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
FILE_DIGESTS = "file_sha256"  # key of the fingerprint JSON: {file suffix: sha256 of its bytes}
IR_WEIGHTS_SUFFIX = ".bin"  # an OpenVINO IR's weights, beside its ``.xml``
HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a file
_warned: set[tuple[str, int, int]] = set()  # (path, mtime, size) of files already warned about
# digests of files as they were (path, inode, size, mtime, ctime): any write changes the key
_hashed: dict[tuple[str, int, int, int, int], str] = {}


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


def artifact_files(artifact: str | Path) -> list[Path]:
    """The files an artefact consists of: itself, and an OpenVINO IR's ``.bin`` beside its ``.xml``."""
    artifact = Path(artifact)
    return [artifact, artifact.with_suffix(IR_WEIGHTS_SUFFIX)] if artifact.suffix == ".xml" else [artifact]


def file_digests(artifact: str | Path) -> dict[str, str]:
    """{suffix: sha256} of :func:`artifact_files` (OSError when one cannot be read); by
    suffix, so an artefact copied with its fingerprint to another cache still verifies."""
    return {path.suffix: _file_sha256(path) for path in artifact_files(artifact)}


def _file_sha256(path: Path) -> str:
    """sha256 of ``path``'s bytes, hashed once while the file stays as it is (a start checks
    an artefact more than once: ``auto``'s choice, then the backend's load)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _hashed.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                h.update(chunk)
        digest = _hashed[key] = h.hexdigest()
    return digest


def warn_once(logger: logging.Logger, path: Path, message: str, *args: object) -> None:
    """Log a warning about the file ``path`` once while the file stays as it is (a choice
    of backend reads the same record or fingerprint more than once)."""
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(path), -1, -1)
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def save_fingerprint(artifact: str | Path, fp: Fingerprint) -> Path:
    """Write the fingerprint beside ``artifact`` (atomically), with the digests of its
    files, which must be written already."""
    data = {**fp.to_dict(), FILE_DIGESTS: file_digests(artifact)}
    return write_text_atomic(fingerprint_path(artifact), json.dumps(data, indent=2, sort_keys=True) + "\n")


def _stored(artifact: str | Path) -> tuple[Fingerprint, dict[str, Any]] | None:
    """(the stored fingerprint of ``artifact``, its JSON), or None when missing or unreadable."""
    path = fingerprint_path(artifact)
    try:
        data = json.loads(path.read_text())
        return Fingerprint.from_dict(data), data
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON / not a fingerprint
        warn_once(log, path, "unreadable fingerprint %s (%s): the artefact is not used until it is rebuilt",
                  path, exc)
        return None


def load_fingerprint(artifact: str | Path) -> Fingerprint | None:
    """The stored fingerprint of ``artifact``, or None when missing or unreadable."""
    stored = _stored(artifact)
    return None if stored is None else stored[0]


def digest_mismatch(artifact: str | Path, recorded: Any) -> str | None:
    """Why the files of ``artifact`` are not those its fingerprint's digests ``recorded``
    describe (None: they are)."""
    artifact = Path(artifact)
    if not isinstance(recorded, dict) or not recorded:
        return f"the fingerprint beside {artifact} records no digest of its files (written by an older version)"
    try:
        found = file_digests(artifact)
    except OSError as exc:
        return f"cannot read the files of {artifact} ({exc})"
    changed = [p.name for p in artifact_files(artifact) if found.get(p.suffix) != recorded.get(p.suffix)]
    if changed:
        return f"{', '.join(changed)} changed since its fingerprint was written (a corrupt file, or another model's)"
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
    """Why ``artifact`` cannot be reused for ``expected`` (None: load it as it is): missing,
    no readable fingerprint, a field that differs, or files that are not the ones the
    fingerprint's digests describe (:func:`digest_mismatch`)."""
    artifact = Path(artifact)
    if not artifact.is_file():
        return f"no compiled artefact at {artifact}"
    stored = _stored(artifact)
    if stored is None:
        return f"no readable fingerprint beside {artifact}"
    diff = differences(expected, stored[0])
    if diff:
        return "fingerprint mismatch: " + "; ".join(diff)
    return digest_mismatch(artifact, stored[1].get(FILE_DIGESTS))
