"""The full package built by colcon, as on a ROS install, and its installed node run.

A workspace ``src/irstd_ros`` is made of this repository's package files (outside the
repository: the venv's include directories may not lie in the source tree of an exported
target), built with the venv's colcon against the venv's ROS prefix
(``--merge-install``, the flags of scripts/setup_env.sh without ``IRSTD_ROS_INTERFACES_ONLY``)
into a temporary install space. Then, from that install space only:

* ``lib/irstd_ros/irstd`` (the CLI) answers ``--help``;
* ``import irstd_ros`` loads the installed package, messages included;
* ``lib/irstd_ros/irstd_node`` starts with ``--ros-args``, publishes /diagnostics, and exits
  cleanly (code 0, no traceback) on SIGINT;
* ``colcon test`` (ctest in the package's build folder) would run the pytest suite of
  ``make test`` (listed with ``ctest -N``, not run).

About a minute on two cores: ``slow`` (``make test-all``; CI runs it with ``make
test-install``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PACKAGE_FILES = ("CMakeLists.txt", "package.xml", "setup.py", "msg", "irstd_ros", "scripts",
                 "launch", "config")
BUILD_TIMEOUT_S = 900
START_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 30.0
NAMESPACE = "/install_check"


def _clean_env() -> dict[str, str]:
    """The venv's environment, without anything of a sourced ROS or of this process's
    re-executed bootstrap (which would stop the children's own)."""
    drop = {"AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "PYTHONPATH",
            "ROS_DISTRO", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "PYTHONHOME", "LD_LIBRARY_PATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    colcon = VENV / "bin" / "colcon"
    if not colcon.is_file():
        pytest.skip("colcon is not installed in this venv")
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / "irstd_ros"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    env = {**_clean_env(), "AMENT_PREFIX_PATH": str(VENV), "CMAKE_PREFIX_PATH": str(VENV)}
    cmd = [
        str(colcon), "--log-base", str(ws / "log"), "build", "--paths", str(src),
        "--build-base", str(ws / "build"), "--install-base", str(ws / "install"),
        "--merge-install", "--event-handlers", "console_cohesion+", "status-",
        "--cmake-args", "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_TESTING=ON",
        f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}", f"-DCMAKE_PREFIX_PATH={VENV}",
        f"-DCMAKE_PROJECT_INCLUDE={ROOT / 'underlay' / 'cmake' / 'fix_wheel_paths.cmake'}",
        "--no-warn-unused-cli",
    ]
    out = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_S)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    return ws / "install"


def _install_env(install: Path) -> dict[str, str]:
    """What sourcing the install space's setup.bash on top of the venv's prefix sets."""
    site = install / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    env = _clean_env()
    env["AMENT_PREFIX_PATH"] = f"{install}{os.pathsep}{VENV}"
    env["PYTHONPATH"] = str(site)
    return env


def test_installed_package_and_cli(install):
    env = _install_env(install)
    code = "import irstd_ros, irstd_ros.msg; print(irstd_ros.__file__); print(irstd_ros.msg.Target)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=install, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(str(install)), out.stdout
    exe = install / "lib" / "irstd_ros" / "irstd"
    out = subprocess.run([str(exe), "--help"], env=env, cwd=install, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bench" in out.stdout and "demo" in out.stdout
    assert (install / "share" / "irstd_ros" / "launch" / "irstd.launch.py").is_file()
    assert (install / "share" / "irstd_ros" / "config" / "irstd.yaml").is_file()
    assert (install / "share" / "irstd_ros" / "config" / "dds" / "fastdds_large_images.xml").is_file()


def test_colcon_test_runs_the_pytest_suite(install):
    ctest = shutil.which("ctest")
    if ctest is None:
        pytest.skip("ctest is not installed")
    build = install.parent / "build" / "irstd_ros"
    out = subprocess.run([ctest, "-N", "-V"], cwd=build, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Total Tests: 1" in out.stdout and "Test #1: pytest" in out.stdout, out.stdout
    assert re.search(r'"-m" "pytest" "[^"]*\btest"', out.stdout), out.stdout  # the suite
    assert "not gpu and not tensorrt and not slow" in out.stdout, out.stdout
    assert f"Working Directory: {install.parent / 'src' / 'irstd_ros'}" in out.stdout, out.stdout


def test_installed_node_publishes_diagnostics_and_exits_cleanly_on_sigint(install, tmp_path):
    exe = install / "lib" / "irstd_ros" / "irstd_node"
    params = install / "share" / "irstd_ros" / "config" / "irstd.yaml"
    log = (tmp_path / "node.log").open("w+")
    cmd = [str(exe), "--ros-args", "-r", f"__ns:={NAMESPACE}", "--params-file", str(params),
           "-p", "diagnostics.period:=0.5", "-p", "model.backend:=torch-cpu"]
    proc = subprocess.Popen(cmd, env={**_install_env(install), "PYTHONUNBUFFERED": "1"},
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    echo = None
    try:
        # a second process of the install space listens to /diagnostics
        listen = (
            "import rclpy, sys\n"
            "from diagnostic_msgs.msg import DiagnosticArray\n"
            "rclpy.init(); n = rclpy.create_node('install_check_listener'); got = []\n"
            "n.create_subscription(DiagnosticArray, '/diagnostics', got.append, 10)\n"
            f"ns = '{NAMESPACE}/'\n"
            "import time; end = time.monotonic() + float(sys.argv[1])\n"
            "while time.monotonic() < end and not any(s.name.startswith(ns) for m in got for s in m.status):\n"
            "    rclpy.spin_once(n, timeout_sec=0.1)\n"
            "ok = any(s.name.startswith(ns) for m in got for s in m.status); print('OK' if ok else 'NONE')\n"
        )
        echo = subprocess.run([sys.executable, "-c", listen, str(START_TIMEOUT_S)],
                              env=_install_env(install), capture_output=True, text=True,
                              timeout=START_TIMEOUT_S + 60)
        log.flush()
        text = (tmp_path / "node.log").read_text()
        assert proc.poll() is None, text
        assert echo.stdout.strip().endswith("OK"), echo.stdout + echo.stderr + text
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    text = (tmp_path / "node.log").read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert "ready: backend torch-cpu" in text, text
