"""Bad input to ``irstd``: one readable line and a non-zero exit, never a traceback, and
checked before the long work (no model is loaded or dataset read in these tests)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from _support.cli import one_error_line, run_cli, run_cli_output
from _support.files import unwritable_folder

from irstd_ros.checkpoint import read_info
from irstd_ros.cli import _options
from irstd_ros.cli.main import DEBUG_ENV, main
from irstd_ros.errors import CheckpointError, ConfigError

# --- the top-level net (main.py) ------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        IsADirectoryError(21, "Is a directory", "/some/dir"),
        PermissionError(13, "Permission denied", "/root/x"),
        ValueError("bad value\nspread over lines"),
        MemoryError("bad value\nspread over lines"),  # a size no machine holds: no traceback
    ],
)
def test_os_and_value_errors_are_one_line_with_exit_2(exc, capsys, monkeypatch):
    from irstd_ros.cli import info

    def boom(_args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(info, "run", boom)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code, err = run_cli(capsys, "info")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("irstd info: error: ")
    if isinstance(exc, OSError):
        assert exc.strerror in err and str(exc.filename) in err
    else:
        assert "bad value spread over lines" in err and DEBUG_ENV in err


def test_malformed_yaml_error_escaping_is_one_line(capsys, monkeypatch):
    import yaml

    from irstd_ros.cli import info

    def boom(_args: argparse.Namespace) -> int:
        yaml.safe_load("a: [1\n")
        return 0

    monkeypatch.setattr(info, "run", boom)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code, err = run_cli(capsys, "info")
    assert code == 2 and err.count("\n") == 1 and "malformed YAML" in err


def test_debug_env_reraises_for_the_traceback(monkeypatch):
    from irstd_ros.cli import info

    def boom(_args: argparse.Namespace) -> int:
        raise FileExistsError(17, "File exists", "/x")

    monkeypatch.setattr(info, "run", boom)
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(FileExistsError):
        main(["info"])


def test_ctrl_c_while_the_subcommands_load_is_one_line(capsys, monkeypatch):
    """The parser imports every subcommand (torch...: seconds); Ctrl-C then is no traceback."""
    from irstd_ros.cli import main as cli_main

    def interrupted() -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    try:
        code, err = run_cli(capsys, "info")
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped irstd as a traceback")
    assert code == 130 and err == "irstd: interrupted\n"


def test_sigterm_cleans_up_as_ctrl_c_does(tmp_path):
    """`kill` / `timeout` / a launch system stop a command with SIGTERM: it is handled as
    Ctrl-C (no partial bag left), one line, exit 143; it was Python's default: killed at
    once, the half-written bag left behind."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "bag"
    proc = subprocess.Popen(
        [sys.executable, "-m", "irstd_ros.cli.main", "generate", "--out", str(out), "--frames", "5000",
         "--size", "320x256"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # writing has begun
    assert out.exists(), "generate never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "irstd generate: terminated"
    assert "Traceback" not in err and not out.exists()


# --- options that would be ignored ---------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "envelope"])
@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--weights", "tiny"], "--weights"),
        (["--backend", "openvino"], "--backend"),
        (["--weights", "fast", "--backend", "torch-cpu"], "--weights, --backend"),
    ],
)
def test_tophat_refuses_the_network_s_options(command, options, named, capsys, tmp_path):
    """--method tophat runs no network: a --weights or --backend given with it was ignored,
    and the report read as the named model's."""
    data = ["--data", str(tmp_path)] if command == "eval" else []
    code, err = run_cli(capsys, command, *data, "--method", "tophat", *options, "--out", str(tmp_path / "o"))
    assert code == 2
    assert one_error_line(err) == (
        f"irstd {command}: error: {named}: not with --method tophat (the top-hat reference runs no network)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("option", "value"), [("--weights", "tiny"), ("--backend", "openvino")])
def test_eval_bag_refuses_detector_options_without_run_detector(option, value, capsys, tmp_path):
    """Recorded outputs are scored as recorded: a --weights or --backend was ignored."""
    code, err = run_cli(capsys, "eval-bag", "--truth", str(tmp_path / "t"), "--outputs", str(tmp_path / "o"),
                        option, value)
    assert code == 2
    assert one_error_line(err) == f"irstd eval-bag: error: {option} needs --run-detector"


# --- output paths checked up front -----------------------------------------------------------


def test_output_file_and_dir_helpers(tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    _options.check_output_file(tmp_path / "new" / "deeper" / "out.json", "--out")
    _options.check_output_dir(tmp_path / "new" / "dir", "--out")
    _options.check_output_file(None, "--out")
    with pytest.raises(ConfigError, match="is a directory"):
        _options.check_output_file(tmp_path, "--out")
    with pytest.raises(ConfigError, match="is a file"):
        _options.check_output_dir(a_file, "--out")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        _options.check_output_file(a_file / "sub" / "out.json", "--out")


def test_output_dir_in_a_read_only_folder(tmp_path, monkeypatch):
    ro = unwritable_folder(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="not writable"):
        _options.check_output_dir(ro / "out", "--out")
    with pytest.raises(ConfigError, match="not writable"):
        _options.check_output_file(ro / "out.json", "--out")


def test_an_existing_read_only_output_dir(tmp_path, monkeypatch):
    ro = unwritable_folder(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="directory is not writable"):
        _options.check_output_dir(ro, "--out")


PROC = Path("/proc")


@pytest.mark.skipif(not (PROC / "self").is_dir(), reason="no /proc here")
@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--out", "/proc/irstd-out"],
        ["mine", "--out", "/proc/irstd-out.json"],
        ["envelope", "--out", "/proc/irstd-out"],
        ["generate", "--out", "/proc/irstd-out"],  # before: "No such file or directory: /proc/irstd-out"
        ["record", "--out", "/proc/irstd-out"],
    ],
)
def test_out_under_proc_is_refused_up_front_even_as_root(args, capsys, tmp_path):
    if args[0] in ("eval", "mine"):
        args = [*args, "--data", str(tmp_path)]
    code, err = run_cli(capsys, *args)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd {args[0]}: error: --out /proc/irstd-out")
    assert "/proc is not writable" in line


