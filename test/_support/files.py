"""Folders in states the tests need."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# root writes anywhere: read-only folders mean nothing to it
needs_non_root = pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")


@contextlib.contextmanager
def read_only_folder(parent: Path) -> Iterator[Path]:
    """A folder under ``parent`` that cannot be written to, writable again afterwards."""
    ro = parent / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        yield ro
    finally:
        ro.chmod(0o700)
