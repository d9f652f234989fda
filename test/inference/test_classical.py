"""The classical white top-hat reference (irstd_ros.inference.classical)."""

from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.core.normalization import InputNorm
from irstd_ros.evaluation.envelope import POINT, EnvelopeConfig, run_envelope
from irstd_ros.inference.classical import TOPHAT_K, TOPHAT_NORM, TopHatBackend


def test_tophat_reference_runs_on_the_envelope_grid():
    cfg = EnvelopeConfig(width=160, height=128, snrs=(30.0,), sizes=(POINT,), scenes=("flat",),
                         encodings=("mono16",))
    report = run_envelope(TopHatBackend(), InputNorm(kind="robust"), 0.5, cfg)
    assert report["cells"][0]["pd"] > 0.8


def test_the_score_crosses_one_half_at_k_standard_deviations_of_the_residual():
    """Isolated spikes on a flat frame are their own residual r (the opening removes them);
    each scores r / (2 (mean(r) + k std(r))): above 0.5 exactly where r is above the cut."""
    sigmas = np.zeros((64, 64))
    spikes = {(10, 10): 100.0, (40, 40): 40.0, (20, 50): 20.0}
    for place, value in spikes.items():
        sigmas[place] = value
    cut = sigmas.mean() + TOPHAT_K * sigmas.std()
    assert 20.0 < cut < 40.0  # one spike below the cut, two above
    frame = np.arcsinh(sigmas / TOPHAT_NORM.knee).astype(np.float32)  # the robust input
    prob = TopHatBackend().predict(frame)
    for place, value in spikes.items():
        assert prob[place] == pytest.approx(min(value / (2 * cut), 1.0), rel=1e-4), place
    assert (prob[sigmas == 0] == 0).all()
