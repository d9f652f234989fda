"""``openvino-bf16``: its accuracy record in the cache (read, keyed by the weights, threshold
and normalisation, refused when its fingerprint differs or it was measured on another FP32
IR graph), the gate (INT8's tolerances and coverage), the native-bf16 requirement,
and the CPU order ``openvino-bf16`` -> ``openvino-int8`` -> FP32 (the faster of the two first
where both records hold a speed timed on this CPU) with its one log line.

Records are written by hand here (the measurement is tested in test/tools/test_quantize.py);
INT8 artefacts come from ``fake_quantize`` (a copy of the FP32 IR) and ``native_bf16``
fakes the CPU's support (both test/_support/openvino.py).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from _support.openvino import measured_datasets

pytest.importorskip("openvino")

from irstd_ros.inference.backends import openvino_backend, select  # noqa: E402
from irstd_ros.inference.backends import openvino_bf16 as bf16  # noqa: E402
from irstd_ros.inference.backends import openvino_int8 as int8  # noqa: E402
from irstd_ros.inference.backends.base import BackendOptions  # noqa: E402

CALIB = [np.zeros((32, 32), np.float32)]
ZERO_DELTA = "NUDT-SIRST Pd +0.00 IoU +0.00, SIRST-v2 Pd +0.00 IoU +0.00"


def _chosen(why: str, delta: str = ZERO_DELTA) -> str:
    """The end of the choice's log line for a reduced precision: why, then its recorded accuracy."""
    return f"(cpu: {why}; recorded accuracy vs FP32: {delta})"


def _opts(cache) -> BackendOptions:
    return BackendOptions(cache_dir=str(cache), threads=1)


def _graph(model, info, cache) -> str:
    """The graph digest of the FP32 IR of these weights in ``cache`` (converted if missing)."""
    from irstd_ros.inference.backends.graph_export import export_openvino_ir

    return bf16.ir_graph_digest(export_openvino_ir(model, info, _opts(cache)))


def _save(model, info, cache, pd: float = 0.0, iou: float = 0.0) -> dict:
    """A bf16 accuracy record of these weights (Pd / IoU delta on both datasets, the whole
    held-out splits), measured on the FP32 IR in ``cache``, as the export writes it; returns it."""
    path, digest = bf16.bf16_artifact(model, info, _opts(cache))
    record = {
        "weights_sha256": digest,
        "conditions": int8.measurement_conditions(info),
        "recipe": bf16.BF16_RECIPE,
        "fingerprint": bf16.bf16_fingerprint(digest, info, _graph(model, info, cache)).to_dict(),
        "datasets": measured_datasets(pd, iou),
    }
    int8.save_accuracy(path, record)
    return record


def _save_int8(model, info, cache) -> None:
    """An INT8 IR (fake_quantize) of these weights with a record within tolerance."""
    path, _ = int8.build_int8(model, info, _opts(cache), CALIB)
    digest = int8.int8_path(model, info, _opts(cache))[1]
    int8.save_accuracy(path, {
        "weights_sha256": digest, "conditions": int8.measurement_conditions(info), "recipe": int8.INT8_RECIPE,
        "datasets": measured_datasets(),
    })


# --- the record -------------------------------------------------------------------------------
def test_record_is_read_back_for_these_weights_only(tiny_model, cache):
    model, info = tiny_model
    assert "no accuracy record (irstd export --backend openvino-bf16" in bf16.auto_refusal(model, info, _opts(cache))
    written = _save(model, info, cache, pd=-0.2, iou=0.1)
    path, _ = bf16.bf16_artifact(model, info, _opts(cache))
    assert int8.accuracy_path(path).name.endswith("-bf16.accuracy.json") and path.parent == cache
    assert int8.load_accuracy(path) == {"format": int8.ACCURACY_FORMAT, **written}
    assert bf16.auto_refusal(model, info, _opts(cache)) is None
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        retrained.head.bias += 0.25
    assert "no accuracy record" in bf16.auto_refusal(retrained, info, _opts(cache))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("versions", {"openvino": "2020.1.0"}, "versions.openvino: 2020.1.0 ->"),
        ("recipe", "openvino-fp32-ir-bf16-hint-v0", "recipe: openvino-fp32-ir-bf16-hint-v0 ->"),
        ("weights_sha256", "0" * 64, "weights_sha256: 000"),
        ("conditions", {"threshold": "0.3"}, "conditions.threshold: 0.3 -> 0.5"),
    ],
)
def test_a_fingerprint_mismatch_refuses_the_record(tiny_model, cache, field, value, expected):
    model, info = tiny_model
    record = _save(model, info, cache)
    fingerprint = record["fingerprint"]
    fingerprint[field] = {**fingerprint[field], **value} if isinstance(value, dict) else value
    int8.save_accuracy(bf16.bf16_artifact(model, info, _opts(cache))[0], record)
    reason = bf16.auto_refusal(model, info, _opts(cache))
    assert reason.startswith("the accuracy record is stale, fingerprint mismatch: ") and expected in reason
    assert "irstd export --backend openvino-bf16" in reason


