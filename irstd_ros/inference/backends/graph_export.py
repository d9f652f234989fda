"""Exporting SGEM-UNet as a graph: ``torch.export`` and ONNX with stride-constrained sizes.

A U-Net only accepts heights and widths that are multiples of its stride (four 2x
poolings, then upsampling back and concatenating with the skips). Exported with free
height/width dims, ``torch.export`` finds the guards ``H % 16 == 0`` and refuses them
(or specialises to the example size). Declaring each side as ``stride * Dim(...)``
(a *derived* dim) states the constraint up front, so one exported graph serves every
padded frame size. The same dynamic shapes drive the ONNX export (``dynamo=True``),
so the ONNX graph has symbolic ``16*h`` x ``16*w`` inputs.

Exported artefacts are cached under :func:`cache_root` with a
:class:`~irstd_ros.inference.backends.fingerprint.Fingerprint` beside them (with the
digests of their files: one replaced or corrupt is exported again). A folder that cannot
be made or a write that fails (a read-only mount, a full disk) is a
:class:`~irstd_ros.errors.BackendError` naming the path and the reason, and leaves no
file of the failed export behind (:func:`writing_artifact`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.paths import atomic_path, fsync_path
from irstd_ros.errors import BackendError, one_line
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.fingerprint import (
    DIGEST_PREFIX_LEN,
    Fingerprint,
    artifact_files,
    fingerprint_path,
    rebuild_reason,
    save_fingerprint,
    weights_digest,
)

log = logging.getLogger(__name__)

MAX_FRAME_SIDE = 8192  # largest padded height/width the exported graphs accept
# Smallest padded side, in stride blocks: at one block the bottleneck is 1 px wide and
# torch.export specialises (guard ``H // 16 != 1``), so graphs take >= 2 blocks per side.
MIN_BLOCKS = 2
DEFAULT_CACHE_DIR = Path("~/.cache/irstd_ros")
CACHE_ENV = "IRSTD_CACHE_DIR"  # overrides the default cache directory
ONNX_OPSET = 18
ONNX_RECIPE = "onnx-dynamo-v1"  # bump when the export settings below change
OPENVINO_RECIPE = "openvino-ir-convert-v1"
CACHE_KEEP_MODELS = 8  # weights whose ONNX / IR files stay in the cache
PRUNABLE_SUFFIXES = (".onnx", ".onnx.json", ".xml", ".bin", ".xml.json")
INPUT_NAME = "x"
OUTPUT_NAME = "logits"
EXAMPLE_BLOCKS = 4  # example input of (4 * stride) px per side for tracing
# Loggers of the ONNX exporter's passes that report every rewrite at INFO.
CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")
# An export's files beyond its FP32 weights (the .xml, the fingerprint): what the message
# of a write that ran out of space adds to the weights' bytes as the room it needed.
EXPORT_OVERHEAD_BYTES = 1 << 18
# The temporary file of an interrupted write (core.paths.atomic_path names it
# ``.<name>.<pid>.tmp<suffix>``): the prune removes one whose writer is gone and that has
# not changed for TEMP_GRACE_S (a writer in another PID namespace sharing the cache looks
# gone), and any older than TEMP_MAX_AGE_S, whose pid may be another process's by now (a
# live writer renames its file seconds after writing it).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(?P<suffix>\.[^.]*)?$")
TEMP_GRACE_S = 60.0
TEMP_MAX_AGE_S = 3600.0


def stride_dynamic_shapes(stride: int, max_side: int = MAX_FRAME_SIDE) -> tuple[dict[int, Any]]:
    """``dynamic_shapes`` for ``forward(x)`` with H and W multiples of ``stride``.

    ``stride * Dim`` is a derived dim: export sees ``H = 16 * h_blocks`` and the U-Net's
    divisibility guards hold symbolically.
    """
    blocks = max_side // stride
    h = torch.export.Dim("h_blocks", min=MIN_BLOCKS, max=blocks)
    w = torch.export.Dim("w_blocks", min=MIN_BLOCKS, max=blocks)
    return ({2: stride * h, 3: stride * w},)


def example_input(
    stride: int,
    size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A (1, 1, H, W) tracing input; ``size`` defaults to a few stride blocks.

    The example must not be 1 block per side: ``torch.export`` specialises dims whose
    example value is 1.
    """
    h, w = size or (EXAMPLE_BLOCKS * stride, EXAMPLE_BLOCKS * stride)
    return torch.zeros(1, 1, h, w, dtype=dtype, device=device)


