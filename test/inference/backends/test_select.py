"""Backend selection: names, ``auto`` fallback on import / construction / warm-up failures."""

from __future__ import annotations

import builtins
import logging
import sys

import numpy as np
import pytest
import torch

from irstd_ros.errors import BackendError, ConfigError
from irstd_ros.inference.backends import select
from irstd_ros.inference.backends.base import Backend, BackendOptions
from irstd_ros.inference.tiling import TilingBackend

# auto narrowed to the GPU backends and eager CPU: no ONNX export in these tests
FAST_AUTO = ("tensorrt", "cuda", "torch-cpu")


@pytest.fixture
def fast_auto(monkeypatch):
    monkeypatch.setitem(select.CHOICES, "auto", FAST_AUTO)


def test_unknown_name_lists_the_choices(tiny_model):
    model, info = tiny_model
    with pytest.raises(ConfigError) as err:
        select.create_backend("tensorflow", model, info)
    for name in ("auto", "cpu", "tensorrt", "cuda", "torch-cpu", "onnxruntime", "openvino"):
        assert name in str(err.value)
    with pytest.raises(ConfigError):
        select.unavailable_reason("tensorflow")


# built elsewhere: a quantised artefact (test_openvino_int8), a long compile (test_parity, slow)
BUILT_ELSEWHERE = {
    "openvino-int8": "needs a quantised artefact", "openvino-int8-bf16": "needs a quantised artefact (test_openvino_int8_bf16)",
    "torch-compile": "slow compile",
}


@pytest.mark.parametrize("name", select.BACKENDS)
def test_every_registered_backend_satisfies_the_protocol(name, tiny_model, backend_cache):
    reason = BUILT_ELSEWHERE.get(name) or select.unavailable_reason(name)
    if reason:
        pytest.skip(f"{name}: {reason}")
    model, info = tiny_model
    backend = select.create_backend(name, model, info, BackendOptions(cache_dir=backend_cache))
    assert isinstance(backend, Backend) and backend.name == name
    prob = backend.predict(np.zeros((24, 40), np.float32))  # not a multiple of the stride
    assert prob.shape == (24, 40) and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))
    assert backend.describe()["backend"] == name
    assert name in select.available_backends()


def test_auto_without_gpu_picks_cpu_and_says_why(tiny_model, fast_auto, caplog):
    model, info = tiny_model
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("auto", model, info)
    assert backend.name == "torch-cpu"
    line = [r.getMessage() for r in caplog.records if "inference backend" in r.getMessage()]
    assert len(line) == 1 and "tensorrt skipped" in line[0] and "cuda skipped" in line[0]


def _pretend_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_falls_back_when_torch_tensorrt_is_missing(tiny_model, fast_auto, monkeypatch, caplog):
    model, info = tiny_model
    _pretend_cuda(monkeypatch)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # import -> ImportError
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("auto", model, info)
    assert backend.name == "torch-cpu"
    assert "torch_tensorrt unavailable" in caplog.text


def test_auto_falls_back_when_torch_tensorrt_import_raises(tiny_model, fast_auto, monkeypatch, caplog):
    """Without a driver the import can raise anything, e.g. RuntimeError from CUDA init."""
    model, info = tiny_model
    _pretend_cuda(monkeypatch)
    monkeypatch.delitem(sys.modules, "torch_tensorrt", raising=False)
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("torch_tensorrt"):
            raise RuntimeError("Found no NVIDIA driver on your system")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("auto", model, info)
    assert backend.name == "torch-cpu"
    assert "RuntimeError: Found no NVIDIA driver" in caplog.text


class FailsLate:
    """Constructs fine, raises on the first predict (a lazily compiled engine)."""

    name = "fails-late"
    device = "nowhere"

    def __init__(self, *args, result: str = "raise") -> None:
        self.result = result

    def predict(self, frame: np.ndarray) -> np.ndarray:
        if self.result == "raise":
            raise RuntimeError("engine execution failed")
        return np.full(frame.shape, np.nan, dtype=np.float32)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name}


