"""Property-based tests of Image message -> array (hypothesis, no rclpy).

Random encodings (valid names, near misses, arbitrary text), sizes, steps, endianness,
data containers and truncated/oversized data: :func:`image_to_array` either returns
exactly what an independent, pixel-by-pixel ``struct`` decoder gives, or raises the one
:class:`ImageConversionError` kind that decoder predicts. Nothing else escapes.
"""

from __future__ import annotations

import array
import math
import struct
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from irstd_ros.core.padding import MAX_STRIDE  # noqa: E402
from irstd_ros.errors import ImageConversionError  # noqa: E402
from irstd_ros.ros.conversions import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    ENCODINGS,
    array_to_image_fields,
    image_to_array,
)

EXAMPLES = 200
# The reference's own table (sensor_msgs/image_encodings.hpp): struct format, channels.
REFERENCE: dict[str, tuple[str, int]] = {
    "mono8": ("B", 1), "8UC1": ("B", 1), "mono16": ("H", 1), "16UC1": ("H", 1),
    "32FC1": ("f", 1), "bgr8": ("B", 3), "rgb8": ("B", 3), "bgra8": ("B", 4), "rgba8": ("B", 4),
}
NUMPY_TYPE = {"B": np.uint8, "H": np.uint16, "f": np.float32}
TO_RGB = {"bgr8": (2, 1, 0), "bgra8": (2, 1, 0, 3)}
NEAR_MISSES = ["MONO8", "mono8 ", "Mono16", "16SC1", "32FC3", "yuv422", "bayer_rggb8",
               "mono32", "8UC3", "64FC1", "", "rgb16", "bgr16"]
KINDS = {"unknown_encoding", "empty_image", "too_large", "bad_step", "size_mismatch",
         "non_finite"}
CONTAINERS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "array": lambda b: array.array("B", b),  # what rclpy gives for uint8[]
    "memoryview": memoryview,
    "numpy": lambda b: np.frombuffer(b, np.uint8),  # what rosbags gives
    "list": list,  # what a message built by hand holds (rclpy's classes take one)
}
SMALL_DATA = 4096  # largest buffer the strategy builds
ALLOCATION_LIMIT = 1 << 20  # bytes the converter may allocate for a message with tiny data


def reference_decode(m: SimpleNamespace, max_pixels: int) -> np.ndarray | str:
    """Independent decoder: the array, or the name of the error kind, in the documented
    order (encoding, empty, too large, step, size, non-finite)."""
    if not isinstance(m.encoding, str) or m.encoding not in REFERENCE:
        return "unknown_encoding"
    fmt, ch = REFERENCE[m.encoding]
    h, w, step = m.height, m.width, m.step
    if h <= 0 or w <= 0:
        return "empty_image"
    # the network input, padded to image_to_array's default stride (the largest network's)
    if math.ceil(h / MAX_STRIDE) * math.ceil(w / MAX_STRIDE) * MAX_STRIDE**2 > max_pixels:
        return "too_large"
    size = struct.calcsize(fmt)
    if step < w * ch * size:
        return "bad_step"
    data = bytes(m.data)
    if len(data) != h * step:
        return "size_mismatch"
    order = ">" if m.is_bigendian else "<"
    values = [
        [[struct.unpack_from(order + fmt, data, y * step + (x * ch + c) * size)[0]
          for c in TO_RGB.get(m.encoding, range(ch))] for x in range(w)]
        for y in range(h)
    ]
    if fmt == "f" and not all(math.isfinite(v) for row in values for px in row for v in px):
        return "non_finite"
    out = np.array(values, dtype=NUMPY_TYPE[fmt]).reshape(h, w, ch)
    return out[..., 0] if ch == 1 else out


def weighted(*branches):
    """A choice among (weight, strategy) pairs, drawn in proportion to the weights."""
    table = [b for n, b in branches for _ in range(n)]
    return st.sampled_from(range(len(table))).flatmap(lambda i: table[i])