def test_a_record_without_fingerprint_is_refused(tiny_model, cache):
    model, info = tiny_model
    record = _save(model, info, cache)
    del record["fingerprint"]
    int8.save_accuracy(bf16.bf16_artifact(model, info, _opts(cache))[0], record)
    assert "no readable fingerprint" in bf16.auto_refusal(model, info, _opts(cache))


@pytest.mark.parametrize("fingerprint", [["openvino-bf16"], {"versions": ["torch"]}, {"device": "cpu"}])
def test_a_fingerprint_of_the_wrong_shape_is_refused(fingerprint, tiny_model, cache):
    """A hand-edited fingerprint is no readable fingerprint, not a crash (the named backend
    reads it too)."""
    model, info = tiny_model
    record = _save(model, info, cache)
    if isinstance(fingerprint, dict):
        fingerprint = {**record["fingerprint"], **fingerprint}
    int8.save_accuracy(bf16.bf16_artifact(model, info, _opts(cache))[0], {**record, "fingerprint": fingerprint})
    assert "no readable fingerprint" in bf16.auto_refusal(model, info, _opts(cache))


def test_records_are_keyed_by_the_weights_threshold_and_normalisation(tiny_model, cache):
    """Like the INT8 IR's name (``conditioned_digest``): the same weights saved with another
    threshold or normalisation have a record of their own, so measuring one does not
    overwrite the other's; a record named by the weights alone (an older version's) is
    named in the refusal."""
    import dataclasses

    from irstd_ros.checkpoint import InputNorm

    model, info = tiny_model
    path = bf16.bf16_artifact(model, info, _opts(cache))[0]
    others = [dataclasses.replace(info, threshold=0.3), dataclasses.replace(info, norm=InputNorm(0.5, 0.2))]
    assert len({path, *(bf16.bf16_artifact(model, i, _opts(cache))[0] for i in others)}) == 3
    assert path.name == f"{info.model.arch}-{int8.conditioned_digest(_digest(model, info), info)[:12]}-bf16"
    _save(model, info, cache)
    for other in others:
        _save(model, other, cache, pd=-2.0)
    assert bf16.auto_refusal(model, info, _opts(cache)) is None  # its record was not overwritten
    assert "NUDT-SIRST Pd -2.00" in bf16.auto_refusal(model, others[0], _opts(cache))
    legacy = cache / f"{info.model.arch}-{_digest(model, info)[:12]}-bf16.accuracy.json"
    int8.accuracy_path(path).rename(legacy)
    reason = bf16.auto_refusal(model, info, _opts(cache))
    assert reason.startswith("no accuracy record (irstd export --backend openvino-bf16 measures it")
    assert f"{legacy.name} is named by the weights alone: an older version's" in reason


def _digest(model, info) -> str:
    from irstd_ros.inference.backends.fingerprint import weights_digest

    return weights_digest(model, info)


