"""One image reader for datasets, the CLI and the tools: files as they come.

Every image becomes one channel in the file's own units, never rescaled:

| file mode | result |
|---|---|
| ``L``, ``LA`` (alpha dropped), ``1`` | uint8 |
| ``I;16``/``I;16B``/``I;16L`` (16-bit PNG, TIFF), ``I`` within 0..65535 | uint16 |
| ``I`` outside 0..65535 | int32 (uint32 for an unsigned file): every count exact |
| ``F`` | float32 |
| ``RGB``, ``RGBA`` (alpha ignored), ``P``/``PA`` (palette → colours, never indices), ``CMYK`` | uint8 BT.601 luma |
| ``YCbCr`` (an uncompressed TIFF; any Pillow: :func:`~irstd_ros.core.pillow.declare_ycbcr_tiff`) | uint8 Y, its BT.601 luma |

``I`` is 32-bit signed or unsigned (a uint32 TIFF keeps its values 2**31 and above).
Anything else, a file that cannot be decoded, a float image with a NaN or infinite
pixel, a 16-bit colour or grey+alpha file (Pillow would keep only its high bytes), a
signed 8-bit TIFF (Pillow would read -1 as 255; 9.0 cannot read it), an uncompressed
YCbCr TIFF with subsampled chroma (Pillow cannot read it), or a file of
several frames (a TIFF stack, an animated PNG) raises :class:`DatasetError` naming the
file: nothing is silently misread. A file whose EXIF ``Orientation`` says its
pixels are stored turned or mirrored is read as viewers show it (as ``ImageOps.exif_transpose``),
the same for an image and its mask; a TIFF with one is refused (Pillow misreads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from irstd_ros.core.normalization import to_grey
from irstd_ros.core.pillow import TRANSPOSE, declare_ycbcr_tiff, tiff_tags
from irstd_ros.errors import DatasetError

GREY_MODES = ("L", "1")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
RGB_CONVERTED_MODES = ("CMYK", "YCbCr", "LAB", "HSV")  # read_mask: as RGB (black: Cb, Cr 128)
SUPPORTED_MODES = (*GREY_MODES, "LA", *SIXTEEN_BIT_MODES, "I", "F", *COLOUR_MODES)
UINT16_MAX = 65535
TIFF_BITS_PER_SAMPLE = 258  # the tags
TIFF_SAMPLE_FORMAT = 339  # 2: signed integers
TIFF_YCBCR_SUBSAMPLING = 530  # (1, 1): chroma at full resolution
UNSIGNED_32_RAW_MODES = ("I;32", "I;32N", "I;32L", "I;32B")  # Pillow's raw modes of uint32 files
# Pillow's default MAX_IMAGE_PIXELS (about 89 Mpx, 1024**3 / 4 / 3): files of over twice it
# are refused (decompression bombs) also where a program switched Pillow's check off (None)
FALLBACK_MAX_PIXELS = 89_478_485
EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 (or none, or a value outside 2..8): as stored
EXIF_TRANSPOSE = {  # Orientation -> the transpose that shows the pixels as viewers do
    2: TRANSPOSE.FLIP_LEFT_RIGHT,
    3: TRANSPOSE.ROTATE_180,
    4: TRANSPOSE.FLIP_TOP_BOTTOM,
    5: TRANSPOSE.TRANSPOSE,
    6: TRANSPOSE.ROTATE_270,
    7: TRANSPOSE.TRANSVERSE,
    8: TRANSPOSE.ROTATE_90,
}


def _raw_modes(im: Image.Image) -> list[str]:
    """The modes the file's pixels are stored in (before Pillow converts them)."""
    modes = []
    for tile in getattr(im, "tile", None) or []:  # ImageFile's; a plain Image has none
        args = tile[3]
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str):
            modes.append(raw)
    return modes


