"""The "restart" parameters (model.*, qos.*, input.transport, diagnostics.period) in an atomic
batch: at their values in force they are no change, so a whole parameters file loads with
``load_parameter_file_atomically`` (what the README recommends for linked values); a
change is refused, saying what to do. Before, they were declared read_only (the plain
node) or refused by name (the lifecycle node, configured): the whole batch was refused,
the run-time values in it too, even with every restart value unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("irstd_ros.msg")

import yaml  # noqa: E402
from _support.node import make_detector  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from irstd_ros.ros.lifecycle_node import IrstdLifecycleNode  # noqa: E402
from irstd_ros.ros.node import IrstdNode  # noqa: E402
from irstd_ros.ros.params import PARAMS  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]
SUCCESS = TransitionCallbackReturn.SUCCESS
TIMEOUT_S = 10.0
# every restart parameter at its default (the value in force), diagnostics.period as a
# YAML file's `period: 1` gives it (an int for the float), with linked run-time values
UNCHANGED = [Parameter(p.name, value=p.default) for p in PARAMS if p.read_only and p.name != "diagnostics.period"]
BATCH = [*UNCHANGED, Parameter("diagnostics.period", value=1),
         Parameter("tracking.confirm_m", value=7), Parameter("tracking.confirm_n", value=8)]


def confirm(node) -> tuple[int, int]:
    return node.params["tracking.confirm_m"], node.params["tracking.confirm_n"]


def test_the_plain_node_takes_restart_parameters_at_their_values_in_force(rclpy_context):
    node = IrstdNode(detector=make_detector())
    try:
        assert node.set_parameters_atomically(BATCH).successful
        assert confirm(node) == (7, 8)
        refused = node.set_parameters_atomically(
            [Parameter("model.path", value="fast"), Parameter("tracking.confirm_m", value=5)]
        )
        assert not refused.successful
        assert refused.reason == "model.path: read at start: restart the node to change it"
        assert confirm(node) == (7, 8) and node.get_parameter("model.path").value == ""
        assert not node.set_parameters([Parameter("qos.depth", value=6)])[0].successful
        assert node.set_parameters([Parameter("qos.depth", value=5)])[0].successful  # the same
        (described,) = node.describe_parameters(["model.path"])
        assert not described.read_only and "restart the node" in described.additional_constraints
    finally:
        node.close()


def test_the_lifecycle_node_takes_them_while_configured_and_changes_them_unconfigured(rclpy_context):
    node = IrstdLifecycleNode(detector_factory=make_detector)
    try:
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        assert node.set_parameters_atomically(BATCH).successful
        assert confirm(node) == (7, 8)
        refused = node.set_parameters_atomically(
            [Parameter("qos.depth", value=9), Parameter("tracking.confirm_m", value=5)]
        )
        assert not refused.successful and confirm(node) == (7, 8)
        assert refused.reason == (
            "qos.depth: read at configure: cleanup, set, configure again (the node is active)"
        )
        assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
        assert node.set_parameters_atomically(  # unconfigured: changed, read at configure
            [Parameter("qos.depth", value=9), Parameter("tracking.confirm_m", value=5)]
        ).successful
        assert node.trigger_configure() == SUCCESS
        assert node.params["qos.depth"] == 9 and node.sub.qos_profile.depth == 9
    finally:
        node.close()


@pytest.mark.parametrize("lifecycle", [False, True], ids=["plain", "lifecycle_active"])
def test_the_shipped_parameters_file_loads_atomically_into_a_running_node(rclpy_context, tmp_path, lifecycle):
    """As README "Parameters" says to move linked values: the shipped config/irstd.yaml
    with tracking.confirm_m/n 7/8, through the parameter services."""
    cfg = yaml.safe_load((ROOT / "config" / "irstd.yaml").read_text())
    cfg["/**"]["ros__parameters"]["tracking"].update(confirm_m=7, confirm_n=8)
    path = tmp_path / "irstd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    node = IrstdLifecycleNode(detector_factory=make_detector) if lifecycle else IrstdNode(detector=make_detector())
    peer = rclpy.create_node("irstd_param_peer")
    executor = SingleThreadedExecutor()
    try:
        if lifecycle:
            assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        executor.add_node(node)
        executor.add_node(peer)
        client = AsyncParameterClient(peer, node.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=TIMEOUT_S)
        future = client.load_parameter_file_atomically(str(path), use_wildcard=True)
        executor.spin_until_future_complete(future, timeout_sec=TIMEOUT_S)
        result = future.result()
        assert result is not None
        assert result.result.successful, result.result.reason
        assert confirm(node) == (7, 8)
    finally:
        executor.shutdown()
        peer.destroy_node()  # and its clients
        node.close()
