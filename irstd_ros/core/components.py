"""8-connected components of a binary mask: one definition for detection and scoring."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)  # diagonal neighbours belong to one target


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of ``mask``: (labels, count)."""
    labels, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labels, int(n)
