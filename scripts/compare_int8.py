#!/usr/bin/env python3
"""NNCF INT8 on OpenVINO against ONNX Runtime's static INT8 (``quantize_static``), same model,
same calibration frames, same threads: speed at 640x512 and accuracy on NUDT-SIRST test.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/compare_int8.py [--weights W] [--out DIR]

Both quantisers get the calibration crops of ``irstd export --backend openvino-int8``
(:func:`irstd_ros.tools.quantize.calibration_frames`) and keep the SGEM attention in FP32
(NNCF: ``IGNORED_PATTERNS``; ONNX Runtime: ``nodes_to_exclude`` = the attention nodes).
ONNX Runtime: QDQ format, uint8 activations, int8 per-channel weights, MinMax calibration
(its defaults apart from per-channel). Prints one JSON object. Written for the comparison
in docs/backends.md; not part of the package.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

THREADS = 2
SIZE = (512, 640)
CALLS = 30


def _ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _ort_predict(session):
    from scipy.special import expit

    from irstd_ros.core.padding import crop_to, network_input

    name = session.get_inputs()[0].name

    def predict(frame: np.ndarray) -> np.ndarray:  # the quantised graph's output: logits
        x, size = network_input(frame, 16)
        return np.asarray(expit(crop_to(session.run(None, {name: x})[0], size)[0, 0]), np.float32)

    return predict


def quantize_ort(onnx_path: Path, out: Path, inputs: list[np.ndarray]) -> Path:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x}

    def meta(node) -> str:
        return " ".join(p.value for p in node.metadata_props)

    graph = onnx.load(str(onnx_path))
    keep = ("sgem.q:", "sgem.k:", "sgem.v:", "sgem.restore:")
    exclude = [n.name for n in graph.graph.node if "blocks.SGEM/" in meta(n) and not any(k in meta(n) for k in keep)]
    quantize_static(
        str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
    )
    return out


def timed(predict, frame: np.ndarray) -> dict[str, float]:
    from irstd_ros.core.statistics import percentile

    for _ in range(3):
        predict(frame)
    times = []
    for _ in range(CALLS):
        t = time.perf_counter()
        predict(frame)
        times.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": percentile(times, 50.0), "p99_ms": percentile(times, 99.0)}


def score(predict, data, threshold: float) -> dict[str, float]:
    from irstd_ros.evaluation.metrics import MetricAccumulator

    acc = MetricAccumulator()
    for x, truth in data:
        acc.add(predict(x) > threshold, truth)
    r = acc.result()
    return {"pd": r["pd"], "iou": r["iou"]}


def main() -> None:
    from irstd_ros.checkpoint import load_checkpoint
    from irstd_ros.core.normalization import normalize
    from irstd_ros.data import DatasetSpec, find_pairs
    from irstd_ros.data.images import read_image, read_mask
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.graph_export import cached_onnx
    from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend
    from irstd_ros.inference.backends.openvino_int8 import (
        OpenVINOInt8Backend,
        build_int8,
        calibration_inputs,
    )
    from irstd_ros.inference.detector import default_model_path
    from irstd_ros.tools.bench import synthetic_frame
    from irstd_ros.tools.quantize import calibration_frames, default_datasets

    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/compare_int8"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    weights = args.weights or default_model_path()
    model, info, _ = load_checkpoint(weights)
    options = BackendOptions(cache_dir=str(args.out), threads=THREADS)
    datasets = default_datasets()
    frames = calibration_frames(info.norm, datasets)
    build_int8(model, info, options, frames)
    onnx_path = cached_onnx(model, info, options)
    t0 = time.perf_counter()
    ort_int8 = quantize_ort(onnx_path, args.out / "ort-int8.onnx", calibration_inputs(frames, info.model.stride))
    ort_quantize_s = time.perf_counter() - t0
    candidates = {
        "openvino fp32": OpenVINOBackend(model, info, options).predict,
        "openvino-int8 (NNCF)": OpenVINOInt8Backend(model, info, options).predict,
        "onnxruntime fp32": _ort_predict(_ort_session(onnx_path)),
        "onnxruntime int8 (quantize_static)": _ort_predict(_ort_session(ort_int8)),
    }
    frame = normalize(synthetic_frame(*SIZE), info.norm)
    nudt = datasets[0]
    data = [(normalize(read_image(i), info.norm), read_mask(m)) for i, m in find_pairs(DatasetSpec(nudt.root, "test"))]
    out = {"weights": str(weights), "threads": THREADS, "size": f"{SIZE[1]}x{SIZE[0]}",
           "loadavg": list(os.getloadavg()), "ort_quantize_s": round(ort_quantize_s, 1), "rows": {}}
    for name, predict in candidates.items():
        out["rows"][name] = {**timed(predict, frame), **score(predict, data, info.threshold)}
    out["loadavg_end"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
