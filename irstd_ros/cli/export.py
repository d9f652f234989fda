"""``irstd export``: build a backend's artefact ahead of time into the engine cache.

* ``--backend tensorrt``: a Torch-TensorRT program for ``--height`` x ``--width`` and
  ``--precision`` with its fingerprint (needs an NVIDIA GPU and torch_tensorrt);
* ``--backend onnxruntime``: the ONNX graph (symbolic stride-multiple sizes);
* ``--backend openvino``: the ONNX graph and the OpenVINO IR (FP32 weights).

``--out`` defaults to the node's cache (``model.cache_dir`` default), so a node started
afterwards with the same weights loads the artefact instead of building it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.graph_export import cache_root

EXPORT_BACKENDS = ("tensorrt", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "fp16")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="build a TensorRT engine / ONNX / OpenVINO IR ahead of time")
    p.add_argument("--backend", required=True, choices=EXPORT_BACKENDS)
    p.add_argument("--height", type=int, help="frame height the TensorRT engine is built for")
    p.add_argument("--width", type=int, help="frame width the TensorRT engine is built for")
    p.add_argument("--precision", default="fp16", choices=PRECISIONS, help="TensorRT precision")
    p.add_argument("--weights", type=Path, help="checkpoint (default: the shipped model)")
    p.add_argument("--out", type=Path, help=f"output directory (default: {cache_root()})")
    p.add_argument("--cuda-graphs", action="store_true", help="tensorrt: check a CUDA-graph run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irstd_ros.inference.detector import default_model_path

    if args.backend == "tensorrt" and not (args.height and args.width):
        raise ConfigError("--backend tensorrt needs --height and --width (the frame size)")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be positive, got {value}")
    weights = args.weights or default_model_path()
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(
        precision=args.precision,
        cache_dir=str(args.out) if args.out else None,
        height=args.height,
        width=args.width,
        cuda_graphs=args.cuda_graphs,
    )
    out: dict[str, object] = {"backend": args.backend, "weights": str(weights)}
    if args.backend == "tensorrt":
        from irstd_ros.inference.backends.tensorrt import TensorRTBackend

        backend = TensorRTBackend(model, info, options)
        out.update(backend.describe())
        out["files"] = [str(backend.path), str(backend.path) + ".json"]
    elif args.backend == "onnxruntime":
        from irstd_ros.inference.backends.graph_export import cached_onnx

        path = cached_onnx(model, info, options)
        out["files"] = [str(path), str(path) + ".json"]
    else:
        from irstd_ros.inference.backends.graph_export import export_openvino_ir

        path = export_openvino_ir(model, info, options)
        out["files"] = [str(path), str(path.with_suffix(".bin")), str(path) + ".json"]
    if args.json:
        print(json.dumps(out, default=str))
    else:
        for f in out["files"]:  # type: ignore[union-attr]
            print(f)
    return 0
