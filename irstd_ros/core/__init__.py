"""numpy-only core: frame conversion and normalisation (no torch, no rclpy)."""

from irstd_ros.core.normalization import (
    NORM_KINDS,
    InputNorm,
    ScalingConfig,
    frame_stats,
    noise_sigma,
    normalize,
    to_grey,
    to_unit_range,
)

__all__ = [
    "NORM_KINDS",
    "InputNorm",
    "ScalingConfig",
    "frame_stats",
    "noise_sigma",
    "normalize",
    "to_grey",
    "to_unit_range",
]