def test_a_record_of_another_fp32_graph_is_refused(tiny_model, cache, native_bf16, choose_cpu, change_fp32_conversion):
    """The record describes the FP32 IR it was measured on: converted again into the same
    graph (node names aside) it still applies; converted into another graph (a changed
    conversion) it is refused, by ``auto`` and with a warning by the named backend."""
    model, info = tiny_model
    _save(model, info, cache)
    ir = cache / f"{info.model.arch}-{_digest(model, info)[:12]}.xml"
    for f in (ir, ir.with_suffix(".bin"), ir.with_name(ir.name + ".json")):
        f.unlink()
    assert bf16.auto_refusal(model, info, _opts(cache)) is None and ir.is_file()  # converted again: same graph
    change_fp32_conversion()
    reason = bf16.auto_refusal(model, info, _opts(cache))
    assert reason.startswith("the accuracy record was measured on another FP32 IR graph")
    assert "irstd export --backend openvino-bf16 measures it" in reason
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino" and "openvino-bf16 skipped: the accuracy record was measured on another" in line


def test_a_record_beside_no_usable_fp32_ir_is_refused_not_a_crash(tiny_model, cache):
    model, info = tiny_model
    record = _save(model, info, cache)
    _, digest = bf16.bf16_artifact(model, info, _opts(cache))
    ir = cache / f"{info.model.arch}-{digest[:12]}.xml"
    assert bf16.record_refusal(record, digest, info, ir=ir) is None
    assert "no FP32 IR to compare" in bf16.record_refusal(record, digest, info, ir=cache.parent / "empty" / ir.name)
    ir.write_text("<net")  # corrupt: no XML
    assert "no FP32 IR to compare" in bf16.record_refusal(record, digest, info, ir=ir)


def test_converting_the_same_weights_again_gives_the_same_graph_digest(tiny_model, cache):
    """``ov.convert_model`` numbers the model's and layers' names from a process-wide
    counter: a forced second conversion of the same weights is the same graph."""
    from irstd_ros.inference.backends.graph_export import export_openvino_ir

    model, info = tiny_model
    ir = export_openvino_ir(model, info, _opts(cache))
    first = bf16.ir_graph_digest(ir)
    again = export_openvino_ir(model, info, _opts(cache), force=True)
    assert again == ir and bf16.ir_graph_digest(again) == first


@pytest.mark.parametrize(
    ("pd", "iou", "expected"),
    [
        (-0.6, 0.0, "NUDT-SIRST Pd -0.60 points (tolerance 0.5)"),
        (0.0, -1.2, "SIRST-v2 IoU -1.20 points (tolerance 1.0)"),
        (-0.5, -1.0, None),
        (-0.21, 0.05, None),
        (1.4, 2.0, None),  # a gain is not a loss
    ],
)
def test_gate_uses_the_int8_tolerances(tiny_model, cache, pd, iou, expected):
    model, info = tiny_model
    _save(model, info, cache, pd=pd, iou=iou)
    reason = bf16.auto_refusal(model, info, _opts(cache))
    if expected is None:
        assert reason is None
    else:
        assert reason.startswith("accuracy delta vs FP32 out of tolerance") and expected in reason


def test_gate_requires_the_whole_held_out_splits(tiny_model, cache):
    """INT8's coverage rule: a record of a few frames is refused, whatever its delta."""
    model, info = tiny_model
    record = _save(model, info, cache)
    record["datasets"]["SIRST-v2"].update(frames=6, targets=13)
    int8.save_accuracy(bf16.bf16_artifact(model, info, _opts(cache))[0], record)
    reason = bf16.auto_refusal(model, info, _opts(cache))
    assert reason == ("the accuracy record does not cover the whole held-out splits: SIRST-v2 val: 6 frames with 13 "
                      "targets scored, fewer than the whole split's 164 frames with 144 targets "
                      "(irstd export --backend openvino-bf16 measures them)")


# --- the CPU order ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def bf16_and_int8(monkeypatch):
    """``cpu`` without ``openvino-int8-bf16`` in this module: its tests are of bf16 beside
    INT8; the mixed precision, tried before both, joins them in test_openvino_int8_bf16.py."""
    monkeypatch.setitem(select.CHOICES, "cpu", tuple(c for c in select.CHOICES["cpu"] if c != "openvino-int8-bf16"))


