"""One scene, sent as a camera would send it in four ways, gives the same detections."""

import numpy as np
import pytest

from irstd_ros.core.components import components
from irstd_ros.evaluation.envelope import EnvelopeConfig, envelope_frame, render_encoding
from irstd_ros.inference.detector import Detector

SNR = 25.0


@pytest.fixture(scope="module")
def detector():
    return Detector.from_checkpoint(backend="torch-cpu")


def centroids(det, frame):
    return sorted((round(t.centroid_y), round(t.centroid_x)) for t in det.detect(frame).targets)


@pytest.mark.parametrize("scene", ["flat", "gradient", "cloud"])
def test_mono8_agc_mono16_and_32fc1_at_two_gains_detect_the_same_targets(detector, scene):
    if detector.info.norm.kind != "robust":
        pytest.skip("the shipped model predates the robust normalisation")
    cfg = EnvelopeConfig(width=256, height=192, targets_per_frame=3)  # a realistic density
    rng = np.random.default_rng(11)
    counts, truth = envelope_frame(cfg, scene, "point", SNR, rng)
    frames = {
        "mono16": render_encoding(counts, "mono16", rng),
        "mono8": render_encoding(counts, "mono8", rng),
        "32FC1": render_encoding(counts, "32FC1", rng),
        "32FC1 x1000": (counts * 40.0 - 7.0).astype(np.float32),
    }
    found = {name: centroids(detector, f) for name, f in frames.items()}
    reference = found["mono16"]
    targets = components(truth)[1]
    assert len(reference) >= targets - 1, (len(reference), targets)  # the scene is detectable
    for name, cents in found.items():
        assert len(cents) == len(reference), (name, len(cents), len(reference))
        for (ya, xa), (yb, xb) in zip(cents, reference):
            assert abs(ya - yb) <= 1 and abs(xa - xb) <= 1, name
