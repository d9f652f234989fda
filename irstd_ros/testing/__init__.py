"""Harnesses shared by the tools (demo, load test) and the tests: a node in a child process."""

from irstd_ros.testing.node_process import NodeProcess, NodeProcessError, node_executable

__all__ = ["NodeProcess", "NodeProcessError", "node_executable"]
