"""Transport settings for full-resolution frames (pure Python) and the node's one-time hint
when frames outgrow Fast DDS's default shared-memory segment (real rclpy, in process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from irstd_ros.ros import transport

FRAME_640X512_MONO16 = 640 * 512 * 2  # 655 kB: over the 512 KiB default segment
FAST_DDS = "rmw_fastrtps_cpp"


@pytest.fixture
def clean_env(monkeypatch):
    for key in transport.DDS_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    return monkeypatch


def test_hint_names_the_variable_and_the_shipped_profile(clean_env):
    hint = transport.large_frame_hint(FRAME_640X512_MONO16, FAST_DDS)
    assert hint is not None and "655 kB" in hint and "512 KiB" in hint
    assert f"FASTDDS_DEFAULT_PROFILES_FILE={transport.profile_path()}" in hint
    assert transport.profile_path().is_file()  # the source tree's config/dds/
    assert "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA" in hint
    clean_env.setenv("ROS_DISTRO", "humble")
    humble = transport.large_frame_hint(FRAME_640X512_MONO16, FAST_DDS)
    assert "FASTRTPS_DEFAULT_PROFILES_FILE=" in humble
    assert "BUILTIN_TRANSPORTS" not in humble  # Fast DDS 2.6 has no builtin transports


@pytest.mark.parametrize(("frame_bytes", "rmw", "env"), [
    (transport.FAST_DDS_DEFAULT_SEGMENT_BYTES, FAST_DDS, {}),  # fits the segment
    (FRAME_640X512_MONO16, "rmw_cyclonedds_cpp", {}),  # not Fast DDS
    (FRAME_640X512_MONO16, FAST_DDS, {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}),
    (FRAME_640X512_MONO16, FAST_DDS, {"FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml"}),
    (FRAME_640X512_MONO16, FAST_DDS, {"FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml"}),
])
def test_no_hint_when_the_frame_fits_or_the_transport_is_configured(frame_bytes, rmw, env):
    assert transport.large_frame_hint(frame_bytes, rmw, env) is None


def test_dds_environment_lists_only_what_is_set(clean_env):
    assert transport.dds_environment() == {}
    clean_env.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    assert transport.dds_environment() == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}


@pytest.mark.ros
@pytest.mark.parametrize("configured", [False, True])
def test_node_hints_once_on_large_frames_with_fast_dds_defaults(rclpy_context, clean_env, configured):
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    from _support.node import image_msg, logged_harness, make_detector

    from irstd_ros.ros.node import IrstdNode

    if not rclpy.get_rmw_implementation_identifier().startswith("rmw_fastrtps"):
        pytest.skip("the hint is for Fast DDS")
    if configured:
        clean_env.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    h, log = logged_harness(IrstdNode(detector=make_detector()))
    try:
        frame = np.full((512, 640), 1000, np.uint16)
        for stamp in (1, 2):
            h.send(image_msg(frame, "mono16", stamp=stamp), expect_answers=1)
    finally:
        h.close()
    assert log.count("warning", "shared-memory segment") == (0 if configured else 1)


@pytest.mark.parametrize(("distro", "env"), [
    ("jazzy", {"FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml"}),  # Fast DDS 2 reads FASTRTPS_...
    ("humble", {"FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml"}),
    ("humble", {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}),  # Fast DDS 2.6 has none
    ("iron", {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}),
])
def test_hint_stays_when_the_variable_set_is_one_this_fast_dds_ignores(distro, env):
    hint = transport.large_frame_hint(FRAME_640X512_MONO16, FAST_DDS, {"ROS_DISTRO": distro, **env})
    assert hint is not None and "FASTRTPS_DEFAULT_PROFILES_FILE=" in hint


@pytest.mark.parametrize(("distro", "env"), [
    ("jazzy", {"FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml"}),
    ("jazzy", {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}),  # Fast DDS 2.14 has it
    ("humble", {"FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml"}),
    ("kilted", {"FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml"}),
])
def test_no_hint_when_this_fast_dds_reads_the_variable_set(distro, env):
    assert transport.large_frame_hint(FRAME_640X512_MONO16, FAST_DDS, {"ROS_DISTRO": distro, **env}) is None


# A child process's largest Fast DDS shared-memory segment (its own, mapped by it), in bytes.
SEGMENT_PROBE = """
import os, re, rclpy
rclpy.init(args=[])
node = rclpy.create_node("irstd_segment_probe")
maps = open("/proc/self/maps").read()
names = set(re.findall(r"/dev/shm/(fastdds_[0-9a-f]+)\\n", maps))
print(max((os.path.getsize("/dev/shm/" + n) for n in names), default=0))
node.destroy_node()
rclpy.shutdown()
"""


@pytest.mark.ros
@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc (Linux)")
def test_the_launch_profile_wins_over_a_stale_legacy_variable(clean_env, tmp_path):
    """dds_profile:=large_images set FASTDDS_DEFAULT_PROFILES_FILE only: on Fast DDS 3 a
    FASTRTPS_DEFAULT_PROFILES_FILE left in the user's environment won, and the node kept
    that file's segment instead of the shipped 16 MiB one."""
    rclpy = pytest.importorskip("rclpy")
    if not rclpy.get_rmw_implementation_identifier().startswith("rmw_fastrtps"):
        pytest.skip("a Fast DDS profile")
    root = Path(__file__).resolve().parents[2]
    shipped = (root / "config" / "dds" / transport.PROFILE_NAME).read_text()
    segment = 16 * 1024 * 1024
    assert f"<segment_size>{segment}</segment_size>" in shipped
    stale = tmp_path / "old_profile.xml"
    stale.write_text(shipped.replace(str(segment), str(1024 * 1024)))
    env = {**os.environ, "FASTRTPS_DEFAULT_PROFILES_FILE": str(stale),
           **transport.launch_profile_environment(transport.SHIPPED_PROFILE, root)}
    out = subprocess.run([sys.executable, "-c", SEGMENT_PROBE], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    size = int(out.stdout.split()[-1])
    if size == 0:
        pytest.skip("no Fast DDS shared-memory segment in this process")
    assert size >= segment, out.stderr
    assert "deprecated" not in out.stderr
