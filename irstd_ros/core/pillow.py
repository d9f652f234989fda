"""Pillow's enums across the versions ROS distributions ship: ``Image.Transpose`` and
``Image.Resampling`` are Pillow 9.1+ (Ubuntu 22.04 / ROS 2 Humble ship 9.0.1, which has
only the module constants of the same names and values); the enum where it exists."""

from __future__ import annotations

from typing import Any

from PIL import Image

TRANSPOSE: Any = getattr(Image, "Transpose", Image)  # FLIP_LEFT_RIGHT, ROTATE_90, ...
RESAMPLING: Any = getattr(Image, "Resampling", Image)  # NEAREST, BILINEAR, BOX, ...
