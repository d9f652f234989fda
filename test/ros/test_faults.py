"""Faults: bad model files and parameters at start (one line, exit code 1, no traceback),
pickled checkpoints refused without being executed, no shell in the package, and the
node surviving inference failures and running out of GPU memory (drop, count, fall back
to the CPU after :data:`OOM_FALLBACK_AFTER` in a row)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from _support.executables import executable
from safetensors.torch import save_file

from irstd_ros.checkpoint import METADATA_KEY, CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.core.constants import SHIPPED_MODELS
from irstd_ros.errors import BackendError, CheckpointError
from irstd_ros.inference.detector import CpuFallback, Detector, default_model_path
from irstd_ros.models import build_model, named_config

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "irstd_ros"
START_TIMEOUT_S = 60.0
ERROR_PREFIX = "irstd_node: error"
CPU_BACKEND = "torch-cpu"


def tiny_checkpoint(path: Path, arch: str | None = None) -> Path:
    """A random-weight tiny SGEM-UNet checkpoint; ``arch`` rewrites the metadata's arch."""
    model = build_model(named_config("tiny"))
    save_checkpoint(path, model, CheckpointInfo(named_config("tiny")))
    if arch is not None:
        meta = json.loads(CheckpointInfo(named_config("tiny")).to_json())
        meta["model"]["arch"] = arch
        tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


