import json
from pathlib import Path

import numpy as np
import pytest
from _support.datasets import write_dataset
from PIL import Image
from scipy import ndimage

from irstd_ros.core.normalization import InputNorm
from irstd_ros.data.mixture import (
    HARD_FORMAT,
    AugmentConfig,
    MixtureSamples,
    SourceSpec,
    load_hard_examples,
)
from irstd_ros.data.transforms import point_crop
from irstd_ros.errors import ConfigError, DatasetError

SIZE = (96, 128)
CROP = 32


def _frames(n=3):
    rng = np.random.default_rng(0)
    return [
        (f"f{i}", rng.normal(80, 4, SIZE).clip(0, 255).astype(np.uint8), np.zeros(SIZE, bool))
        for i in range(n)
    ]


def _hard_file(path, frames):
    path.write_text(json.dumps({"format": HARD_FORMAT, "frames": frames}))
    return path


def test_point_crop_always_holds_the_point():
    img = np.arange(SIZE[0] * SIZE[1], dtype=np.float32).reshape(SIZE)
    mask = np.zeros(SIZE, bool)
    rng = np.random.default_rng(1)
    for y, x in [(0, 0), (95, 127), (40, 3), (10, 120)]:
        crop, _ = point_crop(img, mask, CROP, rng, y, x)
        assert crop.shape == (CROP, CROP) and img[y, x] in crop


def test_hard_crops_are_centred_on_mined_places(tmp_path):
    root = write_dataset(tmp_path / "d", _frames(), {"train": ["f0", "f1", "f2"]})
    # f1 gets a unique bright clutter spot far from everything else, and is the only hard place
    img = np.asarray(Image.open(root / "images" / "f1.png")).copy()
    img[80, 110] = 255
    Image.fromarray(img).save(root / "images" / "f1.png")
    frames = {"f1": {"false": [[80.0, 110.0, 0.97]]}, "other": {"miss": [[1, 1, 0.0]]}}
    hard = _hard_file(tmp_path / "hard.json", frames)
    spec = SourceSpec(root, "train", 1.0, 0.0, hard=(hard,), hard_prob=1.0)
    mix = MixtureSamples.from_specs([spec], CROP, 16, InputNorm(kind="robust"))
    assert mix.sources[0].hard == ((1, 80.0, 110.0),)
    mix.cfg = type(mix.cfg)(sensor_prob=0.0)
    peaks = [mix.sample(i)[0].max() for i in range(8)]
    assert min(peaks) > 2.0  # every crop holds the bright spot (normalised: many sigmas)


def test_hard_example_file_errors_are_clear(tmp_path):
    items = [(np.zeros((4, 4)), np.zeros((4, 4), bool), "a")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"frames": {}}))
    with pytest.raises(ConfigError, match="not a hard-example file"):
        load_hard_examples(bad, items)
    with pytest.raises(ConfigError, match="no hard example"):
        load_hard_examples(_hard_file(tmp_path / "h.json", {"zz": {"false": [[1, 1, 1]]}}), items)
    two = [_hard_file(tmp_path / "h.json", {"zz": {}}), _hard_file(tmp_path / "g.json", {"a": {"miss": [[2, 3, 0.1]]}})]
    assert load_hard_examples(two, items) == ((0, 2.0, 3.0),)
    with pytest.raises(ConfigError, match="cannot read"):
        load_hard_examples(tmp_path / "missing.json", items)


@pytest.mark.parametrize("place", [[4, 1, 0.9], [1, -1, 0.9], [1, 9, 0.9], [float("nan"), 1, 0.9]])
def test_hard_places_outside_their_frame_are_refused(tmp_path, place):
    """A place mined on other frames (another size, another copy of the set) is not trained on
    at the frame's edge."""
    items = [(np.zeros((4, 6)), np.zeros((4, 6), bool), "a")]
    path = _hard_file(tmp_path / "h.json", {"a": {"false": [[3, 5, 0.9], place]}})
    with pytest.raises(ConfigError, match="outside its 6x4 frame") as refused:
        load_hard_examples(path, items)
    assert "damaged" not in str(refused.value)  # it was wrapped again as a damaged file


