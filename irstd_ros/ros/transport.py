"""The DDS transport for full-resolution frames: which environment configures it, and the
node's one-time hint when frames outgrow Fast DDS's default shared-memory segment.

A 640x512 mono16 frame (655 KB) is larger than Fast DDS's default 512 KiB segment. With
the defaults, a 30 Hz stream into the node collapsed after 7-8 minutes in three soaks of
three (to 4-5 frames/s on an idle machine); with ``config/dds/fastdds_large_images.xml`` (a 16 MiB segment) or
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` every frame arrived (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FAST_DDS_DEFAULT_SEGMENT_BYTES = 512 * 1024
PROFILE_NAME = "fastdds_large_images.xml"  # under the package's config/dds/
SHIPPED_PROFILE = "large_images"  # the launch file's dds_profile value that names it
# The environment that chooses and configures the DDS transport (recorded by load tests).
DDS_ENV = (
    "RMW_IMPLEMENTATION", "FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE", "CYCLONEDDS_URI", "ROS_DOMAIN_ID", "ROS_LOCALHOST_ONLY",
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
)
# Where Fast DDS finds an XML profile: Fast DDS 3 (Kilted on) reads the first; its
# rmw_fastrtps still reads the second, warns that it is deprecated, and, both set, takes
# the second's default profile (measured with Kilted's wheels). Fast DDS 2 (the
# distributions below) reads only the second.
PROFILE_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")
# Fast DDS before 2.13 has no FASTDDS_BUILTIN_TRANSPORTS (Humble: 2.6, Iron: 2.10).
NO_BUILTIN_TRANSPORTS_DISTROS = ("humble", "iron")
# Set by the user: the transport is configured, no hint (where this distribution's Fast DDS
# reads the variable: :func:`configured_env`).
CONFIGURED_ENV = (*PROFILE_ENV, "FASTDDS_BUILTIN_TRANSPORTS")


def dds_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The DDS-related environment variables that are set (see :data:`DDS_ENV`)."""
    return {k: environ[k] for k in DDS_ENV if k in environ}


def profile_env_var(distro: str | None = None) -> str:
    """The variable through which this ROS distribution's Fast DDS takes a profile
    (``ROS_DISTRO`` by default; unset, as with the PyPI wheels, means Fast DDS 3)."""
    distro = os.environ.get("ROS_DISTRO", "") if distro is None else distro
    return PROFILE_ENV[1] if distro.lower() in FAST_DDS_2_DISTROS else PROFILE_ENV[0]


def configured_env(distro: str) -> tuple[str, ...]:
    """The variables of :data:`CONFIGURED_ENV` this distribution's Fast DDS reads: Fast DDS 2
    reads no ``FASTDDS_DEFAULT_PROFILES_FILE``, and Humble's and Iron's no
    ``FASTDDS_BUILTIN_TRANSPORTS``; set there, they leave the default transport."""
    distro = distro.lower()
    names = PROFILE_ENV[1:] if distro in FAST_DDS_2_DISTROS else PROFILE_ENV
    return names if distro in NO_BUILTIN_TRANSPORTS_DISTROS else (*names, "FASTDDS_BUILTIN_TRANSPORTS")


def profile_path() -> Path:
    """The shipped profile: beside the parameters file the node starts with."""
    from irstd_ros.ros.launch_args import default_params_file

    return default_params_file().parent / "dds" / PROFILE_NAME


def profile_environment(path: str | Path, distro: str | None = None) -> dict[str, str]:
    """The variables that make ``path`` the Fast DDS profile of the processes started with
    them: this distribution's variable (:func:`profile_env_var`) and, on Fast DDS 3, the
    legacy one emptied, since a stale ``FASTRTPS_DEFAULT_PROFILES_FILE`` would win there."""
    name = profile_env_var(distro)
    env = {name: str(Path(path).resolve())}
    if name == PROFILE_ENV[0]:
        env[PROFILE_ENV[1]] = ""  # empty: ignored, and no deprecation warning
    return env


def launch_profile_environment(
    value: str, share_dir: str | Path, distro: str | None = None
) -> dict[str, str]:
    """The environment the launch file's ``dds_profile`` argument sets: nothing for ``''``
    (the environment as it is), the shipped profile under ``share_dir`` for
    :data:`SHIPPED_PROFILE`, else the XML file named (:func:`profile_environment`)."""
    value = value.strip()
    if not value:
        return {}
    path = Path(share_dir) / "config" / "dds" / PROFILE_NAME if value == SHIPPED_PROFILE else Path(value)
    if not path.is_file():
        raise FileNotFoundError(
            f"dds_profile: no such file {path} (valid: '' for the environment as it is, "
            f"{SHIPPED_PROFILE!r} for the shipped profile, or the path of a Fast DDS XML profile)"
        )
    return profile_environment(path, distro)


def large_frame_hint(
    frame_bytes: int, rmw: str, environ: Mapping[str, str] = os.environ
) -> str | None:
    """A one-line hint when Fast DDS runs with its default transport and a frame is larger
    than its default shared-memory segment; None otherwise. Only the variables this
    ``ROS_DISTRO``'s Fast DDS reads count as configuring it (:func:`configured_env`)."""
    if not rmw.startswith("rmw_fastrtps") or frame_bytes <= FAST_DDS_DEFAULT_SEGMENT_BYTES:
        return None
    distro = environ.get("ROS_DISTRO", "").lower()
    if any(environ.get(k) for k in configured_env(distro)):
        return None
    alternative = "" if distro in NO_BUILTIN_TRANSPORTS_DISTROS else " (or FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA)"
    return (
        f"frames of {frame_bytes / 1e3:.0f} kB exceed Fast DDS's default "
        f"{FAST_DDS_DEFAULT_SEGMENT_BYTES // 1024} KiB shared-memory segment: long streams "
        f"may lose most frames in the transport. Start the camera and this node with "
        f"{profile_env_var(distro)}={profile_path()}{alternative}"
    )
