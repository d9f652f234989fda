"""Image message <-> array for every encoding, padded steps and big-endian data (no rclpy)."""

import array
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from _support.compressed import png_by_hand

from irstd_ros.core.normalization import InputNorm, normalize, to_grey
from irstd_ros.errors import ImageConversionError
from irstd_ros.ros.conversions import (
    ENCODINGS,
    array_to_image_fields,
    compressed_to_array,
    frame_to_array,
    image_to_array,
)


def msg_from(arr, encoding, pad=0, bigendian=False):
    """Build an Image-like message by hand (independent of array_to_image_fields)."""
    enc = ENCODINGS[encoding]
    a = arr if arr.ndim == 3 else arr[..., None]
    if encoding.startswith("bgr"):
        a = a[..., [2, 1, 0, 3][: enc.channels]]
    a = np.ascontiguousarray(a, dtype=enc.dtype.newbyteorder(">" if bigendian else "<"))
    h, w = a.shape[:2]
    rows = a.reshape(h, -1).view(np.uint8)
    rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=7)
    return SimpleNamespace(
        height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
        step=rows.shape[1], data=rows.tobytes(),
    )


def sample(encoding, h=5, w=7):
    enc = ENCODINGS[encoding]
    rng = np.random.default_rng(0)
    shape = (h, w) if enc.channels == 1 else (h, w, enc.channels)
    if enc.dtype.kind == "f":
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(enc.dtype).max, shape, dtype=enc.dtype)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_decode_every_encoding(encoding, pad, bigendian):
    arr = sample(encoding)
    out = image_to_array(msg_from(arr, encoding, pad, bigendian))
    assert out.dtype == ENCODINGS[encoding].dtype
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encode_decode_round_trip(encoding):
    arr = sample(encoding)
    fields = array_to_image_fields(arr, encoding)
    assert fields["step"] * fields["height"] == len(fields["data"])
    np.testing.assert_array_equal(image_to_array(SimpleNamespace(**fields)), arr)


def test_bgr_is_returned_in_rgb_order():
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[0, 0] = (10, 20, 30)
    m = SimpleNamespace(height=1, width=1, encoding="bgr8", is_bigendian=0, step=3, data=bytes([30, 20, 10]))
    np.testing.assert_array_equal(image_to_array(m), rgb)


def test_big_endian_mono16_value():
    m = SimpleNamespace(height=1, width=1, encoding="mono16", is_bigendian=1, step=2, data=b"\x01\x02")
    assert image_to_array(m)[0, 0] == 0x0102


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"encoding": "yuv422"}, "unknown_encoding"),
        ({"height": 0}, "empty_image"),
        ({"width": 0, "step": 0}, "empty_image"),
        ({"step": 6}, "bad_step"),
        ({"data": b"\x00" * 10}, "size_mismatch"),
        ({"data": b"\x00" * 200}, "size_mismatch"),
        ({"height": 100000, "width": 100000, "step": 100000}, "too_large"),
    ],
)
def test_bad_messages_raise_named_errors(changes, kind):
    m = msg_from(sample("mono8"), "mono8")
    for k, v in changes.items():
        setattr(m, k, v)
    with pytest.raises(ImageConversionError) as err:
        image_to_array(m, max_pixels=1_000_000)
    assert err.value.kind == kind


@pytest.mark.parametrize(("height", "width"), [(1, 16_777_216), (16_777_216, 1), (1, 600_000)])
def test_a_line_whose_padded_network_input_exceeds_max_pixels_is_refused(height, width):
    """1 x 16,777,216 holds max_pixels px, but padded to 16 rows for the network it would
    take ~100 GB: refused as its padded input from its declared size, before its data is
    even looked at (the message carries none). A compressed frame too, from its header."""
    m = SimpleNamespace(
        height=height, width=width, encoding="mono8", is_bigendian=0, step=width, data=b""
    )
    padded = r"padded to .* stride 32, exceeds max_pixels=16777216"
    with pytest.raises(ImageConversionError, match=padded) as err:
        frame_to_array(m)
    assert err.value.kind == "too_large"
    liar = png_by_hand(np.zeros((2, 2), np.uint8), declared=(width, height), idat=b"")
    with pytest.raises(ImageConversionError, match=padded) as err:
        frame_to_array(SimpleNamespace(format="mono8; png compressed mono8", data=liar))
    assert err.value.kind == "too_large"