def test_cpu_order_is_int8_bf16_then_bf16_then_int8_then_fp32():
    from irstd_ros.core.constants import CPU_PREFERENCE  # its home, torch-free

    assert CPU_PREFERENCE[:4] == ("openvino-int8-bf16", "openvino-bf16", "openvino-int8", "openvino")
    assert select.CHOICES["auto"][-len(CPU_PREFERENCE):] == CPU_PREFERENCE
    assert set(select.ACCURACY_GATES) == {"openvino-bf16", "openvino-int8", "openvino-int8-bf16"}


def test_cpu_picks_bf16_first_within_tolerance(tiny_model, cache, fake_quantize, native_bf16, choose_cpu):
    model, info = tiny_model
    _save_int8(model, info, cache)
    _save(model, info, cache, pd=-0.21, iou=0.05)
    backend, line = choose_cpu(model, info, _opts(cache))
    delta = "NUDT-SIRST Pd -0.21 IoU +0.05, SIRST-v2 Pd -0.21 IoU +0.05"
    assert backend.name == "openvino-bf16" and line.endswith(_chosen("first choice", delta))
    assert backend.describe()["accuracy_delta"] == delta
    assert backend.predict(np.zeros((40, 56), np.float32)).shape == (40, 56)


def _timed(
    model, info, cache, int8_ms: float, bf16_ms: float, cpu: str | None = None,
    fp32_ms: float | tuple[float, float] | None = None,
) -> None:
    """Both records within tolerance (INT8's IR from fake_quantize) with the speeds
    ``irstd export`` measures (here: on this CPU unless ``cpu``; FP32 beside each, or
    (beside INT8, beside bf16) when the host was busier at one export); called again,
    only the speeds change."""
    from irstd_ros.inference.resources import cpu_identity

    if int8.load_accuracy(bf16.bf16_artifact(model, info, _opts(cache))[0]) is None:
        _save_int8(model, info, cache)
        _save(model, info, cache)
    fp32 = fp32_ms if isinstance(fp32_ms, tuple) else (fp32_ms, fp32_ms)
    for artifact, ms, beside in ((int8.int8_path(model, info, _opts(cache))[0], int8_ms, fp32[0]),
                                 (bf16.bf16_artifact(model, info, _opts(cache))[0], bf16_ms, fp32[1])):
        record = int8.load_accuracy(artifact)
        record["speed"] = {"cpu": cpu or cpu_identity(), "size": list(int8.SPEED_SIZE), "p50_ms": ms,
                           "fp32_p50_ms": beside}
        int8.save_accuracy(artifact, record)


def test_cpu_runs_the_faster_reduced_precision_as_recorded_on_this_cpu(
    tiny_model, cache, fake_quantize, native_bf16, choose_cpu
):
    model, info = tiny_model
    _timed(model, info, cache, int8_ms=28.5, bf16_ms=35.2)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert line.endswith(_chosen("recorded speed on this CPU: openvino-int8 28.5 ms, openvino-bf16 35.2 ms"))
    _timed(model, info, cache, int8_ms=24.0, bf16_ms=19.0)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16" and line.endswith(_chosen("first choice"))


def test_speeds_of_another_cpu_leave_the_static_order(tiny_model, cache, fake_quantize, native_bf16, choose_cpu):
    model, info = tiny_model
    _timed(model, info, cache, int8_ms=10.0, bf16_ms=35.0, cpu="GenuineIntel family 6 model 143 (Xeon), 2 cores")
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16" and line.endswith(_chosen("first choice"))


def test_a_reduced_precision_no_faster_than_fp32_here_is_skipped(tiny_model, cache, fake_quantize, native_bf16, choose_cpu):
    model, info = tiny_model
    _timed(model, info, cache, int8_ms=22.5, bf16_ms=30.0, fp32_ms=20.0)  # both slower than FP32
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    assert line.endswith(
        "(cpu: openvino-bf16 skipped: not faster than FP32 on this CPU (30.0 against 20.0 ms, 1.50 of its time); "
        "openvino-int8 skipped: not faster than FP32 on this CPU (22.5 against 20.0 ms, 1.12 of its time))"
    )
    _timed(model, info, cache, int8_ms=22.5, bf16_ms=12.7, fp32_ms=18.4)  # INT8 alone is slower
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16"  # tried first: INT8, after it, is not reported
    assert line.endswith(_chosen("first choice"))
    _timed(model, info, cache, int8_ms=12.3, bf16_ms=9.9, fp32_ms=19.4)  # as exported on Zen 4 for fast
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16" and line.endswith(_chosen("first choice"))


