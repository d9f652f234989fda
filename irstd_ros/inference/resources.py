"""The process's compute resources: CPU cores, device memory, out-of-memory errors.

torch is looked up in ``sys.modules`` rather than imported: a process that never loaded
it (e.g. an OpenVINO-only one) has no torch memory to release and no torch error to see.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name")  # of the first processor


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset or a cgroup)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def cpu_identity() -> str:
    """The CPU and the cores this process may use, e.g. ``AuthenticAMD family 25 model 17
    (AMD EPYC), 2 cores``: what a speed measured here holds for. Vendor, family and model
    tell CPU generations apart that share a marketing name; ``platform.processor()`` where
    ``/proc/cpuinfo`` is missing (not Linux)."""
    fields: dict[str, str] = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block
            key, _, value = line.partition(":")
            if key.strip() in CPUINFO_KEYS:
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if fields:
        name = (f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model "
                f"{fields.get('model', '?')} ({fields.get('model name', '?')})")
    else:
        name = platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {available_cores()} cores"


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