@pytest.mark.parametrize("result", ["raise", "nan"])
def test_warm_up_failure_falls_back(tiny_model, monkeypatch, caplog, result):
    model, info = tiny_model
    monkeypatch.setitem(select.REGISTRY, "fails-late", lambda *a: FailsLate(result=result))
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None)
    monkeypatch.setitem(select.CHOICES, "auto", ("fails-late", "torch-cpu"))
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("auto", model, info)
    assert backend.name == "torch-cpu"
    assert "fails-late skipped: warm-up predict" in caplog.text


class Works(FailsLate):
    """A GPU backend stand-in that runs."""

    name = "cuda"

    def predict(self, frame: np.ndarray) -> np.ndarray:
        return np.zeros(frame.shape, dtype=np.float32)


def test_cpu_speed_notes_appear_only_when_the_choice_reaches_the_cpu(tiny_model, monkeypatch, caplog):
    model, info = tiny_model
    note = "recorded speed on this CPU: openvino-int8 10.0 ms, openvino-bf16 20.0 ms"
    monkeypatch.setattr(select, "fastest_first", lambda order, *a: (order, [note], {}))
    monkeypatch.setitem(select.CHOICES, "auto", ("tensorrt", "cuda", "torch-cpu"))
    monkeypatch.setattr(select, "unavailable_reason", lambda name: "no CUDA device" if name == "tensorrt" else None)
    monkeypatch.setitem(select.REGISTRY, "cuda", lambda *a: Works())
    with caplog.at_level(logging.INFO, logger=select.__name__):
        assert select.create_backend("auto", model, info).name == "cuda"
    assert "(auto: tensorrt skipped: no CUDA device)" in caplog.text and note not in caplog.text
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None if name == "torch-cpu" else "no CUDA device")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=select.__name__):
        assert select.create_backend("auto", model, info).name == "torch-cpu"
    assert caplog.text.rstrip().endswith(f"cuda skipped: no CUDA device; {note})")


def test_nothing_left_is_a_backend_error(tiny_model, monkeypatch):
    model, info = tiny_model
    monkeypatch.setitem(select.REGISTRY, "fails-late", lambda *a: FailsLate())
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None)
    monkeypatch.setitem(select.CHOICES, "auto", ("fails-late",))
    with pytest.raises(BackendError, match="no inference backend could start"):
        select.create_backend("auto", model, info)


def test_a_named_backend_fails_instead_of_falling_back(tiny_model, monkeypatch):
    model, info = tiny_model
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="no CUDA device"):
        select.create_backend("cuda", model, info)


def test_a_named_backend_is_warmed_up_at_the_frame_size_it_is_given(tiny_model, monkeypatch):
    """``model.frame_size`` with ``model.backend: cuda`` and ``model.compile``: the warm-up
    (compile, capture) ran on the ``auto`` path only, so the first frame still paid it."""
    model, info = tiny_model
    seen = []
    real = select.warm_up
    monkeypatch.setattr(select, "warm_up", lambda backend, options: seen.append((options.height, options.width))
                        or real(backend, options))
    select.create_backend("torch-cpu", model, info, BackendOptions(height=48, width=80))
    select.create_backend("torch-cpu", model, info, BackendOptions())  # no size given: no guess
    assert seen == [(48, 80)]


def test_tile_size_wraps_the_backend(tiny_model):
    model, info = tiny_model
    backend = select.create_backend("torch-cpu", model, info, BackendOptions(tile_size=64, tile_overlap=16))
    assert isinstance(backend, TilingBackend) and backend.name == "torch-cpu"
    assert backend.describe()["tile"] == 64
    with pytest.raises(ConfigError, match="multiple of the stride"):
        select.create_backend("torch-cpu", model, info, BackendOptions(tile_size=70))


class TilesOnly(Works):
    """A memory-bound device: runs frames up to 64 px a side, out of memory above."""

    def predict(self, frame: np.ndarray) -> np.ndarray:
        if max(frame.shape) > 64:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return super().predict(frame)


def test_a_choice_warms_up_the_tiled_backend(tiny_model, monkeypatch, caplog):
    """With ``tile_size`` the warm-up runs tiles, as every frame will: a device that holds
    a tile but not the whole frame is chosen, not skipped for running out of memory."""
    model, info = tiny_model
    monkeypatch.setitem(select.REGISTRY, "cuda", lambda *a: TilesOnly())
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None)
    monkeypatch.setitem(select.CHOICES, "auto", ("cuda", "torch-cpu"))
    options = BackendOptions(height=150, width=200, tile_size=64, tile_overlap=16)
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("auto", model, info, options)
    assert isinstance(backend, TilingBackend) and backend.name == "cuda", caplog.text
    assert backend.predict(np.zeros((150, 200), np.float32)).shape == (150, 200)
    with pytest.raises(ConfigError, match="multiple of the stride"):  # not a candidate's failure
        select.create_backend("auto", model, info, BackendOptions(tile_size=70))


