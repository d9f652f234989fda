"""A probe of ``rclpy.init``: does the process command line reach rcl? (``ros`` tests only)

rcl reads a ``FROM:=TO`` anywhere in the arguments it is given as a (deprecated) global
remap rule; the irstd commands parse their own command line, so a tool that hands rclpy
``sys.argv`` gets its names remapped by whatever the user typed.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

REMAP_FROM, REMAP_TO = "/argv_probe_from", "/argv_probe_to"
# a command line holding a FROM:=TO (here an output path: any argument will do)
ARGV = ["irstd", "probe", "--log", f"{REMAP_FROM}:={REMAP_TO}"]


class InitProbed(Exception):
    """Raised by the probed ``rclpy.init``: the caller stops there."""


def probe_rclpy_init(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Put :data:`ARGV` in ``sys.argv`` and wrap ``rclpy.init``: once it initialised its
    context, a publisher on :data:`REMAP_FROM` records the name it got in the returned
    list, the context is shut down and :class:`InitProbed` raised."""
    import rclpy
    from std_msgs.msg import String

    real_init = rclpy.init
    names: list[str] = []

    def init(*args: Any, **kwargs: Any) -> None:
        context = kwargs.get("context") or rclpy.get_default_context()
        real_init(*args, **kwargs)
        try:
            node = rclpy.create_node("argv_probe", context=context)
            names.append(node.create_publisher(String, REMAP_FROM, 1).topic_name)
            node.destroy_node()
        finally:
            context.try_shutdown()
        raise InitProbed

    monkeypatch.setattr(sys, "argv", ARGV)
    monkeypatch.setattr(rclpy, "init", init)
    return names
