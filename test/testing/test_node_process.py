"""The node-process harness on a plain Python child (no ROS): log, waits, stop, kill."""

from __future__ import annotations

import signal
import sys

import pytest

from irstd_ros.testing import NodeProcess, NodeProcessError

SLEEPER = "import sys, time; print('up', flush=True); time.sleep(60)"
IGNORES_SIGINT = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); "
    "time.sleep(60)"
)


def test_waits_logs_and_stops_with_the_signal(tmp_path):
    node = NodeProcess([sys.executable, "-c", SLEEPER], tmp_path / "child.log")
    node.wait_for(lambda: "up" in node.log_text(), 30.0, "start")
    assert node.alive() and node.tail() == "up"
    with pytest.raises(NodeProcessError, match="timed out after 0 s: never: up"):
        node.wait_for(lambda: False, 0.0, "never")
    assert node.stop(signal.SIGTERM) == -signal.SIGTERM and not node.killed


def test_exit_while_waiting_is_an_error_with_the_log_tail(tmp_path):
    node = NodeProcess([sys.executable, "-c", "print('bad model'); raise SystemExit(1)"],
                       tmp_path / "child.log")
    with pytest.raises(NodeProcessError, match="exited with code 1: bad model"):
        node.wait_for(lambda: False, 30.0, "start")
    assert node.stop() == 1


def test_a_child_that_ignores_the_signal_is_killed(tmp_path):
    with NodeProcess([sys.executable, "-c", IGNORES_SIGINT], tmp_path / "child.log") as node:
        node.wait_for(lambda: "up" in node.log_text(), 30.0, "start")
        assert node.stop(signal.SIGINT, timeout=0.5) == -signal.SIGKILL
        assert node.killed
