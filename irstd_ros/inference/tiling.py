"""Optional tiling: run a backend on overlapping tiles and stitch the probabilities.

Frames run at full resolution by default (padded to the stride, cropped back; never
downscaled). Tiling is for memory-bound devices or engines built for one tile size:
the frame is covered by tiles of ``tile`` x ``tile`` px (a multiple of the stride, so
tiles need no padding) that overlap by at least ``overlap`` px. Each output pixel is
taken from exactly one tile, the one whose centre it is nearest along each axis: the
seam between two tiles lies in the middle of their overlap, so every kept pixel has at
least ``overlap / 2`` px of context on the seam side, and nothing is averaged or counted
twice. Targets are found on the stitched map, so a target on a seam comes out once.
"""

from __future__ import annotations

import numpy as np

from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.base import Backend

MIN_OVERLAP = 0


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering [0, length) with >= ``overlap`` shared.

    Evenly spread: the first tile starts at 0, the last ends at ``length``.
    """
    if length <= tile:
        return [0]
    step = tile - overlap
    count = -(-(length - tile) // step) + 1  # ceil: enough tiles for the given overlap
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def seams(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """For each tile, the [begin, end) it owns: seams in the middle of each overlap."""
    bounds = [0]
    for a, b in zip(starts, starts[1:]):
        overlap_end = min(a + tile, length)
        bounds.append((b + overlap_end) // 2)
    bounds.append(length)
    return list(zip(bounds[:-1], bounds[1:]))


class TilingBackend:
    """A Backend that runs ``inner`` on overlapping tiles (see the module doc)."""

    def __init__(self, inner: Backend, tile: int, overlap: int, stride: int) -> None:
        if tile <= 0 or tile % stride:
            raise ConfigError(f"tile size must be a positive multiple of the stride {stride}, got {tile}")
        if not MIN_OVERLAP <= overlap < tile:
            raise ConfigError(f"tile overlap must be in [{MIN_OVERLAP}, {tile}), got {overlap}")
        self.inner = inner
        self.tile = tile
        self.overlap = overlap
        self.name = inner.name
        self.device = inner.device

    def predict(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape
        if h <= self.tile and w <= self.tile:
            return self.inner.predict(frame)
        ys, xs = tile_starts(h, self.tile, self.overlap), tile_starts(w, self.tile, self.overlap)
        out = np.empty((h, w), dtype=np.float32)
        for y0, (oy0, oy1) in zip(ys, seams(ys, self.tile, h)):
            for x0, (ox0, ox1) in zip(xs, seams(xs, self.tile, w)):
                tile = frame[y0 : y0 + self.tile, x0 : x0 + self.tile]
                prob = self.inner.predict(np.ascontiguousarray(tile))
                out[oy0:oy1, ox0:ox1] = prob[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0]
        return out

    @property
    def warmup_size(self) -> tuple[int, int]:
        """The selection's warm-up frame (:func:`~irstd_ros.inference.backends.select.warm_up`):
        one whole tile, the size ``inner`` runs on frames larger than a tile (a 64x64 frame
        would make a ``tensorrt`` inner build an engine nothing else uses)."""
        return (self.tile, self.tile)

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "tile": self.tile, "tile_overlap": self.overlap}
