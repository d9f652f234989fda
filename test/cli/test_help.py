"""``irstd <command> --help`` as a new user reads it: every option says what it is, the
text is plain (no reST markup from the docstrings used as descriptions), and an option
shared by several commands reads the same in each."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from _support.cli import run_cli_output

from irstd_ros.cli._options import plain_text
from irstd_ros.cli.main import build_parser
from irstd_ros.core.constants import WEIGHTS_HELP


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


SUBPARSERS = _subparsers()
COMMANDS = sorted(SUBPARSERS)


def _option(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return next((a for a in parser._actions if option in a.option_strings), None)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_has_a_help(command):
    """``irstd train`` and ``train-gpu`` had some 25 options each with no help at all, and
    ``envelope``, ``calibrate``, ``generate``... a few."""
    parser = SUBPARSERS[command]
    silent = [a.option_strings[-1] if a.option_strings else a.dest for a in parser._actions
              if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert silent == [], f"irstd {command}: options without a help: {silent}"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_plain_text_without_rest_markup(command, capsys):
    """``irstd demo --help`` and ``load-test --help`` showed ``python -m ...`` and
    ``irstd_node`` with their reST double backquotes (their descriptions are docstrings)."""
    code, out, _ = run_cli_output(capsys, *([command] if command else []), "--help")
    assert code == 0 and out.startswith("usage: irstd")
    assert "`" not in out, out
    for role in (":mod:", ":func:", ":class:", ":data:"):
        assert role not in out, out


def test_demo_and_load_test_descriptions_read_as_plain_text(capsys):
    _, out, _ = run_cli_output(capsys, "demo", "--help")
    assert "python -m irstd_ros.tools.demo (make demo): the whole pipeline" in " ".join(out.split())
    _, out, _ = run_cli_output(capsys, "load-test", "--help")
    assert "Load test of irstd_node: a fast camera in front of a slower node." in out


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("``python -m x`` (``make demo``)", "python -m x (make demo)"),
        ("see :mod:`irstd_ros.tools.demo` and :func:`~irstd_ros.ros.launch_args.node_command`",
         "see irstd_ros.tools.demo and node_command"),
        ("like `ros2 bag record`; names it `hard:`", "like 'ros2 bag record'; names it 'hard:'"),
        ("``a``\n``b``: :py:class:`Thing <irstd_ros.Thing>`", "a\nb: Thing"),
        ("no markup: 5 % of 3 (a, b)", "no markup: 5 % of 3 (a, b)"),
    ],
)
def test_plain_text_shows_rest_markup_bare(text, plain):
    assert plain_text(text) == plain


# --- one wording for one concept ---------------------------------------------------------------


def _helps(option: str) -> dict[str, str]:
    """The help of ``option`` in each command that has it (formatted: defaults filled in)."""
    out = {}
    for command, parser in SUBPARSERS.items():
        action = _option(parser, option)
        if action is not None and action.help:
            out[command] = parser._get_formatter()._expand_help(action)
    return out


def test_weights_reads_the_same_everywhere():
    helps = _helps("--weights")
    assert {"eval", "mine", "envelope", "calibrate", "info", "export", "eval-bag", "demo", "load-test"} <= set(helps)
    assert all(text.endswith(WEIGHTS_HELP) for text in helps.values()), helps


def test_backend_of_the_model_scoring_commands_reads_the_same():
    """eval/mine said 'inference backend (default: the fastest available)', envelope nothing,
    eval-bag 'inference backend for --run-detector'."""
    helps = _helps("--backend")
    shared = {c: helps[c] for c in ("eval", "mine", "envelope", "eval-bag")}
    tails = {text.split(": ", 1)[1] for text in shared.values()}
    assert len(tails) == 1, shared
    (tail,) = tails
    assert tail.startswith("auto (the fastest available here)") and tail.endswith("(default: auto)")
    assert all(text.startswith("inference backend") for text in shared.values())


def test_threads_and_json_read_the_same_everywhere():
    threads = _helps("--threads")
    assert {"eval", "mine", "envelope", "export", "train", "train-gpu"} <= set(threads)
    assert all(text.startswith("CPU threads for ") and "(default: " in text for text in threads.values()), threads
    json_helps = {c: t for c, t in _helps("--json").items() if c != "eval-bag"}  # eval-bag's takes a FILE
    assert {"bench", "eval", "envelope", "export", "info", "load-test"} <= set(json_helps)
    assert all(t.startswith("print ") and t.endswith(" as one JSON object instead of text")
               for t in json_helps.values()), json_helps
    assert "one JSON object" in _helps("--json")["eval-bag"]


def test_method_reads_the_same_in_eval_and_envelope():
    helps = _helps("--method")
    assert helps["eval"] == helps["envelope"] and "tophat" in helps["eval"]


# --- the training options' defaults are the config's ------------------------------------------


def test_train_options_show_the_training_configs_defaults():
    from irstd_ros.training.train import TrainConfig

    helps = _helps
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for option in ("--epochs", "--batch-size", "--crop", "--knee", "--background", "--distill"):
        text = helps(option)["train"]
        value = defaults[option[2:].replace("-", "_")]
        assert text.endswith(f"(default: {value:g})"), (option, text)
    assert helps("--loss")["train"].endswith(f"(default: {defaults['loss']})")
    assert helps("--max-steps")["train"].endswith("default: no limit)")


def test_train_gpu_options_show_the_recipes_defaults():
    """train-gpu's defaults are its recipe's: the help says each recipe's where they differ."""
    from irstd_ros.training.gpu import RECIPES

    text = _helps("--batch-size")["train-gpu"]
    assert text.endswith(f"(default: the recipe's: paper {RECIPES['paper']['batch_size']}, "
                         f"large {RECIPES['large']['batch_size']})"), text
    assert "(default: 120)" in _helps("--save-every-s")["train-gpu"]
    assert _helps("--eval-group")["train-gpu"].endswith("(default: nudt_test)")