def test_eval_out_that_is_a_file(capsys, tmp_path):
    a_file = tmp_path / "README.md"
    a_file.write_text("x")
    code, err = run_cli(capsys, "eval", "--data", str(tmp_path), "--out", str(a_file))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("irstd eval: error: --out") and "is a file" in line


def test_mine_out_that_is_a_directory(capsys, tmp_path):
    code, err = run_cli(capsys, "mine", "--data", str(tmp_path), "--out", str(tmp_path))
    assert code == 2 and "--out" in one_error_line(err) and "is a directory" in err


def test_calibrate_out_that_is_a_directory(capsys, tmp_path):
    code, err = run_cli(
        capsys, "calibrate", "--weights", "tiny", "--out", str(tmp_path), "--data", str(tmp_path)
    )
    assert code == 2 and "is a directory" in one_error_line(err)


@pytest.mark.parametrize("command", ["generate", "record"])
def test_bag_out_that_is_a_file(command, capsys, tmp_path):
    """Before: "Not a directory: f" with --overwrite, naming neither the option nor the fix."""
    a_file = tmp_path / "f"
    a_file.write_text("x")
    code, err = run_cli(capsys, command, "--out", str(a_file), "--overwrite")
    assert code == 2
    assert one_error_line(err) == f"irstd {command}: error: --out {a_file}: is a file; give a directory"
    assert a_file.read_text() == "x"