def test_hard_misses_can_be_left_out(tmp_path):
    items = [(np.zeros((4, 4)), np.zeros((4, 4), bool), "a")]
    both = _hard_file(tmp_path / "h.json", {"a": {"false": [[1, 1, 0.9]], "miss": [[2, 3, 0.1]]}})
    assert load_hard_examples(both, items) == ((0, 1.0, 1.0), (0, 2.0, 3.0))
    assert load_hard_examples(both, items, misses=False) == ((0, 1.0, 1.0),)
    only_miss = _hard_file(tmp_path / "m.json", {"a": {"miss": [[2, 3, 0.1]]}})
    with pytest.raises(ConfigError, match="no hard example"):
        load_hard_examples(only_miss, items, misses=False)
    assert SourceSpec.from_dict({"root": "x", "hard_misses": False}).hard_misses is False
    assert SourceSpec.from_dict({"root": "x"}).hard_misses is True
    with pytest.raises(ConfigError, match="true or false"):
        SourceSpec.from_dict({"root": "x", "hard_misses": "no"})


def test_source_keys_are_checked_and_listed():
    spec = SourceSpec.from_dict({"root": "x", "hard": "h.json", "hard_prob": 0.3})
    assert [h.name for h in spec.hard] == ["h.json"] and spec.hard_prob == 0.3
    rounds = SourceSpec.from_dict({"root": "x", "hard": ["a.json", "b.json"], "hard_prob": 0.3})
    assert [h.name for h in rounds.hard] == ["a.json", "b.json"]
    with pytest.raises(ConfigError, match="hard_prob"):
        SourceSpec.from_dict({"root": "x", "hardness": 1})


def test_zoomed_samples_keep_size_and_targets(tmp_path):
    size = (200, 200)
    img = np.full(size, 60, np.uint8)
    mask = np.zeros(size, bool)
    img[100:103, 100:103], mask[100:103, 100:103] = 250, True
    root = write_dataset(tmp_path / "d", [("t", img, mask)], {"train": ["t"]})
    spec = SourceSpec(root, "train", 1.0, 0.0)
    cfg = AugmentConfig(sensor_prob=0.0, scale=(0.5, 2.0), scale_prob=1.0)
    mix = MixtureSamples.from_specs([spec], CROP, 32, InputNorm(kind="robust"), cfg)
    areas = []
    for i in range(32):
        y, m = mix.sample(i)
        assert y.shape == m.shape == (CROP, CROP)
        if m.any():
            areas.append(int(m.sum()))
    assert areas and min(areas) < 9 < max(areas)  # zoomed out and in, target never lost from the mask


def test_scale_range_is_checked():
    with pytest.raises(ConfigError, match="scale"):
        AugmentConfig(scale=(2.0, 1.0), scale_prob=0.5)
    with pytest.raises(ConfigError, match="scale"):
        AugmentConfig(scale_prob=1.5)


def test_each_sample_names_the_source_it_was_drawn_from(tmp_path):
    # source 0: every pixel is target; source 1: no target and nothing implanted
    full = [(f"t{i}", np.full(SIZE, 200, np.uint8), np.ones(SIZE, bool)) for i in range(2)]
    target_root = write_dataset(tmp_path / "t", full, {"train": ["t0", "t1"]})
    empty_root = write_dataset(tmp_path / "e", _frames(2), {"train": ["f0", "f1"]})
    specs = [
        SourceSpec.from_dict({"root": str(target_root), "implant_prob": 0.0, "teacher": "a.safetensors"}),
        SourceSpec.from_dict({"root": str(empty_root), "implant_prob": 0.0, "teacher": ["a.st", "b.st"]}),
    ]
    mix = MixtureSamples.from_specs(specs, CROP, 24, InputNorm(kind="robust"))
    assert [s.teacher for s in mix.sources] == [(Path("a.safetensors"),), (Path("a.st"), Path("b.st"))]
    drawn = set()
    for i in range(24):
        _, mask, source = mix[i]
        assert bool(mask.any()) == (int(source) == 0)
        drawn.add(int(source))
    assert drawn == {0, 1}


