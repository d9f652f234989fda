"""``openvino-int8``: the cached INT8 IR (built once, reused, rebuilt for new weights or a
changed fingerprint), the accuracy gate of ``auto`` / ``cpu`` with its FP32 fallback, and
the parity of INT8 probabilities with FP32 on a small synthetic model.

The cache and gate tests replace NNCF by a copy of the FP32 IR (``fake_quantize`` in
conftest.py: what is tested is the bookkeeping, not the quantiser); the parity test runs
NNCF for real.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from _support.openvino import assert_int8_parity, measured_datasets, spiky_frames, spread_logits

pytest.importorskip("openvino")

from irstd_ros.errors import BackendError  # noqa: E402
from irstd_ros.inference.backends import fingerprint, select  # noqa: E402
from irstd_ros.inference.backends import openvino_int8 as int8  # noqa: E402
from irstd_ros.inference.backends.base import BackendOptions  # noqa: E402
from irstd_ros.inference.backends.fingerprint import fingerprint_path  # noqa: E402
from irstd_ros.inference.backends.graph_export import export_openvino_ir  # noqa: E402

CALIB_SIDE = 32
CALIB_FRAMES = 8


def _frames(n: int, h: int = CALIB_SIDE, w: int = CALIB_SIDE, seed: int = 0) -> list[np.ndarray]:
    return spiky_frames(n, h, w, seed)


def _record(digest: str, conditions: dict, pd: float = 0.0, iou: float = 0.0, datasets=int8.REQUIRED_DATASETS) -> dict:
    return {
        "weights_sha256": digest,
        "conditions": conditions,
        "recipe": int8.INT8_RECIPE,
        "datasets": measured_datasets(pd, iou, datasets),
    }


def _covering(dataset: str = "SIRST-v2", drop: tuple[str, ...] = (), **fields) -> dict:
    """A record within tolerance whose ``dataset`` entry has other ``fields`` (counts,
    split, limit, runs) and lacks those in ``drop``."""
    record = _record("abc", GATE)
    entry = record["datasets"][dataset]
    entry.update(fields)
    for key in drop:
        del entry[key]
    return record


def _older(counts: dict[str, dict] | None) -> dict:
    """A record as exports before the ``frames`` / ``targets`` fields wrote it: per dataset
    the counts only in its runs' metrics (``counts[name]``: images, targets), or none."""
    record = _record("abc", GATE)
    for name, entry in record["datasets"].items():
        for key in ("frames", "targets"):
            del entry[key]
        if counts is not None:
            entry["fp32"] = {"pd": 0.9, **counts[name]}
            entry["int8"] = {"pd": 0.9, **counts[name]}
    return record


FULL = {"NUDT-SIRST": {"images": 664, "targets": 945}, "SIRST-v2": {"images": 164, "targets": 144}}


GATE = {"threshold": 0.5, "norm": {"kind": "robust", "knee": 4.0}}  # the gate compares, whatever the fields


def _opts(cache: Path) -> BackendOptions:
    return BackendOptions(cache_dir=str(cache), threads=1)


# --- the artefact cache -----------------------------------------------------------------------
def test_built_once_then_reused(tiny_model, cache, fake_quantize):
    model, info = tiny_model
    path, built = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    assert built and path.is_file() and fingerprint_path(path).is_file() and fake_quantize == [CALIB_FRAMES]
    mtime = path.stat().st_mtime_ns

    def must_not_read():
        raise AssertionError("calibration frames read for a cached IR")

    again, built = int8.build_int8(model, info, _opts(cache), must_not_read)
    assert again == path and not built and fake_quantize == [CALIB_FRAMES]
    assert path.stat().st_mtime_ns == mtime
    fp = json.loads(fingerprint_path(path).read_text())
    assert fp["backend"] == "openvino-int8" and fp["precision"] == "int8" and fp["recipe"] == int8.INT8_RECIPE


def test_new_weights_build_a_new_artefact(tiny_model, cache, fake_quantize):
    model, info = tiny_model
    first, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        retrained.head.bias += 0.25
    second, built = int8.build_int8(retrained, info, _opts(cache), _frames(CALIB_FRAMES))
    assert built and second != first and first.is_file() and len(fake_quantize) == 2
    # each IR is found only for its own weights
    assert int8.cached_int8(model, info, _opts(cache))[0] == first
    assert int8.cached_int8(retrained, info, _opts(cache))[0] == second


