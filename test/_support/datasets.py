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
    mask_suffix: str = "",
    newline: str = "\n",
) -> Path:
    """Write (stem, image, mask) frames as PNGs (mask > 0 becomes 255, saved as
    ``masks/<stem><mask_suffix>.png``) and ``splits`` as ``<split_dir>/<name>.txt``, one stem a
    line ended by ``newline``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, image, mask in frames:
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        binary = (np.asarray(mask) > 0).astype(np.uint8) * 255
        Image.fromarray(binary).save(root / "masks" / f"{stem}{mask_suffix}.png")
    if splits:
        (root / split_dir).mkdir(exist_ok=True)
    for name, stems in splits.items():
        (root / split_dir / f"{name}.txt").write_text("".join(s + newline for s in stems))
    return root
