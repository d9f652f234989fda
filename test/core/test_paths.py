"""Whether a path can be created: the nearest existing folder above it decides."""

from __future__ import annotations

from _support.files import unwritable_folder

from irstd_ros.core.paths import creation_problem


def test_creatable_below_a_directory_and_not_below_a_file(tmp_path):
    assert creation_problem(tmp_path / "a" / "b" / "c.json") is None
    assert not (tmp_path / "a").exists()  # nothing is created
    a_file = tmp_path / "f"
    a_file.write_text("x")
    reason = creation_problem(a_file / "sub" / "out")
    assert reason is not None and "is a file, not a directory" in reason and str(a_file) in reason


def test_not_creatable_in_a_read_only_folder(tmp_path, monkeypatch):
    ro = unwritable_folder(monkeypatch, tmp_path)
    reason = creation_problem(ro / "x" / "y.json")
    assert reason is not None and "not writable" in reason and str(ro) in reason
    assert creation_problem(tmp_path / "x") is None  # only that folder is refused
