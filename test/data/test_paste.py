import numpy as np
import pytest
from _support.datasets import write_dataset
from scipy import ndimage

from irstd_ros.core.normalization import InputNorm, noise_sigma
from irstd_ros.data.mixture import AugmentConfig, MixtureSamples, SourceSpec
from irstd_ros.data.paste import PasteConfig, cut_targets, paste_targets, target_bank
from irstd_ros.errors import ConfigError

SIZE = (96, 128)
NOISE = 4.0


def _frame_with_blob(seed=0, peak=120.0, cy=40, cx=60, gradient=True):
    """uint16 frame: a ramp (or flat), noise, a 5x5 Gaussian blob; its mask is where the
    blob is over half its peak."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]].astype(np.float32)
    base = 1000.0 + (3.0 * xx if gradient else 0.0)
    blob = peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
    img = base + blob + rng.normal(0, NOISE, SIZE)
    return img.astype(np.uint16), blob >= peak / 2


def test_a_cut_target_is_its_signal_in_noise_sigmas_without_its_background():
    raw, mask = _frame_with_blob()
    (t,) = cut_targets(raw, mask, "f", max_area=400)
    sigma = noise_sigma(raw)
    assert t.mask.sum() == mask.sum() and t.name == "f"
    # the peak over the ring's median: the blob's amplitude in the frame's noise
    assert t.snr == pytest.approx(120.0 / sigma, rel=0.15)
    # the ramp's level is gone: beyond the mask the residual is as on a flat frame, and 0
    # past the feather
    flat_raw, _ = _frame_with_blob(gradient=False)
    (flat,) = cut_targets(flat_raw, mask, "g", max_area=400)
    rim = (t.residual != 0) & ~t.mask
    counts, flat_counts = t.residual[rim] * sigma, flat.residual[rim] * noise_sigma(flat_raw)
    assert counts.mean() == pytest.approx(flat_counts.mean(), abs=NOISE / 2)
    assert t.residual.shape[0] < 16 and t.residual.shape[1] < 16


def test_large_targets_and_targets_without_a_background_ring_stay_out():
    raw, mask = _frame_with_blob()
    assert cut_targets(raw, mask, "f", max_area=int(mask.sum()) - 1) == []
    full = np.ones(SIZE, bool)
    assert cut_targets(raw, full, "f", max_area=10**6) == []
    assert cut_targets(raw, np.zeros(SIZE, bool), "f", max_area=400) == []


@pytest.mark.parametrize(("cy", "cx"), [(1, 60), (40, 0), (94, 60), (40, 127)])
def test_targets_cut_by_the_frame_edge_stay_out(cy, cx):
    """Pasted elsewhere, a target the frame cut would be half a target with a straight edge."""
    raw, mask = _frame_with_blob(cy=cy, cx=cx)
    assert cut_targets(raw, mask, "f", max_area=400) == []


def test_pasted_targets_keep_their_snr_in_the_new_noise_and_bring_their_masks():
    bank = target_bank([(*_frame_with_blob(s), f"f{s}") for s in range(3)], max_area=400)
    assert len(bank) == 3
    rng = np.random.default_rng(1)
    sigma = 10.0
    flat = np.full(SIZE, 500.0, np.float32)
    cfg = PasteConfig(gain=(1.0, 1.0), edge_fraction=0.0)
    out, mask, n = paste_targets(flat, np.zeros(SIZE, bool), rng, sigma, bank, cfg, count=2)
    assert n == 2 and flat.max() == 500.0  # the input is not changed
    _, parts = ndimage.label(mask, np.ones((3, 3)))
    assert parts == 2 and mask.sum() == 2 * bank[0].mask.sum()
    peak = (out - 500.0).max() / sigma
    assert peak == pytest.approx(max(t.snr for t in bank), rel=0.2)


def test_pasting_keeps_clear_of_existing_targets():
    (t,) = target_bank([(*_frame_with_blob(), "f")], max_area=400)
    img = np.zeros((24, 24), np.float32)
    mask = np.zeros((24, 24), bool)
    mask[2:22, 2:22] = True  # a target covers almost all of the frame: no free place
    out, new_mask, n = paste_targets(img, mask, np.random.default_rng(0), 1.0, [t], count=3)
    assert n == 0 and (new_mask == mask).all() and (out == 0).all()


def test_paste_config_and_an_empty_bank_are_clear_errors():
    with pytest.raises(ConfigError, match="gain"):
        PasteConfig(gain=(0.0, 1.0))
    with pytest.raises(ConfigError, match="count"):
        PasteConfig(count=(3, 1))
    with pytest.raises(ConfigError, match="bank"):
        paste_targets(np.zeros(SIZE, np.float32), np.zeros(SIZE, bool), np.random.default_rng(0), 1.0, [])


def test_the_mixture_pastes_bank_targets_into_target_free_frames(tmp_path):
    target_root = write_dataset(tmp_path / "t", [("t0", *_frame_with_blob())], {"train": ["t0"]})
    rng = np.random.default_rng(5)
    empty = [(f"e{i}", rng.normal(1000, NOISE, SIZE).astype(np.uint16), np.zeros(SIZE, bool)) for i in range(2)]
    empty_root = write_dataset(tmp_path / "e", empty, {"train": ["e0", "e1"]})
    norm = InputNorm(kind="robust")
    cfg = AugmentConfig(sensor_prob=0.0)
    bank_only = SourceSpec.from_dict({"root": str(target_root), "weight": 0.0, "implant_prob": 0.0, "bank": True})
    pasted = SourceSpec.from_dict({"root": str(empty_root), "implant_prob": 0.0, "paste_prob": 1.0})
    mix = MixtureSamples.from_specs([bank_only, pasted], 32, 8, norm, cfg)
    assert len(mix.bank) == 1
    assert all(mix.sample(i)[1].any() for i in range(8))  # every sample holds a pasted target
    plain = SourceSpec.from_dict({"root": str(empty_root), "implant_prob": 0.0})
    assert not any(MixtureSamples.from_specs([plain], 32, 8, norm, cfg).sample(i)[1].any() for i in range(8))
    with pytest.raises(ConfigError, match="needs a bank"):
        MixtureSamples.from_specs([pasted], 32, 8, norm, cfg)
    with pytest.raises(ConfigError, match="paste_prob"):
        SourceSpec.from_dict({"root": "x", "paste_prob": 2})
    with pytest.raises(ConfigError, match="bank must be true or false"):
        SourceSpec.from_dict({"root": "x", "bank": "yes"})


def test_a_target_of_a_32_bit_frame_at_a_large_offset_is_cut_whole():
    # in float32 4.2e9 counts go in steps of 512: the 120-count blob was rounded away
    raw, mask = _frame_with_blob()
    (narrow,) = cut_targets(raw, mask, "f", max_area=400)
    wide = raw.astype(np.uint32) + np.uint32(4_200_000_000 - 1000)
    (t,) = cut_targets(wide, mask, "f", max_area=400)
    assert np.allclose(t.residual, narrow.residual, atol=1e-4) and np.array_equal(t.mask, narrow.mask)
