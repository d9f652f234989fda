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
from irstd_ros.tools.gpu_session import (
    CHECKPOINT_NAMES,
    clear_results,
    preflight,
    return_checkpoint,
    source_record,
)

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
        "IRSTD_GPU_EMA": "0.9", "IRSTD_GPU_TRAIN_ARGS": "--loss softiou+bce  --lr 2e-4",
    }
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert summary["knobs"]["IRSTD_GPU_GROUPS"] == "nudt_train,sirst_crops"  # what reproduces the run
    assert summary["source"]["sha256"] == source_record(ROOT)["sha256"]  # what --check prints here
    pack = summary["pack"]
    assert pack["sha256"] == hashlib.sha256((work / "pack.npz").read_bytes()).hexdigest()
    assert pack["groups"]["sirst_crops"]["count"] > 0 and "names" not in pack["groups"]["sirst_crops"]
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
    assert (summary["train_config"]["loss"], summary["train_config"]["lr"]) == ("softiou+bce", 2e-4)
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


def test_a_dry_run_without_its_pack_still_runs_the_other_steps(tmp_path):
    """Before, a dry run whose pack step failed (or was skipped: refused as no step) ended
    at the preflight with no summary, though a failed step must stop no other."""
    proc = _session(tmp_path, "--dry-run", IRSTD_GPU_SKIP="pack,pytest_gpu,bench")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no pack was built" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rc = {s["step"]: s["rc"] for s in summary["steps"]}
    assert rc == {"dry_data": 0, "pack": 125, "env": 0, "pytest_gpu": 125, "bench": 125, "probe": 125,
                  "train": 125}
    assert summary["train"] is None and summary["env"]["imports_ok"]


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


