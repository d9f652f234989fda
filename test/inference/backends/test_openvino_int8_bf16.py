"""``openvino-int8-bf16``: the INT8 IR compiled with the bf16 hint. Its accuracy record beside
the IR (bound to the IR's files, refused for another recipe, another IR or a loss out of
tolerance), its place in ``cpu``'s order beside ``openvino-bf16`` and ``openvino-int8`` (the
fastest recorded first; a precision without any record does not stop the others being
sorted), the native-bf16 requirement, and its parity with FP32 (real NNCF).

Records are written by hand (the measurement is tested in test/tools/test_quantize.py);
INT8 IRs come from ``fake_quantize`` except in the parity test.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _support.openvino import assert_int8_parity, measured_datasets, spiky_frames, spread_logits

pytest.importorskip("openvino")

from irstd_ros.inference.backends import openvino_backend, select  # noqa: E402
from irstd_ros.inference.backends import openvino_bf16 as bf16  # noqa: E402
from irstd_ros.inference.backends import openvino_int8 as int8  # noqa: E402
from irstd_ros.inference.backends import openvino_int8_bf16 as mixed  # noqa: E402
from irstd_ros.inference.backends.base import BackendOptions  # noqa: E402
from irstd_ros.inference.backends.fingerprint import file_digests  # noqa: E402

CALIB = [np.zeros((32, 32), np.float32)]
NO_RECORD = f"no accuracy record (irstd export --backend {mixed.NAME} measures it)"


def _opts(cache) -> BackendOptions:
    return BackendOptions(cache_dir=str(cache), threads=1)


def _int8_ir(model, info, cache, record: bool = False):
    """The INT8 IR (fake_quantize) of these weights, with INT8's own record within
    tolerance when ``record``; returns (path, weights digest)."""
    path, _ = int8.build_int8(model, info, _opts(cache), CALIB)
    digest = int8.int8_path(model, info, _opts(cache))[1]
    if record:
        int8.save_accuracy(path, {"weights_sha256": digest, "conditions": int8.measurement_conditions(info),
                                  "recipe": int8.INT8_RECIPE, "datasets": measured_datasets()})
    return path, digest


def _save(model, info, cache, pd: float = 0.0, iou: float = 0.0, **changes) -> dict:
    """The INT8 IR and an INT8+bf16 record of it (Pd / IoU delta on both datasets, the whole
    held-out splits) as the export writes it, with ``changes``; returns the record."""
    path, digest = _int8_ir(model, info, cache)
    record = {
        "weights_sha256": digest, "conditions": int8.measurement_conditions(info), "recipe": mixed.RECIPE,
        "datasets": measured_datasets(pd, iou), int8.IR_DIGESTS: file_digests(path),
        "versions": {"openvino": mixed.openvino_version()}, **changes,
    }
    int8.save_accuracy(mixed.record_artifact(path), record)
    return record


# --- the record -------------------------------------------------------------------------------
def test_the_record_lies_beside_the_int8_ir_and_is_its_own(tiny_model, cache, fake_quantize):
    """INT8's record says nothing of the bf16 compile: with it alone the gate refuses."""
    model, info = tiny_model
    assert mixed.auto_refusal(model, info, _opts(cache)).startswith("no INT8 IR for these weights")
    path, _ = _int8_ir(model, info, cache, record=True)
    assert int8.auto_refusal(model, info, _opts(cache)) is None
    assert mixed.auto_refusal(model, info, _opts(cache)) == NO_RECORD
    written = _save(model, info, cache)
    assert mixed.auto_refusal(model, info, _opts(cache)) is None
    artifact = mixed.int8_bf16_artifact(model, info, _opts(cache))
    assert int8.accuracy_path(artifact) == path.with_name(path.name.removesuffix(".xml") + "-bf16.accuracy.json")
    assert int8.load_accuracy(artifact) == {"format": int8.ACCURACY_FORMAT, **written}
    assert int8.load_accuracy(path)["recipe"] == int8.INT8_RECIPE  # INT8's record untouched


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({int8.IR_DIGESTS: None}, "the accuracy record names no INT8 IR files"),
        ({int8.IR_DIGESTS: {".xml": "0" * 64, ".bin": "0" * 64}},
         f"-int8.xml (irstd export --backend {mixed.NAME} measures it again)"),
        ({"recipe": int8.INT8_RECIPE}, f"for recipe '{int8.INT8_RECIPE}', not '{mixed.RECIPE}'"),
        ({"weights_sha256": "0" * 64}, "the accuracy record is for other weights"),
        ({"versions": {"openvino": "2020.1.0"}}, "measured with OpenVINO 2020.1.0, this is "),
        ({"versions": None}, "measured with OpenVINO None, this is "),
    ],
    ids=["no-ir-digests", "other-ir-files", "int8-recipe", "other-weights", "other-openvino", "no-versions"],
)
def test_a_record_of_another_ir_recipe_or_weights_is_refused(change, expected, tiny_model, cache, fake_quantize):
    model, info = tiny_model
    _save(model, info, cache, **change)
    reason = mixed.auto_refusal(model, info, _opts(cache))
    assert reason is not None and expected in reason


