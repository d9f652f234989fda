"""``irstd export --backend openvino-int8`` end to end on two tiny datasets: calibration
crops, the build, the accuracy record beside the IR, and what ``cpu`` then chooses.

NNCF is replaced by a copy of the FP32 IR (the quantiser itself is tested in
test/inference/backends/test_openvino_int8.py), so INT8 - FP32 is exactly 0 here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")

from _support.datasets import write_dataset

from irstd_ros.checkpoint import CheckpointInfo, InputNorm, load_checkpoint, save_checkpoint  # noqa: E402
from irstd_ros.cli.main import main  # noqa: E402
from irstd_ros.errors import ConfigError  # noqa: E402
from irstd_ros.inference.backends import openvino_int8 as int8  # noqa: E402
from irstd_ros.inference.backends import select  # noqa: E402
from irstd_ros.inference.backends.base import BackendOptions  # noqa: E402
from irstd_ros.inference.resources import cpu_identity  # noqa: E402
from irstd_ros.models import build_model, named_config  # noqa: E402
from irstd_ros.tools import quantize  # noqa: E402

FRAMES = 4
MEASURE_SPEED = quantize.measure_speed  # before the autouse fixture below replaces it
WHOLE_SPLITS = getattr(int8, "REQUIRED_COVERAGE", None)  # before the autouse fixture below lowers it


def _dataset(root: Path, split_dir: str, splits: dict[str, int], size: tuple[int, int], seed: int) -> Path:
    """images/, masks/ and split lists, ``splits`` = {name: frame count}; a bright target each."""
    rng = np.random.default_rng(seed)
    frames: list[tuple[str, np.ndarray, np.ndarray]] = []
    names: dict[str, list[str]] = {}
    for split, n in splits.items():
        for _ in range(n):
            img = rng.normal(90, 8, size).clip(0, 255).astype(np.uint8)
            mask = np.zeros(size, bool)
            y, x = rng.integers(4, size[0] - 4), rng.integers(4, size[1] - 4)
            img[y - 1 : y + 2, x - 1 : x + 2] = 250
            mask[y - 1 : y + 2, x - 1 : x + 2] = True
            frames.append((f"{len(frames) + 1:04d}", img, mask))
            names.setdefault(split, []).append(frames[-1][0])
    return write_dataset(root, frames, names, split_dir)


@pytest.fixture
def datasets(tmp_path) -> list[quantize.Int8Dataset]:
    nudt = _dataset(tmp_path / "NUDT-SIRST", "50_50", {"train": FRAMES, "test": FRAMES}, (48, 48), 1)
    sirst = _dataset(tmp_path / "SIRST-v2", "splits", {"train": FRAMES, "val": FRAMES}, (40, 72), 2)
    return quantize.default_datasets(nudt, sirst)


@pytest.fixture
def weights(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = named_config("tiny")
    return save_checkpoint(tmp_path / "tiny.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg, InputNorm(0.4, 0.2)))


@pytest.fixture(autouse=True)
def tiny_splits(monkeypatch):
    """The gate takes the tiny datasets' held-out splits (FRAMES frames, one target each) as
    whole: the bookkeeping is tested, not the real splits' sizes (tests of the coverage rule
    put WHOLE_SPLITS back)."""
    if WHOLE_SPLITS is not None:
        coverage = {name: need._replace(frames=FRAMES, targets=FRAMES) for name, need in WHOLE_SPLITS.items()}
        monkeypatch.setattr(int8, "REQUIRED_COVERAGE", coverage)


@pytest.fixture(autouse=True)
def quick_speed(monkeypatch):
    """Two rounds of one timed call of a 32x48 frame instead of six of six 640x512 frames:
    the speed's bookkeeping is tested, not its figure. The fake INT8 IR is the FP32 IR, so the two time alike and
    ``cpu`` would skip INT8 as no faster than FP32 about half the time: the recorded
    reduced-precision figure is halved after the real measurement."""
    monkeypatch.setattr(quantize, "SPEED_WARMUP", 1)
    monkeypatch.setattr(quantize, "SPEED_ROUNDS", 2)
    monkeypatch.setattr(quantize, "SPEED_CALLS", 1)
    for module in (quantize, int8):
        monkeypatch.setattr(module, "SPEED_SIZE", (32, 48))
    measure = quantize.measure_speed

    def faster(*args, **kwargs):
        out = measure(*args, **kwargs)
        return {**out, "p50_ms": out["fp32_p50_ms"] / 2, "ratio": 0.5}

    monkeypatch.setattr(quantize, "measure_speed", faster)


def test_calibration_crops_come_from_both_training_splits(datasets):
    frames = quantize.calibration_frames(InputNorm(0.4, 0.2), datasets, total=5, crop=32)
    assert len(frames) == 5 and all(f.shape == (32, 32) and f.dtype == np.float32 for f in frames)
    again = quantize.calibration_frames(InputNorm(0.4, 0.2), datasets, total=5, crop=32)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))  # seeded
    # a crop larger than the frame is mirrored up to size
    big = quantize.calibration_frames(InputNorm(0.4, 0.2), datasets, total=2, crop=64)
    assert all(f.shape == (64, 64) for f in big)


def test_export_records_the_accuracy_and_cpu_then_uses_int8(datasets, weights, tmp_path, fake_quantize, caplog):
    out = tmp_path / "cache"
    result = quantize.export_int8(weights, out, datasets, calibration=6, threads=1)
    assert result["built"] and fake_quantize == [6]
    record = json.loads(Path(result["files"][-1]).read_text())
    assert set(record["datasets"]) == {"NUDT-SIRST", "SIRST-v2"}
    for entry in record["datasets"].values():
        assert entry["fp32"]["images"] == FRAMES and entry["int8"]["backend"] == "openvino-int8"
        assert entry["delta"] == {"pd_points": 0.0, "iou_points": 0.0}
        assert entry["frames"] == entry["targets"] == FRAMES and entry["limit"] is None  # what the gate checks
    assert record["verdict"].startswith("within tolerance") and result["auto"] == "uses openvino-int8"
    speed = record["speed"]  # measured here, where auto reads it
    assert speed["cpu"] == cpu_identity() and speed["size"] == list(int8.SPEED_SIZE) and speed["threads"] == 1
    assert speed["p50_ms"] > 0 and speed["fp32_p50_ms"] > 0 and int8.recorded_speed(record) == speed["p50_ms"]
    # a second export reuses both the IR and its record
    again = quantize.export_int8(weights, out, datasets, calibration=6, threads=1)
    assert not again["built"] and "measure_s" not in again and fake_quantize == [6]
    model, info, _ = load_checkpoint(weights)
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("cpu", model, info, BackendOptions(cache_dir=str(out), threads=1))
    assert backend.name == "openvino-int8"


def test_the_record_names_the_ir_files_it_measured(datasets, weights, tmp_path, fake_quantize, monkeypatch):
    """A record held no digest of the IR it measured: one of any IR of its recipe passed
    the gate. An export finds a record of other files and measures again."""
    from irstd_ros.inference.backends.fingerprint import file_digests

    out = tmp_path / "cache"
    measured = _count_measurements(monkeypatch)
    first = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    path = Path(first["files"][0])
    record = int8.load_accuracy(path)
    assert record[int8.IR_DIGESTS] == file_digests(path) and first["auto"] == "uses openvino-int8"
    int8.save_accuracy(path, {**record, int8.IR_DIGESTS: {".xml": "0" * 64, ".bin": "0" * 64}})  # another IR's
    again = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    assert not again["built"] and len(measured) == 2 and again["auto"] == "uses openvino-int8"
    assert int8.load_accuracy(path)[int8.IR_DIGESTS] == file_digests(path)


def test_an_export_on_part_of_the_splits_is_refused_by_the_gate(datasets, weights, tmp_path, fake_quantize, monkeypatch,
                                                                 caplog):
    """The audit's case: an export on a few frames (here the tiny datasets against the real
    splits' sizes) measured INT8 - FP32 = 0 and auto took it like a measurement of the whole
    splits. Now the record keeps what it scored, the gate refuses it and says why, and auto
    keeps FP32; accuracy control is not tried (it cannot make a small measurement whole)."""
    monkeypatch.setattr(int8, "REQUIRED_COVERAGE", WHOLE_SPLITS, raising=False)
    out = tmp_path / "cache"
    result = quantize.export_int8(weights, out, datasets, calibration=6, threads=1)
    assert result["auto"].startswith("the accuracy record does not cover the whole held-out splits: "), result["auto"]
    assert ("NUDT-SIRST test: 4 frames with 4 targets scored, fewer than the whole split's 664 frames with 945 "
            "targets; SIRST-v2 val: 4 frames with 4 targets scored") in result["auto"]
    assert fake_quantize == [6] and "plain" not in result  # no second, accuracy-controlled build
    record = json.loads(Path(result["files"][-1]).read_text())
    assert record["verdict"] == result["auto"] and "speed" not in record  # a refused record is not timed
    assert {n: (e["split"], e["limit"], e["frames"], e["targets"]) for n, e in record["datasets"].items()} == {
        "NUDT-SIRST": ("test", None, FRAMES, FRAMES), "SIRST-v2": ("val", None, FRAMES, FRAMES)}
    model, info, _ = load_checkpoint(weights)
    with caplog.at_level(logging.INFO, logger=select.__name__):
        backend = select.create_backend("cpu", model, info, BackendOptions(cache_dir=str(out), threads=1))
    assert backend.name == "openvino"
    assert "openvino-int8 skipped: the accuracy record does not cover the whole held-out splits" in caplog.text


def test_an_export_with_a_frame_limit_is_refused_by_the_gate(datasets, weights, tmp_path, fake_quantize):
    import dataclasses

    limited = [dataclasses.replace(ds, eval_limit=2) for ds in datasets]
    result = quantize.export_int8(weights, tmp_path / "cache", limited, calibration=6, threads=1,
                                  accuracy_control="never")
    assert "NUDT-SIRST measured with a frame limit (2), not on the whole test split" in result["auto"]
    whole = quantize.export_int8(weights, tmp_path / "cache", datasets, calibration=6, threads=1,
                                 accuracy_control="never")
    assert whole["auto"] == "uses openvino-int8"  # the stale record is measured again on the whole splits


def test_another_calibration_quantises_again_and_the_record_says_which(datasets, weights, tmp_path, fake_quantize):
    """The fingerprint cannot hold the calibration set (a node does not know it): an IR
    calibrated on other frames was reused and its new record claimed the frames asked for."""
    out = tmp_path / "cache"
    quantize.export_int8(weights, out, datasets, calibration=6, threads=1)
    other = quantize.export_int8(weights, out, datasets, calibration=5, threads=1)
    assert other["built"] and fake_quantize == [6, 5]
    record = json.loads(Path(other["files"][-1]).read_text())
    assert record["calibration"]["frames"] == 5
    same = quantize.export_int8(weights, out, datasets, calibration=5, threads=1)
    assert not same["built"] and fake_quantize == [6, 5]


def test_speed_is_timed_in_interleaved_rounds_and_the_ratio_survives_a_busier_round(monkeypatch):
    """The candidate takes half of FP32's time; the host is three times slower in the
    second of two rounds: the medians move, the recorded ratio does not."""
    clock, order = [0.0], []

    class Timed:
        def __init__(self, name: str, ms: float):
            self.name, self.ms = name, ms

        def predict(self, frame):
            order.append(self.name)
            timed = sum(1 for n in order if n == self.name) - 1  # after its warm-up
            busy = 3.0 if timed >= quantize.SPEED_WARMUP + quantize.SPEED_CALLS else 1.0
            clock[0] += self.ms * busy / 1e3
            return frame

    monkeypatch.setattr(quantize, "SPEED_ROUNDS", 2)
    monkeypatch.setattr(quantize, "SPEED_CALLS", 3)
    monkeypatch.setattr(quantize.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(select, "create_backend", lambda name, *a: Timed(name, 10.0 if name == "int8" else 20.0))
    speed = MEASURE_SPEED(None, None, BackendOptions(threads=2), "int8")
    warm = ["int8"] * quantize.SPEED_WARMUP + ["openvino"] * quantize.SPEED_WARMUP
    assert order == warm + (["int8"] * 3 + ["openvino"] * 3) * 2
    assert speed["rounds"] == [[10.0, 20.0], [30.0, 60.0]] and speed["ratio"] == 0.5
    assert speed["calls"] == 6 and speed["threads"] == 2 and speed["cpu"] == cpu_identity()
    assert int8.recorded_speeds({"speed": speed}) == int8.RecordedSpeed(speed["p50_ms"], speed["fp32_p50_ms"], 0.5)


def test_export_adds_the_speed_to_a_record_measured_without_it(datasets, weights, tmp_path, fake_quantize, monkeypatch):
    out = tmp_path / "cache"
    path = Path(quantize.export_int8(weights, out, datasets, calibration=6, threads=1)["files"][0])
    record = int8.load_accuracy(path)
    del record["speed"]  # as an export before speeds were recorded wrote it
    int8.save_accuracy(path, record)
    monkeypatch.setattr(quantize, "measure_accuracy", lambda *a, **k: pytest.fail("re-measured a valid record"))
    again = quantize.export_int8(weights, out, datasets, calibration=6, threads=1)
    assert not again["built"] and again["accuracy"]["speed"]["cpu"] == cpu_identity()
    assert int8.recorded_speed(int8.load_accuracy(path)) == again["accuracy"]["speed"]["p50_ms"]


def test_export_times_again_a_speed_from_before_the_rounds_or_when_asked(
    datasets, weights, tmp_path, fake_quantize, monkeypatch
):
    out = tmp_path / "cache"
    path = Path(quantize.export_int8(weights, out, datasets, calibration=6, threads=1)["files"][0])
    monkeypatch.setattr(quantize, "measure_accuracy", lambda *a, **k: pytest.fail("re-measured a valid record"))
    timed = []
    measure = quantize.measure_speed
    monkeypatch.setattr(quantize, "measure_speed", lambda *a: timed.append(1) or measure(*a))
    kept = quantize.export_int8(weights, out, datasets, calibration=6, threads=1)["accuracy"]["speed"]
    assert not timed and kept == int8.load_accuracy(path)["speed"]  # timed in rounds: kept
    record = int8.load_accuracy(path)
    record["speed"] = {k: v for k, v in record["speed"].items() if k not in ("rounds", "ratio")}  # as before
    int8.save_accuracy(path, record)
    upgraded = quantize.export_int8(weights, out, datasets, calibration=6, threads=1)["accuracy"]["speed"]
    assert timed == [1] and "rounds" in upgraded and "ratio" in upgraded
    assert main([
        "export", "--backend", "openvino-int8", "--weights", str(weights), "--out", str(out), "--threads", "1",
        "--nudt", str(datasets[0].root), "--sirst", str(datasets[1].root), "--calibration", "6", "--retime",
    ]) == 0
    assert timed == [1, 1]


def test_export_cli_without_measurement_leaves_auto_on_fp32(datasets, weights, tmp_path, fake_quantize, capsys):
    out = tmp_path / "cache"
    code = main([
        "export", "--backend", "openvino-int8", "--weights", str(weights), "--out", str(out),
        "--nudt", str(datasets[0].root), "--sirst", str(datasets[1].root), "--calibration", "4", "--no-measure",
    ])
    assert code == 0
    text = capsys.readouterr().out
    assert "-int8.xml" in text and "auto: no accuracy record" in text
    assert main(["export", "--backend", "openvino-int8", "--calibration", "301"]) != 0


def test_validation_crops_hold_targets_from_the_training_splits(datasets):
    items = quantize.validation_frames(InputNorm(0.4, 0.2), datasets, total=5, crop=32)
    assert len(items) == 5
    for frame, mask in items:
        assert frame.shape == mask.shape == (32, 32) and frame.dtype == np.float32 and mask.any()
    again = quantize.validation_frames(InputNorm(0.4, 0.2), datasets, total=5, crop=32)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(items, again))


def test_a_small_frame_mirrored_up_to_the_crop_mirrors_its_targets_in_the_mask():
    # the validation metric saw the mirrored target as a false alarm: the mask was zero-padded
    x = np.zeros((20, 24), np.float32)
    truth = np.zeros(x.shape, bool)
    x[17:19, 21:23], truth[17:19, 21:23] = 5.0, True  # near the bottom-right corner
    frame, mask = quantize._crop(x, truth, 32, np.random.default_rng(0))
    assert frame.shape == mask.shape == (32, 32)
    np.testing.assert_array_equal(mask, frame > 0)  # every target pixel, mirrored ones too
    assert mask.sum() > truth.sum()


def test_accuracy_control_export_records_its_recipe_and_is_loaded(datasets, weights, tmp_path, fake_quantize, monkeypatch):
    monkeypatch.setattr(quantize, "VALIDATION_FRAMES", 6)
    monkeypatch.setattr(quantize, "VALIDATION_CROP", 32)
    out = tmp_path / "cache"
    plain = quantize.export_int8(weights, out, datasets, calibration=4, threads=1, measure=False)
    result = quantize.export_int8(weights, out, datasets, calibration=4, threads=1, accuracy_control=True)
    assert plain["built"] and result["built"]  # another recipe: rebuilt, not reused
    assert fake_quantize == [4, (4, 6)]
    fp = json.loads((Path(result["files"][0]).parent / (Path(result["files"][0]).name + ".json")).read_text())
    record = json.loads(Path(result["files"][-1]).read_text())
    assert fp["recipe"] == record["recipe"] == int8.INT8_RECIPE_AC
    assert record["accuracy_control"]["max_drop"] == int8.MAX_IOU_DROP
    model, info, _ = load_checkpoint(weights)
    backend = select.create_backend("cpu", model, info, BackendOptions(cache_dir=str(out), threads=1))
    assert backend.name == "openvino-int8"



def _count_measurements(monkeypatch) -> list[dict]:
    """The keyword arguments of every ``measure_accuracy`` call from now on (each still
    measures)."""
    calls: list[dict] = []
    real = quantize.measure_accuracy
    monkeypatch.setattr(quantize, "measure_accuracy", lambda *a, **k: calls.append(k) or real(*a, **k))
    return calls

def _measured(pd_points: list[float]):
    """A stand-in for ``measure_accuracy`` whose n-th call reports ``pd_points[n]`` on both
    datasets; the calls are counted in its ``calls`` list."""
    calls: list[str] = []

    def measure(*args, label: str = "int8", **kwargs):
        pd = pd_points[len(calls)]
        calls.append(label)
        metrics = {"pd": 0.9, "iou": 0.5, "images": FRAMES, "targets": FRAMES}
        splits = {"NUDT-SIRST": "test", "SIRST-v2": "val"}
        return {name: {"fp32": metrics, label: metrics, "delta": {"pd_points": pd, "iou_points": 0.0},
                       "split": splits[name], "limit": None, "frames": FRAMES, "targets": FRAMES}
                for name in int8.REQUIRED_DATASETS}

    measure.calls = calls
    return measure


def test_auto_adds_accuracy_control_only_when_the_plain_ir_is_out_of_tolerance(
    datasets, weights, tmp_path, fake_quantize, monkeypatch
):
    monkeypatch.setattr(quantize, "VALIDATION_FRAMES", 6)
    monkeypatch.setattr(quantize, "VALIDATION_CROP", 32)
    measure = _measured([-1.39, 0.0])  # the plain IR loses 2 of 144 targets, the controlled one none
    monkeypatch.setattr(quantize, "measure_accuracy", measure)
    out = tmp_path / "cache"
    result = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    assert fake_quantize == [4, (4, 6)] and len(measure.calls) == 2
    assert result["recipe"] == int8.INT8_RECIPE_AC and result["auto"] == "uses openvino-int8"
    assert "SIRST-v2 Pd -1.39 points" in result["plain"]["auto"]
    assert result["plain"]["accuracy"]["speed"] is None and result["accuracy"]["speed"]["p50_ms"] > 0  # timed when kept
    # the controlled IR within tolerance is reused, not replaced by a plain one again
    again = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    assert fake_quantize == [4, (4, 6)] and len(measure.calls) == 2 and again["recipe"] == int8.INT8_RECIPE_AC


def test_auto_keeps_the_plain_ir_within_tolerance_and_never_controls(datasets, weights, tmp_path, fake_quantize, monkeypatch):
    measure = _measured([-0.3, -1.39])
    monkeypatch.setattr(quantize, "measure_accuracy", measure)
    result = quantize.export_int8(weights, tmp_path / "a", datasets, calibration=4, threads=1)
    assert fake_quantize == [4] and result["recipe"] == int8.INT8_RECIPE and result["auto"] == "uses openvino-int8"
    never = quantize.export_int8(weights, tmp_path / "b", datasets, calibration=4, threads=1, accuracy_control="never")
    assert fake_quantize == [4, 4] and never["recipe"] == int8.INT8_RECIPE and "out of tolerance" in never["auto"]
    assert never["accuracy"]["speed"] is None and result["accuracy"]["speed"]["p50_ms"] > 0
    with pytest.raises(ConfigError, match="valid: auto, always, never"):
        quantize.export_int8(weights, tmp_path / "c", datasets, accuracy_control="sometimes")


# --- irstd export --backend openvino-bf16 -----------------------------------------------------
@pytest.fixture
def blind_weights(tmp_path) -> Path:
    """A tiny model whose head finds nothing (logits about -20): FP32 and bf16 agree exactly
    (Pd 0, IoU 0), so the measured delta is a known 0."""
    torch.manual_seed(0)
    cfg = named_config("tiny")
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-20.0)
    return save_checkpoint(tmp_path / "blind.safetensors", model, CheckpointInfo(cfg, InputNorm(0.4, 0.2)))


def test_bf16_export_writes_the_record_cpu_reads_and_reuses_it(datasets, blind_weights, tmp_path, native_bf16, monkeypatch):
    from irstd_ros.inference.backends import openvino_bf16 as bf16

    out = tmp_path / "cache"
    result = quantize.export_bf16(blind_weights, out, datasets, threads=1)
    assert result["measured"] and result["auto"] == "uses openvino-bf16"
    record = json.loads(Path(result["files"][0]).read_text())
    assert result["files"][0].endswith("-bf16.accuracy.json") and Path(result["files"][0]).parent == out
    assert record["recipe"] == bf16.BF16_RECIPE and record["fingerprint"]["backend"] == "openvino-bf16"
    for entry in record["datasets"].values():  # measured by irstd eval with both backends
        assert entry["fp32"]["backend"] == "openvino" and entry["bf16"]["backend"] == "openvino-bf16"
        assert entry["fp32"]["images"] == entry["bf16"]["images"] == FRAMES
        assert entry["delta"] == {"pd_points": 0.0, "iou_points": 0.0}
    assert set(record["datasets"]) == set(int8.REQUIRED_DATASETS) and record["verdict"].startswith("within tolerance")
    assert int8.recorded_speed(record) == record["speed"]["p50_ms"] > 0  # bf16's own speed, here
    # a record that still applies is reused: nothing is evaluated again
    monkeypatch.setattr(quantize, "measure_accuracy", lambda *a, **k: pytest.fail("re-measured a valid record"))
    again = quantize.export_bf16(blind_weights, out, datasets, threads=1)
    assert not again["measured"] and again["auto"] == "uses openvino-bf16"
    model, info, _ = load_checkpoint(blind_weights)
    backend = select.create_backend("cpu", model, info, BackendOptions(cache_dir=str(out), threads=1))
    assert backend.name == "openvino-bf16"


def test_bf16_export_re_measures_a_stale_record(datasets, blind_weights, tmp_path, native_bf16, monkeypatch):
    out = tmp_path / "cache"
    path = Path(quantize.export_bf16(blind_weights, out, datasets, threads=1)["files"][0])
    record = json.loads(path.read_text())
    record["fingerprint"]["versions"]["openvino"] = "2020.1.0"
    path.write_text(json.dumps(record))
    model, info, _ = load_checkpoint(blind_weights)
    refused = select.create_backend("cpu", model, info, BackendOptions(cache_dir=str(out), threads=1))
    assert refused.name != "openvino-bf16"
    calls = _count_measurements(monkeypatch)
    again = quantize.export_bf16(blind_weights, out, datasets, threads=1)
    assert again["measured"] and calls == [{"candidate": "openvino-bf16", "label": "bf16"}]
    assert json.loads(path.read_text())["fingerprint"]["versions"]["openvino"] != "2020.1.0"


def test_bf16_records_of_the_same_weights_under_two_thresholds_live_side_by_side(
    datasets, blind_weights, tmp_path, native_bf16, monkeypatch
):
    """Same weights saved with another threshold: the record measured at the first does not
    describe the second, which is measured into a record of its own, named like the INT8 IR
    by the weights, threshold and normalisation; the first stays valid (named by the weights
    alone, each export overwrote the other's record and auto refused the first again)."""
    import dataclasses

    from irstd_ros.inference.backends import openvino_bf16 as bf16

    out = tmp_path / "cache"
    first = quantize.export_bf16(blind_weights, out, datasets, threads=1)
    assert first["measured"]
    model, info, _ = load_checkpoint(blind_weights)
    other = save_checkpoint(tmp_path / "other.safetensors", model, dataclasses.replace(info, threshold=0.3))
    calls = _count_measurements(monkeypatch)
    second = quantize.export_bf16(other, out, datasets, threads=1)
    assert second["measured"] and len(calls) == 1 and second["auto"] == "uses openvino-bf16"
    assert bf16.auto_refusal(model, info, BackendOptions(cache_dir=str(out))) is None  # the first record still holds
    assert second["files"] != first["files"]
    again = quantize.export_bf16(blind_weights, out, datasets, threads=1)
    assert not again["measured"] and len(calls) == 1
    # a third threshold has no record yet: auto says so, and does not run bf16 on another's
    third = save_checkpoint(tmp_path / "third.safetensors", model, dataclasses.replace(info, threshold=0.7))
    model3, info3, _ = load_checkpoint(third)
    assert bf16.auto_refusal(model3, info3, BackendOptions(cache_dir=str(out))).startswith("no accuracy record")
    refused = select.create_backend("cpu", model3, info3, BackendOptions(cache_dir=str(out), threads=1))
    assert refused.name != "openvino-bf16"


def test_bf16_record_of_another_fp32_graph_is_refused_and_re_measured(
    datasets, blind_weights, tmp_path, native_bf16, change_fp32_conversion
):
    """bf16 compiles the FP32 IR in the cache: a record measured on one graph said nothing
    of another (a changed conversion: here the logits doubled under a new recipe), yet the
    gate took it, keyed by the weights alone. Now the record holds the graph it measured:
    the gate refuses another and the next export measures again."""
    from irstd_ros.inference.backends import graph_export
    from irstd_ros.inference.backends import openvino_bf16 as bf16

    out = tmp_path / "cache"
    assert quantize.export_bf16(blind_weights, out, datasets, threads=1)["auto"] == "uses openvino-bf16"
    model, info, _ = load_checkpoint(blind_weights)
    options = BackendOptions(cache_dir=str(out), threads=1)
    change_fp32_conversion()
    graph_export.export_openvino_ir(model, info, options)  # the node's FP32 IR, converted by the new version
    reason = bf16.auto_refusal(model, info, options)
    assert reason is not None and reason.startswith("the accuracy record was measured on another FP32 IR graph")
    assert select.create_backend("cpu", model, info, options).name == "openvino"
    again = quantize.export_bf16(blind_weights, out, datasets, threads=1)
    assert again["measured"] and again["auto"] == "uses openvino-bf16"
    assert bf16.auto_refusal(model, info, options) is None


def test_bf16_export_cli(datasets, blind_weights, tmp_path, native_bf16, capsys):
    args = ["export", "--backend", "openvino-bf16", "--weights", str(blind_weights), "--out", str(tmp_path / "c"),
            "--nudt", str(datasets[0].root), "--sirst", str(datasets[1].root), "--threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "-bf16.accuracy.json" in text and "auto: uses openvino-bf16" in text
    assert "NUDT-SIRST test: bf16 - FP32 Pd +0.00, IoU +0.00 points" in text
    assert main([*args, "--no-measure"]) == 2
    assert "--no-measure does not apply to openvino-bf16" in capsys.readouterr().err


def test_bf16_export_refuses_a_cpu_without_native_bf16(datasets, blind_weights, tmp_path, monkeypatch, capsys):
    from irstd_ros.inference.backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(quantize, "measure_accuracy", lambda *a, **k: pytest.fail("measured emulated bf16"))
    assert main(["export", "--backend", "openvino-bf16", "--weights", str(blind_weights), "--out", str(tmp_path / "c"),
                 "--nudt", str(datasets[0].root), "--sirst", str(datasets[1].root)]) == 2
    assert "needs a CPU with native bf16" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


# --- irstd export --backend openvino-int8-bf16 ------------------------------------------------
def test_int8_bf16_export_measures_the_cached_int8_ir_and_cpu_then_runs_it(
    datasets, blind_weights, tmp_path, fake_quantize, native_bf16, monkeypatch
):
    from irstd_ros.inference.backends import openvino_int8_bf16 as mixed
    from irstd_ros.inference.backends.fingerprint import (
        file_digests,
        load_fingerprint,
        save_fingerprint,
    )

    out = tmp_path / "cache"
    ir = Path(quantize.export_int8(blind_weights, out, datasets, calibration=4, threads=1)["files"][0])
    calls = _count_measurements(monkeypatch)
    result = quantize.export_int8_bf16(blind_weights, out, datasets, threads=1)
    assert result["measured"] and result["auto"] == f"uses {mixed.NAME}" and fake_quantize == [4]  # nothing quantised
    assert calls == [{"candidate": mixed.NAME, "label": "int8-bf16"}]
    assert result["int8_ir"] == str(ir) and len(result["files"]) == 1  # the IR is read, not written
    record = json.loads(Path(result["files"][0]).read_text())
    assert result["files"][0].endswith("-int8-bf16.accuracy.json") and Path(result["files"][0]).parent == ir.parent
    assert record["recipe"] == mixed.RECIPE and record["int8_recipe"] == int8.INT8_RECIPE
    assert record[int8.IR_DIGESTS] == file_digests(ir) and record["verdict"].startswith("within tolerance")
    assert record["versions"] == {"openvino": mixed.openvino_version()}
    for entry in record["datasets"].values():  # irstd eval with both backends, the whole (tiny) splits
        assert entry["fp32"]["backend"] == "openvino" and entry["int8-bf16"]["backend"] == mixed.NAME
        assert entry["delta"] == {"pd_points": 0.0, "iou_points": 0.0} and entry["frames"] == FRAMES
    assert int8.recorded_speed(record) == record["speed"]["p50_ms"] > 0
    model, info, _ = load_checkpoint(blind_weights)
    options = BackendOptions(cache_dir=str(out), threads=1)
    assert select.create_backend("cpu", model, info, options).name == mixed.NAME
    # reused while it applies; measured again once the INT8 IR is rebuilt (other files)
    assert not quantize.export_int8_bf16(blind_weights, out, datasets, threads=1)["measured"] and len(calls) == 1
    quantize.export_int8(blind_weights, out, datasets, calibration=3, threads=1, force=True)
    assert fake_quantize == [4, 3]
    ir.with_suffix(".bin").write_bytes(ir.with_suffix(".bin").read_bytes() + b"\0")  # other bytes, as NNCF would
    save_fingerprint(ir, load_fingerprint(ir))
    assert "measured on other files" in mixed.auto_refusal(model, info, options)
    again = quantize.export_int8_bf16(blind_weights, out, datasets, threads=1)
    assert again["measured"] and again["auto"] == f"uses {mixed.NAME}"
    assert [c["label"] for c in calls] == ["int8-bf16", "int8", "int8-bf16"]  # the forced INT8 export measured INT8


def test_int8_bf16_export_needs_the_int8_ir_and_native_bf16(datasets, blind_weights, tmp_path, monkeypatch, capsys):
    from irstd_ros.inference.backends import openvino_backend

    monkeypatch.setattr(quantize, "measure_accuracy", lambda *a, **k: pytest.fail("measured without an INT8 IR"))
    args = ["export", "--backend", "openvino-int8-bf16", "--weights", str(blind_weights), "--out", str(tmp_path / "c"),
            "--nudt", str(datasets[0].root), "--sirst", str(datasets[1].root)]
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: True)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "openvino-int8-bf16 compiles the INT8 IR: no INT8 IR for these weights" in err[0]
    assert "irstd export --backend openvino-int8" in err[0]
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    assert main(args) == 2
    assert "needs a CPU with native bf16" in capsys.readouterr().err


def test_int8_bf16_export_cli(datasets, blind_weights, tmp_path, fake_quantize, native_bf16, capsys):
    common = ["--weights", str(blind_weights), "--out", str(tmp_path / "c"), "--nudt", str(datasets[0].root),
              "--sirst", str(datasets[1].root), "--threads", "1"]
    assert main(["export", "--backend", "openvino-int8", "--calibration", "4", *common]) == 0
    capsys.readouterr()
    assert main(["export", "--backend", "openvino-int8-bf16", *common]) == 0
    text = capsys.readouterr().out
    assert "-int8-bf16.accuracy.json" in text and "auto: uses openvino-int8-bf16" in text
    assert "SIRST-v2 val: INT8+bf16 - FP32 Pd +0.00, IoU +0.00 points" in text
    assert main(["export", "--backend", "openvino-int8-bf16", "--calibration", "4", *common]) == 2
    assert "--calibration does not apply to openvino-int8-bf16" in capsys.readouterr().err


def test_the_auto_line_says_whether_the_ir_starts_not_only_what_its_record_says(
    datasets, weights, tmp_path, fake_quantize, monkeypatch
):
    """A cached IR that OpenVINO cannot read, with a record within tolerance, printed
    "auto: uses openvino-int8" while auto skipped it. A corrupt one is rebuilt (its digests
    no longer match); one that verifies but does not load is named on the auto line."""
    from irstd_ros.inference.backends.fingerprint import (
        file_digests,
        load_fingerprint,
        save_fingerprint,
    )

    out = tmp_path / "cache"
    measured = _count_measurements(monkeypatch)
    first = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    path = Path(first["files"][0])
    assert first["auto"] == "uses openvino-int8" and len(measured) == 1
    good = path.with_suffix(".bin").read_bytes()
    path.with_suffix(".bin").write_bytes(good[:100])
    rebuilt = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    assert rebuilt["built"] and fake_quantize == [4, 4] and len(measured) == 2
    assert path.with_suffix(".bin").read_bytes() == good and rebuilt["auto"] == "uses openvino-int8"
    path.with_suffix(".bin").write_bytes(good[:100])
    save_fingerprint(path, load_fingerprint(path))  # as if written so: the digests hold
    record = int8.load_accuracy(path)  # and measured so (the record's digests of the IR too)
    int8.save_accuracy(path, {**record, int8.IR_DIGESTS: file_digests(path)})
    again = quantize.export_int8(weights, out, datasets, calibration=4, threads=1)
    assert not again["built"] and len(measured) == 2  # the IR and its record reused
    assert again["auto"].startswith(f"openvino cannot read {path}") and "\n" not in again["auto"]
