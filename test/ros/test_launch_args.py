"""The node's command line (irstd_ros.ros.launch_args): what the launch file and the
node-process tests start, and the managed node's --autostart argument."""

from __future__ import annotations

import pytest

from irstd_ros.ros.launch_args import (
    autostart_requested,
    executable_for,
    node_command,
    repo_params_file,
)


def test_autostart_argument_of_the_managed_node():
    assert node_command("p.yaml", executable="irstd_lifecycle_node", autostart="true")[:3] == [
        "irstd_lifecycle_node", "--autostart", "true"]
    assert autostart_requested(["--autostart"]) and autostart_requested(["--autostart", "true"])
    assert autostart_requested(["--autostart=1"])
    assert not autostart_requested([]) and not autostart_requested(["--autostart", "false"])
    with pytest.raises(ValueError):
        autostart_requested(["--autostart", "maybe"])


def test_node_command_shape():
    cmd = node_command("config/irstd.yaml", image_topic="/cam/image", namespace="/ns")
    assert cmd == ["irstd_node", "--ros-args", "-r", "__node:=irstd_node", "-r", "__ns:=/ns",
                   "--params-file", "config/irstd.yaml", "-r", "image:=/cam/image",
                   "-r", "camera_info:=camera_info"]
    with_info = node_command("p.yaml", image_topic="/cam/image_raw", camera_info_topic="/cam/camera_info")
    assert with_info[-2:] == ["-r", "camera_info:=/cam/camera_info"]
    assert node_command("p.yaml", namespace="ns")[5] == "__ns:=/ns"
    assert node_command("p.yaml", executable="/venv/bin/irstd_node")[0] == "/venv/bin/irstd_node"
    assert node_command("p.yaml", extra_ros_args=["-p", "a:=1"])[-2:] == ["-p", "a:=1"]
    with pytest.raises(ValueError):
        node_command("p.yaml", image_topic="")
    compressed = node_command("p.yaml", image_transport="compressed")
    assert compressed[compressed.index("p.yaml") + 1:][:2] == ["-p", "input.transport:=compressed"]
    assert "-p" not in node_command("p.yaml", image_transport="")  # the file's value
    with pytest.raises(ValueError):
        node_command("p.yaml", image_transport="theora")
    with pytest.raises(ValueError):
        executable_for("maybe")


def test_use_sim_time_goes_after_the_params_file():
    """The launch file's use_sim_time argument ('' leaves the file's)."""
    cmd = node_command("p.yaml", image_transport="compressed", use_sim_time="True")
    assert cmd[cmd.index("p.yaml") + 1:][:4] == [
        "-p", "input.transport:=compressed", "-p", "use_sim_time:=true"]
    cmd = node_command("p.yaml", use_sim_time=False)
    assert cmd[cmd.index("p.yaml") + 1:][:2] == ["-p", "use_sim_time:=false"]
    assert "-p" not in node_command("p.yaml", use_sim_time="")
    with pytest.raises(ValueError, match="use_sim_time"):
        node_command("p.yaml", use_sim_time="yes please")


@pytest.mark.ros
def test_a_node_started_with_use_sim_time_runs_on_ros_time():
    """rcl reads the command line as launch_ros builds it: the node's clock is /clock."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    context = Context()
    rclpy.init(args=node_command(repo_params_file(), use_sim_time="true"), context=context)
    try:
        node = rclpy.create_node("irstd_node", context=context)
        try:
            assert node.get_parameter("use_sim_time").value is True
            assert node.get_clock().ros_time_is_active
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
