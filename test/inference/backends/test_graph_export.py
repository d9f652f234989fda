"""Cache location and pruning of exported graphs."""

from __future__ import annotations

import os
from pathlib import Path

from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.graph_export import CACHE_ENV, cache_root, prune_cache


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
