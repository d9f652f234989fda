"""Every image mode a user's dataset may hold is read as intensities, never misread."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from irstd_ros.core.normalization import GREY_WEIGHTS
from irstd_ros.data import images
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.errors import DatasetError

GREY = np.array([[0, 60, 128], [200, 255, 7]], np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.rint(rgb[..., :3].astype(np.float32) @ GREY_WEIGHTS).astype(np.uint8)


def save(tmp_path, im: Image.Image, name: str = "x.png"):
    path = tmp_path / name
    im.save(path)
    return path


def test_grey_l(tmp_path):
    out = read_image(save(tmp_path, Image.fromarray(GREY)))
    assert out.dtype == np.uint8 and (out == GREY).all()


def test_grey_with_alpha_la_drops_alpha(tmp_path):
    im = Image.merge("LA", (Image.fromarray(GREY), Image.fromarray(np.full_like(GREY, 17))))
    out = read_image(save(tmp_path, im))
    assert out.dtype == np.uint8 and (out == GREY).all()


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_sixteen_bit_png_and_tiff(tmp_path, suffix):
    counts = np.array([[0, 3000, 16383], [40000, 65535, 1]], np.uint16)
    out = read_image(save(tmp_path, Image.fromarray(counts), f"x.{suffix}"))
    assert out.dtype == np.uint16 and (out == counts).all()


def test_float_tiff(tmp_path):
    kelvin = np.array([[250.5, 300.25], [-3.0, 1e4]], np.float32)
    out = read_image(save(tmp_path, Image.fromarray(kelvin, mode="F"), "x.tif"))
    assert out.dtype == np.float32 and np.array_equal(out, kelvin)


def test_rgb_and_rgba_become_luma(tmp_path):
    rgb = np.stack([GREY, GREY[::-1], np.full_like(GREY, 90)], axis=-1)
    out = read_image(save(tmp_path, Image.fromarray(rgb)))
    assert out.dtype == np.uint8 and (out == luma(rgb)).all()
    rgba = np.concatenate([rgb, np.full_like(GREY, 3)[..., None]], axis=-1)
    assert (read_image(save(tmp_path, Image.fromarray(rgba), "y.png")) == luma(rgb)).all()


def test_palette_is_converted_to_luminance_never_indices(tmp_path):
    # index 0 is white and index 1 black: reading indices would invert the scene
    im = Image.fromarray(np.array([[0, 1], [1, 2]], np.uint8), mode="P")
    im.putpalette([255, 255, 255, 0, 0, 0, 100, 100, 100] + [0] * (256 * 3 - 9))
    out = read_image(save(tmp_path, im))
    assert out.tolist() == [[255, 0], [0, 100]]


def test_bilevel_images_are_0_or_255(tmp_path):
    im = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    assert read_image(save(tmp_path, im)).tolist() == [[0, 255]]


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="broken.png: not a readable image"):
        read_image(bad)
    with pytest.raises(DatasetError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


def test_truncated_png_is_an_error_not_a_partial_image(tmp_path):
    path = save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="x.png"):
        read_image(path)


class _OddImage:
    """Stands in for a Pillow image of a mode the reader does not know."""

    mode = "BGR;24"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_unsupported_mode_lists_the_supported_ones(tmp_path, monkeypatch):
    from irstd_ros.data import images

    monkeypatch.setattr(images, "_open", lambda _path: (_OddImage(), False))
    with pytest.raises(DatasetError, match=r"x.png: image mode 'BGR;24' is not supported; supported: L"):
        read_image(tmp_path / "x.png")


def test_masks_of_any_mode_are_boolean(tmp_path):
    m = np.array([[0, 255], [0, 1]], np.uint8)
    assert read_mask(save(tmp_path, Image.fromarray(m))).tolist() == [[False, True], [False, True]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1, 2] = 1  # a faint blue pixel still marks a target
    assert read_mask(save(tmp_path, Image.fromarray(rgb), "y.png")).tolist() == [[False, True], [False, False]]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_non_finite_pixels_is_refused(tmp_path, bad):
    arr = np.full((4, 5), 0.25, np.float32)
    arr[1, 2] = bad
    path = save(tmp_path, Image.fromarray(arr), "x.tif")
    with pytest.raises(DatasetError, match=r"x\.tif: 1 of 20 pixels are NaN or infinite"):
        read_image(path)


def test_all_nan_float_tiff_is_refused(tmp_path):
    path = save(tmp_path, Image.fromarray(np.full((3, 3), np.nan, np.float32)), "nan.tif")
    with pytest.raises(DatasetError, match=r"nan\.tif: 9 of 9 pixels"):
        read_image(path)


def test_finite_float_tiff_is_read(tmp_path):
    arr = np.array([[0.0, -1.5], [3.25, 1e6]], np.float32)
    out = read_image(save(tmp_path, Image.fromarray(arr), "ok.tif"))
    assert out.dtype == np.float32 and (out == arr).all()


def test_float_mask_with_nan_is_refused(tmp_path):
    arr = np.zeros((3, 3), np.float32)
    arr[0, 0] = np.nan
    with pytest.raises(DatasetError, match=r"m\.tif: the mask holds NaN"):
        read_mask(save(tmp_path, Image.fromarray(arr), "m.tif"))


def _png16(path, arr: np.ndarray):
    """A 16-bit PNG of an (H, W, C) uint16 array, C 2 (grey+alpha), 3 (RGB) or 4 (RGBA):
    written by hand, since Pillow writes no 16-bit colour PNG."""
    import struct
    import zlib

    h, w, c = arr.shape
    colour_type = {2: 4, 3: 2, 4: 6}[c]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_sixteen_bit_colour_or_alpha_is_refused_not_cut_to_8_bits(tmp_path, channels):
    arr = np.full((2, 3, channels), 1000, np.uint16)  # 1000 = 0x03E8: 8 bits would give 3
    path = _png16(tmp_path / "c16.png", arr)
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match=r"c16.png: 16-bit pixels .* save it as 16-bit greyscale"):
            read(path)


def test_a_file_of_several_frames_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    Image.fromarray(GREY).save(path, save_all=True, append_images=[Image.fromarray(GREY[::-1])])
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match="stack.tif: holds 2 frames"):
            read(path)


def test_lossy_masks_are_refused_and_transparent_pixels_are_background(tmp_path):
    m = np.zeros((16, 16), np.uint8)
    m[6:9, 6:9] = 255
    with pytest.raises(DatasetError, match="m.jpg: a JPEG mask is lossy"):
        read_mask(save(tmp_path, Image.fromarray(m), "m.jpg"))
    rgba = np.full((2, 2, 4), 255, np.uint8)
    rgba[..., 3] = 0  # transparent white: nothing drawn
    rgba[1, 0, 3] = 255
    assert read_mask(save(tmp_path, Image.fromarray(rgba), "a.png")).tolist() == [[False, False], [True, False]]
    la = Image.merge("LA", (Image.fromarray(np.full((2, 2), 9, np.uint8)), Image.fromarray(rgba[..., 3])))
    assert read_mask(save(tmp_path, la, "la.png")).tolist() == [[False, False], [True, False]]


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_exif_orientation_reads_the_file_as_viewers_show_it(tmp_path, suffix):
    stored = np.zeros((4, 6), np.uint8)
    stored[0, 0] = 255  # top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: viewers rotate it 90 degrees clockwise
    path = tmp_path / f"x.{suffix}"
    Image.fromarray(stored).save(path, exif=exif, **({"quality": 100} if suffix == "jpg" else {}))
    out = read_image(path)
    assert out.shape == (6, 4)
    assert np.unravel_index(int(out.argmax()), out.shape) == (0, 3)  # now top right
    if suffix == "jpg":
        with pytest.raises(DatasetError, match="lossy"):  # still known as a JPEG
            read_mask(path)
    else:
        mask = read_mask(path)
        assert mask.shape == (6, 4) and mask[0, 3] and mask.sum() == 1


def test_sixteen_bit_with_exif_orientation_keeps_its_bits(tmp_path):
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down
    path = tmp_path / "x.png"
    Image.fromarray(stored).save(path, exif=exif)
    out = read_image(path)
    assert out.dtype == np.uint16 and (out == stored[::-1, ::-1]).all()


def test_tiff_with_exif_orientation_is_refused_not_misread(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "x.tif"
    Image.fromarray(GREY).save(path, exif=exif)
    with pytest.raises(DatasetError, match="x.tif: a TIFF with an EXIF orientation"):
        read_image(path)


@pytest.mark.parametrize(
    ("mode", "background", "target"),
    [("YCbCr", (0, 128, 128), (255, 128, 128)), ("CMYK", (0, 0, 0, 255), (0, 0, 0, 0))],
)
def test_a_ycbcr_or_cmyk_mask_is_read_by_its_colours_not_its_channels(tmp_path, mode, background, target):
    # black is (Y 0, Cb 128, Cr 128) and (no ink but K): read channel by channel, a black
    # YCbCr mask was all target and a white-on-black CMYK one all background
    im = Image.new(mode, (4, 3), background)
    im.putpixel((1, 2), target)
    im.save(tmp_path / "m.tif")
    expected = np.zeros((3, 4), bool)
    expected[2, 1] = True
    assert np.array_equal(read_mask(tmp_path / "m.tif"), expected)


def write_raw_tiff(path, arr: np.ndarray, sample_format: int) -> None:
    """A one-strip little-endian grey TIFF of ``arr`` as it is (Pillow writes neither uint32
    nor int8)."""
    import struct

    data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    h, w = arr.shape
    tags = [(256, w), (257, h), (258, 8 * arr.itemsize), (259, 1), (262, 1), (273, 8), (277, 1),
            (278, h), (279, len(data)), (339, sample_format)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, 4, 1, v) for t, v in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8 + len(data)) + data + ifd + b"\x00" * 4)


def test_unsigned_32_bit_tiff_keeps_its_values_and_a_mask_of_them_its_targets(tmp_path):
    # Pillow holds them as signed int32: 2**31 + 5 came out negative, a 0xFFFFFFFF mask
    # pixel as -1, i.e. background
    path = tmp_path / "u32.tif"
    write_raw_tiff(path, np.array([[1, 2**31 + 5], [70000, 2**32 - 1]], np.uint32), 1)
    out = read_image(path)
    assert out.dtype == np.uint32 and out.tolist() == [[1, 2**31 + 5], [70000, 2**32 - 1]]
    write_raw_tiff(path, np.array([[0, 2**32 - 1], [0, 0]], np.uint32), 1)
    assert read_mask(path).tolist() == [[False, True], [False, False]]
    write_raw_tiff(path, np.array([[-1, 2**31 - 1]], np.int32), 2)  # signed stays signed
    out = read_image(path)
    assert out.dtype == np.int32 and out.tolist() == [[-1, 2**31 - 1]]


def test_a_32_bit_frame_at_a_large_offset_keeps_every_count_and_its_noise(tmp_path):
    # as float32 (a 24-bit mantissa) 1e8 counts went in steps of 8: noise 8 measured as 8.35
    from irstd_ros.core.normalization import noise_sigma

    counts = (1e8 + np.rint(np.random.default_rng(0).normal(0.0, 8.0, (128, 128)))).astype(np.int32)
    out = read_image(save(tmp_path, Image.fromarray(counts, mode="I"), "i32.tif"))
    assert out.dtype == np.int32 and np.array_equal(out, counts)
    assert noise_sigma(out) == noise_sigma(counts)


def test_signed_8_bit_tiff_is_refused_not_read_as_unsigned(tmp_path):
    path = tmp_path / "i8.tif"
    write_raw_tiff(path, np.array([[-1, 5]], np.int8), 2)  # Pillow: [[255, 5]]
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match="signed 8-bit"):
            read(path)


@pytest.mark.parametrize("read", [read_image, read_mask])
def test_a_decompression_bomb_is_a_dataset_error_naming_the_file(tmp_path, monkeypatch, read):
    """A file over twice Pillow's pixel limit (a 100000x100000 PNG of a few hundred bytes)
    raised Pillow's DecompressionBombError, a traceback from ``irstd``; the limit is lowered
    here so that a small file crosses it."""
    path = tmp_path / "bomb.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 x 1000
    with pytest.raises(DatasetError, match="bomb.png: too many pixels to read"):
        read(path)


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
@pytest.mark.parametrize("read", [read_image, read_mask])
@pytest.mark.parametrize("damage", ["truncated", "corrupt pixels"])
def test_files_that_fail_to_decode_leave_no_file_open(tmp_path, read, damage):
    """Pillow opens lazily: a file whose header reads but whose pixels do not kept its
    handle open for as long as the error lived (one per bad file of a dataset, until the
    garbage collector ran; a ResourceWarning then)."""
    good = save(tmp_path, Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8)))
    data = good.read_bytes()
    bad = tmp_path / "bad.png"
    if damage == "truncated":
        bad.write_bytes(data[:200])
    else:  # the IDAT chunk's body overwritten: its header and size stay
        at = data.index(b"IDAT") + 40
        bad.write_bytes(data[:at] + bytes(100) + data[at + 100 :])
    before, errors = _open_files(), []
    for _ in range(50):
        try:
            read(bad)
        except DatasetError as exc:
            errors.append(exc)  # as a tool collecting a dataset's errors would
    assert len(errors) == 50 and "bad.png: not a readable image" in str(errors[0])
    assert _open_files() == before


def test_a_decompression_bomb_is_refused_where_pillows_own_check_is_switched_off(tmp_path, monkeypatch):
    """Programs switch Pillow's limit off (``Image.MAX_IMAGE_PIXELS = None``, for large
    scans); the loader then trusted a file's declared size: a 100000x100000 PNG of a few
    hundred bytes asked for 10 GB. Its fallback is lowered here so that 64x64 crosses it."""
    path = save(tmp_path, Image.new("L", (64, 64)), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(images, "FALLBACK_MAX_PIXELS", 1000)
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match=r"bomb.png: too many pixels to read \(64x64 = 4096 pixels"):
            read(path)
    monkeypatch.setattr(images, "FALLBACK_MAX_PIXELS", 4096)  # at most twice it: read
    assert read_image(path).shape == (64, 64)


def test_a_ycbcr_tiff_is_read_as_its_luma_channel(tmp_path):
    """A YCbCr TIFF's Y is its BT.601 luma: taken through RGB and back it lost a count in
    some pixels (Y 124 of RGB (200, 100, 50) read as 123)."""
    ycc = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(ycc, "YCbCr").save(tmp_path / "y.tif")
    out = read_image(tmp_path / "y.tif")
    assert out.dtype == np.uint8 and np.array_equal(out, ycc[..., 0])


def _as_pillow_9_opens_it(im: Image.Image) -> Image.Image:
    """``im``, an uncompressed YCbCr TIFF just opened, as Pillow before 10.1 opens it: RGB
    with raw mode RGBX (four bytes a pixel out of three)."""
    if im.mode == "YCbCr":  # opened by Pillow 11+ (a property mode, named tiles)
        im._mode = "RGB"
        im.tile = [t._replace(args=("RGBX", *t.args[1:])) for t in im.tile]
    assert im.mode == "RGB" and [t[3][0] for t in im.tile] == ["RGBX"]
    return im


@pytest.mark.parametrize("read", [read_image, read_mask])
def test_a_ycbcr_tiff_reads_the_same_where_pillow_opens_it_as_rgb(tmp_path, monkeypatch, read):
    """Pillow 9.0 (ROS Humble's) opened an uncompressed YCbCr TIFF as RGB with raw mode
    RGBX: 'not a readable image (image file is truncated)', or garbage with
    ImageFile.LOAD_TRUNCATED_IMAGES."""
    ycc = np.zeros((4, 6, 3), np.uint8)
    ycc[..., 1:] = 128  # black
    ycc[1, 2] = (124, 90, 170)  # a target
    Image.fromarray(ycc, "YCbCr").save(tmp_path / "y.tif")
    expected = read(tmp_path / "y.tif")
    pillow_open = Image.open
    monkeypatch.setattr(images.Image, "open", lambda path: _as_pillow_9_opens_it(pillow_open(path)))
    assert np.array_equal(read(tmp_path / "y.tif"), expected)
    assert expected.sum() == (124 if read is read_image else 1)


def test_a_ycbcr_tiff_with_subsampled_chroma_is_refused(tmp_path):
    # Pillow's raw decoder reads every pixel's Cb and Cr, whatever the file's subsampling
    Image.new("YCbCr", (4, 4), (10, 128, 128)).save(tmp_path / "s.tif", tiffinfo={530: (2, 2)})
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match=r"s.tif: an uncompressed YCbCr TIFF with subsampled chroma \(2, 2\)"):
            read(tmp_path / "s.tif")


def test_a_signed_8_bit_tiff_is_refused_by_name_where_pillow_cannot_identify_it(tmp_path, monkeypatch):
    """Pillow 9.0 cannot identify a signed 8-bit TIFF: 'not a readable image (cannot
    identify image file)', not the refusal of newer Pillow."""
    from PIL import UnidentifiedImageError

    path = tmp_path / "i8.tif"
    write_raw_tiff(path, np.array([[-1, 5]], np.int8), 2)

    def pillow_9_open(fp):
        raise UnidentifiedImageError(f"cannot identify image file {str(fp)!r}")

    monkeypatch.setattr(images.Image, "open", pillow_9_open)
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match="i8.tif: signed 8-bit pixels are not supported"):
            read(path)
    path.write_bytes(b"not an image")  # anything else: as before
    with pytest.raises(DatasetError, match="i8.tif: not a readable image"):
        read_image(path)


@pytest.mark.skipif(not features.check("libtiff"), reason="Pillow writes JPEG-compressed TIFFs with libtiff")
@pytest.mark.parametrize("mode", ["RGB", "YCbCr"])
def test_a_jpeg_compressed_tiff_mask_is_refused_as_lossy(tmp_path, mode):
    # its compression noise was read as target: 125 target pixels of 5 drawn
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[8:10, 3:5] = (0, 255, 0)
    Image.fromarray(rgb).convert(mode).save(tmp_path / "m.tif", compression="jpeg", quality=95)
    with pytest.raises(DatasetError, match="m.tif: a JPEG-compressed TIFF mask is lossy"):
        read_mask(tmp_path / "m.tif")
    assert read_image(tmp_path / "m.tif").shape == (16, 16)  # an image may be lossy
