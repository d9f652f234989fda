"""``cpu_identity`` (what a recorded speed holds for), ``cpu_model``, ``cpu_flags``."""

from __future__ import annotations

import subprocess

import pytest

from irstd_ros.inference import resources

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9B14

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: not the first processor
"""


def test_identity_names_vendor_family_model_and_the_usable_cores(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    monkeypatch.setattr(resources, "CPUINFO", path)
    monkeypatch.setattr(resources, "available_cores", lambda: 2)
    assert resources.cpu_identity() == "AuthenticAMD family 25 model 17 (AMD EPYC 9B14), 2 cores"
    monkeypatch.setattr(resources, "available_cores", lambda: 4)  # the same CPU, another affinity
    assert resources.cpu_identity().endswith("(AMD EPYC 9B14), 4 cores")


def test_identity_without_cpuinfo_falls_back_to_the_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(resources.platform, "processor", lambda: "arm")
    monkeypatch.setattr(resources, "available_cores", lambda: 8)
    assert resources.cpu_identity() == "arm, 8 cores"


def _no_lscpu(*args, **kwargs):
    raise FileNotFoundError("lscpu")


def test_cpu_model_prefers_lscpu_then_cpuinfo_then_the_platform(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    monkeypatch.setattr(resources, "CPUINFO", path)
    lscpu = "Architecture:  aarch64\nModel name:    Cortex-A78AE\n"
    monkeypatch.setattr(resources.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, lscpu, ""))
    assert resources.cpu_model() == "Cortex-A78AE"  # ARM: only lscpu names the cores
    monkeypatch.setattr(resources.subprocess, "run", _no_lscpu)
    assert resources.cpu_model() == "AMD EPYC 9B14"
    monkeypatch.setattr(resources, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(resources.platform, "processor", lambda: "arm")
    assert resources.cpu_model() == "arm"


def test_cpu_flags_are_the_first_processors_or_none(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.replace("model name\t: AMD EPYC 9B14\n", "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512_bf16\n"))
    monkeypatch.setattr(resources, "CPUINFO", path)
    assert resources.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    path.write_text(CPUINFO)
    assert resources.cpu_flags() is None


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("200000 100000\n", None, 2),  # docker --cpus 2
        ("150000 100000\n", None, 2),  # 1.5 cores: the second thread still gets work
        ("max 100000\n", None, None),  # no quota
        (None, ("-1", "100000"), None),  # cgroup v1 without a quota
        (None, ("50000", "100000"), 1),
        (None, None, None),  # neither file
    ],
)
def test_a_container_cpu_quota_caps_the_cores(tmp_path, monkeypatch, v2, v1, expected):
    """Only the affinity mask was read: under `docker --cpus 2` on a 16-core host the node
    and the CPU backends ran 16 threads, 14 of them waiting for their share."""
    def put(name, text):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        return path

    monkeypatch.setattr(resources, "CGROUP_CPU_MAX", put("cpu.max", v2))
    monkeypatch.setattr(resources, "CGROUP_V1_QUOTA", put("quota", v1 and v1[0]))
    monkeypatch.setattr(resources, "CGROUP_V1_PERIOD", put("period", v1 and v1[1]))
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert resources.cgroup_cpu_limit() == expected
    assert resources.available_cores() == (16 if expected is None else expected)
