"""MCAP files without their summary or index (a recording killed before it closed, a writer
with indexing off): rosbags cannot read them, or reads them as empty, so the bag commands
said "cannot read bag: File end magic is invalid." or "has no message". Each is a
:class:`BagError` of one line that says what the file lacks and how to rebuild it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _support.bags import (
    make_bag,
    mcap_footer,
    mcap_summary_start,
    mcap_unindexed,
)
from _support.cli import one_error_line, run_cli
from rosbags.rosbag2 import Reader

from irstd_ros.bags.io import BagReader, BagWriter, targets_msg
from irstd_ros.errors import BagError


def _mcap(bag: Path) -> Path:
    return next(bag.glob("*.mcap"))


def _read_all(path: Path) -> None:
    with BagReader(path) as reader:
        list(reader.raw_messages())


def _copy(bag: Path, dest: Path) -> Path:
    shutil.copytree(bag, dest)
    return dest


@pytest.mark.parametrize("layout", ["bare", "folder"])
@pytest.mark.parametrize("cut", ["before-summary", "mid-data"])
def test_an_mcap_file_that_never_closed_names_mcap_recover(tiny_bag, tmp_path, layout, cut):
    """A recording killed before its writer wrote the summary: no footer, no closing magic
    ("File end magic is invalid." before)."""
    data = _mcap(tiny_bag).read_bytes()
    end = mcap_summary_start(data) if cut == "before-summary" else len(data) // 2
    if layout == "bare":
        bag = mcap = tmp_path / "killed.mcap"
    else:  # the folder's metadata.yaml names the file
        bag = _copy(tiny_bag, tmp_path / "killed")
        mcap = _mcap(bag)
    mcap.write_bytes(data[:end])
    with pytest.raises(BagError) as info:
        _read_all(bag)
    text = str(info.value)
    assert text.startswith(f"cannot read bag {bag}: ") and "\n" not in text
    assert "MCAP file without its summary and index" in text
    assert f"`mcap recover {mcap} -o {mcap.with_name(mcap.stem + '.recovered.mcap')}`" in text


def test_the_bag_commands_say_it_in_one_line(capsys, tiny_bag, tmp_path):
    data = _mcap(tiny_bag).read_bytes()
    killed = tmp_path / "killed.mcap"
    killed.write_bytes(data[: mcap_summary_start(data)])
    code, err = run_cli(capsys, "eval-bag", "--truth", str(killed), "--outputs", str(tiny_bag))
    line = one_error_line(err)
    assert code != 0 and "without its summary and index" in line and "mcap recover" in line


@pytest.mark.parametrize("statistics", [True, False], ids=["with-statistics", "no-statistics"])
def test_chunks_without_message_indexes_are_an_error_not_an_empty_bag(tiny_bag, tmp_path, statistics):
    """Chunks indexed without their message indexes: rosbags skips them, so the bag read as
    empty (its counts from the statistics, or 0 without them) and replay, eval-bag and
    render said it had no message."""
    path = tmp_path / "unindexed.mcap"
    path.write_bytes(mcap_unindexed(_mcap(tiny_bag).read_bytes(), statistics))
    with Reader(path) as raw:  # what rosbags makes of it (if this fails, rosbags reads them now)
        assert not list(raw.messages())
    with pytest.raises(BagError) as info:
        BagReader(path)
    text = str(info.value)
    assert text.startswith(f"cannot read bag {path}: it is an MCAP file whose chunks have no message index")
    assert f"`mcap recover {path} -o" in text and "\n" not in text


def test_a_bag_folder_whose_mcap_file_lacks_message_indexes(tiny_bag, tmp_path):
    bag = _copy(tiny_bag, tmp_path / "unindexed")
    mcap = _mcap(bag)
    mcap.write_bytes(mcap_unindexed(mcap.read_bytes()))
    with pytest.raises(BagError, match=rf"its {mcap.name} is an MCAP file whose chunks have no message index"):
        BagReader(bag)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_folder_without_metadata_names_the_fix(tmp_path, storage):
    bag = make_bag(tmp_path / "killed", storage)
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError) as info:
        BagReader(bag)
    text = str(info.value)
    assert f"cannot read bag {bag}: no metadata.yaml" in text
    assert f"`ros2 bag reindex {bag} {storage}`" in text
    if storage == "mcap":  # the file itself is a bag rosbags reads
        assert f"read {_mcap(bag)} itself" in text
        with BagReader(_mcap(bag)) as reader:
            assert reader.topics


def test_an_mcap_file_without_summary_and_messages_out_of_order(tmp_path):
    """Without a chunk index rosbags reads in file order, and refuses receive times that go
    back; the error now says how to index the file."""
    with BagWriter(tmp_path / "b") as w:
        for t in (3, 1, 2):
            w.write("/targets", t, targets_msg(w.store, [], t, "cam"))
    data = _mcap(tmp_path / "b").read_bytes()
    path = tmp_path / "no_summary.mcap"
    path.write_bytes(data[: mcap_summary_start(data)] + mcap_footer())
    with pytest.raises(BagError, match=r"not in timestamp order.*; rebuild it with `mcap recover "):
        _read_all(path)


def test_an_indexed_mcap_file_reads_as_before(tiny_bag):
    with BagReader(tiny_bag) as reader:
        assert reader.topics["/camera/image"].count == 8
        assert sum(1 for _ in reader.raw_messages(["/camera/image"])) == 8


def test_a_topic_declared_without_messages_is_no_unindexed_chunk(tmp_path):
    """Its chunk holds the channel and no message, so no message index either: an empty
    topic, not a file to rebuild (the replay of it says it has no message)."""
    with BagWriter(tmp_path / "empty") as w:
        w.add_topic("/targets", "irstd_ros/msg/TargetArray")
    for path in (tmp_path / "empty", _mcap(tmp_path / "empty")):
        with BagReader(path) as reader:
            assert reader.topics["/targets"].count == 0 and not list(reader.raw_messages())
