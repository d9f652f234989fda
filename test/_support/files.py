"""Folders in states the tests need."""

from __future__ import annotations

from pathlib import Path

import pytest

from irstd_ros.core import paths


def unwritable_folder(monkeypatch: pytest.MonkeyPatch, parent: Path) -> Path:
    """A folder under ``parent`` in which :mod:`irstd_ros.core.paths` finds it cannot
    create a file, for as long as ``monkeypatch`` lasts. A patch of its probe, not chmod:
    root writes anywhere, and CI runs as root."""
    ro = parent / "ro"
    ro.mkdir()
    real_probe = paths.can_write_in

    def can_write_in(folder: Path) -> bool:
        if Path(folder).absolute() == ro.absolute():
            return False
        return real_probe(folder)

    # raising=True: fails loudly if paths loses its probe
    monkeypatch.setattr(paths, "can_write_in", can_write_in)
    return ro


OUT_CASES = ("file", "under_a_file", "unwritable")
KEPT_TEXT = "keep me"


def bad_output_dir(case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """(an existing file that must stay as it is, an output directory that cannot hold a
    run) for ``case`` in :data:`OUT_CASES`: that file itself, a path under it, or a folder
    in a directory that is not writable."""
    afile = tmp_path / "afile"
    afile.write_text(KEPT_TEXT)
    if case == "file":
        return afile, afile
    if case == "under_a_file":
        return afile, afile / "run"
    return afile, unwritable_folder(monkeypatch, tmp_path) / "run"


def record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``os.fsync`` (as ``"fsync <path>"``) and ``Path.replace`` (as ``"replace
    <name>"``) from now on, in order, both still done: what a test of crash safety reads."""
    import os

    events: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append(f"replace {self.name}")
        return real_replace(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    return events
