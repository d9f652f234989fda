"""Time stamps in integer nanoseconds: one home for the unit and for a header's stamp."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_ns(header: Any) -> int:
    """A ``std_msgs/Header``'s stamp (a ROS message or a rosbags one) in nanoseconds."""
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)
