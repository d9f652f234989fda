"""Frames as sensor_msgs/CompressedImage data: encoded by Pillow, or a PNG written here byte
by byte (so that a 16-bit PNG's byte order is not Pillow's word on Pillow's reading)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode(arr: np.ndarray, codec: str = "png", **options: object) -> bytes:
    """``arr`` ((H, W) uint8/uint16, or (H, W, 3) RGB uint8) as a ``codec`` file's bytes."""
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format=codec.upper(), **options)
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_by_hand(arr: np.ndarray, declared: tuple[int, int] | None = None, idat: bytes | None = None) -> bytes:
    """A PNG of (H, W) grey or (H, W, 3) RGB ``arr``, uint8 or uint16 (samples big-endian,
    as the PNG standard has them). ``declared``: (width, height) written in the header
    instead of the array's; ``idat``: the compressed pixel data instead of the array's."""
    h, w = arr.shape[:2]
    depth = 8 * arr.dtype.itemsize
    colour_type = 2 if arr.ndim == 3 else 0  # RGB, grey
    width, height = declared or (w, h)
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    big = arr.astype(arr.dtype.newbyteorder(">"))
    raw = b"".join(b"\x00" + big[i].tobytes() for i in range(h))  # filter 0 per row
    data = zlib.compress(raw) if idat is None else idat
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