@pytest.mark.parametrize(
    ("height", "width", "stride", "refused"),
    [
        (512, 640, 16, False),  # multiples of any stride: the limit holds exactly
        (500, 650, 16, True),  # 325,000 px fit; padded to 512 x 656 they do not
        (1, 327_680, 16, True),  # 16 x 327,680 padded: 16 times the limit
        (1, 327_680, 1, False),  # no padding asked
    ],
)
def test_the_network_s_stride_sets_the_padded_size(height, width, stride, refused):
    """Told the network's stride (the pipeline knows it), the check pads to that one."""
    from irstd_ros.ros.conversions import check_pixels

    if refused:
        with pytest.raises(ImageConversionError, match=f"stride {stride}, exceeds max_pixels"):
            check_pixels(height, width, 512 * 640, stride)
    else:
        check_pixels(height, width, 512 * 640, stride)


def test_a_frame_at_max_pixels_that_needs_no_padding_keeps_the_old_message():
    m = msg_from(np.zeros((64, 64), np.uint8), "mono8")
    assert image_to_array(m, max_pixels=64 * 64).shape == (64, 64)
    with pytest.raises(ImageConversionError, match=r"^image 64x64 exceeds max_pixels=4095$"):
        image_to_array(m, max_pixels=64 * 64 - 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(bad):
    arr = sample("32FC1")
    arr[1, 1] = bad
    with pytest.raises(ImageConversionError) as err:
        image_to_array(msg_from(arr, "32FC1"))
    assert err.value.kind == "non_finite"


def test_encode_refuses_wrong_channel_count():
    with pytest.raises(ImageConversionError, match="3 channels"):
        array_to_image_fields(np.zeros((2, 2), np.uint8), "rgb8")


def test_encoded_data_is_the_byte_array_rclpy_takes_without_checking_each_byte():
    image = pytest.importorskip("sensor_msgs.msg").Image
    arr = sample("mono16")
    fields = array_to_image_fields(arr, "mono16")
    assert isinstance(fields["data"], array.array) and fields["data"].typecode == "B"
    msg = image(check_fields=True)  # Humble's classes always check; later ones on request
    for key, value in fields.items():
        setattr(msg, key, value)
    np.testing.assert_array_equal(image_to_array(msg), arr)


@pytest.mark.parametrize(
    ("arr", "encoding"),
    [
        (np.array([[300, 1]]), "mono8"),  # wrapped to 44
        (np.array([[0.5, 1.0]], np.float32), "mono8"),  # truncated to 0
        (np.array([[-1, 7]]), "mono16"),  # wrapped to 65535
        (np.array([[np.nan, 1.0]]), "16UC1"),
        (np.array([[1e40, 1.0]]), "32FC1"),  # overflows to inf
    ],
)
def test_encode_refuses_values_the_encoding_cannot_hold(arr, encoding):
    with pytest.raises(ImageConversionError) as err:
        array_to_image_fields(arr, encoding)
    assert err.value.kind == "bad_value"


@pytest.mark.parametrize(
    ("arr", "encoding"),
    [
        (np.array([[True, False]]), "mono8"),
        (np.array([[255, 0]]), "mono8"),
        (np.array([[2.0, 65535.0]]), "mono16"),
        (np.array([[0.25, -3.5]]), "32FC1"),
    ],
)
def test_encode_converts_other_dtypes_whose_values_fit(arr, encoding):
    out = image_to_array(SimpleNamespace(**array_to_image_fields(arr, encoding)))
    np.testing.assert_array_equal(out, arr.astype(ENCODINGS[encoding].dtype))


def test_a_bgr8_frame_is_decoded_without_a_copy():
    """bgr8 comes back as a view of the message's bytes in RGB order (a 640x512 frame's
    channel-reordering copy took 2.1 ms), like mono frames; its values are RGB."""
    rgb = sample("bgr8", 6, 9)
    msg = msg_from(rgb, "bgr8")
    msg.data = bytearray(msg.data)
    out = image_to_array(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, rgb)


NATIVE_BIG = sys.byteorder == "big"


@pytest.mark.parametrize(
    ("encoding", "bigendian"),
    [("mono8", False), ("mono16", False), ("mono16", True), ("32FC1", False), ("32FC1", True),
     ("bgr8", False), ("rgba8", False)],
)
def test_a_padded_frame_is_a_strided_view_of_the_message_data(encoding, bigendian):
    """Padded rows (step a multiple of the item size) come back as a view of msg.data with
    row stride ``step``, not a copy without the padding (1-1.5 ms a 640x512 frame, 46 ms
    at 4096x4096), equal to the unpadded frame's; data in the other byte order than the
    host's is copied once, to native order."""
    arr = sample(encoding, 6, 9)
    itemsize = ENCODINGS[encoding].dtype.itemsize
    unpadded = image_to_array(msg_from(arr, encoding, 0, bigendian))
    msg = msg_from(arr, encoding, 4 * itemsize, bigendian)
    msg.data = bytearray(msg.data)
    out = image_to_array(msg)
    np.testing.assert_array_equal(out, unpadded)
    assert out.dtype == unpadded.dtype == ENCODINGS[encoding].dtype
    swapped = itemsize > 1 and bigendian != NATIVE_BIG
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)) == (not swapped)
    if not swapped:
        assert out.strides[0] == msg.step and not out.flags.c_contiguous


