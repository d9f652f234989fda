"""Cache location and pruning of exported graphs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.graph_export import CACHE_ENV, atomic_ir, cache_root, prune_cache


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_root() == Path("~/.cache/irstd_ros").expanduser()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(BackendOptions(cache_dir=str(tmp_path / "opt"))) == tmp_path / "opt"


def test_prune_keeps_recent_weights_and_every_engine(tmp_path):
    for age, digest in enumerate(["aaa", "bbb", "ccc"]):
        for suffix in (".onnx", ".onnx.json", ".xml", ".bin", ".xml.json"):
            path = tmp_path / f"sgem_unet-{digest}{suffix}"
            path.write_text("x")
            os.utime(path, (1000 - age, 1000 - age))  # aaa newest
    engine = tmp_path / "sgem_unet-ccc-trt-fp16-512x640.ep"
    engine.write_text("x")
    (tmp_path / "sgem_unet-ccc-trt-fp16-512x640.ep.json").write_text("x")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    prune_cache(tmp_path, "sgem_unet", keep=2)
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(n.startswith("sgem_unet-ccc.") for n in names)
    assert {"sgem_unet-aaa.onnx", "sgem_unet-bbb.xml", engine.name, other.name} <= names


def test_prune_keeps_int8_irs_and_does_not_count_them_as_weights(tmp_path):
    """An INT8 IR takes calibration data and minutes to rebuild (irstd export): it is never
    pruned, and it is no other weights beside the FP32 IR of its own."""

    def write(name: str, age: int) -> Path:
        path = tmp_path / name
        path.write_text("x")
        os.utime(path, (1000 - age, 1000 - age))
        return path

    for age, digest in enumerate(["aaa", "bbb"]):  # two weights, aaa newest
        for suffix in (".xml", ".bin", ".xml.json"):
            write(f"sgem_unet-{digest}{suffix}", age)
    int8 = [write(f"sgem_unet-old-int8{s}", 5) for s in (".xml", ".bin", ".xml.json", ".xml.accuracy.json")]
    int8 += [write(f"sgem_unet-aaa-int8{s}", 0) for s in (".xml", ".bin", ".xml.json")]
    prune_cache(tmp_path, "sgem_unet", keep=2)
    names = {p.name for p in tmp_path.iterdir()}
    assert {p.name for p in int8} <= names
    assert {"sgem_unet-aaa.xml", "sgem_unet-bbb.xml", "sgem_unet-bbb.bin"} <= names  # 2 weights, keep=2


def test_atomic_ir_moves_the_bin_then_the_xml_and_leaves_nothing_on_failure(tmp_path):
    xml = tmp_path / "m.xml"
    with atomic_ir(xml) as tmp:
        tmp.write_text("<net/>")
        tmp.with_suffix(".bin").write_bytes(b"weights")
    assert xml.read_text() == "<net/>" and xml.with_suffix(".bin").read_bytes() == b"weights"
    with pytest.raises(RuntimeError, match="save failed"), atomic_ir(xml) as tmp:
        tmp.with_suffix(".bin").write_bytes(b"half")
        raise RuntimeError("save failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    assert xml.with_suffix(".bin").read_bytes() == b"weights"


def test_export_onnx_leaves_the_callers_model_as_it_was(tmp_path):
    """It called model.eval().float().cpu() on the caller's model: a training run or a half
    model exported for a cache came back in eval mode, FP32."""
    import torch

    pytest.importorskip("onnxscript")
    from irstd_ros.inference.backends.graph_export import export_onnx
    from irstd_ros.models import build_model, named_config

    model = build_model(named_config("lite")).train().to(torch.bfloat16)
    export_onnx(model, tmp_path / "m.onnx", named_config("lite").stride)
    assert model.training and next(model.parameters()).dtype == torch.bfloat16
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_another_models_ir_copied_under_this_name_is_converted_again(tiny_model, tmp_path, caplog):
    """Another checkpoint's .xml / .bin copied over this one's (its fingerprint JSON kept)
    ran as this model: the wrong probabilities, no targets, nothing said."""
    import copy
    import logging

    import numpy as np
    import torch

    pytest.importorskip("openvino")
    from irstd_ros.inference.backends import graph_export
    from irstd_ros.inference.backends.graph_export import export_openvino_ir
    from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend

    model, info = tiny_model
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.bias += 3.0
    options = BackendOptions(cache_dir=str(tmp_path), threads=1)
    mine, theirs = export_openvino_ir(model, info, options), export_openvino_ir(other, info, options)
    for suffix in (".xml", ".bin"):
        mine.with_suffix(suffix).write_bytes(theirs.with_suffix(suffix).read_bytes())
    with caplog.at_level(logging.INFO, logger=graph_export.__name__):
        backend = OpenVINOBackend(model, info, options)
    assert "changed since its fingerprint was written" in caplog.text
    frame = np.random.default_rng(0).random((32, 48), dtype=np.float32)
    with torch.no_grad():
        want = torch.sigmoid(model(torch.from_numpy(frame)[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(backend.predict(frame), want, atol=1e-5)
