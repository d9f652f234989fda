"""Non-finite and out-of-range numbers on the command line: one readable line, nothing
written, never a traceback or a silent misreading (generate, eval-bag, bench)."""

from __future__ import annotations

import pytest
from _support.cli import one_error_line, run_cli


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--snr", "5:inf"], "error: --snr must be finite numbers, N or LO:HI, got '5:inf'"),
        (["--target-size", "inf"], "error: --target-size must be finite numbers, N or LO:HI, got 'inf'"),
        (["--dim-snr", "nan"], "error: --dim-snr must be finite numbers"),
        (["--flicker-snr", "1:nan"], "error: --flicker-snr must be finite numbers"),
        (["--fps", "inf"], "argument --fps: must be > 0, got inf"),
        (["--fps", "nan"], "argument --fps: must be > 0, got nan"),
        (["--flicker", "inf"], "argument --flicker: must be >= 0, got inf"),
    ],
)
def test_generate_refuses_non_finite_numbers(args, words, capsys, tmp_path):
    out = tmp_path / "g"
    code, err = run_cli(capsys, "generate", "--frames", "2", "--size", "64x64", "--out", str(out), *args)
    assert code == 2 and words in one_error_line(err)
    assert not out.exists()


def test_generate_takes_finite_ranges(capsys, tmp_path):
    out = tmp_path / "g"
    code, err = run_cli(
        capsys, "generate", "--frames", "2", "--size", "64x64", "--out", str(out),
        "--snr", "6", "--target-size", "2:3", "--fps", "20",
    )
    assert code == 0, err
    assert (out / "metadata.yaml").is_file()


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5", "1.5"])
def test_eval_bag_min_score_must_be_in_unit_interval(value, capsys, tmp_path):
    code, err = run_cli(capsys, "eval-bag", "--truth", str(tmp_path), "--run-detector", "--min-score", value)
    assert code == 2 and f"argument --min-score: must be in [0, 1], got {value}" in one_error_line(err)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_bench_budget_must_be_positive_and_finite(value, capsys, monkeypatch):
    from irstd_ros.tools import bench

    def no_cell(*_a, **_k):
        raise AssertionError("no cell runs with a bad --budget")

    monkeypatch.setattr(bench, "_child", no_cell)
    code, err = run_cli(capsys, "bench", "--quick", "--no-node", "--budget", value)
    assert code == 2 and f"argument --budget: must be > 0, got {value}" in one_error_line(err)