@pytest.mark.parametrize("data_type", [bytes, bytearray])
def test_a_padded_view_is_writable_exactly_as_the_unpadded_one(data_type):
    """Read-only data (bytes) gives a read-only frame, padded or not; writable data a
    writable view."""
    arr = sample("mono16", 4, 5)
    flat, padded = (msg_from(arr, "mono16", pad) for pad in (0, 6))
    flat.data, padded.data = data_type(flat.data), data_type(padded.data)
    a, b = image_to_array(flat), image_to_array(padded)
    assert a.flags.writeable == b.flags.writeable == (data_type is bytearray)


@pytest.mark.parametrize(("encoding", "pad"), [("mono16", 1), ("mono16", 3), ("32FC1", 2), ("32FC1", 5)])
@pytest.mark.parametrize("bigendian", [False, True])
def test_a_step_between_items_is_copied_into_aligned_rows(encoding, pad, bigendian):
    """A step that is no multiple of the item size (mono16, step 2w + 1) cannot be a view of
    aligned items: its rows are copied, values exact."""
    arr = sample(encoding, 6, 9)
    msg = msg_from(arr, encoding, pad, bigendian)
    assert msg.step % ENCODINGS[encoding].dtype.itemsize
    out = image_to_array(msg)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == ENCODINGS[encoding].dtype and out.flags.c_contiguous and out.flags.aligned
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "32FC1", "bgr8"])
def test_a_padded_view_normalizes_exactly_as_the_unpadded_frame(encoding):
    """The strided view goes through to_grey and normalize (both kinds) to the very same
    network input as the contiguous unpadded frame."""
    arr = sample(encoding, 40, 48)
    itemsize = ENCODINGS[encoding].dtype.itemsize
    flat = image_to_array(msg_from(arr, encoding, 0))
    padded = image_to_array(msg_from(arr, encoding, 8 * itemsize))
    assert not padded.flags.c_contiguous
    for norm in (InputNorm(), InputNorm(kind="robust", background=16)):
        expected = normalize(to_grey(flat), norm)
        got = normalize(to_grey(padded), norm)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("encoding", ["bgr8", "bgra8", "rgb8", "rgba8"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32])
def test_colour_encoding_writes_the_bytes_of_a_reordering_by_index(encoding, dtype):
    """The channel swap (a channel at a time) writes exactly the bytes a fancy-index
    reordering gives (:func:`msg_from`), from any dtype whose values the encoding holds,
    and from a strided view."""
    arr = sample(encoding, 8, 12).astype(dtype)
    for view in (arr, arr[::2, 1::3]):
        assert bytes(array_to_image_fields(view, encoding)["data"]) == msg_from(view, encoding).data



# --- data of any container: read exactly, or refused by name ----------------------------------
BYTES = bytes([1, 2, 3, 250, 5, 6])  # a 2x3 mono8 frame
EXPECTED = np.array([[1, 2, 3], [250, 5, 6]], np.uint8)
PNG = png_by_hand(EXPECTED)


def mono8(data):
    return SimpleNamespace(height=2, width=3, encoding="mono8", is_bigendian=0, step=3, data=data)