def test_fingerprint_mismatch_rebuilds_and_drops_the_old_accuracy(tiny_model, cache, fake_quantize, caplog):
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, _record(digest, int8.measurement_conditions(info)))
    stored = json.loads(fingerprint_path(path).read_text())
    stored["versions"]["openvino"] = "2020.1.0"
    fingerprint_path(path).write_text(json.dumps(stored))
    # loading refuses it and says which field differs
    with pytest.raises(BackendError, match=r"versions\.openvino: 2020\.1\.0 ->"):
        int8.cached_int8(model, info, _opts(cache))
    assert "versions.openvino" in int8.auto_refusal(model, info, _opts(cache))
    # the export rebuilds it; the accuracy measured on the old IR no longer applies
    with caplog.at_level(logging.INFO, logger=int8.__name__):
        _, built = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    assert built and len(fake_quantize) == 2 and "fingerprint mismatch" in caplog.text
    assert int8.load_accuracy(path) is None
    assert int8.cached_int8(model, info, _opts(cache))[0] == path


def test_same_weights_under_another_normalisation_are_quantised_again(tiny_model, cache, fake_quantize):
    """The calibration frames are normalised by the checkpoint's rule: the same weights
    saved with another normalisation (or threshold) must not reuse ranges measured under
    the first one, and each keeps its own IR (named by weights and conditions: one file
    for both made each export overwrite the other's INT8)."""
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    other = dataclasses.replace(info, norm=dataclasses.replace(info.norm, knee=info.norm.knee * 2.0))
    recalibrated = dataclasses.replace(info, threshold=0.3)
    other_path = int8.int8_path(model, other, _opts(cache))[0]
    assert len({path, other_path, int8.int8_path(model, recalibrated, _opts(cache))[0]}) == 3
    with pytest.raises(BackendError, match="no INT8 IR for these weights, threshold and normalisation"):
        int8.cached_int8(model, other, _opts(cache))
    _, built = int8.build_int8(model, other, _opts(cache), _frames(CALIB_FRAMES))
    assert built and len(fake_quantize) == 2
    # both coexist in one cache
    assert int8.cached_int8(model, other, _opts(cache))[0] == other_path
    assert int8.cached_int8(model, info, _opts(cache))[0] == path
    # an IR named by the weights alone (before the conditions were in the name) is pointed at
    weights_only = int8.int8_path(model, info, _opts(cache))[1][:12]
    legacy = path.with_name(path.name.replace(path.name.split("-")[1], weights_only))
    path.rename(legacy)
    with pytest.raises(BackendError, match=f"{legacy.name} is named by the weights alone"):
        int8.cached_int8(model, info, _opts(cache))
    legacy.rename(path)
    # an IR whose fingerprint predates the conditions is rebuilt once, too
    stored = json.loads(fingerprint_path(other_path).read_text())
    del stored["conditions"]
    fingerprint_path(other_path).write_text(json.dumps(stored))
    with pytest.raises(BackendError, match=r"conditions\.norm: None ->"):
        int8.cached_int8(model, other, _opts(cache))


def test_a_foreign_or_corrupt_int8_ir_is_refused_and_auto_keeps_fp32(tiny_model, cache, fake_quantize, choose_cpu):
    """Another checkpoint's INT8 IR copied under this one's name (its fingerprint and record
    kept) was run as these weights' INT8; a truncated .bin made every start fail. The
    digests in the fingerprint refuse both: FP32 runs and the line says what to rebuild."""
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, _record(digest, int8.measurement_conditions(info)))
    assert choose_cpu(model, info, _opts(cache))[0].name == "openvino-int8"
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        retrained.head.bias += 0.25
    foreign = export_openvino_ir(retrained, info, _opts(cache))
    for suffix in (".xml", ".bin"):
        path.with_suffix(suffix).write_bytes(foreign.with_suffix(suffix).read_bytes())
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert "openvino-int8 skipped: " in line and "changed since its fingerprint was written" in line
    assert "irstd export --backend openvino-int8" in line
    with pytest.raises(BackendError, match="changed since its fingerprint was written"):
        select.create_backend("openvino-int8", model, info, _opts(cache))
    # the export rebuilds it
    _, built = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    assert built and int8.cached_int8(model, info, _opts(cache))[0] == path
    path.with_suffix(".bin").write_bytes(path.with_suffix(".bin").read_bytes()[:100])  # truncated
    assert "int8.bin changed" in int8.auto_refusal(model, info, _opts(cache))


