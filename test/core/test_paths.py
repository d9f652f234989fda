"""Whether a path can be created (the nearest existing folder above it decides), and files
written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support.files import record_syncs, unwritable_folder

from irstd_ros.core.paths import (
    atomic_path,
    can_write_in,
    creation_problem,
    default_file_mode,
    output_dir_problem,
)


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


def test_an_existing_read_only_folder_is_not_an_output_dir(tmp_path, monkeypatch):
    ro = unwritable_folder(monkeypatch, tmp_path)
    reason = output_dir_problem(ro)
    assert reason is not None and "not writable" in reason
    assert output_dir_problem(tmp_path) is None


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
def test_proc_is_not_writable_even_for_root():
    # os.access says yes to root for /proc: the probe tries a file there
    for path in (Path("/proc/irstd-x.json"), Path("/proc/irstd-x/y.json")):
        reason = creation_problem(path)
        assert reason is not None and "directory /proc is not writable" in reason
    assert output_dir_problem(Path("/proc")) is not None


def test_the_probe_leaves_nothing_behind(tmp_path):
    assert can_write_in(tmp_path) and creation_problem(tmp_path / "x") is None
    assert output_dir_problem(tmp_path) is None
    assert not any(tmp_path.iterdir())
    assert not can_write_in(tmp_path / "missing")


def test_write_text_atomic_replaces_whole_or_leaves_the_old_file(tmp_path, monkeypatch):
    from irstd_ros.core.paths import write_text_atomic

    report = tmp_path / "report.json"
    write_text_atomic(report, "old")
    assert write_text_atomic(report, "new") == report and report.read_text() == "new"

    def disk_full(self, text):
        Path.write_bytes(self, b"half")  # something was written before the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(report, "newer")
    monkeypatch.undo()
    assert report.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_atomic_path_keeps_the_suffix_and_replaces_only_when_the_block_succeeds(tmp_path):
    plot = tmp_path / "curve.png"
    plot.write_bytes(b"old")
    with atomic_path(plot) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != plot
        tmp.write_bytes(b"new")
        assert plot.read_bytes() == b"old"  # nothing changes before the block ends
    assert plot.read_bytes() == b"new"
    with pytest.raises(RuntimeError, match="render failed"), atomic_path(plot) as tmp:
        tmp.write_bytes(b"ha")
        raise RuntimeError("render failed")
    assert plot.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]


def test_atomic_path_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """A crash right after the rename must find the new data on disk: the temporary file
    is fsynced before it takes the name, and the folder (the rename) after."""
    report = tmp_path / "report.json"
    events = record_syncs(monkeypatch)
    with atomic_path(report) as tmp:
        tmp.write_text("new")
    assert events == [f"fsync {tmp}", f"replace {tmp.name}", f"fsync {tmp_path}"]
    assert report.read_text() == "new"


def test_atomic_path_survives_a_folder_that_cannot_be_synced(tmp_path, monkeypatch):
    """Some filesystems refuse fsync on a directory: the file is still written."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "a.txt").read_text() == "x"


def test_a_matplotlib_figure_saved_through_atomic_path_is_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with atomic_path(tmp_path / "fig.png") as tmp:
        fig.savefig(tmp)  # the format is taken from the temporary name's suffix
    plt.close(fig)
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_file_its_writer_made_private_gets_the_usual_mode(tmp_path):
    """safetensors creates its file 0600: through atomic_path it ends with the mode any
    new file gets under the umask, so a node run as another user can read the weights."""
    out = tmp_path / "w.bin"
    with atomic_path(out) as tmp:
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    assert out.stat().st_mode & 0o777 == default_file_mode()
    probe = tmp_path / "probe"
    probe.write_text("x")
    assert default_file_mode() == probe.stat().st_mode & 0o777