CONTAINERS = {  # data's bytes -> another container holding them
    "list": list,  # what users building a message by hand pass: it was a bare TypeError
    "tuple": tuple,
    "int64 array": lambda b: np.frombuffer(b, np.uint8).astype(np.int64),  # was reshape's ValueError
    "uint16 array": lambda b: np.frombuffer(b, np.uint8).astype(np.uint16),  # its values, not its memory
    "strided uint8 array": lambda b: np.repeat(np.frombuffer(b, np.uint8), 2)[::2],
    "char memoryview": lambda b: memoryview(b).cast("c"),
    "int16 array.array": lambda b: array.array("h", list(b)),
}


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_data_of_byte_values_in_any_container_is_read_exactly(container):
    make = CONTAINERS[container]
    np.testing.assert_array_equal(image_to_array(mono8(make(BYTES))), EXPECTED)
    np.testing.assert_array_equal(compressed_to_array("png", make(PNG)), EXPECTED)
    compressed = SimpleNamespace(format="png", data=make(PNG))
    np.testing.assert_array_equal(frame_to_array(compressed), EXPECTED)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("\x01\x02\x03\xfa\x05\x06", "data is text (str), not bytes"),  # was a TypeError
        (None, "data (NoneType) is a single value"),  # TypeError (bytes(None))
        (6, "data (int) is a single value"),  # bytes(6) read six zero bytes
        ([1, 2, 3, 300, 5, 6], "holds values 1..300; a byte is 0..255"),  # bytes(): ValueError
        ([1, 2, 3, -6, 5, 6], "holds values -6..6"),
        (array.array("b", [1, 2, 3, -6, 5, 6]), "data (array, int8) holds values -6..6"),  # read as 250
        ([1.0, 2.0, 3.0, 250.0, 5.0, 6.0], "holds float64 values, not bytes"),
        ([True, False, True, True, False, True], "holds bool values, not bytes"),
        ([b"\x01", b"", b"\x03", b"\xfa", b"\x05", b"\x06"], "holds |S1 values"),  # b"" as a 0
        ([2**70] * 6, "holds object values"),
        (np.array([2**70] * 6), "data (ndarray) holds object values"),  # memoryview(): a ValueError
        ([1, [2, 3], 250, 5, 6], "is no flat sequence of bytes"),
        (EXPECTED, "is 2-D, shape (2, 3), not a flat sequence"),  # a frame's array, not its bytes
        (memoryview(EXPECTED), "data (memoryview) is 2-D"),
    ],
    ids=["str", "None", "int", "over 255", "negative", "signed array.array", "floats", "booleans",
         "bytes objects", "huge ints", "object array", "nested", "2-D array", "2-D memoryview"],
)
def test_data_that_is_not_bytes_is_bad_data_never_a_type_error(data, words):
    for convert in (lambda: image_to_array(mono8(data)), lambda: compressed_to_array("png", data),
                    lambda: frame_to_array(SimpleNamespace(format="png", data=data))):
        with pytest.raises(ImageConversionError) as err:
            convert()
        assert err.value.kind == "bad_data" and words in str(err.value)


def test_data_that_is_a_byte_buffer_is_not_copied():
    for data in (bytearray(BYTES), array.array("B", BYTES), np.frombuffer(bytearray(BYTES), np.uint8),
                 memoryview(bytearray(BYTES))):
        assert np.shares_memory(image_to_array(mono8(data)), np.frombuffer(data, np.uint8))


@pytest.mark.parametrize(
    ("field", "value"), [("height", None), ("width", "3"), ("step", 3.0), ("height", 2.5)]
)
def test_size_fields_that_are_no_integers_are_bad_field(field, value):
    """int() raised a TypeError for None, read "3" as 3 and cut 2.5 to 2."""
    msg = mono8(BYTES)
    setattr(msg, field, value)
    with pytest.raises(ImageConversionError) as err:
        image_to_array(msg)
    assert err.value.kind == "bad_field" and f"Image field {field} is {type(value).__name__}" in str(err.value)


def test_size_fields_may_be_numpy_integers():
    msg = mono8(BYTES)
    msg.height, msg.width, msg.step = np.uint32(2), np.int64(3), np.uint32(3)  # rosbags' types
    np.testing.assert_array_equal(image_to_array(msg), EXPECTED)
