import numpy as np
import pytest
from _support.datasets import write_dataset
from PIL import Image

from irstd_ros.data import DatasetSpec, IRSTDDataset, find_pairs, load_image
from irstd_ros.errors import DatasetError


def make_dataset(root, stems, size=(20, 24), mask_suffix="", split_dir="50_50", crlf=True):
    frames = []
    for i, s in enumerate(stems):
        img = np.full(size, 10 * i, np.uint8)
        img[5, 6] = 255
        mask = np.zeros(size, bool)
        mask[5, 6] = True
        frames.append((s, img, mask))
    splits = {"train": stems[:-1], "test": stems[-1:]} if split_dir else {}
    return write_dataset(
        root, frames, splits, split_dir or ".", mask_suffix, "\r\n" if crlf else "\n"
    )


def test_nudt_layout_with_crlf_split(tmp_path):
    root = make_dataset(tmp_path / "d", ["000001", "000002", "000003"])
    pairs = find_pairs(DatasetSpec(root, "train"))
    assert [p[0].stem for p in pairs] == ["000001", "000002"]
    assert [p[0].stem for p in find_pairs(DatasetSpec(root, "test"))] == ["000003"]


def test_generic_layout_with_mask_suffix_and_no_split(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b"], mask_suffix="_pixels0", split_dir=None)
    pairs = find_pairs(DatasetSpec(root, split=None, mask_suffix="_pixels0"))
    assert [p[1].name for p in pairs] == ["a_pixels0.png", "b_pixels0.png"]


def test_missing_pairs_are_listed(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b", "c"])
    (root / "masks" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 2 samples lack .*\['a'\]"):
        find_pairs(DatasetSpec(root, "train"))


def test_wrong_path_empty_folder_and_missing_split(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        find_pairs(DatasetSpec(tmp_path / "nowhere"))
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        find_pairs(DatasetSpec(tmp_path / "e"))
    root = make_dataset(tmp_path / "d", ["a", "b"])
    with pytest.raises(DatasetError, match="split list 'val' not found"):
        find_pairs(DatasetSpec(root, "val"))


def test_a_missing_split_names_the_splits_there(tmp_path):
    """SIRST-v2's upstream layout has train/val/trainval in splits/: `--split test` (the
    default) said where it looked, not what there is."""
    root = make_dataset(tmp_path / "d", ["a", "b"], split_dir=None)
    (root / "splits").mkdir()
    for name in ("train", "trainval", "val"):
        (root / "splits" / f"{name}.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="the splits there: train, trainval, val; split 'all'"):
        find_pairs(DatasetSpec(root, "test"))


def test_size_mismatch_between_image_and_mask(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b"])
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(root / "masks" / "a.png")
    with pytest.raises(DatasetError, match="size mismatch"):
        IRSTDDataset(find_pairs(DatasetSpec(root, "train")))


def test_sixteen_bit_images_keep_their_counts(tmp_path):
    # eval and the node see the same raw counts; normalisation happens once, later
    path = tmp_path / "x.png"
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(path)
    img = load_image(path)
    assert img.dtype == np.uint16 and img.tolist() == [[0, 65535]]


def test_upstream_splits_folder_is_found(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b", "c"], split_dir="splits", crlf=False)
    assert [p[0].stem for p in find_pairs(DatasetSpec(root, "train"))] == ["a", "b"]


def test_training_crops_keep_image_and_mask_aligned(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b", "c"], size=(40, 40))
    ds = IRSTDDataset(find_pairs(DatasetSpec(root, "train")), crop=16, train=True, seed=1)
    for _ in range(20):
        img, mask = ds[0]
        assert img.shape == mask.shape == (1, 16, 16)
        # the bright pixel and the mask pixel move together under crop/flip/rotation
        assert torch_equal_positions(img, mask)


def torch_equal_positions(img, mask):
    bright = set(map(tuple, (img[0] > 0.99).nonzero().tolist()))
    marked = set(map(tuple, (mask[0] > 0).nonzero().tolist()))
    return bright == marked


def test_crop_pads_small_images(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b"], size=(10, 12))
    ds = IRSTDDataset(find_pairs(DatasetSpec(root, "train")), crop=16, train=True)
    assert ds[0][0].shape == (1, 16, 16)


def test_split_list_not_utf8_names_the_file(tmp_path):
    root = make_dataset(tmp_path / "d", ["000001", "000002"])
    split = root / "50_50" / "train.txt"
    split.write_bytes("000001\n".encode("utf-16"))  # a BOM and NUL bytes: not UTF-8
    with pytest.raises(DatasetError, match="split list .*train.txt is not UTF-8"):
        find_pairs(DatasetSpec(root, "train"))


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_two_files_of_one_stem_are_refused_naming_both(tmp_path, folder):
    root = make_dataset(tmp_path / "d", ["000001", "000002", "000003"])
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / folder / "000002.bmp")
    with pytest.raises(DatasetError, match="ambiguous") as info:
        find_pairs(DatasetSpec(root, "train"))
    assert str(root / folder / "000002.png") in str(info.value)
    assert str(root / folder / "000002.bmp") in str(info.value)


def test_split_list_with_a_byte_order_mark_and_repeated_names(tmp_path):
    root = make_dataset(tmp_path / "d", ["a", "b", "c"])
    split = root / "50_50" / "train.txt"
    split.write_text("\ufeffa\r\nb\r\n", encoding="utf-8")  # as Windows editors save it
    assert [p[0].stem for p in find_pairs(DatasetSpec(root, "train"))] == ["a", "b"]
    split.write_text("a\nb\na.png\n", encoding="utf-8")  # a twice: it would count twice
    with pytest.raises(DatasetError, match=r"train.txt names 1 image\(s\) more than once \(first: 'a'\)"):
        find_pairs(DatasetSpec(root, "train"))


def test_loader_workers_draw_crops_and_flips_of_their_own(monkeypatch):
    """Each loader worker reseeds its copy of the dataset's generator with its id (worker k
    drew worker 0's crops and flips before). Tested in this process with the worker info
    faked: real worker processes started from the test process (forked or spawned) made a
    later ROS test's process die with SIGSEGV."""
    import copy
    from types import SimpleNamespace

    import torch

    from irstd_ros.data.datasets import seed_worker

    img = np.random.default_rng(1).integers(0, 255, (64, 64)).astype(np.uint8)
    ds = IRSTDDataset([], crop=16, train=True, seed=0)
    ds.items = [(img, np.zeros(img.shape, bool), str(i)) for i in range(4)]  # one frame, 4 times

    def worker_sample(worker_id: int) -> torch.Tensor:
        copied = copy.deepcopy(ds)  # what each worker inherits: the same generator state
        info = SimpleNamespace(dataset=copied, id=worker_id)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
        seed_worker(worker_id)
        return copied[0][0]

    a, b = worker_sample(0), worker_sample(1)
    assert not torch.equal(a, b)  # two workers, two windows and flips
    assert torch.equal(worker_sample(1), b)  # still seeded
    unseeded = [copy.deepcopy(ds)[0][0] for _ in range(2)]
    assert torch.equal(*unseeded)  # the defect: copies of one generator draw alike


@pytest.mark.parametrize(("suffix", "orphans", "words"), [
    ("", ["c", "d", "e", "f"], "4 masks in {root}/masks have no image in {root}/images (first: c.png, d.png, e.png)"),
    ("_pixels0", ["c"], "1 mask in {root}/masks has no image in {root}/images (first: c_pixels0.png)"),
])
def test_every_image_refuses_masks_without_an_image(tmp_path, suffix, orphans, words):
    """Split all (no list) silently left out the frames whose image was missing: the
    figures covered fewer frames than the folder's masks said."""
    root = make_dataset(tmp_path / "d", ["a", "b", *orphans], mask_suffix=suffix, split_dir=None)
    for stem in orphans:
        (root / "images" / f"{stem}.png").unlink()
    with pytest.raises(DatasetError) as exc:
        find_pairs(DatasetSpec(root, "all", suffix))
    assert str(exc.value).startswith(words.format(root=root)), exc.value
    (root / "train.txt").write_text("a\nb\n")  # a list names its frames: the others are not its
    assert [i.stem for i, _ in find_pairs(DatasetSpec(root, "train", suffix))] == ["a", "b"]


def test_lists_of_other_folders_are_splits_by_their_path(tmp_path):
    """SIRST-v1 keeps its lists in idx_320/ and idx_427/: a split is named by its path."""
    from irstd_ros.data.datasets import available_splits, split_list

    root = make_dataset(tmp_path / "d", ["a", "b", "c"], split_dir="idx_427", crlf=False)
    assert available_splits(root) == ["idx_427/test", "idx_427/train"]
    assert split_list(DatasetSpec(root, "idx_427/test")) == root / "idx_427" / "test.txt"
    assert [i.stem for i, _ in find_pairs(DatasetSpec(root, "idx_427/test"))] == ["c"]
    with pytest.raises(DatasetError, match="the splits there: idx_427/test, idx_427/train; split 'all'"):
        find_pairs(DatasetSpec(root, "test"))