@pytest.mark.parametrize(
    ("pd", "iou", "refused"),
    [(-0.6, 0.0, "NUDT-SIRST Pd -0.60 points (tolerance 0.5)"), (0.0, -1.2, "SIRST-v2 IoU -1.20 points"),
     (-0.5, -1.0, None), (0.3, 0.4, None)],
)
def test_gate_uses_the_int8_tolerances(pd, iou, refused, tiny_model, cache, fake_quantize):
    model, info = tiny_model
    _save(model, info, cache, pd=pd, iou=iou)
    reason = mixed.auto_refusal(model, info, _opts(cache))
    assert reason is None if refused is None else refused in reason


# --- the CPU order ----------------------------------------------------------------------------
def test_cpu_runs_int8_with_bf16_first_within_tolerance(tiny_model, cache, fake_quantize, native_bf16, choose_cpu):
    model, info = tiny_model
    _save(model, info, cache, pd=0.3, iou=0.44)
    backend, line = choose_cpu(model, info, _opts(cache))
    delta = "NUDT-SIRST Pd +0.30 IoU +0.44, SIRST-v2 Pd +0.30 IoU +0.44"
    assert backend.name == mixed.NAME and line.endswith(f"(cpu: first choice; recorded accuracy vs FP32: {delta})")
    described = backend.describe()
    assert described["precision"] == "int8 (SGEM attention and the rest bf16)" and described["accuracy_delta"] == delta
    assert backend.config["INFERENCE_PRECISION_HINT"] == "bf16" and backend.model_path.name.endswith("-int8.xml")
    assert backend.predict(np.zeros((40, 56), np.float32)).shape == (40, 56)


def test_cpu_without_native_bf16_skips_it_whatever_its_record(tiny_model, cache, fake_quantize, monkeypatch, choose_cpu):
    model, info = tiny_model
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    _save(model, info, cache)
    _int8_ir(model, info, cache, record=True)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert f"(cpu: {mixed.NAME} skipped: no native bf16 on this CPU (emulated bf16 is slower than FP32); " in line


def test_cpu_out_of_tolerance_falls_back_to_the_next_and_says_why(tiny_model, cache, fake_quantize, native_bf16,
                                                                  choose_cpu):
    model, info = tiny_model
    _save(model, info, cache, pd=-0.7)
    _int8_ir(model, info, cache, record=True)
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert (f"(cpu: {mixed.NAME} skipped: accuracy delta vs FP32 out of tolerance: NUDT-SIRST Pd -0.70 points "
            "(tolerance 0.5); SIRST-v2 Pd -0.70 points (tolerance 0.5); openvino-bf16 skipped: no accuracy record") in line


