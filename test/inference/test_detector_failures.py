"""The Detector's failure policy, without ROS: a frame that runs the device out of memory
is dropped (DeviceOutOfMemory) and the cache released; after OOM_FALLBACK_AFTER in a row
the detector moves to the CPU once, keeping its settings; other errors pass through."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint
from irstd_ros.core.targets import PostprocessConfig
from irstd_ros.errors import BackendError, DeviceOutOfMemory, ImageConversionError
from irstd_ros.inference import resources
from irstd_ros.inference.detector import (
    CPU_FALLBACK_BACKEND,
    OOM_FALLBACK_AFTER,
    CpuFallback,
    Detector,
)
from irstd_ros.models import build_model, named_config

FRAME = np.zeros((32, 32), np.uint8)


class Failing:
    name, device = "cuda", "cuda:0 (double)"

    def __init__(self, exc: BaseException, failures: int) -> None:
        self.exc, self.failures, self.calls = exc, failures, 0

    def predict(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return np.zeros_like(frame, dtype=np.float32)

    def describe(self) -> dict:
        return {"backend": self.name}


def oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")


def detector(backend, fallback=None) -> Detector:
    return Detector(backend, CheckpointInfo(named_config("tiny"), threshold=0.5),
                    post=PostprocessConfig(threshold=0.3, min_area=2), fallback=fallback)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, build_model(named_config("tiny")), CheckpointInfo(named_config("tiny")))
    return path


def test_out_of_memory_is_recognised_without_importing_torch_errors():
    assert resources.is_out_of_memory(oom())
    assert not resources.is_out_of_memory(RuntimeError("CUDA out of memory"))


def test_one_out_of_memory_drops_the_frame_only(tiny):
    det = detector(Failing(oom(), failures=1), CpuFallback(tiny))
    with pytest.raises(DeviceOutOfMemory, match="backend cuda out of memory: CUDA out of memory") as e:
        det.detect(FRAME)
    assert e.value.kind == "out_of_memory" and e.value.fallback is None
    det.detect(FRAME)
    assert det.backend.name == "cuda"


def test_out_of_memory_releases_the_device_cache_each_time(monkeypatch):
    from irstd_ros.inference import detector as detector_module

    released = []
    monkeypatch.setattr(detector_module, "release_device_memory", lambda collect=False: released.append(collect))
    det = detector(Failing(oom(), failures=2))
    for _ in range(2):
        with pytest.raises(DeviceOutOfMemory):
            det.detect(FRAME)
    det.detect(FRAME)
    assert released == [False, False]


class Scripted(Failing):
    """Fails with ``exc`` on the calls (1-based) in ``failing``, succeeds on the others."""

    def __init__(self, exc: BaseException, failing: set[int]) -> None:
        super().__init__(exc, 0)
        self.failing = failing

    def predict(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls in self.failing:
            raise self.exc
        return np.zeros_like(frame, dtype=np.float32)


def test_only_out_of_memory_frames_in_a_row_count_towards_the_fallback(tiny):
    """A good frame between out-of-memory ones starts the count again."""
    streak = OOM_FALLBACK_AFTER - 1
    failing = set(range(1, streak + 1)) | set(range(streak + 2, 2 * streak + 2))
    backend = Scripted(oom(), failing)
    det = detector(backend, CpuFallback(tiny))
    for call in range(1, 2 * streak + 2):
        if call in failing:
            with pytest.raises(DeviceOutOfMemory) as e:
                det.detect(FRAME)
            assert e.value.fallback is None
        else:
            det.detect(FRAME)
    assert det.backend is backend


def test_repeated_out_of_memory_falls_back_to_the_cpu_once(tiny):
    det = detector(Failing(oom(), failures=10**6), CpuFallback(tiny))
    notes = []
    for _ in range(OOM_FALLBACK_AFTER):
        with pytest.raises(DeviceOutOfMemory) as e:
            det.detect(FRAME)
        notes.append(e.value.fallback)
    assert notes[:-1] == [None] * (OOM_FALLBACK_AFTER - 1)
    assert "fell back to torch-cpu" in notes[-1] and str(tiny) in notes[-1]
    assert det.backend.name == CPU_FALLBACK_BACKEND
    assert det.post == PostprocessConfig(threshold=0.3, min_area=2)  # settings kept
    assert det.detect(FRAME).mask.shape == FRAME.shape


def test_a_failed_fallback_is_said_once_and_not_retried(tmp_path):
    det = detector(Failing(oom(), failures=10**6), CpuFallback(tmp_path / "gone.safetensors"))
    notes = []
    for _ in range(OOM_FALLBACK_AFTER + 2):
        with pytest.raises(DeviceOutOfMemory) as e:
            det.detect(FRAME)
        notes.append(e.value.fallback)
    assert [n is not None for n in notes] == [False, False, True, False, False]
    assert "falling back to torch-cpu failed" in notes[OOM_FALLBACK_AFTER - 1]
    assert det.backend.name == "cuda"


def test_no_fallback_without_a_source_or_on_the_cpu(tiny):
    det = detector(Failing(oom(), 10**6), fallback=None)
    for _ in range(OOM_FALLBACK_AFTER + 1):
        with pytest.raises(DeviceOutOfMemory) as e:
            det.detect(FRAME)
        assert e.value.fallback is None
    cpu = Failing(oom(), 10**6)
    cpu.name = CPU_FALLBACK_BACKEND
    det = detector(cpu, CpuFallback(tiny))
    for _ in range(OOM_FALLBACK_AFTER + 1):
        with pytest.raises(DeviceOutOfMemory) as e:
            det.detect(FRAME)
        assert e.value.fallback is None
    assert det.backend is cpu


def test_other_errors_pass_through():
    det = detector(Failing(RuntimeError("cuDNN error"), failures=1))
    with pytest.raises(RuntimeError, match="cuDNN"):
        det.detect(FRAME)


class NaNOutput(Failing):
    def predict(self, frame: np.ndarray) -> np.ndarray:
        out = np.zeros_like(frame, dtype=np.float32)
        out[3:5, 3:5] = np.nan
        return out


def test_an_output_holding_nan_is_a_backend_error_not_an_empty_frame():
    """A numerical overflow in the backend (FP16) gave NaN probabilities, read as no target
    without a word; the node now counts it as an inference error and says why."""
    det = detector(NaNOutput(RuntimeError(), failures=0))
    with pytest.raises(BackendError, match="holds 4 NaN values of 1024"):
        det.detect(FRAME)


class InfiniteOutput(Failing):
    def predict(self, frame: np.ndarray) -> np.ndarray:
        out = np.zeros_like(frame, dtype=np.float32)
        out[0, :2] = np.inf, -np.inf
        return out


def test_an_output_holding_infinities_is_a_backend_error_too():
    """The check the evaluation makes (``finite_probabilities``): +inf and -inf count."""
    det = detector(InfiniteOutput(RuntimeError(), failures=0))
    with pytest.raises(BackendError, match="holds 2 NaN values of 1024 \\(or infinities"):
        det.detect(FRAME)


def test_from_checkpoint_sets_the_fallback_to_its_own_checkpoint(tiny):
    det = Detector.from_checkpoint(tiny, backend="torch-cpu")
    assert det.fallback == CpuFallback(tiny, None)


@pytest.mark.parametrize(
    "frame, kind",
    [
        (np.zeros((32, 32), np.complex64), "bad_dtype"),  # imaginary part silently dropped
        (np.zeros((0, 32), np.uint16), "empty_image"),  # an IndexError deep in normalisation
        (np.zeros((32, 32, 2), np.uint8), "bad_shape"),  # a bare ValueError
        ([[1000] * 32] * 32, "bad_type"),  # AttributeError: 'list' object has no attribute 'dtype'
    ],
)
def test_a_frame_the_detector_cannot_read_is_an_image_conversion_error(frame, kind):
    backend = Failing(RuntimeError("never reached"), failures=0)
    with pytest.raises(ImageConversionError) as err:
        detector(backend).detect(frame)
    assert err.value.kind == kind and backend.calls == 0


def test_non_finite_counts_nan_and_infinities_and_no_overflowing_finite_value():
    from irstd_ros.inference.backends.base import non_finite

    assert non_finite(np.array([np.nan, 0.5, np.inf, -np.inf], np.float32)) == 3
    assert non_finite(np.full(10, 3e38, np.float32)) == 0  # the sum overflows; no value is infinite
    assert non_finite(np.zeros((0, 4), np.float32)) == 0
