"""The package's Python log records in the node's ROS log (irstd_ros.ros.log_bridge): the
handler with a logger stand-in, then both nodes with a real backend choice, whose line
(and the ``ready`` line's account of it) reached only Python's logging before."""

from __future__ import annotations

import logging

import pytest
from _support.node import LogCapture

from irstd_ros.ros.log_bridge import PACKAGE_LOGGER, route_package_logs

CHOSEN_LOGGER = "irstd_ros.inference.backends.select"  # a logger of the layers below the node


class Severity(LogCapture):
    """A :class:`LogCapture` that answers rclpy's effective level (``level``, Python's)."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__()
        self.level = level

    def get_effective_level(self) -> int:
        return self.level


@pytest.fixture
def package_logger():
    """The package logger, checked to be as it was (level, propagation, handlers) after."""
    package = logging.getLogger(PACKAGE_LOGGER)
    before = (package.level, package.propagate, list(package.handlers))
    yield package
    assert (package.level, package.propagate, list(package.handlers)) == before


def test_records_reach_the_ros_logger_at_their_severity_and_only_while_routed(package_logger):
    ros = Severity()
    route = route_package_logs(ros)
    log = logging.getLogger(CHOSEN_LOGGER)
    try:
        log.debug("not at INFO")
        log.info(
            "inference backend: openvino on cpu (cpu: openvino-int8 skipped: no accuracy record)"
        )
        log.warning("unreadable accuracy record %s", "x.json")
        log.error("an error")
        log.critical("fatal")
    finally:
        route.close()
    log.warning("after the node")
    assert ros.records == [
        (
            "info",
            "inference backend: openvino on cpu (cpu: openvino-int8 skipped: no accuracy record)",
        ),
        ("warning", "unreadable accuracy record x.json"),
        ("error", "an error"),
        ("fatal", "fatal"),
    ]
    route.close()  # idempotent


def test_the_package_level_follows_the_node_s(package_logger):
    ros = Severity(logging.DEBUG)  # --log-level debug
    route = route_package_logs(ros)
    try:
        logging.getLogger(CHOSEN_LOGGER).debug("a detail")
    finally:
        route.close()
    assert ros.records == [("debug", "a detail")]


def test_no_line_twice_when_python_logging_has_handlers_of_its_own(package_logger):
    """An embedding program's ``logging.basicConfig`` (a root handler) printed each record
    a second time, in another format."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    ros = Severity()
    try:
        route = route_package_logs(ros)
        logging.getLogger(CHOSEN_LOGGER).warning("once")
        route.close()
        logging.getLogger(CHOSEN_LOGGER).warning("Python's again")
    finally:
        root.removeHandler(keep)
    assert ros.records == [("warning", "once")]
    assert seen == ["Python's again"]


def test_the_node_routed_last_gets_the_records_until_it_goes(package_logger):
    first, second = Severity(), Severity()
    a, b = route_package_logs(first), route_package_logs(second)
    log = logging.getLogger(CHOSEN_LOGGER)
    log.warning("to the second")
    b.close()
    log.warning("to the first")
    a.close()
    assert first.records == [("warning", "to the first")]
    assert second.records == [("warning", "to the second")]


# --- the nodes ------------------------------------------------------------------------------
@pytest.fixture
def cpu_choice(monkeypatch):
    """``model.backend: cpu`` narrowed to openvino-int8 (refused by its gate) then torch-cpu:
    a real choice, no export. Returns the gate's reason."""
    from irstd_ros.inference.backends import select

    reason = "no accuracy record (irstd export --backend openvino-int8 measures it)"
    monkeypatch.setitem(select.CHOICES, "cpu", ("openvino-int8", "torch-cpu"))
    monkeypatch.setitem(select.ACCURACY_GATES, "openvino-int8", lambda *a: reason)
    monkeypatch.setattr(select, "unavailable_reason", lambda name: None)
    return reason


def _parameters():
    from rclpy.parameter import Parameter

    return [Parameter("model.path", value="tiny"), Parameter("model.backend", value="cpu")]


@pytest.mark.ros
def test_the_node_logs_the_choice_and_its_ready_line_says_why(
    rclpy_context, monkeypatch, cpu_choice, package_logger
):
    from irstd_ros.ros.node import IrstdNode

    log = Severity()
    monkeypatch.setattr(IrstdNode, "get_logger", lambda self: log)
    node = IrstdNode(parameter_overrides=_parameters())
    try:
        why = f"(cpu: openvino-int8 skipped: {cpu_choice})"
        assert log.count("info", f"inference backend: torch-cpu on cpu {why}") == 1, log.records
        ready = [t for lv, t in log.records if lv == "info" and t.startswith("ready:")]
        assert len(ready) == 1 and ready[0].startswith(
            f"ready: backend torch-cpu on cpu {why}, model "
        ), ready
        logging.getLogger(CHOSEN_LOGGER).warning("a cache warning")
        assert log.count("warning", "a cache warning") == 1
    finally:
        node.close()
    logging.getLogger(CHOSEN_LOGGER).warning("after close")
    assert log.count("warning", "after close") == 0


@pytest.mark.ros
def test_a_node_that_fails_to_start_routes_nothing_after(
    rclpy_context, monkeypatch, package_logger, tmp_path
):
    from rclpy.parameter import Parameter

    from irstd_ros.errors import IrstdError
    from irstd_ros.ros.node import IrstdNode

    missing = str(tmp_path / "none.safetensors")
    with pytest.raises(IrstdError, match="not found"):
        IrstdNode(parameter_overrides=[Parameter("model.path", value=missing)])


@pytest.mark.ros
def test_the_lifecycle_node_logs_the_choice_at_configure(
    rclpy_context, monkeypatch, cpu_choice, package_logger
):
    from rclpy.lifecycle import TransitionCallbackReturn

    from irstd_ros.ros.lifecycle_node import IrstdLifecycleNode

    log = Severity()
    monkeypatch.setattr(IrstdLifecycleNode, "get_logger", lambda self: log)
    node = IrstdLifecycleNode(parameter_overrides=_parameters())
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        why = f"(cpu: openvino-int8 skipped: {cpu_choice})"
        assert log.count("info", f"inference backend: torch-cpu on cpu {why}") == 1, log.records
        assert log.count("info", f"ready: backend torch-cpu on cpu {why}") == 1, log.records
    finally:
        node.close()