def test_envelope_out_that_is_a_file(capsys, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    code, err = run_cli(capsys, "envelope", "--out", str(a_file))
    assert code == 2 and "is a file" in one_error_line(err)


# --- out-of-range values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["eval", "--threshold", "5"], "--threshold: must be in (0, 1)"),
        (["eval", "--threshold", "0"], "--threshold: must be in (0, 1)"),
        (["eval", "--limit", "0"], "--limit: must be >= 1"),
        (["mine", "--out", "x.json", "--limit", "-3"], "--limit: must be >= 1"),
        (["eval", "--threads", "abc"], "--threads: expected an integer"),
        (["envelope", "--sizes", "foo"], "size 'foo'"),
        (["envelope", "--sizes", "0"], "size '0'"),
        (["envelope", "--width", "10", "--height", "10"], "--width: must be >= 33 px"),
        (["envelope", "--frames", "0"], "--frames: must be >= 1"),
        (["envelope", "--targets", "0"], "--targets: must be >= 1"),
        (["envelope", "--snrs", "6", "-1"], "--snrs: must be > 0"),
        (["envelope", "--snrs", "0"], "--snrs: must be > 0"),
        (["calibrate", "--weights", "tiny", "--out", "o", "--data", "d", "--frames", "0"],
         "--frames: must be >= 1"),
    ],
)
def test_out_of_range_values_are_usage_errors(args, words, capsys, tmp_path):
    if args[0] in ("eval", "mine"):
        args = [*args, "--data", str(tmp_path)]
    code, err = run_cli(capsys, *args)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd {args[0]}: error: argument") and words in line


def test_envelope_config_validates_for_library_callers():
    from irstd_ros.evaluation.envelope import EnvelopeConfig

    EnvelopeConfig().validate()
    for bad, words in (
        ({"width": 10}, "too small"),
        ({"frames": 0}, "frames must be >= 1"),
        ({"snrs": (6.0, -1.0)}, "snrs"),
        ({"sizes": ("point", "foo")}, "size 'foo'"),
        ({"scenes": ("fog",)}, "valid: flat"),
    ):
        with pytest.raises(ConfigError, match=words):
            EnvelopeConfig(**bad).validate()  # type: ignore[arg-type]


# --- train --config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("# Title\n\n`irstd_ros` finds **targets**\n", "malformed YAML (line 3, column 1)"),
        ("a: [1\n", "malformed YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("just a string\n", "expected a mapping"),
        # safe_load keeps the last of a key given twice without a word
        ("epochs: 1\nlr: 0.01\nepochs: 2\n", "malformed YAML (line 3, column 1): duplicate key 'epochs'"),
        ("sources:\n  - root: a\n    weight: 1\n    weight: 2\n", "duplicate key 'weight'"),
    ],
)
def test_train_config_that_is_not_a_yaml_mapping(text, words, capsys, tmp_path):
    config = tmp_path / "README.md"
    config.write_text(text)
    code, err = run_cli(capsys, "train", "--config", str(config))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd train: error: config file {config}") and words in line


def _laughs(levels: int) -> str:
    """``extra`` of YAML aliases of aliases: a few lines standing for 10**levels strings."""
    lines = ["extra:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("extra: &a {self: *a}\n", "a value holds itself"),
        ("scale: &s [*s, 1]\n", "a value holds itself"),
        (_laughs(6), "holds more than 100000 values"),
        ("extra: {a: " + "[" * 2000 + "]" * 2000 + "}\n", "nested more than 32 levels deep"),
        ("extra: {a: " + "[" * 40 + "]" * 40 + "}\n", "nested more than 32 levels deep"),
    ],
    ids=["mapping-holds-itself", "list-holds-itself", "billion-laughs", "2000-deep", "40-deep"],
)
def test_train_config_of_self_holding_huge_or_deep_yaml_is_one_line(text, words, capsys, tmp_path):
    """A YAML alias of its own anchor (copying the config recursed: a RecursionError
    traceback), aliases of aliases (a few lines standing for billions of values: the copy
    took hours and all memory) or lists nested 2000 deep (PyYAML's RecursionError)."""
    config = tmp_path / "hostile.yaml"
    config.write_text(f"data: {tmp_path}\n{text}")
    code, err = run_cli(capsys, "train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd train: error: config file {config}: ") and words in line


def test_a_config_sharing_a_value_by_an_alias_is_read(tmp_path):
    """Aliases as YAML users write them (one value in two places) are no tree problem."""
    from irstd_ros.training.train import read_config

    config = tmp_path / "shared.yaml"
    config.write_text("sensor: &s {row_fpn_prob: 0.2}\nextra: {a: *s, b: *s, c: [*s, *s]}\n")
    assert read_config(config)["extra"]["c"] == [{"row_fpn_prob": 0.2}] * 2


