"""Noise-free IR backgrounds: shapes and DN ranges per scene, seeds, drift, glint, fbm."""

from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.errors import ConfigError
from irstd_ros.sim.scenes import (
    SCENE_BUILDERS,
    SCENES,
    SEA_HORIZON_ROW,
    SEA_HORIZON_TILT_PX,
    Scene,
    fbm,
    make_scene,
    translate,
)

SHAPE = (96, 128)


def scene(name: str, seed: int = 0, shape=SHAPE, psf: float = 0.6) -> Scene:
    return make_scene(name, np.random.default_rng(seed), shape, 10.0, psf)


def test_every_listed_scene_has_a_builder():
    assert set(SCENES) == set(SCENE_BUILDERS)


@pytest.mark.parametrize("name", SCENES)
def test_scene_shape_dtype_and_dn_range(name):
    s = scene(name, shape=(256, 320))
    assert s.name == name and s.shape == (256, 320)
    for t in (0, 30):
        f = s.at(t, np.random.default_rng(1))
        assert f.shape == (256, 320) and f.dtype == np.float64
        assert np.isfinite(f).all()
        assert f.min() > 0.0  # warm backgrounds: no negative radiance
        assert np.quantile(f, 0.999) <= 255.0  # fits the 8-bit output
        assert f.std() > 1.0  # textured, not flat


@pytest.mark.parametrize("name", SCENES)
def test_same_seed_same_scene_other_seed_differs(name):
    a, b, c = scene(name, 3), scene(name, 3), scene(name, 4)
    fa, fb = a.at(5, np.random.default_rng(9)), b.at(5, np.random.default_rng(9))
    np.testing.assert_array_equal(fa, fb)
    assert not np.allclose(fa, c.at(5, np.random.default_rng(9)))


@pytest.mark.parametrize("name", SCENES)
def test_at_does_not_modify_the_static_radiance(name):
    s = scene(name)
    static = s.static.copy()
    s.at(7, np.random.default_rng(0))
    np.testing.assert_array_equal(s.static, static)


@pytest.mark.parametrize("name", SCENES)
def test_frames_change_over_time(name):
    s = scene(name)
    rng = np.random.default_rng(0)
    f0, f50 = s.at(0, rng), s.at(50, rng)
    assert np.abs(f50 - f0).max() > 0.5  # drifting clouds or waves


def test_sky_has_no_glint_and_ignores_the_frame_rng():
    s = scene("sky")
    assert s.glint is None
    np.testing.assert_array_equal(s.at(3, np.random.default_rng(0)), s.at(3, np.random.default_rng(1)))


def test_sea_glint_stays_below_the_horizon():
    s = scene("sea")
    assert s.glint is not None
    a, b = s.at(2, np.random.default_rng(0)), s.at(2, np.random.default_rng(1))
    diff = np.abs(a - b).max(axis=1)  # per row: only glint depends on the frame rng
    top = int(SEA_HORIZON_ROW * SHAPE[0] - SEA_HORIZON_TILT_PX / 2) - 1
    assert diff[:top].max() == 0.0
    assert diff[top:].max() > 0.0


def test_sky_is_colder_at_the_zenith():
    zenith, horizon = [], []
    for seed in range(4):
        f = scene("sky", seed).at(0, np.random.default_rng(0))
        zenith.append(np.median(f[:10]))
        horizon.append(np.median(f[-10:]))
    assert np.mean(zenith) < np.mean(horizon)


@pytest.mark.parametrize("name", SCENES)
@pytest.mark.parametrize("shape", [(16, 16), (16, 200), (200, 16)])
def test_small_and_thin_frames(name, shape):
    f = scene(name, shape=shape).at(1, np.random.default_rng(0))
    assert f.shape == shape and np.isfinite(f).all()


def test_zero_psf_is_allowed():
    f = scene("ground", psf=0.0).at(0, np.random.default_rng(0))
    assert f.shape == SHAPE and np.isfinite(f).all()


def test_unknown_scene_error_names_it_and_lists_the_valid_scenes():
    with pytest.raises(ConfigError, match="'desert'; valid: sky, sea, ground"):
        make_scene("desert", np.random.default_rng(0), SHAPE, 10.0, 0.6)


@pytest.mark.parametrize("shape,anisotropy", [((64, 64), 1.0), ((48, 80), 3.5), ((33, 17), 1.0)])
def test_fbm_is_normalised_and_reproducible(shape, anisotropy):
    a = fbm(np.random.default_rng(0), shape, 3.0, anisotropy)
    assert a.shape == shape
    assert a.mean() == pytest.approx(0.0, abs=1e-9)
    assert a.std() == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_array_equal(a, fbm(np.random.default_rng(0), shape, 3.0, anisotropy))


def test_fbm_steeper_slope_is_smoother():
    rough = fbm(np.random.default_rng(0), (128, 128), 1.0)
    smooth = fbm(np.random.default_rng(0), (128, 128), 3.5)
    assert np.abs(np.diff(smooth, axis=1)).mean() < 0.5 * np.abs(np.diff(rough, axis=1)).mean()


def test_fbm_anisotropy_makes_horizontal_structures():
    f = fbm(np.random.default_rng(0), (128, 128), 2.5, anisotropy=4.0)
    along = np.abs(np.diff(f, axis=1)).mean()
    across = np.abs(np.diff(f, axis=0)).mean()
    assert along < across  # longer horizontally: smaller changes along a row


def test_translate_integer_shift_is_a_roll_and_wraps():
    c = np.random.default_rng(0).standard_normal((8, 12))
    np.testing.assert_allclose(translate(c, 3, 2), np.roll(c, (2, 3), axis=(0, 1)))
    np.testing.assert_allclose(translate(c, -1, 0), np.roll(c, -1, axis=1))
    np.testing.assert_allclose(translate(c, 12, 8), c)  # a full period


def test_translate_half_pixel_is_the_neighbour_average_and_keeps_the_mean():
    c = np.random.default_rng(1).standard_normal((8, 12))
    half = translate(c, 0.5, 0.0)
    np.testing.assert_allclose(half, 0.5 * (c + np.roll(c, 1, axis=1)))
    frac = translate(c, 2.3, -4.7)
    assert frac.mean() == pytest.approx(c.mean(), abs=1e-12)
    assert frac.min() >= c.min() and frac.max() <= c.max()  # bilinear: no overshoot


@pytest.mark.parametrize("shape", [(64, 64), (96, 128), (128, 128)])
def test_ground_fits_the_8_bit_output_on_small_frames_too(shape):
    # 14 buildings per frame whatever its size piled up on small ones: a third of a 64x64
    # frame above 255 DN (saturated in mono8); now in proportion to the frame's area
    for seed in range(4):
        f = scene("ground", seed, shape=shape).at(0, np.random.default_rng(1))
        assert np.quantile(f, 0.999) <= 255.0
