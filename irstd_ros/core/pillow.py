"""What Pillow does differently across the versions ROS distributions ship (Ubuntu 22.04 /
ROS 2 Humble ship 9.0.1), one shim each:

* ``Image.Transpose`` and ``Image.Resampling`` are Pillow 9.1+ (9.0 has only the module
  constants of the same names and values): :data:`TRANSPOSE`, :data:`RESAMPLING`, the
  enum where it exists;
* before 10.1, Pillow opens an uncompressed YCbCr TIFF as RGB with raw mode ``RGBX``,
  four bytes a pixel out of three (a "truncated" file, or garbage where
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set): :func:`declare_ycbcr_tiff`;
* Pillow 9.0 cannot identify a TIFF of signed 8-bit samples at all (later ones read it as
  unsigned): :func:`tiff_tags` reads its tags, to say why it is refused.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile, TiffImagePlugin

TRANSPOSE: Any = getattr(Image, "Transpose", Image)  # FLIP_LEFT_RIGHT, ROTATE_90, ...
RESAMPLING: Any = getattr(Image, "Resampling", Image)  # NEAREST, BILINEAR, BOX, ...

TIFF_COMPRESSION = 259  # the tags; compression 1: none
TIFF_PHOTOMETRIC = 262  # 6: YCbCr
TIFF_SAMPLES_PER_PIXEL = 277
TIFF_PLANAR_CONFIGURATION = 284  # 1: the samples of a pixel together
PHOTOMETRIC_YCBCR = 6
BIGTIFF_VERSION = 43  # byte 2 of a BigTIFF's header (classic TIFF: 42); its header is 16 bytes


def declare_ycbcr_tiff(im: Image.Image) -> bool:
    """Re-declare ``im`` (just opened, not loaded) YCbCr, as Pillow 10.1+ opens it, when it
    is an uncompressed YCbCr TIFF (three samples a pixel, in one plane) that an older Pillow
    opened as RGB with raw mode ``RGBX``; whether it did. Anything else is left alone."""
    if not isinstance(im, ImageFile.ImageFile):  # opened from no file: no tiles
        return False
    tags: Mapping[int, Any] = getattr(im, "tag_v2", {})
    tile: list[Any] = list(im.tile or [])  # a tuple each (named since Pillow 11)
    if not (
        im.format == "TIFF"
        and im.mode == "RGB"
        and tags.get(TIFF_PHOTOMETRIC) == PHOTOMETRIC_YCBCR
        and tags.get(TIFF_COMPRESSION, 1) == 1
        and tags.get(TIFF_SAMPLES_PER_PIXEL) == 3
        and tags.get(TIFF_PLANAR_CONFIGURATION, 1) == 1
        and tile
        and all(t[0] == "raw" and isinstance(t[3], tuple) and t[3][:1] == ("RGBX",) for t in tile)
    ):
        return False
    im.tile = [_with_args(t, ("YCbCr", *t[3][1:])) for t in tile]
    # Pillow 10+ holds the mode in ``_mode`` behind a read-only property; 9 in ``mode``
    setattr(
        im, "_mode" if isinstance(getattr(type(im), "mode", None), property) else "mode", "YCbCr"
    )
    return True


def _with_args(tile: Any, args: tuple[Any, ...]) -> Any:
    """A tile descriptor (a plain tuple before Pillow 11, a named one since) with other args."""
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def tiff_tags(path: str | Path) -> Mapping[int, Any] | None:
    """The tags of a TIFF file's first image, read by Pillow's own parser; None when
    ``path`` is no TIFF this Pillow parses or cannot be read. For a file Pillow cannot
    open: its tags say why."""
    try:
        with open(path, "rb") as f:
            header = f.read(8)
            if len(header) == 8 and header[2] == BIGTIFF_VERSION:
                header += f.read(8)
            ifd = TiffImagePlugin.ImageFileDirectory_v2(header)
            f.seek(ifd.next)
            ifd.load(f)
            return dict(ifd)
    except (OSError, SyntaxError, ValueError, struct.error):
        return None
