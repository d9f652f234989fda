"""The rosbags typestore of this package: ROS 2 core types plus vision_msgs and irstd_ros.

The extra types are parsed at run time from their ``.msg`` files, looked up (in this
order) in the source checkout (``msg/``, ``underlay/vision_msgs/msg``), then in the
``share/<package>/msg`` folders of ``$AMENT_PREFIX_PATH`` and of this Python's prefix
(where ``colcon``/``make setup`` install them). Reading a bag needs none of them: the
definitions stored in the bag (.msg or IDL) are registered by :func:`register_bag_types`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import (
    Stores,
    TypesysError,
    get_types_from_idl,
    get_types_from_msg,
    get_typestore,
)
from rosbags.typesys.store import Typestore

from irstd_ros.errors import BagError, one_line

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# package -> folders of the source checkout holding its .msg files
SOURCE_MSG_DIRS = {
    "irstd_ros": REPO_ROOT / "msg",
    "vision_msgs": REPO_ROOT / "underlay" / "vision_msgs" / "msg",
}
EXTRA_PACKAGES = ("vision_msgs", "irstd_ros")
STORE = getattr(Stores, "ROS2_KILTED", Stores.LATEST)  # the distro of our rclpy wheels


def msg_dir_candidates(package: str) -> list[Path]:
    """Where the ``.msg`` files of ``package`` may be, most specific first."""
    dirs = [SOURCE_MSG_DIRS[package]] if package in SOURCE_MSG_DIRS else []
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    dirs += [Path(p) / "share" / package / "msg" for p in prefixes]
    return dirs


def find_msg_dir(package: str) -> Path:
    """The first folder holding ``package``'s ``.msg`` files; :class:`BagError` if none."""
    candidates = msg_dir_candidates(package)
    for d in candidates:
        if d.is_dir() and any(d.glob("*.msg")):
            return d
    tried = ", ".join(str(d) for d in candidates)
    raise BagError(f"message definitions of {package} not found (tried {tried})")


def msg_types(package: str, folder: Path) -> dict:
    """rosbags type definitions of every ``.msg`` file in ``folder``."""
    types: dict = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    return types


@functools.cache
def typestore() -> Typestore:
    """Core ROS 2 types plus vision_msgs and irstd_ros messages (cached)."""
    store = get_typestore(STORE)
    for package in EXTRA_PACKAGES:
        store.register(msg_types(package, find_msg_dir(package)))
    return store


def register_bag_types(store: Typestore, connections: Iterable) -> None:
    """Register the types of a bag's connections that ``store`` lacks, from the bag's own
    message definitions (rosbag2 stores them with each topic, as .msg or IDL text). One
    that does not parse is skipped with a warning: the messages of its topics cannot be
    decoded (a :class:`BagError` where a command reads them), those of the others can."""
    for conn in connections:
        if conn.msgtype in store.types or not conn.msgdef.data:
            continue
        try:
            if conn.msgdef.format == MessageDefinitionFormat.IDL:
                types = get_types_from_idl(conn.msgdef.data)
            else:
                types = get_types_from_msg(conn.msgdef.data, conn.msgtype)
            store.register(types)
        except (TypesysError, ValueError, KeyError) as exc:
            log.warning(
                "cannot parse the definition of %s (topic %s) stored in the bag: %s; its "
                "messages cannot be decoded", conn.msgtype, conn.topic, one_line(exc),
            )


def reading_typestore() -> Typestore:
    """A typestore for reading any bag: ours when the .msg files are found, else the core."""
    try:
        return typestore()
    except BagError:
        return get_typestore(STORE)
