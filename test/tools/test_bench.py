"""``irstd bench``: helpers, the quick run's JSON, and the node pipeline measurement (ROS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _support.cli import one_error_line, run_cli

from irstd_ros.cli.main import main
from irstd_ros.core.statistics import TAIL_SAMPLES
from irstd_ros.errors import ConfigError
from irstd_ros.tools import bench

ROW_KEYS = {"backend", "precision", "shapes", "model", "height", "width", "p50_ms", "p99_ms", "p99_samples", "fps",
            "pre_p50_ms", "post_p50_ms", "node_work_ratio", "post_thresholds", "peak_mem_mb"}
NODE_KEYS = {"height", "width", "p50_ms", "p99_samples", "backend_p50_ms"}


def test_synthetic_frame_has_warm_targets():
    frame = bench.synthetic_frame(64, 80)
    assert frame.shape == (64, 80) and frame.dtype == np.uint16
    assert frame.max() > bench.FRAME_BACKGROUND + bench.TARGET_AMPLITUDE / 2
    unit = bench.unit_frame(64, 80)
    assert unit.dtype == np.float32 and 0.0 <= unit.min() and unit.max() <= 1.0


def test_quick_bench_json(capsys):
    code = main(["bench", "--quick", "--json", "--no-node"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["quick"] and result["threads"] == bench.THREADS
    rows = result["backends"]
    assert {(r["height"], r["width"]) for r in rows} == set(bench.QUICK_SIZES)
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["backend"] == "torch-cpu"
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["fps"] > 0
        assert row["p99_samples"] == row["calls"] < TAIL_SAMPLES
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] > 0
    assert result["node"] is None
    assert "Machine:" in bench.format_table(result)


def test_unknown_bench_backend_is_refused(capsys):
    assert main(["bench", "--quick", "--backends", "nope"]) != 0
    assert "valid:" in capsys.readouterr().err


def test_unknown_bench_model_is_refused_before_any_cell(capsys, monkeypatch):
    def no_cell(*_a, **_k):
        raise AssertionError("no child is started for an unknown model")

    monkeypatch.setattr(bench, "_child", no_cell)
    assert main(["bench", "--models", "nosuch", "--quick", "--no-node"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--models nosuch: unknown model" in err
    assert "shipped" in err and "tiny" in err and "*.safetensors" in err
    assert [s.config for s in bench.resolve_models(["tiny", "paper"])] == ["tiny", "paper"]


@pytest.mark.parametrize("name", ["tiny", "fast"])
def test_shipped_name_is_the_checkpoint_weights_loads(name):
    """shipped:NAME is the very file ``--weights NAME`` loads everywhere else, whoever asks
    (irstd bench, python -m irstd_ros.tools.bench, the GPU bench)."""
    from irstd_ros.inference.detector import resolve_model_path

    path = bench.model_name(f"shipped:{name}")
    assert path == str(resolve_model_path(name)) and path.endswith(".safetensors")
    (spec,) = bench.resolve_models([f"shipped:{name}"])
    assert spec.path == path and spec.config is None
    (spec,) = bench.resolve_models([f"config:{name}"])
    assert spec.path is None and spec.config == name


def test_a_bare_name_of_both_a_config_and_a_shipped_model_is_the_config_and_says_so(capsys, tmp_path, monkeypatch):
    """``--models tiny`` timed the tiny network with random weights, while ``--weights tiny``
    is the shipped checkpoint: the bench says which, and how to name the other; a file
    called tiny here is not read (a bare word is never a file, as for --weights)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("a file called tiny")
    assert [s.config for s in bench.resolve_models(["tiny", "lite"])] == ["tiny", "lite"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # lite is no shipped model's name: no note
    assert "--models tiny is the tiny network with random weights (config:tiny); the shipped " \
           "checkpoint is shipped:tiny" in err


def test_a_checkpoint_file_without_the_safetensors_name_is_told_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"--models mymodel: unknown model \(a checkpoint file must be "
                                          r"named \*\.safetensors\)"):
        bench.resolve_models(["mymodel"])


