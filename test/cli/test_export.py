"""``irstd export``: ONNX / OpenVINO IR ahead of time; TensorRT without a GPU fails in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _support.cli import one_error_line, run_cli, run_cli_output

from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint
from irstd_ros.cli.export import EXPORT_BACKENDS
from irstd_ros.cli.main import main
from irstd_ros.inference.backends.fingerprint import load_fingerprint
from irstd_ros.models import build_model, named_config

EXPORT_SIZES = [(32, 32), (48, 80), (100, 130)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    cfg = named_config("tiny")
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_checkpoint(path, build_model(cfg).eval(), CheckpointInfo(cfg))


def test_tensorrt_without_gpu_is_one_readable_line(weights, tmp_path, capsys):
    pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = main(["export", "--backend", "tensorrt", "--height", "512", "--width", "640",
                 "--weights", str(weights), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("irstd export: error:"), err
    assert not any(tmp_path.iterdir())


def test_tensorrt_needs_the_frame_size(weights, capsys):
    assert main(["export", "--backend", "tensorrt", "--weights", str(weights)]) != 0
    assert "--height and --width" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_frame_size_below_one_is_named_not_taken_for_a_missing_one(value, weights, capsys):
    """``--height 0`` is a bad value of --height, not "needs --height and --width"."""
    code, err = run_cli(capsys, "export", "--backend", "tensorrt", "--height", value, "--width", "640",
                        "--weights", str(weights))
    assert code == 2
    assert f"argument --height: must be >= 1, got {value}" in one_error_line(err)


def test_onnx_export_runs_in_onnxruntime_at_several_sizes(weights, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    code = main(["export", "--backend", "onnxruntime", "--weights", str(weights),
                 "--out", str(tmp_path), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    onnx_path = out["files"][0]
    assert load_fingerprint(onnx_path).backend == "onnx"
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    from irstd_ros.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(weights)
    for h, w in EXPORT_SIZES:
        x = np.random.default_rng(0).random((1, 1, h, w), dtype=np.float32)
        (got,) = session.run(None, {"x": x})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == (1, 1, h, w)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_openvino_export_writes_fp32_ir(weights, tmp_path, capsys):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxscript")
    assert main(["export", "--backend", "openvino", "--weights", str(weights), "--out", str(tmp_path)]) == 0
    files = capsys.readouterr().out.split()
    xml, bin_, fp = files
    assert xml.endswith(".xml") and bin_.endswith(".bin") and fp.endswith(".xml.json")
    import openvino as ov

    model = ov.Core().read_model(xml)
    constants = {
        op.get_output_element_type(0).get_type_name()
        for op in model.get_ops()
        if op.get_type_name() == "Constant"
    }
    assert "f32" in constants and "f16" not in constants  # save_model would compress by default


@pytest.mark.parametrize("backend", EXPORT_BACKENDS)
def test_out_that_is_a_file_is_refused_before_the_export(backend, weights, tmp_path, capsys, monkeypatch):
    from irstd_ros.cli import export

    def no_loading(*_args, **_kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    from irstd_ros.tools import quantize

    monkeypatch.setattr(export, "load_checkpoint", no_loading)
    monkeypatch.setattr(quantize, "export_int8", no_loading)
    monkeypatch.setattr(quantize, "export_bf16", no_loading)
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    size = ["--height", "32", "--width", "32"] if backend == "tensorrt" else []
    code, err = run_cli(capsys, "export", "--backend", backend, *size,
                        "--weights", str(weights), "--out", str(a_file))
    assert code == 2
    assert one_error_line(err) == f"irstd export: error: --out {a_file}: is a file; give a directory"
    assert a_file.read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
def test_out_under_proc_is_refused_before_the_export(weights, capsys):
    code, err = run_cli(capsys, "export", "--backend", "onnxruntime", "--weights", str(weights),
                        "--out", "/proc/irstd-cache")
    assert code == 2
    assert one_error_line(err) == (
        "irstd export: error: --out /proc/irstd-cache cannot be created: directory /proc is not writable"
    )


class FakeTensorRT:
    """Stands in for TensorRTBackend (no GPU here): records the frames it is asked to run."""

    frames: list[tuple[int, ...]] = []
    fail = False

    def __init__(self, model, info, options) -> None:
        self.path = Path(options.cache_dir) / "engine.ep"

    def predict(self, frame):
        FakeTensorRT.frames.append(frame.shape)
        if FakeTensorRT.fail:
            raise RuntimeError("capture failed")
        return np.zeros(frame.shape, dtype=np.float32)

    def describe(self):
        return {"backend": "tensorrt"}


@pytest.mark.parametrize("fail", [False, True])
def test_tensorrt_cuda_graphs_runs_the_engine_once(fail, weights, tmp_path, capsys, monkeypatch):
    """``--cuda-graphs`` checks a CUDA-graph run: one predict at the export's frame size,
    and a run that fails is one error line."""
    from irstd_ros.inference.backends import tensorrt

    monkeypatch.setattr(tensorrt, "TensorRTBackend", FakeTensorRT)
    monkeypatch.setattr(FakeTensorRT, "frames", [])
    monkeypatch.setattr(FakeTensorRT, "fail", fail)
    code, err = run_cli(capsys, "export", "--backend", "tensorrt", "--height", "40", "--width", "56",
                        "--cuda-graphs", "--weights", str(weights), "--out", str(tmp_path))
    assert FakeTensorRT.frames == [(40, 56)]
    if fail:
        assert code != 0 and "capture failed" in one_error_line(err)
    else:
        assert code == 0, err


class UnsavedTensorRT(FakeTensorRT):
    def describe(self):
        return {"backend": "tensorrt", "engine_cached": False,
                "engine_origin": "built (12.0 s); not cached (OSError: [Errno 28] No space left on device)"}


def test_tensorrt_engine_that_could_not_be_saved_fails_the_export(weights, tmp_path, capsys, monkeypatch):
    """A built engine whose save failed runs from memory in a node, but an export that saved
    nothing listed the engine's files and exited 0."""
    from irstd_ros.inference.backends import tensorrt

    monkeypatch.setattr(tensorrt, "TensorRTBackend", UnsavedTensorRT)
    code, out, err = run_cli_output(capsys, "export", "--backend", "tensorrt", "--height", "40", "--width", "56",
                                    "--weights", str(weights), "--out", str(tmp_path))
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "built but could not be saved" in line and "No space left on device" in line