def test_the_head_and_for_global_inputs_the_first_layer_stay_fp32(tiny_model, fp32_ir):
    """The head, and with ``input_layer`` the convolutions reading the frame (first conv
    and its 1x1 shortcut), are found by graph structure, not by generated node names."""
    import openvino as ov

    xml = next(fp32_ir.glob("*.xml"))
    graph = ov.Core().read_model(str(xml))
    names = int8.fp32_convolutions(graph, input_layer=True)
    assert len(names) == 3
    ops = {op.get_friendly_name(): op for op in graph.get_ordered_ops()}
    assert [ops[n].input_value(0).get_node().get_type_name() for n in names[:2]] == ["Parameter"] * 2
    head = ops[names[2]]
    assert head.get_output_partial_shape(0)[1].get_length() == 1  # one logit channel
    assert "head" in names[2]
    assert int8.fp32_convolutions(graph) == names[2:]  # robust inputs: only the head


def test_the_head_is_found_behind_pixel_shuffle_and_a_calibration_knee(fast_model, tmp_path):
    """``stem: 2`` models put pixel_shuffle (Reshape, Transpose, Reshape), the refinement's
    Add and a two-piece calibration's Minimum between the head and the output."""
    import openvino as ov

    model, info = fast_model
    xml = export_openvino_ir(model, info, BackendOptions(cache_dir=str(tmp_path)))
    graph = ov.Core().read_model(str(xml))
    names = int8.fp32_convolutions(graph)
    ops = {op.get_friendly_name(): op for op in graph.get_ordered_ops()}
    convs = [op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "Convolution"]
    (head,) = [n for n in names if "head" in n]
    assert ops[head].get_output_partial_shape(0)[1].get_length() == 4  # the logits of one 2x2 cell
    # and the refinement's last conv, which adds its logit correction; nothing else
    assert len(names) == 2 and all(ops[n].get_output_partial_shape(0)[1].get_length() in (1, 4) for n in names)
    assert len(convs) > 10


def test_the_first_layer_is_quantised_for_robust_inputs_only(tiny_model, cache, monkeypatch):
    """build_int8 keeps the first layer FP32 for [0, 1]-scaled (``global``) inputs only."""
    from irstd_ros.checkpoint import CheckpointInfo, InputNorm

    kept: list[bool] = []

    def fake(fp32_xml, calibration, out_xml, validation=None, input_layer_fp32=False, **_):
        kept.append(input_layer_fp32)
        import shutil

        shutil.copy(fp32_xml, out_xml)
        shutil.copy(Path(fp32_xml).with_suffix(".bin"), Path(out_xml).with_suffix(".bin"))
        return Path(out_xml)

    monkeypatch.setattr(int8, "quantize_ir", fake)
    model, info = tiny_model
    int8.build_int8(model, info, _opts(cache), _frames(2))  # TEST_NORM: global
    robust = CheckpointInfo(info.model, InputNorm(kind="robust"), threshold=0.3)
    int8.build_int8(model, robust, _opts(cache), _frames(2), force=True)
    assert kept == [True, False]


def _input_quantizers(xml: Path) -> list:
    """The FakeQuantize nodes reading the model's input directly."""
    import openvino as ov

    graph = ov.Core().read_model(str(xml))
    return [
        t.get_node()
        for p in graph.get_parameters()
        for t in p.output(0).get_target_inputs()
        if t.get_node().get_type_name() == "FakeQuantize"
    ]


