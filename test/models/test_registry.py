"""The architecture registry: every name builds, unknown names list the valid ones."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from irstd_ros.errors import ConfigError, IrstdError
from irstd_ros.models import ModelConfig, named_config
from irstd_ros.models.registry import MODELS, build_model


def test_registry_is_not_empty_and_holds_the_default_arch():
    assert MODELS
    assert ModelConfig().arch in MODELS


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_registered_arch_builds_and_runs(arch):
    config = replace(named_config("tiny"), arch=arch)
    model = build_model(config)
    assert isinstance(model, nn.Module)
    assert sum(p.numel() for p in model.parameters()) > 0
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 1, config.stride, 2 * config.stride))
    assert out.shape == (1, 1, config.stride, 2 * config.stride)


def test_builds_are_independent_instances():
    config = named_config("tiny")
    a, b = build_model(config), build_model(config)
    assert a is not b
    pa, pb = next(a.parameters()), next(b.parameters())
    assert pa.data_ptr() != pb.data_ptr()


def test_config_fields_reach_the_model():
    small = sum(p.numel() for p in build_model(named_config("tiny")).parameters())
    big = sum(p.numel() for p in build_model(named_config("small")).parameters())
    assert small < big


@pytest.mark.parametrize("arch", ["unet", "", "SGEM_UNET", " sgem_unet"])
def test_unknown_arch_is_a_config_error_listing_the_valid_names(arch):
    with pytest.raises(ConfigError) as info:
        build_model(replace(named_config("tiny"), arch=arch))
    message = str(info.value)
    assert repr(arch) in message
    assert all(name in message for name in MODELS)
    assert isinstance(info.value, IrstdError) and isinstance(info.value, ValueError)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no KeyError chained


def test_unknown_arch_from_a_saved_config_dict():
    config = ModelConfig.from_dict({**named_config("tiny").to_dict(), "arch": "resnet"})
    with pytest.raises(ConfigError, match="'resnet'"):
        build_model(config)
