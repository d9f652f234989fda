"""Held-out splits (:mod:`irstd_ros.evaluation.splits`): the rule by a list's own name."""

import numpy as np
import pytest
from _support.datasets import write_dataset

from irstd_ros.errors import ConfigError, DatasetError
from irstd_ros.evaluation.splits import check_not_held_out, held_out_splits, is_held_out


def test_only_a_list_s_own_name_makes_it_held_out(tmp_path):
    """The rule looks at the last part of a list's path, not at the folders above it: a
    folder may hold training and held-out lists alike (SIRST-v1's idx_427)."""
    assert not is_held_out("val/list") and not is_held_out("test/train")
    assert is_held_out("test_free") and is_held_out("idx_427/test")
    frame = np.zeros((8, 8), np.uint8)
    data = write_dataset(tmp_path / "d", [(s, frame, frame) for s in "abc"], {"list": ["a"]}, split_dir="val")
    (data / "test_free.txt").write_text("b\n")
    assert held_out_splits(data) == ["test_free"]
    check_not_held_out(data, "val/list")  # shares no frame with test_free: a training list
    with pytest.raises(ConfigError, match="split 'test_free' of .* is held out"):
        check_not_held_out(data, "test_free")


def test_checking_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        check_not_held_out(tmp_path / "nowhere", "train")


def test_the_check_reads_no_mask(tmp_path):
    """Images are compared, masks not consulted: a split whose masks are named otherwise
    (a mask suffix) is checked all the same."""
    frame = np.zeros((8, 8), np.uint8)
    data = write_dataset(tmp_path / "d", [(s, frame, frame) for s in "abcd"],
                         {"train": ["a", "b"], "test": ["c", "d"], "trainval": ["a", "b", "c", "d"]},
                         mask_suffix="_pixels0")
    check_not_held_out(data, "train")
    with pytest.raises(ConfigError, match=r"holds 2 frames of the held-out split 'test' \(first: c\)"):
        check_not_held_out(data, "trainval")