def test_a_multi_line_failure_stays_on_the_one_log_line(tiny_model, monkeypatch, caplog):
    """OpenVINO's exceptions span lines ("Exception from src/inference/src/cpp/core.cpp:84:\n..."):
    the rest of the choice's line was cut off from it."""

    class FailsOnManyLines(FailsLate):
        def predict(self, frame: np.ndarray) -> np.ndarray:
            raise RuntimeError("Exception from core.cpp:84:\nIncorrect weights in bin file!\n\n  at line 3")

    model, info = tiny_model
    monkeypatch.setitem(select.REGISTRY, "fails-late", lambda *a: FailsOnManyLines())
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None)
    monkeypatch.setitem(select.CHOICES, "auto", ("fails-late", "torch-cpu"))
    with caplog.at_level(logging.INFO, logger=select.__name__):
        select.create_backend("auto", model, info)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inference backend")]
    assert "\n" not in line
    assert "core.cpp:84: Incorrect weights in bin file! at line 3)" in line


def test_onnxruntime_without_onnx_is_unavailable_and_named_fails_clearly(tiny_model, backend_cache, monkeypatch):
    """The backend imports onnx (the sigmoid it appends to the graph): reported available
    without it, it then raised a bare ModuleNotFoundError."""
    import importlib.util

    pytest.importorskip("onnxruntime")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a))
    assert select.unavailable_reason("onnxruntime") == "onnx not installed (requirements/backends-cpu.txt)"
    monkeypatch.setitem(sys.modules, "onnx", None)  # import -> ImportError
    model, info = tiny_model
    with pytest.raises(BackendError, match=r"^onnx is not installed .*requirements/backends-cpu\.txt"):
        select.create_backend("onnxruntime", model, info, BackendOptions(cache_dir=backend_cache))


def test_the_torch_free_backend_names_are_the_registry_s():
    """The node's `model.backend` choices and the tools' options come from
    irstd_ros.core.constants (no torch to import); the registry must register those names."""
    from irstd_ros.core.constants import BACKEND_NAMES, CPU_PREFERENCE, GPU_BACKENDS
    from irstd_ros.inference.backends.select import REGISTRY

    assert tuple(REGISTRY) == BACKEND_NAMES
    assert set(GPU_BACKENDS) | set(CPU_PREFERENCE) <= set(REGISTRY)


def test_the_choice_reports_the_candidates_in_the_order_it_tried_them(tiny_model, monkeypatch, caplog):
    """bf16 is tried before INT8: an INT8 left out for its recorded speed was reported
    before bf16's own refusal. The backend keeps the account for the node's ready line."""
    from irstd_ros.inference.backends.openvino_int8 import RecordedSpeed

    model, info = tiny_model
    monkeypatch.setitem(select.CHOICES, "cpu", ("openvino-bf16", "openvino-int8", "torch-cpu"))
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None)
    monkeypatch.setitem(select.RECORDED_SPEEDS, "openvino-bf16", lambda *a: None)
    monkeypatch.setitem(select.RECORDED_SPEEDS, "openvino-int8", lambda *a: RecordedSpeed(22.5, 18.4, 1.22))
    monkeypatch.setitem(select.ACCURACY_GATES, "openvino-bf16", lambda *a: "no accuracy record")
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("cpu", model, info)
    skipped = ("openvino-bf16 skipped: no accuracy record",
               "openvino-int8 skipped: not faster than FP32 on this CPU (22.5 against 18.4 ms, 1.22 of its time)")
    assert backend.name == "torch-cpu"
    assert f"(cpu: {'; '.join(skipped)})" in caplog.text
    assert select.selection_of(backend) == select.Selection("cpu", skipped)
    assert select.selection_of(select.create_backend("torch-cpu", model, info)) is None  # named: no choice
