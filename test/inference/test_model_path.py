"""``model.path`` / ``--weights``: empty for the default shipped model, a shipped model's
name, or a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest

from irstd_ros.checkpoint import read_info
from irstd_ros.errors import ConfigError
from irstd_ros.inference.detector import SHIPPED_MODELS, default_model_path, resolve_model_path


def test_empty_and_names_resolve_to_the_packaged_files():
    assert resolve_model_path(None) == resolve_model_path("") == default_model_path()
    assert resolve_model_path("tiny") == default_model_path() == default_model_path("tiny")
    fast = resolve_model_path("fast")
    assert fast.name == SHIPPED_MODELS["fast"] and fast.parent == default_model_path().parent


def test_other_values_are_checkpoint_paths():
    assert resolve_model_path("runs/x/model.safetensors") == Path("runs/x/model.safetensors")
    assert resolve_model_path("~/m.safetensors") == Path.home() / "m.safetensors"


def test_unknown_shipped_name_lists_the_choices():
    with pytest.raises(ConfigError, match="valid: tiny, fast"):
        default_model_path("huge")


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_every_shipped_model_is_in_the_package(name):
    info = read_info(default_model_path(name))
    assert info.threshold is not None and info.extra.get("version")


def test_weights_help_names_every_shipped_model_and_the_default():
    from irstd_ros.core.constants import DEFAULT_SHIPPED_MODEL, WEIGHTS_HELP

    assert all(name in WEIGHTS_HELP for name in SHIPPED_MODELS)
    assert f"{DEFAULT_SHIPPED_MODEL} (the default)" in WEIGHTS_HELP
