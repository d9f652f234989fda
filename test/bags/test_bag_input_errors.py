"""Bad input to the bag subcommands: one readable line, before the long work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _support.bags import make_bag
from _support.cli import one_error_line, run_cli

from irstd_ros.bags import evaluate as ev
from irstd_ros.bags.evaluate import EvalBagConfig, evaluate_bag
from irstd_ros.errors import BagError, ConfigError
from irstd_ros.tracking.tracker import TrackerConfig


def test_eval_bag_confirm_m_above_n(capsys, tiny_bag):
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(tiny_bag), "--run-detector", "--confirm", "6", "4"
    )
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("irstd eval-bag: error: tracker: need 1 <= confirm_m <= confirm_n, got 6, 4")
    with pytest.raises(ConfigError, match="confirm_m"):
        EvalBagConfig(tiny_bag, run_detector=True, tracker=TrackerConfig(confirm_m=0)).validate()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--match-px", "-1"], "--match-px: must be > 0"),
        (["--candidate-threshold", "2"], "--candidate-threshold: must be in (0, 1)"),
        (["--gated-threshold", "-0.1"], "--gated-threshold: must be in (0, 1)"),
        (["--gate-px", "0"], "--gate-px: must be > 0"),
        (["--warmup-s", "-1"], "--warmup-s: must be >= 0"),
    ],
)
def test_eval_bag_out_of_range_values(args, words, capsys, tiny_bag):
    code, err = run_cli(capsys, "eval-bag", "--truth", str(tiny_bag), "--run-detector", *args)
    assert code == 2 and words in one_error_line(err)


def test_eval_bag_unknown_image_topic_lists_the_topics(capsys, tiny_bag, monkeypatch):
    from irstd_ros.inference import detector

    def no_model(*_a, **_k):
        raise AssertionError("the topic is checked before the model is loaded")

    monkeypatch.setattr(detector.Detector, "from_checkpoint", no_model)
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(tiny_bag), "--run-detector", "--image-topic", "/nosuch"
    )
    assert code == 2
    line = one_error_line(err)
    assert "has no topic /nosuch" in line and "/camera/image (sensor_msgs/msg/Image)" in line


def test_eval_bag_outputs_of_another_size_name_frame_and_topics(tmp_path, tiny_bag, monkeypatch):
    other = make_bag(tmp_path / "other", width=64, height=48)
    # the other bag's truth mask stands in for recorded outputs of another sequence
    monkeypatch.setattr(
        ev, "find_output_topics",
        lambda reader, exclude=(), *_a: {"mask": "/camera/truth/mask", "targets": None,
                                    "detections": None, "tracks": None},
    )
    with pytest.raises(BagError) as info:
        evaluate_bag(EvalBagConfig(tiny_bag, outputs=other, tracking=False))
    text = str(info.value)
    assert "frame at stamp" in text and "64x48" in text and "96x64" in text
    assert "/camera/truth/mask in" in text and str(other) in text and "\n" not in text


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_eval_bag_output_file_that_is_a_directory(option, capsys, tiny_bag, tmp_path):
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(tiny_bag), "--outputs", str(tiny_bag),
        option, str(tmp_path),
    )
    assert code == 2
    assert one_error_line(err).startswith(f"irstd eval-bag: error: {option}") and "is a directory" in err


def test_render_sheet_that_is_a_directory(capsys, tiny_bag, tmp_path):
    code, err = run_cli(
        capsys, "render", str(tiny_bag), "--out", str(tmp_path / "v.gif"), "--sheet", str(tmp_path)
    )
    assert code == 2 and "--sheet" in one_error_line(err) and "is a directory" in err
    assert not (tmp_path / "v.gif").exists()


def test_replay_start_offset_past_the_end(capsys, tiny_bag):
    pytest.importorskip("irstd_ros.cli.replay")
    from irstd_ros.bags.replay import ReplayConfig, check_start_offset

    code, err = run_cli(capsys, "replay", str(tiny_bag), "--start-offset", "100")
    assert code == 2
    line = one_error_line(err)
    assert "start offset 100 s is past the end" in line and "lasts 0.700 s" in line
    with pytest.raises(ConfigError, match="past the end"):  # the library says so too
        check_start_offset(ReplayConfig(bag=tiny_bag, start_offset=100.0))
    check_start_offset(ReplayConfig(bag=tiny_bag, start_offset=0.5))  # within the bag


@pytest.mark.parametrize("rate", ["0", "-1"])
def test_replay_zero_or_negative_rate_is_a_usage_error(capsys, tiny_bag: Path, rate):
    pytest.importorskip("irstd_ros.cli.replay")
    code, err = run_cli(capsys, "replay", str(tiny_bag), "--rate", rate)
    assert code == 2 and f"--rate: must be > 0, got {rate}" in one_error_line(err)


def _bag_with_a_short_image(path: Path) -> Path:
    import dataclasses

    import numpy as np

    from irstd_ros.bags.io import IMAGE_TOPIC, TRUTH_MASK_TOPIC, BagWriter, image_msg

    with BagWriter(path) as w:
        msg = image_msg(w.store, np.zeros((4, 6), np.uint8), "mono8", 7, "cam")
        for topic in (IMAGE_TOPIC, TRUTH_MASK_TOPIC):
            w.write(topic, 7, dataclasses.replace(msg, data=np.zeros(5, np.uint8)))
    return path


@pytest.mark.parametrize("command", ["render", "eval-bag"])
def test_an_unreadable_image_names_the_bag_topic_and_stamp(command, capsys, tmp_path):
    bag = _bag_with_a_short_image(tmp_path / "short")
    extra = ["--out", str(tmp_path / "v.gif")] if command == "render" else ["--run-detector"]
    args = [str(bag), *extra] if command == "render" else ["--truth", str(bag), *extra]
    code, err = run_cli(capsys, command, *args)
    assert code != 0
    line = one_error_line(err)
    # both read the truth mask first (render: to count the truth of a bag without truth boxes)
    topic = "/camera/truth/mask"
    assert f"{bag}: {topic} at stamp 7:" in line and "data has 5 bytes" in line


def test_two_frames_with_one_stamp_are_an_error_not_a_silent_merge(capsys, tmp_path, tiny_bag):
    from irstd_ros.bags.io import IMAGE_TOPIC, TRUTH_TARGETS_TOPIC, BagReader, BagWriter

    twice = tmp_path / "twice"  # truth targets recorded over two replay passes
    with BagReader(tiny_bag) as r, BagWriter(twice) as w:
        for topic, repeats in ((IMAGE_TOPIC, 1), (TRUTH_TARGETS_TOPIC, 2)):
            raws = list(r.raw_messages([topic]))
            w.add_topic(topic, raws[0][1])
            for i, (_, _, _, raw) in enumerate(raws * repeats):
                w.write_raw(topic, i, raw)
    code, err = run_cli(capsys, "eval-bag", "--truth", str(twice), "--outputs", str(tiny_bag))
    assert code != 0
    line = one_error_line(err)
    assert f"{twice}: two messages on {TRUTH_TARGETS_TOPIC} have the header stamp" in line


def test_eval_bag_a_named_truth_mask_topic_that_is_missing_is_an_error(tiny_bag):
    """A typo fell back to the filled truth boxes without a word: other IoU numbers
    (0.1765 instead of 0.2069 on a generated bag), as if of the mask topic named."""
    with pytest.raises(BagError, match="has no topic /camera/truth/maks"):
        evaluate_bag(EvalBagConfig(tiny_bag, outputs=tiny_bag, truth_mask_topic="/camera/truth/maks"))


def test_eval_bag_mask_topic_with_run_detector_is_refused(tiny_bag):
    """--mask-topic names a topic of the recorded outputs: with --run-detector it was ignored."""
    with pytest.raises(ConfigError, match="--mask-topic"):
        evaluate_bag(EvalBagConfig(tiny_bag, run_detector=True, mask_topic="/nosuch"))


def test_eval_bag_outputs_ns_with_run_detector_is_refused(capsys, tiny_bag):
    """--outputs-ns chooses a node of the recorded outputs: with --run-detector, none."""
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(tiny_bag), "--run-detector", "--outputs-ns", "/cam1/irstd"
    )
    assert code == 2 and "--outputs-ns names a node of --outputs" in one_error_line(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "{d}/r.png", "--plot", "{d}/r.png"], "--plot {d}/r.png is also --json"),
        (["--json", "{d}/r", "--save-outputs", "{d}/r"], "--json {d}/r is also --save-outputs"),
        (["--plot", "{d}/r.json"], "plot r.json: not a format matplotlib writes"),
    ],
)
def test_eval_bag_outputs_that_collide_or_cannot_be_written_are_refused_up_front(
    args, message, capsys, tiny_bag, tmp_path, monkeypatch
):
    """--json and --plot at one path, --json at the --save-outputs bag, or a plot in a
    format matplotlib does not write: a ValueError or an "Is a directory" after the whole
    evaluation (the bag written, the JSON lost)."""
    def no_work(_cfg):
        raise AssertionError("the evaluation ran before the outputs were checked")

    monkeypatch.setattr("irstd_ros.cli.eval_bag.evaluate_bag", no_work)
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(tiny_bag), "--run-detector",
        *[a.format(d=tmp_path) for a in args],
    )
    assert code == 2 and message.format(d=tmp_path) in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_eval_bag_save_outputs_at_an_existing_path_is_refused_up_front(capsys, tiny_bag, tmp_path, monkeypatch):
    """The bag writer refused it only once the model was loaded, before the first frame."""
    def no_work(_cfg):
        raise AssertionError("the evaluation ran before --save-outputs was checked")

    monkeypatch.setattr("irstd_ros.cli.eval_bag.evaluate_bag", no_work)
    (tmp_path / "old").mkdir()
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(tiny_bag), "--run-detector", "--save-outputs", str(tmp_path / "old")
    )
    assert code == 2 and f"--save-outputs {tmp_path / 'old'} exists" in one_error_line(err)


@pytest.mark.parametrize(
    ("args", "inside"),
    [
        (["--outputs", "{o}", "--json", "{t}/metadata.yaml"], "--json {t}/metadata.yaml lies inside the input --truth {t}"),
        (["--outputs", "{o}", "--plot", "{o}/p.png"], "--plot {o}/p.png lies inside the input --outputs {o}"),
        (["--run-detector", "--save-outputs", "{t}/saved"], "--save-outputs {t}/saved lies inside the input --truth {t}"),
        (["--run-detector", "--weights", "{w}", "--json", "{w}"], "--json {w} is the input --weights {w}"),
    ],
)
def test_eval_bag_an_output_inside_an_input_is_refused_and_the_input_kept(
    args, inside, capsys, tiny_bag, tmp_path, monkeypatch
):
    """`eval-bag --truth B --outputs O --json B/metadata.yaml` exited 0 having replaced the
    truth bag's metadata by the metrics (the bag unreadable)."""
    def no_work(_cfg):
        raise AssertionError("the evaluation ran before the outputs were checked")

    monkeypatch.setattr("irstd_ros.cli.eval_bag.evaluate_bag", no_work)
    truth, outputs = tmp_path / "truth", tmp_path / "outputs"
    shutil.copytree(tiny_bag, truth)
    shutil.copytree(tiny_bag, outputs)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    files = sorted(p for p in tmp_path.rglob("*"))
    before = {p: p.read_bytes() for p in files if p.is_file()}
    code, err = run_cli(
        capsys, "eval-bag", "--truth", str(truth), *[a.format(t=truth, o=outputs, w=weights) for a in args]
    )
    assert code == 2 and inside.format(t=truth, o=outputs, w=weights) in one_error_line(err)
    assert sorted(tmp_path.rglob("*")) == files
    assert {p: p.read_bytes() for p in files if p.is_file()} == before


def test_every_tracker_option_reaches_the_tracker_config():
    """eval-bag's tracker options are the node's tracking.* parameters: each given one is
    the TrackerConfig field it names, the others the node's defaults."""
    import argparse

    from irstd_ros.cli.eval_bag import tracker_from_args

    given = {"gate_px": 7.5, "init_speed": 120.0, "confirm": [3, 5], "max_coast_s": 0.5,
             "max_coast_long_s": 2.0, "min_score": 0.1}
    cfg = tracker_from_args(argparse.Namespace(**given))
    assert cfg == TrackerConfig(gate_px=7.5, init_speed=120.0, confirm_m=3, confirm_n=5, max_coast_s=0.5,
                                max_coast_long_s=2.0, min_score=0.1)
    assert tracker_from_args(argparse.Namespace(**dict.fromkeys(given))) is None
