"""The package's Python log records in a node's ROS log, for as long as the node lives.

The layers below the node (the backend choice, the compiled-model cache, the exports) log
through Python's :mod:`logging`, on the ``irstd_ros.*`` loggers, which rclpy leaves alone:
in a node process nothing handled them, so the INFO line saying which backend ``auto``
chose and why was dropped (Python's default level is WARNING), and warnings came out as
bare last-resort lines on stderr, without the node's name, ROS's format or its log file.

:func:`route_package_logs` (called by both nodes when they are made; :meth:`LogRoute.close`
when they are destroyed, or when their context shuts down) adds one :class:`RosLogHandler`
to the ``irstd_ros`` logger, which passes each record to the node's rclpy logger at the
matching severity. While routed, the package logger's level follows the node's (``--log-level``)
and its records do not propagate to Python's root logger, whose handlers (an embedding
program's ``logging.basicConfig``) would print each line a second time. A process with more
than one node routed (tests, a composed process) sends the records to the node routed last
that is still alive; the first settings come back when the last route closes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

PACKAGE_LOGGER = "irstd_ros"
# rclpy's LoggingSeverity values, which are Python's levels (UNSET: 0, rcutils' default INFO)
ROS_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def python_level(ros_logger: Any) -> int:
    """The Python level of ``ros_logger``'s effective severity (INFO where it is unset)."""
    try:
        level = int(ros_logger.get_effective_level())
    except Exception:  # noqa: BLE001 - a logger stand-in, or rcutils without an answer
        return logging.INFO
    return level if level in ROS_LEVELS else logging.INFO


class RosLogHandler(logging.Handler):
    """Passes each record to the last of :attr:`targets` (rclpy loggers), formatted as the
    message alone (ROS adds the severity, time and node name), at its severity."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            target = self.targets[-1]
        except IndexError:  # the last route closed while this record was on its way
            return
        try:
            message = self.format(record)
            # one call site per severity: rclpy refuses one call site logging at two severities
            if record.levelno >= logging.CRITICAL:
                target.fatal(message)
            elif record.levelno >= logging.ERROR:
                target.error(message)
            elif record.levelno >= logging.WARNING:
                target.warning(message)
            elif record.levelno >= logging.INFO:
                target.info(message)
            else:
                target.debug(message)
        except Exception:  # noqa: BLE001 - logging must not raise into the code that logged
            self.handleError(record)


class LogRoute:
    """One node's route of the package's records (:func:`route_package_logs`)."""

    def __init__(self, ros_logger: Any) -> None:
        self.ros_logger = ros_logger
        self.closed = False

    def close(self) -> None:
        """Stop sending records to this node (idempotent); the last route to close takes the
        handler away and gives the package logger its level and propagation back."""
        with _lock:
            if self.closed:
                return
            self.closed = True
            global _installed
            if _installed is None:
                return
            handler, level, propagate = _installed
            if self.ros_logger in handler.targets:
                handler.targets.remove(self.ros_logger)
            package = logging.getLogger(PACKAGE_LOGGER)
            if handler.targets:
                package.setLevel(min(python_level(t) for t in handler.targets))
                return
            package.removeHandler(handler)
            package.setLevel(level)
            package.propagate = propagate
            _installed = None


_lock = threading.Lock()
# (the handler, the package logger's level and propagation before it), while any route is open
_installed: tuple[RosLogHandler, int, bool] | None = None


def route_package_logs(ros_logger: Any) -> LogRoute:
    """Send the records of the ``irstd_ros.*`` loggers to ``ros_logger`` (a node's
    ``get_logger()``) until the returned route is closed (see the module doc)."""
    global _installed
    with _lock:
        package = logging.getLogger(PACKAGE_LOGGER)
        if _installed is None:
            _installed = (RosLogHandler(), package.level, package.propagate)
            package.addHandler(_installed[0])
            package.propagate = False
        handler = _installed[0]
        handler.targets.append(ros_logger)
        package.setLevel(min(python_level(t) for t in handler.targets))
    return LogRoute(ros_logger)