def _timed(model, info, cache, ms: dict[str, float], fp32_ms: float = 40.0) -> None:
    """Records within tolerance for ``ms``' backends (the others have none), each with the
    speed ``irstd export`` measures on this CPU."""
    from irstd_ros.inference.backends.graph_export import export_openvino_ir
    from irstd_ros.inference.resources import cpu_identity

    path, digest = _int8_ir(model, info, cache, record="openvino-int8" in ms)
    artifacts = {"openvino-int8": path}
    if mixed.NAME in ms:
        _save(model, info, cache)
        artifacts[mixed.NAME] = mixed.record_artifact(path)
    if "openvino-bf16" in ms:
        artifact, _ = bf16.bf16_artifact(model, info, _opts(cache))
        graph = bf16.ir_graph_digest(export_openvino_ir(model, info, _opts(cache)))
        int8.save_accuracy(artifact, {
            "weights_sha256": digest, "conditions": int8.measurement_conditions(info), "recipe": bf16.BF16_RECIPE,
            "fingerprint": bf16.bf16_fingerprint(digest, info, graph).to_dict(), "datasets": measured_datasets(),
        })
        artifacts["openvino-bf16"] = artifact
    for name, artifact in artifacts.items():
        if name in ms:
            record = int8.load_accuracy(artifact)
            record["speed"] = {"cpu": cpu_identity(), "size": list(int8.SPEED_SIZE), "p50_ms": ms[name],
                               "fp32_p50_ms": fp32_ms}
            int8.save_accuracy(artifact, record)


def test_the_three_reduced_precisions_run_fastest_first_as_recorded_here(
    tiny_model, cache, fake_quantize, native_bf16, choose_cpu
):
    """As measured on Zen 5 for 0.8: INT8 with bf16 18.0 ms, bf16 21.0, INT8 23.2."""
    model, info = tiny_model
    _timed(model, info, cache, {mixed.NAME: 18.0, "openvino-bf16": 21.0, "openvino-int8": 23.2})
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == mixed.NAME and line.startswith(f"inference backend: {mixed.NAME} on cpu (cpu: first choice")
    _timed(model, info, cache, {mixed.NAME: 25.0, "openvino-bf16": 21.0, "openvino-int8": 23.2})
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-bf16"
    assert ("recorded speed on this CPU: openvino-bf16 21.0 ms (0.53 of FP32's), openvino-int8 23.2 ms "
            f"(0.58 of FP32's), {mixed.NAME} 25.0 ms (0.62 of FP32's)") in line


def test_a_precision_without_any_record_does_not_stop_the_others_being_sorted(
    tiny_model, cache, fake_quantize, native_bf16, choose_cpu
):
    """INT8 and bf16 exported and timed here, INT8+bf16 never measured: the faster of the
    two still runs first (a candidate without a speed left the static order standing)."""
    model, info = tiny_model
    _timed(model, info, cache, {"openvino-bf16": 35.2, "openvino-int8": 28.5})
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert line.endswith(
        f"(cpu: recorded speed on this CPU: openvino-int8 28.5 ms (0.71 of FP32's), openvino-bf16 35.2 ms (0.88 of "
        f"FP32's); {mixed.NAME} skipped: {NO_RECORD}; recorded accuracy vs FP32: "
        "NUDT-SIRST Pd +0.00 IoU +0.00, SIRST-v2 Pd +0.00 IoU +0.00)"
    )


def test_a_refused_precision_without_speed_does_not_stop_the_others_being_sorted(
    tiny_model, cache, fake_quantize, native_bf16, choose_cpu
):
    """INT8+bf16 measured out of tolerance (the export times only a record within it), INT8
    and bf16 timed: the faster of the two still runs first, and the refusal is reported in
    its place, its gate evaluated once."""
    model, info = tiny_model
    _timed(model, info, cache, {"openvino-bf16": 35.2, "openvino-int8": 28.5})
    _save(model, info, cache, pd=-0.7)
    calls = []
    gate = select.ACCURACY_GATES[mixed.NAME]
    select.ACCURACY_GATES[mixed.NAME] = lambda *a: calls.append(1) or gate(*a)
    try:
        backend, line = choose_cpu(model, info, _opts(cache))
    finally:
        select.ACCURACY_GATES[mixed.NAME] = gate
    assert backend.name == "openvino-int8" and calls == [1]
    assert line.startswith(
        "inference backend: openvino-int8 on cpu (cpu: recorded speed on this CPU: openvino-int8 28.5 ms (0.71 of "
        f"FP32's), openvino-bf16 35.2 ms (0.88 of FP32's); {mixed.NAME} skipped: accuracy delta vs FP32 out of "
        "tolerance: NUDT-SIRST Pd -0.70 points"
    )


