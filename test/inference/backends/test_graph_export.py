"""Cache location and pruning of exported graphs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support.files import record_syncs

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


def test_atomic_ir_syncs_the_bin_before_its_rename_and_the_folder_after(tmp_path, monkeypatch):
    """The .bin was renamed into place unsynced: a power cut could leave the new .xml
    naming an empty or old .bin (atomic_path syncs only its own temporary file)."""
    xml = tmp_path / "m.xml"
    events = record_syncs(monkeypatch)
    with atomic_ir(xml) as tmp:
        tmp.write_text("<net/>")
        tmp.with_suffix(".bin").write_bytes(b"weights")
    tmp_bin = tmp.with_suffix(".bin")
    assert events == [
        f"fsync {tmp_bin}",
        f"replace {tmp_bin.name}",
        f"fsync {tmp_path}",
        f"fsync {tmp}",
        f"replace {tmp.name}",
        f"fsync {tmp_path}",
    ]
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


# --- the cache folder, full disks, relative paths ------------------------------------------
def test_a_relative_cache_dir_is_made_absolute_where_it_is_decided(monkeypatch, tmp_path):
    """Left relative, it depended on the working directory at each later use, and was
    shown unresolved."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, "env_cache")
    assert cache_root() == tmp_path / "env_cache"
    assert cache_root(BackendOptions(cache_dir="opt/cache")) == tmp_path / "opt" / "cache"


def test_a_cache_dir_that_cannot_be_made_is_one_backend_error_and_auto_moves_on(tiny_model, tmp_path, monkeypatch,
                                                                                 caplog):
    """A file as the cache folder: FileExistsError with a traceback from a named backend,
    and auto's line said only "FileExistsError: [Errno 17] File exists"."""
    import logging

    pytest.importorskip("openvino")
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends import select
    from irstd_ros.inference.backends.graph_export import export_openvino_ir

    model, info = tiny_model
    blocker = tmp_path / "cache"
    blocker.write_text("a file")
    for folder in (blocker, blocker / "below"):
        with pytest.raises(BackendError, match=f"cannot create the cache directory {folder}: "):
            export_openvino_ir(model, info, BackendOptions(cache_dir=str(folder)))
    monkeypatch.setitem(select.CHOICES, "cpu", ("openvino", "torch-cpu"))
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("cpu", model, info, BackendOptions(cache_dir=str(blocker)))
    assert backend.name == "torch-cpu"
    assert f"openvino skipped: cannot create the cache directory {blocker}: a file of that name exists" in caplog.text


