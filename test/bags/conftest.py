"""Fixtures of the bag tests: small generated bags."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support.bags import make_bag


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bag(tmp_path_factory.mktemp("bags") / "tiny")
