"""``irstd envelope``'s printed summary: the SNR for Pd 0.9 as the grid bounds it."""

from __future__ import annotations

import numpy as np

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
