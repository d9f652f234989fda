"""Small on-disk datasets in the NUDT-SIRST layout (images/, masks/, split lists)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_dataset(
    root: Path,
    frames: Sequence[tuple[str, np.ndarray, np.ndarray]],
    splits: Mapping[str, Sequence[str]],
    split_dir: str = ".",
) -> Path:
    """Write (stem, image, bool mask) frames as PNGs and ``splits`` as ``<split_dir>/<name>.txt``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, image, mask in frames:
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(root / "masks" / f"{stem}.png")
    (root / split_dir).mkdir(exist_ok=True)
    for name, stems in splits.items():
        (root / split_dir / f"{name}.txt").write_text("\n".join(stems) + "\n")
    return root
