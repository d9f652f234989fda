"""What ``launch/irstd.launch.py`` does, as plain data and a pure function.

The launch file itself needs ``launch``/``launch_ros``, which are not installable from
a registry here. :func:`node_command` builds the command line launch_ros runs for the
launch file's node, so tests (and users without ``ros2 launch``) can start the node
exactly the way the launch file does::

    irstd_node --ros-args -r __node:=irstd_node -r __ns:=/cam0 \
        --params-file config/irstd.yaml -r image:=/cam0/image_raw

(launch_ros >= Humble: ``--ros-args``, node name, namespace made absolute -- ``''``
becomes ``/`` --, parameter files, then remappings. The launch file's ``image_transport``
and ``use_sim_time`` go to launch_ros as a parameter dict after the file
(:func:`parameter_overrides`), which launch_ros writes to a temporary file of its own;
here they are ``-p input.transport:=... -p use_sim_time:=...`` at the same place, with the
same effect: the later value wins.)

``test/test_launch_file.py`` checks that the launch file declares :data:`LAUNCH_ARGUMENTS`
and starts :data:`NODE_NAME` from :data:`PACKAGE` with these executables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from irstd_ros.core.constants import (
    CAMERA_INFO_INPUT,  # the node's (relative) calibration input; remapped to camera_info_topic
    IMAGE_INPUT,  # the node's (relative) input; remapped to image_topic
)

PACKAGE = "irstd_ros"
NODE_NAME = "irstd_node"
EXECUTABLE = "irstd_node"
LIFECYCLE_EXECUTABLE = "irstd_lifecycle_node"

# name -> (default, description). The default of params_file is the installed
# share/irstd_ros/config/irstd.yaml (resolved by the launch file at launch time): None here.
LAUNCH_ARGUMENTS: dict[str, tuple[str | None, str]] = {
    "image_topic": (IMAGE_INPUT, "Input image topic (sensor_msgs/Image; with the parameter input.transport: compressed, "
                  "its <topic>/compressed is read), remapped from 'image'"),
    "image_transport": ("", "The node's input.transport, over the params file's: '' keeps the "
                        "file's, raw (sensor_msgs/Image on image_topic) or compressed "
                        "(CompressedImage on <image_topic>/compressed)"),
    "camera_info_topic": (CAMERA_INFO_INPUT, "The camera's sensor_msgs/CameraInfo topic (for "
                          "bearings), remapped from 'camera_info'; set it with image_topic, e.g. "
                          "/camera/camera_info beside /camera/image_raw"),
    "namespace": ("", "Namespace of the node and of its topics"),
    "params_file": (None, "ROS 2 parameters YAML of the node"),
    "use_lifecycle": ("false", "Start the managed (lifecycle) node irstd_lifecycle_node"),
    "autostart": ("false", "Managed node only: configure and activate it at start"),
    "dds_profile": ("", "Fast DDS XML profile for the processes launched after it: '' keeps the "
                    "environment, 'large_images' the shipped one for full-resolution frames, or a path"),
    "use_sim_time": ("", "The node's use_sim_time, over the params file's: '' keeps the file's "
                     "(false unless it sets it); true: the node's clock is /clock (a bag played "
                     "with --clock, a simulator)"),
}
AUTOSTART_FLAG = "--autostart"  # irstd_lifecycle_node's argument: --autostart [true|false]
TRANSPORT_PARAM = "input.transport"  # the node parameter the image_transport argument sets
SIM_TIME_PARAM = "use_sim_time"  # rclpy's parameter, set by the launch argument of its name
# image_transport's values: '' (the params file's input.transport), then the parameter's
IMAGE_TRANSPORTS = ("", "raw", "compressed")


PARAMS_FILE = Path("config") / "irstd.yaml"  # relative to the share directory / source tree


def repo_params_file() -> Path:
    """``config/irstd.yaml`` of the source tree (the launch file's default, uninstalled)."""
    return Path(__file__).resolve().parents[2] / PARAMS_FILE


def installed_params_file() -> Path | None:
    """``share/irstd_ros/config/irstd.yaml`` of a ROS install (colcon), when there is one."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        path = Path(get_package_share_directory(PACKAGE)) / PARAMS_FILE
    except (PackageNotFoundError, OSError, ValueError, LookupError):  # OSError: no AMENT_PREFIX_PATH
        return None
    return path if path.is_file() else None


def default_params_file() -> Path:
    """The parameters file the tools start the node with: the installed one (found through
    the package's share directory, as the launch file does), else the source tree's."""
    return installed_params_file() or repo_params_file()


def normalize_namespace(namespace: str) -> str:
    """As launch_ros does: made absolute with a leading '/' ('' becomes '/')."""
    namespace = namespace.strip()
    return namespace if namespace.startswith("/") else "/" + namespace


def parse_bool(value: bool | str, name: str = "value") -> bool:
    """A launch argument's boolean: true/false/1/0 (any case) or a bool."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return text in ("true", "1")


def executable_for(use_lifecycle: bool | str) -> str:
    """The executable the launch file starts for its ``use_lifecycle`` argument."""
    return LIFECYCLE_EXECUTABLE if parse_bool(use_lifecycle, "use_lifecycle") else EXECUTABLE


def autostart_requested(user_args: Sequence[str]) -> bool:
    """``--autostart`` (alone, or followed by true/false) among the node's own arguments."""
    args = list(user_args)
    for i, arg in enumerate(args):
        if arg.startswith(AUTOSTART_FLAG + "="):
            return parse_bool(arg.split("=", 1)[1], AUTOSTART_FLAG)
        if arg == AUTOSTART_FLAG:
            nxt = args[i + 1] if i + 1 < len(args) else ""
            return parse_bool(nxt, AUTOSTART_FLAG) if nxt and not nxt.startswith("-") else True
    return False


def parameter_overrides(image_transport: str = "", use_sim_time: bool | str = "") -> dict[str, Any]:
    """The node parameters the launch arguments set over the params file, in the order
    given: ``input.transport`` (``image_transport``; '' none) and ``use_sim_time`` (a bool:
    true/false/1/0, any case, as a parent launch file's ``str(True)``; '' none). A value
    that is neither raises ValueError."""
    if image_transport not in IMAGE_TRANSPORTS:
        raise ValueError(f"image_transport must be one of {IMAGE_TRANSPORTS}, not {image_transport!r}")
    overrides: dict[str, Any] = {}
    if image_transport:
        overrides[TRANSPORT_PARAM] = image_transport
    if not isinstance(use_sim_time, str) or use_sim_time.strip():
        overrides[SIM_TIME_PARAM] = parse_bool(use_sim_time, SIM_TIME_PARAM)
    return overrides


def node_command(
    params_file: str | Path,
    image_topic: str = IMAGE_INPUT,
    namespace: str = "",
    executable: str = EXECUTABLE,
    *,
    camera_info_topic: str = CAMERA_INFO_INPUT,
    name: str = NODE_NAME,
    extra_ros_args: Sequence[str] = (),
    autostart: bool | str | None = None,
    image_transport: str = "",
    use_sim_time: bool | str = "",
) -> list[str]:
    """The command line launch_ros runs for the launch file's node.

    ``executable`` may be a bare name (found on PATH) or a path, e.g. the venv's
    ``.venv/bin/irstd_node``. The order of the ROS arguments is launch_ros's: node
    name, namespace, parameter file, then remappings. ``extra_ros_args`` (e.g.
    ``["-p", "model.backend:=torch-cpu"]``) are appended after them. ``autostart`` (the
    managed node's): ``--autostart true|false`` before the ROS arguments, as the launch file
    passes it. ``image_transport`` and ``use_sim_time`` (the launch arguments):
    ``-p input.transport:=VALUE -p use_sim_time:=true|false`` after the parameter file
    (:func:`parameter_overrides`), so they win over the file's; '' leaves the file's. (One difference:
    launch drops a parameter file that does not exist, with a warning; here it is passed
    on.)
    """
    if not image_topic or not camera_info_topic:
        raise ValueError("image_topic and camera_info_topic must not be empty")
    overrides = parameter_overrides(image_transport, use_sim_time)
    cmd = [str(executable)]
    if autostart is not None:
        cmd += [AUTOSTART_FLAG, "true" if parse_bool(autostart, "autostart") else "false"]
    cmd += ["--ros-args"]
    if name:
        cmd += ["-r", f"__node:={name}"]
    cmd += ["-r", f"__ns:={normalize_namespace(namespace)}"]
    cmd += ["--params-file", str(params_file)]
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else value  # as YAML writes it
        cmd += ["-p", f"{key}:={text}"]
    cmd += ["-r", f"{IMAGE_INPUT}:={image_topic}"]
    cmd += ["-r", f"{CAMERA_INFO_INPUT}:={camera_info_topic}"]
    cmd += list(extra_ros_args)
    return cmd
