"""Memory of a process (irstd_ros.tools.memory): its peak resident set from the kernel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from irstd_ros.tools import memory

BUFFER_MIB = 64  # touched and freed to move the high-water mark above the resident set
COUNTER_SLACK_MIB = 2  # the kernel's per-thread RSS counters lag by a few pages


def _vm_hwm_mib() -> float:
    """The kernel's resident-set high-water mark of this process (VmHWM, kB)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE).group(1)) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_comes_from_the_kernel():
    buffer = np.ones(BUFFER_MIB << 20, np.uint8)  # every page touched
    during = memory.rss_mib()
    del buffer  # unmapped: the resident set falls, its high-water mark stays
    hwm = _vm_hwm_mib()
    peak = memory.peak_rss_mib()
    after = memory.rss_mib()
    assert hwm >= during - COUNTER_SLACK_MIB
    assert after < hwm - BUFFER_MIB / 2  # the current resident set is not the peak
    assert abs(peak - hwm) <= COUNTER_SLACK_MIB  # VmHWM itself, in MiB


PARENT_MIB = 256  # resident in the parent when it starts the child


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_child_reports_its_own_peak_not_its_parents():
    """getrusage carries the parent's peak over fork and exec; a benchmark child must not."""
    buffer = np.ones(PARENT_MIB << 20, np.uint8)  # every page touched, held while the child runs
    code = "from irstd_ros.tools.memory import peak_rss_mib; print(peak_rss_mib())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child_peak = float(out.stdout)
    assert buffer[-1] == 1 and memory.rss_mib() > PARENT_MIB
    assert child_peak < PARENT_MIB / 2  # a bare interpreter and psutil: tens of MiB
