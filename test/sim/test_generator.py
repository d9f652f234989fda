"""The sequence generator: deterministic, truth consistent with the frames, config checked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from irstd_ros.errors import ConfigError
from irstd_ros.sim import SCENES, TRUTH_FRACTION, SequenceConfig, generate_sequence
from irstd_ros.sim.sequence import LOCAL_WINDOW_PX, _local_sigma
from irstd_ros.sim.targets import render_blob

SMALL = SequenceConfig(width=160, height=128, frames=12, fps=10.0, n_targets=3, seed=5)


def frames(cfg: SequenceConfig = SMALL) -> list:
    return list(generate_sequence(cfg))


@pytest.mark.parametrize("scene", SCENES)
def test_same_seed_same_sequence_other_seed_differs(scene):
    cfg = replace(SMALL, scene=scene, frames=4)
    a, b = frames(cfg), frames(cfg)
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.image, fb.image)
        assert np.array_equal(fa.mask, fb.mask)
        assert fa.targets == fb.targets
        assert fa.stamp_ns == fb.stamp_ns
    c = frames(replace(cfg, seed=cfg.seed + 1))
    assert not np.array_equal(a[0].image, c[0].image)


def test_stamps_follow_the_frame_rate():
    fs = frames()
    steps = np.diff([f.stamp_ns for f in fs])
    assert np.all(steps == round(1e9 / SMALL.fps))
    assert fs[0].stamp_ns == SMALL.start_time_ns


@pytest.mark.parametrize("bit_depth, dtype", [(8, np.uint8), (16, np.uint16)])
def test_output_dtype_and_shape(bit_depth, dtype):
    f = frames(replace(SMALL, bit_depth=bit_depth, frames=1))[0]
    assert f.image.dtype == dtype and f.image.shape == (SMALL.height, SMALL.width)
    assert f.mask.dtype == bool and f.mask.shape == f.image.shape
    assert f.image.std() > 0  # not a blank frame


def test_16_bit_is_the_8_bit_scene_on_a_finer_scale():
    f8 = frames(replace(SMALL, bit_depth=8, frames=1))[0].image.astype(float)
    f16 = frames(replace(SMALL, bit_depth=16, frames=1))[0].image.astype(float)
    assert np.corrcoef(f8.ravel(), f16.ravel())[0, 1] > 0.99
    assert f16.max() - f16.min() > 10 * (f8.max() - f8.min())


def test_truth_mask_is_the_union_of_target_boxes_and_each_target_has_pixels():
    for f in frames():
        union = np.zeros_like(f.mask)
        for t in f.targets:
            x, y, w, h = t.bbox
            assert t.area >= 1 and w >= 1 and h >= 1
            assert f.mask[y : y + h, x : x + w].sum() >= t.area
            union[y : y + h, x : x + w] = True
            inside = 0 <= t.x <= SMALL.width - 1 and 0 <= t.y <= SMALL.height - 1
            if inside:  # the sub-pixel centre lies inside (or within a pixel of) its box
                assert x - 1 <= t.x <= x + w and y - 1 <= t.y <= y + h
        assert not (f.mask & ~union).any()  # no truth pixel outside the targets' boxes


def test_targets_are_brighter_than_their_surroundings():
    for f in frames(replace(SMALL, snr=(8.0, 8.0))):
        img = f.image.astype(float)
        for t in f.targets:
            x, y, w, h = t.bbox
            inside = img[y : y + h, x : x + w].max()
            ring = img[max(y - 8, 0) : y + h + 8, max(x - 8, 0) : x + w + 8]
            assert inside >= min(np.median(ring) + 0.5 * t.amplitude, 255)  # 8-bit saturates


def test_amplitude_is_snr_times_local_clutter():
    cfg = replace(SMALL, n_targets=2, snr=(6.0, 6.0), enter_leave=False, frames=1)
    for t in frames(cfg)[0].targets:
        assert t.snr == pytest.approx(6.0)
        # the local sigma includes the temporal noise, so amplitude >= snr x noise
        assert t.amplitude >= 6.0 * cfg.noise_sigma - 1e-9


def test_one_pixel_targets_still_get_truth_pixels():
    cfg = replace(SMALL, target_size=(0.5, 1.0), frames=6)
    fs = frames(cfg)
    visible = [t for f in fs for t in f.targets]
    assert visible and all(t.area >= 1 for t in visible)
    assert min(t.area for t in visible) <= 4


def test_truth_fraction_rule_on_a_rendered_blob():
    _, _, patch = render_blob(10.3, 7.6, 3.0, 2.0, 0.4, 0.6)
    assert patch.max() == pytest.approx(1.0)
    on = patch >= TRUTH_FRACTION
    assert on.any()
    labels, n = ndimage.label(on)
    assert n == 1  # one compact blob


def test_targets_enter_and_leave_the_frame():
    cfg = replace(SMALL, frames=60, n_targets=2, target_speed=(20.0, 20.0))
    ids = [{t.id for t in f.targets} for f in frames(cfg)]
    assert 0 not in ids[0] and any(0 in s for s in ids)  # target 0 enters
    assert 1 in ids[0] and 1 not in ids[-1]  # target 1 leaves


def test_local_clutter_is_the_std_in_a_centred_window_of_local_window_px():
    noise, cx, cy, half = 2.0, 32, 30, LOCAL_WINDOW_PX // 2
    flat = np.zeros((64, 64))
    assert _local_sigma(flat, cx, cy, noise) == pytest.approx(noise)  # the noise alone
    outside = flat.copy()  # one pixel past each side of the window: not counted
    outside[cy, [cx - half - 1, cx + half + 1]] = 100.0
    outside[[cy - half - 1, cy + half + 1], cx] = 100.0
    assert _local_sigma(outside, cx, cy, noise) == pytest.approx(noise)
    corner = flat.copy()  # the window's last pixel: counted, as one of LOCAL_WINDOW_PX**2
    corner[cy + half, cx + half] = 100.0
    p = 1 / LOCAL_WINDOW_PX**2
    expected = np.hypot(100.0 * np.sqrt(p * (1 - p)), noise)
    assert _local_sigma(corner, cx + 0.4, cy - 0.4, noise) == pytest.approx(expected)


@pytest.mark.parametrize(
    "change",
    [
        {"width": 8},
        {"frames": 0},
        {"fps": 0.0},
        {"scene": "space"},
        {"bit_depth": 12},
        {"snr": (5.0, 2.0)},
        {"target_size": (0.0, 2.0)},
        {"noise_sigma": -1.0},
    ],
)
def test_invalid_config_is_a_config_error(change):
    with pytest.raises(ConfigError):
        next(generate_sequence(replace(SMALL, **change)))


def test_dim_point_targets_and_a_background_only_stretch():
    cfg = SequenceConfig(width=160, height=128, frames=12, n_targets=2, enter_leave=False,
                         dim_targets=2, dim_snr=(4.0, 5.0), quiet=(8, 12), seed=3)
    seq = frames(cfg)
    ids = {t.id for f in seq[:8] for t in f.targets}
    assert ids == {0, 1, 2, 3}
    dim = [t for f in seq[:8] for t in f.targets if t.id >= 2]
    assert all(4.0 <= t.snr <= 5.0 and t.size <= 1.0 for t in dim)
    assert all(not f.targets and not f.mask.any() for f in seq[8:])
    # the bright targets are unchanged by adding dim ones (their own random stream)
    plain = frames(replace(cfg, dim_targets=0, quiet=(0, 0)))
    assert [(t.id, t.x) for t in plain[0].targets] == [(t.id, t.x) for t in seq[0].targets if t.id < 2]


@pytest.mark.parametrize(
    "change",
    [
        {"fps": float("inf")},
        {"fps": float("nan")},
        {"snr": (5.0, float("inf"))},
        {"target_size": (float("inf"), float("inf"))},
        {"target_speed": (0.0, float("nan"))},
        {"dim_snr": (float("nan"), 5.0)},
        {"flicker_snr": (6.0, float("inf"))},
        {"flicker_rate": float("inf")},
        {"psf_sigma": float("nan")},
        {"noise_sigma": float("inf")},
        {"gain_nonuniformity": float("nan")},
    ],
)
def test_non_finite_numbers_are_refused(change):
    name = next(iter(change))
    cfg = replace(SMALL, **change)
    with pytest.raises(ConfigError, match=f"{name} must be finite"):
        cfg.validate()
    with pytest.raises(ConfigError, match=f"{name} must be finite"):
        next(generate_sequence(cfg))


@pytest.mark.parametrize("seed", [-1, 1.5, True, 2**32, 4 * 2**32])
def test_a_bad_seed_is_a_config_error_naming_it(seed):
    """numpy refuses a negative seed with a message naming no field, and splits one of 2**32
    or more into 32-bit words: 4 * 2**32 replayed seed 0's streams."""
    with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 4294967296\)"):
        next(generate_sequence(replace(SMALL, seed=seed)))