def test_an_unavailable_precision_without_speed_does_not_stop_the_others_being_sorted(
    tiny_model, cache, fake_quantize, monkeypatch, choose_cpu
):
    """No native bf16: the bf16 paths are skipped for it, whatever records were copied here
    from another machine, and INT8 / ... keep their recorded order."""
    model, info = tiny_model
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setitem(select.RECORDED_SPEEDS, "onnxruntime", lambda *a: int8.RecordedSpeed(20.0, 40.0, 0.5))
    monkeypatch.setitem(select.CHOICES, "cpu", (mixed.NAME, "openvino-bf16", "onnxruntime", "openvino-int8", "openvino"))
    _timed(model, info, cache, {"openvino-int8": 12.0})
    backend, line = choose_cpu(model, info, _opts(cache))
    assert backend.name == "openvino-int8"
    assert "recorded speed on this CPU: openvino-int8 12.0 ms (0.30 of FP32's), onnxruntime 20.0 ms" in line
    assert f"{mixed.NAME} skipped: no native bf16 on this CPU" in line


# --- named ------------------------------------------------------------------------------------
def test_named_without_an_int8_ir_is_an_error_naming_the_export(tiny_model, cache, native_bf16):
    from irstd_ros.errors import BackendError

    model, info = tiny_model
    with pytest.raises(BackendError, match="irstd export --backend openvino-int8"):
        select.create_backend(mixed.NAME, model, info, _opts(cache))


@pytest.mark.parametrize("with_ir", [True, False], ids=["int8-ir", "no-int8-ir"])
def test_named_refuses_a_cpu_without_native_bf16(with_ir, tiny_model, cache, fake_quantize, monkeypatch):
    """Without the INT8 IR too: the bf16 requirement comes first, since building the IR
    would not help."""
    from irstd_ros.errors import BackendError

    model, info = tiny_model
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    if with_ir:
        _save(model, info, cache)
    with pytest.raises(BackendError, match="needs a CPU with native bf16") as err:
        select.create_backend(mixed.NAME, model, info, _opts(cache))
    assert "irstd export" not in str(err.value)


def test_named_out_of_tolerance_runs_with_a_warning(tiny_model, cache, fake_quantize, native_bf16, caplog):
    model, info = tiny_model
    _save(model, info, cache, iou=-2.0)
    with caplog.at_level(logging.WARNING, logger=mixed.__name__):
        backend = select.create_backend(mixed.NAME, model, info, _opts(cache))
    assert backend.name == mixed.NAME and "SIRST-v2 IoU -2.00 points" in caplog.text


# --- parity with FP32 (real NNCF, native bf16) ------------------------------------------------
def test_int8_with_bf16_probabilities_are_close_to_fp32(tiny_model, cache):
    pytest.importorskip("nncf")
    reason = select.unavailable_reason(mixed.NAME)
    if reason:
        pytest.skip(f"{mixed.NAME}: {reason}")
    model, info = tiny_model
    model = spread_logits(model, spiky_frames(1, 64, 64, seed=9)[0])
    _, built = int8.build_int8(model, info, _opts(cache), spiky_frames(16, 64, 64))
    assert built
    fp32 = openvino_backend.OpenVINOBackend(model, info, _opts(cache))
    q = select.create_backend(mixed.NAME, model, info, _opts(cache))
    plain = select.create_backend("openvino-int8", model, info, _opts(cache))
    for frame in spiky_frames(3, 48, 80, seed=5):
        prob = q.predict(frame)
        assert_int8_parity(fp32.predict(frame), prob)
        assert not np.array_equal(prob, plain.predict(frame))  # the bf16 hint took effect


def test_named_without_a_record_runs_quietly(tiny_model, cache, fake_quantize, native_bf16, caplog):
    """As ``openvino-bf16``: the export itself runs it named, to measure the record."""
    model, info = tiny_model
    _int8_ir(model, info, cache)
    with caplog.at_level(logging.WARNING, logger=mixed.__name__):
        backend = select.create_backend(mixed.NAME, model, info, _opts(cache))
    assert backend.describe()["accuracy_delta"] == "not measured" and not caplog.records
