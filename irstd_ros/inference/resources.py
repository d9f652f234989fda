"""The process's compute resources: the CPU (name, flags, cores), device memory,
out-of-memory errors.

torch is looked up in ``sys.modules`` rather than imported: a process that never loaded
it (e.g. an OpenVINO-only one) has no torch memory to release and no torch error to see.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import subprocess
import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "flags")  # of the first processor
LSCPU_TIMEOUT_S = 10


# cgroups: the process's own line of /proc/self/cgroup names its folder under the hierarchy's
# mount; limits are read in that folder and every one above it (a Kubernetes pod's quota
# sits on the pod's folder, the container's below it), the tightest winning
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
NO_MEMORY_LIMIT = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def cgroup_dirs(controller: str) -> list[Path]:
    """This process's cgroup folders for ``controller`` (``cpu``, ``memory``), innermost
    first, up to the hierarchy's root: cgroup v2's unified hierarchy where it is mounted
    (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified``) and enables the controller, else
    v1's ``/sys/fs/cgroup/<controller>``. Folders that are not there (a host path in a
    container without a cgroup namespace) are left out; the root always stays."""
    lines = []
    with contextlib.suppress(OSError):
        lines = [ln.split(":", 2) for ln in PROC_CGROUP.read_text().splitlines() if ln.count(":") >= 2]
    base, rel = None, "/"
    for unified in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        with contextlib.suppress(OSError):
            if controller in (unified / "cgroup.controllers").read_text().split():
                base = unified
                rel = next((path for _, names, path in lines if names == ""), "/")
                break
    if base is None:
        base = CGROUP_ROOT / controller
        rel = next((path for _, names, path in lines if controller in names.split(",")), "/")
    dirs, folder = [], base / rel.strip("/")
    while True:
        if folder.is_dir():
            dirs.append(folder)
        if folder == base or base not in folder.parents:
            break
        folder = folder.parent
    return dirs or [base]


def _read_ints(path: Path) -> list[int] | None:
    """The whole numbers of a cgroup file, None where it is missing, unreadable or says
    ``max`` (v2's "no limit")."""
    try:
        return [int(v) for v in path.read_text().split()]
    except (OSError, ValueError):
        return None


def cgroup_cpu_limit() -> int | None:
    """Whole cores a CPU quota allows (``docker --cpus 2``, a Kubernetes limit), rounded up,
    the tightest of the process's cgroup and those above it; None without a quota or where
    none can be read."""
    cores = []
    for folder in cgroup_dirs("cpu"):
        v2 = _read_ints(folder / "cpu.max")
        quota_period = v2 if v2 is not None and len(v2) == 2 else None
        if quota_period is None:
            q, per = _read_ints(folder / "cpu.cfs_quota_us"), _read_ints(folder / "cpu.cfs_period_us")
            quota_period = [q[0], per[0]] if q and per else None
        if quota_period and quota_period[0] > 0 and quota_period[1] > 0:  # v1's -1: no quota
            cores.append(max(1, -(-quota_period[0] // quota_period[1])))
    return min(cores) if cores else None


def _inactive_file(folder: Path) -> int:
    """Page cache the kernel reclaims before it would kill (``memory.stat``'s
    ``inactive_file``, v1's ``total_inactive_file``): not memory in use, as docker's and
    the kubelet's figures count it."""
    with contextlib.suppress(OSError, ValueError):
        stats = dict(line.split()[:2] for line in (folder / "memory.stat").read_text().splitlines()
                     if len(line.split()) >= 2)
        return int(stats.get("inactive_file", stats.get("total_inactive_file", 0)))
    return 0


def cgroup_memory_headroom() -> int | None:
    """Bytes a memory limit still allows (the limit less what the cgroup uses, its
    reclaimable page cache not counted), the least of the process's cgroup and those above
    it; None without a limit."""
    room = []
    for folder in cgroup_dirs("memory"):
        limit = _read_ints(folder / "memory.max") or _read_ints(folder / "memory.limit_in_bytes")
        used = _read_ints(folder / "memory.current") or _read_ints(folder / "memory.usage_in_bytes")
        if limit and limit[0] < NO_MEMORY_LIMIT:
            in_use = max(0, (used[0] if used else 0) - _inactive_file(folder))
            room.append(max(0, limit[0] - in_use))
    return min(room) if room else None


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask (taskset, cpusets), and no more
    than a container's CPU quota allows (:func:`cgroup_cpu_limit`), whose extra threads
    would only wait for their share."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        cores = max(1, os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    return cores if limit is None else min(cores, limit)


def _cpuinfo() -> dict[str, str]:
    """The first processor's :data:`CPUINFO_KEYS` in ``/proc/cpuinfo`` (empty: not Linux)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in CPUINFO.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block
            key, _, value = line.partition(":")
            if key.strip() in CPUINFO_KEYS:
                fields[key.strip()] = value.strip()
    return fields


def cpu_identity() -> str:
    """The CPU and the cores this process may use, e.g. ``AuthenticAMD family 25 model 17
    (AMD EPYC), 2 cores``: what a speed measured here holds for. Vendor, family and model
    tell CPU generations apart that share a marketing name; ``platform.processor()`` where
    ``/proc/cpuinfo`` is missing (not Linux)."""
    fields = _cpuinfo()
    if fields:
        name = (f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model "
                f"{fields.get('model', '?')} ({fields.get('model name', '?')})")
    else:
        name = platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {available_cores()} cores"


def cpu_model() -> str:
    """The CPU's name for reports: lscpu's "Model name" (which also names ARM cores, whose
    ``/proc/cpuinfo`` has none), else ``/proc/cpuinfo``'s, else the platform's."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=LSCPU_TIMEOUT_S).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and value.strip():
                return value.strip()
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags (``avx512_bf16``, ``amx_int8``, ...), None where
    ``/proc/cpuinfo`` lists none."""
    flags = _cpuinfo().get("flags")
    return frozenset(flags.split()) if flags else None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (``torch.OutOfMemoryError``)."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None)
    return isinstance(oom, type) and isinstance(exc, oom)


def release_device_memory(collect: bool = False) -> None:
    """Hand cached GPU memory back to the driver; ``collect``: run the garbage collector
    first, so that models just dropped are freed."""
    if collect:
        gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
