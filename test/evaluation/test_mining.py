import json

import numpy as np
import pytest
from _support.datasets import write_dataset

from irstd_ros.cli.main import main
from irstd_ros.data.mixture import HARD_FORMAT, load_hard_examples
from irstd_ros.evaluation.evaluate import EvalConfig
from irstd_ros.evaluation.mining import mine_hard_examples

SIZE = (64, 80)


@pytest.fixture
def data(tmp_path):
    """Frame a: an unlabelled bright blob (a false target) and a labelled patch of flat
    background (a miss); frame b: a labelled bright blob (a hit)."""
    rng = np.random.default_rng(0)
    a = rng.normal(60, 3, SIZE).clip(0, 255).astype(np.uint8)
    a[20:23, 30:33] = 250
    miss = np.zeros(SIZE, bool)
    miss[50:53, 10:13] = True
    b = rng.normal(60, 3, SIZE).clip(0, 255).astype(np.uint8)
    b[40:43, 60:63] = 250
    hit = np.zeros(SIZE, bool)
    hit[40:43, 60:63] = True
    return write_dataset(tmp_path / "d", [("a", a, miss), ("b", b, hit)], {"train": ["a", "b"]})


def test_mining_finds_false_targets_and_misses_with_the_shipped_model(data):
    report = mine_hard_examples(EvalConfig(data=data, split="train", backend="torch-cpu", threads=1, out=None))
    assert report["format"] == HARD_FORMAT and report["images"] == 2
    assert set(report["frames"]) == {"a"}  # b was detected and has no false target
    (fy, fx, score), = report["frames"]["a"]["false"]
    assert abs(fy - 21) < 1 and abs(fx - 31) < 1 and score > 0.5
    (my, mx, _), = report["frames"]["a"]["miss"]
    assert (my, mx) == (51.0, 11.0)


def test_cli_writes_a_file_the_training_mixture_reads(data, tmp_path, capsys):
    out = tmp_path / "hard.json"
    assert main(["mine", "--data", str(data), "--backend", "torch-cpu", "--threads", "1", "--out", str(out)]) == 0
    assert "1 false targets and 1 missed targets in 1 of 2 images" in capsys.readouterr().out
    items = [(np.zeros(SIZE), np.zeros(SIZE, bool), "a"), (np.zeros(SIZE), np.zeros(SIZE, bool), "b")]
    places = sorted(load_hard_examples(out, items))
    assert [i for i, _, _ in places] == [0, 0]
    assert np.allclose([(y, x) for _, y, x in places], [(21, 31), (51, 11)], atol=0.5)
    assert json.loads(out.read_text())["split"] == "train"


def test_a_miss_is_scored_where_it_is_not_at_a_neighbour(data):
    """Frame a's miss (flat background) lies 30 px from its false target (score > 0.5): the
    miss's score is the network's answer at the miss, below the threshold that missed it."""
    from irstd_ros.evaluation.mining import MINING_THRESHOLD

    report = mine_hard_examples(EvalConfig(data=data, split="train", backend="torch-cpu", threads=1, out=None))
    (_, _, false_score), = report["frames"]["a"]["false"]
    (_, _, miss_score), = report["frames"]["a"]["miss"]
    assert false_score > 0.5 and miss_score < MINING_THRESHOLD


def test_peak_near_looks_within_the_matching_distance():
    from irstd_ros.evaluation.mining import peak_near

    prob = np.zeros((20, 20))
    prob[10, 14], prob[0, 0] = 0.9, 0.5
    assert peak_near(prob, 10.2, 10.6) == 0.9  # 3 px away: the component it belongs to
    assert peak_near(prob, 10.0, 9.0) == 0.0  # 5 px: another place
    assert peak_near(prob, 1.0, 1.4) == 0.5  # clipped at the frame's edge


class _LowThresholdBackend:
    """Scores bright pixels 0.25: above a checkpoint threshold of 0.2, below 0.3."""

    name = "low"

    def predict(self, x):
        return np.where(x > 3.0, 0.25, 0.0).astype(np.float32)


def test_a_checkpoint_with_a_low_threshold_is_mined_at_its_own(data, monkeypatch):
    """What the node raises at 0.2 is a false target, and what it finds at 0.2 no miss,
    though both score under the default mining threshold 0.3."""
    from irstd_ros.core.normalization import InputNorm
    from irstd_ros.evaluation import mining

    monkeypatch.setattr(mining, "build_scorer", lambda cfg: (_LowThresholdBackend(), InputNorm(kind="robust"), 0.2, {}))
    report = mine_hard_examples(EvalConfig(data=data, split="train", out=None))
    assert report["threshold"] == 0.2
    assert report["false_targets"] == 1 and report["missed_targets"] == 1  # a's blob; a's flat patch
    assert set(report["frames"]) == {"a"}
    explicit = mine_hard_examples(EvalConfig(data=data, split="train", threshold=0.3, out=None))
    assert explicit["threshold"] == 0.3 and explicit["false_targets"] == 0 and explicit["missed_targets"] == 2


# --- held-out splits are never mined ----------------------------------------------------------
def _held_out_dataset(root, held_out="test", extra=None):
    """Frames a, b for training, c, d held out (NUDT-SIRST's test, SIRST-v2's val), and
    ``extra`` lists by name."""
    frame = np.zeros(SIZE, np.uint8)
    splits = {"train": ["a", "b"], held_out: ["c", "d"], **(extra or {})}
    return write_dataset(root, [(s, frame, frame) for s in "abcd"], splits)


def _no_model(cfg):
    raise AssertionError("the model was loaded before the split was checked")


