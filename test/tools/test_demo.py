"""The demo: its node command is the launch file's; failures are one line; end to end (slow)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from _support.cli import one_error_line, run_cli

from irstd_ros.inference.detector import default_model_path
from irstd_ros.ros.launch_args import node_command
from irstd_ros.tools import demo
from irstd_ros.tools.demo import SAMPLE_SEQUENCE, DemoConfig, main, node_command_line, run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_node_is_started_like_the_launch_file():
    cfg = DemoConfig(weights=Path("w.safetensors"), backend="torch-cpu")
    cmd = node_command_line(cfg)
    extra = [
        "-p",
        f"model.path:={Path('w.safetensors').resolve()}",
        "-p",
        "model.backend:=torch-cpu",
    ]
    expected = node_command(
        cfg.params_file, image_topic="/camera/image", executable="irstd_node", extra_ros_args=extra
    )
    assert cmd[-(len(expected) - 1) :] == expected[1:]  # same ROS arguments, in the same order
    assert Path(cmd[0]).name in ("irstd_node", "python", "python3") or "python" in cmd[0]
    assert "image:=/camera/image" in cmd and str(ROOT / "config" / "irstd.yaml") in cmd


def test_sample_is_small_enough_for_a_two_core_machine():
    s = SAMPLE_SEQUENCE
    assert s.frames / s.fps <= 10 and s.width * s.height <= 640 * 512
    assert s.snr[0] >= 4.0 and s.n_targets >= 3 and s.enter_leave
    assert s.crossings >= 1 and s.flicker_rate > 0  # tracks shown through a crossing and clutter


def test_missing_bag_is_one_line_and_exit_1(tmp_path, capsys):
    code = main(["--bag", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("demo: error:")


@pytest.mark.parametrize("bag", ["outputs", "sample"])
def test_a_folder_that_is_not_a_bag_where_one_goes_is_refused_before_anything_is_written(bag, tmp_path, capsys):
    """``--out`` holding another folder called outputs/ (or sample/): the demo wrote its
    sample and node.log and started the node before the recorder refused it."""
    out = tmp_path / "o"
    (out / bag).mkdir(parents=True)
    (out / bag / "notes.txt").write_text("mine")
    code = main(["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "is not a bag; not overwriting it" in err
    assert sorted(p.name for p in out.iterdir()) == [bag]  # nothing written beside it
    assert (out / bag / "notes.txt").read_text() == "mine"


@pytest.mark.ros
@pytest.mark.slow
def test_node_failure_is_one_line(tmp_path, capsys):
    # its metadata reads (the demo's own check passes), its tensors do not: the node fails
    import torch
    from safetensors.torch import save_file

    from irstd_ros.checkpoint import METADATA_KEY, CheckpointInfo
    from irstd_ros.models import named_config

    weights = tmp_path / "hollow.safetensors"
    save_file({"w": torch.zeros(1)}, str(weights),
              metadata={METADATA_KEY: CheckpointInfo(named_config("tiny")).to_json()})
    code = main(
        [
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "o"),
            "--frames",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "node exited" in err


@pytest.mark.ros
@pytest.mark.slow
def test_demo_end_to_end_on_a_short_sample(tmp_path, rclpy_context):
    if not default_model_path().is_file():
        pytest.skip("shipped model not present")
    seq = replace(SAMPLE_SEQUENCE, width=192, height=160, frames=12, quiet=demo.sample_quiet(12))
    result = run_demo(DemoConfig(out_dir=tmp_path, sequence=seq))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("pd", "fa", "iou", "frames"):
        assert key in metrics
    assert metrics["frames"] == 12 and metrics["frames_missing"] == 0
    assert result["demo"]["frames_answered"] == 12
    assert metrics["latency_source"] == "recorded"
    for name in ("demo.mp4", "contact_sheet.png", "pd_fa.png", "outputs/metadata.yaml", "node.log"):
        assert (tmp_path / name).is_file(), name


@pytest.fixture
def no_demo_run(monkeypatch):
    """The options must be refused before the sample is generated and the node started."""

    def no_run(_cfg):
        raise AssertionError("the demo ran before its options were checked")

    monkeypatch.setattr(demo, "run_demo", no_run)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rate", "0"], "--rate must be > 0, got 0"),
        (["--rate", "-2"], "--rate must be > 0, got -2"),
        (["--rate", "nan"], "--rate must be > 0, got nan"),
        (["--frames", "0"], "--frames must be >= 1, got 0"),
        (["--scene", "moon"], "sample sequence: unknown scene 'moon'"),
        (["--snr", "x"], "--snr: expected a number or LO:HI, got 'x'"),
        (["--snr", "0"], "sample sequence: snr range"),
        (["--bag", "b", "--frames", "5", "--seed", "3"],
         "--frames, --seed: options of the generated sample; not with --bag"),
    ],
)
def test_irstd_demo_bad_options_are_one_line_exit_2_up_front(args, words, tmp_path, capsys, no_demo_run):
    code, err = run_cli(capsys, "demo", "--out", str(tmp_path / "o"), *args)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("irstd demo: error: ") and words in line
    assert not (tmp_path / "o").exists()


def test_irstd_demo_out_that_is_a_file(tmp_path, capsys, no_demo_run):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    code, err = run_cli(capsys, "demo", "--out", str(a_file))
    assert code == 2
    assert one_error_line(err) == f"irstd demo: error: --out {a_file}: is a file; give a directory"
    assert a_file.read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here")
def test_irstd_demo_out_under_proc(capsys, no_demo_run):
    code, err = run_cli(capsys, "demo", "--out", "/proc/irstd-demo")
    assert code == 2 and "directory /proc is not writable" in one_error_line(err)


def test_python_m_demo_keeps_its_one_line_exit_1(tmp_path, capsys, no_demo_run):
    code = main(["--rate", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err == "demo: error: --rate must be > 0, got 0\n"


def test_irstd_demo_subprocess_failure_is_one_line(tmp_path, capsys, monkeypatch):
    def fails(_cfg):
        raise subprocess.TimeoutExpired(["irstd_node"], 5)

    monkeypatch.setattr(demo, "run_demo", fails)
    code, err = run_cli(capsys, "demo", "--out", str(tmp_path / "o"))
    assert code == 2 and "timed out after 5 seconds" in one_error_line(err)


class _LateMaskRecorder:
    """Counts as a recorder's: every output of ``frames`` frames is in but the last mask,
    which arrives on the third look (the node publishes the mask after the sync topic);
    tracks were never published."""

    def __init__(self, frames: int) -> None:
        self.frames, self.looks = frames, 0
        self.node = type("N", (), {"resolve_topic_name": staticmethod(lambda t: t)})()

    @property
    def counts(self) -> dict[str, int]:
        self.looks += 1
        late = self.frames if self.looks >= 3 else self.frames - 1
        return {demo.SYNC_TOPIC: self.frames, "/detections": self.frames, "/mask": late}


class _Node:
    def wait_for(self, cond, timeout, what):
        for _ in range(10):
            if cond():
                return
        raise demo.NodeProcessError(f"timed out: {what}")

    def check_alive(self):
        pass


def test_drain_waits_for_the_mask_published_after_the_sync_topic():
    recorder = _LateMaskRecorder(frames=5)
    demo._drain(recorder, 5, _Node())
    assert recorder.counts["/mask"] == 5


def test_demo_sample_options_change_only_what_is_given(tmp_path):
    args = demo.build_parser().parse_args(["--out", str(tmp_path / "o"), "--frames", "7", "--snr", "9"])
    seq = demo.config_from_args(args).sequence
    assert seq == replace(SAMPLE_SEQUENCE, frames=7, snr=(9.0, 9.0), quiet=(6, 7))
    bag = demo.config_from_args(demo.build_parser().parse_args(["--out", str(tmp_path / "o"), "--bag", "b"]))
    assert bag.sequence == SAMPLE_SEQUENCE and bag.bag == Path("b")


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--weights", "missing.safetensors"], "model file not found"),
        (["--weights", "{tmp}"], "is a directory, not a checkpoint file"),
        (["--weights", "{tmp}/bad.safetensors"], "is not a readable safetensors file"),
        (["--backend", "nosuch"], "--backend: unknown backend 'nosuch'; valid: auto"),
    ],
)
def test_irstd_demo_checks_the_node_model_before_the_sample(option, words, tmp_path, capsys, no_demo_run):
    """The docstring's promise, "options are checked before anything runs", holds for the
    node's model too: not a sample generated and a node started to learn it."""
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    args = [a.replace("{tmp}", str(tmp_path)) for a in option]
    code, err = run_cli(capsys, "demo", "--out", str(tmp_path / "o"), *args)
    assert code == 2
    assert words in one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_irstd_demo_takes_a_shipped_model_by_name(tmp_path):
    args = demo.build_parser().parse_args(["--out", str(tmp_path / "o"), "--weights", "fast", "--backend", "cpu"])
    cfg = demo.config_from_args(args)
    assert cfg.weights == Path("fast") and cfg.backend == "cpu"


