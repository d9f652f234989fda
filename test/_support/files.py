"""Folders in states the tests need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from irstd_ros.core import paths


def unwritable_folder(monkeypatch: pytest.MonkeyPatch, parent: Path) -> Path:
    """A folder under ``parent`` that ``os.access`` (as :mod:`irstd_ros.core.paths` calls
    it) reports as not writable, for as long as ``monkeypatch`` lasts. A patch, not chmod:
    root writes anywhere, and CI runs as root."""
    ro = parent / "ro"
    ro.mkdir()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).absolute() == ro.absolute():
            return False
        return real_access(path, mode, *args, **kwargs)

    # through the module's own name for os: fails loudly if paths stops calling os.access
    monkeypatch.setattr(paths.os, "access", access)
    return ro