def test_activation_ranges_hold_the_brightest_calibration_frame(tiny_model, fp32_ir, tmp_path):
    """Ranges are the extremes over all calibration frames (MINMAX): with NNCF's default
    mean of per-frame ranges, one frame with a bright target would be clipped. The input
    is quantised unless the first layer is kept FP32."""
    pytest.importorskip("nncf")
    xml = next(fp32_ir.glob("*.xml"))
    frames = _frames(CALIB_FRAMES, 64, 64)
    frames[3][10, 10] = 40.0  # one bright target, far above every other frame's maximum
    calibration = int8.calibration_inputs(frames, 16)
    quantised = int8.quantize_ir(xml, calibration, tmp_path / "q.xml")
    (fq,) = {n.get_friendly_name(): n for n in _input_quantizers(quantised)}.values()
    low = float(fq.input_value(1).get_node().get_data().min())
    high = float(fq.input_value(2).get_node().get_data().max())
    assert high >= 40.0 * 0.999 and low <= min(float(f.min()) for f in frames) * 0.999
    kept = int8.quantize_ir(xml, calibration, tmp_path / "k.xml", input_layer_fp32=True)
    assert _input_quantizers(kept) == []


# --- the accuracy gate ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, "no accuracy record"),
        ({**_record("abc", GATE), "weights_sha256": "other"}, "other weights"),
        ({**_record("abc", GATE), "recipe": "old"}, "recipe"),
        (_record("abc", {**GATE, "threshold": 0.4}), "measured under {'threshold': 0.4"),
        (_record("abc", GATE, datasets=("NUDT-SIRST",)), "SIRST-v2 not measured"),
        (_record("abc", GATE, pd=-0.6), "Pd -0.60 points"),
        (_record("abc", GATE, iou=-1.2), "IoU -1.20 points"),
        (_record("abc", GATE, pd=+1.4, iou=+2.0), None),  # a gain is not a loss
        (_record("abc", GATE, pd=None), "Pd undefined"),
        (_record("abc", GATE, pd=-0.5, iou=-1.0), None),
        (_record("abc", GATE, pd=0.3, iou=0.4), None),
        # JSON holds NaN and Infinity; NaN < -tol is False, and +inf is no gain
        (_record("abc", GATE, pd=float("nan")), "NUDT-SIRST Pd nan is not a finite delta"),
        (_record("abc", GATE, iou=float("inf")), "SIRST-v2 IoU inf is not a finite delta"),
        (_record("abc", GATE, pd=float("-inf")), "Pd -inf is not a finite delta"),
    ],
)
def test_accuracy_gate(record, expected):
    reason = int8.accuracy_refusal(record, "abc", GATE)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


COVERAGE_REFUSED = "the accuracy record does not cover the whole held-out splits: "


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (_covering(), None),
        (_covering(frames=200, targets=150), None),  # a larger copy of the split
        # the audit's record: an export on a few frames of each split, delta 0 (the network found nothing)
        (_covering(frames=6, targets=13), "SIRST-v2 val: 6 frames with 13 targets scored, fewer than the whole "
                                          "split's 164 frames with 144 targets"),
        (_covering(targets=100), "100 targets scored"),
        (_covering(limit=100), "SIRST-v2 measured with a frame limit (100), not on the whole val split"),
        (_covering(split="train"), "SIRST-v2 measured on split 'train', not its held-out 'val'"),
        (_covering(frames="164"), "SIRST-v2 unverified: unreadable counts of frames and targets ('164', 144)"),
        (_covering(drop=("frames", "targets")), "SIRST-v2 unverified: the record does not say how many frames"),
        (_covering(fp32={"images": 164, "targets": 144}, int8={"images": 100, "targets": 90}),
         "SIRST-v2 unverified: its runs scored different frames (100 / 90, 164 / 144)"),
        # written before the frames / targets fields: the counts of its runs are read
        (_older(FULL), None),
        (_older({**FULL, "SIRST-v2": {"images": 6, "targets": 13}}), "SIRST-v2 val: 6 frames with 13 targets"),
        (_older(None), "NUDT-SIRST unverified: the record does not say how many frames and targets it scored"),
    ],
)
def test_accuracy_gate_requires_the_whole_held_out_splits(record, expected):
    """A delta measured on a part of a split (or on a record that does not say) is refused
    whatever its size, before the tolerance is applied; the reason names the export."""
    reason = int8.accuracy_refusal(record, "abc", GATE)
    if expected is None:
        assert reason is None and int8.coverage_refusal(record) is None
    else:
        assert reason.startswith(COVERAGE_REFUSED) and expected in reason, reason
        assert reason.endswith("(irstd export --backend openvino-int8 measures them)")


