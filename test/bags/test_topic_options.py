"""record and replay check their topic names and durations up front: one ConfigError line
naming the option and the value, no rclpy exception, no bag left behind."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _support.cli import one_error_line, record_calls, run_cli, run_cli_output

from irstd_ros.bags.record import RecordConfig
from irstd_ros.bags.replay import ReplayConfig, check_topic_name
from irstd_ros.errors import ConfigError

BAD_NAMES = [
    ("bad topic!", "must not contain characters other than alphanumerics"),
    ("", "must not be empty"),
    ("/a//b", "repeated '/'"),
    ("1abc", "must not start with a number"),
    ("{bad}/x", "unknown substitution"),
]


@pytest.mark.ros
@pytest.mark.parametrize(("name", "reason"), BAD_NAMES)
def test_invalid_topic_names_are_one_line_config_errors(name, reason):
    with pytest.raises(ConfigError) as info:
        check_topic_name(name, "--topics")
    text = str(info.value)
    assert text.startswith(f"--topics: invalid ROS topic name {name!r}: ") and reason in text
    assert "\n" not in text and ", at /" not in text


@pytest.mark.ros
@pytest.mark.parametrize("name", ["/camera/image", "relative/name", "~/private", "{node}/x"])
def test_valid_topic_names_pass(name):
    check_topic_name(name, "--topics")


@pytest.mark.ros
@pytest.mark.parametrize("topics", [["bad topic!"], [""], ["/ok", "/a//b"]])
def test_record_refuses_bad_topic_names_before_any_bag(topics, capsys, tmp_path):
    out = tmp_path / "rec"
    code, err = run_cli(capsys, "record", "--out", str(out), "--discovery-timeout", "1", "--topics", *topics)
    line = one_error_line(err)
    assert code == 2 and line.startswith("irstd record: error: --topics: invalid ROS topic name")
    assert repr(topics[-1]) in line
    assert not out.exists()


@pytest.mark.ros
@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--remap", "/camera/image:=bad name!"], "--remap /camera/image:=bad name!: invalid ROS topic name 'bad name!'"),
        (["--sync-topic", "bad name!"], "--sync-topic: invalid ROS topic name 'bad name!'"),
        (["--sync-topic", ""], "--sync-topic: invalid ROS topic name ''"),
    ],
)
def test_replay_refuses_bad_topic_names(args, start, capsys, tiny_bag):
    code, err = run_cli(capsys, "replay", str(tiny_bag), "--wait-subscribers", "0", *args)
    assert code == 2 and one_error_line(err).startswith(f"irstd replay: error: {start}")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["record", "--out", "OUT", "--discovery-timeout", "nan"], "--discovery-timeout: must be >= 0, got nan"),
        (["record", "--out", "OUT", "--discovery-timeout", "inf"], "--discovery-timeout: must be >= 0, got inf"),
        (["record", "--out", "OUT", "--duration", "nan"], "--duration: must be > 0, got nan"),
        (["record", "--out", "OUT", "--idle-timeout", "-1"], "--idle-timeout: must be > 0, got -1"),
        (["record", "--out", "OUT", "--max-messages", "0"], "--max-messages: must be >= 1, got 0"),
        (["record", "--out", "OUT", "--queue-size", "0"], "--queue-size: must be >= 1, got 0"),
        (["replay", "BAG", "--wait-subscribers", "-1"], "--wait-subscribers: must be >= 0, got -1"),
        (["replay", "BAG", "--wait-subscribers", "nan"], "--wait-subscribers: must be >= 0, got nan"),
        (["replay", "BAG", "--sync-timeout", "-5"], "--sync-timeout: must be > 0, got -5"),
        (["replay", "BAG", "--sync-timeout", "nan"], "--sync-timeout: must be > 0, got nan"),
    ],
)
def test_durations_must_be_finite_and_in_range(args, words, capsys, tmp_path, tiny_bag):
    out = tmp_path / "rec"
    args = [str(out) if a == "OUT" else str(tiny_bag) if a == "BAG" else a for a in args]
    code, err = run_cli(capsys, *args)
    assert code == 2 and f"argument {words}" in one_error_line(err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"wait_subscribers": math.nan}, "wait subscribers must be >= 0"),
        ({"wait_subscribers": -1.0}, "wait subscribers must be >= 0"),
        ({"sync_timeout": -5.0}, "sync timeout must be > 0"),
        ({"sync_timeout": math.nan}, "sync timeout must be > 0"),
        ({"start_offset": math.nan}, "start offset must be >= 0"),
        ({"ack_timeout": math.inf}, "ack timeout must be >= 0"),
        ({"rate": math.inf}, "rate must be > 0"),
    ],
)
def test_replay_config_refuses_non_finite_durations(change, words):
    with pytest.raises(ConfigError, match=words):
        ReplayConfig(Path("x"), **change).validate()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"discovery_timeout": math.nan}, "discovery_timeout must be >= 0"),
        ({"discovery_timeout": -1.0}, "discovery_timeout must be >= 0"),
        ({"duration": math.nan}, "duration must be > 0"),
        ({"idle_timeout": math.inf}, "idle_timeout must be > 0"),
    ],
)
def test_record_config_refuses_non_finite_durations(change, words):
    with pytest.raises(ConfigError, match=words):
        RecordConfig(Path("x"), **change).validate()



def test_record_passes_queue_size_and_prints_the_dropped_messages(capsys, tmp_path, monkeypatch):
    """--queue-size reaches the recorder's config, and messages it dropped are printed per
    topic (not only logged), so a disk that did not keep up is seen in the summary."""
    import irstd_ros.cli.record as cli_record
    from irstd_ros.bags.record import RecordStats

    calls = record_calls(
        monkeypatch,
        cli_record,
        "record",
        lambda cfg: RecordStats(cfg.out, counts={"/a": 5}, stopped_by="duration", dropped={"/a": 3}),
    )
    code, out, _ = run_cli_output(capsys, "record", "--out", str(tmp_path / "rec"), "--queue-size", "7")
    assert code == 0 and calls[0].queue_size == 7
    assert "dropped (the disk did not keep up; see --queue-size): /a: 3" in out


def test_record_type_subscribes_a_topic_before_its_publisher_is_seen(capsys, tmp_path, monkeypatch):
    """RecordConfig.known_types had no option: a recording started before `irstd replay`
    subscribed only once it saw the replay's publisher, and lost the first frame."""
    import irstd_ros.cli.record as cli_record
    from irstd_ros.bags.record import RecordStats

    calls = record_calls(monkeypatch, cli_record, "record", lambda cfg: RecordStats(cfg.out, stopped_by="idle"))
    code, _, err = run_cli_output(
        capsys, "record", "--out", str(tmp_path / "rec"), "--topics", "/camera/image", "targets",
        "--type", "/camera/image=sensor_msgs/msg/Image",
    )
    assert code == 0, err
    assert calls[0].known_types == (("/camera/image", "sensor_msgs/msg/Image"),)


@pytest.mark.ros
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/camera/image", "--type must be TOPIC=PKG/msg/TYPE, got '/camera/image'"),
        ("/camera/image=Image", "--type must be TOPIC=PKG/msg/TYPE, got '/camera/image=Image'"),
        ("/other=sensor_msgs/msg/Image", "--type /other=sensor_msgs/msg/Image: /other is not recorded (/camera/image)"),
    ],
)
def test_record_type_is_checked_before_any_bag(capsys, tmp_path, value, message):
    out = tmp_path / "rec"
    code, err = run_cli(capsys, "record", "--out", str(out), "--topics", "/camera/image", "--type", value)
    assert code == 2 and one_error_line(err) == f"irstd record: error: {message}"
    assert not out.exists()
