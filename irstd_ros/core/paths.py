"""Whether a file or folder can be created at a path: one check for the node's parameters
and the CLI's output options, made before any work and creating nothing."""

from __future__ import annotations

import os
from pathlib import Path


def creation_problem(path: Path) -> str | None:
    """Why ``path`` could not be created, or None: the nearest existing folder above it must
    be a writable directory."""
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None:
        return f"{path} cannot be created (no existing folder above it)"
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: directory {parent} is not writable"
    return None
