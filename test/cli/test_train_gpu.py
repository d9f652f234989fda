"""``irstd train-gpu`` refuses bad input in one line before any data is read: ``--out`` that
cannot hold the run, out-of-range or non-finite flags, YAML values of the wrong type or range
and a ``--config`` that is not a YAML mapping. The training is a stub that fails if reached."""

from __future__ import annotations

import pytest
from _support.cli import one_error_line, record_calls, run_cli
from _support.files import KEPT_TEXT, OUT_CASES, bad_output_dir

from irstd_ros.cli import train_gpu as train_gpu_cli


@pytest.fixture
def trained(monkeypatch):
    """The configs :func:`train_gpu` was called with (a stub: nothing is read or trained)."""
    return record_calls(monkeypatch, train_gpu_cli, "train_gpu", lambda cfg: {"out": str(cfg.out)})


def _train_gpu(capsys, tmp_path, *args):
    return run_cli(capsys, "train-gpu", "--data", str(tmp_path / "data"), "--model", "tiny",
                   "--crop", "32", "--device", "cpu", *args)


def test_good_flags_reach_the_training(trained, capsys, tmp_path):
    code, err = _train_gpu(capsys, tmp_path, "--out", str(tmp_path / "run"), "--threshold", "0.4",
                           "--warmup-epochs", "0", "--save-every-s", "0", "--eval-batch", "2")
    assert code == 0, err
    (cfg,) = trained
    assert cfg.threshold == 0.4 and cfg.save_every_s == 0.0 and cfg.eval_batch == 2


@pytest.mark.parametrize("case", OUT_CASES)
def test_out_that_cannot_hold_the_run_is_refused_before_training(case, trained, capsys, tmp_path, monkeypatch):
    afile, out = bad_output_dir(case, monkeypatch, tmp_path)
    code, err = _train_gpu(capsys, tmp_path, "--out", str(out))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd train-gpu: error: --out {out}"), line
    assert not trained
    assert afile.read_text() == KEPT_TEXT


@pytest.mark.parametrize(
    ("flag", "value"),
    [("crop", "-5"), ("threads", "0"), ("threads", "-1"), ("max-steps", "0"), ("minutes", "-1"),
     ("min-lr", "-1"), ("lr", "nan"), ("lr", "inf"), ("threshold", "1.5"), ("threshold", "abc"),
     ("warmup-epochs", "-1"), ("save-every-s", "nan"), ("eval-batch", "0"), ("weight-decay", "-1"),
     ("epochs", "0"), ("batch-size", "-8"), ("seed", "-1")],
)
def test_bad_flag_values_are_usage_errors_naming_the_flag(flag, value, trained, capsys, tmp_path):
    code, err = _train_gpu(capsys, tmp_path, "--out", str(tmp_path / "run"), f"--{flag}", value)
    assert code == 2
    line = one_error_line(err)
    assert f"argument --{flag}: must be" in line and repr(value) in line, line
    assert not trained


def test_unknown_device_lists_the_valid_ones(trained, capsys, tmp_path):
    code, err = _train_gpu(capsys, tmp_path, "--out", str(tmp_path / "run"), "--device", "bogus")
    assert code == 2
    assert one_error_line(err) == ("irstd train-gpu: error: device must be one of auto, cpu, cuda, cuda:N, "
                                   "got 'bogus'")
    assert not trained


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("threshold: abc\n", "threshold must be a number in (0, 1), got 'abc'"),
        ("lr: abc\n", "lr must be a number > 0, got 'abc'"),
        ("train_groups: nudt_train\n", "train_groups must be a non-empty list of names"),
        ("eval_batch: 0\n", "eval_batch must be an integer >= 1, got 0"),
        ("compile: sometimes\n", "compile must be true or false"),
        ("recipe: [paper]\n", "unknown recipe ['paper']"),
        ("- a\n- b\n", "expected a mapping of training options"),
        ("a: [1\n", "malformed YAML"),
        ("wieght_decay: 0.1\n", "unknown training keys ['wieght_decay'] (did you mean 'wieght_decay' -> 'weight_decay'?)"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_field(text, words, trained, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    code, err = _train_gpu(capsys, tmp_path, "--config", str(config), "--out", str(tmp_path / "run"))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("irstd train-gpu: error: ") and words in line, line
    assert not trained


def test_numeric_strings_in_yaml_are_read_as_numbers(trained, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lr: 3e-4\nmin_lr: 1e-6\nsave_every_s: '60'\n")
    code, err = _train_gpu(capsys, tmp_path, "--config", str(config), "--out", str(tmp_path / "run"))
    assert code == 0, err
    (cfg,) = trained
    assert (cfg.lr, cfg.min_lr, cfg.save_every_s) == (pytest.approx(3e-4), pytest.approx(1e-6), 60.0)


def test_config_that_is_a_directory(trained, capsys, tmp_path):
    code, err = _train_gpu(capsys, tmp_path, "--config", str(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 2 and "is a directory" in one_error_line(err) and not trained


@pytest.mark.parametrize(("flags", "recipe", "batch"), [((), "large", 64), (("--recipe", "paper"), "paper", 8)])
def test_the_recipe_flag_overrides_the_yaml_s(flags, recipe, batch, trained, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("recipe: large\n")
    code, err = _train_gpu(capsys, tmp_path, "--config", str(config), "--out", str(tmp_path / "run"), *flags)
    assert code == 0, err
    (cfg,) = trained
    assert (cfg.recipe, cfg.batch_size) == (recipe, batch)
