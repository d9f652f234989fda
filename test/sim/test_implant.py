"""Targets implanted into backgrounds: exact masks, peak = SNR x sigma, separation, seeds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from irstd_ros.core.normalization import noise_sigma
from irstd_ros.errors import ConfigError
from irstd_ros.sim import TRUTH_FRACTION
from irstd_ros.sim.implant import (
    SEPARATION_PX,
    ImplantConfig,
    Implanted,
    implant_targets,
    render_target,
    reserve,
)

# Uniform placement (no gradient search) unless a test says otherwise.
UNIFORM = ImplantConfig(edge_fraction=0.0)


def blank(h: int = 64, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((h, w), np.float32), np.zeros((h, w), bool)


def noisy(seed: int = 0, h: int = 96, w: int = 96, sigma: float = 4.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, sigma, (h, w)).astype(np.float32)


@pytest.mark.parametrize("point", [True, False])
def test_single_target_mask_is_exactly_half_its_peak(point):
    img, mask = blank()
    cfg = replace(UNIFORM, point_fraction=1.0 if point else 0.0)
    out, out_mask, done = implant_targets(img, mask, np.random.default_rng(3), 2.0, cfg, count=1)
    assert len(done) == 1
    t = done[0]
    assert isinstance(t, Implanted) and t.point is point
    # zero background: the frame is the signal itself; its peak is snr x sigma
    assert out.max() == pytest.approx(t.snr * 2.0, rel=1e-6)
    np.testing.assert_array_equal(out_mask, out >= TRUTH_FRACTION * out.max())
    assert t.area == out_mask.sum() > 0
    # the mask is one blob around the reported centre
    _, n = ndimage.label(out_mask)
    assert n == 1
    ys, xs = np.nonzero(out_mask)
    assert abs(xs.mean() - t.x) < 1.0 and abs(ys.mean() - t.y) < 1.0


def test_peak_is_snr_times_the_given_noise_sigma():
    img = noisy(1)
    sigma = noise_sigma(img)
    cfg = replace(UNIFORM, snr=(5.0, 5.0), point_fraction=1.0)
    out, _, done = implant_targets(img, np.zeros(img.shape, bool), np.random.default_rng(0), sigma,
                                   cfg, count=1)
    assert done[0].snr == pytest.approx(5.0)
    added = out.astype(np.float64) - img
    assert added.max() == pytest.approx(5.0 * sigma, rel=1e-4)
    assert added.min() >= -1e-4  # targets only add signal
    assert sigma == pytest.approx(4.0, rel=0.15)


def test_inputs_untouched_outputs_are_new_float32_and_bool():
    img = noisy(2).astype(np.float64)
    mask = np.zeros(img.shape, bool)
    img0, mask0 = img.copy(), mask.copy()
    out, out_mask, done = implant_targets(img, mask, np.random.default_rng(0), 4.0, UNIFORM, count=3)
    assert done
    np.testing.assert_array_equal(img, img0)
    np.testing.assert_array_equal(mask, mask0)
    assert out.dtype == np.float32 and out_mask.dtype == bool
    assert out.shape == out_mask.shape == img.shape


def test_snr_drawn_within_the_configured_range():
    img, mask = blank(128, 128)
    cfg = replace(UNIFORM, snr=(3.0, 6.0))
    _, _, done = implant_targets(img, mask, np.random.default_rng(7), 1.0, cfg, count=6)
    assert len(done) >= 4
    assert all(3.0 <= t.snr <= 6.0 for t in done)


def test_count_range_and_explicit_count():
    img, mask = blank(128, 128)
    cfg = replace(UNIFORM, count=(2, 2))
    for seed in range(3):
        assert len(implant_targets(img, mask, np.random.default_rng(seed), 1.0, cfg)[2]) == 2
    out, out_mask, done = implant_targets(img, mask, np.random.default_rng(0), 1.0, cfg, count=0)
    assert done == [] and not out.any() and not out_mask.any()


def test_new_targets_keep_away_from_existing_ones():
    img, mask = blank(80, 80)
    mask[30:40, 30:40] = True
    _, out_mask, done = implant_targets(img, mask, np.random.default_rng(5), 1.0, UNIFORM, count=5)
    assert done
    assert out_mask[mask].all()  # the existing truth is kept
    new = out_mask & ~mask
    assert new.sum() == sum(t.area for t in done)  # implanted targets do not overlap either
    assert not (new & ndimage.binary_dilation(mask, iterations=SEPARATION_PX)).any()


def test_a_placed_target_reserves_its_separation_beyond_its_own_box():
    """The footprint a target reserves is its support dilated by SEPARATION_PX, also where
    that reaches past the window it was drawn in (a pasted target's box is its extent)."""
    taken = np.zeros((40, 40), bool)
    support = np.ones((3, 3), bool)
    reserve(taken, (slice(10, 13), slice(20, 23)), support)
    expected = np.zeros((40, 40), bool)
    expected[10:13, 20:23] = True
    assert np.array_equal(taken, ndimage.binary_dilation(expected, iterations=SEPARATION_PX))
    # at the frame's corner the dilation is clipped to the frame
    corner = np.zeros((40, 40), bool)
    reserve(corner, (slice(0, 3), slice(0, 3)), support)
    assert corner[: 3 + SEPARATION_PX, 0].all() and not corner[3 + SEPARATION_PX, 0]


def test_no_room_means_no_targets_and_unchanged_frame():
    img = noisy(3, 32, 32)
    mask = np.ones(img.shape, bool)
    out, out_mask, done = implant_targets(img, mask, np.random.default_rng(0), 4.0, UNIFORM, count=3)
    assert done == []
    np.testing.assert_array_equal(out, img)
    assert out_mask.all()


def test_targets_at_the_frame_edge_are_clipped_with_exact_masks():
    # a 6x6 frame with no margin: most targets are cut by the border
    cfg = replace(UNIFORM, margin=0, point_fraction=0.0, extended_area=(20.0, 40.0))
    clipped = 0
    for seed in range(10):
        img, mask = blank(6, 6)
        out, out_mask, done = implant_targets(img, mask, np.random.default_rng(seed), 1.0, cfg,
                                              count=1)
        if not done:
            continue
        t = done[0]
        assert out.max() <= t.snr * (1 + 1e-6)  # the peak may lie outside the frame
        assert out_mask.sum() == t.area > 0
        assert (out[out_mask] > 0).all()
        clipped += out.max() < t.snr * (1 - 1e-3) or out_mask[[0, -1]].any() or out_mask[:, [0, -1]].any()
    assert clipped > 0


def test_same_seed_same_result_other_seed_differs():
    img = noisy(4)
    mask = np.zeros(img.shape, bool)
    a = implant_targets(img, mask, np.random.default_rng(11), 4.0)
    b = implant_targets(img, mask, np.random.default_rng(11), 4.0)
    c = implant_targets(img, mask, np.random.default_rng(12), 4.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert a[2] != c[2]


def test_edge_placement_prefers_strong_gradients():
    img = np.zeros((96, 96), np.float32)
    img[:, 32:64] = 100.0  # two vertical step edges, at x = 31.5 and x = 63.5
    img += np.random.default_rng(0).normal(0, 0.5, img.shape).astype(np.float32)
    cfg = ImplantConfig(edge_fraction=1.0, point_fraction=1.0)
    _, _, done = implant_targets(img, np.zeros(img.shape, bool), np.random.default_rng(1), 0.5, cfg,
                                 count=4)
    assert done
    assert all(min(abs(t.x - 31.5), abs(t.x - 63.5)) < 2.0 for t in done)


def test_edge_placement_honours_the_margin_on_a_flat_frame():
    cfg = ImplantConfig(edge_fraction=1.0, margin=10)
    for seed in range(10):
        img, mask = blank()
        _, _, done = implant_targets(img, mask, np.random.default_rng(seed), 1.0, cfg, count=3)
        for t in done:
            assert 10 - 0.5 <= t.x <= 63 - 10 + 0.5 and 10 - 0.5 <= t.y <= 63 - 10 + 0.5


def test_border_placement_cuts_targets_by_every_side_of_the_frame():
    cfg = replace(UNIFORM, border_fraction=1.0)
    h, w = 48, 64
    sides = set()
    for seed in range(12):
        img, mask = blank(h, w)
        out, out_mask, done = implant_targets(img, mask, np.random.default_rng(seed), 1.0, cfg, count=3)
        assert done
        for t in done:
            depth = {"top": t.y, "bottom": h - 1 - t.y, "left": t.x, "right": w - 1 - t.x}
            side = min(depth, key=depth.__getitem__)
            assert -1.0 <= depth[side] <= 2.0  # from 1 px outside to 2 px inside
            sides.add(side)
        assert out_mask.sum() == sum(t.area for t in done)
        ring = out_mask.copy()
        ring[3:-3, 3:-3] = False
        labels, n = ndimage.label(out_mask)
        assert n == len(done) and all(ring[labels == i].any() for i in range(1, n + 1))
    assert sides == {"top", "bottom", "left", "right"}


def test_without_border_targets_the_draws_are_unchanged():
    # recorded recipes keep their samples: these places came from the code before
    # border_fraction existed (same frame, seed and config)
    img = noisy(5)
    out = implant_targets(img, np.zeros(img.shape, bool), np.random.default_rng(3), 4.0,
                          ImplantConfig(count=(4, 4)))
    places = [(round(t.x, 3), round(t.y, 3), round(t.snr, 3)) for t in out[2]]
    assert places == [(42.082, 21.594, 21.282), (58.756, 57.226, 8.309), (10.02, 17.375, 18.324),
                      (37.576, 34.448, 19.02)]


def test_render_target_peak_one_and_psf_size_orders_the_truth_area():
    def area(cfg, point):
        _, _, patch = render_target(np.random.default_rng(0), cfg, 20.3, 20.7, point)
        assert patch.max() == pytest.approx(1.0) and patch.min() >= 0
        return int((patch >= TRUTH_FRACTION).sum())

    sharp, blurred = replace(UNIFORM, point_psf=(0.5, 0.5)), replace(UNIFORM, point_psf=(1.5, 1.5))
    assert 1 <= area(sharp, True) < area(blurred, True)
    small = replace(UNIFORM, extended_area=(4.0, 4.0), aspect=(1.0, 1.0))
    large = replace(UNIFORM, extended_area=(80.0, 80.0), aspect=(1.0, 1.0))
    assert area(small, False) < area(large, False)
    assert 40 <= area(large, False) <= 140  # an 80 px object stays about its own size


def test_render_target_patch_covers_the_centre():
    for point in (True, False):
        x0, y0, patch = render_target(np.random.default_rng(2), UNIFORM, 30.4, 12.6, point)
        iy, ix = np.unravel_index(np.argmax(patch), patch.shape)
        assert abs(x0 + ix - 30.4) <= 1.0 and abs(y0 + iy - 12.6) <= 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"count": (3, 1)}, "count must be 0 <= low <= high"),
        ({"snr": (0.0, 10.0)}, "snr must be a range 0 < low <= high"),
        ({"point_psf": (-1.0, -0.5)}, "point_psf must be a range"),
        ({"edge_fraction": 1.5}, "edge_fraction must be in [0, 1]"),
        ({"margin": -1}, "margin must be >= 0"),
        ({"border_fraction": -0.1}, "border_fraction must be in [0, 1]"),
    ],
)
def test_a_bad_implant_config_is_one_clear_error(overrides, message):
    with pytest.raises(ConfigError) as err:
        ImplantConfig(**overrides)
    assert message in str(err.value)
