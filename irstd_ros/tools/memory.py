"""Memory and CPU time of processes, for the benchmark and the load test (psutil;
``/proc/self`` for the high-water mark, which no library reads).

* :func:`rss_mib`: the resident set of a process now;
* :func:`peak_rss_mib`: this process's resident-set high-water mark: ``VmHWM`` of
  ``/proc/self/status`` on Linux. Not ``getrusage``'s ``ru_maxrss``: Linux carries that
  over ``fork`` and ``exec``, so a benchmark child started by a larger parent reported
  the parent's peak (a 14 MiB child of a 426 MiB parent read 426), and
  :func:`reset_peak_rss` could not lower it. Elsewhere ``ru_maxrss``;
* :func:`reset_peak_rss`: restart that mark from the current resident set (Linux only,
  ``/proc/self/clear_refs``: no library offers it), so a run of sizes in ascending order
  reads each size's own peak;
* :func:`cpu_seconds`: user + system CPU time of a process so far.
"""

from __future__ import annotations

import resource
import sys

import psutil

BYTES_PER_MIB = float(1 << 20)
# ru_maxrss is in KiB on Linux, bytes on macOS
MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024
CLEAR_REFS_RESET_HWM = "5"
PROC_STATUS = "/proc/self/status"
HWM_FIELD = "VmHWM:"
KIB = 1024


def rss_mib(pid: int | None = None) -> float | None:
    """Resident set of ``pid`` (default: this process) in MiB; None once it is gone."""
    try:
        return psutil.Process(pid).memory_info().rss / BYTES_PER_MIB
    except psutil.Error:
        return None


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB (since start or :func:`reset_peak_rss`)."""
    try:
        with open(PROC_STATUS) as f:
            for line in f:
                if line.startswith(HWM_FIELD):
                    return int(line.split()[1]) * KIB / BYTES_PER_MIB  # "VmHWM:  1234 kB"
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MAXRSS_BYTES / BYTES_PER_MIB


def reset_peak_rss() -> bool:
    """Restart this process's peak resident set from its current one; False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write(CLEAR_REFS_RESET_HWM)
    except OSError:
        return False
    return True


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time of ``pid`` (default: this process) so far; None once gone."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system
