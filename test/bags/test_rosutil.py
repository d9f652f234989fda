"""Reading a header stamp from raw CDR without deserialising the message."""

from __future__ import annotations

import struct

import pytest

from irstd_ros.bags.rosutil import cdr_header_stamp

SEC, NANOSEC = 1_700_000_000, 123_456_789


def _raw(encapsulation: int, endian: str) -> bytes:
    return bytes((0x00, encapsulation, 0x00, 0x00)) + struct.pack(endian + "iI", SEC, NANOSEC) + b"\x00" * 8


@pytest.mark.parametrize(("encapsulation", "endian"), [(0x00, ">"), (0x01, "<"), (0x06, ">"), (0x07, "<")])
def test_plain_xcdr1_and_xcdr2_in_either_byte_order(encapsulation, endian):
    """XCDR2 little-endian (0x07) was read big-endian: a stamp decades off."""
    assert cdr_header_stamp(_raw(encapsulation, endian)) == SEC * 1_000_000_000 + NANOSEC


@pytest.mark.parametrize("encapsulation", [0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B])
def test_encodings_whose_body_does_not_start_with_the_header_are_not_guessed(encapsulation):
    assert cdr_header_stamp(_raw(encapsulation, "<")) is None


def test_too_short_is_none():
    assert cdr_header_stamp(b"\x00\x01\x00\x00\x01") is None


@pytest.mark.ros
def test_ros_session_leaves_the_command_line_to_argparse(monkeypatch: pytest.MonkeyPatch) -> None:
    """`irstd replay BAG --remap FROM:=TO` (docs/demo.md): rclpy must not read sys.argv,
    where rcl takes `FROM:=TO` for a deprecated global remap rule (a warning telling the
    user to use `--ros-args --remap`, and every name of the process remapped)."""
    import sys

    from std_msgs.msg import String

    from irstd_ros.bags.rosutil import ros_session

    monkeypatch.setattr(sys, "argv", ["irstd", "replay", "bag", "--remap", "/rosutil_from:=/rosutil_to"])
    with ros_session("argv_probe") as node:
        publisher = node.create_publisher(String, "/rosutil_from", 1)
        assert publisher.topic_name == "/rosutil_from"
