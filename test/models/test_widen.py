import pytest
import torch
from torch import nn

from irstd_ros.errors import ConfigError
from irstd_ros.models import ModelConfig, build_model, named_config
from irstd_ros.models.widen import check_widenable, pad_channels, padded_widths, widen_state_dict

WIDE = (12, 24, 32, 96, 192)


def trained_like(name: str) -> nn.Module:
    """A network with non-trivial BatchNorm statistics and affines, in eval mode."""
    torch.manual_seed(0)
    model = build_model(named_config(name))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    return model.eval()


@pytest.mark.parametrize(
    ("narrow", "wide"),
    [
        ("fast", named_config("fast_wide")),
        ("tiny", ModelConfig(widths=WIDE, sgem_heads=2)),
        ("lite", ModelConfig(widths=WIDE, sgem_heads=2, fusion="add")),
        ("fast_refine", ModelConfig(widths=WIDE, sgem_heads=2, stem=2, refine=8)),
    ],
)
def test_the_widened_network_computes_the_narrow_ones_logits(narrow, wide):
    small = trained_like(narrow)
    big = build_model(wide).eval()
    big.load_state_dict(widen_state_dict(small, big))
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        expected, got = small(x), big(x)
    assert expected.abs().max() > 1.0  # not a trivially constant output
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_new_channels_learn_from_the_first_steps():
    small = trained_like("fast")
    big = build_model(named_config("fast_wide"))
    big.load_state_dict(widen_state_dict(small, big))
    big.train()
    opt = torch.optim.SGD(big.parameters(), lr=0.1)
    before = big.encoder[0][0].conv1[0].weight.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        big(torch.randn(2, 1, 64, 64)).square().mean().backward()
        opt.step()
    after = big.encoder[0][0].conv1[0].weight.detach()
    new_rows = slice(named_config("fast").widths[0], None)
    assert not torch.equal(after[new_rows], before[new_rows])


@pytest.mark.parametrize(
    ("wide", "message"),
    [
        (ModelConfig(widths=(12, 24, 48, 96, 192), sgem_heads=2, stem=2), "E3"),
        (ModelConfig(widths=(4, 24, 32, 96, 192), sgem_heads=2, stem=2), "shrinks"),
        (ModelConfig(widths=WIDE, sgem_heads=2), "stem"),
        (ModelConfig(widths=(16, 32, 32, 96, 192), sgem_heads=2, stem=2), "layouts differ"),
    ],
)
def test_what_cannot_be_widened_is_refused(wide, message):
    small, big = build_model(named_config("fast")), build_model(wide)
    with pytest.raises(ConfigError, match=message):
        widen_state_dict(small, big)


def test_equal_configs_are_widenable_and_widening_to_them_copies_every_weight():
    assert check_widenable(named_config("tiny"), named_config("tiny")) is None  # no error
    small = trained_like("tiny")
    same = build_model(named_config("tiny"))  # fresh weights, all to be replaced
    widened = widen_state_dict(small, same)
    expected = small.state_dict()
    assert set(widened) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(widened[name], tensor), name


@pytest.mark.parametrize(("name", "multiple"), [("paper", 8), ("tiny", 12), ("lite", 12), ("fast_refine", 12)])
def test_padded_channels_are_exact_zeros_and_the_logits_do_not_change(name, multiple):
    small = trained_like(name)
    padded = pad_channels(small, multiple)
    assert padded.config.widths == padded_widths(small.config, multiple) != small.config.widths
    assert all(w % multiple == 0 for i, w in enumerate(padded.config.widths) if i != 2)
    assert padded.config.widths[2] == small.config.widths[2]  # the SGEM's softmax width stays
    x = torch.randn(1, 1, 64, 64)
    seen: list[torch.Tensor] = []
    first = padded.encoder[0][0]
    hook = first.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        assert torch.allclose(small(x), padded(x), atol=1e-5)  # summation order may differ
    hook.remove()
    new = seen[0][:, small.config.widths[0]:]  # E1's new channels after its block
    assert new.numel() and torch.count_nonzero(new) == 0


def test_nothing_to_pad_returns_the_model_and_bad_multiples_are_refused():
    tiny = trained_like("tiny")
    assert pad_channels(tiny, 8) is tiny  # (8, 16, 32, 64, 128)
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ConfigError, match="channel multiple"):
            pad_channels(tiny, bad)
