"""The classical white top-hat reference (irstd_ros.inference.classical)."""

from __future__ import annotations

from irstd_ros.core.normalization import InputNorm
from irstd_ros.evaluation.envelope import POINT, EnvelopeConfig, run_envelope
from irstd_ros.inference.classical import TopHatBackend


def test_tophat_reference_runs_on_the_envelope_grid():
    cfg = EnvelopeConfig(width=160, height=128, snrs=(30.0,), sizes=(POINT,), scenes=("flat",),
                         encodings=("mono16",))
    report = run_envelope(TopHatBackend(), InputNorm(kind="robust"), 0.5, cfg)
    assert report["cells"][0]["pd"] > 0.8
