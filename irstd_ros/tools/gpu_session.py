"""Helpers of ``scripts/gpu_session.sh`` (one device call: environment, GPU tests, GPU
benchmark, paper-model training + evaluation); the script does the time-boxing.

* ``env``: what the machine is (nvidia-smi, torch, CUDA, packages) and whether every module
  the session uses imports without ROS (rclpy, rosbags and the message packages are not
  on the device machine);
* ``dry-data``: two tiny synthetic datasets in the NUDT-SIRST and SIRST-v2 layouts, so the
  dry run packs and trains exactly as the device run does;
* ``preflight``: what would waste the call, before any step runs (``--check`` of the script,
  here, before asking for the device): unknown ``IRSTD_GPU_*`` variables and step names, the
  training's flags, the pack (format, groups), the start checkpoint, and the size of what
  travels;
* ``split``: a file into numbered parts of at most N bytes (files come back from the device
  at 16 MiB each at most); ``cat NAME.part* > NAME`` joins them;
* ``return-checkpoint``: the training's checkpoint by preference (:data:`CHECKPOINT_NAMES`)
  split so; ``clear-results``: an earlier call's results out of a kept ``$OUT``;
* ``summarize``: the steps' exit codes and times, the benchmark, the training and
  evaluation results and the checkpoint parts into one ``summary.json``, with the source's
  fingerprint (:func:`source_record`: the device's copy has no git history, so ``--check``
  prints the same fingerprint here, beside the commit it was taken at).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.core.parsing import check_keys, path_tuple
from irstd_ros.core.paths import write_text_atomic
from irstd_ros.errors import IrstdError

# Modules the session imports: they must import on a machine without ROS.
SESSION_MODULES = (
    "irstd_ros.cli.main",
    "irstd_ros.data.pack",
    "irstd_ros.training.gpu",
    "irstd_ros.training.torch_norm",
    "irstd_ros.tools.gpu_bench",
    "irstd_ros.evaluation.metrics",
    "irstd_ros.inference.backends.torch_cuda",
    "irstd_ros.inference.backends.tensorrt",
    "irstd_ros.inference.detector",
)
PACKAGES = {  # import name -> distribution (presence checked without importing)
    "torch": "torch", "numpy": "numpy", "scipy": "scipy", "safetensors": "safetensors", "yaml": "PyYAML",
    "PIL": "pillow", "tqdm": "tqdm", "triton": "triton", "onnx": "onnx", "onnxruntime": "onnxruntime",
    "torch_tensorrt": "torch-tensorrt", "tensorrt": "tensorrt", "rclpy": "ros-rclpy", "rosbags": "rosbags",
}
ROS_MODULES = ("rclpy", "rosbags", "sensor_msgs", "vision_msgs", "rosidl_runtime_py")
PART_BYTES = 15 * 2**20  # under the 16 MiB a returned file may have
MAX_OUT_FILES = 8
MAX_TREE_BYTES = 64 * 2**20  # the working tree and the carried paths travel within 64 MiB
# the knobs scripts/gpu_session.sh reads: any other IRSTD_GPU_* is a typo that would be ignored
KNOBS = ("IRSTD_GPU_BENCH_MODELS", "IRSTD_GPU_BENCH_SIZES", "IRSTD_GPU_BENCH_VARIANTS",
         "IRSTD_GPU_BUDGET_S", "IRSTD_GPU_COMPILE", "IRSTD_GPU_DRY_RUN", "IRSTD_GPU_EMA", "IRSTD_GPU_EVAL",
         "IRSTD_GPU_GROUPS", "IRSTD_GPU_INIT", "IRSTD_GPU_MODEL", "IRSTD_GPU_PACK", "IRSTD_GPU_PART_BYTES", "IRSTD_GPU_RECIPE",
         "IRSTD_GPU_SKIP", "IRSTD_GPU_TRAIN_ARGS", "IRSTD_GPU_TRAIN_CONFIG", "IRSTD_GPU_WORK")
# training flags the script sets (the time, where the run goes, the data, the device): not
# IRSTD_GPU_TRAIN_ARGS's (argparse would take the last, and the script reads --out's files)
SCRIPT_TRAIN_FLAGS = ("--minutes", "--out", "--pack", "--device", "--no-resume", "--recipe")
TRAINERS = ("gpu", "train")
KNOB_UNSET = {"IRSTD_GPU_COMPILE": ("", "0")}  # values that leave a knob at its default (else: "")
# the checkpoint a call returns, in parts, by preference (scripts/gpu_session.sh)
CHECKPOINT_NAMES = ("model_fp16.safetensors", "model.safetensors", "last.safetensors")
# the GPU trainer's knobs: with IRSTD_GPU_TRAIN_CONFIG (irstd train) they would be ignored
GPU_TRAINER_KNOBS = ("IRSTD_GPU_COMPILE", "IRSTD_GPU_EMA", "IRSTD_GPU_EVAL", "IRSTD_GPU_GROUPS",
                     "IRSTD_GPU_INIT", "IRSTD_GPU_MODEL", "IRSTD_GPU_RECIPE")
STEPS = ("dry_data", "pack", "env", "pytest_gpu", "bench", "probe", "train")  # IRSTD_GPU_SKIP names these


def env_report() -> dict[str, Any]:
    """Machine, versions, package presence and the ROS-free import check."""
    report: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,"
                              "power.limit,temperature.gpu", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        report["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        report["nvidia_smi"] = f"unavailable: {exc}"
    imports: dict[str, str] = {}
    for name in SESSION_MODULES:
        try:
            importlib.import_module(name)
            imports[name] = "ok"
        except Exception as exc:  # noqa: BLE001
            imports[name] = f"{type(exc).__name__}: {exc}"
    report["imports"] = imports
    from irstd_ros.cli.main import build_parser

    build_parser()  # every subcommand registers (missing optional packages become stubs)
    # which ROS modules the session's own imports pulled in (none may be needed)
    report["ros_loaded"] = sorted(m for m in ROS_MODULES if m in sys.modules)
    versions: dict[str, str | None] = {}
    for module, dist in PACKAGES.items():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            versions[dist] = None
            continue
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "present"
    report["packages"] = versions
    import torch

    report["torch_cuda"] = torch.version.cuda
    report["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                         "memory_gib": round(props.total_memory / 2**30, 1), "sms": props.multi_processor_count}
    report["imports_ok"] = all(v == "ok" for v in imports.values())
    return report


def make_dry_data(root: Path, size: int = 48, n: int = 12, seed: int = 0) -> dict[str, str]:
    """Tiny NUDT-SIRST-like and SIRST-v2-like folders (8-bit, one bright blob per frame)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    roots = {"nudt": root / "NUDT-SIRST", "sirst": root / "SIRST-v2"}
    for kind, r in roots.items():
        (r / "images").mkdir(parents=True, exist_ok=True)
        (r / "masks").mkdir(exist_ok=True)
        stems = []
        for i in range(n):
            h, w = (size, size) if kind == "nudt" else (size + 8 * (i % 3), size + 16)
            img = rng.normal(60, 8, (h, w)).clip(0, 255)
            mask = np.zeros((h, w), np.uint8)
            if kind == "nudt" or i % 4:  # SIRST-v2 has background-only frames
                y, x = rng.integers(4, h - 8), rng.integers(4, w - 8)
                img[y : y + 3, x : x + 3] = 230
                mask[y : y + 3, x : x + 3] = 255
            stem = f"{kind}{i:03d}"
            Image.fromarray(img.astype(np.uint8)).save(r / "images" / f"{stem}.png")
            Image.fromarray(mask).save(r / "masks" / f"{stem}.png")
            stems.append(stem)
        half = n * 2 // 3
        lists = r / ("50_50" if kind == "nudt" else "splits")
        lists.mkdir(exist_ok=True)
        (lists / "train.txt").write_text("\r\n".join(stems[:half]) + "\r\n")
        (lists / ("test.txt" if kind == "nudt" else "val.txt")).write_text("\n".join(stems[half:]))
    return {k: str(v) for k, v in roots.items()}


