"""Running ``irstd`` in process and reading its output and one-line errors."""

from __future__ import annotations

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
    """The single error line of stderr (argparse puts its usage lines before it)."""
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]
