"""``irstd bench --models``: which model each name means, as ``--weights`` would read it
(the benchmark itself: test/tools/test_bench.py)."""

from __future__ import annotations

import pytest
from _support.cli import one_error_line, record_calls, run_cli

from irstd_ros.cli import bench as bench_cli
from irstd_ros.cli.bench import resolve_models_option
from irstd_ros.core.constants import SHIPPED_MODELS
from irstd_ros.errors import ConfigError
from irstd_ros.inference.detector import resolve_model_path

SHIPPED = ", ".join(SHIPPED_MODELS)


@pytest.fixture
def benched(monkeypatch):
    """The configs run_bench was called with (a stub: nothing is measured)."""
    return record_calls(monkeypatch, bench_cli, "run_bench",
                        lambda cfg: {"backends": {"torch-cpu": {}}, "node": None, "models": {}})


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_shipped_name_is_the_checkpoint_weights_loads(name):
    """shipped:NAME is the very file ``--weights NAME`` loads everywhere else."""
    (path,) = resolve_models_option(f"shipped:{name}")
    assert path == str(resolve_model_path(name)) and path.endswith(".safetensors")


def test_shipped_checkpoint_reaches_the_bench_as_a_checkpoint(benched, capsys, monkeypatch):
    from irstd_ros.cli.main import main
    from irstd_ros.tools.bench import resolve_models

    monkeypatch.setattr(bench_cli, "format_table", lambda result: "table")
    assert main(["bench", "--quick", "--no-node", "--models", "shipped:fast,config:fast"]) == 0
    (cfg,) = benched
    fast = str(resolve_model_path("fast"))
    assert cfg.models == [fast, "fast"]
    checkpoint, config = resolve_models(cfg.models)
    assert checkpoint.path == fast and checkpoint.config is None  # the trained weights
    assert config.path is None and config.config == "fast"  # the network, random weights


def test_a_bare_name_of_both_a_config_and_a_shipped_model_is_the_config_and_says_so(capsys, tmp_path, monkeypatch):
    """``--models tiny`` timed the tiny network with random weights, while ``--weights tiny``
    is the shipped checkpoint: the bench says which, and how to name the other; a file
    called tiny here is not read (a bare word is never a file, as for --weights)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("a file called tiny")
    assert resolve_models_option("tiny,lite") == ["tiny", "lite"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # lite is no shipped model's name: no note
    assert "--models tiny is the tiny network with random weights (config:tiny); the shipped " \
           "checkpoint is shipped:tiny" in err


@pytest.mark.parametrize(
    ("models", "words"),
    [
        ("shipped:paper", f"--models shipped:paper: no shipped model 'paper'; the shipped models are {SHIPPED}"),
        ("config:huge", "--models config:huge: unknown config 'huge'; valid: paper"),
        ("nosuch", f"--models nosuch: unknown model; valid: shipped, shipped:NAME ({SHIPPED}), a checkpoint "
                   "file (*.safetensors), or a config name or config:NAME (paper"),
    ],
)
def test_unknown_models_list_every_valid_form(models, words, benched, capsys):
    code, err = run_cli(capsys, "bench", "--quick", "--no-node", "--models", models)
    assert code == 2 and words in one_error_line(err)
    assert not benched


def test_a_checkpoint_file_without_the_safetensors_name_is_told_so(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"--models mymodel: unknown model \(a checkpoint file must be "
                                          r"named \*\.safetensors\)"):
        resolve_models_option("mymodel")


def test_models_help_says_how_each_form_resolves(capsys):
    from _support.cli import run_cli_output

    _, out, _ = run_cli_output(capsys, "bench", "--help")
    text = " ".join(out.split())
    for words in (f"shipped:NAME, the checkpoint --weights NAME loads ({SHIPPED})",
                  "config:NAME or a bare config name, that network with random weights",
                  "A bare word is never a file, and tiny and fast alone are configs, not the shipped checkpoints"):
        assert words in text, text