def test_a_partial_record_out_of_tolerance_says_it_is_partial():
    record = _covering(frames=6, targets=13)
    record["datasets"]["SIRST-v2"]["delta"]["pd_points"] = -5.0
    reason = int8.accuracy_refusal(record, "abc", GATE)
    assert reason.startswith(COVERAGE_REFUSED) and "tolerance" not in reason


def test_a_partial_record_keeps_cpu_on_fp32_and_says_why(tiny_model, cache, fake_quantize, choose_cpu):
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    record = _record(digest, int8.measurement_conditions(info))
    record["datasets"]["NUDT-SIRST"].update(frames=6, targets=11)
    int8.save_accuracy(path, record)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert ("openvino-int8 skipped: the accuracy record does not cover the whole held-out splits: NUDT-SIRST test: "
            "6 frames with 11 targets scored, fewer than the whole split's 664 frames with 945 targets") in line


def test_recorded_speed_is_read_for_this_cpu_and_the_reference_size_only():
    from irstd_ros.inference.resources import cpu_identity

    here = {"cpu": cpu_identity(), "size": list(int8.SPEED_SIZE), "p50_ms": 28.5}
    assert int8.recorded_speed({"speed": here}) == 28.5
    assert int8.recorded_speed({"speed": {**here, "cpu": "another CPU, 2 cores"}}) is None
    assert int8.recorded_speed({"speed": {**here, "size": [256, 256]}}) is None
    assert int8.recorded_speed({"speed": {**here, "p50_ms": None}}) is None
    assert int8.recorded_speed({}) is None and int8.recorded_speed(None) is None
    assert int8.recorded_speeds({"speed": here}) == (28.5, None, None)  # FP32 not timed
    assert int8.recorded_speeds({"speed": {**here, "fp32_p50_ms": 57.0}}) == (28.5, 57.0, 0.5)  # no rounds
    rounds = int8.recorded_speeds({"speed": {**here, "fp32_p50_ms": 57.0, "ratio": 0.42}})
    assert rounds == int8.RecordedSpeed(p50_ms=28.5, fp32_p50_ms=57.0, ratio=0.42)  # the rounds' own


def test_cpu_without_artefact_stays_fp32_and_says_so(tiny_model, cache, choose_cpu):
    model, info = tiny_model
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert "openvino-int8 skipped: no INT8 IR for these weights" in line
    assert "irstd export --backend openvino-int8" in line


def test_cpu_with_out_of_tolerance_delta_stays_fp32(tiny_model, cache, fake_quantize, choose_cpu):
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, _record(digest, int8.measurement_conditions(info), pd=-1.5))
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert "openvino-int8 skipped: accuracy delta vs FP32 out of tolerance" in line
    assert "NUDT-SIRST Pd -1.50 points" in line


def test_cpu_without_accuracy_record_stays_fp32(tiny_model, cache, fake_quantize, choose_cpu):
    model, info = tiny_model
    int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino" and "no accuracy record" in line


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-bf16"])
def test_cpu_uses_int8_within_tolerance(tiny_model, cache, fake_quantize, choose_cpu, native, monkeypatch):
    from irstd_ros.inference.backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: native)
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, _record(digest, int8.measurement_conditions(info), pd=-0.2, iou=-0.5))
    backend, line = choose_cpu(model, info, _opts(cache))
    # only the bf16 paths come first: no accuracy record of theirs, or no native bf16
    assert backend.name == "openvino-int8" and "openvino-int8 skipped" not in line
    why = "no accuracy record" if native else "no native bf16 on this CPU"
    assert f"(cpu: openvino-int8-bf16 skipped: {why}" in line and f"; openvino-bf16 skipped: {why}" in line
    assert backend.describe()["accuracy_delta"].startswith("NUDT-SIRST Pd -0.20 IoU -0.50")
    assert line.endswith("; recorded accuracy vs FP32: NUDT-SIRST Pd -0.20 IoU -0.50, SIRST-v2 Pd -0.20 IoU -0.50)")
    assert backend.predict(np.zeros((40, 56), np.float32)).shape == (40, 56)