def test_border_prob_puts_targets_on_the_crops_border_only_and_only_where_asked(tmp_path):
    """A source kept free of implants (implant_prob 0) can still teach targets entering the
    view: with border_prob 1 every sample gets targets, each touching the crop's border; with
    the default 0 the samples are those of a source without the key."""
    root = write_dataset(tmp_path / "d", _frames(2), {"train": ["f0", "f1"]})
    cfg = AugmentConfig(sensor_prob=0.0, scale_prob=0.0)
    norm = InputNorm(kind="robust")

    def mix(**fields):
        return MixtureSamples.from_specs([SourceSpec(root, "train", 1.0, 0.0, **fields)], CROP, 12, norm, cfg)

    border, plain, unset = mix(border_prob=1.0), mix(border_prob=0.0), mix()
    edge = np.ones((CROP, CROP), bool)
    edge[3:-3, 3:-3] = False  # placed from 1 px outside to 2 px inside: the support reaches 3 px in
    for i in range(12):
        _, m = border.sample(i)
        labels, n = ndimage.label(m)
        assert n >= 1
        assert all((labels == k)[edge].any() for k in range(1, n + 1))
        y, m0 = plain.sample(i)
        assert not m0.any()
        np.testing.assert_array_equal(y, unset.sample(i)[0])


def test_a_source_without_teacher_differs_from_one_that_names_none(tmp_path):
    root = write_dataset(tmp_path / "d", _frames(1), {"train": ["f0"]})
    assert SourceSpec.from_dict({"root": str(root)}).teacher is None  # the run's
    assert SourceSpec.from_dict({"root": str(root), "teacher": []}).teacher == ()  # none


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"root": "x", "weight": "abc"}, "data source weight must be a number >= 0, got 'abc'"),
        ({"root": "x", "implant_prob": "x"}, "data source implant_prob must be a number in [0, 1], got 'x'"),
        ({"root": "x", "implant_prob": 3}, "data source implant_prob must be a number in [0, 1], got 3"),
        ({"root": "x", "hard_prob": "x"}, "data source hard_prob must be a number in [0, 1]"),
        ({"root": "x", "paste_prob": 1.5}, "data source paste_prob must be a number in [0, 1], got 1.5"),
        ({"root": "x", "border_prob": -0.1}, "data source border_prob must be a number in [0, 1], got -0.1"),
        ({"root": "x", "bank": "yes"}, "data source bank must be true or false"),
        ({"root": "x", "split": ["train"]}, "data source split must be a string"),
        ({"root": "x", "hard": 5}, "data source hard must be a path or a list of paths"),
        ({"root": None}, "data source root must be a path"),
        ({"split": "train"}, "a data source needs a root"),
    ],
)
def test_source_values_of_the_wrong_type_or_range_are_one_config_error(entry, words):
    with pytest.raises(ConfigError) as info:
        SourceSpec.from_dict(entry)
    assert words in str(info.value)
    spec = SourceSpec.from_dict({"root": "x", "weight": "2", "implant_prob": 1, "split": None})
    assert (spec.root, spec.weight, spec.implant_prob, spec.split) == (Path("x"), 2.0, 1.0, None)


def test_hard_files_and_hard_prob_go_together(tmp_path):
    # either alone used to be dropped without a word: no crop was ever put on a mined place
    root = write_dataset(tmp_path / "d", _frames(2), {"train": ["f0", "f1"]})
    hard = _hard_file(tmp_path / "hard.json", {"f1": {"false": [[20, 30, 0.9]]}})
    for fields in ({"hard": (hard,)}, {"hard_prob": 0.3}):  # refused with the spec, before any data
        with pytest.raises(ConfigError, match="hard .* and hard_prob > 0 .* go together"):
            SourceSpec(root, "train", **fields)
    with pytest.raises(ConfigError, match="hard .* and hard_prob > 0 .* go together"):
        SourceSpec.from_dict({"root": str(root), "hard": str(hard)})