class Payload:
    """Unpickling this creates ``marker`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickled_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"weight": torch.zeros(2), "payload": Payload(marker)}, path)
    return path


# --- security -----------------------------------------------------------------------------
def test_the_pickle_payload_is_live(tmp_path):
    """Guard for the tests below: unpickling this file really would run code."""
    marker = tmp_path / "executed"
    path = pickled_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)  # the unsafe way, on purpose, in the test only
    assert marker.exists()


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pt"])
def test_pickled_checkpoint_is_refused_and_not_executed(tmp_path, name):
    marker = tmp_path / "executed"
    path = pickled_checkpoint(tmp_path / name, marker)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        Detector.from_checkpoint(path, backend="torch-cpu")
    assert not marker.exists(), "the pickled payload was executed"


FORBIDDEN = {
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "os.system": re.compile(r"\bos\.system\s*\("),
    "os.popen": re.compile(r"\bos\.popen\s*\("),
    "subprocess.getoutput": re.compile(r"\bsubprocess\.get(status)?output\s*\("),
    "pickle loading": re.compile(r"\b(c?pickle|dill|joblib)\.loads?\s*\("),
    "torch.load": re.compile(r"\btorch\.load\s*\("),
    "eval/exec": re.compile(r"(?<![.\w])(eval|exec)\s*\("),
}


def test_package_calls_no_shell_and_unpickles_nothing():
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            hits += [f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()}"
                     for what, rx in FORBIDDEN.items() if rx.search(code)]
    assert not hits, "\n".join(hits)


# --- parameter paths ------------------------------------------------------------------
@pytest.mark.ros
def test_path_parameters_are_validated(tmp_path):
    from irstd_ros.ros.node import path_problem

    ok = tiny_checkpoint(tmp_path / "m.safetensors")
    assert path_problem("model.path", "") is None
    assert path_problem("model.path", str(ok)) is None
    for name in SHIPPED_MODELS:  # the names README and irstd.yaml offer
        assert path_problem("model.path", name) is None, name
    assert "not found" in path_problem("model.path", str(tmp_path / "nope.safetensors"))
    assert "not a regular file" in path_problem("model.path", str(tmp_path))
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"x")
    assert ".safetensors" in path_problem("model.path", str(pt))

    assert path_problem("model.cache_dir", "") is None
    assert path_problem("model.cache_dir", str(tmp_path)) is None
    assert path_problem("model.cache_dir", str(tmp_path / "a" / "b")) is None  # creatable
    assert not (tmp_path / "a").exists()  # validation creates nothing
    assert "not a directory" in path_problem("model.cache_dir", str(pt))
    assert "cannot be created" in path_problem("model.cache_dir", str(pt / "sub"))
    assert path_problem("detection.min_area", 3) is None


# --- start-up faults of the node process --------------------------------------------------
def _bad_start(tmp_path: Path, case: str) -> tuple[list[str], list[str]]:
    """ROS arguments for one faulty start and what its error line must contain."""
    if case == "truncated":
        path = tmp_path / "cut.safetensors"
        data = default_model_path().read_bytes() if default_model_path().is_file() else None
        data = data or tiny_checkpoint(tmp_path / "whole.safetensors").read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return ["-p", f"model.path:={path}"], [str(path), "not a readable safetensors"]
    if case == "truncated_header":
        path = tmp_path / "stub.safetensors"
        path.write_bytes(tiny_checkpoint(tmp_path / "whole.safetensors").read_bytes()[:16])
        return ["-p", f"model.path:={path}"], [str(path), "not a readable safetensors"]
    if case == "other_architecture":
        path = tiny_checkpoint(tmp_path / "other.safetensors", arch="unknown_net")
        return ["-p", f"model.path:={path}"], [str(path), "unknown_net"]
    if case == "pickle_renamed":
        path = pickled_checkpoint(tmp_path / "evil.safetensors", tmp_path / "executed")
        return ["-p", f"model.path:={path}"], [str(path), "not a readable safetensors"]
    if case == "pickle_suffix":
        path = pickled_checkpoint(tmp_path / "evil.pt", tmp_path / "executed")
        return ["-p", f"model.path:={path}"], [str(path), ".safetensors checkpoint"]
    if case == "directory":
        return ["-p", f"model.path:={tmp_path}"], [str(tmp_path), "not a regular file"]
    if case == "cache_dir_is_a_file":
        f = tmp_path / "file"
        f.write_text("x")
        return ["-p", f"model.cache_dir:={f / 'engines'}"], ["model.cache_dir", str(f)]
    if case == "unknown_backend":
        return ["-p", "model.backend:=warp-drive"], ["warp-drive", "backend"]
    if case == "wrong_type":
        return ["-p", "model.threads:=many"], ["model.threads", "invalid parameter"]
    if case == "params_file_missing":
        return ["--params-file", str(tmp_path / "absent.yaml")], ["params file", "absent.yaml"]
    if case == "params_file_malformed":
        bad = tmp_path / "bad.yaml"
        bad.write_text("a: [\n")
        return ["--params-file", str(bad)], ["params file", "bad.yaml"]
    raise ValueError(case)


@pytest.mark.ros
@pytest.mark.parametrize(
    "case",
    ["truncated", "truncated_header", "other_architecture", "pickle_renamed", "pickle_suffix",
     "directory", "cache_dir_is_a_file", "unknown_backend", "wrong_type", "params_file_missing",
     "params_file_malformed"],
)
def test_bad_start_is_one_line_and_exit_code_1(tmp_path, case):
    ros_args, expected = _bad_start(tmp_path, case)
    _assert_one_line_start_failure(ros_args, expected)
    assert not (tmp_path / "executed").exists(), "the pickled payload was executed"


def _assert_one_line_start_failure(ros_args: list[str], expected: list[str], env: dict | None = None) -> None:
    """irstd_node with ``ros_args`` (and ``env``) exits 1 with one error line holding each
    of ``expected``, and no traceback."""
    cmd = [executable("irstd_node"), "--ros-args", *ros_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S, env=env)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    lines = [ln for ln in out.stderr.splitlines() if ERROR_PREFIX in ln]
    assert len(lines) == 1, text
    for part in expected:
        assert part in lines[0], lines[0]
    assert "Traceback" not in text, text


@pytest.mark.ros
@pytest.mark.parametrize("case", ["file", "unwritable"])
def test_a_bad_cache_dir_in_the_environment_is_one_line_and_exit_code_1(tmp_path, case):
    """$IRSTD_CACHE_DIR was not checked as model.cache_dir is: a regular file or a path
    that cannot be created ended the node with a traceback (FileExistsError, OSError)."""
    import os

    if case == "file":
        cache = tmp_path / "file"
        cache.write_text("x")
        expected = ["$IRSTD_CACHE_DIR", f"{cache} exists and is not a directory"]
    else:
        cache = Path("/proc/irstd_test_cache")  # /proc takes no new file, not even root's
        expected = ["$IRSTD_CACHE_DIR", f"{cache} cannot be created: directory /proc is not writable"]
    _assert_one_line_start_failure(["-p", "model.backend:=openvino"], expected,
                                   env={**os.environ, "IRSTD_CACHE_DIR": str(cache)})


@pytest.mark.ros
def test_the_cache_dir_in_effect_is_checked_and_absolute(tmp_path, monkeypatch):
    """Relative, it was passed on as given (node.py expanded ``~`` only) and shown so."""
    from irstd_ros.errors import ConfigError
    from irstd_ros.inference.backends.graph_export import CACHE_ENV
    from irstd_ros.ros.node import cache_dir_in_effect

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, "from_env")
    assert cache_dir_in_effect({"model.cache_dir": ""}) == tmp_path / "from_env"
    assert cache_dir_in_effect({"model.cache_dir": "param/cache"}) == tmp_path / "param" / "cache"
    (tmp_path / "from_env").write_text("a file")
    with pytest.raises(ConfigError, match=rf"^invalid environment: \${CACHE_ENV}: .*from_env exists and is not"):
        cache_dir_in_effect({"model.cache_dir": ""})
    assert cache_dir_in_effect({"model.cache_dir": "param"}) == tmp_path / "param"  # the parameter wins


# --- inference faults in the running node (real rclpy, in process) ------------------------
class FaultyBackend:
    """Intensity backend double that raises ``exc`` for its first ``failures`` calls."""

    device = "cuda:0 (double)"

    def __init__(self, exc: BaseException, failures: int, name: str = "cuda") -> None:
        self.exc, self.failures, self.name, self.calls = exc, failures, name, 0

    def predict(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return frame.astype(np.float32)

    def describe(self) -> dict:
        return {"backend": self.name}


def _oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture
def faulty_node(rclpy_context, tmp_path):
    """make(backend) -> (harness, log capture); the detector falls back to a tiny checkpoint."""
    from _support.node import logged_harness
    from rclpy.parameter import Parameter

    from irstd_ros.ros.node import IrstdNode

    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    made = []

    def make(backend: FaultyBackend):
        detector = Detector(backend, CheckpointInfo(named_config("tiny"), threshold=0.5),
                            fallback=CpuFallback(ckpt))
        node = IrstdNode(detector=detector,
                         parameter_overrides=[Parameter("model.path", value=str(ckpt))])
        h, log = logged_harness(node)
        made.append(h)
        return h, log

    yield make
    for h in made:
        h.close()


def _frame(stamp: int):
    from _support.node import frame_for, image_msg

    return image_msg(frame_for("mono8"), "mono8", stamp=stamp)


@pytest.mark.ros
def test_one_out_of_memory_drops_that_frame_only(faulty_node):
    h, log = faulty_node(FaultyBackend(_oom(), failures=1))
    h.send(_frame(1))
    h.spin_until(lambda: h.node.stats.errors["out_of_memory"] == 1)
    h.send(_frame(2), expect_answers=1)
    assert [d.header.stamp.sec for d in h.got["detections"]] == [2]
    assert h.node.detector.backend.name == "cuda"  # no fall-back for a single one
    assert log.count("warning", "out_of_memory") == 1


@pytest.mark.ros
def test_repeated_out_of_memory_falls_back_to_the_cpu_once(faulty_node):
    from irstd_ros.inference.detector import CPU_FALLBACK_BACKEND, OOM_FALLBACK_AFTER

    h, log = faulty_node(FaultyBackend(_oom(), failures=10**6))
    for i in range(OOM_FALLBACK_AFTER):
        h.send(_frame(i + 1))
        h.spin_until(lambda i=i: h.node.stats.errors["out_of_memory"] == i + 1)
    h.spin_until(lambda: h.node.detector.backend.name == CPU_FALLBACK_BACKEND)
    assert log.count("error", "fell back to torch-cpu") == 1
    assert h.node.detector.post.threshold == 0.5  # run-time parameters carried over
    for stamp in (10, 11):
        h.send(_frame(stamp), expect_answers=1)
    assert [d.header.stamp.sec for d in h.got["detections"]] == [10, 11]
    assert h.node.stats.errors["out_of_memory"] == OOM_FALLBACK_AFTER
    assert h.node.diagnostics().status[0].hardware_id == "cpu"


@pytest.mark.ros
def test_out_of_memory_on_the_cpu_backend_does_not_reload(faulty_node):
    from irstd_ros.inference.detector import OOM_FALLBACK_AFTER

    backend = FaultyBackend(_oom(), failures=OOM_FALLBACK_AFTER + 1, name="torch-cpu")
    h, log = faulty_node(backend)
    for i in range(OOM_FALLBACK_AFTER + 1):
        h.send(_frame(i + 1))
        h.spin_until(lambda i=i: h.node.stats.errors["out_of_memory"] == i + 1)
    h.send(_frame(50), expect_answers=1)
    assert h.node.detector.backend is backend
    assert log.count("error", "fell back") == 0


@pytest.mark.ros
@pytest.mark.parametrize(
    ("exc", "kind"),
    [(RuntimeError("cuDNN error"), "inference_error"), (KeyError("surprise"), "internal_error")],
)
def test_inference_failures_are_counted_and_the_node_continues(faulty_node, exc, kind):
    h, _ = faulty_node(FaultyBackend(exc, failures=2))
    for i in range(2):
        h.send(_frame(i + 1))
        h.spin_until(lambda i=i: h.node.stats.errors[kind] == i + 1)
    h.send(_frame(3), expect_answers=1)
    assert h.node.stats.processed == 1


class _BrokenEngine:
    """A TensorRT engine that loaded but fails on its first run (e.g. a stale engine)."""

    name, device = "tensorrt", "cuda:0 (double)"

    def predict(self, frame: np.ndarray) -> np.ndarray:
        raise RuntimeError("engine deserialisation failed: fingerprint mismatch")

    def describe(self) -> dict:
        return {"backend": self.name}


def _engine_fails_to_load(model, info, options):
    raise BackendError("TensorRT engine failed to load: serialized with another TensorRT")


def _engine_fails_on_first_frame(model, info, options):
    return _BrokenEngine()


@pytest.mark.ros
@pytest.mark.parametrize(
    "factory, why",
    [(_engine_fails_to_load, "another TensorRT"), (_engine_fails_on_first_frame, "fingerprint mismatch")],
    ids=["load", "first-frame"],
)
def test_auto_backend_moves_on_when_the_tensorrt_engine_fails(
    rclpy_context, tmp_path, monkeypatch, caplog, factory, why
):
    """``model.backend: auto`` with a TensorRT engine that cannot run: the node starts on
    the next backend, says why in one log line, and answers frames."""
    from _support.node import Harness
    from rclpy.parameter import Parameter

    from irstd_ros.inference.backends import select
    from irstd_ros.ros.node import IrstdNode

    def unavailable(name: str) -> str | None:  # TensorRT "present"; slow-to-build CPU ones not
        if name == "tensorrt":
            return None
        return "not used in this test" if name != CPU_BACKEND else available(name)

    available = select.unavailable_reason
    monkeypatch.setattr(select, "unavailable_reason", unavailable)
    monkeypatch.setitem(select.REGISTRY, "tensorrt", factory)
    caplog.set_level(logging.INFO, logger=select.log.name)
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    package = logging.getLogger("irstd_ros")  # the node's records go to its ROS log, not up to the root's
    package.addHandler(caplog.handler)
    try:
        node = IrstdNode(parameter_overrides=[Parameter("model.path", value=str(ckpt)),
                                              Parameter("model.backend", value="auto")])
    finally:
        package.removeHandler(caplog.handler)
    h = Harness(node)
    try:
        assert node.detector.backend.name == CPU_BACKEND
        lines = [r.getMessage() for r in caplog.records if "tensorrt skipped" in r.getMessage()]
        assert len(lines) == 1, lines
        assert why in lines[0]
        h.send(_frame(1), expect_answers=1)
    finally:
        h.close()


@pytest.mark.ros
def test_only_a_cache_dir_given_is_refused_up_front_not_the_default(monkeypatch):
    """A node on a read-only home (a container) still runs a backend that needs no cache:
    an unusable *default* cache directory is not refused at start-up, an unusable one given
    by $IRSTD_CACHE_DIR or model.cache_dir is, naming where it came from."""
    from irstd_ros.errors import ConfigError
    from irstd_ros.inference.backends import graph_export
    from irstd_ros.ros.node import cache_dir_in_effect, path_problem

    unusable = Path("/proc/irstd_test_default_cache")  # /proc takes no new folder
    monkeypatch.delenv(graph_export.CACHE_ENV, raising=False)
    monkeypatch.setattr(graph_export, "DEFAULT_CACHE_DIR", unusable)
    assert cache_dir_in_effect({"model.cache_dir": ""}) == unusable
    monkeypatch.setenv(graph_export.CACHE_ENV, str(unusable))
    with pytest.raises(ConfigError, match=r"invalid environment: \$IRSTD_CACHE_DIR"):
        cache_dir_in_effect({"model.cache_dir": ""})
    # the parameter is refused where every parameter is checked (read_parameters), once
    reason = path_problem("model.cache_dir", str(unusable))
    assert reason is not None and reason.startswith("model.cache_dir: ")