def _open(path: Path) -> tuple[Image.Image, bool]:
    """The file's image, checked, loaded and turned as its EXIF says (:func:`prepare_image`)."""
    try:
        im: Image.Image = Image.open(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except Image.DecompressionBombError as exc:  # over twice Image.MAX_IMAGE_PIXELS
        raise DatasetError(f"{path}: too many pixels to read ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        tags = tiff_tags(path) if isinstance(exc, UnidentifiedImageError) else None
        if tags is not None:  # Pillow 9.0 cannot identify a signed 8-bit TIFF: say so
            _check_signed(tags, path)
        raise DatasetError(f"{path}: not a readable image ({exc})") from None
    return prepare_image(im, path)


def _as_tuple(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else (value,)


def _check_signed(tags: Mapping[int, Any], name: str | Path) -> None:
    """:class:`DatasetError` when TIFF ``tags`` declare signed samples of 8 bits or fewer
    (Pillow reads -1 as 255; 9.0 cannot identify the file). Signed 16- and 32-bit ones
    are read as signed (mode ``I``)."""
    bits = [b for b in _as_tuple(tags.get(TIFF_BITS_PER_SAMPLE, 1)) if isinstance(b, int)]
    if 2 in _as_tuple(tags.get(TIFF_SAMPLE_FORMAT, ())) and max(bits, default=1) <= 8:
        raise DatasetError(f"{name}: signed 8-bit pixels are not supported; save it as 8- or 16-bit unsigned")


def prepare_image(
    im: Image.Image, name: str | Path, *, orient: bool = True
) -> tuple[Image.Image, bool]:
    """``im`` (just opened, not loaded) checked, loaded and, with ``orient``, turned as its
    EXIF says; and whether its ``I`` pixels are unsigned 32-bit (Pillow holds them as
    signed: 2**31 and above come out negative). A :class:`DatasetError` naming ``name``
    for what would be misread (see the module docstring) or does not decode; ``im`` (and
    the file it holds open) is closed then: a dataset of many bad files leaks no handle."""
    try:
        return _prepare(im, name, orient)
    except BaseException:
        im.close()
        raise


def _prepare(im: Image.Image, name: str | Path, orient: bool) -> tuple[Image.Image, bool]:
    """:func:`prepare_image`, leaving ``im`` open when it raises."""
    try:
        w, h = im.size
        limit = Image.MAX_IMAGE_PIXELS or FALLBACK_MAX_PIXELS
        if w * h > 2 * limit:  # Pillow's own check, also where its limit was switched off
            raise DatasetError(
                f"{name}: too many pixels to read ({w}x{h} = {w * h} pixels, over twice "
                f"the limit of {limit}: a decompression bomb?)"
            )
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise DatasetError(f"{name}: holds {frames} frames; one image per file is expected")
        # Pillow has no 16-bit colour modes: it decodes such files to 8 bits, silently
        wide = [m for m in _raw_modes(im) if ";16" in m]
        if wide and im.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
            raise DatasetError(
                f"{name}: 16-bit pixels ({wide[0]}) that Pillow would read as 8-bit {im.mode}; "
                "save it as 16-bit greyscale (one channel)"
            )
        tags = getattr(im, "tag_v2", {})
        _check_signed(tags, name)
        declare_ycbcr_tiff(im)  # before Pillow 10.1: opened as RGB, four bytes a pixel out of three
        # no tag: full resolution, as Pillow reads it (the TIFF spec's default is (2, 2))
        subsampling = _as_tuple(tags.get(TIFF_YCBCR_SUBSAMPLING, (1, 1)))
        if im.mode == "YCbCr" and im.format == "TIFF" and subsampling != (1, 1):
            # Pillow's raw decoder reads every pixel's chroma; libtiff (compressed files) alone upsamples
            raise DatasetError(
                f"{name}: an uncompressed YCbCr TIFF with subsampled chroma {subsampling}, which "
                "Pillow cannot read; save it as RGB or greyscale"
            )
        unsigned32 = any(m in UNSIGNED_32_RAW_MODES for m in _raw_modes(im))
        orientation = im.getexif().get(EXIF_ORIENTATION, 1) if orient else 1
        turn = EXIF_TRANSPOSE.get(orientation)
        if turn is not None and im.format == "TIFF":
            # Pillow turns a TIFF itself while loading, inconsistently (measured with
            # Pillow 13: orientation 6 read as a mirror image, size unturned)
            raise DatasetError(
                f"{name}: a TIFF with an EXIF orientation ({orientation}) "
                "cannot be read reliably; save it without one (as shown) or as PNG"
            )
        im.load()
        if turn is not None:
            turned = im.transpose(turn)
            turned.format = im.format  # read_mask refuses lossy formats by it
            im.close()
            im = turned
    except Image.DecompressionBombError as exc:  # over twice Image.MAX_IMAGE_PIXELS
        raise DatasetError(f"{name}: too many pixels to read ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc})") from None
    return im, unsigned32


def _pixels(im: Image.Image, unsigned32: bool) -> np.ndarray:
    """The pixels of a one-band image; unsigned 32-bit ones as such."""
    arr = np.asarray(im)
    return arr.view(np.uint32) if unsigned32 and arr.dtype == np.int32 else arr


def _finite(arr: np.ndarray, name: str | Path) -> np.ndarray:
    """``arr`` unless it holds a NaN or an infinity (a float image: every score of it would
    be meaningless): :class:`DatasetError` naming the file and how many pixels."""
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise DatasetError(
            f"{name}: {bad} of {arr.size} pixels are NaN or infinite; a float image must be finite"
        )
    return arr


def read_image(path: str | Path) -> np.ndarray:
    """One channel (H, W) in the file's own units: uint8, uint16, int32, uint32 or float32
    (see the table)."""
    path = Path(path)
    im, unsigned32 = _open(path)
    with im:
        return image_pixels(im, unsigned32, path)


def image_pixels(im: Image.Image, unsigned32: bool, name: str | Path) -> np.ndarray:
    """The one channel of an image :func:`prepare_image` returned (see the table); a
    :class:`DatasetError` naming ``name`` for a mode not in the table."""
    mode = im.mode
    if mode in GREY_MODES:
        return np.asarray(im.convert("L"))
    if mode == "LA":
        return np.asarray(im.getchannel("L"))
    if mode in SIXTEEN_BIT_MODES:
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        arr = _pixels(im, unsigned32)
        if arr.size and arr.min() >= 0 and arr.max() <= UINT16_MAX:
            return arr.astype(np.uint16)
        # not float32: its 24-bit mantissa rounds 1e8 counts to steps of 8
        return np.array(arr)
    if mode == "F":
        return _finite(np.asarray(im, dtype=np.float32), name)
    if mode == "YCbCr":  # Y is the luma (BT.601, as JPEG's): not rounded through RGB
        return np.asarray(im.getchannel("Y"))
    if mode in COLOUR_MODES:
        rgb = im.convert("RGBA" if mode in ("P", "PA", "RGBA") else "RGB")
        return to_grey(np.asarray(rgb))
    raise DatasetError(
        f"{name}: image mode {mode!r} is not supported; supported: {', '.join(SUPPORTED_MODES)}"
    )


LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")  # compression noise would be read as target
# of a TIFF, by Pillow's names (its ``info["compression"]``): what a refusal calls them
LOSSY_TIFF_COMPRESSIONS = {"jpeg": "JPEG", "tiff_jpeg": "old-style JPEG", "webp": "WebP"}


def read_mask(path: str | Path) -> np.ndarray:
    """A target mask as bool (H, W): a pixel non-zero in any colour channel (of RGB: a
    CMYK, YCbCr, LAB or HSV file is converted first), and not transparent where the file
    has alpha, is target. Lossy files (JPEG, WebP, a JPEG- or WebP-compressed TIFF) are refused."""
    path = Path(path)
    im, unsigned32 = _open(path)
    with im:
        compression = im.info.get("compression") if im.format == "TIFF" else None
        compression = compression if compression in LOSSY_TIFF_COMPRESSIONS else None
        if im.format in LOSSY_FORMATS or compression:
            what = f"{LOSSY_TIFF_COMPRESSIONS[compression]}-compressed TIFF" if compression else im.format
            raise DatasetError(
                f"{path}: a {what} mask is lossy (its compression noise would be read as "
                "target); save masks losslessly, e.g. as PNG"
            )
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")
        elif im.mode in RGB_CONVERTED_MODES:  # their channels are no colours: black is not 0
            im = im.convert("RGB")
        alpha = np.asarray(im.getchannel("A")) if im.mode in ("LA", "RGBA") else None
        if im.mode == "LA":
            im = im.getchannel("L")
        arr = _pixels(im, unsigned32)
    if arr.dtype.kind == "f" and np.isnan(arr).any():  # NaN > 0 is False: no silent background
        raise DatasetError(f"{path}: the mask holds NaN pixels")
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)
    mask = arr > 0
    return mask & (alpha > 0) if alpha is not None else mask
