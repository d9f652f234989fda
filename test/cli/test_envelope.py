"""``irstd envelope``'s printed summary: the SNR for Pd 0.9 as the grid bounds it; its
``--out`` never in a dataset folder."""

from __future__ import annotations

import numpy as np
import pytest
from _support.cli import one_error_line, run_cli
from _support.datasets import write_dataset

from irstd_ros.cli.envelope import format_snr_at_pd90
from irstd_ros.core.normalization import InputNorm
from irstd_ros.evaluation.envelope import POINT, EnvelopeConfig, run_envelope


class SilentBackend:
    """Never detects anything: Pd 0 at every SNR."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(x.shape, np.float32)


def test_a_goal_not_reached_within_the_grid_is_printed_as_above_its_top():
    cfg = EnvelopeConfig(width=160, height=128, snrs=(4.0, 12.0), sizes=(POINT,), scenes=("flat",),
                         encodings=("32FC1",), frames=1)
    row = run_envelope(SilentBackend(), InputNorm(kind="robust", background=32), 0.5, cfg)["snr_at_pd90"][0]
    assert row["snr_at_pd90"] is None and row["grid_top_snr"] == 12.0
    assert format_snr_at_pd90(row).startswith("> 12 ")  # not "never": the grid stops at 12


def test_bounds_and_values_are_printed_as_such():
    assert format_snr_at_pd90({"snr_at_pd90": 2.0, "below_grid": True}) == "<= 2.0"
    assert format_snr_at_pd90({"snr_at_pd90": 10.44, "below_grid": False}) == "10.4"


def _no_envelope(*_args, **_kwargs):
    raise AssertionError("the envelope ran: --out should have been refused first")


@pytest.mark.parametrize(("under", "where"), [("", "is"), ("envelope", "lies inside"),
                                              ("images/envelope", "lies inside")])
def test_out_in_a_dataset_folder_is_refused_and_nothing_written(under, where, capsys, tmp_path, monkeypatch):
    """`irstd envelope --out D/envelope` wrote its report into the dataset D (images/, masks/)."""
    monkeypatch.setattr("irstd_ros.cli.envelope.run_envelope", _no_envelope)
    data = write_dataset(tmp_path / "data", [("a", np.zeros((8, 8), np.uint8), np.zeros((8, 8)))], {})
    before = sorted(data.rglob("*"))
    out = data / under if under else data
    code, err = run_cli(capsys, "envelope", "--method", "tophat", "--out", str(out))
    assert code == 2
    assert one_error_line(err) == (f"irstd envelope: error: --out {out} {where} the dataset folder {data} "
                                   "(it holds images/ and masks/); give a path outside datasets")
    assert sorted(data.rglob("*")) == before


def test_out_beside_a_dataset_folder_is_accepted(capsys, tmp_path, monkeypatch):
    """Only a folder holding both images/ and masks/ is a dataset: a sibling, or a folder
    with an images/ folder alone, takes the report."""
    monkeypatch.setattr("irstd_ros.cli.envelope.run_envelope", _no_envelope)
    write_dataset(tmp_path / "data", [("a", np.zeros((8, 8), np.uint8), np.zeros((8, 8)))], {})
    (tmp_path / "pictures" / "images").mkdir(parents=True)
    for out in (tmp_path / "report", tmp_path / "pictures" / "envelope"):
        with pytest.raises(AssertionError, match="the envelope ran"):
            run_cli(capsys, "envelope", "--method", "tophat", "--out", str(out), "--snrs", "30")
