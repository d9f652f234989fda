"""The ``irstd`` command as a user runs it: JSON output, one-line errors, exit codes."""

import json
import subprocess
import sys

import pytest
from _support.cli import run_cli_output

PAPER_PARAMS = 8.69e6
PAPER_GMACS = 15.92


def test_info_json_gives_the_paper_size(capsys):
    code, out, _ = run_cli_output(capsys, "info", "--arch", "sgem_unet", "--json")
    assert code == 0
    info = json.loads(out)
    assert abs(info["params"] - PAPER_PARAMS) / PAPER_PARAMS < 0.03
    assert abs(info["gmacs_256"] - PAPER_GMACS) / PAPER_GMACS < 0.05


def test_unknown_config_is_one_readable_line(capsys):
    code, _, err = run_cli_output(capsys, "info", "--config", "huge")
    assert code == 2
    assert err.strip().count("\n") == 0 and "valid:" in err


def test_wrong_dataset_path_exits_non_zero_with_one_line(capsys, tmp_path):
    code, _, err = run_cli_output(capsys, "eval", "--data", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert code == 2
    assert err.startswith("irstd eval: error: dataset folder not found")
    code, _, err = run_cli_output(capsys, "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert code == 2 and "not found" in err


def test_missing_weights_is_one_line(capsys, tmp_path):
    import numpy as np
    from _support.datasets import write_dataset

    frame = np.zeros((16, 16), np.uint8)
    data = write_dataset(tmp_path / "d", [("a", frame, frame > 0)], {"test": ["a"]})  # a valid set
    code, _, err = run_cli_output(
        capsys, "eval", "--data", str(data), "--weights", str(tmp_path / "w.safetensors")
    )
    assert code == 2 and err.count("\n") == 1 and "model file not found" in err



@pytest.mark.parametrize("command", [["info"], ["export", "--backend", "openvino"]])
def test_a_misspelt_shipped_model_names_the_shipped_ones(command, capsys, monkeypatch, tmp_path):
    from irstd_ros.core.constants import SHIPPED_MODELS

    monkeypatch.chdir(tmp_path)  # no file of that name here
    code, _, err = run_cli_output(capsys, *command, "--weights", "tinyy")
    assert code == 2 and err.count("\n") == 1, err
    assert "model file not found: tinyy" in err and all(name in err for name in SHIPPED_MODELS), err

def test_console_script_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "irstd_ros.cli.main", "info", "--config", "tiny", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["config"] == "tiny"


@pytest.mark.parametrize("sub", ["train", "eval", "info"])
def test_help_of_each_subcommand(sub, capsys):
    code, out, _ = run_cli_output(capsys, sub, "--help")
    assert code == 0
    assert out.startswith(f"usage: irstd {sub} [-h]"), out


def test_info_text_of_a_checkpoint_says_what_it_is(capsys, tmp_path):
    """Without --json a checkpoint's architecture and thresholds are shown, not only its size."""
    from irstd_ros.checkpoint import CheckpointInfo, save_checkpoint
    from irstd_ros.models import build_model, named_config

    cfg = named_config("tiny")
    path = save_checkpoint(tmp_path / "w.safetensors", build_model(cfg).eval(), CheckpointInfo(cfg, threshold=0.375))
    code, out, _ = run_cli_output(capsys, "info", "--weights", str(path))
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert lines["arch"] == "sgem_unet" and lines["threshold"] == "0.375" and int(lines["params"]) > 0


def test_info_refuses_weights_that_are_not_of_the_network_their_metadata_names(capsys, tmp_path):
    """Before, ``info`` read the metadata only and described a 'paper' network (its size and
    GMACs) for a file holding a tiny one's tensors, which every other command refuses."""
    from safetensors.torch import save_file

    from irstd_ros.checkpoint import METADATA_KEY, CheckpointInfo
    from irstd_ros.models import build_model, named_config

    path = tmp_path / "w.safetensors"
    save_file(build_model(named_config("tiny")).state_dict(), str(path),
              metadata={METADATA_KEY: CheckpointInfo(named_config("paper")).to_json()})
    code, out, err = run_cli_output(capsys, "info", "--weights", str(path), "--json")
    assert code == 2 and out == ""
    assert err.startswith(f"irstd info: error: model file {path} does not match its config")
