"""scripts/gpu_session.sh --dry-run: every step of the device session on the CPU, on a
simulated device machine (ROS and OpenVINO unimportable), in well under a minute."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.models import build_model, named_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"
DEVICE_SIM = ROOT / "test" / "gpu_sim"  # sitecustomize that blocks rclpy, rosbags, openvino...
STEPS = ("dry_data", "pack", "env", "pytest_gpu", "bench", "probe", "train")
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what the device tool brings back
MAX_FILES, MAX_BYTES = 8, 16 * 2**20


def test_dry_run_writes_a_complete_summary(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    init = tmp_path / "init.safetensors"  # the knobs of a continued, mixed training
    save_checkpoint(init, build_model(named_config("tiny")), CheckpointInfo(named_config("tiny")))
    env = {
        **os.environ, "OUT": str(out), "IRSTD_GPU_WORK": str(work), "PYTHON": sys.executable,
        "PYTHONPATH": str(DEVICE_SIM), "OMP_NUM_THREADS": "1",
        "IRSTD_GPU_GROUPS": "nudt_train,sirst_crops", "IRSTD_GPU_INIT": str(init),
        "IRSTD_GPU_EMA": "0.9",
    }
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    steps = {s["step"]: s for s in summary["steps"]}
    assert set(STEPS) <= set(steps), steps
    failed = {k: v for k, v in steps.items() if v["rc"] != 0}
    assert not failed, (failed, proc.stdout[-3000:])

    env_report = summary["env"]
    assert env_report["imports_ok"], env_report["imports"]
    assert "rclpy" not in env_report["ros_loaded"] and env_report["packages"]["ros-rclpy"] is None  # simulated

    assert "skipped" in summary["pytest_gpu"] and "failed" not in summary["pytest_gpu"]
    bench = summary["bench"]
    assert bench["complete"] and bench["rows"]
    assert {r["variant"] for r in bench["rows"]} >= {"fp32", "fp16", "bf16", "fp16+compile"}
    for row in bench["rows"]:
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["fps"] > 0
    assert any("CUDA graphs need a CUDA device" in s["reason"] for s in bench["skipped"])

    assert summary["probe_paper_recipe"]["img_per_s_median"] > 0
    train = summary["train"]
    assert train["epochs_done"] >= 1 and train["recipe"] == "large"
    assert summary["train_config"]["train_groups"] == ["nudt_train", "sirst_crops"]
    assert summary["train_config"]["ema"] == 0.9
    assert summary["train_config"]["init"] == str(init)
    for key in ("iou", "niou", "f1", "pd", "fa"):
        assert key in train["eval"]
    assert train["eval"]["images"] == 4 and summary["history"]

    files = sorted(f for f in out.iterdir())
    assert len(files) <= MAX_FILES and all(f.is_file() and OUT_NAME.match(f.name) for f in files)
    assert all(f.stat().st_size <= MAX_BYTES for f in files)
    ckpt = summary["checkpoint"]
    assert len(ckpt["parts"]) >= 2  # small parts in the dry run: the split is exercised
    joined = b"".join((out / name).read_bytes() for name in ckpt["parts"])
    assert hashlib.sha256(joined).hexdigest() == ckpt["sha256"]
    (tmp_path / "model_fp16.safetensors").write_bytes(joined)
    model, info, _ = load_checkpoint(tmp_path / "model_fp16.safetensors")
    assert info.norm.kind == "robust" and "metrics" in info.extra
    assert next(iter(model.state_dict().values())).dtype.is_floating_point


def test_skipped_steps_leave_their_time_to_the_training(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    stale = out / "model_fp16.safetensors.part07"  # an earlier run's, in a kept $OUT
    stale.write_bytes(b"old")
    env = {
        **os.environ, "OUT": str(out), "IRSTD_GPU_WORK": str(work), "PYTHON": sys.executable,
        "PYTHONPATH": str(DEVICE_SIM), "OMP_NUM_THREADS": "1", "IRSTD_GPU_SKIP": "pytest_gpu, bench,probe",
        "IRSTD_GPU_EVAL": "none",  # a pack made with irstd pack --no-nudt-test
    }
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    rc = {s["step"]: s["rc"] for s in summary["steps"]}
    assert rc == {"dry_data": 0, "pack": 0, "env": 0, "pytest_gpu": 125, "bench": 125, "probe": 125, "train": 0}
    assert summary["bench"] is None and summary["probe_paper_recipe"] is None
    assert summary["train"]["epochs_done"] >= 1 and summary["train"]["eval"] is None
    assert summary["train_config"]["eval_group"] is None
    assert not stale.exists() and stale.name not in summary["checkpoint"]["parts"]


@pytest.mark.parametrize("budget", ["5.5", "30", "600", "nine"])
def test_a_budget_that_the_steps_cannot_share_is_refused_before_any_step(tmp_path, budget):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "IRSTD_GPU_WORK": str(tmp_path / "work"), "IRSTD_GPU_BUDGET_S": budget}
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "IRSTD_GPU_BUDGET_S must be whole seconds" in proc.stderr
    assert not out.exists()


def test_cli_starts_without_the_optional_packages():
    """On the device machine (no rosbags, no ROS) `irstd` still starts; the bag commands
    answer with one line naming the missing package."""
    env = {**os.environ, "PYTHONPATH": str(DEVICE_SIM)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "irstd_ros.cli.main", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    listed = run("--help")
    assert listed.returncode == 0 and "pack" in listed.stdout and "train-gpu" in listed.stdout
    replay = run("replay", "--help")
    assert replay.returncode == 2
    assert "irstd replay: error: needs the Python package 'rosbags'" in replay.stderr