def _session(tmp_path, *args, timeout=120, **knobs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRSTD_GPU_")}
    env.update({"OUT": str(tmp_path / "out"), "IRSTD_GPU_WORK": str(tmp_path / "work"), "PYTHON": sys.executable,
                "PYTHONPATH": str(DEVICE_SIM), "OMP_NUM_THREADS": "1", **knobs})
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_a_knob_typo_ends_the_call_before_any_step(tmp_path):
    proc = _session(tmp_path, "--dry-run", IRSTD_GPU_GROUP="nudt_train,sirst_crops", IRSTD_GPU_SKIP="bench,probes")
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "'IRSTD_GPU_GROUP' -> 'IRSTD_GPU_GROUPS'" in proc.stderr and "'probes' -> 'probe'" in proc.stderr
    assert "== env" not in proc.stdout and not (tmp_path / "out" / "summary.json").exists()


def test_on_the_device_a_missing_pack_ends_the_call_before_any_step(tmp_path):
    """Not the dry run: the device path, refused by its preflight before the env step."""
    proc = _session(tmp_path, IRSTD_GPU_PACK=str(tmp_path / "absent.npz"), IRSTD_GPU_SKIP="pytest_gpu,bench,probe",
                    timeout=60)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert f"no pack at {tmp_path / 'absent.npz'}: make it (irstd pack) and carry it" in proc.stderr
    assert "== env" not in proc.stdout


def test_the_model_knob_reaches_the_training(tmp_path):
    """IRSTD_GPU_MODEL names the network the device call trains (paper before, always): a
    misspelt one ends the call in its preflight, naming the valid configs."""
    proc = _session(tmp_path, IRSTD_GPU_PACK=str(tmp_path / "absent.npz"), IRSTD_GPU_SKIP="pytest_gpu,bench,probe",
                    IRSTD_GPU_MODEL="tinyy", timeout=60)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "unknown model config 'tinyy'; valid: " in proc.stderr and "== env" not in proc.stdout


def _pack(tmp_path, groups=("nudt_train", "sirst_crops")):
    from irstd_ros.data.pack import PackConfig, build_pack
    from irstd_ros.tools.gpu_session import make_dry_data

    roots = make_dry_data(tmp_path / "data", n=6)
    out = tmp_path / "p.npz"
    build_pack(PackConfig(out=out, nudt=roots["nudt"], sirst=roots["sirst"], crop=32,
                          nudt_splits=tuple(g.split("_")[1] for g in groups if g.startswith("nudt_"))))
    return out


def _train_argv(pack, *extra):
    return ["--recipe", "large", "--pack", str(pack), "--device", "cuda", "--out", "/tmp/x", "--no-resume",
            "--model", "paper", *extra]


def test_preflight_reads_the_training_flags_and_the_pack(tmp_path):
    pack = _pack(tmp_path, groups=("nudt_train", "sirst_crops"))  # no nudt_test: as irstd pack --no-nudt-test
    ok = preflight({"IRSTD_GPU_EVAL": "none"}, _train_argv(pack, "--train-groups", "nudt_train,sirst_crops",
                                                         "--eval-group", "none"))
    assert ok == []
    (eval_missing,) = preflight({}, _train_argv(pack, "--train-groups", "nudt_train"))
    assert eval_missing.startswith(f"IRSTD_GPU_EVAL: {pack} has no group 'nudt_test'; it has: nudt_train")
    (group_missing,) = preflight({}, _train_argv(pack, "--train-groups", "nudt_train,sirst", "--eval-group", "none"))
    assert group_missing.startswith(f"IRSTD_GPU_GROUPS: {pack} has no group 'sirst';")
    (bad_ema,) = preflight({}, _train_argv(pack, "--eval-group", "none", "--ema", "1"))
    assert "argument --ema: must be a number in [0, 1)" in bad_ema
    (no_init,) = preflight({}, _train_argv(pack, "--eval-group", "none", "--init", str(tmp_path / "start.safetensors")))
    assert no_init == f"IRSTD_GPU_INIT {tmp_path / 'start.safetensors'}: no such file (name it in carry)"
    # neither probe nor train runs: the pack is not needed
    assert preflight({"IRSTD_GPU_SKIP": "probe, train"}, _train_argv(tmp_path / "absent.npz")) == []


def test_preflight_refuses_a_pack_of_another_format(tmp_path):
    import zipfile

    pack = _pack(tmp_path)
    old = tmp_path / "old.npz"
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(old, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "meta.npy":  # an older writer's format number
                data = data.replace(b'"format": 1', b'"format": 0')
            dst.writestr(name, data)
    (line,) = preflight({}, _train_argv(old, "--eval-group", "none"))
    assert "pack format 0 / filter" in line and "not supported" in line


def test_preflight_counts_what_travels_against_64_mib(tmp_path, monkeypatch):
    import irstd_ros.tools.gpu_session as gs

    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    (tree / ".gitignore").write_text("out/\n")
    (tree / "code.py").write_bytes(b"x" * 1000)
    (tree / "out").mkdir()
    (tree / "out" / "pack.npz").write_bytes(b"p" * 3000)
    (tree / "out" / "left_behind.bin").write_bytes(b"b" * 10**6)  # ignored, not carried
    total, problems = gs.travel_size(tree, [Path("out/pack.npz")])
    assert problems == [] and total == 1000 + 3000 + len("out/\n")
    monkeypatch.setattr(gs, "MAX_TREE_BYTES", 3500)
    _, problems = gs.travel_size(tree, [Path("out/pack.npz"), tmp_path / "elsewhere.npz"])
    assert problems[0] == f"{tmp_path / 'elsewhere.npz'} is outside {tree}: it cannot be carried (copy it into an ignored folder there)"
    assert problems[1].startswith("the working tree and carry are 0.0 MiB, over the 64 MiB")


def test_check_here_refuses_a_pack_that_cannot_travel_and_touches_nothing(tmp_path):
    pack = _pack(tmp_path)  # a pack outside the repository: no carry can take it
    kept = tmp_path / "out" / "summary.json"
    kept.parent.mkdir()
    kept.write_text("an earlier call's")
    proc = _session(tmp_path, "--check", IRSTD_GPU_PACK=str(pack), IRSTD_GPU_EVAL="none", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"gpu_session: {pack} is outside {ROOT}: it cannot be carried" in proc.stderr
    assert "== " not in proc.stdout and kept.read_text() == "an earlier call's"


def test_source_fingerprint_is_the_code_not_the_checkout(tmp_path):
    """The device's copy has no .git: the fingerprint is the same there; it follows the
    code's content and paths, not the files' times."""
    for name, text in {"irstd_ros/a.py": "x = 1\n", "irstd_ros/sub/b.py": "y = 2\n",
                       "scripts/gpu_session.sh": "echo\n", "config/train/c.yaml": "k: 1\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "irstd_ros" / "notes.txt").write_text("not source")
    first = source_record(tmp_path)
    assert first["files"] == 4 and first["git_commit"] is None and first["git_modified"] is None
    (tmp_path / "irstd_ros" / "notes.txt").write_text("changed, still not source")
    os.utime(tmp_path / "irstd_ros" / "a.py", (0, 0))
    assert source_record(tmp_path)["sha256"] == first["sha256"]
    (tmp_path / "irstd_ros" / "sub" / "b.py").write_text("y = 3\n")
    assert source_record(tmp_path)["sha256"] != first["sha256"]
    (tmp_path / "irstd_ros" / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "irstd_ros" / "sub" / "b.py").rename(tmp_path / "irstd_ros" / "b.py")
    assert source_record(tmp_path)["sha256"] != first["sha256"]  # a moved module is other code


def test_preflight_reads_the_bench_knobs():
    """IRSTD_GPU_BENCH_*: a few cells of the bench; a misspelt variant, a bad size or an
    unknown model ends the call before any step, and a skipped bench reads none of them."""
    skip = {"IRSTD_GPU_SKIP": "probe,train"}
    ok = {**skip, "IRSTD_GPU_BENCH_MODELS": "paper", "IRSTD_GPU_BENCH_SIZES": "640x512,1280x1024",
          "IRSTD_GPU_BENCH_VARIANTS": "fp16+pad8+graphs,fp16+pad8+compile+graphs"}
    assert preflight(ok, []) == []
    bad = {**skip, "IRSTD_GPU_BENCH_MODELS": "papr", "IRSTD_GPU_BENCH_SIZES": "640x51x2",
           "IRSTD_GPU_BENCH_VARIANTS": "fp16+pad+graphs"}
    variant, size, model = preflight(bad, [])
    assert variant.startswith("IRSTD_GPU_BENCH_*: unknown variant 'fp16+pad+graphs'; valid: fp32,")
    assert "size must be WIDTHxHEIGHT" in size and "'640x51x2'" in size
    assert model.startswith("IRSTD_GPU_BENCH_*: ") and "papr" in model
    assert preflight({**bad, "IRSTD_GPU_SKIP": "bench,probe,train"}, []) == []


def test_preflight_reads_the_extra_training_flags(tmp_path):
    """IRSTD_GPU_TRAIN_ARGS reaches the training's own parser; the flags the script sets
    itself are refused, since a second --out or --minutes would win over the script's."""
    pack = _pack(tmp_path)
    env = {"IRSTD_GPU_SKIP": "bench", "IRSTD_GPU_TRAIN_ARGS": "--lr 2e-4 --loss softiou+bce"}
    assert preflight(env, _train_argv(pack, "--eval-group", "none", "--lr", "2e-4", "--loss", "softiou+bce")) == []
    (loss,) = preflight(env, _train_argv(pack, "--eval-group", "none", "--loss", "dice"))
    assert "unknown loss 'dice'" in loss or "dice" in loss
    (teacher,) = preflight(env, _train_argv(pack, "--eval-group", "none", "--teacher", str(tmp_path / "t.safetensors")))
    assert teacher == f"--teacher {tmp_path / 't.safetensors'}: no such file (name it in carry unless git tracks it)"
    (owned,) = preflight({"IRSTD_GPU_SKIP": "bench", "IRSTD_GPU_TRAIN_ARGS": "--minutes 3 --ou=/x --lr 1e-3"},
                         _train_argv(pack, "--eval-group", "none"))
    assert owned.startswith("IRSTD_GPU_TRAIN_ARGS: --minutes, --ou set by the script itself")  # a prefix too


def _recipe(tmp_path, pack, name="recipe", **extra):
    """A YAML of irstd train reading its sources from ``pack`` (tiny, a few steps)."""
    from irstd_ros.core.normalization import InputNorm

    teacher = tmp_path / "teacher.safetensors"
    save_checkpoint(teacher, build_model(named_config("tiny")),
                    CheckpointInfo(named_config("tiny"), norm=InputNorm(kind="robust", knee=4.0, background=32)))
    sources = extra.pop("sources", [{"root": str(pack), "split": "nudt_train", "weight": 0.5},
                                     {"root": str(pack), "split": "sirst_crops", "weight": 0.5}])
    cfg = {"data": str(pack), "sources": sources, "teacher": str(teacher), "distill": 0.5, "generator_frames": 2,
           "generator_weight": 0.2, "samples_per_epoch": 8, "model": "tiny", "crop": 32, "batch_size": 4,
           "epochs": 2, "ema": 0.9, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(cfg))  # YAML reads JSON
    return path


def test_dry_run_of_irstd_train_s_recipe_from_the_pack(tmp_path):
    """IRSTD_GPU_TRAIN_CONFIG: irstd train runs the YAML on the device, its sources read
    from the carried pack; its FP32 checkpoint comes back in parts and the summary says so."""
    out, work = tmp_path / "out", tmp_path / "work"
    recipe = _recipe(tmp_path, work / "pack.npz")
    env = {**os.environ, "OUT": str(out), "IRSTD_GPU_WORK": str(work), "PYTHON": sys.executable,
           "PYTHONPATH": str(DEVICE_SIM), "OMP_NUM_THREADS": "1", "IRSTD_GPU_SKIP": "bench,pytest_gpu",
           "IRSTD_GPU_TRAIN_CONFIG": str(recipe), "IRSTD_GPU_TRAIN_ARGS": "--lr 3e-4"}
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s["rc"] for s in summary["steps"]}
    assert steps["train"] == 0 and steps["probe"] == 125  # the probe measures the GPU trainer: skipped
    assert summary["train"]["trainer"] == "irstd train" and summary["train"]["epochs_done"] == 1  # dry: one
    assert summary["train_config"]["lr"] == 3e-4 and summary["train_config"]["teacher"]
    parts = summary["checkpoint"]["parts"]
    assert parts and all(p.startswith("model.safetensors.part") for p in parts)
    joined = b"".join((out / p).read_bytes() for p in parts)
    assert hashlib.sha256(joined).hexdigest() == summary["checkpoint"]["sha256"]
    assert joined == (work / "train" / "model.safetensors").read_bytes()


def test_preflight_reads_irstd_train_s_recipe_and_its_sources(tmp_path):
    pack = _pack(tmp_path)
    recipe = _recipe(tmp_path, pack)
    env = {"IRSTD_GPU_SKIP": "bench", "IRSTD_GPU_TRAIN_CONFIG": str(recipe)}
    argv = ["--config", str(recipe), "--device", "cpu", "--out", str(tmp_path / "run"), "--no-resume"]
    assert preflight(env, argv, trainer="train") == []
    knob, = preflight({**env, "IRSTD_GPU_MODEL": "paper"}, argv, trainer="train")
    assert knob.startswith("IRSTD_GPU_MODEL does not apply with IRSTD_GPU_TRAIN_CONFIG")
    assert preflight({**env, "IRSTD_GPU_COMPILE": "0"}, argv, trainer="train") == []  # its default
    (helped,) = preflight(env, [*argv, "-h"], trainer="train")  # argparse's help: exit 0, no line
    assert helped.startswith("the training's flags end its parser without a run")
    bad = _recipe(tmp_path, pack, name="bad", sources=[{"root": str(pack), "split": "sirst"},
                                           {"root": str(tmp_path), "split": "train"},
                                           {"root": str(tmp_path / "gone.npz"), "split": "x"}])
    group, folder, gone = preflight(env, ["--config", str(bad)], trainer="train")
    assert f"source {pack}: no group 'sirst'; it has nudt_train" in group
    assert folder == f"source {tmp_path}: a folder does not travel; read it from a pack (irstd pack)"
    assert gone.startswith(f"source {tmp_path / 'gone.npz'}: no such pack")
    (flag,) = preflight(env, [*argv, "--lr", "x"], trainer="train")
    assert "--lr" in flag
    # here (--check), a pack that is not carried and a teacher git ignores would not reach the device
    found = preflight(env, argv, tree=ROOT, carry=[], trainer="train")
    (teacher,) = [p for p in found if p.startswith("teacher ")]
    (uncarried,) = [p for p in found if p.startswith("source ")]  # (and the tree's size, as it is here)
    assert teacher == f"teacher {tmp_path / 'teacher.safetensors'} would not travel (ignored by git and not " \
                      "carried); commit it or copy it into the tree"
    assert uncarried == f"source {pack} is not carried (IRSTD_GPU_PACK={pack} carries it)"


def test_the_returned_checkpoint_is_the_preferred_one_and_old_results_are_cleared(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out"
    run.mkdir()
    assert return_checkpoint(run, out) == []
    for k, name in enumerate(reversed(CHECKPOINT_NAMES)):  # last first: preference, not order
        (run / name).write_bytes(bytes([k]) * 10)
    parts = return_checkpoint(run, out, part_bytes=4)
    assert [p.name for p in parts] == [f"{CHECKPOINT_NAMES[0]}.part{k:02d}" for k in range(3)]
    assert b"".join(p.read_bytes() for p in parts) == (run / CHECKPOINT_NAMES[0]).read_bytes()
    for k in (1, 2):  # the next by preference once the better ones are gone
        (run / CHECKPOINT_NAMES[k - 1]).unlink()
        assert {p.name.split(".part")[0] for p in return_checkpoint(run, out)} == {CHECKPOINT_NAMES[k]}
    assert {p.name.split(".part")[0] for p in out.iterdir()} == set(CHECKPOINT_NAMES)
    for name in ("summary.json", "bench.json", "logs.tar.gz"):
        (out / name).write_text("old")
    (out / "keep.txt").write_text("not ours")
    clear_results(out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def _pytest_step_marker_expression() -> str:
    """The ``-m`` expression of the script's ``pytest_gpu`` step, as bash passes it."""
    import shlex

    text = SCRIPT.read_text().replace("\\\n", " ")  # continued lines joined
    line = next(ln for ln in text.splitlines() if ln.startswith("step pytest_gpu "))
    args = shlex.split(line)
    return args[args.index("-m", args.index("pytest")) + 1]


def test_the_pytest_step_runs_the_tensorrt_tests_too():
    """The step ran ``pytest -m gpu``: the ``tensorrt``-marked engine parity tests (build,
    save, load, FP16 at 640x512) never ran on a lent GPU, even with torch_tensorrt there."""
    expression = _pytest_step_marker_expression()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", expression,
         "test/inference/backends/test_tensorrt_backend.py", "test/inference/backends/test_torch_cuda.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    selected = [ln for ln in proc.stdout.splitlines() if "::" in ln]
    assert any("test_tensorrt_parity_build_then_load[fp16-640x512]" in ln for ln in selected), selected
    assert any("test_torch_cuda.py::test_cuda_fast_paths_match_eager_fp32" in ln for ln in selected), selected
    assert not any("test_padded_sizes" in ln for ln in selected)  # CPU tests stay out
