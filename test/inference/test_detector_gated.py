"""The Detector's tracker-only outputs: sub-threshold candidates and, below them, the gated
components (``gated_threshold``), disjoint from each other and from the targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.targets import PostprocessConfig
from irstd_ros.errors import ConfigError
from irstd_ros.inference.detector import Detector
from irstd_ros.models import named_config


class MapBackend:
    """Returns a fixed probability map, whatever the frame."""

    name, device = "map", "cpu"

    def __init__(self, prob: np.ndarray) -> None:
        self.prob = prob

    def predict(self, frame: np.ndarray) -> np.ndarray:
        return self.prob

    def describe(self) -> dict:
        return {"backend": self.name}


def prob_map() -> np.ndarray:
    p = np.zeros((40, 40), np.float32)
    p[5:8, 5:8] = 0.9  # a detection
    p[4:9, 4:9] = np.maximum(p[4:9, 4:9], 0.1)  # ... with a faint halo: part of it
    p[20:22, 20:22] = 0.3  # a candidate (0.2-0.5)
    p[30, 10:12] = 0.1  # a gated component (0.05-0.2)
    p[30, 30] = 0.03  # below everything
    return p


def detector(candidates: float | None, gated: float | None) -> Detector:
    det = Detector(
        MapBackend(prob_map()),
        CheckpointInfo(named_config("tiny"), threshold=0.5),
        post=PostprocessConfig(threshold=0.5),
    )
    det.candidate_threshold, det.gated_threshold = candidates, gated
    return det


def boxes(targets) -> list[tuple[int, int, int, int]]:
    return [(t.x, t.y, t.width, t.height) for t in targets]


def test_gated_components_lie_between_the_gated_and_candidate_thresholds():
    r = detector(0.2, 0.05).detect(np.zeros((40, 40), np.uint8))
    assert boxes(r.targets) == [(5, 5, 3, 3)]
    assert boxes(r.candidates) == [(20, 20, 2, 2)]
    assert boxes(r.gated) == [(10, 30, 2, 1)]  # not the detection's halo, not the candidate
    assert [t.id for t in r.targets + r.candidates + r.gated] == [0, 1, 2]
    assert not r.mask[30, 10:12].any()  # never in the mask


def test_without_candidates_the_gated_ones_reach_up_to_the_detection_threshold():
    r = detector(None, 0.05).detect(np.zeros((40, 40), np.uint8))
    assert r.candidates == [] and boxes(r.gated) == [(20, 20, 2, 2), (10, 30, 2, 1)]


def test_a_candidate_threshold_above_the_detection_one_leaves_the_gated_below_detections():
    """Candidates off (their threshold is not below the detection threshold): the gated
    components reach up to the detection threshold, never up to the candidate one, so a
    weak detection (0.55) is a target and not also a gated component."""
    det = detector(0.6, 0.05)
    weak = prob_map()
    weak[5:8, 5:8] = 0.55
    det.backend = MapBackend(weak)
    r = det.detect(np.zeros((40, 40), np.uint8))
    assert boxes(r.targets) == [(5, 5, 3, 3)] and r.candidates == []
    assert boxes(r.gated) == [(20, 20, 2, 2), (10, 30, 2, 1)]


def test_no_gated_threshold_no_gated_components():
    assert detector(0.2, None).detect(np.zeros((40, 40), np.uint8)).gated == []
    assert detector(0.2, 0.25).detect(np.zeros((40, 40), np.uint8)).gated == []  # not below


def test_settings_changed_while_a_frame_is_in_the_network_apply_from_the_next_frame():
    """A parameter change from another thread (the node's executor) between the network and
    the post-processing: the frame used to see half of it (the same component a target at
    the old threshold and a candidate at the new one)."""
    det = detector(0.2, 0.05)

    class ChangingBackend(MapBackend):
        def predict(self, frame):
            det.post = PostprocessConfig(threshold=0.95)
            det.candidate_threshold = 0.85
            return self.prob

    det.backend = ChangingBackend(prob_map())
    r = det.detect(np.zeros((40, 40), np.uint8))
    assert boxes(r.targets) == [(5, 5, 3, 3)] and boxes(r.candidates) == [(20, 20, 2, 2)]  # the old set
    again = det.detect(np.zeros((40, 40), np.uint8))
    assert again.targets == [] and boxes(again.candidates) == [(5, 5, 3, 3)]  # the new one


@pytest.mark.parametrize("name", ["candidate_threshold", "gated_threshold"])
@pytest.mark.parametrize("value", [0.0, -1.0, 1.5, math.nan])
def test_a_threshold_that_is_no_probability_is_refused_and_changes_nothing(name, value):
    """0 is "off" for the node's parameter (tracking_thresholds gives None); here it used to
    be the probability 0: with no detection in the frame the whole frame was one candidate.
    One meaning: the detector refuses it (None is off), and keeps its settings."""
    det = detector(0.2, 0.05)
    before = det.settings
    with pytest.raises(ConfigError, match=rf"{name} must be a probability in \(0, 1\], or None"):
        setattr(det, name, value)
    assert det.settings is before
    with pytest.raises(ConfigError, match=name):
        det.apply(**{name: value})
    assert det.settings is before


def test_the_nodes_zero_turns_the_tracker_thresholds_off_in_the_detector():
    """The node's (and eval-bag's) 0, resolved by tracking_thresholds: no candidates, no
    gated components, even in a frame without a detection (where the probability 0 took
    the whole frame)."""
    det = detector(None, None)
    faint = prob_map() + np.float32(0.001)  # no pixel exactly 0, as a real network's
    faint[faint > 0.5] = 0.3  # no detection
    det.backend = MapBackend(faint)
    det.candidate_threshold, det.gated_threshold = det.info.tracking_thresholds(0.0, 0.0)
    r = det.detect(np.zeros((40, 40), np.uint8))
    assert r.targets == [] and r.candidates == [] and r.gated == []
