"""Hand-made detections for the tracker's tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Det:
    """The fields of a detector Target the tracker reads."""

    centroid_x: float
    centroid_y: float
    score: float = 0.9
    width: float = 3
    height: float = 3
