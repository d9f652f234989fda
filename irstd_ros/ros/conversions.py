"""sensor_msgs/Image <-> numpy, and sensor_msgs/CompressedImage -> numpy, without rclpy
or cv_bridge.

Works on any object with the Image fields (``height, width, encoding,
is_bigendian, step, data``) or the CompressedImage ones (``format, data``), so the core
and its tests need no ROS. Every failure is an :class:`ImageConversionError` whose
``kind`` names the problem; sizes are checked against ``max_pixels`` before anything is
allocated (a compressed frame's: from its PNG/JPEG header, before it is decoded), as the
network input they become: padded to the network's stride (:func:`check_pixels`).

``data`` is a ``uint8[]``: bytes, bytearray, ``array.array('B')`` (rclpy), a uint8 numpy
array (rosbags), a memoryview, or any flat sequence of ints 0..255 (a list, as rclpy's own
message classes take one); other values (text, floats, booleans, ints out of 0..255,
nested or multi-dimensional arrays) are ``bad_data``, never read some other way.
"""

from __future__ import annotations

import array
import io
import operator
from typing import Any, NamedTuple

import numpy as np

from irstd_ros.core.constants import DEFAULT_MAX_PIXELS
from irstd_ros.core.padding import MAX_STRIDE, padded_size
from irstd_ros.errors import DatasetError, ImageConversionError


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


def check_pixels(height: int, width: int, max_pixels: int, stride: int = MAX_STRIDE) -> None:
    """``too_large`` unless a ``height`` x ``width`` frame's network input, padded to
    ``stride`` (the network's; by default the largest any network has), holds at most
    ``max_pixels`` px: a 1 x 16,777,216 line passes a pixel count of 4096 x 4096, but
    padded to 16 rows it would take ~100 GB."""
    padded_h, padded_w = padded_size(height, width, stride)
    if padded_h * padded_w > max_pixels:  # never less than the frame itself
        padding = f", padded to {padded_w}x{padded_h} for the network's stride {stride},"
        if height * width > max_pixels:  # too large, padded or not
            padding = ""
        raise ImageConversionError(
            "too_large", f"image {width}x{height}{padding} exceeds max_pixels={max_pixels}"
        )


