"""Shared pytest setup: markers, ROS isolation, and the ``rclpy_context`` fixture.

Markers (also listed in pyproject.toml):
    ros       needs rclpy and the built interfaces (vision_msgs, irstd_ros.msg);
              skipped, with the reason, where they cannot be imported
    slow      excluded by `make test`, run by `make test-all`
    gpu       needs CUDA; skipped without it
    tensorrt  needs torch_tensorrt (and CUDA); skipped without it

Every test session gets its own ROS_DOMAIN_ID (from the pid) and localhost-only
discovery, set in the environment before any test runs, so node subprocesses inherit
them and parallel runs on one machine (CI next to a developer) do not talk to each other.
Set IRSTD_TEST_ROS_DOMAIN_ID to choose the domain yourself.
"""

from __future__ import annotations

import functools
import os

import pytest

# fixtures shared by test folders without a common conftest (test/_support)
pytest_plugins = ("_support.openvino",)

MARKERS = {
    "ros": "needs rclpy and the built interfaces (vision_msgs, irstd_ros.msg)",
    "slow": "takes more than a few seconds; excluded unless `make test-all`",
    "gpu": "needs a CUDA GPU",
    "tensorrt": "needs TensorRT",
}


def session_domain_id() -> int:
    # 1..100: ROS_DOMAIN_ID above 101 collides with Linux ephemeral ports.
    return 1 + os.getpid() % 100


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    os.environ["ROS_DOMAIN_ID"] = os.environ.get(
        "IRSTD_TEST_ROS_DOMAIN_ID", str(session_domain_id())
    )
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and later
    if os.environ.get("ROS_DISTRO") == "humble":
        os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")


@functools.cache
def ros_unavailable_reason() -> str | None:
    """Why the `ros` tests cannot run here, or None when they can."""
    try:
        import rclpy  # noqa: F401
        from rclpy.type_support import check_for_type_support
    except Exception as exc:  # ImportError, or a missing shared library
        return f"rclpy not importable ({exc!r}); run `make setup`"
    try:
        from vision_msgs.msg import Detection2DArray

        check_for_type_support(Detection2DArray)
    except Exception as exc:
        return f"vision_msgs not built/importable ({exc!r}); run `make setup`"
    try:
        from irstd_ros.msg import TargetArray

        check_for_type_support(TargetArray)
    except Exception as exc:
        return f"irstd_ros.msg not built/importable ({exc!r}); run `make setup`"
    return None


@functools.cache
def cuda_unavailable_reason() -> str | None:
    try:
        import torch
    except Exception as exc:
        return f"torch not importable ({exc!r})"
    return None if torch.cuda.is_available() else "no CUDA device"


@functools.cache
def tensorrt_unavailable_reason() -> str | None:
    """The ``tensorrt`` tests run the backend, which needs torch_tensorrt (its import can
    raise anything without a driver), not only the TensorRT bindings."""
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:
        return f"torch_tensorrt not importable ({exc!r})"
    return cuda_unavailable_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    checks = {
        "ros": ros_unavailable_reason,
        "gpu": cuda_unavailable_reason,
        "tensorrt": tensorrt_unavailable_reason,
    }
    for item in items:
        for marker, check in checks.items():
            if item.get_closest_marker(marker) is not None:
                reason = check()
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=f"[{marker}] {reason}"))


@pytest.fixture
def rclpy_context():
    """rclpy initialised (default context) for one test, shut down afterwards.

    Yields the default context. Nodes created by the test must be destroyed by it
    (or by its fixtures) before this fixture's teardown.
    """
    reason = ros_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    import rclpy

    if rclpy.ok():  # a previous test leaked an initialised context
        rclpy.shutdown()
    rclpy.init()
    try:
        yield rclpy.get_default_context()
    finally:
        if rclpy.ok():
            rclpy.shutdown()


@pytest.fixture(scope="session", autouse=True)
def isolated_backend_cache(tmp_path_factory: pytest.TempPathFactory):
    """$IRSTD_CACHE_DIR points at one temporary directory for the whole session (node and
    CLI subprocesses inherit it): no test writes the user's ~/.cache/irstd_ros, and
    exports shared across the session are still made once. Tests of the default path
    unset it themselves (monkeypatch.delenv)."""
    from irstd_ros.inference.backends.graph_export import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    path = tmp_path_factory.mktemp("irstd_cache")
    os.environ[CACHE_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


ROS_HOME_ENV = ("ROS_HOME", "ROS_LOG_DIR")


@pytest.fixture(scope="session", autouse=True)
def isolated_ros_home(tmp_path_factory: pytest.TempPathFactory):
    """$ROS_HOME and $ROS_LOG_DIR point into one temporary directory for the whole session
    (rclpy in the tests and every node or CLI subprocess inherit them): no test writes the
    user's ~/.ros/log, and a user's ROS_HOME or ROS_LOG_DIR does not reach the tests."""
    before = {k: os.environ.get(k) for k in ROS_HOME_ENV}
    home = tmp_path_factory.mktemp("ros_home")
    os.environ["ROS_HOME"] = str(home)
    os.environ["ROS_LOG_DIR"] = str(home / "log")
    yield home
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