def test_the_gpu_bench_takes_the_same_model_forms(tmp_path):
    """The prefixed forms were understood by ``irstd bench`` alone: gpu_bench and
    ``python -m irstd_ros.tools.bench`` refused shipped:NAME as an unknown model."""
    from irstd_ros.inference.detector import resolve_model_path
    from irstd_ros.tools import gpu_bench

    result = gpu_bench.run_gpu_bench(models=["shipped:tiny", "config:tiny"], sizes=[(32, 32)], variants=["fp32"],
                                     device="cpu", budget_s=0.0, warmup=1, max_calls=1, out=tmp_path / "b.json")
    notes = list(result["models"].values())
    assert notes[0] == f"checkpoint {resolve_model_path('tiny')}" and notes[1].startswith("tiny config")


@pytest.mark.ros
def test_node_pipeline_measurement(tmp_path):
    import torch

    from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint
    from irstd_ros.models import build_model, named_config

    torch.manual_seed(0)
    cfg = named_config("tiny")
    path = save_checkpoint(tmp_path / "tiny.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg))
    h, w = bench.QUICK_NODE_SIZE
    row = bench.measure_node_pipeline(path, backend="torch-cpu", height=h, width=w, frames=3, warmup=1, threads=1)
    assert NODE_KEYS <= set(row)
    assert row["backend"] == "torch-cpu" and row["frames"] == row["p99_samples"] == 3
    assert row["p50_ms"] > 0 and row["backend_p50_ms"] > 0


@pytest.mark.ros
def test_node_pipeline_does_not_hand_rclpy_the_command_line(monkeypatch):
    """rclpy.init(context=...) read sys.argv: a FROM:=TO there remapped the measured node's
    topics (and a --ros-args -p would set its parameters)."""
    from _support.ros_args import REMAP_FROM, InitProbed, probe_rclpy_init

    names = probe_rclpy_init(monkeypatch)
    with pytest.raises(InitProbed):
        bench.measure_node_pipeline("unused.safetensors", height=64, width=64)
    assert names == [REMAP_FROM]


def _row(backend: str, size: tuple[int, int], p50: float, **extra) -> dict:
    h, w = size
    return {"backend": backend, "model": "shipped", "height": h, "width": w, "p50_ms": p50,
            "p99_ms": p50 * 1.5, "p99_samples": 200, "calls": 200, "precision": bench.PRECISIONS.get(backend, "fp32"),
            **extra}


def test_matrix_puts_sizes_side_by_side_with_ratios():
    small, node = (256, 256), bench.NODE_SIZE
    rows = [
        _row("openvino", small, 10.0), _row("openvino", node, 80.0, pre_p50_ms=4.0, post_p50_ms=4.0, node_work_ratio=0.1),
        _row("openvino-int8", small, 5.0), _row("openvino-int8", node, 20.0, pre_p50_ms=1.0, post_p50_ms=1.0, node_work_ratio=0.1),
    ]
    matrix = bench.format_matrix({"backends": rows})
    int8_line = next(line for line in matrix if "| openvino-int8 |" in line)
    assert "| int8 | static | 5.0 / 7.5 | 2.00 | 20.0 / 30.0 | 4.00 |" in int8_line
    assert matrix[0].count("p50 / p99 ms") == 2 and matrix[0].index("256x256") < matrix[0].index("640x512")
    overhead = bench.format_overhead({"backends": rows})
    assert len(overhead) == 4 and "| 10.0 % |" in overhead[-1]


def test_bench_variants_are_accepted_names(capsys):
    assert "openvino-dynamic" in bench.BENCH_VARIANTS
    assert bench.BENCH_VARIANTS["openvino-dynamic"] == ("openvino", {"dynamic_shapes": True})
    assert main(["bench", "--quick", "--backends", "openvino-dynamc"]) != 0
    assert "openvino-dynamic" in capsys.readouterr().err


def test_int8_rows_measure_the_ir_auto_runs(tmp_path, monkeypatch):
    """An INT8 IR of these weights in the default cache (``irstd export``'s, with its
    accuracy record) is what the bench's int8 rows and node row run, not a fresh plain build."""
    pytest.importorskip("openvino")
    import shutil

    from irstd_ros.checkpoint import CheckpointInfo, InputNorm, save_checkpoint
    from irstd_ros.inference.backends import openvino_int8 as int8
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.models import build_model, named_config

    def fake(fp32_xml, calibration, out_xml, *args, **kwargs):
        shutil.copy(fp32_xml, out_xml)
        shutil.copy(Path(fp32_xml).with_suffix(".bin"), Path(out_xml).with_suffix(".bin"))
        return Path(out_xml)

    monkeypatch.setattr(int8, "quantize_ir", fake)
    cfg = named_config("tiny")
    weights = save_checkpoint(tmp_path / "w.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg, InputNorm(0.4, 0.2)))
    user_cache = tmp_path / "user_cache"
    monkeypatch.setenv("IRSTD_CACHE_DIR", str(user_cache))
    model = {"label": "shipped", "path": str(weights)}
    net, info = bench.load_model(bench.ModelSpec(**model))
    assert bench.reuse_int8(net, info, BackendOptions(cache_dir=str(tmp_path / "b0"))) is None
    path, _ = int8.build_int8(net, info, BackendOptions(), [np.zeros((32, 32), np.float32)],
                              validation=lambda: [np.zeros((32, 32), np.float32)])
    int8.save_accuracy(path, {"recipe": int8.INT8_RECIPE_AC})
    out = bench.prepare_exports(model, ["openvino-int8"], str(tmp_path / "bench_cache"))
    assert int8.INT8_RECIPE_AC in out["openvino_int8_source"] and "openvino_int8_s" not in out
    copied, _ = int8.int8_path(net, info, BackendOptions(cache_dir=str(tmp_path / "bench_cache")))
    assert copied.is_file() and int8.load_accuracy(copied) == int8.load_accuracy(path)


def test_bf16_record_goes_with_the_bench_cache(tmp_path, monkeypatch):
    """bf16's accuracy record of these weights in the default cache (``irstd export
    --backend openvino-bf16``'s) is copied into the bench's cache, where the bf16 rows and
    the node row's ``auto`` read it."""
    pytest.importorskip("openvino")
    from _support.openvino import measured_datasets

    from irstd_ros.checkpoint import CheckpointInfo, InputNorm, save_checkpoint
    from irstd_ros.inference.backends import openvino_bf16 as bf16
    from irstd_ros.inference.backends import openvino_int8 as int8
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.graph_export import export_openvino_ir
    from irstd_ros.models import build_model, named_config

    cfg = named_config("tiny")
    weights = save_checkpoint(tmp_path / "w.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg, InputNorm(0.4, 0.2)))
    monkeypatch.setenv("IRSTD_CACHE_DIR", str(tmp_path / "user_cache"))
    model = {"label": "shipped", "path": str(weights)}
    net, info = bench.load_model(bench.ModelSpec(**model))
    bench_cache = BackendOptions(cache_dir=str(tmp_path / "bench_cache"))
    assert bench.reuse_bf16_record(net, info, bench_cache, tmp_path / "unread.xml") is None  # no record: no IR read
    src, digest = bf16.bf16_artifact(net, info, BackendOptions())
    # the export measures on the FP32 IR it converts into the default cache, and records its graph
    graph = bf16.ir_graph_digest(export_openvino_ir(net, info, BackendOptions()))
    record = {"weights_sha256": digest, "conditions": int8.measurement_conditions(info), "recipe": bf16.BF16_RECIPE,
              "fingerprint": bf16.bf16_fingerprint(digest, info, graph).to_dict(),
              "datasets": measured_datasets()}
    int8.save_accuracy(src, record)
    out = bench.prepare_exports(model, ["openvino-bf16"], str(tmp_path / "bench_cache"))
    assert out["openvino_bf16_record"].endswith("-bf16.accuracy.json (within tolerance)")
    copied, _ = bf16.bf16_artifact(net, info, bench_cache)
    assert int8.load_accuracy(copied) == int8.load_accuracy(src)
    assert bf16.auto_refusal(net, info, bench_cache) is None  # the bench cache's IR, converted anew: the same graph


def test_models_may_be_checkpoint_files(tmp_path):
    import torch

    from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint
    from irstd_ros.models import build_model, named_config

    torch.manual_seed(0)
    cfg = named_config("fast")
    path = save_checkpoint(tmp_path / "mine.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg))
    [spec] = bench.resolve_models([str(path)])
    assert (spec.label, spec.path) == ("mine", str(path))
    model, info = bench.load_model(spec)
    assert info.model.stem == 2
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        bench.resolve_models([str(tmp_path / "missing.safetensors")])


@pytest.mark.parametrize("damage", ["truncated", "not_safetensors"])
def test_unloadable_checkpoint_fails_the_bench_before_any_cell(damage, capsys, monkeypatch, tmp_path):
    import torch

    from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint
    from irstd_ros.models import build_model, named_config

    def no_cell(*_a, **_k):
        raise AssertionError("no child is started for a model that cannot be loaded")

    torch.manual_seed(0)
    cfg = named_config("tiny")
    good = save_checkpoint(tmp_path / "good.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg))
    bad = tmp_path / "bad.safetensors"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint at all")
    monkeypatch.setattr(bench, "_child", no_cell)
    code = main(["bench", "--quick", "--no-node", "--backends", "torch-cpu", "--sizes", "64x64",
                 "--models", f"{good},{bad}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"--models {bad}: model file {bad}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("log_form", "label"), [(True, "log form (AVX2)"), (False, "numpy arcsinh")])
def test_machine_names_the_asinh_path_that_ran(monkeypatch, log_form, label):
    from irstd_ros.core import normalization

    monkeypatch.setattr(normalization, "ASINH_LOG_FORM", log_form)
    assert bench.machine()["asinh"] == label


def test_node_work_times_every_overhead_call(monkeypatch):
    """pre / post p50s come from OVERHEAD_CALLS timed calls each (after one warm-up), not
    from the 3 that a zero time budget stopped at."""
    from irstd_ros.checkpoint import CheckpointInfo
    from irstd_ros.inference import detector
    from irstd_ros.models import named_config

    calls = {"pre": 0, "post": 0}
    real_normalize, real_extract = detector.normalize, detector.extract_targets

    def counted_normalize(*a, **k):
        calls["pre"] += 1
        return real_normalize(*a, **k)

    def counted_extract(*a, **k):
        calls["post"] += 1
        return real_extract(*a, **k)

    monkeypatch.setattr(detector, "normalize", counted_normalize)
    monkeypatch.setattr(detector, "extract_targets", counted_extract)
    raw = bench.synthetic_frame(32, 32)
    out = bench.node_work(raw, np.zeros((32, 32), np.float32), CheckpointInfo(named_config("tiny")), 1.0)
    assert calls == {"pre": bench.OVERHEAD_CALLS + 1, "post": bench.OVERHEAD_CALLS + 1}
    assert out["pre_p50_ms"] > 0 and out["node_work_ratio"] > 0


def test_node_work_post_is_the_post_processing_the_default_node_runs(monkeypatch):
    """The bench timed extract_targets alone, while the default node (tracking on) also
    extracts the tracker's candidates and gated components, each at the checkpoint's own
    threshold, and checks for NaN: node_work_ratio (pre + post <= 10 % of the backend)
    under-measured the node."""
    from irstd_ros.checkpoint import CheckpointInfo
    from irstd_ros.inference import detector
    from irstd_ros.models import named_config

    seen: list[float] = []
    real = detector.extract_candidates

    def recorded(prob, grey, post, threshold, *a, **k):
        seen.append(threshold)
        return real(prob, grey, post, threshold, *a, **k)

    monkeypatch.setattr(detector, "extract_candidates", recorded)
    info = CheckpointInfo(named_config("tiny"))
    candidate, gated = info.tracking_thresholds(-1.0, -1.0)
    assert candidate is not None and gated is not None
    out = bench.node_work(bench.synthetic_frame(32, 32), np.zeros((32, 32), np.float32), info, 1.0)
    assert seen == [candidate, gated] * (bench.OVERHEAD_CALLS + 1)
    assert out["post_thresholds"] == {"detection": info.threshold, "candidate": candidate, "gated": gated}


def test_node_work_post_follows_the_nodes_tracking_switch(monkeypatch):
    """With tracking off by default, the node would extract no candidates: nor does the bench."""
    from irstd_ros.checkpoint import CheckpointInfo
    from irstd_ros.inference import detector
    from irstd_ros.models import named_config
    from irstd_ros.ros import params

    seen: list[float] = []
    monkeypatch.setattr(detector, "extract_candidates", lambda *a, **k: seen.append(a[3]) or [])
    monkeypatch.setitem(params.SPECS, "tracking.enabled", params.ParamSpec("tracking.enabled", False, ""))
    out = bench.node_work(bench.synthetic_frame(32, 32), np.zeros((32, 32), np.float32),
                          CheckpointInfo(named_config("tiny")), 1.0)
    assert seen == [] and out["post_thresholds"]["candidate"] is None


def test_the_tables_print_few_samples_p99_as_a_max_with_the_count():
    """The node row (40 frames, 4 with --quick) and backend rows of as few as MIN_CALLS
    calls printed a 'p99' that was their maximum."""
    few = _row("torch-cpu", (256, 256), 10.0, p99_samples=3, calls=3, fps=100.0, peak_mem_mb=500.0)
    many = _row("openvino", (256, 256), 4.0, fps=250.0, peak_mem_mb=400.0)
    node = {"model": "shipped", "width": 80, "height": 64, "backend": "torch-cpu", "frames": 4, "p99_samples": 4,
            "p50_ms": 12.0, "p99_ms": 15.0, "detector_p50_ms": 11.0, "backend_p50_ms": 10.0,
            "overhead_ratio": 0.2, "overhead_target": 0.1}
    result = {"machine": {}, "threads": 2, "backends": [few, many], "models": {}, "skipped": [], "node": node}
    table = bench.format_table(result)
    assert "| torch-cpu | shipped | 256x256 | 10.0 | max 15.0 (n=3) | 100.0 | 500 | 3 |" in table
    assert "| openvino | shipped | 256x256 | 4.0 | 6.0 | 250.0 | 400 | 200 |" in table
    assert "| 10.0 / max 15.0 (n=3) | 0.40 |" in table and "| 4.0 / 6.0 | 1.00 |" in table
    assert "| shipped | 80x64 | torch-cpu | 12.0 | max 15.0 (n=4) | 11.0 | 10.0 |" in table


def test_time_calls_with_no_budget_limit_times_max_calls():
    times, _ = bench.time_calls(lambda: None, 1, float("inf"), 17)
    assert len(times) == 17


def test_bench_exits_non_zero_when_every_cell_failed(capsys, monkeypatch):
    """The report is printed (it says why), but a run that measured nothing is a failure."""
    monkeypatch.setattr(bench, "_child", lambda *_a, **_k: (None, "exit 1: boom"))
    assert main(["bench", "--quick", "--no-node", "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["backends"] == [] and result["skipped"][0]["reason"] == "exit 1: boom"
    assert "nothing was measured" in err


def test_gpu_bench_exits_non_zero_when_every_cell_failed(capsys, monkeypatch):
    from irstd_ros.tools import gpu_bench

    def no_cuda(*_a, **_k):
        raise RuntimeError("no CUDA device")

    monkeypatch.setattr(gpu_bench, "bench_cell_rows", no_cuda)
    assert main(["bench", "--gpu", "--models", "tiny", "--sizes", "32x32", "--variants", "fp32"]) == 1
    out, err = capsys.readouterr()
    assert "skipped fp32/tiny: RuntimeError: no CUDA device" in out and "nothing was measured" in err


@pytest.mark.parametrize(("args", "words"), [
    (["--backends", ",,"], "--backends ',,': names nothing"),
    (["--models", ","], "--models ',': names nothing"),
    (["--sizes", " , "], "--sizes ' , ': names nothing"),
    (["--variants", "fp16"], "--variants needs --gpu"),
    (["--gpu", "--backends", "torch-cpu"], "--backends and --quick are for the CPU bench"),
    (["--gpu", "--variants", ","], "--variants ',': names nothing"),
])
def test_bench_options_that_would_be_ignored_are_refused(args, words, capsys, monkeypatch):
    """An empty list is not the default (every backend, minutes), and an option of the other
    bench is not silently dropped."""
    from irstd_ros.tools import gpu_bench

    def nothing_runs(*_a, **_k):
        raise AssertionError("nothing runs with a refused option")

    monkeypatch.setattr(bench, "_child", nothing_runs)
    monkeypatch.setattr(gpu_bench, "bench_cell_rows", nothing_runs)
    code, err = run_cli(capsys, "bench", "--no-node", *args)
    assert code == 2 and words in one_error_line(err)


def test_gpu_bench_out_is_never_half_written(tmp_path, monkeypatch):
    """--out is rewritten after every cell so that a run killed by its time limit keeps what
    it measured: a write that fails half-way leaves the previous cell's whole file."""
    from irstd_ros.tools import gpu_bench

    out = tmp_path / "bench.json"
    real_write = Path.write_text
    writes = []

    def half_then_fail(self, text, *a, **k):
        writes.append(self)
        if len(writes) == 2:  # the second cell's flush dies mid-write
            real_write(self, text[: len(text) // 2], *a, **k)
            raise KeyboardInterrupt
        return real_write(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        gpu_bench.run_gpu_bench(models=["tiny"], sizes=[(32, 32)], variants=["fp32", "bf16"], device="cpu",
                                budget_s=0.0, warmup=1, max_calls=1, out=out)
    first = json.loads(out.read_text())
    assert [r["variant"] for r in first["rows"]] == ["fp32"] and not first["complete"]
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


@pytest.mark.parametrize("args", [["--max-calls", "0"], ["--warmup", "-1"], ["--budget", "nan"], ["--deadline-s", "-5"]])
def test_gpu_bench_module_refuses_nonsense_numbers(args, capsys):
    from irstd_ros.tools import gpu_bench

    with pytest.raises(SystemExit) as exc:
        gpu_bench.main(["--dry-run", *args])
    assert exc.value.code == 2 and "must be" in capsys.readouterr().err


def test_gpu_bench_dry_run_refuses_the_options_it_sets_itself(capsys, monkeypatch):
    """`--dry-run --models paper --sizes 128x128` measured the tiny model at 32x32 and 64x48."""
    from irstd_ros.tools import gpu_bench

    def nothing_runs(*_a, **_k):
        raise AssertionError("nothing runs with a refused option")

    monkeypatch.setattr(gpu_bench, "run_gpu_bench", nothing_runs)
    with pytest.raises(SystemExit) as exited:
        gpu_bench.main(["--dry-run", "--models", "paper", "--sizes", "128x128"])
    assert exited.value.code == 2
    assert "--models, --sizes: not with --dry-run" in capsys.readouterr().err


def test_the_quick_and_dry_runs_say_no_note_nobody_asked_for(capsys):
    """The note on a bare `tiny` moved into resolve_models, so `irstd bench --quick` and the
    GPU bench's dry run, which the user gave no --models, printed it unprompted."""
    from irstd_ros.tools import gpu_bench

    for names in (bench.QUICK_MODELS, gpu_bench.DRY_MODELS):
        (spec,) = bench.resolve_models(names)
        assert spec.config == "tiny" and spec.label == "tiny"
    assert "note:" not in capsys.readouterr().err
