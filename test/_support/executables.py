"""The package's console scripts as installed beside the running interpreter."""

from __future__ import annotations

import sys
from pathlib import Path


def executable(name: str) -> str:
    """The path of console script ``name`` in this interpreter's bin folder (the venv's)."""
    return str(Path(sys.executable).parent / name)
