"""Running ``irstd`` in process and reading its output and one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from irstd_ros.cli.main import main


def run_cli_output(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``irstd ARGS``, usage errors (SystemExit) included."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """(exit code, stderr) of ``irstd ARGS``, usage errors (SystemExit) included."""
    code, _, err = run_cli_output(capsys, *args)
    return code, err


def one_error_line(err: str) -> str:
    """The single error line of stderr."""
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def record_calls(monkeypatch: pytest.MonkeyPatch, module: object, name: str, result: Callable[[Any], Any]) -> list[Any]:
    """Replace ``module.name`` (e.g. a CLI module's ``train``) by a stub that records the
    config it is called with and returns ``result(config)``: nothing is read or trained.
    Returns the list of recorded configs."""
    calls: list[Any] = []

    def stub(cfg: Any, *_: Any, **__: Any) -> Any:  # and what else the CLI hands it (a stop event)
        calls.append(cfg)
        return result(cfg)

    monkeypatch.setattr(module, name, stub)
    return calls
