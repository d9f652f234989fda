"""Target tracking after detection: Kalman filters, gated association, confirmation,
coasting by header time; bearings from a calibrated camera. numpy/scipy only (no rclpy,
no torch)."""

from irstd_ros.tracking.camera import CameraModel, bearings
from irstd_ros.tracking.tracker import (
    STREAM_RESTART_S,
    Track,
    Tracker,
    TrackerConfig,
    TrackState,
)

__all__ = [
    "STREAM_RESTART_S",
    "CameraModel",
    "Track",
    "TrackState",
    "Tracker",
    "TrackerConfig",
    "bearings",
]