@pytest.mark.parametrize("value", ["0", "-1"])
def test_threads_below_one_is_refused_before_the_export(value, weights, tmp_path, capsys, monkeypatch):
    """Caught by the parser, not after minutes of quantisation when the first backend is
    compiled with a negative thread count."""
    from irstd_ros.tools import quantize

    def no_export(*_args, **_kwargs):
        raise AssertionError("the export ran")

    monkeypatch.setattr(quantize, "export_int8", no_export)
    code, err = run_cli(capsys, "export", "--backend", "openvino-int8", "--threads", value,
                        "--weights", str(weights), "--out", str(tmp_path))
    assert code == 2
    assert "--threads" in one_error_line(err)


@pytest.mark.parametrize(
    ("backend", "options", "named"),
    [
        ("onnxruntime", ["--force"], "--force does not apply to onnxruntime"),  # the cache is not rebuilt
        ("openvino", ["--precision", "fp32"], "--precision does not apply to openvino"),
        ("openvino", ["--threads", "3"], "--threads does not apply to openvino"),
        ("openvino-bf16", ["--calibration", "5"], "--calibration does not apply to openvino-bf16"),
        ("openvino-bf16", ["--no-accuracy-control"], "--accuracy-control does not apply to openvino-bf16"),
        ("openvino-int8", ["--height", "64"], "--height does not apply to openvino-int8"),
        ("tensorrt", ["--height", "64", "--width", "64", "--nudt", "x"], "--nudt does not apply to tensorrt"),
        ("onnxruntime", ["--cuda-graphs"], "--cuda-graphs does not apply to onnxruntime"),
    ],
)
def test_options_the_backend_does_not_read_are_refused_before_the_export(backend, options, named, weights,
                                                                         tmp_path, capsys):
    code, err = run_cli(capsys, "export", "--backend", backend, "--weights", str(weights),
                        "--out", str(tmp_path / "cache"), *options)
    assert code == 2 and named in one_error_line(err)
    assert not (tmp_path / "cache").exists()  # nothing built


def test_a_corrupt_openvino_ir_is_converted_again_and_force_applies(weights, tmp_path, capsys, caplog):
    """A truncated .bin failed every start ("Incorrect weights in bin file!") and the export
    printed the corrupt files and exited 0; --force was refused for openvino."""
    import logging

    ov = pytest.importorskip("openvino")
    from irstd_ros.inference.backends import graph_export

    args = ["export", "--backend", "openvino", "--weights", str(weights), "--out", str(tmp_path)]
    assert main(args) == 0
    xml, bin_, _ = (Path(f) for f in capsys.readouterr().out.split())
    good = bin_.read_bytes()
    bin_.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.INFO, logger=graph_export.__name__):
        assert main(args) == 0
    assert f"{bin_.name} changed since its fingerprint was written" in caplog.text
    assert bin_.read_bytes() == good
    ov.Core().compile_model(str(xml), "CPU")  # reads and compiles again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=graph_export.__name__):
        assert main([*args, "--force"]) == 0
    assert f"converting the model to OpenVINO IR {xml} (forced)" in caplog.text