def image_to_array(
    msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS, stride: int = MAX_STRIDE
) -> np.ndarray:
    """Decode an Image message into (H, W) or (H, W, C) in the encoding's dtype; refused
    (``too_large``) before anything is allocated where :func:`check_pixels` refuses its size.

    Padded rows (``step`` > width x pixel size) and big-endian data are
    honoured. Colour frames come back in RGB(A) channel order. 32FC1 frames
    with NaN or Inf are refused (``non_finite``): a network fed NaN answers NaN.

    No copy where the layout allows: the result is a view of ``msg.data`` (writable
    only if it is), padded rows included (row stride ``step``: not C-contiguous then).
    Copies are made only for data in the other byte order than this host's, a ``step``
    that is no multiple of the item size, bgra8's channel swap, and ``data`` that is no
    byte buffer (a list of ints).
    """
    enc = ENCODINGS.get(str(msg.encoding))
    if enc is None:
        raise ImageConversionError(
            "unknown_encoding",
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}",
        )
    h, w, step = (_int_field(msg, name) for name in ("height", "width", "step"))
    if h <= 0 or w <= 0:
        raise ImageConversionError("empty_image", f"empty image {w}x{h}")
    check_pixels(h, w, max_pixels, stride)
    row_bytes = w * enc.channels * enc.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            "bad_step", f"step {step} < width {w} x {enc.channels * enc.dtype.itemsize} bytes"
        )
    buf = data_bytes(msg.data)
    size = buf.size
    if size != h * step:
        raise ImageConversionError(
            "size_mismatch", f"data has {size} bytes, expected height {h} x step {step} = {h * step}"
        )
    dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if step % dtype.itemsize == 0:
        # a view of the message's bytes, padded rows too (strides (step, ...)): copying
        # away a padded frame's padding took 1-1.5 ms at 640x512, 46 ms at 4096x4096
        items = buf.view(dtype).reshape(h, step // dtype.itemsize)
        arr = items[:, : w * enc.channels].reshape(h, w, enc.channels)
    else:  # rows that start between items (mono16, step 1281): packed into aligned ones
        rows = buf.reshape(h, step)[:, :row_bytes]
        arr = np.ascontiguousarray(rows).view(dtype).reshape(h, w, enc.channels)
    arr = arr.astype(enc.dtype, copy=False)  # native byte order: a copy only if swapped
    if enc.channels == 1:
        arr = arr[..., 0]
    elif str(msg.encoding).startswith("bgr"):
        # bgr8: a view in reversed channel order, no copy; bgra8: one copy (see _swap_red_blue)
        arr = arr[..., ::-1] if enc.channels == 3 else _swap_red_blue(arr)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageConversionError("non_finite", "32FC1 image holds NaN or Inf values")
    return arr


def _int_field(msg: Any, name: str) -> int:
    """An integer field of an Image message (``height``, ``width``, ``step``): an int or a
    numpy integer; anything else (None, text, 2.5 which ``int`` would cut to 2) is
    ``bad_field`` naming the field."""
    value = getattr(msg, name)
    try:
        return operator.index(value)
    except TypeError:
        raise ImageConversionError(
            "bad_field", f"Image field {name} is {type(value).__name__} {value!r:.40}; expected an integer"
        ) from None


def data_bytes(data: Any) -> np.ndarray:
    """A message's ``data`` (``uint8[]``) as a flat C-contiguous uint8 array: a view of it
    where it is a buffer of bytes already (bytes, bytearray, ``array.array('B')``, a uint8
    array or memoryview), else its values, each a byte (a list of ints 0..255: what rclpy's
    message classes accept). ``bad_data`` for anything that is not exactly that (text,
    floats, booleans, values out of 0..255, several dimensions, a non-sequence)."""
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(data, dtype=np.uint8)
    what = type(data).__name__
    if isinstance(data, str):  # its characters are no bytes: b"..." or .encode() says which
        raise ImageConversionError("bad_data", f"data is text (str), not bytes; {_DATA_TYPES}")
    try:
        byte_buffer = memoryview(data).format in ("B", "c")  # "c": a char buffer
    except (TypeError, ValueError):  # no buffer (a list, a tuple), or none of numbers (objects)
        byte_buffer = False
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged nesting, odd objects
        raise ImageConversionError("bad_data", f"data ({what}) is no flat sequence of bytes ({exc}); {_DATA_TYPES}") from None
    if arr.ndim != 1:
        shape = "a single value" if arr.ndim == 0 else f"{arr.ndim}-D, shape {arr.shape}"
        raise ImageConversionError("bad_data", f"data ({what}) is {shape}, not a flat sequence of bytes; {_DATA_TYPES}")
    if arr.size == 0:  # [] is float64 to numpy
        return np.empty(0, np.uint8)
    if byte_buffer or arr.dtype == np.uint8:
        return np.ascontiguousarray(arr).view(np.uint8)
    # no bytes objects ([b"", b"a"] is S1 to numpy, b"" a 0), floats, booleans, objects
    # (ints beyond int64)
    if arr.dtype.kind not in "iu":
        raise ImageConversionError("bad_data", f"data ({what}) holds {arr.dtype} values, not bytes; {_DATA_TYPES}")
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high > 255:
        raise ImageConversionError(
            "bad_data", f"data ({what}, {arr.dtype}) holds values {low}..{high}; a byte is 0..255"
        )
    return arr.astype(np.uint8)


_DATA_TYPES = (
    "expected bytes, bytearray, array.array('B'), a uint8 array or a flat sequence of ints 0..255"
)


# The codecs of image_transport's ``compressed`` transport (compressed_image_transport):
# the ``format`` field's codec word -> Pillow's format name.
COMPRESSED_CODECS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}


def compressed_codec(fmt: str) -> str:
    """Pillow's name of the codec a CompressedImage ``format`` names: compressed_image_transport's
    ``"<encoding>; <codec> compressed <encoding>"`` (``"mono16; png compressed mono16"``) or
    a bare ``"png"``/``"jpeg"``. Anything else (compressedDepth, theora, h264, an empty
    format) is ``unsupported_format``."""
    text = str(fmt).strip()
    if "compresseddepth" in text.lower():
        raise ImageConversionError(
            "unsupported_format",
            f"CompressedImage format {fmt!r}: compressedDepth (depth images) is not "
            "supported; use the raw or 'compressed' (png, jpeg) transport",
        )
    words = text.rsplit(";", 1)[-1].split()
    codec = COMPRESSED_CODECS.get(words[0].lower()) if words else None
    if codec is None:
        raise ImageConversionError(
            "unsupported_format",
            f"CompressedImage format {fmt!r} is not supported; supported: png and jpeg "
            "(image_transport 'compressed', e.g. 'mono16; png compressed mono16')",
        )
    return codec


