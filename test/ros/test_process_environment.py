"""The node process: no torch in the ROS adapter, OMP_WAIT_POLICY set before the detector
(and with it torch/OpenMP) loads, thread count defaulting to the cores available."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros


def test_importing_the_nodes_loads_no_torch():
    code = ("import sys, irstd_ros.ros.node, irstd_ros.ros.lifecycle_node;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_process_environment_is_set_unless_the_user_set_it():
    from irstd_ros.ros.node import PROCESS_ENVIRONMENT, set_process_environment

    env: dict[str, str] = {}
    set_process_environment(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"} == PROCESS_ENVIRONMENT
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    set_process_environment(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"


def test_threads_default_to_the_cores_available(monkeypatch):
    from irstd_ros.inference import resources
    from irstd_ros.inference.backends import base
    from irstd_ros.inference.detector import Detector
    from irstd_ros.inference.resources import available_cores
    from irstd_ros.ros import node
    from irstd_ros.ros.params import PARAMS

    # the affinity mask (taskset, a cgroup), not the machine's core count
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(resources.os, "cpu_count", lambda: 64)
    assert available_cores() == 3
    seen: list[base.BackendOptions] = []
    monkeypatch.setattr(Detector, "from_checkpoint",
                        classmethod(lambda cls, path, backend, options: seen.append(options)))
    params = {p.name: p.default for p in PARAMS}
    node.build_detector(params)
    node.build_detector({**params, "model.threads": 5})
    assert [o.threads for o in seen] == [3, 5]


def test_gpu_options_reach_the_backend(monkeypatch):
    """model.cuda_graphs (default on) and model.compile (default off) become BackendOptions."""
    from irstd_ros.inference.detector import Detector
    from irstd_ros.ros import node
    from irstd_ros.ros.params import PARAMS

    seen = []
    monkeypatch.setattr(Detector, "from_checkpoint",
                        classmethod(lambda cls, path, backend, options: seen.append(options)))
    params = {p.name: p.default for p in PARAMS}
    node.build_detector(params)
    node.build_detector({**params, "model.cuda_graphs": False, "model.compile": True})
    assert [(o.cuda_graphs, o.compile) for o in seen] == [(True, False), (False, True)]
    # model.frame_size: the backend is warmed up (compiled, captured, built) at the camera's size
    node.build_detector({**params, "model.frame_size": "640x512"})
    assert [(o.height, o.width) for o in seen] == [(None, None), (None, None), (512, 640)]


def test_a_frame_size_that_is_no_size_is_refused_at_start():
    from irstd_ros.ros.params import PARAMS, validate

    params = {p.name: p.default for p in PARAMS}
    assert validate("model.frame_size", "640x512", params) is None
    assert validate("model.frame_size", "", params) is None
    assert "size must be WIDTHxHEIGHT, e.g. 640x512, got '640x'" in validate("model.frame_size", "640x", params)
    assert "size must be positive" in validate("model.frame_size", "0x512", params)