def split_file(path: Path, out_dir: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """``path`` as ``out_dir/<name>.partNN`` files of at most ``part_bytes`` bytes."""
    data = path.read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, start in enumerate(range(0, max(len(data), 1), part_bytes)):
        part = out_dir / f"{path.name}.part{k:02d}"
        part.write_bytes(data[start : start + part_bytes])
        parts.append(part)
    return parts


def clear_results(out: Path) -> None:
    """Remove an earlier call's results from a kept ``out``: they must not pass for this call's."""
    for name in ("summary.json", "bench.json", "logs.tar.gz"):
        (out / name).unlink(missing_ok=True)
    for name in CHECKPOINT_NAMES:
        for part in out.glob(f"{name}.part*"):
            part.unlink()


def return_checkpoint(run: Path, out: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """The run's checkpoint by preference (:data:`CHECKPOINT_NAMES`) in parts under ``out``; [] if none."""
    for name in CHECKPOINT_NAMES:
        if (run / name).is_file():
            return split_file(run / name, out, part_bytes)
    return []


def preflight(environ: Mapping[str, str], train_argv: Sequence[str], tree: Path | None = None,
              carry: Sequence[Path] = (), trainer: str = "gpu") -> list[str]:
    """What would waste the device call, one line each (none: go): ``IRSTD_GPU_*`` names
    and values the script does not know, the training's flags (``train_argv``, those of
    ``python -m irstd_ros.training.gpu`` the script would pass), its pack and start
    checkpoint; with ``tree`` (here, before the call) also the size of the working tree
    plus ``carry`` against the 64 MiB that travel."""
    problems: list[str] = []

    def check(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except IrstdError as exc:
            problems.append(str(exc))

    check(check_keys, {k: 1 for k in environ if k.startswith("IRSTD_GPU_")}, KNOBS, "IRSTD_GPU_* variable")
    skip = [s.strip() for s in environ.get("IRSTD_GPU_SKIP", "").split(",") if s.strip()]
    check(check_keys, dict.fromkeys(skip, 1), STEPS, "IRSTD_GPU_SKIP step")
    # argparse takes a flag's unique prefix too (--ou for --out)
    flags = [a.split("=")[0] for a in environ.get("IRSTD_GPU_TRAIN_ARGS", "").split() if a.startswith("--")]
    owned = [f for f in flags if len(f) > 2 and any(own.startswith(f) for own in SCRIPT_TRAIN_FLAGS)]
    if owned:
        problems.append(f"IRSTD_GPU_TRAIN_ARGS: {', '.join(owned)} set by the script itself "
                        f"(its own knobs: {', '.join(SCRIPT_TRAIN_FLAGS)})")
    for knob in ("IRSTD_GPU_COMPILE", "IRSTD_GPU_DRY_RUN"):
        if environ.get(knob, "0") not in ("0", "1"):
            problems.append(f"{knob} must be 0 or 1, got {environ[knob]!r}")
    if "bench" not in skip:
        from irstd_ros.tools.gpu_bench import selection_problems

        problems += [f"IRSTD_GPU_BENCH_*: {p}" for p in selection_problems(
            environ.get("IRSTD_GPU_BENCH_MODELS"), environ.get("IRSTD_GPU_BENCH_SIZES"),
            environ.get("IRSTD_GPU_BENCH_VARIANTS"))]
    if not {"probe", "train"} <= set(skip):
        if trainer == "train":
            problems += _recipe_problems(environ, train_argv, tree, carry)
        else:
            problems += _training_problems(train_argv)
    if tree is not None:
        problems += travel_size(tree, carry)[1]
    return problems


def _parsed(prog: str, add_arguments: Any, config_from_args: Any, argv: Sequence[str]) -> tuple[Any, str]:
    """(the config a trainer's own parser and config make of ``argv``, "") or (None, the
    one line that refuses it: argparse's usage error, or the config's)."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return config_from_args(parser.parse_args(list(argv))), ""
    except SystemExit:  # argparse's usage error is its last line; -h ends it with none (help on stdout)
        lines = err.getvalue().strip().splitlines()
        return None, lines[-1] if lines else "the training's flags end its parser without a run (-h, --help?)"
    except IrstdError as exc:
        return None, str(exc)


def _recipe_problems(environ: Mapping[str, str], train_argv: Sequence[str], tree: Path | None,
                     carry: Sequence[Path]) -> list[str]:
    """``IRSTD_GPU_TRAIN_CONFIG``'s run as ``irstd train`` reads it, and its inputs: the GPU
    trainer's knobs set beside it, the start and teacher checkpoints, the mined files, and
    each source's folder or pack group; with ``tree`` (here) also whether each of them travels
    (in the tree or ``carry``)."""
    from irstd_ros.data.mixture import SourceSpec
    from irstd_ros.data.pack import Pack
    from irstd_ros.training.train import add_arguments, config_from_args

    problems = [f"{k} does not apply with IRSTD_GPU_TRAIN_CONFIG (irstd train's recipe sets it)"
                for k in GPU_TRAINER_KNOBS if environ.get(k, "") not in KNOB_UNSET.get(k, ("",))]
    cfg, problem = _parsed("irstd train", add_arguments, config_from_args, train_argv)
    if cfg is None:
        return [*problems, problem]
    try:
        specs = [SourceSpec.from_dict(d) for d in cfg.sources]
    except IrstdError as exc:
        return [*problems, str(exc)]
    if not specs:
        problems.append(f"{environ.get('IRSTD_GPU_TRAIN_CONFIG')}: no sources; a device reads them from a pack")
    files = [("--init", cfg.init), *(("teacher", t) for t in path_tuple(cfg.teacher))]
    for spec in specs:
        files += [("teacher", t) for t in spec.teacher or ()] + [("hard", h) for h in spec.hard]
    travelling = travelling_files(tree, carry) if tree is not None else None
    for what, path in dict.fromkeys(files):
        if path is not None and not Path(path).is_file():
            problems.append(f"{what} {path}: no such file (name it in carry unless git tracks it)")
        elif path is not None and travelling is not None and Path(path).resolve() not in travelling:
            problems.append(f"{what} {path} would not travel (ignored by git and not carried); "
                            "commit it or copy it into the tree")
    carried = {(tree / c).resolve() for c in carry} if tree is not None else set()
    for spec in specs:
        root = Path(spec.root)
        if root.suffix.lower() != ".npz":
            problems.append(f"source {root}: a folder does not travel; read it from a pack (irstd pack)")
        elif not root.is_file():
            problems.append(f"source {root}: no such pack (make it with irstd pack and carry it)")
        else:
            line = f"source {root} is not carried (IRSTD_GPU_PACK={root} carries it)"
            if tree is not None and root.resolve() not in carried and line not in problems:
                problems.append(line)  # once for the sources that share a pack
            try:
                with Pack(root) as pack:
                    if spec.split not in pack.groups:
                        problems.append(f"source {root}: no group {spec.split!r}; it has {', '.join(pack.groups)}")
            except IrstdError as exc:
                problems.append(str(exc))
    return problems


def _training_problems(train_argv: Sequence[str]) -> list[str]:
    """The training's flags as its own parser and config read them, then its inputs."""
    from irstd_ros.data.pack import Pack
    from irstd_ros.training.gpu import add_arguments, config_from_args

    cfg, problem = _parsed("train", add_arguments, config_from_args, train_argv)
    if cfg is None:
        return [problem]
    problems = []
    if cfg.init is not None and not cfg.init.is_file():
        problems.append(f"IRSTD_GPU_INIT {cfg.init}: no such file (name it in carry)")
    for teacher in path_tuple(cfg.teacher):
        if not Path(teacher).is_file():
            problems.append(f"--teacher {teacher}: no such file (name it in carry unless git tracks it)")
    if cfg.pack is None:
        return problems
    if not cfg.pack.is_file():
        return [*problems, f"no pack at {cfg.pack}: make it (irstd pack) and carry it, or IRSTD_GPU_SKIP=probe,train"]
    try:
        pack = Pack(cfg.pack)
    except IrstdError as exc:
        return [*problems, str(exc)]
    try:
        wanted = {"IRSTD_GPU_GROUPS": cfg.train_groups, "IRSTD_GPU_EVAL": [cfg.eval_group] if cfg.eval_group else []}
        for knob, groups in wanted.items():
            missing = [g for g in groups if g not in pack.groups]
            if missing:
                problems.append(f"{knob}: {cfg.pack} has no group {', '.join(map(repr, missing))}; it has: "
                                f"{', '.join(pack.groups)}" + (" (IRSTD_GPU_EVAL=none: no evaluation)"
                                                              if knob == "IRSTD_GPU_EVAL" else ""))
    finally:
        pack.close()
    return problems


def travelling_files(tree: Path, carry: Sequence[Path]) -> set[Path] | None:
    """The resolved files a call sends: the working tree's (tracked and untracked-not-
    ignored) and those under ``carry``; None where git cannot list the tree."""
    listed = subprocess.run(["git", "-C", str(tree), "ls-files", "-z", "-c", "-o", "--exclude-standard"],
                            capture_output=True, text=True, check=False)
    if listed.returncode:
        return None
    files = {(tree / name).resolve() for name in listed.stdout.split("\0") if name}
    for path in carry:
        full = (tree / path).resolve()
        files |= {f.resolve() for f in full.rglob("*") if f.is_file()} if full.is_dir() else {full}
    return files


def travel_size(tree: Path, carry: Sequence[Path]) -> tuple[int, list[str]]:
    """Bytes of the working tree (tracked and untracked-not-ignored files) plus ``carry``,
    and the problems: over 64 MiB, or a carried path outside the tree (it cannot travel)."""
    files = travelling_files(tree, carry)
    if files is None:
        return 0, [f"cannot list the working tree {tree} (git ls-files)"]
    problems = []
    for path in carry:
        if not (tree / path).resolve().is_relative_to(tree.resolve()):
            problems.append(f"{path} is outside {tree}: it cannot be carried (copy it into an ignored folder there)")
    total = sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())
    if total > MAX_TREE_BYTES:
        problems.append(f"the working tree and carry are {total / 2**20:.1f} MiB, over the 64 MiB that travel")
    return total, problems


SOURCE_GLOBS = ("irstd_ros/**/*.py", "scripts/*.sh", "config/**/*.yaml")  # what a session runs


def source_record(tree: Path) -> dict[str, Any]:
    """What identifies the code a session ran: the sha256 over :data:`SOURCE_GLOBS`'
    files (relative path and content, in path order) and their count, the same here and on
    the device's copy of the tree; plus the git commit and whether the tree differs from it,
    where ``tree`` is a git checkout. On the device these two are whatever ``.git`` its
    copy holds, which need not be the tree's (an older HEAD was seen): the digest is what
    identifies the code."""
    digest = hashlib.sha256()
    files = sorted({f for pattern in SOURCE_GLOBS for f in tree.glob(pattern) if f.is_file()})
    for f in files:
        digest.update(f.relative_to(tree).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False)
    return {
        "sha256": digest.hexdigest(), "files": len(files),
        "git_commit": commit.stdout.strip() if commit.returncode == 0 else None,
        "git_modified": bool(dirty.stdout.strip()) if commit.returncode == 0 and dirty.returncode == 0 else None,
    }


def pack_record(path: Path) -> dict[str, Any] | None:
    """What identifies the pack a session trained on: size, sha256 and its groups' counts
    and sources (the names are left out)."""
    from irstd_ros.data.pack import Pack

    try:
        pack = Pack(path)
    except IrstdError:
        return None
    try:
        groups = {g: {k: v for k, v in m.items() if k != "names"} for g, m in pack.meta["groups"].items()}
    finally:
        pack.close()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest(), "groups": groups}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pytest_tail(path: Path) -> str | None:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _recipe_train_record(run: Path, history: Any) -> dict[str, Any]:
    """What an ``irstd train`` run (``IRSTD_GPU_TRAIN_CONFIG``) left in ``run``, in the GPU
    trainer's summary keys where they mean the same: its config is in the checkpoint."""
    from irstd_ros.checkpoint import load_checkpoint

    epochs = history if isinstance(history, list) else []
    seconds = sorted(float(h["seconds"]) for h in epochs if "seconds" in h)
    final = run / "model.safetensors"
    path = final if final.is_file() else run / "last.safetensors"
    _, info, _ = load_checkpoint(path)
    return {
        "trainer": "irstd train",
        "model": str(path),
        "stop": None if path == final else "killed before its final save: the last checkpoint's raw weights",
        "epochs_done": len(epochs),
        "final_loss": epochs[-1].get("loss") if epochs else None,
        "epoch_s_median": seconds[len(seconds) // 2] if seconds else None,
        "config": info.extra.get("train_config"),
    }


def summarize(work: Path, out: Path, dry_run: bool, pack: Path | None = None,
              environ: Mapping[str, str] | None = None, tree: Path | None = None) -> dict[str, Any]:
    """Everything the session produced into ``out/summary.json``, with what reproduces it
    (the ``IRSTD_GPU_*`` knobs of ``environ``, the pack's sha256 and groups, the source of
    ``tree``: :func:`source_record`); returns it."""
    steps = []
    tsv = work / "steps.tsv"
    if tsv.is_file():
        for line in tsv.read_text().splitlines():
            name, rc, seconds, timeout = line.split("\t")
            steps.append({"step": name, "rc": int(rc), "seconds": int(seconds), "timeout_s": int(timeout),
                          "timed_out": int(rc) in (124, 137)})
    logs = work / "logs"
    bench = _read_json(out / "bench.json")
    train = _read_json(work / "train" / "summary.json")
    history = _read_json(work / "train" / "history.json")
    if train is None and any((work / "train" / f).is_file() for f in ("model.safetensors", "last.safetensors")):
        train = _recipe_train_record(work / "train", history)
    probe = _read_json(work / "probe" / "summary.json")
    # what the script returned: the FP16 model, irstd train's FP32 one, or a killed run's last
    name = next((n for n in CHECKPOINT_NAMES if any(out.glob(f"{n}.part*"))), CHECKPOINT_NAMES[0])
    parts = sorted(out.glob(f"{name}.part*"))
    joined = b"".join(p.read_bytes() for p in parts)
    summary: dict[str, Any] = {
        "dry_run": dry_run,
        "knobs": {k: v for k, v in sorted((environ or {}).items()) if k.startswith("IRSTD_GPU_")},
        "source": None if tree is None else source_record(tree),
        "steps": steps,
        "env": _read_json(work / "env.json"),
        "pytest_gpu": _pytest_tail(logs / "pytest_gpu.log"),
        "pack": None if pack is None else pack_record(pack),
        "bench": None if bench is None else {
            "complete": bench.get("complete"), "machine": bench.get("machine"),
            "rows": bench.get("rows"), "skipped": bench.get("skipped"),
        },
        "probe_paper_recipe": None if probe is None else {
            k: probe.get(k) for k in ("recipe", "steps", "img_per_s_median", "epoch_s_median", "train_s",
                                      "peak_gpu_mem_mb", "device")
        },
        "train": None if train is None else {k: v for k, v in train.items() if k != "config"},
        "train_config": None if train is None else train.get("config"),
        "history": history,
        "checkpoint": {
            "parts": [p.name for p in parts],
            "bytes": len(joined),
            "sha256": hashlib.sha256(joined).hexdigest() if parts else None,
            "join": f"cat {name}.part* > {name}",
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m irstd_ros.tools.gpu_session")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("dry-data")
    d.add_argument("--root", type=Path, required=True)
    s = sub.add_parser("split")
    s.add_argument("file", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--part-bytes", type=int, default=os.environ.get("IRSTD_GPU_PART_BYTES", str(PART_BYTES)))
    r = sub.add_parser("return-checkpoint", help="the run's checkpoint, by preference, in parts")
    r.add_argument("--run", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--part-bytes", type=int, default=os.environ.get("IRSTD_GPU_PART_BYTES", str(PART_BYTES)))
    c = sub.add_parser("clear-results", help="remove an earlier call's results from a kept --out")
    c.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("summarize")
    m.add_argument("--work", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--dry-run", action="store_true")
    m.add_argument("--pack", type=Path, help="the pack the training read (its sha256 and groups are recorded)")
    m.add_argument("--tree", type=Path, help="the working tree the session ran (its source fingerprint is recorded)")
    f = sub.add_parser("preflight", help="refuse what would waste the call (one line each); exit 2")
    f.add_argument("--tree", type=Path, help="also check the size of this working tree plus --carry (here)")
    f.add_argument("--carry", type=Path, action="append", default=[], help="a path the call carries")
    f.add_argument("--trainer", choices=TRAINERS, default="gpu",
                   help="whose flags follow: gpu (irstd_ros.training.gpu) or train (irstd train)")
    f.add_argument("train_argv", nargs=argparse.REMAINDER, help="-- then the training's flags")
    args = p.parse_args(argv)
    if args.cmd == "preflight":
        train_argv = args.train_argv[1:] if args.train_argv[:1] == ["--"] else args.train_argv
        problems = preflight(os.environ, train_argv, args.tree, args.carry, args.trainer)
        for line in problems:
            print(f"gpu_session: {line}", file=sys.stderr)
        if args.tree is not None and not problems:
            print(f"gpu_session: tree and carry {travel_size(args.tree, args.carry)[0] / 2**20:.1f} MiB of 64")
            src = source_record(args.tree)
            print(f"gpu_session: source {src['sha256'][:16]} ({src['files']} files) at {src['git_commit']}"
                  f"{' with changes' if src['git_modified'] else ''}; summary.json's source.sha256 matches it")
        return 2 if problems else 0
    if args.cmd == "env":
        report = env_report()
        write_text_atomic(args.out, json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return 0 if report["imports_ok"] else 1
    if args.cmd == "dry-data":
        print(json.dumps(make_dry_data(args.root)))
        return 0
    if args.cmd == "split":
        parts = split_file(args.file, args.out, args.part_bytes)
        print(json.dumps([str(x) for x in parts]))
        return 0
    if args.cmd == "return-checkpoint":
        parts = return_checkpoint(args.run, args.out, args.part_bytes)
        print(json.dumps([str(x) for x in parts]))
        return 0
    if args.cmd == "clear-results":
        clear_results(args.out)
        return 0
    summary = summarize(args.work, args.out, args.dry_run, args.pack, os.environ, args.tree)
    print(json.dumps({k: summary[k] for k in ("steps", "pytest_gpu", "checkpoint")}, indent=1))
    files = [f for f in args.out.iterdir() if f.is_file()]
    return 0 if len(files) <= MAX_OUT_FILES else 1


if __name__ == "__main__":
    sys.exit(main())
