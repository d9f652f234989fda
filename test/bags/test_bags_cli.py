"""The bag subcommands as a user runs them: outputs, JSON, one-line errors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
from _support.cli import run_cli_output

from irstd_ros.bags.io import BagReader
from irstd_ros.cli.main import main


def test_generate_eval_render_chain(tmp_path, capsys, monkeypatch):
    bag = tmp_path / "seq"
    code, out, _ = run_cli_output(
        capsys,
        "generate",
        "--out",
        str(bag),
        "--scene",
        "sea",
        "--frames",
        "5",
        "--size",
        "64x48",
        "--bit-depth",
        "16",
        "--storage",
        "sqlite3",
        "--seed",
        "3",
        "--snr",
        "6:9",
        "--targets",
        "2",
    )
    assert code == 0 and "5 frames" in out
    assert (bag / "bag.db3").is_file() or any(bag.glob("*.db3"))
    with BagReader(bag) as r:
        (_, _, img), *_ = list(r.messages(["/camera/image"]))
    assert (img.width, img.height, img.encoding) == (64, 48, "mono16")

    # eval-bag and render with the bag's own truth as "outputs": perfect scores
    from irstd_ros.bags import evaluate as ev
    from irstd_ros.bags import render as rd

    def truth_as_outputs(reader, exclude=(), *_a):
        return {"mask": "/camera/truth/mask", "targets": None, "detections": "/camera/truth/targets"}

    monkeypatch.setattr(ev, "find_output_topics", truth_as_outputs)
    monkeypatch.setattr(rd, "find_output_topics", truth_as_outputs)
    code, out, _ = run_cli_output(
        capsys,
        "eval-bag",
        "--truth",
        str(bag),
        "--outputs",
        str(bag),
        "--json",
        "--plot",
        str(tmp_path / "p.png"),
    )
    assert code == 0
    result = json.loads(out)
    assert result["pd"] == 1.0 and result["fa"] == 0.0 and result["frames"] == 5
    assert (tmp_path / "p.png").is_file()
    code, out, _ = run_cli_output(capsys, "eval-bag", "--truth", str(bag), "--outputs", str(bag))
    assert code == 0 and "Pd" in out and "1.0000" in out

    code, out, _ = run_cli_output(
        capsys,
        "render",
        str(bag),
        "--outputs",
        str(bag),
        "--out",
        str(tmp_path / "v.gif"),
        "--sheet",
        str(tmp_path / "s.png"),
    )
    assert code == 0 and len(list(iio.imiter(tmp_path / "v.gif"))) == 5
    assert (tmp_path / "s.png").is_file()


def test_generate_refuses_to_overwrite_in_one_line(tmp_path, capsys):
    bag = tmp_path / "seq"
    assert run_cli_output(capsys, "generate", "--out", str(bag), "--frames", "1", "--size", "32x32")[0] == 0
    code, _, err = run_cli_output(capsys, "generate", "--out", str(bag), "--frames", "1", "--size", "32x32")
    assert code == 2 and err.count("\n") == 1 and "exists" in err
    code, _, _ = run_cli_output(
        capsys, "generate", "--out", str(bag), "--frames", "1", "--size", "32x32", "--overwrite"
    )
    assert code == 0


def test_generate_tracking_scenarios_give_truth_ids_in_order(tmp_path, capsys):
    bag = tmp_path / "scen"
    args = ["--out", str(bag), "--frames", "12", "--size", "160x128", "--targets", "1"]
    args += ["--no-enter-leave", "--dim-targets", "1", "--crossings", "1", "--manoeuvres", "1"]
    code, _, _ = run_cli_output(capsys, "generate", *args, "--flicker", "2", "--seed", "2")
    assert code == 0
    with BagReader(bag) as r:
        cfg = json.loads(r.custom_data["irstd_ros.sequence"])
        ids = {d.id for _, _, m in r.messages(["/camera/truth/targets"]) for d in m.detections}
    assert (cfg["crossings"], cfg["manoeuvres"], cfg["flicker_rate"]) == (1, 1, 2.0)
    assert ids == {"0", "1", "2", "3", "4"}  # plain, dim, crossing pair, manoeuvring


def test_eval_bag_candidates_follow_the_node_default_with_run_detector(capsys, monkeypatch):
    from irstd_ros.cli import eval_bag

    seen: list = []
    monkeypatch.setattr(eval_bag, "evaluate_bag", lambda cfg: seen.append(cfg) or {})
    for src in (["--run-detector"], ["--outputs", "o"], ["--run-detector", "--candidate-threshold", "0"]):
        assert run_cli_output(capsys, "eval-bag", "--truth", "t", *src, "--json")[0] == 0
    assert [c.candidate_threshold for c in seen] == [eval_bag.OWN_THRESHOLD, 0.0, 0.0]


def test_eval_bag_gated_threshold_and_long_coast_follow_the_node_defaults(capsys, monkeypatch):
    from irstd_ros.cli import eval_bag
    from irstd_ros.tracking.tracker import TrackerConfig

    seen: list = []
    monkeypatch.setattr(eval_bag, "evaluate_bag", lambda cfg: seen.append(cfg) or {})
    for src in (
        ["--run-detector"],
        ["--outputs", "o"],
        ["--run-detector", "--gated-threshold", "0", "--max-coast-long-s", "0"],
    ):
        assert run_cli_output(capsys, "eval-bag", "--truth", "t", *src, "--json")[0] == 0
    assert [c.gated_threshold for c in seen] == [eval_bag.OWN_THRESHOLD, 0.0, 0.0]
    long_s = TrackerConfig().max_coast_long_s
    assert [c.tracker for c in seen[:2]] == [None, None]  # not given: the node's defaults
    assert [(c.tracker or TrackerConfig()).max_coast_long_s for c in seen] == [long_s, long_s, 0.0]


def test_eval_bag_tracker_thresholds_can_name_the_models_own(capsys, monkeypatch):
    from irstd_ros.cli import eval_bag
    from irstd_ros.core.constants import OWN_THRESHOLD

    seen: list = []
    monkeypatch.setattr(eval_bag, "evaluate_bag", lambda cfg: seen.append(cfg) or {})
    for cand, gated in (("own", "0.1"), ("0.3", "OWN"), ("own", "0")):
        args = ["--truth", "t", "--run-detector", "--json"]
        args += ["--candidate-threshold", cand, "--gated-threshold", gated]
        assert run_cli_output(capsys, "eval-bag", *args)[0] == 0
    pairs = [(c.candidate_threshold, c.gated_threshold) for c in seen]
    assert pairs == [(OWN_THRESHOLD, 0.1), (0.3, OWN_THRESHOLD), (OWN_THRESHOLD, 0.0)]


@pytest.mark.parametrize(
    "flag, value, message",
    [("--candidate-threshold", "1.5", "or 'own' for the model's own, got 1.5"),
     ("--gated-threshold", "abc", "expected a number, got 'abc'")],
)
def test_eval_bag_refuses_a_bad_tracker_threshold(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:  # argparse: usage, then the one error line
        main(["eval-bag", "--truth", "t", "--run-detector", flag, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--out", "x", "--size", "big"], "WIDTHxHEIGHT"),
        (["generate", "--out", "x", "--snr", "a:b"], "LO:HI"),
        (["eval-bag", "--truth", "missing", "--outputs", "missing2"], "not found"),
        (["render", "missing", "--out", "v.mp4"], "not found"),
        (["render", "missing", "--out", "v.avi"], ".mp4"),
    ],
)
def test_errors_are_one_readable_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli_output(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_json_to_a_file(tmp_path, capsys, tiny_bag, monkeypatch):
    from irstd_ros.bags import evaluate as ev

    monkeypatch.setattr(
        ev,
        "find_output_topics",
        lambda reader, exclude=(), *_a: {
            "mask": "/camera/truth/mask",
            "targets": None,
            "detections": None,
        },
    )
    code, out, _ = run_cli_output(
        capsys,
        "eval-bag",
        "--truth",
        str(tiny_bag),
        "--outputs",
        str(tiny_bag),
        "--json",
        str(tmp_path / "m.json"),
    )
    assert code == 0 and "Pd" in out
    assert json.loads((tmp_path / "m.json").read_text())["pd"] == 1.0