def test_a_numpy_integer_seed_is_a_seed():
    assert frames(replace(SMALL, frames=1, seed=np.int64(5)))[0].image.tobytes() == (
        frames(replace(SMALL, frames=1))[0].image.tobytes()
    )


@pytest.mark.parametrize("fps", [1e-300, 1e-9, 1.0000001e9, 1e300])
def test_fps_beyond_a_1_ns_period_or_the_stamp_range_is_refused_naming_the_range(fps):
    """1e-300 overflowed the stamp (a traceback), 1e-9 overflowed the header's int32
    seconds, 1e300 gave every frame one stamp."""
    with pytest.raises(ConfigError, match=r"fps must be in \[.*, 1e\+09\] for 12 frames"):
        replace(SMALL, fps=fps).validate()


def test_fps_at_the_bounds_gives_distinct_stamps_within_the_stamp_range():
    from irstd_ros.core.stamps import NS_PER_S
    from irstd_ros.sim.sequence import MAX_FPS, STAMP_LIMIT_NS

    fast = replace(SMALL, fps=MAX_FPS)
    fast.validate()
    assert [fast.stamp_ns(i) - fast.start_time_ns for i in range(4)] == [0, 1, 2, 3]
    room_s = (STAMP_LIMIT_NS - SMALL.start_time_ns) / NS_PER_S
    slow = replace(SMALL, fps=SMALL.frames / room_s)
    slow.validate()
    assert slow.stamp_ns(SMALL.frames - 1) < STAMP_LIMIT_NS


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"frames": 10**7}, "frames must be in [1, 1000000]"),
        ({"n_targets": 10**6}, "at most 1000 targets"),
        ({"crossings": 400, "n_targets": 300}, "at most 1000 targets"),
        ({"frames": 10**6, "n_targets": 11}, "targets x frames must be <= 10000000"),
        ({"target_size": (1.0, 1e6)}, "target_size must be at most 64 px"),
        ({"psf_sigma": 1e6}, "psf_sigma must be in [0, 4] px"),
        ({"start_time_ns": -1}, "start_time_ns must be in [0, "),
    ],
)
def test_counts_and_sizes_that_would_hang_or_exhaust_memory_are_refused(change, words):
    with pytest.raises(ConfigError) as err:
        replace(SMALL, **change).validate()
    assert words in str(err.value)


def test_a_start_leaving_no_room_for_the_frames_names_the_start():
    """The fps range it gave was empty ([3e+09, 1e+09]): the start was what was wrong."""
    from irstd_ros.sim.sequence import STAMP_LIMIT_NS

    with pytest.raises(ConfigError, match="start_time_ns .* leaves no room for 3 frames"):
        replace(SMALL, frames=3, start_time_ns=STAMP_LIMIT_NS - 1).validate()


@pytest.mark.parametrize("quiet", [(8, 13), (13, 20), (-1, 4), (5, 4)])
def test_a_quiet_stretch_outside_the_sequence_is_one_config_error_line(quiet):
    """A stretch past the last frame was taken as given: its part beyond the end was
    silently lost (a demo sample of 50 frames with frames 80-99 quiet had none)."""
    with pytest.raises(ConfigError) as err:
        next(generate_sequence(replace(SMALL, quiet=quiet)))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == f"quiet must be a frame range 0 <= start <= end <= frames (12), got {quiet}"


@pytest.mark.parametrize("quiet", [(0, 0), (12, 12), (0, 12), (8, 12)])
def test_a_quiet_stretch_within_the_sequence_is_accepted(quiet):
    replace(SMALL, quiet=quiet).validate()
