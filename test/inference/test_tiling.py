"""Tiling: geometry, exact equality for a local detector, SGEM-UNet within a named tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from irstd_ros.core.targets import PostprocessConfig, extract_targets
from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.torch_cpu import TorchCPUBackend
from irstd_ros.inference.tiling import TilingBackend, seams, tile_starts

STRIDE = 16
RADIUS = 7  # receptive field radius of the local detector below
TILE, OVERLAP = 64, 2 * RADIUS + 2  # overlap / 2 >= RADIUS: every kept pixel sees its whole field
FRAME = (150, 230)
# SGEM-UNet has global context (channel attention over all pixels of its input), so a tile
# does not see what the full frame sees: masks agree within this fraction of pixels.
SGEM_MASK_AGREEMENT = 0.999
SGEM_FRAME = (256, 320)
SGEM_TILE, SGEM_OVERLAP = 128, 32
SGEM_TARGET_COUNT_SLACK = 1  # a borderline component may split or vanish at a seam
NOISE = 0.02
TARGET_VALUE = 1.0
BACKGROUND = 0.2


class LocalContrast:
    """A detector with a finite receptive field: sigmoid of pixel minus its local mean."""

    name = "local"
    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def predict(self, frame: np.ndarray) -> np.ndarray:
        self.calls.append(frame.shape)
        local = ndimage.uniform_filter(frame.astype(np.float64), size=2 * RADIUS + 1, mode="reflect")
        return (1.0 / (1.0 + np.exp(-40.0 * (frame - local - 0.2)))).astype(np.float32)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name}


def frame_with_seam_targets(
    shape: tuple[int, int], tile: int = TILE, overlap: int = OVERLAP
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A flat frame with 2x2 targets straddling every seam (and crossing), plus one inside."""
    h, w = shape
    frame = np.full(shape, BACKGROUND, dtype=np.float32)
    ys = [a for a, _ in seams(tile_starts(h, tile, overlap), tile, h)][1:]
    xs = [a for a, _ in seams(tile_starts(w, tile, overlap), tile, w)][1:]
    points = [(y, w // 3) for y in ys] + [(h // 3, x) for x in xs] + [(ys[0], xs[0]), (20, 20)]
    for y, x in points:
        frame[y - 1 : y + 1, x - 1 : x + 1] = TARGET_VALUE  # 2x2 straddling the seam
    return frame, points


def test_tiles_cover_the_frame_with_the_overlap():
    for length in (64, 65, 150, 230, 1080):
        starts = tile_starts(length, TILE, OVERLAP)
        assert starts[0] == 0 and starts[-1] + TILE >= length
        for a, b in zip(starts, starts[1:]):
            assert a + TILE - b >= OVERLAP - 1  # rounding may cost one pixel
        owned = seams(starts, TILE, length)
        assert owned[0][0] == 0 and owned[-1][1] == length
        assert all(e == b for (_, e), (b, _) in zip(owned, owned[1:]))  # no gap, no double
        for start, (lo, hi) in zip(starts, owned):
            assert start <= lo < hi <= start + TILE


def test_tiling_equals_full_frame_for_a_local_detector():
    frame, points = frame_with_seam_targets(FRAME)
    inner = LocalContrast()
    full = inner.predict(frame)
    tiled = TilingBackend(inner, TILE, OVERLAP, STRIDE).predict(frame)
    assert all(s[0] <= TILE and s[1] <= TILE for s in inner.calls[1:])
    np.testing.assert_array_equal(tiled, full)
    cfg = PostprocessConfig(threshold=0.5)
    mask_full, targets_full = extract_targets(full, frame, cfg)
    mask_tiled, targets_tiled = extract_targets(tiled, frame, cfg)
    np.testing.assert_array_equal(mask_tiled, mask_full)
    assert len(targets_tiled) == len(points)  # each seam target exactly once
    centres = sorted((round(t.centroid_y - 0.5), round(t.centroid_x - 0.5)) for t in targets_tiled)
    assert centres == sorted((y - 1, x - 1) for y, x in points)


@pytest.fixture
def one_thread():
    """One torch thread for this test (2 spinning OpenMP threads crawl on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sgem_unet_tiled_within_tolerance(one_thread):
    """The shipped network on a noisy frame with targets on the seams."""
    from irstd_ros.checkpoint import load_checkpoint
    from irstd_ros.inference.detector import default_model_path

    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"shipped model not present ({path})")
    model, info, _ = load_checkpoint(path)
    backend = TorchCPUBackend(model, info)
    frame, points = frame_with_seam_targets(SGEM_FRAME, SGEM_TILE, SGEM_OVERLAP)
    frame += np.random.default_rng(0).normal(0.0, NOISE, frame.shape).astype(np.float32)
    frame = np.clip(frame, 0.0, 1.0)
    full = backend.predict(frame)
    tiled = TilingBackend(backend, SGEM_TILE, SGEM_OVERLAP, STRIDE).predict(frame)
    agreement = ((tiled > info.threshold) == (full > info.threshold)).mean()
    assert agreement >= SGEM_MASK_AGREEMENT
    cfg = PostprocessConfig(threshold=info.threshold)
    n_full = len(extract_targets(full, frame, cfg)[1])
    n_tiled = len(extract_targets(tiled, frame, cfg)[1])
    assert abs(n_tiled - n_full) <= SGEM_TARGET_COUNT_SLACK, (n_full, n_tiled, len(points))


def test_small_frames_pass_through_and_bad_settings_are_refused():
    inner = LocalContrast()
    tiler = TilingBackend(inner, TILE, OVERLAP, STRIDE)
    frame = np.zeros((40, 64), np.float32)
    assert tiler.predict(frame).shape == (40, 64) and inner.calls == [(40, 64)]
    with pytest.raises(ConfigError):
        TilingBackend(inner, 60, 8, STRIDE)
    with pytest.raises(ConfigError):
        TilingBackend(inner, TILE, TILE, STRIDE)
    with pytest.raises(ConfigError, match="overlap"):
        TilingBackend(inner, TILE, -1, STRIDE)  # tiles a pixel apart: a gap between them