def test_train_config_that_is_a_directory(capsys, tmp_path):
    code, err = run_cli(capsys, "train", "--config", str(tmp_path))
    assert code == 2 and "is a directory" in one_error_line(err)


# --- weights ---------------------------------------------------------------------------------


def test_info_weights_that_is_a_directory(capsys, tmp_path):
    code, err = run_cli(capsys, "info", "--weights", str(tmp_path))
    assert code == 2 and "is a directory" in one_error_line(err)
    with pytest.raises(CheckpointError, match="is a directory"):
        read_info(tmp_path)


def test_calibrate_takes_the_shipped_model_names(monkeypatch, tmp_path):
    from irstd_ros.inference.detector import default_model_path
    from irstd_ros.training import calibrate as calibration

    seen = {}

    class Loaded(Exception):
        pass

    def fake_load(path, *args, **kwargs):  # the fit itself is tested in test/training/test_calibrate.py
        seen["weights"] = path
        raise Loaded

    monkeypatch.setattr(calibration, "load_checkpoint", fake_load)
    with pytest.raises(Loaded):  # through the CLI, as through the library
        main(["calibrate", "--weights", "tiny", "--out", str(tmp_path / "c.safetensors"),
              "--data", str(tmp_path / "data")])  # --out beside the data, not inside it
    assert Path(seen["weights"]) == default_model_path("tiny")


@pytest.mark.parametrize("command", ["soup", "calibrate"])
def test_an_output_over_an_input_checkpoint_is_refused(command, capsys, tmp_path, monkeypatch):
    """`irstd soup A B --out A` replaced the parent checkpoint A by the average (a shipped
    model too, named by its path), and the soup's record of A named a file that no longer
    held it; calibrate --out its own --weights likewise."""
    import shutil

    from irstd_ros.inference.detector import default_model_path
    from irstd_ros.training import calibrate as calibration
    from irstd_ros.training import soup as souping

    def no_work(*_args, **_kwargs):
        raise AssertionError("the inputs were read before the output was checked")

    monkeypatch.setattr(calibration, "load_checkpoint", no_work)
    monkeypatch.setattr(souping, "load_checkpoint", no_work)
    a = tmp_path / "a.safetensors"
    shutil.copy(default_model_path("tiny"), a)
    before = a.read_bytes()
    args = {"soup": ["soup", str(a), "tiny", "--out", str(a)],
            "calibrate": ["calibrate", "--weights", str(a), "--data", str(tmp_path), "--out", str(tmp_path / "." / a.name)]}
    code, err = run_cli(capsys, *args[command])
    assert code == 2 and f"is the input {'checkpoint' if command == 'soup' else '--weights'} {a}" in one_error_line(err)
    assert a.read_bytes() == before


@pytest.mark.parametrize("option", [["--arch", "sgem_unet"], ["--config", "fast"]])
def test_info_refuses_arch_and_config_with_weights(option, capsys):
    """They were ignored: `info --weights tiny --config fast` described tiny."""
    code, err = run_cli(capsys, "info", "--weights", "tiny", *option)
    assert code == 2 and one_error_line(err) == (
        f"irstd info: error: {option[0]}: not with --weights (the checkpoint names its own network)"
    )


def test_info_takes_the_configs_own_architecture(capsys):
    code, out, _ = run_cli_output(capsys, "info", "--config", "tiny", "--json")
    assert code == 0 and json.loads(out)["arch"] == "sgem_unet"


@pytest.mark.parametrize("command", [["generate", "--frames", "2", "--size", "32x32"], ["record", "--duration", "1"]])
def test_an_existing_bag_at_out_names_overwrite(command, capsys, tmp_path):
    """generate and record take --overwrite: the error for an existing --out says so."""
    out = tmp_path / "bag"
    out.mkdir()
    (out / "metadata.yaml").write_text("kept")
    code, err = run_cli(capsys, *command, "--out", str(out))
    line = one_error_line(err)
    assert code == 2 and f"--out {out} exists" in line and "--overwrite" in line
    assert (out / "metadata.yaml").read_text() == "kept"