def _open_compressed(fmt: str, data: Any, max_pixels: int, stride: int) -> tuple[Any, str]:
    """(the Pillow image, opened lazily: its header read, no pixel decoded; Pillow's codec
    name) of a CompressedImage's ``format`` and ``data``, its size checked
    (:func:`check_pixels`): ``unsupported_format``, ``undecodable``, ``empty_image`` or
    ``too_large`` otherwise."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    codec = compressed_codec(fmt)
    raw = data_bytes(data)
    try:  # lazy: reads the header, not the pixels
        im = PILImage.open(io.BytesIO(raw.data), formats=[codec])
    except PILImage.DecompressionBombError as exc:  # over twice PIL's own limit
        raise ImageConversionError("too_large", f"{codec} frame: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" says no more
        why = "" if isinstance(exc, UnidentifiedImageError) else f" ({exc})"
        raise ImageConversionError(
            "undecodable", f"{raw.size} bytes of format {fmt!r} are no readable {codec} image{why}"
        ) from None
    w, h = im.size
    try:
        if h <= 0 or w <= 0:
            raise ImageConversionError("empty_image", f"empty image {w}x{h}")
        check_pixels(h, w, max_pixels, stride)
    except ImageConversionError:
        im.close()
        raise
    return im, codec


def compressed_size(
    fmt: str, data: Any, max_pixels: int = DEFAULT_MAX_PIXELS, stride: int = MAX_STRIDE
) -> tuple[int, int]:
    """(H, W) of a CompressedImage (its ``format`` and ``data``) from the PNG or JPEG header
    alone: no pixel is decoded. Refused as :func:`compressed_to_array` refuses a frame
    whose header it cannot read (``unsupported_format``, ``undecodable``, ``empty_image``,
    ``too_large``); damaged pixel data behind a good header is found only by decoding."""
    im, _ = _open_compressed(fmt, data, max_pixels, stride)
    with im:
        w, h = im.size
    return int(h), int(w)


def compressed_to_array(
    fmt: str, data: Any, max_pixels: int = DEFAULT_MAX_PIXELS, stride: int = MAX_STRIDE
) -> np.ndarray:
    """Decode a CompressedImage (its ``format`` and ``data``, PNG or JPEG) into (H, W):
    uint8, or uint16 for a 16-bit PNG (values as stored); colour and palette frames
    become BT.601 luma, as the data loader reads them
    (:func:`irstd_ros.data.images.image_pixels`: one rule, one home). EXIF orientation is
    not applied (image_transport does not either: the frame is as the camera stored it).

    The size in the file's header is checked against ``max_pixels`` (:func:`check_pixels`)
    before the pixels are decoded (``too_large``); data that is not a readable image of the named codec, or one
    the loader would misread (16-bit colour, several frames), is ``undecodable``.
    """
    from irstd_ros.data.images import image_pixels, prepare_image

    im, codec = _open_compressed(fmt, data, max_pixels, stride)
    with im:
        try:
            loaded, unsigned32 = prepare_image(im, f"{codec} frame ({fmt!r})", orient=False)
            with loaded:
                return image_pixels(loaded, unsigned32, f"{codec} frame ({fmt!r})")
        except DatasetError as exc:
            raise ImageConversionError("undecodable", str(exc)) from None


def _is_compressed(msg: Any) -> bool:
    """Whether ``msg`` is a CompressedImage (a ``format`` field, no ``encoding``), not an
    Image: the one place the two are told apart."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def frame_to_array(
    msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS, stride: int = MAX_STRIDE
) -> np.ndarray:
    """An Image (:func:`image_to_array`) or a CompressedImage (:func:`compressed_to_array`;
    told apart by its ``format`` field) as an array; ``stride``: the network's
    (:func:`check_pixels`)."""
    if _is_compressed(msg):
        return compressed_to_array(msg.format, msg.data, max_pixels, stride)
    return image_to_array(msg, max_pixels, stride)


def frame_size(
    msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS, stride: int = MAX_STRIDE
) -> tuple[int, int]:
    """(H, W) of an Image, from its ``height`` and ``width`` fields (unchecked: its data is
    checked where it is decoded), or of a CompressedImage, from its file's header
    (:func:`compressed_size`, refused as it refuses), no pixel decoded."""
    if _is_compressed(msg):
        return compressed_size(msg.format, msg.data, max_pixels, stride)
    return int(msg.height), int(msg.width)


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
        arr = _swap_red_blue(arr)
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


def _swap_red_blue(arr: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A) of an (H, W, 3|4) array: a new C-contiguous one, copied a channel
    at a time. A fancy index over the channel axis (``arr[..., [2, 1, 0]]``) copies element
    by element: 2.1 ms for a 640x512 bgr8 frame, 0.37 ms this way (bgra8: 2.8 and 0.5)."""
    out = np.empty(arr.shape, arr.dtype)
    out[..., 0] = arr[..., 2]
    out[..., 1] = arr[..., 1]
    out[..., 2] = arr[..., 0]
    out[..., 3:] = arr[..., 3:]
    return out


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
