"""``irstd bench --models``: which model each name means, as ``--weights`` would read it
(the benchmark itself: test/tools/test_bench.py)."""

from __future__ import annotations

import pytest
from _support.cli import one_error_line, record_calls, run_cli

from irstd_ros.cli import bench as bench_cli
from irstd_ros.core.constants import SHIPPED_MODELS
from irstd_ros.inference.detector import resolve_model_path

SHIPPED = ", ".join(SHIPPED_MODELS)


@pytest.fixture
def benched(monkeypatch):
    """The configs run_bench was called with (a stub: nothing is measured)."""
    return record_calls(monkeypatch, bench_cli, "run_bench",
                        lambda cfg: {"backends": {"torch-cpu": {}}, "node": None, "models": {}})


def test_shipped_checkpoint_reaches_the_bench_as_a_checkpoint(benched, capsys, monkeypatch):
    from irstd_ros.cli.main import main
    from irstd_ros.tools.bench import resolve_models

    monkeypatch.setattr(bench_cli, "format_table", lambda result: "table")
    assert main(["bench", "--quick", "--no-node", "--models", "shipped:fast,config:fast"]) == 0
    (cfg,) = benched
    fast = str(resolve_model_path("fast"))
    assert cfg.models == ["shipped:fast", "config:fast"]  # as given: the bench resolves them
    checkpoint, config = resolve_models(cfg.models)
    assert checkpoint.path == fast and checkpoint.config is None  # the trained weights
    assert config.path is None and config.config == "fast"  # the network, random weights


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


def test_models_help_says_how_each_form_resolves(capsys):
    from _support.cli import run_cli_output

    _, out, _ = run_cli_output(capsys, "bench", "--help")
    text = " ".join(out.split())
    for words in (f"shipped:NAME, the checkpoint --weights NAME loads ({SHIPPED})",
                  "config:NAME or a bare config name, that network with random weights",
                  "A bare word is never a file, and tiny and fast alone are configs, not the shipped checkpoints"):
        assert words in text, text