def test_each_precision_is_compared_through_the_fp32_timed_beside_it(
    tiny_model, cache, fake_quantize, native_bf16, choose_cpu
):
    """bf16 was exported on a host twice as busy: more milliseconds, but a smaller share
    of FP32's time, so it runs first."""
    model, info = tiny_model
    _timed(model, info, cache, int8_ms=34.0, bf16_ms=60.0, fp32_ms=(68.0, 160.0))
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16" and line.endswith(_chosen("first choice"))
    _timed(model, info, cache, int8_ms=34.0, bf16_ms=60.0, fp32_ms=(68.0, 100.0))
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert line.endswith(_chosen(
        "recorded speed on this CPU: openvino-int8 34.0 ms (0.50 of FP32's), openvino-bf16 60.0 ms (0.60 of FP32's)"
    ))


def test_faster_int8_out_of_tolerance_is_still_refused(tiny_model, cache, fake_quantize, native_bf16, choose_cpu):
    model, info = tiny_model
    _timed(model, info, cache, int8_ms=10.0, bf16_ms=35.0)
    path = int8.int8_path(model, info, _opts(cache))[0]
    record = int8.load_accuracy(path)
    record["datasets"]["SIRST-v2"]["delta"]["pd_points"] = -0.7  # one target of 144 lost
    int8.save_accuracy(path, record)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16"
    assert "recorded speed on this CPU: openvino-int8 10.0 ms" in line
    assert "openvino-int8 skipped: accuracy delta vs FP32 out of tolerance: SIRST-v2 Pd -0.70 points" in line


def test_cpu_falls_back_to_int8_when_bf16_is_out_of_tolerance(tiny_model, cache, fake_quantize, native_bf16, choose_cpu):
    model, info = tiny_model
    _save_int8(model, info, cache)
    _save(model, info, cache, iou=-1.5)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert line.endswith(_chosen(
        "openvino-bf16 skipped: accuracy delta vs FP32 out of tolerance: "
        "NUDT-SIRST IoU -1.50 points (tolerance 1.0); SIRST-v2 IoU -1.50 points (tolerance 1.0)"
    ))


def test_cpu_without_any_record_says_why_for_each_and_runs_fp32(tiny_model, cache, native_bf16, choose_cpu):
    model, info = tiny_model
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino"
    bf16_part, int8_part = line.split("(cpu: ", 1)[1].split("; openvino-int8 skipped: ")
    assert bf16_part == "openvino-bf16 skipped: no accuracy record (irstd export --backend openvino-bf16 measures it)"
    assert int8_part.startswith("no INT8 IR for these weights")


def test_cpu_without_native_bf16_skips_it_whatever_its_record(tiny_model, cache, fake_quantize, monkeypatch, choose_cpu):
    model, info = tiny_model
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    _save_int8(model, info, cache)
    _save(model, info, cache)  # within tolerance
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert line.endswith(_chosen("openvino-bf16 skipped: no native bf16 on this CPU (emulated bf16 is slower than FP32)"))


def test_named_bf16_out_of_tolerance_runs_with_a_warning(tiny_model, cache, native_bf16, caplog):
    model, info = tiny_model
    _save(model, info, cache, pd=-2.0)
    with caplog.at_level(logging.WARNING, logger=bf16.__name__):
        backend = select.create_backend("openvino-bf16", model, info, _opts(cache))
    assert backend.name == "openvino-bf16" and "NUDT-SIRST Pd -2.00 points" in caplog.text


def test_named_bf16_without_record_runs_quietly(tiny_model, cache, native_bf16, caplog):
    model, info = tiny_model
    with caplog.at_level(logging.WARNING, logger=bf16.__name__):
        backend = select.create_backend("openvino-bf16", model, info, _opts(cache))
    assert backend.describe()["accuracy_delta"] == "not measured" and not caplog.records
