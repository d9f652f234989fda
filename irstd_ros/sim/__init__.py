"""Synthetic infrared sequences with ground truth (sky, sea, ground scenes)."""

from irstd_ros.sim.sequence import (
    SCENES,
    TRUTH_FRACTION,
    Frame,
    SequenceConfig,
    TargetTruth,
    generate_sequence,
)

__all__ = [
    "SCENES",
    "TRUTH_FRACTION",
    "Frame",
    "SequenceConfig",
    "TargetTruth",
    "generate_sequence",
]
