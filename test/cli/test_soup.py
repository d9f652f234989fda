"""``irstd soup``'s output: a short summary, the whole provenance record with --json."""

from __future__ import annotations

import json

from _support.cli import run_cli_output

from irstd_ros.inference.detector import default_model_path

SUMMARY_MAX_CHARS = 500  # a few lines, whatever the parents' own provenance holds


def test_soup_prints_a_summary_and_the_record_with_json(capsys, tmp_path):
    """`irstd soup tiny tiny` printed the nested provenance of both parents on one line
    (some 40 KB)."""
    out_path = tmp_path / "s.safetensors"
    code, out, err = run_cli_output(capsys, "soup", "tiny", "tiny", "--out", str(out_path))
    assert code == 0, err
    tiny = default_model_path("tiny")
    assert out.splitlines() == [f"wrote {out_path}: the average of 2 checkpoints", f"  0.5 x {tiny}", f"  0.5 x {tiny}"]
    assert len(out) < SUMMARY_MAX_CHARS
    code, out, err = run_cli_output(capsys, "soup", "tiny", "tiny", "--out", str(out_path), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert [(p["path"], p["coefficient"]) for p in record["parents"]] == [(str(tiny), 0.5)] * 2
