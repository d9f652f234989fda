"""replay's publishing loop without a ROS graph: its progress total, a silent consumer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from _support.bags import TINY, make_bag
from _support.cli import run_cli

from irstd_ros.bags.io import IMAGE_TOPIC, TRUTH_MASK_TOPIC, BagReader
from irstd_ros.bags.replay import SYNC_WARN_AFTER, ReplayConfig, _play
from irstd_ros.cli import replay as replay_cli
from irstd_ros.errors import BagError


@dataclass
class _Publisher:
    sent: list[bytes] = field(default_factory=list)

    def publish(self, raw: bytes) -> None:
        self.sent.append(raw)


class _NoAnswer:
    """A sync waiter whose consumer never answers."""

    def wait(self, stamp: int, timeout: float) -> bool:
        return False


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return make_bag(tmp_path_factory.mktemp("replay") / "bag")


def _totals(monkeypatch) -> list[int | None]:
    """The totals the progress bars are given (and reset to)."""
    import tqdm

    totals: list[int | None] = []

    class Bar:
        def __init__(self, total=None, **_kw) -> None:
            totals.append(total)

        def reset(self, total=None) -> None:
            totals.append(total)

        def update(self, n: int = 1) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    return totals


def test_the_progress_total_counts_a_topic_named_twice_once(bag, monkeypatch):
    totals = _totals(monkeypatch)
    cfg = ReplayConfig(bag, topics=(IMAGE_TOPIC, TRUTH_MASK_TOPIC, IMAGE_TOPIC), rate=1e6)
    pubs = {IMAGE_TOPIC: _Publisher(), TRUTH_MASK_TOPIC: _Publisher()}
    with BagReader(bag) as reader:
        stats = _play(cfg, reader, pubs, None, lambda: False)
    assert stats.published == 2 * TINY.frames
    assert set(totals) == {2 * TINY.frames}


def test_the_progress_total_from_a_start_offset_is_not_the_whole_topics(bag, monkeypatch):
    totals = _totals(monkeypatch)
    cfg = ReplayConfig(bag, rate=1e6, start_offset=0.35)
    with BagReader(bag) as reader:
        stats = _play(cfg, reader, {IMAGE_TOPIC: _Publisher()}, None, lambda: False)
    assert 0 < stats.published < TINY.frames
    assert set(totals) == {None}  # unknown, shown as a count; not the topic's TINY.frames


@dataclass
class _Answers:
    """A sync waiter whose consumer answers the frames as ``pattern`` says, in turn."""

    pattern: list[bool]

    def wait(self, stamp: int, timeout: float) -> bool:
        return self.pattern.pop(0)


def test_a_consumer_that_never_answers_is_warned_of_once(bag, caplog):
    cfg = ReplayConfig(bag, rate=1e6, sync_topic="/targets", sync_timeout=0.01, progress=False)
    with BagReader(bag) as reader, caplog.at_level("WARNING"):
        stats = _play(cfg, reader, {IMAGE_TOPIC: _Publisher()}, _NoAnswer(), lambda: False)
    assert stats.sync_timeouts == TINY.frames > 2 * SYNC_WARN_AFTER  # one run of them
    assert caplog.text.count(f"no answer on /targets to {SYNC_WARN_AFTER} frames in a row") == 1


def test_a_consumer_that_stalls_again_is_warned_of_again(bag, caplog):
    """The warning was given once a replay: a consumer that answered again, then stalled
    again, stalled unnoticed."""
    stall = [False] * SYNC_WARN_AFTER
    pattern = [True, *stall, True, *stall]
    assert len(pattern) == TINY.frames
    cfg = ReplayConfig(bag, rate=1e6, sync_topic="/targets", sync_timeout=0.01, progress=False)
    with BagReader(bag) as reader, caplog.at_level("WARNING"):
        stats = _play(cfg, reader, {IMAGE_TOPIC: _Publisher()}, _Answers(pattern), lambda: False)
    assert stats.sync_timeouts == 2 * SYNC_WARN_AFTER
    assert caplog.text.count(f"no answer on /targets to {SYNC_WARN_AFTER} frames in a row") == 2


def test_sync_give_up_stops_after_so_many_timeouts_in_a_row(bag):
    cfg = ReplayConfig(
        bag, rate=1e6, sync_topic="/targets", sync_timeout=0.01, sync_give_up=2, progress=False
    )
    pub = _Publisher()
    with (
        BagReader(bag) as reader,
        pytest.raises(
            BagError,
            match=r"no answer on /targets to 2 frames in a row \(--sync-give-up 2\); stopped after 2 messages",
        ),
    ):
        _play(cfg, reader, {IMAGE_TOPIC: pub}, _NoAnswer(), lambda: False)
    assert len(pub.sent) == 2


def test_ctrl_c_during_replay_exits_130(bag, capsys, monkeypatch):
    """It printed "replay: interrupted" and exited 0, as if the replay had completed."""

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(replay_cli, "replay", interrupted)
    code, err = run_cli(capsys, "replay", str(bag))
    assert code == 130 and err.strip().endswith("irstd replay: interrupted")
