"""BagWriter: a killed sqlite3 recording keeps what it committed; what --overwrite refuses."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support.bags import make_bag

from irstd_ros.bags import io
from irstd_ros.bags.io import BagReader, BagWriter, targets_msg
from irstd_ros.errors import BagError


def _one_message_bag(path: Path, stamp: int = 1, **kw) -> Path:
    with BagWriter(path, **kw) as w:
        w.write("/targets", stamp, targets_msg(w.store, [], stamp, "cam"))
    return path


def test_rosbags_sqlite3_writer_still_keeps_its_connection_where_we_commit_through_it(tmp_path):
    """rosbags has no API for it: this fails when a release moves writer.storage.conn."""
    with BagWriter(tmp_path / "bag", "sqlite3") as w:
        assert isinstance(io._sqlite3_connection(w._writer), sqlite3.Connection)


class _StorageWithoutConn:
    """A rosbags storage writer that hides its ``conn`` (as a rosbags release might)."""

    def __init__(self, storage) -> None:
        self._storage = storage

    def __getattr__(self, name: str):
        if name == "conn":
            raise AttributeError(name)
        return getattr(self._storage, name)


def test_a_sqlite3_writer_without_its_connection_writes_without_commits(tmp_path, monkeypatch, caplog):
    """Every sqlite3 write failed when rosbags moved storage.conn: a warning (once), and
    the bag written as rosbags writes it."""
    opened = io.Writer.open

    def open_hiding_conn(self) -> None:
        opened(self)
        self.storage = _StorageWithoutConn(self.storage)

    monkeypatch.setattr(io.Writer, "open", open_hiding_conn)
    monkeypatch.setattr(io, "SQLITE3_COMMIT_PERIOD_S", 0.0)
    io._warn_no_sqlite3_connection.cache_clear()
    with caplog.at_level("WARNING"):
        for name in ("a", "b"):
            with BagWriter(tmp_path / name, "sqlite3") as w:
                for stamp in (1, 2):
                    w.write("/targets", stamp, targets_msg(w.store, [], stamp, "cam"))
            with BagReader(tmp_path / name) as reader:
                assert [t for _, _, t, _ in reader.raw_messages()] == [1, 2]
    assert caplog.text.count("keeps no connection at writer.storage.conn") == 1
    io._warn_no_sqlite3_connection.cache_clear()


def _killed_sqlite3_recording(bag: Path) -> Path:
    """A sqlite3 recording into ``bag`` of stamps 1, 2, 3 (each committed), SIGKILLed before
    it closed: no metadata.yaml, its .db3 file and journals left as they were."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from irstd_ros.bags import io
        io.SQLITE3_COMMIT_PERIOD_S = 0.0  # a commit after every message
        w = io.BagWriter({str(bag)!r}, "sqlite3").__enter__()
        for stamp in (1, 2, 3):
            w.write("/targets", stamp, io.targets_msg(w.store, [], stamp, "cam"))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()
    return bag


def test_a_killed_sqlite3_recording_keeps_the_messages_committed_before(tmp_path):
    bag = _killed_sqlite3_recording(tmp_path / "killed")
    assert not (bag / "metadata.yaml").exists()
    db3 = bag / "killed.db3"
    with pytest.raises(BagError) as info:
        BagReader(bag)
    assert f"read {db3} itself" in str(info.value)
    assert "commits every 1 s" in str(info.value)
    with BagReader(db3) as reader:
        assert [t for _, _, t, _ in reader.raw_messages()] == [1, 2, 3]


def test_overwrite_replaces_a_killed_sqlite3_recording(tmp_path):
    """Its folder holds no metadata.yaml: --overwrite refused it as 'not a bag', although
    every file in it is the recording's (.db3, .db3-wal, .db3-shm)."""
    bag = _killed_sqlite3_recording(tmp_path / "killed")
    assert sorted(os.listdir(bag)) == ["killed.db3", "killed.db3-shm", "killed.db3-wal"]
    _one_message_bag(bag, 9, overwrite=True)
    assert sorted(os.listdir(bag)) == ["killed.mcap", "metadata.yaml"]
    with BagReader(bag) as reader:
        assert [t for _, _, t, _ in reader.raw_messages()] == [9]


def test_overwrite_replaces_an_empty_folder_and_refuses_one_of_other_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_message_bag(empty, overwrite=True)
    assert sorted(os.listdir(empty)) == ["empty.mcap", "metadata.yaml"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(BagError, match="exists and is not a bag"):
        BagWriter(other, overwrite=True)
    assert sorted(os.listdir(other)) == ["notes.txt"]


def test_a_closed_sqlite3_bag_is_in_rosbag2s_journal_mode(tmp_path):
    bag = _one_message_bag(tmp_path / "bag", storage="sqlite3")
    assert sorted(p.name for p in bag.iterdir()) == ["bag.db3", "metadata.yaml"]
    with sqlite3.connect(bag / "bag.db3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    with BagReader(bag) as reader:
        assert reader.topics["/targets"].count == 1


def test_overwrite_refuses_a_symlinked_bag_folder_up_front(tmp_path):
    target = _one_message_bag(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(BagError, match=f"{link} is a symbolic link .to {target}."):
        BagWriter(link, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]  # no staging left


def test_a_failed_replacement_says_where_the_finished_bag_was_left(tmp_path):
    bag = _one_message_bag(tmp_path / "bag")
    with pytest.raises(BagError) as info, BagWriter(bag, overwrite=True) as w:
        w.write("/targets", 7, targets_msg(w.store, [], 7, "cam"))
        bag.rename(tmp_path / "elsewhere")  # the old bag became a link while writing
        bag.symlink_to(tmp_path / "elsewhere")
    staged = Path(str(info.value).rsplit("it was left at ", 1)[1])
    assert staged.parent.parent == tmp_path and staged.name == "bag"
    with BagReader(staged) as reader:
        assert [t for _, _, t, _ in reader.raw_messages()] == [7]


def test_overwrite_of_the_current_folder_replaces_it(tmp_path, monkeypatch):
    bag = _one_message_bag(tmp_path / "bag")
    monkeypatch.chdir(bag)
    _one_message_bag(Path("."), 9, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no staging folder left
    assert sorted(p.name for p in bag.iterdir()) == ["bag.mcap", "metadata.yaml"]
    with BagReader(bag) as reader:
        assert [t for _, _, t, _ in reader.raw_messages()] == [9]


@pytest.mark.parametrize("extra", ["notes.txt", "eval/"])
def test_overwrite_refuses_a_bag_folder_holding_other_files(tmp_path, extra):
    bag = make_bag(tmp_path / "bag")
    (bag / extra.rstrip("/")).mkdir() if extra.endswith("/") else (bag / extra).write_text("x")
    with pytest.raises(BagError, match=f"holds files that are not its bag's .{extra}."):
        BagWriter(bag, overwrite=True)
    assert (bag / extra.rstrip("/")).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_overwrite_takes_a_killed_sqlite3_recordings_files_for_its_bags(tmp_path):
    bag = make_bag(tmp_path / "bag", "sqlite3")
    (bag / "bag.db3-wal").write_bytes(b"")
    _one_message_bag(bag, overwrite=True)
    assert sorted(os.listdir(bag)) == ["bag.mcap", "metadata.yaml"]
