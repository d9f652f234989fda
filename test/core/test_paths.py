"""Whether a path can be created: the nearest existing folder above it decides."""

from __future__ import annotations

from _support.files import needs_non_root, read_only_folder

from irstd_ros.core.paths import creation_problem


def test_creatable_below_a_directory_and_not_below_a_file(tmp_path):
    assert creation_problem(tmp_path / "a" / "b" / "c.json") is None
    assert not (tmp_path / "a").exists()  # nothing is created
    a_file = tmp_path / "f"
    a_file.write_text("x")
    reason = creation_problem(a_file / "sub" / "out")
    assert reason is not None and "is a file, not a directory" in reason and str(a_file) in reason


@needs_non_root
def test_not_creatable_in_a_read_only_folder(tmp_path):
    with read_only_folder(tmp_path) as ro:
        assert "not writable" in (creation_problem(ro / "x") or "")