def test_the_gate_takes_a_record_of_the_irs_own_recipe_and_files_only(tiny_model, cache, fake_quantize, choose_cpu):
    """A record of the plain recipe passed for an accuracy-controlled IR (any recipe of
    INT8_RECIPES was taken), and nothing tied a record to the IR files it measured."""
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES), validation=lambda: _frames(4, seed=1))
    assert fingerprint.load_fingerprint(path).recipe == int8.INT8_RECIPE_AC
    digest = int8.int8_path(model, info, _opts(cache))[1]
    record = _record(digest, int8.measurement_conditions(info))  # the plain recipe's
    int8.save_accuracy(path, record)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert f"openvino-int8 skipped: the accuracy record is for recipe {int8.INT8_RECIPE!r}" in line
    record["recipe"] = int8.INT8_RECIPE_AC  # a record written before IR_DIGESTS: taken on its recipe
    int8.save_accuracy(path, record)
    assert int8.auto_refusal(model, info, _opts(cache)) is None
    int8.save_accuracy(path, {**record, int8.IR_DIGESTS: fingerprint.file_digests(path)})
    assert int8.auto_refusal(model, info, _opts(cache)) is None
    int8.save_accuracy(path, {**record, int8.IR_DIGESTS: {".xml": "0" * 64, ".bin": "0" * 64}})
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert f"openvino-int8 skipped: the accuracy record was measured on other files than the INT8 IR {path.name}" in line


def test_named_int8_without_artefact_is_an_error(tiny_model, cache):
    model, info = tiny_model
    with pytest.raises(BackendError, match="irstd export --backend openvino-int8"):
        select.create_backend("openvino-int8", model, info, _opts(cache))


def test_named_int8_out_of_tolerance_runs_with_a_warning(tiny_model, cache, fake_quantize, caplog):
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, _record(digest, int8.measurement_conditions(info), iou=-3.0))
    with caplog.at_level(logging.WARNING, logger=int8.__name__):
        backend = select.create_backend("openvino-int8", model, info, _opts(cache))
    assert backend.name == "openvino-int8" and "IoU -3.00 points" in caplog.text


# --- parity with FP32 (real NNCF) -------------------------------------------------------------
def test_int8_probabilities_are_close_to_fp32(tiny_model, cache):
    pytest.importorskip("nncf")
    from irstd_ros.inference.backends.openvino_backend import OpenVINOBackend

    model, info = tiny_model
    model = spread_logits(model, _frames(1, 64, 64, seed=9)[0])
    path, built = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES * 2, 64, 64))
    assert built
    fp32 = OpenVINOBackend(model, info, _opts(cache))
    q = select.create_backend("openvino-int8", model, info, _opts(cache))
    for frame in _frames(3, 48, 80, seed=5):
        assert_int8_parity(fp32.predict(frame), q.predict(frame))


def test_iou_validation_scores_each_item_at_the_threshold():
    class Compiled:  # an OpenVINO CompiledModel's call: outputs by index
        def __call__(self, x):
            return [x * 10.0 - 5.0]  # logit > 0 where the input is above 0.5

    truth = np.zeros((4, 6), bool)
    truth[1:3, 1:3] = True
    x = np.zeros((1, 1, 8, 8), np.float32)  # padded to the stride at the bottom/right
    x[0, 0, 1:3, 1:2] = 1.0  # half the target found
    x[0, 0, 6:, 6:] = 1.0  # a response in the padding does not count
    empty = (np.zeros((1, 1, 8, 8), np.float32), np.zeros((4, 6), bool))
    mean, values = int8.iou_validation(0.0)(Compiled(), [(x, truth), empty])
    assert values == [0.5, 1.0] and mean == 0.75
    assert int8.iou_validation(6.0)(Compiled(), [(x, truth)])[1] == [0.0]  # a higher threshold finds nothing


