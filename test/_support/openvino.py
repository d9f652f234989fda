"""OpenVINO stand-ins as fixtures, registered for every test by test/conftest.py
(``pytest_plugins``). OpenVINO itself is imported only when a fixture is used."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture
def fake_quantize(monkeypatch: pytest.MonkeyPatch) -> list[int | tuple[int, int]]:
    """NNCF replaced by a copy of the FP32 IR. The list counts the calls: the number of
    calibration inputs, or (calibration, validation) for the accuracy-controlled recipe."""
    from irstd_ros.inference.backends import openvino_int8 as int8

    calls: list[int | tuple[int, int]] = []

    def fake(fp32_xml, calibration, out_xml, validation=None, **_):
        assert calibration and calibration[0].shape[:2] == (1, 1)  # (N, C, H, W) inputs
        calls.append(len(calibration) if validation is None else (len(calibration), len(validation)))
        out_xml = Path(out_xml)
        shutil.copy(fp32_xml, out_xml)
        shutil.copy(Path(fp32_xml).with_suffix(".bin"), out_xml.with_suffix(".bin"))
        return out_xml

    monkeypatch.setattr(int8, "quantize_ir", fake)
    return calls


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU reports native bf16 (whatever the test machine has)."""
    from irstd_ros.inference.backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: True)


def measured_datasets(pd: float = 0.0, iou: float = 0.0, names: tuple[str, ...] | None = None) -> dict:
    """The ``datasets`` of an accuracy record as ``irstd export`` writes it after scoring the
    whole held-out splits (the counts the gate requires, ``REQUIRED_COVERAGE``), with a
    reduced-precision - FP32 delta of ``pd`` / ``iou`` points on each of ``names`` (default
    both)."""
    from irstd_ros.inference.backends import openvino_int8 as int8

    return {
        name: {"split": need.split, "limit": None, "frames": need.frames, "targets": need.targets,
               "delta": {"pd_points": pd, "iou_points": iou}}
        for name, need in int8.REQUIRED_COVERAGE.items() if names is None or name in names
    }


@pytest.fixture
def change_fp32_conversion(monkeypatch: pytest.MonkeyPatch):
    """A function that changes the FP32 IR's conversion from then on, as a new version of
    the export could: a new recipe, and a graph whose logits are doubled (other masks at
    the same threshold)."""

    def change() -> None:
        import openvino as ov
        from openvino import opset13

        from irstd_ros.inference.backends import graph_export

        real = graph_export.convert_openvino

        def doubled(model, stride):
            graph = real(model, stride)
            logits = graph.get_results()[0].input_value(0)
            return ov.Model([opset13.multiply(logits, opset13.constant(2.0, ov.Type.f32))], graph.get_parameters())

        monkeypatch.setattr(graph_export, "OPENVINO_RECIPE", "openvino-ir-convert-v2")
        monkeypatch.setattr(graph_export, "convert_openvino", doubled)

    return change


def spiky_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` normalised (h, w) frames of unit noise with three +6 spikes each: calibration
    and test inputs for INT8 on a synthetic model."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
        for _ in range(3):
            f[rng.integers(h), rng.integers(w)] += 6.0
        out.append(f)
    return out


def spread_logits(model: torch.nn.Module, frame: np.ndarray) -> torch.nn.Module:
    """A copy of a random-weight model whose head spreads logits over about +-4 on ``frame``
    (random weights give near-constant probabilities, which would make parity trivial)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        logits = model(torch.from_numpy(frame)[None, None])
        scale = 2.0 / float(logits.std())
        model.head.weight *= scale
        model.head.bias.copy_((model.head.bias - logits.mean()) * scale)
    return model


# INT8 vs FP32 probabilities on the spread_logits model (probability std 0.31), on 3
# spiky_frames it was not calibrated on: measured max |diff| 0.043-0.053, mean 0.0054, masks
# agreeing on 99.45-99.56 % of the pixels (AMD EPYC Zen 4, VNNI); INT8 with its float ops in
# bf16 0.045-0.051, 0.006, 99.2-99.4 % (Zen 5). About 2x room for other CPUs' kernels.
PARITY_MAX_ABS = 0.12
PARITY_MEAN_ABS = 0.02
PARITY_MASK_AGREEMENT = 0.99  # thresholded at 0.5


def assert_int8_parity(fp32: np.ndarray, quantised: np.ndarray) -> None:
    """``quantised`` probabilities within the INT8 parity bounds of ``fp32``, which must be
    spread enough for the comparison to mean something."""
    assert fp32.std() > 0.05
    diff = np.abs(fp32 - quantised)
    assert diff.max() <= PARITY_MAX_ABS and diff.mean() <= PARITY_MEAN_ABS, (diff.max(), diff.mean())
    assert ((fp32 > 0.5) == (quantised > 0.5)).mean() >= PARITY_MASK_AGREEMENT
