"""sensor_msgs/Image <-> numpy, without rclpy or cv_bridge.

Works on any object with the Image fields (``height, width, encoding,
is_bigendian, step, data``), so the core and its tests need no ROS. Every
failure is an :class:`ImageConversionError` whose ``kind`` names the problem;
sizes are checked against ``max_pixels`` before anything is allocated.
"""

from __future__ import annotations

import array
from typing import Any, NamedTuple

import numpy as np

from irstd_ros.core.constants import DEFAULT_MAX_PIXELS
from irstd_ros.errors import ImageConversionError


class Encoding(NamedTuple):
    dtype: np.dtype
    channels: int


# The encodings of sensor_msgs/image_encodings.hpp that IR cameras publish.
ENCODINGS: dict[str, Encoding] = {
    "mono8": Encoding(np.dtype(np.uint8), 1),
    "8UC1": Encoding(np.dtype(np.uint8), 1),
    "mono16": Encoding(np.dtype(np.uint16), 1),
    "16UC1": Encoding(np.dtype(np.uint16), 1),
    "32FC1": Encoding(np.dtype(np.float32), 1),
    "bgr8": Encoding(np.dtype(np.uint8), 3),
    "rgb8": Encoding(np.dtype(np.uint8), 3),
    "bgra8": Encoding(np.dtype(np.uint8), 4),
    "rgba8": Encoding(np.dtype(np.uint8), 4),
}


def image_to_array(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an Image message into (H, W) or (H, W, C) in the encoding's dtype.

    Padded rows (``step`` > width x pixel size) and big-endian data are
    honoured. Colour frames come back in RGB(A) channel order. 32FC1 frames
    with NaN or Inf are refused (``non_finite``): a network fed NaN answers NaN.
    """
    enc = ENCODINGS.get(str(msg.encoding))
    if enc is None:
        raise ImageConversionError(
            "unknown_encoding",
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}",
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError("empty_image", f"empty image {w}x{h}")
    if h * w > max_pixels:
        raise ImageConversionError(
            "too_large", f"image {w}x{h} exceeds max_pixels={max_pixels}"
        )
    row_bytes = w * enc.channels * enc.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            "bad_step", f"step {step} < width {w} x {enc.channels * enc.dtype.itemsize} bytes"
        )
    data = msg.data
    size = len(data)
    if size != h * step:
        raise ImageConversionError(
            "size_mismatch", f"data has {size} bytes, expected height {h} x step {step} = {h * step}"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    rows = buf.reshape(h, step)[:, :row_bytes]
    dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dtype).reshape(h, w, enc.channels)
    arr = arr.astype(enc.dtype, copy=False)  # native byte order
    if enc.channels == 1:
        arr = arr[..., 0]
    elif str(msg.encoding).startswith("bgr"):
        arr = arr[..., [2, 1, 0, 3][: enc.channels]]
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageConversionError("non_finite", "32FC1 image holds NaN or Inf values")
    return arr


def array_to_image_fields(arr: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of an Image message holding ``arr`` (RGB(A) order for colour input).

    Returns ``height, width, encoding, is_bigendian, step, data`` (``data`` as an
    ``array.array('B')``) to be set on a message object, little-endian, no row padding.
    An array of another dtype is converted only if every value survives the conversion
    (``bad_value`` otherwise: 300 or 0.5 as mono8, -1 as mono16, 1e40 as 32FC1).
    """
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageConversionError("unknown_encoding", f"unsupported encoding {encoding!r}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != enc.channels:
        raise ImageConversionError(
            "bad_shape", f"array of shape {arr.shape} cannot be {encoding} ({enc.channels} channels)"
        )
    if encoding.startswith("bgr"):
        arr = arr[..., [2, 1, 0, 3][: enc.channels]]
    if arr.dtype != enc.dtype:
        _check_representable(arr, enc.dtype, encoding)
    out = np.ascontiguousarray(arr, dtype=enc.dtype.newbyteorder("<"))
    h, w = out.shape[:2]
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * enc.channels * enc.dtype.itemsize,
        "data": _byte_array(out),
    }


def _check_representable(arr: np.ndarray, dtype: np.dtype, encoding: str) -> None:
    """Raise ``bad_value`` unless every value of ``arr`` is exactly held by ``dtype`` (a
    finite value stays finite in a float encoding)."""
    with np.errstate(all="ignore"):
        cast = arr.astype(dtype)
        if dtype.kind == "f":
            ok = bool((np.isfinite(cast) == np.isfinite(arr)).all())
        else:
            ok = bool(np.array_equal(cast.astype(arr.dtype), arr))
    if not ok:
        raise ImageConversionError(
            "bad_value",
            f"{arr.dtype} array holds values {encoding} ({dtype}) cannot represent "
            f"(range {arr.min()}..{arr.max()})",
        )


def _byte_array(arr: np.ndarray) -> array.array[int]:
    """``arr``'s bytes as an ``array.array('B')``, in one copy: the type rclpy's message
    classes take as they are. Bytes are checked byte by byte in Python by Humble's
    classes (and by later ones with field checks on): 22 ms for a 640x512 mask, against
    0.02 ms for this."""
    out = array.array("B")
    out.frombytes(arr.data.cast("B"))  # arr is C-contiguous
    return out