def export_program(
    model: nn.Module,
    stride: int,
    example: torch.Tensor | None = None,
    max_side: int = MAX_FRAME_SIDE,
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` with H and W free multiples of ``stride``."""
    example = example if example is not None else example_input(stride)
    try:
        return torch.export.export(
            model.eval(), (example,), dynamic_shapes=stride_dynamic_shapes(stride, max_side)
        )
    except Exception as exc:  # torch.export raises many types (UserError, guard failures...)
        raise BackendError(f"torch.export of the model failed: {type(exc).__name__}: {exc}") from exc


def cache_root(options: BackendOptions | None = None) -> Path:
    """Where compiled artefacts live: ``options.cache_dir``, ``$IRSTD_CACHE_DIR`` or ~/.cache,
    as an absolute path (a relative one is taken from the working directory now, once:
    a caller that keeps the result keeps one folder whatever the working directory later)."""
    raw = (options.cache_dir if options else None) or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(raw).expanduser().absolute()


def make_cache_dir(folder: Path) -> None:
    """Create ``folder`` (and the folders above it) for the cache's files; BackendError
    naming it and the OS's reason when it cannot be made (a file of that name, a read-only
    mount, no permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # mkdir(exist_ok=True) raises it for a file only
        reason = "a file of that name exists"
    except OSError as exc:
        reason = exc.strerror or one_line(exc)
    else:
        return
    raise BackendError(f"cannot create the cache directory {folder}: {reason}")


def export_bytes(model: nn.Module) -> int:
    """About how many bytes an export of ``model`` writes: its weights in FP32 and
    :data:`EXPORT_OVERHEAD_BYTES`."""
    return 4 * sum(int(t.numel()) for t in model.state_dict().values()) + EXPORT_OVERHEAD_BYTES


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def write_error(what: str, path: Path, exc: BaseException, needed: int) -> BackendError:
    """The error of a failed write of ``what`` at ``path`` (``needed``: about the bytes it
    needs). A full disk (or quota) is said as the OS says it, with the room left and needed;
    an error that names no OS reason (OpenVINO's ``basic_ios::clear: iostream error``) is
    said to be probably a full disk when the folder has less room left than ``needed``."""
    reason = one_line(exc) or type(exc).__name__
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return BackendError(f"writing {what} {path} failed: {reason}")
    space = f"{_megabytes(free)} free in {path.parent}, the export needs about {_megabytes(needed)}"
    code = exc.errno if isinstance(exc, OSError) else None
    if code in (errno.ENOSPC, errno.EDQUOT):  # the OS's text says it: "No space left on device"
        reason += f" ({space})"
    elif code is None and free < needed:
        reason += f" (probably no space left on device: {space})"
    return BackendError(f"writing {what} {path} failed: {reason}")


def remove_artifact(path: Path) -> None:
    """Delete the files of the cached artefact ``path`` and its fingerprint (those there)."""
    for file in (*artifact_files(path), fingerprint_path(path)):
        with contextlib.suppress(OSError):
            file.unlink(missing_ok=True)


@contextlib.contextmanager
def writing_artifact(path: Path, what: str, needed: int) -> Iterator[None]:
    """Around the export of the artefact ``path`` (``what``: its kind, for the message) into
    the cache and the writes of its files and fingerprint: its folder is made first
    (:func:`make_cache_dir`: an unusable one fails before the export); when the export or
    a write fails after it changed any of the artefact's files, its files and fingerprint
    are removed (an artefact without its fingerprint is never used, and a half-full disk
    keeps the room); one that failed before writing anything leaves the artefact there as
    it was (a failed ``irstd export --force`` loses nothing). A failed write is
    :func:`write_error`'s BackendError."""
    make_cache_dir(path.parent)
    before = _file_states(path)
    try:
        yield
    except BackendError:  # said already (the export's)
        if _file_states(path) != before:
            remove_artifact(path)
        raise
    except Exception as exc:  # OSError, OpenVINO's / the exporter's own types
        if _file_states(path) != before:
            remove_artifact(path)
        raise write_error(what, path, exc, needed) from exc


def _file_states(path: Path) -> list[tuple[int, int, int] | None]:
    """(inode, size, mtime ns) of each file of the artefact ``path`` and its fingerprint,
    None where one is missing: what tells a write that happened."""
    states: list[tuple[int, int, int] | None] = []
    for file in (*artifact_files(path), fingerprint_path(path)):
        try:
            st = file.stat()
        except OSError:
            states.append(None)
        else:
            states.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return states


def artifact_stem(info: CheckpointInfo, digest: str) -> str:
    """A cache file stem naming the architecture and the weights."""
    return f"{info.model.arch}-{digest[:DIGEST_PREFIX_LEN]}"


def onnx_fingerprint(digest: str, stride: int) -> Fingerprint:
    import onnx  # the exporter's output format; its version matters for readers

    return Fingerprint(
        backend="onnx",
        precision="fp32",
        input_shape=(1, 1, -1, -1),
        shape_range=((MIN_BLOCKS * stride,) * 2, (MAX_FRAME_SIDE, MAX_FRAME_SIDE)),
        weights_sha256=digest,
        recipe=f"{ONNX_RECIPE}-opset{ONNX_OPSET}",
        versions={"torch": torch.__version__, "onnx": onnx.__version__},
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's per-pass INFO lines and deprecation warnings out of the log."""
    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    try:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def export_onnx(model: nn.Module, path: str | Path, stride: int) -> Path:
    """Write ``model`` as ONNX with symbolic ``stride*h`` x ``stride*w`` input sizes (an
    FP32 CPU copy in eval mode is exported: the caller's model stays as it was) into the
    existing folder of ``path``, atomically. A failed export is a BackendError; a failed
    write raises as the writer does (:func:`cached_onnx` says it: :func:`writing_artifact`)."""
    import copy

    path = Path(path)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                copy.deepcopy(model).eval().float().cpu(),
                (example_input(stride),),
                dynamo=True,
                dynamic_shapes=stride_dynamic_shapes(stride),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=ONNX_OPSET,
                verbose=False,
            )
        except ImportError as exc:
            raise BackendError(f"ONNX export needs onnx and onnxscript ({exc})") from exc
        except Exception as exc:  # the exporter wraps failures in several types
            raise BackendError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
        assert program is not None  # the dynamo exporter always returns a program
        with atomic_path(path) as tmp:  # per process: concurrent exports never share it
            program.save(str(tmp))
    return path


def cached_onnx(model: nn.Module, info: CheckpointInfo, options: BackendOptions | None) -> Path:
    """The ONNX file of these weights in the cache, exported first when missing or stale."""
    digest = weights_digest(model, info)
    path = cache_root(options) / f"{artifact_stem(info, digest)}.onnx"
    expected = onnx_fingerprint(digest, info.model.stride)
    reason = rebuild_reason(path, expected)
    if reason is None:
        return path
    log.info("exporting ONNX to %s (%s)", path, reason)
    with writing_artifact(path, "ONNX model", export_bytes(model)):
        export_onnx(model, path, info.model.stride)
        save_fingerprint(path, expected)
    prune_cache(path.parent, info.model.arch)
    return path


def openvino_fingerprint(digest: str, stride: int) -> Fingerprint:
    import openvino as ov

    return Fingerprint(
        backend="openvino-ir",
        precision="fp32",
        input_shape=(1, 1, -1, -1),
        shape_range=((MIN_BLOCKS * stride,) * 2, (MAX_FRAME_SIDE, MAX_FRAME_SIDE)),
        weights_sha256=digest,
        recipe=OPENVINO_RECIPE,
        versions={"torch": torch.__version__, "openvino": ov.__version__},
    )


def convert_openvino(model: nn.Module, stride: int) -> Any:
    """``ov.convert_model`` straight from PyTorch, input (1, 1, ?, ?).

    Traced (about 2 s for these networks, against 10-25 s for the ONNX exporter on the
    project's 2-core machine); if tracing fails, from the stride-constrained
    ``torch.export`` program instead.
    """
    import openvino as ov

    model = model.eval().float().cpu()
    example = example_input(stride)
    with _quiet_exporter():
        try:
            return ov.convert_model(model, example_input=example, input=[ov.PartialShape([1, 1, -1, -1])])
        except Exception as exc:  # tracing failed: try the exported program
            log.info("OpenVINO tracing failed (%s); converting the torch.export program", exc)
        try:
            return ov.convert_model(export_program(model, stride, example))
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"OpenVINO conversion failed: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def atomic_ir(path: Path) -> Iterator[Path]:
    """:func:`~irstd_ros.core.paths.atomic_path` for an OpenVINO IR: the block saves the
    ``.xml`` at the temporary path (OpenVINO writes the ``.bin`` beside it); the ``.bin``
    is moved into place first, then the ``.xml`` that names it, each synced to disk before
    its rename and the folder after it. On failure both go."""
    with atomic_path(path) as tmp:
        tmp_bin = tmp.with_suffix(".bin")
        try:
            yield tmp
            fsync_path(tmp_bin)  # the weights on disk before the name points at them
            tmp_bin.replace(path.with_suffix(".bin"))
        except BaseException:
            tmp_bin.unlink(missing_ok=True)
            raise
        with contextlib.suppress(OSError):  # the rename on disk before the .xml's (not every
            fsync_path(path.parent)  # filesystem syncs a directory)


def export_openvino_ir(
    model: nn.Module, info: CheckpointInfo, options: BackendOptions | None, force: bool = False
) -> Path:
    """OpenVINO IR (``.xml`` + ``.bin``, FP32 weights) of these weights in the cache,
    converted when missing, stale or not the files its fingerprint describes, or ``force``."""
    import openvino as ov

    digest = weights_digest(model, info)
    root = cache_root(options)
    path = root / f"{artifact_stem(info, digest)}.xml"
    expected = openvino_fingerprint(digest, info.model.stride)
    reason = "forced" if force else rebuild_reason(path, expected)
    if reason is None:
        return path
    log.info("converting the model to OpenVINO IR %s (%s)", path, reason)
    with writing_artifact(path, "OpenVINO IR", export_bytes(model)):
        converted = convert_openvino(model, info.model.stride)
        with atomic_ir(path) as tmp:
            ov.save_model(converted, str(tmp), compress_to_fp16=False)  # the default halves weights
        save_fingerprint(path, expected)
    prune_cache(root, info.model.arch)
    return path


def prune_cache(root: Path, arch: str, keep: int = CACHE_KEEP_MODELS) -> None:
    """Delete the ONNX / OpenVINO files of all but the ``keep`` most recent weights, and the
    temporary files of writes that were killed (:func:`remove_dead_temporaries`).

    Only these cheap-to-redo exports are pruned; TensorRT engines and INT8 IRs (built by
    ``irstd export`` from calibration data, minutes each) are left alone. Another process
    pruning the same cache at the same time is no error (a file it deleted first is
    skipped), nor is a file that cannot be deleted (the export stands; warned).
    """
    from irstd_ros.inference.backends.openvino_int8 import INT8_SUFFIX  # no import cycle here

    int8_stem = INT8_SUFFIX.removesuffix(".xml")
    groups: dict[str, list[Path]] = {}
    for path in root.glob(f"{arch}-*"):
        stem = path.name.split(".")[0]
        if path.name.endswith(PRUNABLE_SUFFIXES) and not stem.endswith(int8_stem):
            groups.setdefault(stem, []).append(path)
    newest: dict[str, float] = {}
    for stem, paths in groups.items():
        mtimes = [m for m in map(_mtime, paths) if m is not None]
        if mtimes:  # else all gone: deleted by another process's prune
            newest[stem] = max(mtimes)
    for stem in sorted(newest, key=newest.__getitem__, reverse=True)[keep:]:
        for path in groups[stem]:
            _remove_pruned(path)
    remove_dead_temporaries(root, arch)


def _remove_pruned(path: Path) -> bool:
    """Delete ``path`` for the prune: whether it is gone (deleted, or by another process
    already). One that cannot be deleted is warned of and left: the prune goes on."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("pruning the cache: cannot delete %s: %s", path, one_line(exc))
        return False
    return True


def _mtime(path: Path) -> float | None:
    """``path``'s modification time, None when it is gone."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def temporary_writer(path: Path) -> int | None:
    """The pid of the process whose :func:`~irstd_ros.core.paths.atomic_path` write
    ``path`` is the temporary file of, None when it is no such file."""
    match = TEMP_NAME.match(path.name)
    return int(match["pid"]) if match else None


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs here (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # an out-of-range pid
        return False
    return True


def remove_dead_temporaries(root: Path, arch: str, now: float | None = None) -> list[Path]:
    """Delete the temporary files of ``arch``'s artefacts in ``root`` left by a write that was
    killed: those whose writer is no longer a running process and that have not changed for
    :data:`TEMP_GRACE_S`, and any not changed for :data:`TEMP_MAX_AGE_S` (its pid reused by
    another process since). A live writer's file, changed seconds ago, stays, and one that
    cannot be deleted (warned). Returns those deleted."""
    now = time.time() if now is None else now
    removed = []
    for path in root.glob(f".{arch}-*"):
        pid = temporary_writer(path)
        mtime = _mtime(path) if pid is not None else None
        if pid is None or mtime is None:
            continue
        age = now - mtime
        dead = age > TEMP_MAX_AGE_S or (age > TEMP_GRACE_S and not process_alive(pid))
        if dead and _remove_pruned(path):
            removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of killed writes from %s", len(removed), root)
    return removed