# --- dataset folders that are files ----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["eval", "--data", "{file}"], "--data"),
        (["mine", "--data", "{file}", "--out", "{tmp}/hard.json"], "--data"),
        (["calibrate", "--weights", "tiny", "--out", "{tmp}/cal.safetensors", "--data", "{file}:train"], "--data"),
        (["train", "--data", "{file}", "--out", "{tmp}/run"], "--data"),
        (["train-gpu", "--data", "{file}", "--out", "{tmp}/run"], "--data"),
        (["pack", "--nudt", "{file}", "--no-sirst", "--out", "{tmp}/pack.npz"], "--nudt"),
        (["pack", "--sirst", "{file}", "--no-nudt", "--out", "{tmp}/pack.npz"], "--sirst"),
        (["export", "--backend", "openvino-bf16", "--nudt", "{file}"], "--nudt"),
        (["export", "--backend", "openvino-int8", "--sirst", "{file}"], "--sirst"),
    ],
)
def test_a_dataset_option_naming_a_file_says_it_is_a_file(command, option, capsys, tmp_path):
    """``irstd eval --data FILE`` said 'dataset folder not found: FILE' (so did every
    dataset option): the path is there, only not a folder."""
    afile = tmp_path / "afile"
    afile.write_text("not a dataset")
    args = [a.format(file=afile, tmp=tmp_path) for a in command]
    code, err = run_cli(capsys, *args)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd {command[0]}: error: {option} {afile}: is a file, not a dataset folder"), line
    assert "not found" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # refused before any output


def test_train_config_data_naming_a_file_names_the_config(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a dataset")
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {afile}\nout: {tmp_path / 'run'}\n")
    code, err = run_cli(capsys, "train", "--config", str(config))
    assert code == 2
    assert one_error_line(err).startswith(f"irstd train: error: --config's data {afile}: is a file")


def test_train_gpu_a_pack_given_as_data_is_told_where_it_goes(capsys, tmp_path):
    pack = tmp_path / "irstd_pack.npz"
    pack.write_bytes(b"")
    code, err = run_cli(capsys, "train-gpu", "--data", str(pack), "--out", str(tmp_path / "run"))
    assert code == 2
    assert one_error_line(err).endswith("is a file, not a dataset folder (the folder holding images/ and "
                                        "masks/); a pack (irstd pack) goes to --pack")


@pytest.mark.parametrize(
    ("param", "line"),
    [
        ("model.threads:=true", "argument --param: model.threads must be an int"),
        ("detection.threshold:=true", "argument --param: detection.threshold must be a float"),
        ("model.cuda_graphs:=3", "argument --param: model.cuda_graphs must be a bool"),
    ],
)
def test_load_test_param_of_the_wrong_type_reads_with_its_article(param, line, capsys):
    """``irstd load-test --param qos.depth:=true`` said 'qos.depth must be a int'."""
    code, err = run_cli(capsys, "load-test", "--param", param)
    assert code == 2 and one_error_line(err) == f"irstd load-test: error: {line} (see irstd load-test --help)", err


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("model.path", True, "model.path must be a string"),  # the node's own check (a YAML file's true)
    ("model.threads", False, "model.threads must be an int"),
])
def test_node_param_type_error_reads_with_its_article(name, value, reason):
    from irstd_ros.ros.params import validate

    assert validate(name, value, {}) == reason


def test_load_test_unknown_backend_is_refused_before_the_node_starts(capsys, monkeypatch):
    """It was passed on as model.backend: the node started (seconds), then refused it."""
    from irstd_ros.tools import load_test

    monkeypatch.setattr(load_test, "run_load_test", lambda *a, **k: pytest.fail("the node was started"))
    code, err = run_cli(capsys, "load-test", "--backend", "foo")
    line = one_error_line(err)
    assert code == 2 and "model.backend must be one of auto, cpu" in line and "got 'foo'" in line
