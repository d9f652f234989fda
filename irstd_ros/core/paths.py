"""Whether a file or folder can be created at a path: one check for the node's parameters
and the CLI's output options, made before any work and leaving nothing behind.

Writability is tried, not asked: :func:`os.access` answers yes to root everywhere (CI and
containers run as root), even in ``/proc`` or on a read-only mount, so :func:`can_write_in`
creates and removes a temporary file instead."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROBE_PREFIX = ".irstd-write-probe-"


def can_write_in(folder: Path) -> bool:
    """Whether a file can be created in the existing directory ``folder``: one is created
    and removed at once."""
    try:
        fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


def creation_problem(path: Path) -> str | None:
    """Why ``path`` could not be created, or None: the nearest existing folder above it must
    be a writable directory."""
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None:
        return f"{path} cannot be created (no existing folder above it)"
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is a file, not a directory"
    if not can_write_in(parent):
        return f"{path} cannot be created: directory {parent} is not writable"
    return None


def output_dir_problem(path: Path) -> str | None:
    """Why ``path`` could not serve as an output directory, or None: it must be a writable
    directory, or be creatable as one."""
    if path.exists():
        if not path.is_dir():
            return f"{path}: is a file; give a directory"
        if not can_write_in(path):
            return f"{path}: directory is not writable"
        return None
    return creation_problem(path)


@functools.cache
def default_file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (read once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, same suffix, so writers that go by
    the suffix still work) for the block to write; renamed onto ``path`` when the block
    ends, removed when it fails. A reader sees the old file or the new one, never half of
    one, and a failure leaves no temporary file nor a changed old one. The file is synced
    to disk before the rename and its folder after it, so a crash or power cut also leaves
    one of the two whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if tmp.is_file():  # some writers (safetensors) create theirs private (0600)
            tmp.chmod(default_file_mode())
            fsync_path(tmp)  # the data on disk before the name points at it
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # the rename itself on disk: a power cut after this leaves the new file, not the old
    # one or, on some filesystems, an empty one. Not every filesystem syncs a directory.
    with contextlib.suppress(OSError):
        fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to its device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
