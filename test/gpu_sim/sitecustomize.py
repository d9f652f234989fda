"""Imported at start-up when this folder is on PYTHONPATH: makes the ROS packages (and
OpenVINO) unimportable, as on the GPU device machine, so that the dry run of
scripts/gpu_session.sh proves the session never needs them."""

import sys

# absent from the device image (the device tool's KINDS.md package list)
BLOCKED = ("rclpy", "rosbags", "sensor_msgs", "vision_msgs", "diagnostic_msgs", "rosidl_runtime_py", "openvino",
           "motmetrics", "imageio_ffmpeg")


class _DeviceMachineBlocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (simulated GPU machine)", name=name)
        return None


sys.meta_path.insert(0, _DeviceMachineBlocker())
