"""numpy-only core (no torch, no rclpy): normalisation, 8-connected components, targets,
stride padding, the annotated overlay and shared value parsers."""

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
