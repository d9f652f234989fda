"""Fingerprints of compiled artefacts: creation, comparison, and the rebuild decision."""

from __future__ import annotations

import copy
import hashlib
import json
import logging

import torch

from irstd_ros.inference.backends import fingerprint
from irstd_ros.inference.backends.fingerprint import (
    FILE_DIGESTS,
    Fingerprint,
    differences,
    fingerprint_path,
    load_fingerprint,
    rebuild_reason,
    save_fingerprint,
    weights_digest,
)


def make_fp(**changes) -> Fingerprint:
    base = dict(
        backend="tensorrt",
        precision="fp16",
        input_shape=(1, 1, 512, 640),
        shape_range=((16, 16), (512, 640)),
        weights_sha256="ab" * 32,
        recipe="trt-dynamo-v1-fp16-half-model",
        versions={"torch": "2.13.0", "torch_tensorrt": "2.13.0", "tensorrt": "11.1.0"},
        device={"name": "NVIDIA H100", "compute_capability": "9.0"},
    )
    base.update(changes)
    return Fingerprint(**base)


def test_weights_digest_is_stable_and_sees_every_weight(tiny_model):
    model, info = tiny_model
    assert weights_digest(model, info) == weights_digest(copy.deepcopy(model), info)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    assert weights_digest(changed, info) != weights_digest(model, info)


def test_roundtrip_through_json(tmp_path):
    engine = tmp_path / "m.ep"
    engine.write_bytes(b"engine")
    fp = make_fp()
    path = save_fingerprint(engine, fp)
    assert path == fingerprint_path(engine) == tmp_path / "m.ep.json"
    assert load_fingerprint(engine) == fp
    assert json.loads(path.read_text())["device"]["compute_capability"] == "9.0"


def test_differences_name_each_field():
    expected = make_fp()
    found = make_fp(
        precision="fp32",
        input_shape=(1, 1, 256, 256),
        versions={"torch": "2.8.0", "torch_tensorrt": "2.8.0", "tensorrt": "10.3.0"},
        device={"name": "Orin", "compute_capability": "8.7"},
    )
    diff = differences(expected, found)
    assert "precision: fp32 -> fp16" in diff
    assert any(d.startswith("input_shape:") for d in diff)
    assert "versions.torch: 2.8.0 -> 2.13.0" in diff
    assert "device.compute_capability: 8.7 -> 9.0" in diff
    assert differences(expected, make_fp()) == []


def test_rebuild_reason(tmp_path):
    engine = tmp_path / "m.ep"
    fp = make_fp()
    assert "no compiled artefact" in rebuild_reason(engine, fp)
    engine.write_bytes(b"engine")
    assert "no readable fingerprint" in rebuild_reason(engine, fp)
    fingerprint_path(engine).write_text("{not json")
    assert "no readable fingerprint" in rebuild_reason(engine, fp)
    save_fingerprint(engine, make_fp(weights_sha256="cd" * 32))
    assert "weights_sha256" in rebuild_reason(engine, fp)
    save_fingerprint(engine, fp)
    assert rebuild_reason(engine, fp) is None


def test_a_fingerprint_of_the_wrong_shape_means_rebuild(tmp_path):
    """Valid JSON that is not a fingerprint (a hand edit, another tool's file) is unreadable:
    the artefact is rebuilt, never a crash."""
    engine = tmp_path / "m.ep"
    engine.write_bytes(b"engine")
    good = make_fp().to_dict()
    for bad in ([1, 2], {**good, "versions": ["torch"]}, {**good, "device": "H100"},
                {**good, "shape_range": [16, 16]}, {**good, "input_shape": None}):
        fingerprint_path(engine).write_text(json.dumps(bad))
        assert load_fingerprint(engine) is None, bad
        assert "no readable fingerprint" in rebuild_reason(engine, make_fp())


def test_the_fingerprint_records_the_digest_of_each_file(tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    xml.with_suffix(".bin").write_bytes(b"weights")
    save_fingerprint(xml, make_fp())
    stored = json.loads(fingerprint_path(xml).read_text())[FILE_DIGESTS]
    assert stored == {".xml": hashlib.sha256(b"<net/>").hexdigest(), ".bin": hashlib.sha256(b"weights").hexdigest()}
    assert load_fingerprint(xml) == make_fp()  # the digests are not a field: equal fingerprints still mean reuse
    assert rebuild_reason(xml, make_fp()) is None


def test_a_replaced_or_corrupt_file_is_not_trusted(tmp_path):
    """Another checkpoint's IR copied under this one's name (its fingerprint JSON kept) was
    loaded as it was: the wrong model, no targets. A truncated .bin failed on every start."""
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    xml.with_suffix(".bin").write_bytes(b"weights")
    save_fingerprint(xml, make_fp())
    xml.with_suffix(".bin").write_bytes(b"other weights")
    assert rebuild_reason(xml, make_fp()) == "m.bin changed since its fingerprint was written (a corrupt file, or another model's)"
    xml.with_suffix(".bin").write_bytes(b"weights")
    assert rebuild_reason(xml, make_fp()) is None
    xml.with_suffix(".bin").unlink()
    assert "cannot read the files of" in rebuild_reason(xml, make_fp())
    engine = tmp_path / "m.ep"
    engine.write_bytes(b"engine")
    save_fingerprint(engine, make_fp())
    engine.write_bytes(b"engin")
    assert rebuild_reason(engine, make_fp()).startswith("m.ep changed")
    # copied with its fingerprint to another cache or name (irstd bench reuses the default cache's INT8 IR)
    other = tmp_path / "other"
    other.mkdir()
    for path in (xml, xml.with_suffix(".bin")):
        path.write_bytes(b"<net/>" if path.suffix == ".xml" else b"weights")
    save_fingerprint(xml, make_fp())
    for path in (xml, xml.with_suffix(".bin"), fingerprint_path(xml)):
        (other / path.name.replace("m.", "n.")).write_bytes(path.read_bytes())
    assert rebuild_reason(other / "n.xml", make_fp()) is None


def test_a_fingerprint_without_digests_is_not_trusted(tmp_path):
    """Written before digests were recorded: nothing says the files are the ones it describes."""
    engine = tmp_path / "m.ep"
    engine.write_bytes(b"engine")
    fingerprint_path(engine).write_text(json.dumps(make_fp().to_dict()))
    assert load_fingerprint(engine) == make_fp()
    assert "records no digest of its files (written by an older version)" in rebuild_reason(engine, make_fp())


def test_an_unreadable_fingerprint_is_warned_about_once_without_promising_a_rebuild(tmp_path, caplog):
    """A choice of backend reads it twice (INT8: the recipe, then the check), and said it
    would be rebuilt where nothing rebuilds an INT8 IR but irstd export."""
    engine = tmp_path / "m.ep"
    engine.write_bytes(b"engine")
    fingerprint_path(engine).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger=fingerprint.__name__):
        for _ in range(3):
            assert "no readable fingerprint" in rebuild_reason(engine, make_fp())
            assert load_fingerprint(engine) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"unreadable fingerprint {fingerprint_path(engine)}") and "will be rebuilt" not in warning
    assert warning.endswith("the artefact is not used until it is rebuilt")
