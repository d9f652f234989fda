"""Training augmentation: the paper's random 256x256 crops, plus flips and 90-degree turns."""

from __future__ import annotations

import numpy as np


def random_crop(
    img: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop; smaller images are zero-padded first."""
    h, w = img.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
        h, w = img.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return img[y : y + size, x : x + size], mask[y : y + size, x : x + size]


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
