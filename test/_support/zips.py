"""Zip files (and .npz packs) in states the tests need: members of chosen bytes, .npy
headers that declare what their data is not, and central-directory entries that say
what their member is not (its size, an encryption flag, a compression method)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np

CENTRAL_SIGNATURE = b"PK\x01\x02"
CENTRAL_HEADER = 46  # bytes of a central-directory entry before its name


def npy(arr: np.ndarray) -> bytes:
    """``arr`` as the bytes of an ``.npy`` file."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    """An ``.npy`` 1.0 file's magic and header declaring ``shape`` of ``dtype``, no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip at ``path`` holding ``members`` (name: bytes) as they are."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def members(path: Path) -> dict[str, bytes]:
    """The members of the zip at ``path`` (name: bytes)."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def patch_entry(
    path: Path,
    member: str,
    *,
    file_size: int | None = None,
    flag_bits: int | None = None,
    method: int | None = None,
) -> Path:
    """Rewrite ``member``'s central-directory entry in the zip at ``path`` (one without
    zip64 records, as :func:`write_zip` writes small ones): its declared uncompressed
    ``file_size``, its ``flag_bits`` (1: encrypted), its compression ``method``. The data
    stay as they are: the entry then says what the member is not."""
    with zipfile.ZipFile(path) as zf:
        count, pos = len(zf.infolist()), zf.start_dir
    data = bytearray(path.read_bytes())
    for _ in range(count):
        assert data[pos : pos + 4] == CENTRAL_SIGNATURE, "not a central-directory entry"
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + CENTRAL_HEADER : pos + CENTRAL_HEADER + name_len].decode() == member:
            if flag_bits is not None:
                struct.pack_into("<H", data, pos + 8, flag_bits)
            if method is not None:
                struct.pack_into("<H", data, pos + 10, method)
            if file_size is not None:
                struct.pack_into("<I", data, pos + 24, file_size)
            path.write_bytes(bytes(data))
            return path
        pos += CENTRAL_HEADER + name_len + extra_len + comment_len
    raise KeyError(member)
