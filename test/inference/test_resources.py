"""``cpu_identity`` (what a recorded speed holds for), ``cpu_model``, ``cpu_flags``."""

from __future__ import annotations

import subprocess
import types

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


def _cgroups(tmp_path, monkeypatch, proc: str, files: dict[str, str]) -> None:
    """A fake /sys/fs/cgroup (``files``: path under it -> text) and /proc/self/cgroup."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "proc").write_text(proc)
    monkeypatch.setattr(resources, "CGROUP_ROOT", root)
    monkeypatch.setattr(resources, "PROC_CGROUP", tmp_path / "proc")


V2 = {"cgroup.controllers": "cpuset cpu io memory pids\n"}


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        ("0::/\n", {**V2, "cpu.max": "200000 100000\n"}, 2),  # docker --cpus 2
        ("0::/\n", {**V2, "cpu.max": "150000 100000\n"}, 2),  # 1.5 cores: the second thread still gets work
        ("0::/\n", {**V2, "cpu.max": "max 100000\n"}, None),  # no quota
        ("3:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ("3:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ("0::/\n", {}, None),  # no file
        # nested: a pod's quota above the container's folder, which has none of its own
        ("0::/kubepods/pod1/c1\n", {**V2, "kubepods/pod1/cpu.max": "300000 100000\n",
                                      "kubepods/pod1/c1/cpu.max": "max 100000\n"}, 3),
        ("0::/kubepods/pod1/c1\n", {**V2, "kubepods/pod1/cpu.max": "300000 100000\n",
                                      "kubepods/pod1/c1/cpu.max": "100000 100000\n"}, 1),  # the tightest
        ("5:cpu,cpuacct:/docker/abc\n", {"cpu/docker/cpu.cfs_quota_us": "400000\n",
                                          "cpu/docker/cpu.cfs_period_us": "100000\n",
                                          "cpu/docker/abc/cpu.cfs_quota_us": "-1\n"}, 4),
        ("0::/host/path/gone\n", {**V2, "cpu.max": "200000 100000\n"}, 2),  # a host path: the root stays
    ],
)
def test_a_container_cpu_quota_caps_the_cores(tmp_path, monkeypatch, proc, files, expected):
    """Only the affinity mask was read: under `docker --cpus 2` on a 16-core host the node
    and the CPU backends ran 16 threads, 14 of them waiting for their share; then only the
    root's quota, while a Kubernetes pod's sits on its own folder, above the container's."""
    _cgroups(tmp_path, monkeypatch, proc, files)
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert resources.cgroup_cpu_limit() == expected
    assert resources.available_cores() == (16 if expected is None else expected)


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        ("0::/c\n", {**V2, "c/memory.max": "1000\n", "c/memory.current": "400\n"}, 600),
        ("0::/c\n", {**V2, "c/memory.max": "max\n", "memory.max": "max\n"}, None),
        ("0::/p/c\n", {**V2, "p/memory.max": "1000\n", "p/memory.current": "900\n",
                        "p/c/memory.max": "800\n", "p/c/memory.current": "100\n"}, 100),  # the parent's
        ("4:memory:/d\n", {"memory/d/memory.limit_in_bytes": "2000\n", "memory/d/memory.usage_in_bytes": "500\n",
                            "memory/memory.limit_in_bytes": "9223372036854771712\n"}, 1500),
        ("4:memory:/d\n", {"memory/d/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1's "none"
        # page cache the kernel reclaims first is not in use (v2 inactive_file, v1 total_inactive_file)
        ("0::/c\n", {**V2, "c/memory.max": "1000\n", "c/memory.current": "900\n",
                      "c/memory.stat": "anon 300\nfile 600\ninactive_file 500\n"}, 600),
        ("4:memory:/d\n", {"memory/d/memory.limit_in_bytes": "2000\n", "memory/d/memory.usage_in_bytes": "1900\n",
                            "memory/d/memory.stat": "cache 1500\ntotal_inactive_file 1200\n"}, 1300),
    ],
)
def test_a_container_memory_limit_caps_the_memory_a_pack_may_take(tmp_path, monkeypatch, proc, files, expected):
    """The pack's size check read the machine's free memory: in a container with a lower
    limit a group that passed it got the process killed instead of a clear error."""
    from irstd_ros.data import pack

    _cgroups(tmp_path, monkeypatch, proc, files)
    assert resources.cgroup_memory_headroom() == expected
    machine = 1 << 40  # psutil's figure moves from call to call on a busy machine: fixed here
    monkeypatch.setattr(pack.psutil, "virtual_memory", lambda: types.SimpleNamespace(available=machine))
    assert pack.available_memory() == (machine if expected is None else expected)
