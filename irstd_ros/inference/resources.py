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


# a container's CPU quota: cgroup v2's "QUOTA PERIOD" (or "max PERIOD"), cgroup v1's two files
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit() -> int | None:
    """Whole cores a CPU quota allows (``docker --cpus 2``, a Kubernetes limit), rounded up;
    None without a quota or where none can be read."""
    quota = period = None
    with contextlib.suppress(OSError, ValueError):
        fields = CGROUP_CPU_MAX.read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            quota, period = int(fields[0]), int(fields[1])
    if quota is None:
        with contextlib.suppress(OSError, ValueError):
            quota, period = int(CGROUP_V1_QUOTA.read_text()), int(CGROUP_V1_PERIOD.read_text())
    if quota is None or period is None or quota <= 0 or period <= 0:  # v1's -1: no quota
        return None
    return max(1, -(-quota // period))


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
