"""``irstd export``: build a backend's artefact ahead of time into the engine cache.

* ``--backend tensorrt``: a Torch-TensorRT program for ``--height`` x ``--width`` and
  ``--precision`` with its fingerprint (needs an NVIDIA GPU and torch_tensorrt);
* ``--backend onnxruntime``: the ONNX graph (symbolic stride-multiple sizes);
* ``--backend openvino``: the OpenVINO IR (FP32 weights; ``--force`` converts it again);
* ``--backend openvino-int8``: the FP32 IR quantised to INT8 by NNCF, calibrated on the
  training splits of NUDT-SIRST and SIRST-v2 (``--nudt`` / ``--sirst``), and its measured
  accuracy delta against FP32 (:mod:`irstd_ros.tools.quantize`), which ``auto`` reads;
* ``--backend openvino-bf16``: nothing to build (bf16 compiles the FP32 IR with a
  precision hint), only bf16's accuracy delta against FP32, measured the same way and
  stored in the cache for ``auto``'s gate (needs a CPU with native bf16);
* ``--backend openvino-int8-bf16``: nothing to build either (the INT8 IR of ``--backend
  openvino-int8`` compiled with the bf16 hint): its accuracy delta against FP32, stored
  beside that IR (needs the IR and a CPU with native bf16).

``--out`` defaults to the node's cache (``model.cache_dir`` default), so a node started
afterwards with the same weights loads the artefact instead of building it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.cli._options import (
    add_json,
    add_threads,
    add_weights,
    check_dataset_dir,
    check_datasets_found,
    check_distinct_paths,
    check_output_dir,
    positive_int,
)
from irstd_ros.errors import BackendError, ConfigError
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.graph_export import cache_root
from irstd_ros.tools.quantize import ACCURACY_CONTROL, Int8Dataset, default_datasets

EXPORT_BACKENDS = ("tensorrt", "onnxruntime", "openvino", "openvino-int8", "openvino-bf16", "openvino-int8-bf16")
PRECISIONS = ("fp32", "fp16")
DEFAULT_PRECISION = "fp16"
DEFAULT_CALIBRATION = 300  # frames, both datasets (the most the export takes)
_ACCURACY = ("openvino-int8", "openvino-bf16", "openvino-int8-bf16")
DATASET_OPTIONS = {"NUDT-SIRST": "--nudt", "SIRST-v2": "--sirst"}  # default_datasets' name -> its option
# option (argparse dest) -> the backends whose export reads it; given for another, it would
# be ignored (e.g. --force does not rebuild a cached ONNX graph: the cache is keyed by the
# weights' digest), so it is refused
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "height": ("tensorrt",), "width": ("tensorrt",), "precision": ("tensorrt",),
    "cuda_graphs": ("tensorrt",),
    "nudt": _ACCURACY, "sirst": _ACCURACY, "force": (*_ACCURACY, "openvino"), "retime": _ACCURACY,
    "threads": _ACCURACY,
    "calibration": ("openvino-int8",), "accuracy_control": ("openvino-int8",),
    "no_measure": ("openvino-int8",),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="build a TensorRT engine / ONNX / OpenVINO IR (FP32, INT8) ahead of time, or measure bf16"
    )
    p.add_argument("--backend", required=True, choices=EXPORT_BACKENDS,
                   help="the backend whose artefact is built (openvino-bf16, openvino-int8-bf16: measured only)")
    p.add_argument("--height", type=positive_int, help="frame height the TensorRT engine is built for")
    p.add_argument("--width", type=positive_int, help="frame width the TensorRT engine is built for")
    p.add_argument("--precision", choices=PRECISIONS, help=f"TensorRT precision (default {DEFAULT_PRECISION})")
    add_weights(p)
    p.add_argument("--out", type=Path, help=f"output directory (default: {cache_root()})")
    p.add_argument("--cuda-graphs", action="store_true", help="tensorrt: check a CUDA-graph run")
    add_json(p)
    q = p.add_argument_group("openvino-int8 / openvino-bf16 / openvino-int8-bf16 (accuracy against FP32)")
    q.add_argument("--nudt", type=Path, help="NUDT-SIRST root (default: ../shared/data/NUDT-SIRST)")
    q.add_argument("--sirst", type=Path, help="SIRST-v2 root (default: ../shared/data/SIRST-v2)")
    q.add_argument("--calibration", type=int,
                   help=f"openvino-int8: calibration frames, both datasets (default and max {DEFAULT_CALIBRATION})")
    q.add_argument("--no-measure", action="store_true", help="openvino-int8: skip the INT8-vs-FP32 accuracy measurement")
    q.add_argument("--accuracy-control", choices=ACCURACY_CONTROL,
                   help="openvino-int8: auto (default): plain post-training quantisation, then NNCF's "
                   "accuracy control (layers that make INT8 disagree with FP32 on training crops kept FP32, "
                   "slower) only if the plain IR is out of tolerance; always; never")
    q.add_argument("--no-accuracy-control", dest="accuracy_control", action="store_const", const="never",
                   help="the same as --accuracy-control never")
    q.add_argument("--force", action="store_true",
                   help="rebuild and re-measure even when cached (openvino: convert the FP32 IR again)")
    q.add_argument("--retime", action="store_true",
                   help="time the speed on this CPU again (after a busy host), keeping the accuracy record")
    add_threads(q, "the accuracy measurement")
    p.set_defaults(func=run)


def check_applicable(args: argparse.Namespace) -> None:
    """:class:`ConfigError` for an option given that ``--backend``'s export does not read."""
    for dest, backends in APPLIES_TO.items():
        if getattr(args, dest) not in (None, False) and args.backend not in backends:
            option = "--" + dest.replace("_", "-")
            reason = ": its export is the measurement" if dest == "no_measure" and args.backend in _ACCURACY else ""
            raise ConfigError(f"{option} does not apply to {args.backend}{reason} (only to {', '.join(backends)})")