@st.composite
def messages(draw) -> tuple[SimpleNamespace, int]:
    """About half decodable messages, the rest spread over every failure."""
    encoding = draw(weighted((4, st.sampled_from(sorted(REFERENCE))),
                             (1, st.sampled_from(NEAR_MISSES)), (1, st.text(max_size=10))))
    fmt, ch = REFERENCE.get(encoding, (draw(st.sampled_from("BHf")), draw(st.sampled_from([1, 3]))))
    pixel = struct.calcsize(fmt) * ch
    size = weighted((6, st.integers(1, 6)), (1, st.integers(0, 6)), (1, st.integers(0, 2**32 - 1)))
    h, w = draw(size), draw(size)
    row = w * pixel
    step = draw(weighted((4, st.just(row)), (2, st.integers(row + 1, row + 9)),
                         (1, st.integers(0, row + 16)), (1, st.integers(0, 2**32 - 1))))
    wanted = h * step
    if wanted <= SMALL_DATA:
        delta = draw(weighted((6, st.just(0)), (1, st.sampled_from([-1, 1, -step, step, -pixel]))))
        length = max(0, min(SMALL_DATA, wanted + delta))
    else:  # a huge declared size: the data is never that big
        length = draw(st.integers(0, 64))
    big = draw(st.sampled_from([0, 0, 1, 2, 255]))
    data = bytearray(draw(st.binary(min_size=length, max_size=length)))
    if fmt == "f" and length >= 4 and draw(st.booleans()):  # plant a NaN or an Inf
        at = 4 * draw(st.integers(0, length // 4 - 1))
        value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        data[at : at + 4] = struct.pack((">" if big else "<") + "f", value)
    container = CONTAINERS[draw(st.sampled_from(sorted(CONTAINERS)))]
    msg = SimpleNamespace(
        height=h, width=w, encoding=encoding, step=step, data=container(bytes(data)),
        is_bigendian=big,
    )
    max_pixels = draw(weighted((3, st.just(DEFAULT_MAX_PIXELS)), (1, st.integers(1, 64))))
    return msg, max_pixels


def test_reference_knows_exactly_the_supported_encodings():
    assert set(REFERENCE) == set(ENCODINGS)


@settings(max_examples=EXAMPLES, deadline=None)
@given(messages())
def test_decode_is_the_reference_array_or_the_named_error(case):
    msg, max_pixels = case
    expected = reference_decode(msg, max_pixels)
    try:
        got = image_to_array(msg, max_pixels=max_pixels)
    except ImageConversionError as exc:
        assert exc.kind in KINDS
        assert exc.kind == expected, f"{exc.kind} ({exc}), reference says {expected}"
        assert str(exc)
        return
    assert not isinstance(expected, str), f"decoded, but the reference says {expected}"
    assert got.dtype == ENCODINGS[msg.encoding].dtype and got.dtype.isnative
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(
    encoding=st.sampled_from(sorted(REFERENCE)),
    h=st.integers(1, 2**32 - 1),
    w=st.integers(1, 2**32 - 1),
    step=st.integers(ALLOCATION_LIMIT, 2**32 - 1),
    length=st.integers(0, 64),
)
def test_huge_declared_sizes_are_refused_without_allocating(encoding, h, w, step, length):
    """Declared height x step of 1 MiB to 16 EiB with at most 64 bytes of data."""
    msg = SimpleNamespace(height=h, width=w, encoding=encoding, step=step,
                          data=bytes(length), is_bigendian=0)
    tracemalloc.start()
    try:
        with pytest.raises(ImageConversionError) as info:
            image_to_array(msg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.kind in {"too_large", "bad_step", "size_mismatch"}
    assert peak < ALLOCATION_LIMIT


def arrays_for(encoding: str):
    enc = ENCODINGS[encoding]
    shape = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8)
    if enc.channels > 1:
        shape = shape.map(lambda s: (*s, enc.channels))
    elements = (st.floats(-1e6, 1e6, width=32) if enc.dtype.kind == "f" else None)
    return hnp.arrays(enc.dtype, shape, elements=elements)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(sorted(ENCODINGS)).flatmap(lambda e: st.tuples(st.just(e), arrays_for(e))))
def test_encode_then_decode_is_the_identity(case):
    encoding, arr = case
    fields = array_to_image_fields(arr, encoding)
    assert fields["step"] * fields["height"] == len(fields["data"])
    np.testing.assert_array_equal(image_to_array(SimpleNamespace(**fields)), arr)
