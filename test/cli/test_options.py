"""The shared option checks of :mod:`irstd_ros.cli._options` and the commands that use
them: an output never at or inside an input, ``--weights ''`` as the default model, a
missing (default, relative) dataset named with where it was looked up, before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _support.cli import one_error_line, run_cli, run_cli_output
from _support.datasets import write_dataset

from irstd_ros.cli import _options
from irstd_ros.core.constants import DEFAULT_SHIPPED_MODEL
from irstd_ros.data.pack import DEFAULT_NUDT
from irstd_ros.errors import ConfigError


def _no_work(*_args, **_kwargs):
    raise AssertionError("the work started before the paths were checked")


def _dataset(root: Path) -> Path:
    frame = np.zeros((8, 8), np.uint8)
    return write_dataset(root, [("a", frame, frame)], {"train": ["a"]})


# --- check_distinct_paths: outputs against each other and the inputs ----------------------------


def test_an_output_at_or_inside_an_input_is_refused_naming_both(tmp_path):
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("x")
    weights = tmp_path / "w.safetensors"
    weights.write_text("x")
    inputs = [(bag, "--truth"), (None, "--outputs"), (weights, "--weights")]
    with pytest.raises(ConfigError) as inside:
        _options.check_distinct_paths([(bag / "metadata.yaml", "--json")], inputs)
    assert str(inside.value) == (f"--json {bag / 'metadata.yaml'} lies inside the input --truth {bag}; "
                                 "give a path outside the inputs")
    with pytest.raises(ConfigError, match=r"--plot .*/bag/\.\./w\.safetensors is the input --weights .*w\.safetensors"):
        _options.check_distinct_paths([(bag / ".." / "w.safetensors", "--plot")], inputs)
    with pytest.raises(ConfigError, match="--save-outputs .* lies inside the input --truth"):
        _options.check_distinct_paths([(bag / "new" / "bag", "--save-outputs")], inputs)


def test_an_unrelated_existing_output_is_allowed(tmp_path):
    """--out names the file to write: one that exists outside the inputs is overwritten."""
    old = tmp_path / "old.json"
    old.write_text("{}")
    _options.check_distinct_paths([(old, "--out")], [(tmp_path / "data", "--data"), (tmp_path / "dataset", "--nudt")])


# --- every command with inputs and an output file ---------------------------------------------


def test_mine_out_inside_the_dataset_is_refused_and_the_mask_kept(capsys, tmp_path, monkeypatch):
    """`irstd mine --data D --out D/masks/a.png` replaced a mask of the dataset by JSON."""
    monkeypatch.setattr("irstd_ros.cli.mine.mine_hard_examples", _no_work)
    data = _dataset(tmp_path / "data")
    mask = data / "masks" / "a.png"
    before = mask.read_bytes()
    code, err = run_cli(capsys, "mine", "--data", str(data), "--out", str(mask))
    assert code == 2
    assert one_error_line(err) == (f"irstd mine: error: --out {mask} lies inside the input --data {data}; "
                                   "give a path outside the inputs")
    assert mask.read_bytes() == before


def test_calibrate_out_inside_a_data_root_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("irstd_ros.cli.calibrate.calibrate", _no_work)
    data = _dataset(tmp_path / "data")
    other = _dataset(tmp_path / "other")
    out = other / "cal.safetensors"
    code, err = run_cli(capsys, "calibrate", "--weights", "tiny", "--data", str(data), f"{other}:train",
                        "--out", str(out))
    assert code == 2
    assert f"--out {out} lies inside the input --data {other}" in one_error_line(err)
    assert not out.exists()


def test_soup_out_over_a_parent_names_the_parent(capsys, tmp_path, monkeypatch):
    from irstd_ros.inference.detector import default_model_path

    monkeypatch.setattr("irstd_ros.cli.soup.soup", _no_work)
    a = tmp_path / "a.safetensors"
    shutil.copy(default_model_path("tiny"), a)
    code, err = run_cli(capsys, "soup", "tiny", str(a), "--out", str(tmp_path / "sub" / ".." / "a.safetensors"))
    assert code == 2 and f"is the input checkpoint {a}" in one_error_line(err)


def test_pack_out_inside_a_dataset_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("irstd_ros.cli.pack.build_pack", _no_work)
    data = _dataset(tmp_path / "nudt")
    out = data / "pack.npz"
    code, err = run_cli(capsys, "pack", "--nudt", str(data), "--no-sirst", "--out", str(out))
    assert code == 2 and f"--out {out} lies inside the input --nudt {data}" in one_error_line(err)


def test_export_out_inside_a_dataset_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("irstd_ros.tools.quantize.export_bf16", _no_work)
    nudt, sirst = _dataset(tmp_path / "nudt"), _dataset(tmp_path / "sirst")
    out = sirst / "cache"
    code, err = run_cli(capsys, "export", "--backend", "openvino-bf16", "--nudt", str(nudt), "--sirst", str(sirst),
                        "--out", str(out))
    assert code == 2 and f"--out {out} lies inside the input --sirst {sirst}" in one_error_line(err)
    assert not out.exists()


def test_eval_report_inside_the_dataset_is_refused_and_nothing_written(capsys, tmp_path, monkeypatch):
    """`irstd eval --data D --out D/report` wrote report.json and three PNGs into the dataset."""
    monkeypatch.setattr("irstd_ros.cli.eval.evaluate", _no_work)
    data = _dataset(tmp_path / "data")
    out = data / "images" / "report"
    code, err = run_cli(capsys, "eval", "--data", str(data), "--split", "train", "--out", str(out))
    assert code == 2
    assert one_error_line(err) == (f"irstd eval: error: --out {out} lies inside the input --data {data}; "
                                   "give a path outside the inputs")
    assert not out.exists()


def test_envelope_report_folder_at_the_weights_is_refused(capsys, tmp_path, monkeypatch):
    from irstd_ros.inference.detector import default_model_path

    monkeypatch.setattr("irstd_ros.cli.envelope.build_scorer", _no_work)
    weights = tmp_path / "w.safetensors"
    shutil.copy(default_model_path("tiny"), weights)
    before = weights.read_bytes()
    code, err = run_cli(capsys, "envelope", "--weights", str(weights), "--out", str(weights))
    assert code == 2
    assert f"--out {weights} is the input --weights {weights}" in one_error_line(err)
    assert weights.read_bytes() == before


def test_train_run_folder_inside_the_dataset_is_refused(capsys, tmp_path, monkeypatch):
    """`irstd train --data D --out D/run` wrote its checkpoints and history into the dataset."""
    monkeypatch.setattr("irstd_ros.cli.train.train", _no_work)
    data = _dataset(tmp_path / "data")
    out = data / "run"
    code, err = run_cli(capsys, "train", "--data", str(data), "--model", "tiny", "--crop", "32", "--out", str(out))
    assert code == 2
    assert one_error_line(err) == (f"irstd train: error: --out {out} lies inside the input --data {data}; "
                                   "give a path outside the inputs")
    assert not out.exists()


def test_train_run_folder_inside_a_mixture_source_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("irstd_ros.cli.train.train", _no_work)
    data, source = _dataset(tmp_path / "data"), _dataset(tmp_path / "source")
    config = tmp_path / "mix.yaml"
    config.write_text(f"data: {data}\nsources:\n  - {{root: {source}, split: train}}\n")
    out = source / "masks" / "run"
    code, err = run_cli(capsys, "train", "--config", str(config), "--model", "tiny", "--crop", "32", "--out", str(out))
    assert code == 2
    assert f"--out {out} lies inside the input --config's sources[0] root {source}" in one_error_line(err)
    assert not out.exists()


def test_train_gpu_run_folder_inside_its_data_is_refused(capsys, tmp_path, monkeypatch):
    """`irstd train-gpu` checks its run folder as `irstd train` does."""
    monkeypatch.setattr("irstd_ros.cli.train_gpu.train_gpu", _no_work)
    data = _dataset(tmp_path / "data")
    out = data / "run"
    code, err = run_cli(capsys, "train-gpu", "--data", str(data), "--model", "tiny", "--out", str(out))
    assert code == 2
    assert one_error_line(err) == (f"irstd train-gpu: error: --out {out} lies inside the input --data {data}; "
                                   "give a path outside the inputs")
    assert not out.exists()


@pytest.mark.parametrize("option", ["--out", "--sheet"])
def test_render_output_inside_the_bag_is_refused(option, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("irstd_ros.cli.render.render", _no_work)
    bag = tmp_path / "bag"
    bag.mkdir()
    video = tmp_path / "v.gif"
    paths = {"--out": bag / "v.gif", "--sheet": bag / "s.png"}
    args = ["--out", str(paths["--out"] if option == "--out" else video)]
    if option == "--sheet":
        args += ["--sheet", str(paths["--sheet"])]
    code, err = run_cli(capsys, "render", str(bag), *args)
    assert code == 2 and f"{option} {paths[option]} lies inside the input BAG {bag}" in one_error_line(err)


# --- --weights '': the default shipped model, as the node's model.path: '' ---------------------


def test_empty_weights_is_the_default_model_not_the_current_directory(capsys):
    """`irstd info --weights ""` said "model file . is a directory"."""
    assert _options.weights_path("") == Path(DEFAULT_SHIPPED_MODEL)
    code, out, err = run_cli_output(capsys, "info", "--weights", "", "--json")
    assert code == 0, err
    _, default, _ = run_cli_output(capsys, "info", "--weights", DEFAULT_SHIPPED_MODEL, "--json")
    assert out == default


# --- a missing dataset: where a relative path was looked up, and its option, before any work ---


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["pack", "--out", "p.npz"], "--nudt"),
        (["pack", "--no-nudt", "--out", "p.npz"], "--sirst"),
        (["export", "--backend", "openvino-int8", "--out", "cache"], "--nudt"),
        (["export", "--backend", "openvino-bf16", "--out", "cache"], "--nudt"),
    ],
)
def test_a_missing_default_dataset_names_the_directory_and_the_option(command, option, capsys, tmp_path, monkeypatch):
    """From another directory `../shared/data/NUDT-SIRST` was 'dataset folder not found' with
    no hint, and export --backend openvino-int8 converted the FP32 IR into --out first."""
    from irstd_ros.tools import quantize

    monkeypatch.setattr(quantize, "export_int8", _no_work)
    monkeypatch.setattr(quantize, "export_bf16", _no_work)
    monkeypatch.setattr("irstd_ros.cli.pack.build_pack", _no_work)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, *command)
    assert code == 2
    line = one_error_line(err)
    assert line.endswith(f"dataset folder not found: {Path('..', 'shared', 'data', DEFAULT_NUDT.name if option == '--nudt' else 'SIRST-v2')} "
                         f"(relative to the current directory {tmp_path}); give its path with {option}"), line
    assert list(tmp_path.iterdir()) == []


def test_export_retime_reads_no_dataset_so_needs_none(capsys, tmp_path, monkeypatch):
    """--retime times a recorded measurement again: a host without the datasets may."""
    from irstd_ros.tools import quantize

    seen = []
    monkeypatch.setattr(quantize, "export_int8", lambda *a, **_k: seen.append(a) or {"files": [], "auto": "x"})
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, "export", "--backend", "openvino-int8", "--retime")
    assert code == 0, err
    assert [ds.root for ds in seen[0][2]][0] == DEFAULT_NUDT


# --- PlainHelpParser: a wrong argument is one line -----------------------------------------------
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["eval", "--data", "x", "--threshold", "2"], "irstd eval: error: argument --threshold: must be in (0, 1)"),
        (["eval-bag", "--truth", "a", "--outputs", "b", "--match-px", "-1"], "irstd eval-bag: error: argument --match-px"),
        (["evall"], "irstd: error: argument COMMAND: invalid choice: 'evall'"),
        ([], "irstd: error: the following arguments are required: COMMAND"),
    ],
)
def test_a_wrong_argument_is_one_line_pointing_at_help(argv, words, capsys):
    """argparse's own error printed the whole usage block first (6-13 lines)."""
    code, err = run_cli(capsys, *argv)
    line = one_error_line(err)
    assert code == 2 and err.strip() == line and line.startswith(words) and line.endswith("--help)"), err
