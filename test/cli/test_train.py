"""``irstd train`` refuses bad input in one line, before any data is read or any epoch is
trained: ``--out`` that cannot hold the run, out-of-range or non-finite flag values, and
YAML values of the wrong type or range (a numeric string such as ``1e-3`` is read as the
number). The training itself is replaced by a stub that fails the test if reached."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from _support.cli import one_error_line, record_calls, run_cli
from _support.files import KEPT_TEXT, OUT_CASES, bad_output_dir

from irstd_ros.cli import train as train_cli


@pytest.fixture
def trained(monkeypatch):
    """The configs :func:`train` was called with (a stub: nothing is read or trained)."""
    return record_calls(monkeypatch, train_cli, "train", lambda cfg: cfg.out / "model.safetensors")


def _train(capsys, tmp_path, *args):
    return run_cli(capsys, "train", "--data", str(tmp_path / "data"), "--model", "tiny",
                   "--crop", "32", "--device", "cpu", *args)


def test_good_flags_reach_the_training(trained, capsys, tmp_path):
    code, err = _train(capsys, tmp_path, "--out", str(tmp_path / "run"), "--threshold", "0.4",
                       "--lr", "1e-3", "--threads", "1", "--workers", "0", "--generator-frames", "0")
    assert code == 0, err
    (cfg,) = trained
    assert cfg.threshold == 0.4 and cfg.lr == 0.001 and cfg.threads == 1 and cfg.out == tmp_path / "run"


@pytest.mark.parametrize(("args", "expected"), [((), "auto"), (("--eval-split", "val"), "val"),
                                              (("--eval-split", "none"), None)])
def test_eval_split_reaches_the_training(args, expected, trained, capsys, tmp_path):
    code, err = _train(capsys, tmp_path, "--out", str(tmp_path / "run"), *args)
    assert code == 0, err
    (cfg,) = trained
    assert cfg.eval_split == expected


@pytest.mark.parametrize("case", OUT_CASES)
def test_out_that_cannot_hold_the_run_is_refused_before_training(case, trained, capsys, tmp_path, monkeypatch):
    afile, out = bad_output_dir(case, monkeypatch, tmp_path)
    code, err = _train(capsys, tmp_path, "--out", str(out))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd train: error: --out {out}"), line
    assert not trained
    assert afile.read_text() == KEPT_TEXT


BAD_FLAGS = [
    ("crop", "-5"), ("crop", "0"), ("threads", "-1"), ("threads", "0"), ("max-steps", "0"),
    ("minutes", "-1"), ("minutes", "0"), ("distill", "nan"), ("distill", "-0.5"), ("min-lr", "-1"),
    ("generator-frames", "-3"), ("lr", "nan"), ("lr", "inf"), ("lr", "0"), ("workers", "-1"),
    ("threshold", "1.5"), ("threshold", "0"), ("threshold", "1"), ("threshold", "abc"),
    ("epochs", "0"), ("epochs", "2.5"), ("batch-size", "0"), ("seed", "-1"), ("knee", "0"),
    ("background", "-1"), ("samples-per-epoch", "0"), ("generator-weight", "-1"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_FLAGS)
def test_bad_flag_values_are_usage_errors_naming_the_flag(flag, value, trained, capsys, tmp_path):
    code, err = _train(capsys, tmp_path, "--out", str(tmp_path / "run"), f"--{flag}", value)
    assert code == 2
    line = one_error_line(err)
    assert f"argument --{flag}: must be" in line and repr(value) in line, line
    assert not trained


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "mps", "gpu0"])
def test_unknown_device_lists_the_valid_ones(device, trained, capsys, tmp_path):
    code, err = _train(capsys, tmp_path, "--out", str(tmp_path / "run"), "--device", device)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("irstd train: error: device must be one of auto, cpu, cuda, cuda:N"), line
    assert "Traceback" not in err and not trained


def test_crop_below_the_model_stride_is_refused(trained, capsys, tmp_path):
    code, err = _train(capsys, tmp_path, "--out", str(tmp_path / "run"), "--crop", "8")
    assert code == 2 and "crop must be >= 16" in one_error_line(err) and not trained


def test_a_batch_of_one_crop_of_one_stride_is_refused(trained, capsys, tmp_path):
    """tiny's bottleneck of a 16 px crop is 1x1: BatchNorm cannot train on one value per
    channel (a torch ValueError mid-run before)."""
    code, err = _train(capsys, tmp_path, "--out", str(tmp_path / "run"), "--crop", "16", "--batch-size", "1")
    assert code == 2 and "crop >= 32 or batches of >= 2" in one_error_line(err) and not trained


BAD_YAML = [
    ("threshold: abc\n", "threshold must be a number in (0, 1), got 'abc'"),
    ("threshold: 1.5\n", "threshold must be a number in (0, 1), got 1.5"),
    ("lr: abc\n", "lr must be a number > 0, got 'abc'"),
    ("lr: .nan\n", "lr must be a number > 0, got nan"),
    ("sources: 5\n", "sources must be a list of mappings"),
    ("sources: [a, b]\n", "sources must be a list of mappings"),
    ("data: 5\n", "data must be a path"),
    ("epochs: 2.5\n", "epochs must be an integer >= 1, got 2.5"),
    ("epochs: '10 epochs'\n", "epochs must be an integer >= 1"),
    ("threads: 0\n", "threads must be an integer >= 1 or null, got 0"),
    ("workers: -1\n", "workers must be an integer >= 0, got -1"),
    ("bf16: maybe\n", "bf16 must be true or false, got 'maybe'"),
    ("resume: 1\n", "resume must be true or false, got 1"),
    ("crop: true\n", "crop must be an integer >= 1, got True"),
    ("teacher: 5\n", "teacher must be a path or a list of paths"),
    ("implant: [1, 6]\n", "implant must be a mapping"),
    ("scale: [2.0, 0.5]\n", "scale must be [low, high]"),
    ("scale: 2\n", "scale must be [low, high]"),
    ("scale_prob: 1.5\n", "scale_prob must be a number in [0, 1], got 1.5"),
    ("split: [train]\n", "split must be a string"),
    ("device: bogus\n", "device must be one of auto, cpu, cuda, cuda:N, got 'bogus'"),
    ("model: huge\n", "unknown model config 'huge'"),
    ("5: x\n", "unknown training keys ['5']; valid: "),
]


def _config(tmp_path, text):
    """A YAML file of ``text`` after the data, model and crop lines it does not give itself."""
    given = yaml.safe_load(text)
    base = {"data": tmp_path / "data", "model": "tiny", "crop": 32}
    config = tmp_path / "run.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in base.items() if k not in given) + text)
    return config


@pytest.mark.parametrize(("text", "words"), BAD_YAML, ids=[t.strip() for t, _ in BAD_YAML])
def test_bad_yaml_values_are_one_line_naming_the_field(text, words, trained, capsys, tmp_path):
    code, err = run_cli(capsys, "train", "--config", str(_config(tmp_path, text)), "--out", str(tmp_path / "run"))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("irstd train: error: ") and words in line, line
    assert not trained


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [("lr: 1e-3\n", "lr", 0.001), ("min_lr: 1e-6\n", "min_lr", 1e-6), ("minutes: '90'\n", "minutes", 90.0),
     ("epochs: 1e3\n", "epochs", 1000), ("threshold: 5e-1\n", "threshold", 0.5)],
)
def test_numeric_strings_in_yaml_are_read_as_numbers(text, field, value, trained, capsys, tmp_path):
    code, err = run_cli(capsys, "train", "--config", str(_config(tmp_path, text)), "--out", str(tmp_path / "run"))
    assert code == 0, err
    (cfg,) = trained
    got = getattr(cfg, field)
    assert got == pytest.approx(value) and type(got) is type(value)


def test_every_number_flag_checks_its_fields_range():
    """Each numeric flag's argparse type is its field's own check (YAML and flags agree)."""
    from irstd_ros.core.fields import Number
    from irstd_ros.training.train import TRAIN_FIELDS

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    train_cli.register(sub)
    actions = {a.dest: a for a in sub.choices["train"]._actions}
    numbers = [name for name, rule in TRAIN_FIELDS.items() if isinstance(rule, Number) and name in actions]
    assert len(numbers) >= 15
    for name in numbers:
        assert actions[name].type == TRAIN_FIELDS[name].arg, name
    assert actions["init"].type is Path