@pytest.mark.parametrize(
    ("held_out", "split", "words"),
    [
        ("test", "test", "split 'test' of {data} is held out"),  # NUDT-SIRST
        ("val", "val", "split 'val' of {data} is held out"),  # SIRST-v2
        ("val", "trainval", "split 'trainval' of {data} holds 2 frames of the held-out split 'val' (first: c)"),
        ("test", "all", "split 'all' of {data} holds 2 frames of the held-out split 'test' (first: c)"),
        ("test", "some", "split 'some' of {data} holds 1 frame of the held-out split 'test' (first: d)"),
    ],
)
def test_a_held_out_split_or_one_sharing_its_frames_is_not_mined(tmp_path, monkeypatch, held_out, split, words):
    """Mining `--split test` wrote hard examples of the test frames, which a training
    mixture then cropped around: the test set leaked into training."""
    from irstd_ros.errors import ConfigError
    from irstd_ros.evaluation import mining

    monkeypatch.setattr(mining, "build_scorer", _no_model)
    data = _held_out_dataset(tmp_path / "d", held_out, {"trainval": ["a", "b", "c", "d"], "some": ["a", "d"]})
    with pytest.raises(ConfigError) as exc:
        mine_hard_examples(EvalConfig(data=data, split=split, out=None))
    assert str(exc.value).startswith(words.format(data=data)), exc.value
    assert "would train on the frames results are reported on; use a training split, e.g. 'train'" in str(exc.value)


def test_a_training_split_beside_a_held_out_one_is_mined(tmp_path):
    data = _held_out_dataset(tmp_path / "d")
    report = mine_hard_examples(EvalConfig(data=data, split="train", backend="torch-cpu", threads=1, out=None))
    assert report["images"] == 2 and report["split"] == "train"


def test_cli_refuses_to_mine_the_test_split_in_one_line(tmp_path, capsys, monkeypatch):
    from _support.cli import one_error_line, run_cli

    from irstd_ros.evaluation import mining

    monkeypatch.setattr(mining, "build_scorer", _no_model)
    data = _held_out_dataset(tmp_path / "d")
    out = tmp_path / "hard.json"
    code, err = run_cli(capsys, "mine", "--data", str(data), "--split", "test", "--out", str(out))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"irstd mine: error: split 'test' of {data} is held out: hard examples mined there "
                           "would train on the frames results are reported on"), line
    assert not out.exists()


# --- held-out lists by name, in BasicIRSTD's and SIRST-v1's layouts ---------------------------
@pytest.mark.parametrize(
    ("split_dir", "lists", "split", "hint"),
    [
        ("img_idx", ("train_NUDT-SIRST", "test_NUDT-SIRST"), "test_NUDT-SIRST", "train_NUDT-SIRST"),  # BasicIRSTD
        ("idx_427", ("train", "test"), "idx_427/test", "idx_427/train"),  # SIRST-v1
        ("splits", ("train", "validation"), "validation", "train"),
    ],
)
def test_a_held_out_list_of_another_name_is_not_mined(tmp_path, monkeypatch, split_dir, lists, split, hint):
    """Only lists literally named test and val were held out: `--split test_NUDT-SIRST`
    and `--split idx_427/test` mined hard examples on the frames results are reported on."""
    from irstd_ros.errors import ConfigError
    from irstd_ros.evaluation import mining

    monkeypatch.setattr(mining, "build_scorer", _no_model)
    frame = np.zeros(SIZE, np.uint8)
    data = write_dataset(tmp_path / "d", [(s, frame, frame) for s in "abcd"],
                         {lists[0]: ["a", "b"], lists[1]: ["c", "d"]}, split_dir=split_dir)
    with pytest.raises(ConfigError) as exc:
        mine_hard_examples(EvalConfig(data=data, split=split, out=None))
    assert str(exc.value).startswith(f"split {split!r} of {data} is held out: hard examples mined there"), exc.value
    assert f"use a training split, e.g. {hint!r}" in str(exc.value)
    with pytest.raises(ConfigError, match=f"holds 2 frames of the held-out split '{split}' \\(first: c\\)"):
        mine_hard_examples(EvalConfig(data=data, split="all", out=None))  # every image: theirs too


def test_held_out_lists_are_named_test_or_val_in_any_folder(tmp_path):
    from irstd_ros.evaluation.splits import held_out_splits, is_held_out, matching_held_out

    assert [s for s in ("test", "val", "Test_X", "idx_427/test", "validation", "test.txt")
            if not is_held_out(s)] == []
    assert [s for s in ("train", "trainval", "train_X", "idx_427/trainval", "all", "", None, "contest")
            if is_held_out(s)] == []
    frame = np.zeros(SIZE, np.uint8)
    data = write_dataset(tmp_path / "d", [(s, frame, frame) for s in "abcdef"],
                         {"train_A": ["a"], "test_A": ["b"], "train_B": ["c"], "test_B": ["d"], "val_B": ["e"]},
                         split_dir="img_idx")
    write_dataset(tmp_path / "x", [], {"trainval": ["a"], "test": ["f"]}, split_dir="idx_427")
    for name in ("trainval", "test"):
        (data / "idx_427").mkdir(exist_ok=True)
        (data / "idx_427" / f"{name}.txt").write_text((tmp_path / "x" / "idx_427" / f"{name}.txt").read_text())
    assert held_out_splits(data) == ["idx_427/test", "test_A", "test_B", "val_B"]  # test* first
    assert matching_held_out(data, "train_B") == ["test_B", "val_B"]
    assert matching_held_out(data, "train_A") == ["test_A"]
    assert matching_held_out(data, "idx_427/trainval") == ["idx_427/test"]
    assert matching_held_out(data, "train_C") == []  # another dataset's: none
