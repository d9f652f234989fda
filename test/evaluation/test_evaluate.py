import json

import numpy as np
import pytest
import torch
from _support.datasets import write_dataset

from irstd_ros.checkpoint import CheckpointInfo, InputNorm, save_checkpoint
from irstd_ros.evaluation.evaluate import EvalConfig, HardCases, evaluate, plot_roc, roc_points
from irstd_ros.evaluation.metrics import match_components
from irstd_ros.models import build_model, named_config


def dataset(root, n=3, split="test"):
    frames = []
    for i in range(n):
        img = np.full((24, 40), 30, np.uint8)
        img[10:12, 5 + 10 * i : 7 + 10 * i] = 250
        frames.append((str(i), img, img > 200))
    return write_dataset(root, frames, {split: [str(i) for i in range(n)]})


def zero_model(tmp_path):
    """A tiny net with all weights zero: logit 0, p = 0.5 at every pixel."""
    model = build_model(named_config("tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    path = tmp_path / "zero.safetensors"
    save_checkpoint(path, model, CheckpointInfo(named_config("tiny"), InputNorm(0.5, 1.0), 0.5))
    return path


def test_eval_writes_report_plots_and_consistent_metrics(tmp_path):
    root = dataset(tmp_path / "d")
    weights = zero_model(tmp_path)
    report = evaluate(EvalConfig(data=root, weights=weights, out=tmp_path / "out", threshold=0.4))
    # zero weights: logit 0 everywhere, p = 0.5 > 0.4, the whole frame is one prediction
    assert report["images"] == 3 and report["targets"] == 3
    assert report["recall"] == 1.0
    assert report["iou"] == report["precision"] < 0.01
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["iou"] == report["iou"]
    assert len(saved["curve"]) == len(EvalConfig(data=root).thresholds)
    for name in ("roc.png", "hardest.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_hard_cases_score_a_miss_by_the_network_there_not_by_a_detected_neighbour():
    # frame "beside": a miss (p 0.1 there) 10 px from a detected target (p 0.99), inside
    # one crop; frame "alone": a near miss (p 0.4). The hardest miss is the first.
    x = np.zeros((64, 64), np.float32)
    beside, alone = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    beside[30, 30] = beside[30, 40] = alone[30, 30] = True
    p_beside, p_alone = np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32)
    p_beside[30, 30], p_beside[30, 40], p_alone[30, 30] = 0.1, 0.99, 0.4
    hard = HardCases(1)
    for name, truth, prob in (("beside", beside, p_beside), ("alone", alone, p_alone)):
        hard.add(name, x, truth, prob, 0.5, match_components(prob > 0.5, truth))
    assert [r.label for r in hard.rows()] == ["beside miss p=0.10"]


def _no_model(cfg):
    raise AssertionError("the model was loaded before the dataset was checked")


def test_a_missing_dataset_is_refused_before_the_model_is_loaded(tmp_path, monkeypatch):
    """It loaded the checkpoint and built the backend first (an OpenVINO export into the
    user's cache, seconds) and only then said the folder was not there."""
    from irstd_ros.errors import DatasetError
    from irstd_ros.evaluation import evaluate as evaluate_module
    from irstd_ros.evaluation import mining

    monkeypatch.setattr(evaluate_module, "build_scorer", _no_model)
    monkeypatch.setattr(mining, "build_scorer", _no_model)
    missing = EvalConfig(data=tmp_path / "missing", out=None)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        evaluate(missing)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        mining.mine_hard_examples(missing)


class NaNBackend:
    """A backend whose output overflowed: NaN at every pixel."""

    name = "nan"

    def predict(self, x):
        return np.full(x.shape, np.nan, np.float32)


def test_nan_probabilities_are_an_error_not_silent_background(tmp_path, monkeypatch):
    """``NaN > threshold`` is False: eval reported Pd 0 and no false alarm, and mining no
    hard example, for a network that gave nothing but NaN."""
    from irstd_ros.errors import BackendError
    from irstd_ros.evaluation import evaluate as evaluate_module
    from irstd_ros.evaluation import mining

    def nan_scorer(cfg):
        return NaNBackend(), InputNorm(0.5, 1.0), 0.5, {"method": "network"}

    monkeypatch.setattr(evaluate_module, "build_scorer", nan_scorer)
    monkeypatch.setattr(mining, "build_scorer", nan_scorer)
    cfg = EvalConfig(data=dataset(tmp_path / "d"), out=None)
    with pytest.raises(BackendError, match=r"0\.png: 960 of 960 probabilities are NaN"):
        evaluate(cfg)
    with pytest.raises(BackendError, match="NaN or infinite"):  # mining: a training split
        mining.mine_hard_examples(EvalConfig(data=dataset(tmp_path / "m", split="train"), split="train", out=None))


def test_the_network_s_report_shows_the_top_hat_on_the_same_frames(tmp_path, capsys):
    """The top-hat reference needed a second run (`--method tophat`) and a table made by
    hand: issue 9 asks that every report show what the network adds over it."""
    from _support.cli import run_cli_output

    root = dataset(tmp_path / "d")
    weights = zero_model(tmp_path)
    report = evaluate(EvalConfig(data=root, weights=weights, out=None, threshold=0.4))
    alone = evaluate(EvalConfig(data=root, method="tophat", out=None))
    ref = report["reference"]
    assert ref["method"] == "tophat" and ref["threshold"] == alone["threshold"] == 0.5
    for key in ("iou", "pd", "fa", "false_targets_per_frame", "images", "targets"):
        assert ref[key] == alone[key], key
    assert ref["targets"] == 3 and ref["images"] == 3
    assert "reference" not in alone  # the reference's own report has none
    assert "reference" not in evaluate(EvalConfig(data=root, weights=weights, out=None, reference=False))

    code, out, _ = run_cli_output(capsys, "eval", "--data", str(root), "--weights", str(weights),
                                  "--out", str(tmp_path / "o"), "--backend", "torch-cpu")
    assert code == 0 and "tophat reference: iou " in out
    code, out, _ = run_cli_output(capsys, "eval", "--data", str(root), "--weights", str(weights),
                                  "--out", str(tmp_path / "o2"), "--backend", "torch-cpu", "--no-reference")
    assert code == 0 and "tophat reference" not in out


def test_eval_runs_on_the_cores_available_not_the_host_s(tmp_path, monkeypatch):
    """Without --threads the backend took its library's default (the host's cores), not
    the process's: under a container's CPU quota that oversubscribes it."""
    from irstd_ros.evaluation import evaluate as ev

    seen = []
    real = ev.create_backend
    monkeypatch.setattr(ev, "available_cores", lambda: 1)
    monkeypatch.setattr(ev, "create_backend", lambda name, m, i, options: seen.append(options.threads) or real(name, m, i, options))
    ev.build_scorer(EvalConfig(data=tmp_path, weights=zero_model(tmp_path), backend="torch-cpu"))
    ev.build_scorer(EvalConfig(data=tmp_path, weights=zero_model(tmp_path), backend="torch-cpu", threads=2))
    assert seen == [1, 2]


def test_the_roc_draws_fa_0_flagged_below_the_measured_and_says_when_pd_is_undefined(tmp_path):
    """Fa 0 was drawn as a measured point at 1e-9; a background-only set gave empty axes."""
    curve = [{"threshold": t, "pd": p, "fa": f} for t, p, f in ((0.3, 0.9, 2e-6), (0.5, 0.8, 1e-5), (0.9, 0.5, 0.0))]
    rows, fa, zero = roc_points(curve)
    assert fa == [2e-6, 1e-5, 2e-7] and zero == [False, False, True]
    assert roc_points([{"threshold": 0.5, "pd": 1.0, "fa": 0.0}])[1] == [1e-10]  # nothing measured
    background_only = [{"threshold": 0.5, "pd": None, "fa": 0.0}]
    assert roc_points(background_only)[0] == []
    for name, c in (("roc.png", curve), ("bg.png", background_only)):
        plot_roc(c, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 0


def test_the_printed_summary_says_what_was_scored(tmp_path, capsys):
    """The summary never said how many images and targets it scored, nor that split all
    took every image of a folder without a list."""
    from _support.cli import run_cli_output

    root = dataset(tmp_path / "d")
    base = ["eval", "--data", str(root), "--method", "tophat", "--no-reference", "--threads", "1"]
    code, out, _ = run_cli_output(capsys, *base, "--out", str(tmp_path / "o1"))
    assert code == 0 and out.splitlines()[0] == f"3 images, 3 targets (split test: {root / 'test.txt'})"
    (root / "test.txt").unlink()
    code, out, _ = run_cli_output(capsys, *base, "--split", "all", "--out", str(tmp_path / "o2"), "--limit", "1")
    assert code == 0 and out.splitlines()[0] == "1 image, 1 target (split all: every image, no list, --limit 1)"
    code, out, _ = run_cli_output(capsys, *base, "--split", "all", "--out", str(tmp_path / "o3"), "--json")
    summary = json.loads(out)
    assert (summary["images"], summary["targets"], summary["split_list"]) == (3, 3, None)
