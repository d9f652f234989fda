import pytest
import torch

from irstd_ros.errors import ConfigError
from irstd_ros.models import ModelConfig, build_model, named_config
from irstd_ros.models.blocks import SGEM
from irstd_ros.models.profile import count_macs, count_params

PAPER_PARAMS = 8.69e6
PAPER_GMACS = 15.92
PARAMS_TOL = 0.03
GMACS_TOL = 0.05


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("size", [(32, 48), (64, 64)])
def test_output_matches_input_size(name, size):
    model = build_model(named_config(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 1, *size)
    assert torch.isfinite(out).all()


def test_paper_config_matches_paper_size():
    model = build_model(named_config("paper"))
    params = count_params(model)
    gmacs = count_macs(model, 256, 256) / 1e9
    assert abs(params - PAPER_PARAMS) / PAPER_PARAMS <= PARAMS_TOL, params
    assert abs(gmacs - PAPER_GMACS) / PAPER_GMACS <= GMACS_TOL, gmacs


def test_named_configs_get_smaller():
    sizes = [count_params(build_model(named_config(n))) for n in ("paper", "small", "tiny")]
    assert sizes == sorted(sizes, reverse=True)


def test_unknown_names_list_valid_choices():
    with pytest.raises(ConfigError, match="valid: .*paper"):
        named_config("huge")
    with pytest.raises(ConfigError, match="valid: sgem_unet"):
        build_model(ModelConfig(arch="resnet"))


def test_config_round_trip_and_unknown_keys():
    cfg = named_config("small")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 3})


def test_sgem_shape_residual_and_resolution_independence():
    torch.manual_seed(0)
    sgem = SGEM(enc_ch=16, dec_ch=32, heads=4).eval()
    for h, w in [(16, 16), (40, 24)]:
        enc, dec = torch.randn(1, 16, h, w), torch.randn(1, 32, h // 2, w // 2)
        out = sgem(enc, dec)
        assert out.shape == enc.shape
    # The attention is a (d x d) channel affinity per head: its size does not grow with pixels.
    q = sgem._linearize(torch.randn(1, 16, 40, 24))
    assert (q @ q.transpose(-2, -1)).shape == (1, 4, 4, 4)


def test_sgem_output_depends_on_decoder_features():
    torch.manual_seed(0)
    sgem = SGEM(enc_ch=8, dec_ch=16, heads=2).eval()
    enc = torch.randn(1, 8, 16, 16)
    a = sgem(enc, torch.randn(1, 16, 8, 8))
    b = sgem(enc, torch.randn(1, 16, 8, 8))
    assert not torch.allclose(a, b)


def test_sgem_attention_stays_fp32_under_bf16_autocast():
    sgem = SGEM(enc_ch=8, dec_ch=16, heads=2).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sgem(torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8))
    assert torch.isfinite(out.float()).all()


def test_sgem_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        SGEM(enc_ch=10, dec_ch=16, heads=4)
