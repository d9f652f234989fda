"""``irstd soup``'s output: a short summary, the whole provenance record with --json."""

from __future__ import annotations

import json

import torch
from _support.cli import one_error_line, run_cli, run_cli_output

from irstd_ros.checkpoint import load_checkpoint, save_checkpoint
from irstd_ros.inference.detector import default_model_path

SUMMARY_MAX_CHARS = 500  # a few lines, whatever the parents' own provenance holds


def _retrained_tiny(path):
    """The shipped tiny model with one weight changed: another run of its network, with its
    provenance."""
    model, info, _ = load_checkpoint(default_model_path("tiny"))
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(path, model, info)
    return path


def test_soup_prints_a_summary_and_the_record_with_json(capsys, tmp_path):
    """`irstd soup tiny B` printed the nested provenance of both parents on one line
    (some 40 KB)."""
    out_path = tmp_path / "s.safetensors"
    other = _retrained_tiny(tmp_path / "other.safetensors")
    code, out, err = run_cli_output(capsys, "soup", "tiny", str(other), "--out", str(out_path))
    assert code == 0, err
    tiny = default_model_path("tiny")
    assert out.splitlines() == [f"wrote {out_path}: the average of 2 checkpoints", f"  0.5 x {tiny}", f"  0.5 x {other}"]
    assert len(out) < SUMMARY_MAX_CHARS
    code, out, err = run_cli_output(capsys, "soup", "tiny", str(other), "--out", str(out_path), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert [(p["path"], p["coefficient"]) for p in record["parents"]] == [(str(tiny), 0.5), (str(other), 0.5)]


def test_soup_of_a_model_with_itself_is_refused_naming_both(capsys, tmp_path):
    """`irstd soup tiny tiny` (or tiny and a copy of it) averaged the model with itself and
    wrote it as the soup of two checkpoints."""
    out_path = tmp_path / "s.safetensors"
    tiny = default_model_path("tiny")
    code, err = run_cli(capsys, "soup", "tiny", str(tiny), "--out", str(out_path))
    assert code == 2 and f"checkpoint {tiny} is the same file as {tiny}" in one_error_line(err)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny.read_bytes())
    code, err = run_cli(capsys, "soup", "tiny", str(copy), "--out", str(out_path))
    assert code == 2 and f"checkpoint {copy} holds the same weights as {tiny}" in one_error_line(err)
    assert not out_path.exists()
