"""Training augmentation: the paper's random 256x256 crops, plus flips, 90-degree turns
and an optional change of scale."""

from __future__ import annotations

import numpy as np
from PIL import Image

from irstd_ros.core.pillow import RESAMPLING

MASK_COVERAGE = 0.5  # a resized mask pixel is target when at least this share of it was


def random_crop(
    img: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop; smaller images are padded first (reflected, as the
    network pads frames, so that no artificial edge appears)."""
    img, mask = pad_to(img, mask, size)
    h, w = img.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return img[y : y + size, x : x + size], mask[y : y + size, x : x + size]


def pad_to(img: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad image and mask at the bottom/right to at least ``size`` x ``size``
    (mirrored again as often as a small frame needs: a target at the edge comes back as
    mirrored copies, each labelled, never as an edge-repeated stripe)."""
    h, w = img.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        pad = ((0, ph), (0, pw))
        img, mask = np.pad(img, pad, mode="reflect"), np.pad(mask, pad, mode="reflect")
    return img, mask


def point_crop(
    img: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator, y: float, x: float
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` crop (of the padded frame) that holds pixel (y, x) at a random place."""
    img, mask = pad_to(img, mask, size)
    h, w = img.shape
    y0 = int(np.clip(round(y) - rng.integers(0, size), 0, h - size))
    x0 = int(np.clip(round(x) - rng.integers(0, size), 0, w - size))
    return img[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]


def target_crop(
    img: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` crop that contains a random target pixel (a random crop without targets)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return random_crop(img, mask, size, rng)
    i = int(rng.integers(ys.size))
    return point_crop(img, mask, size, rng, ys[i], xs[i])


def augment(
    img: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal/vertical flips and a random multiple of 90 degrees."""
    if rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        img, mask = img[::-1], mask[::-1]
    k = int(rng.integers(0, 4))
    return np.rot90(img, k), np.rot90(mask, k)


def rescale(img: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square float crop and its mask resized to ``size`` x ``size`` (Pillow): bilinear
    when enlarging, area (box) when shrinking, so that a shrunk target keeps its summed
    signal. A mask pixel is target when :data:`MASK_COVERAGE` of it was, or when its
    coverage is a local (3x3) maximum, so that no target shrinks out of the mask."""
    from scipy.ndimage import maximum_filter

    if img.shape[0] != img.shape[1] or img.shape != mask.shape:
        raise ValueError(f"rescale needs a square crop and a mask of its shape, got {img.shape}, {mask.shape}")
    if img.shape[0] == size:
        return img, mask
    smooth = RESAMPLING.BILINEAR if size > img.shape[0] else RESAMPLING.BOX
    out = np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F").resize((size, size), smooth))
    cover = np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((size, size), smooth))
    peak = (cover > 0) & (cover >= maximum_filter(cover, size=3))
    return out, (cover >= MASK_COVERAGE) | peak