@pytest.mark.parametrize("frames", [{"a": [[1, 2, 3]]}, {"a": {"false": [[1]]}}, {"a": {"miss": 5}}, [["a"]]])
def test_a_damaged_hard_example_file_is_one_config_error(tmp_path, frames):
    items = [(np.zeros(SIZE), np.zeros(SIZE, bool), "a")]
    with pytest.raises(ConfigError, match="h.json: damaged hard-example file"):
        load_hard_examples(_hard_file(tmp_path / "h.json", frames), items)


def test_a_32_bit_source_at_a_large_offset_keeps_its_noise_and_targets():
    # the augmentations compute in float32: at 4.2e9 counts (steps of 512) the noise and
    # implanted targets of a uint32 crop were rounded away (a flat sample); about its
    # median it gives the samples of the same counts at offset 1000
    from irstd_ros.data.mixture import Source

    noise = np.rint(np.random.default_rng(3).normal(0.0, 8.0, SIZE))
    samples = []
    for frame in ((4.2e9 + noise).astype(np.uint32), (1000 + noise).astype(np.uint16)):
        source = Source([(frame, np.zeros(SIZE, bool), "f")], 1.0, implant_prob=1.0)
        mix = MixtureSamples([source], CROP, 4, InputNorm(kind="robust"), AugmentConfig(sensor_prob=0.0))
        samples.append([mix.sample(i) for i in range(4)])
    for (wide, wide_mask), (narrow, narrow_mask) in zip(*samples):
        assert np.array_equal(wide_mask, narrow_mask) and wide_mask.any()
        assert np.median(np.abs(wide - narrow)) < 1e-4 and np.abs(wide - narrow).max() < 0.1
        assert wide.std() > 0.1


def test_a_pack_group_is_a_source_with_the_folder_s_frames_and_hard_places(tmp_path):
    """A source whose root is a pack (``irstd pack``) reads the group its split names: the
    frames its folder gives, so a machine without the folders trains the same recipe."""
    from irstd_ros.data.mixture import source_items
    from irstd_ros.data.pack import PackGroup, folder_items, write_pack

    frames = _frames(3)
    frames[1][2][40:43, 50:53] = True
    root = write_dataset(tmp_path / "d", frames, {"train": ["f0", "f1", "f2"]})
    pack = tmp_path / "p.npz"
    write_pack([PackGroup("mine", folder_items(root, "train"), {"root": str(root)})], pack)
    from_folder = source_items(SourceSpec.from_dict({"root": str(root)}))
    from_pack = source_items(SourceSpec.from_dict({"root": str(pack), "split": "mine"}))
    assert [n for _, _, n in from_pack] == [n for _, _, n in from_folder] == ["f0", "f1", "f2"]
    for (a, am, _), (b, bm, _) in zip(from_folder, from_pack):
        assert a.dtype == b.dtype and np.array_equal(a, b) and np.array_equal(am.astype(bool), bm)
    hard = _hard_file(tmp_path / "h.json", {"f2": {"false": [[10, 20, 0.9]]}})
    spec = SourceSpec.from_dict({"root": str(pack), "split": "mine", "hard": str(hard), "hard_prob": 0.5})
    mix = MixtureSamples.from_specs([spec], CROP, 8, InputNorm(kind="robust"))
    assert mix.sources[0].hard == ((2, 10.0, 20.0),)  # matched by stem, as in the folder
    with pytest.raises(DatasetError, match="no group 'theirs'; it has: mine"):
        source_items(SourceSpec.from_dict({"root": str(pack), "split": "theirs"}))
    with pytest.raises(ConfigError, match="its split names the group"):
        source_items(SourceSpec.from_dict({"root": str(pack), "split": None}))


@pytest.mark.parametrize("weights", [(1e308, 1e308), (-1.0, 2.0), (0.0, 0.0)])
def test_source_weights_must_have_a_positive_finite_sum(weights):
    """Two weights of 1e308 summed to inf: numpy's "probabilities do not sum to 1" at the
    first sample, after every frame had been loaded."""
    from irstd_ros.data.mixture import Source

    frame = np.zeros(SIZE, np.float32)
    sources = [Source([(frame, np.zeros(SIZE, bool), "f")], w, implant_prob=0.0) for w in weights]
    with pytest.raises(ConfigError, match="positive finite sum"):
        MixtureSamples(sources, CROP, 4, InputNorm(kind="robust"))