def run(args: argparse.Namespace) -> int:
    from irstd_ros.inference.detector import resolve_model_path

    check_applicable(args)
    check_output_dir(args.out, "--out")  # before the model is loaded and converted
    datasets = default_datasets(args.nudt, args.sirst) if args.backend in _ACCURACY else []
    roots = [(ds.root, DATASET_OPTIONS[ds.name]) for ds in datasets]
    if args.retime and not args.force:  # a recorded measurement timed again: no dataset read
        for root, option in roots:
            check_dataset_dir(root, option)
    else:  # found before the FP32 IR is converted, not after
        check_datasets_found(roots)
    check_distinct_paths([(args.out, "--out")], inputs=roots)
    if args.backend == "tensorrt" and (args.height is None or args.width is None):
        raise ConfigError("--backend tensorrt needs --height and --width (the frame size)")
    weights = resolve_model_path(args.weights)
    if args.backend == "openvino-int8":
        return _int8(args, weights, datasets)
    if args.backend == "openvino-bf16":
        return _bf16(args, weights, datasets)
    if args.backend == "openvino-int8-bf16":
        return _int8_bf16(args, weights, datasets)
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(
        precision=args.precision or DEFAULT_PRECISION,
        cache_dir=str(args.out) if args.out else None,
        height=args.height,
        width=args.width,
        cuda_graphs=args.cuda_graphs,
    )
    out: dict[str, object] = {"backend": args.backend, "weights": str(weights)}
    if args.backend == "tensorrt":
        from irstd_ros.inference.backends.tensorrt import TensorRTBackend

        backend = TensorRTBackend(model, info, options)
        if args.cuda_graphs:  # the check --cuda-graphs promises: one run at the frame size
            from irstd_ros.inference.backends.select import warm_up

            warm_up(backend, options)
        out.update(backend.describe())
        if out.get("engine_cached") is False:  # built, but the save failed: nothing exported
            raise BackendError(
                f"the TensorRT engine was built but could not be saved to {backend.path} "
                f"({out.get('engine_origin', 'see the warning above')}); check the cache "
                "folder (--out) is writable and has space"
            )
        files = [str(backend.path), str(backend.path) + ".json"]
    elif args.backend == "onnxruntime":
        from irstd_ros.inference.backends.graph_export import cached_onnx

        path = cached_onnx(model, info, options)
        files = [str(path), str(path) + ".json"]
    else:
        from irstd_ros.inference.backends.graph_export import export_openvino_ir

        path = export_openvino_ir(model, info, options, force=args.force)
        files = [str(path), str(path.with_suffix(".bin")), str(path) + ".json"]
    out["files"] = files
    if args.json:
        print(json.dumps(out, default=str))
    else:
        print("\n".join(files))
    return 0


def _int8(args: argparse.Namespace, weights: Path, datasets: list[Int8Dataset]) -> int:
    from irstd_ros.tools.quantize import export_int8

    calibration = DEFAULT_CALIBRATION if args.calibration is None else args.calibration
    if not 0 < calibration <= DEFAULT_CALIBRATION:
        raise ConfigError(f"--calibration must be in 1..{DEFAULT_CALIBRATION}, got {calibration}")
    out = export_int8(
        Path(weights), args.out, datasets, calibration,
        measure=not args.no_measure, force=args.force, threads=args.threads,
        accuracy_control=args.accuracy_control or "auto", retime=args.retime,
    )
    return _report(out, "INT8", args.json)


def _bf16(args: argparse.Namespace, weights: Path, datasets: list[Int8Dataset]) -> int:
    from irstd_ros.tools.quantize import export_bf16

    out = export_bf16(Path(weights), args.out, datasets, force=args.force,
                      threads=args.threads, retime=args.retime)
    return _report(out, "bf16", args.json)


def _int8_bf16(args: argparse.Namespace, weights: Path, datasets: list[Int8Dataset]) -> int:
    from irstd_ros.tools.quantize import export_int8_bf16

    out = export_int8_bf16(Path(weights), args.out, datasets, force=args.force,
                           threads=args.threads, retime=args.retime)
    return _report(out, "INT8+bf16", args.json)


def _report(out: dict, label: str, as_json: bool) -> int:
    """An accuracy export's result: one JSON object, or its files, deltas and ``auto`` line."""
    if as_json:
        print(json.dumps(out, default=str))
        return 0
    for f in out["files"]:
        print(f)
    for name, entry in (out.get("accuracy") or {}).get("datasets", {}).items():
        d = entry["delta"]
        pd, iou = (("n/a" if v is None else f"{v:+.2f}") for v in (d["pd_points"], d["iou_points"]))
        print(f"{name} {entry['split']}: {label} - FP32 Pd {pd}, IoU {iou} points")
    print(f"auto: {out['auto']}")
    return 0
