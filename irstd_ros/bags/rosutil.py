"""Small rclpy helpers shared by replay, record and the demo (rclpy imported lazily)."""

from __future__ import annotations

import contextlib
import importlib
import struct
import threading
from collections.abc import Iterator
from typing import Any

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from irstd_ros.core.stamps import NS_PER_S
from irstd_ros.errors import BagError

QOS_CHOICES = ("reliable", "best_effort")
CDR_HEADER_BYTES = 4  # encapsulation id + options, before the message body
# encapsulation ids (second byte of the header) whose body starts with the struct's first
# field: XCDR1 plain and XCDR2 plain (final types, as ROS messages are); big- then little-endian
CDR_PLAIN_IDS = {0x00: ">", 0x01: "<", 0x06: ">", 0x07: "<"}
SPIN_PERIOD_S = 0.05


def import_message_type(msgtype: str) -> type:
    """The Python class of ``pkg/msg/Name`` (the package must be built and importable)."""
    try:
        pkg, kind, name = msgtype.split("/")
    except ValueError:
        raise BagError(f"not a ROS 2 message type name: {msgtype!r}") from None
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(
            f"message type {msgtype} is not importable here ({exc}); build and source its package"
        ) from exc


def cdr_header_stamp(raw: bytes | memoryview) -> int | None:
    """Header stamp (ns) of a CDR message whose first field is a std_msgs/Header.

    Every message this package publishes or records starts with its header, so the
    stamp is read without deserialising (e.g. a 640x512 image). None if too short, or in
    an encoding whose body does not start with the header (parameter lists, delimited
    XCDR2: never a ROS message, and read wrongly at a fixed offset).
    """
    if len(raw) < CDR_HEADER_BYTES + 8 or raw[0] != 0 or raw[1] not in CDR_PLAIN_IDS:
        return None
    endian = CDR_PLAIN_IDS[raw[1]]
    sec, nanosec = struct.unpack_from(endian + "iI", raw, CDR_HEADER_BYTES)
    return sec * NS_PER_S + nanosec


def make_qos(reliability: str, depth: int) -> Any:
    """An rclpy keep-last, volatile QoSProfile."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in QOS_CHOICES:
        raise BagError(f"unknown QoS reliability {reliability!r}; valid: {', '.join(QOS_CHOICES)}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=(
            ReliabilityPolicy.RELIABLE
            if reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        ),
        durability=DurabilityPolicy.VOLATILE,
    )


def _qos_time(duration: Any) -> QosTime:
    ns = int(duration.nanoseconds)
    return QosTime(ns // NS_PER_S, ns % NS_PER_S)


def to_bag_qos(profile: Any) -> Qos:
    """An rclpy QoSProfile as a rosbags ``Qos`` (for a bag's offered_qos_profiles)."""
    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=_qos_time(profile.deadline),
        lifespan=_qos_time(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def ros_ok() -> bool:
    """False once rclpy's context is shut down (e.g. by its own SIGINT handler)."""
    import rclpy

    return rclpy.ok()


@contextlib.contextmanager
def ros_session(node_name: str) -> Iterator[Any]:
    """rclpy initialised (if it is not already) and a node, spun in a background thread.

    Yields the node; on exit the spinning stops, the node is destroyed and rclpy shut
    down if this function initialised it. A context initialised here installs no rclpy
    signal handlers: Ctrl-C raises KeyboardInterrupt in the main thread, so the caller
    can close what it writes (rclpy's handler would only shut the context down).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    owns_context = not rclpy.ok()
    if owns_context:
        # args=[]: not sys.argv, whose `--remap FROM:=TO` rcl would apply as a deprecated
        # global remap rule (with a warning); the irstd commands parse their own arguments
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(node_name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        with contextlib.suppress(ExternalShutdownException):
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)

    thread = threading.Thread(target=spin, name=f"{node_name}_spin", daemon=True)
    thread.start()
    try:
        yield node
    finally:
        stop.set()
        thread.join()
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        if owns_context and rclpy.ok():
            rclpy.shutdown()