def test_the_default_sample_ends_with_its_last_fifth_background_only():
    """docs/demo.md's published figures are of this sample: frames 80-99 without targets."""
    assert SAMPLE_SEQUENCE.frames == 100 and SAMPLE_SEQUENCE.quiet == (80, 100)


@pytest.mark.parametrize(
    ("frames", "quiet"), [(50, (40, 50)), (150, (120, 150)), (7, (6, 7)), (2, (1, 2)), (1, (1, 1))]
)
def test_frames_keeps_the_background_only_stretch_the_samples_last_fifth(frames, quiet, tmp_path):
    """The stretch was frames 80-99 whatever --frames: none with --frames 50, and with
    --frames 150 the targets vanished at 80 and came back at 100."""
    args = demo.build_parser().parse_args(["--out", str(tmp_path / "o"), "--frames", str(frames)])
    seq = demo.config_from_args(args).sequence
    assert seq.quiet == quiet and seq.frames == frames
    seq.validate()


@pytest.mark.parametrize("frames", [50, 150])
def test_frames_sample_holds_targets_until_its_last_fifth_and_none_after(frames, tmp_path):
    from irstd_ros.sim.sequence import generate_sequence

    args = demo.build_parser().parse_args(["--out", str(tmp_path / "o"), "--frames", str(frames)])
    seq = replace(demo.config_from_args(args).sequence, width=160, height=128)  # same stretch
    empty = [f.index for f in generate_sequence(seq) if not f.targets]
    assert empty == list(range(frames - frames // 5, frames))
