"""A node executable (``irstd_node``, ``irstd_lifecycle_node``, ``irstd record``...) in a
child process: its output goes to a log file, it is waited for with a timeout, and it is
stopped with a signal (killed when it does not exit in time).

Used by the demo, the load test and the process tests alike::

    with NodeProcess(cmd, tmp_path / "node.log") as node:
        node.wait_for(lambda: pub.get_subscription_count() > 0, 60.0, "subscription",
                      spin=lambda: executor.spin_once(timeout_sec=0.05))
        ...
        code = node.stop(signal.SIGTERM)
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from irstd_ros.errors import IrstdError

log = logging.getLogger(__name__)

EXIT_TIMEOUT_S = 15.0  # after the stop signal, before the process is killed
POLL_S = 0.05
TAIL_LINES = 5


class NodeProcessError(IrstdError):
    """The process exited while it was waited for, or a wait timed out."""


def node_executable(name: str = "irstd_node", module: str = "irstd_ros.ros.node") -> list[str]:
    """The venv's ``name`` script, else the one on PATH, else ``python -m module``."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return [str(local)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


class NodeProcess:
    """``cmd`` in a child process (unbuffered Python output), stdout and stderr to ``log_path``."""

    def __init__(
        self, cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self._log = self.log_path.open("w+")
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.exit_code: int | None = None
        self.killed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last non-empty lines of the log, joined on one line."""
        kept = [ln for ln in self.log_text().splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise NodeProcessError(f"the node exited with code {code}: {self.tail()}")

    def wait_for(
        self,
        cond: Callable[[], object],
        timeout: float,
        what: str,
        spin: Callable[[], object] | None = None,
    ) -> None:
        """Until ``cond()``; between checks ``spin()`` (e.g. an executor's spin_once) or a
        short sleep. Raises :class:`NodeProcessError` when the process exits first or
        ``timeout`` seconds pass (the message ends with the log's tail)."""
        end = time.monotonic() + timeout
        while not cond():
            self.check_alive()
            if time.monotonic() > end:
                raise NodeProcessError(f"timed out after {timeout:.0f} s: {what}: {self.tail()}")
            if spin is not None:
                spin()
            else:
                time.sleep(POLL_S)

    def stop(self, sig: int = signal.SIGINT, timeout: float = EXIT_TIMEOUT_S) -> int:
        """``sig``, then wait; killed (``killed`` set) if it does not exit in ``timeout`` s.
        Returns the exit code; the log is closed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not exit %.0f s after signal %d; killing it",
                            Path(self.cmd[0]).name, timeout, sig)
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        self.exit_code = self.proc.returncode
        return self.exit_code

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