def test_accuracy_control_reverts_layers_until_int8_agrees_with_fp32(tiny_model, fp32_ir, tmp_path):
    """NNCF's accuracy control for real: with at most 1 % drop allowed against FP32's own
    masks, it must keep more of the network FP32 than the plain recipe does, and the
    result must agree with FP32 on the validation frames within that drop. (With no drop
    allowed it reverts until full agreement: the same check, five times the time.)"""
    pytest.importorskip("nncf")
    import openvino as ov

    model, info = tiny_model
    model = spread_logits(model, _frames(1, 64, 64, seed=9)[0])
    options = BackendOptions(cache_dir=str(tmp_path), threads=1)
    xml = export_openvino_ir(model, info, options)
    calibration = int8.calibration_inputs(_frames(CALIB_FRAMES, 64, 64), 16)
    validation = int8.calibration_inputs(_frames(4, 64, 64, seed=3), 16)
    # the first layer FP32 as for this model's global normalisation: fewer layers to rank
    plain = int8.quantize_ir(xml, calibration, tmp_path / "plain.xml", input_layer_fp32=True)
    controlled = int8.quantize_ir(xml, calibration, tmp_path / "ac.xml", validation, max_drop=0.01, input_layer_fp32=True)

    def fake_quantize_nodes(path):
        return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(path)).get_ops())

    assert fake_quantize_nodes(controlled) < fake_quantize_nodes(plain)
    # FP32 for the non-quantised ops, as the backend and NNCF's validation run them (the
    # CPU plugin's default is bf16 on CPUs with native bf16, whose rounding flips pixels).
    core, fp32 = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}
    ref = core.compile_model(str(xml), "CPU", fp32)
    got = core.compile_model(str(controlled), "CPU", fp32)
    mean, _ = int8.iou_validation(0.0)(got, [(x, np.asarray(ref(x)[0])[0, 0] > 0.0) for x in validation])
    assert mean >= 0.99


MALFORMED_DATASETS = [[], {"NUDT-SIRST": []}, {"NUDT-SIRST": {"delta": [0.0]}},
                      {"NUDT-SIRST": {"delta": {"pd_points": "n/a", "iou_points": 0.0}}}]


@pytest.mark.parametrize("datasets", MALFORMED_DATASETS)
def test_a_malformed_accuracy_record_is_no_record(datasets, tiny_model, cache, fake_quantize, choose_cpu, caplog):
    """Valid JSON that is not an accuracy record (a hand edit) is read as none: the gate
    refuses, the named backend starts and describes itself, nothing crashes."""
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, {**_record(digest, int8.measurement_conditions(info)), "datasets": datasets})
    assert int8.load_accuracy(path) is None
    assert int8.auto_refusal(model, info, _opts(cache)).startswith("no accuracy record")
    backend = select.create_backend("openvino-int8", model, info, _opts(cache))
    assert backend.describe()["accuracy_delta"] == "not measured"


def test_a_nan_delta_in_the_record_keeps_fp32(tiny_model, cache, fake_quantize, choose_cpu):
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, _record(digest, int8.measurement_conditions(info), pd=float("nan")))
    assert "NaN" in int8.accuracy_path(path).read_text()  # as json writes it
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino" and "NUDT-SIRST Pd nan is not a finite delta" in line


@pytest.mark.parametrize("text", ["{not json", ""])
def test_a_record_that_is_not_json_is_warned_about_once_per_choice(text, tiny_model, cache, fake_quantize,
                                                                   choose_cpu, caplog):
    """It gave no warning at all; a malformed one gave two per choice (speeds, then the gate)."""
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    int8.accuracy_path(path).write_text(text)

    def warnings_of_a_choice() -> tuple[str, list[str]]:
        with caplog.at_level(logging.WARNING, logger=int8.__name__):
            backend, line = choose_cpu(model, info, _opts(cache))
        assert backend.name == "openvino"
        return line, [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    line, warnings = warnings_of_a_choice()
    assert "openvino-int8 skipped: no accuracy record" in line
    assert len(warnings) == 1 and warnings[0].startswith(f"unreadable accuracy record {int8.accuracy_path(path)} (")
    assert warnings_of_a_choice()[1] == []  # the same file: said once
    int8.save_accuracy(path, {"datasets": []})  # changed: malformed now, said once more
    assert warnings_of_a_choice()[1] == [
        f"unreadable accuracy record {int8.accuracy_path(path)}: not the format irstd export writes"
    ]


def test_an_unreadable_int8_fingerprint_is_one_warning_that_promises_no_rebuild(tiny_model, cache, fake_quantize,
                                                                                 choose_cpu, caplog):
    model, info = tiny_model
    path, _ = int8.build_int8(model, info, _opts(cache), _frames(CALIB_FRAMES))
    fingerprint_path(path).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger=fingerprint.__name__):
        backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino" and "no readable fingerprint" in line and "irstd export" in line
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "not used until it is rebuilt" in warning and "will be rebuilt" not in warning