def test_shared_training_options_read_the_same_in_train_and_train_gpu():
    train, gpu = SUBPARSERS["train"], SUBPARSERS["train-gpu"]
    for option in ("--model", "--split", "--data", "--out", "--crop", "--seed", "--threshold", "--no-resume"):
        assert _option(train, option).help == _option(gpu, option).help, option


# --- every option with a default value says it ------------------------------------------------


def _config_defaults(config: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def _stated_defaults() -> list[tuple[str, str, str]]:
    """(command, option, the help's tail), the values from the code's own defaults: the
    library configs the CLI fills in (so the help, the CLI and the library agree)."""
    from irstd_ros.bags.record import RecordConfig
    from irstd_ros.bags.render import RenderConfig
    from irstd_ros.bags.replay import ReplayConfig
    from irstd_ros.data.pack import RANDOM_CROPS, TARGET_CROPS
    from irstd_ros.sim.sequence import SequenceConfig
    from irstd_ros.tools.demo import DEFAULT_OUT, DemoConfig

    replay, record = _config_defaults(ReplayConfig), _config_defaults(RecordConfig)
    seq = SequenceConfig()
    return [
        ("replay", "--rate", f"(default: {replay['rate']:g})"),
        ("replay", "--start-offset", f"(default: {replay['start_offset']:g})"),
        ("replay", "--qos", f"(default: {replay['qos']})"),
        ("replay", "--depth", f"(default: {replay['depth']})"),
        ("replay", "--wait-subscribers", f"(default: {replay['wait_subscribers']:g})"),
        ("replay", "--sync-timeout", f"(default: {replay['sync_timeout']:g})"),
        ("replay", "--ack-timeout", f"(default: {replay['ack_timeout']:g})"),
        ("replay", "--remap", "(repeatable; default: none)"),
        ("record", "--discovery-timeout", f"(default: {record['discovery_timeout']:g})"),
        ("record", "--qos", f"(default: {record['qos']})"),
        ("record", "--duration", "(default: no limit)"),
        ("record", "--max-messages", "(default: no limit)"),
        ("record", "--idle-timeout", "(default: never)"),
        ("record", "--queue-size", f"(default: {record['queue_size']})"),
        ("render", "--scale", f"(default: {_config_defaults(RenderConfig)['scale']})"),
        ("render", "--max-frames", "(default: all)"),
        ("generate", "--dim-targets", f"(default: {seq.dim_targets})"),
        ("generate", "--dim-snr", "(default: {}:{})".format(*seq.dim_snr)),
        ("generate", "--crossings", f"(default: {seq.crossings})"),
        ("generate", "--manoeuvres", f"(default: {seq.manoeuvres})"),
        ("generate", "--flicker", f"(default: {seq.flicker_rate:g})"),
        ("generate", "--flicker-snr", "(default: {}:{})".format(*seq.flicker_snr)),
        ("pack", "--target-crops", f"(default: {TARGET_CROPS})"),
        ("pack", "--random-crops", f"(default: {RANDOM_CROPS})"),
        ("demo", "--out", f"(default: {DEFAULT_OUT})"),
        ("demo", "--rate", f"(default: {_config_defaults(DemoConfig)['rate']:g})"),
    ]


@pytest.mark.parametrize(("command", "option", "tail"), _stated_defaults())
def test_option_help_states_its_default(command, option, tail):
    """``irstd replay --rate/--qos/--depth``, ``record``'s, ``render --scale``, ``generate
    --dim-snr/--flicker-snr``, ``pack --target-crops/--random-crops``, ``demo --out/--rate``
    did not say theirs."""
    text = " ".join(_helps(option)[command].split())
    assert text.endswith(tail), (command, option, text)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_with_a_default_value_says_it(command):
    """An option whose default is a value (not None, False or an empty list: nothing given)
    says it in its help; a new one without is caught here."""
    parser = SUBPARSERS[command]
    unsaid = [a.option_strings[-1] for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction)
              and a.default not in (None, False, []) and "default" not in (a.help or "")]
    assert unsaid == [], f"irstd {command}: options not saying their default: {unsaid}"
