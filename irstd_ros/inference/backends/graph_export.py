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
digests of their files: one replaced or corrupt is exported again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.paths import atomic_path
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.fingerprint import (
    DIGEST_PREFIX_LEN,
    Fingerprint,
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


def padded_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``stride`` (what :func:`pad_to_stride` makes)."""
    return -(-height // stride) * stride, -(-width // stride) * stride


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
    """Where compiled artefacts live: ``options.cache_dir``, ``$IRSTD_CACHE_DIR`` or ~/.cache."""
    raw = (options.cache_dir if options else None) or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(raw).expanduser()


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
    FP32 CPU copy in eval mode is exported: the caller's model stays as it was)."""
    import copy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter(), atomic_path(path) as tmp:  # per process: concurrent exports never share it
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
            assert program is not None  # the dynamo exporter always returns a program
            program.save(str(tmp))
        except ImportError as exc:
            raise BackendError(f"ONNX export needs onnx and onnxscript ({exc})") from exc
        except Exception as exc:  # the exporter wraps failures in several types
            raise BackendError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
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
    is moved into place first, then the ``.xml`` that names it. On failure both go."""
    with atomic_path(path) as tmp:
        try:
            yield tmp
            tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        except BaseException:
            tmp.with_suffix(".bin").unlink(missing_ok=True)
            raise


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
    converted = convert_openvino(model, info.model.stride)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_ir(path) as tmp:
            ov.save_model(converted, str(tmp), compress_to_fp16=False)  # the default halves weights
    except Exception as exc:  # OpenVINO's own RuntimeError subclasses, OSError
        raise BackendError(f"writing OpenVINO IR {path} failed: {exc}") from exc
    save_fingerprint(path, expected)
    prune_cache(root, info.model.arch)
    return path


def prune_cache(root: Path, arch: str, keep: int = CACHE_KEEP_MODELS) -> None:
    """Delete the ONNX / OpenVINO files of all but the ``keep`` most recent weights.

    Only these cheap-to-redo exports are pruned; TensorRT engines and INT8 IRs (built by
    ``irstd export`` from calibration data, minutes each) are left alone.
    """
    from irstd_ros.inference.backends.openvino_int8 import INT8_SUFFIX  # no import cycle here

    int8_stem = INT8_SUFFIX.removesuffix(".xml")
    groups: dict[str, list[Path]] = {}
    for path in root.glob(f"{arch}-*"):
        stem = path.name.split(".")[0]
        if path.name.endswith(PRUNABLE_SUFFIXES) and not stem.endswith(int8_stem):
            groups.setdefault(stem, []).append(path)
    newest = sorted(groups, key=lambda k: max(p.stat().st_mtime for p in groups[k]), reverse=True)
    for stem in newest[keep:]:
        for path in groups[stem]:
            path.unlink(missing_ok=True)