def _no_space(path) -> OSError:
    import errno

    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_a_full_disk_at_the_fingerprint_leaves_no_ir_and_says_so(tiny_model, tmp_path, monkeypatch):
    """The fingerprint was written outside the error handling: ENOSPC after the IR was
    written left an IR without a fingerprint (never used) and a traceback."""
    pytest.importorskip("openvino")
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends import graph_export

    def full(path, fp):
        raise _no_space(path)

    monkeypatch.setattr(graph_export, "save_fingerprint", full)
    model, info = tiny_model
    with pytest.raises(BackendError, match=r"No space left on device.* MB free in .*, the export needs about \d"):
        graph_export.export_openvino_ir(model, info, BackendOptions(cache_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []  # neither the IR nor a temporary file


def test_an_opaque_write_error_on_a_full_disk_says_the_disk_is_full(tiny_model, tmp_path, monkeypatch):
    """OpenVINO says "basic_ios::clear: iostream error" when the disk is full."""
    import shutil

    ov = pytest.importorskip("openvino")
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends import graph_export

    def save_model(model, path, **kwargs):
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1:\nbasic_ios::clear: iostream error")

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(ov, "save_model", save_model)
    monkeypatch.setattr(graph_export.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    model, info = tiny_model
    with pytest.raises(BackendError) as err:
        graph_export.export_openvino_ir(model, info, BackendOptions(cache_dir=str(tmp_path)))
    assert "basic_ios::clear: iostream error (probably no space left on device: 0.0 MB free in" in str(err.value)
    monkeypatch.setattr(graph_export.shutil, "disk_usage", lambda path: usage._replace(free=10**12))
    with pytest.raises(BackendError) as err:  # room enough: not blamed on the disk
        graph_export.export_openvino_ir(model, info, BackendOptions(cache_dir=str(tmp_path)))
    assert "space" not in str(err.value)


def test_a_full_disk_at_the_onnx_fingerprint_leaves_no_onnx_file(tiny_model, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends import graph_export

    def export(model, path, stride):
        Path(path).write_bytes(b"onnx")
        return Path(path)

    def full(path, fp):
        raise _no_space(path)

    monkeypatch.setattr(graph_export, "export_onnx", export)
    monkeypatch.setattr(graph_export, "save_fingerprint", full)
    model, info = tiny_model
    with pytest.raises(BackendError, match="writing ONNX model .* failed: .*No space left on device"):
        graph_export.cached_onnx(model, info, BackendOptions(cache_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_prune_tolerates_files_another_prune_deleted(tmp_path, monkeypatch):
    """Two processes pruning at once: stat of a file the other had just unlinked raised
    FileNotFoundError."""
    for age, digest in enumerate(["aaa", "bbb", "ccc"]):
        path = tmp_path / f"sgem_unet-{digest}.xml"
        path.write_text("x")
        os.utime(path, (1000 - age, 1000 - age))
    real_glob = Path.glob

    def glob(self, pattern):  # listed, then deleted by the other process before the stat
        yield from real_glob(self, pattern)
        if pattern.startswith("sgem_unet"):
            yield self / "sgem_unet-ddd.xml"

    monkeypatch.setattr(Path, "glob", glob)
    prune_cache(tmp_path, "sgem_unet", keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sgem_unet-aaa.xml"]


def test_prune_removes_the_temporary_files_of_killed_writes_only(tmp_path):
    """atomic_path's temporary files (.<name>.<pid>.tmp<suffix>) of a killed export were
    never removed: the prune's glob skips dot-files."""
    import subprocess
    import sys
    import time

    from irstd_ros.core.paths import atomic_path
    from irstd_ros.inference.backends.graph_export import (
        TEMP_GRACE_S,
        TEMP_MAX_AGE_S,
        temporary_writer,
    )

    with atomic_path(tmp_path / "sgem_unet-aaa.xml.json") as tmp:  # the names it makes are recognised
        assert temporary_writer(tmp) == os.getpid()
        tmp.write_text("{}")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = int(gone.stdout)
    now = time.time()

    def temporary(name: str, age: float) -> Path:
        path = tmp_path / name
        path.write_text("x")
        os.utime(path, (now - age, now - age))
        return path

    killed = [temporary(f".sgem_unet-aaa.{dead}.tmp.xml", TEMP_GRACE_S + 5),
              temporary(f".sgem_unet-aaa.{dead}.tmp.bin", TEMP_GRACE_S + 5),
              temporary(f".sgem_unet-aaa.{os.getpid()}.tmp.onnx", TEMP_MAX_AGE_S + 5)]  # pid reused since
    kept = [temporary(f".sgem_unet-aaa.{os.getpid()}.tmp.xml", TEMP_GRACE_S + 5),  # its writer is alive
            temporary(f".sgem_unet-bbb.{dead}.tmp.xml", 1.0),  # just written (another PID namespace?)
            temporary(".sgem_unet-notes.txt", TEMP_MAX_AGE_S + 5),  # not a temporary file
            temporary(f".other-aaa.{dead}.tmp.xml", TEMP_MAX_AGE_S + 5)]  # not this architecture's
    prune_cache(tmp_path, "sgem_unet")
    assert not any(p.exists() for p in killed)
    assert all(p.exists() for p in kept)


def test_prune_goes_on_past_a_file_it_cannot_delete(tmp_path, monkeypatch, caplog):
    """One try around every unlink: the first file that could not be deleted (another
    user's, a read-only mount) stopped the prune, the killed writes' temporary files too."""
    import logging
    import time

    from irstd_ros.inference.backends import graph_export
    from irstd_ros.inference.backends.graph_export import TEMP_MAX_AGE_S

    for age, digest in enumerate(["aaa", "bbb", "ccc"]):
        for suffix in (".xml", ".bin", ".xml.json"):
            path = tmp_path / f"sgem_unet-{digest}{suffix}"
            path.write_text("x")
            os.utime(path, (1000 - age, 1000 - age))  # aaa newest
    old = time.time() - TEMP_MAX_AGE_S - 5
    killed = tmp_path / f".sgem_unet-ccc.{os.getpid()}.tmp.xml"
    killed.write_text("x")
    os.utime(killed, (old, old))
    stuck = tmp_path / "sgem_unet-bbb.xml"
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with caplog.at_level(logging.WARNING, logger=graph_export.__name__):
        prune_cache(tmp_path, "sgem_unet", keep=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sgem_unet-aaa.bin", "sgem_unet-aaa.xml", "sgem_unet-aaa.xml.json", stuck.name]
    assert f"cannot delete {stuck}: [Errno 13] Permission denied" in caplog.text


def test_a_failed_rebuild_that_wrote_nothing_keeps_the_old_artefact(tmp_path):
    """`irstd export --force` whose conversion fails before writing anything lost the
    working IR (the failure removed the artefact's files); one that fails after writing
    removes the half-made artefact and its fingerprint, as before."""
    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends.fingerprint import fingerprint_path
    from irstd_ros.inference.backends.graph_export import writing_artifact

    xml = tmp_path / "sgem_unet-0123456789ab.xml"
    xml.write_text("<old/>")
    xml.with_suffix(".bin").write_bytes(b"old")
    fingerprint_path(xml).write_text("{}")
    with pytest.raises(BackendError), writing_artifact(xml, "OpenVINO IR", needed=1):
        raise RuntimeError("conversion failed")
    assert xml.read_text() == "<old/>" and fingerprint_path(xml).exists()
    with pytest.raises(BackendError), writing_artifact(xml, "OpenVINO IR", needed=1):
        xml.with_suffix(".bin").write_bytes(b"new, half")
        raise OSError(28, "No space left on device")
    assert not xml.exists() and not xml.with_suffix(".bin").exists() and not fingerprint_path(xml).exists()
