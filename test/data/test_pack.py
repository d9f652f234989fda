"""The data pack: exact round trip, the same items as the folders, errors, the CLI."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from _support.cli import one_error_line, run_cli
from _support.zips import members, npy, npy_header, patch_entry, write_zip

from irstd_ros.cli.main import main
from irstd_ros.data import pack as pack_module
from irstd_ros.data.pack import (
    Pack,
    PackConfig,
    PackGroup,
    build_pack,
    crop_items,
    folder_items,
    gradient_filter,
    gradient_unfilter,
    hard_crops,
    pack_dataset,
    pack_items,
    write_pack,
)
from irstd_ros.errors import ConfigError, DatasetError
from irstd_ros.tools.gpu_session import make_dry_data

CROP = 32


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return make_dry_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def pack(roots, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "p.npz"
    summary = build_pack(PackConfig(out=out, nudt=roots["nudt"], sirst=roots["sirst"], crop=CROP))
    assert summary["bytes"] == out.stat().st_size
    return out


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (48, 48), (64, 80)])
def test_gradient_filter_round_trip(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    res = gradient_filter(img)
    assert res.dtype == np.uint8
    assert np.array_equal(gradient_unfilter(res), img)


def test_pack_holds_the_folder_items_exactly(pack, roots):
    p = Pack(pack)
    assert p.groups == ["nudt_train", "nudt_test", "sirst_crops"]
    for split in ("train", "test"):
        expected = folder_items(roots["nudt"], split)
        got = p.items(f"nudt_{split}")
        assert [n for *_, n in got] == [n for *_, n in expected]
        for (gi, gm, _), (ei, em, _) in zip(got, expected):
            assert gi.dtype == np.uint8 and gm.dtype == bool
            assert np.array_equal(gi, ei) and np.array_equal(gm, em)
    p.close()


def test_sirst_crops_are_fixed_size_and_hold_targets(pack, roots):
    crops = pack_items(pack, "sirst_crops")
    frames = folder_items(roots["sirst"], "train")
    assert len(crops) >= len(frames)
    assert all(img.shape == (CROP, CROP) and mask.shape == (CROP, CROP) for img, mask, _ in crops)
    with_target = {n.split("#")[0] for _, m, n in crops if m.any()}
    assert with_target == {n for _, m, n in frames if m.any()}  # every frame with a target gave one


def test_crop_items_pads_small_frames_and_keeps_the_whole_mask():
    img = np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)
    mask = np.zeros((20, 24), bool)
    mask[2, 3] = mask[15, 20] = True
    crops = crop_items([(img, mask, "a")], crop=32, target_crops=2, random_crops=1)
    assert len(crops) == 3 and all(c[0].shape == (32, 32) for c in crops)
    assert all(c[1].sum() >= 2 for c in crops)  # a 32 crop of a padded 20x24 frame sees both


def test_pack_dataset_is_an_irstd_dataset(pack):
    ds = pack_dataset(pack, "nudt_train", crop=CROP, train=True)
    x, m = ds[0]
    assert x.shape == (1, CROP, CROP) and m.shape == (1, CROP, CROP)
    assert len(ds) == len(pack_items(pack, "nudt_train"))


def test_errors(tmp_path, pack):
    with pytest.raises(DatasetError, match="only 8-bit"):
        write_pack([PackGroup("g", [(np.zeros((4, 4), np.uint16), np.zeros((4, 4), bool), "x")])], tmp_path / "a.npz")
    with pytest.raises(DatasetError, match="no group 'nope'"):
        pack_items(pack, "nope")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"not a pack \(expected an .npz written by irstd pack\)"):
        Pack(tmp_path / "bad.npz")
    with pytest.raises(DatasetError, match="pack not found"):
        Pack(tmp_path / "missing.npz")


NOT_A_PACK = "not a pack (expected an .npz written by irstd pack): "


def test_files_that_are_not_packs_are_named_so(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")  # np.load would take it for pickled data
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    other_npz = tmp_path / "other.npz"
    np.savez(other_npz, a=np.zeros(3))  # a zip, but no meta
    bad_meta = tmp_path / "bad_meta.npz"
    np.savez(bad_meta, meta=np.frombuffer(b"{not json", np.uint8))
    for path in (text, npy, other_npz, bad_meta):
        with pytest.raises(DatasetError) as info:
            Pack(path)
        assert str(info.value) == NOT_A_PACK + str(path)
    with pytest.raises(DatasetError, match="is a directory, not a pack"):
        Pack(tmp_path)


def test_train_gpu_pack_that_is_a_text_file_or_a_directory(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    code, err = run_cli(capsys, "train-gpu", "--pack", str(text), "--out", str(tmp_path / "run"), "--device", "cpu")
    assert code == 2 and one_error_line(err) == f"irstd train-gpu: error: {NOT_A_PACK}{text}"
    code, err = run_cli(capsys, "train-gpu", "--pack", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cpu")
    assert code == 2 and "is a directory" in one_error_line(err) and "pickle" not in err


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "p.npz"
    item = (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), "x")
    with pytest.raises(DatasetError, match="is empty"):  # fails inside the zip, after it started
        write_pack([PackGroup("a", [item]), PackGroup("b", [])], out)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match="d is a directory"):
        write_pack([PackGroup("a", [item])], tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_cli(tmp_path, roots, capsys):
    out = tmp_path / "cli.npz"
    assert main(["pack", "--out", str(out), "--nudt", roots["nudt"], "--no-sirst", "--crop", str(CROP)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["groups"]) == {"nudt_train", "nudt_test"} and out.is_file()
    assert main(["pack", "--out", str(out), "--no-nudt", "--no-sirst"]) == 2  # nothing to pack


def test_cli_no_nudt_test_leaves_the_test_split_out(tmp_path, roots, capsys):
    # the smaller pack that fits a device call beside the repository
    out = tmp_path / "small.npz"
    assert main(["pack", "--out", str(out), "--nudt", roots["nudt"], "--sirst", roots["sirst"], "--crop", str(CROP),
                 "--no-nudt-test", "--random-crops", "0"]) == 0
    assert set(json.loads(capsys.readouterr().out)["groups"]) == {"nudt_train", "sirst_crops"}
    opened = Pack(out)
    assert opened.groups == ["nudt_train", "sirst_crops"]
    opened.close()
    for splits in (("val",), (), ("train", "train")):
        with pytest.raises(ConfigError, match="nudt_splits must be some of train, test"):
            build_pack(PackConfig(out=tmp_path / "x.npz", nudt=roots["nudt"], sirst=None, nudt_splits=splits))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--crop", "0"], "argument --crop: must be >= 1, got 0"),
        (["--crop", "-5"], "argument --crop: must be >= 1, got -5"),
        (["--target-crops", "-1"], "argument --target-crops: must be >= 0"),
        (["--random-crops", "x"], "argument --random-crops: expected an integer"),
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["--crop", "100000"], "crop must be in [1, 2048]"),  # was killed for memory
        (["--no-nudt-test"], "--no-nudt-test with --no-nudt"),  # was ignored
    ],
)
def test_cli_bad_crop_options_are_usage_errors(args, words, tmp_path, roots, capsys):
    code, err = run_cli(capsys, "pack", "--out", str(tmp_path / "p.npz"), "--no-nudt",
                        "--sirst", str(roots["sirst"]), *args)
    assert code == 2 and words in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_cli_out_that_is_a_directory_is_refused_up_front(tmp_path, roots, capsys, monkeypatch):
    def no_reading(*_args, **_kwargs):
        raise AssertionError("the datasets were read before --out was checked")

    monkeypatch.setattr(pack_module, "folder_items", no_reading)
    out = tmp_path / "d"
    out.mkdir()
    code, err = run_cli(capsys, "pack", "--out", str(out), "--nudt", str(roots["nudt"]), "--no-sirst")
    assert code == 2
    assert one_error_line(err) == f"irstd pack: error: --out {out}: is a directory; give a file path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no stray d.tmp
    with pytest.raises(DatasetError, match="is a directory"):  # the library checks too, up front
        build_pack(PackConfig(out=out, nudt=roots["nudt"], sirst=None))
    with pytest.raises(ConfigError, match="crop must be in \\[1, 2048\\]"):
        build_pack(PackConfig(out=tmp_path / "p.npz", nudt=None, sirst=roots["sirst"], crop=0))


def _rewritten(pack, out, change):
    """A copy of ``pack`` with ``change(name, data) -> data or None`` applied to its members."""
    import zipfile

    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = change(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)
    return out


def test_a_damaged_group_is_one_dataset_error(tmp_path, pack):
    import zipfile

    damaged = tmp_path / "crc.npz"
    damaged.write_bytes(pack.read_bytes())
    with zipfile.ZipFile(pack) as zf:
        member = zf.getinfo("nudt_train.images.npy")
    data = bytearray(damaged.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + member.compress_size // 2
    data[start : start + 16] = bytes(b ^ 0xFF for b in data[start : start + 16])
    damaged.write_bytes(bytes(data))
    missing = _rewritten(pack, tmp_path / "missing.npz",
                         lambda name, data: None if name == "nudt_train.masks.npy" else data)
    short = _rewritten(pack, tmp_path / "short.npz", lambda name, data: (
        _npy(np.zeros(5, np.uint8)) if name == "nudt_train.images.npy" else data))
    for path in (damaged, missing, short):
        with pytest.raises(DatasetError, match=r"pack group 'nudt_train' is damaged \(.+\); write the pack again"):
            pack_items(path, "nudt_train")
    assert len(pack_items(short, "nudt_test")) == len(pack_items(pack, "nudt_test"))  # the rest reads


def _npy(arr):
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("groups", [None, [], {"nudt_train": 3}])
def test_a_pack_whose_groups_are_missing_or_damaged_is_one_dataset_error(tmp_path, pack, groups):
    import io
    import json

    def change(name, data):
        if name != "meta.npy":
            return data
        arr = np.load(io.BytesIO(data))
        meta = json.loads(bytes(arr).decode())
        if groups is None:
            del meta["groups"]
        else:
            meta["groups"] = groups
        return _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))

    bad = _rewritten(pack, tmp_path / "groups.npz", change)
    with pytest.raises(DatasetError, match="list of groups is missing or damaged"):
        pack_items(bad, "nudt_train")


# --- members checked before they are inflated (zip bombs, lying sizes) ---------------------------
BOMB_SIDE = 4096  # a 16 Mpx frame: 16 MiB of zeros, 16 KiB of deflate
INFLATE_LIMIT = 2**20  # bytes a refused read may allocate (a bomb's member is 16 MiB)


def _tiny_pack(path):
    item = (np.arange(16, dtype=np.uint8).reshape(4, 4), np.eye(4, dtype=bool), "a")
    write_pack([PackGroup("g", [item])], path)
    return path


def _with_members(pack, out, **replaced):
    """A copy of ``pack`` with members replaced (``g_images="..."`` is ``g.images.npy``)."""
    data = members(pack)
    data.update({key.replace("_", ".") + ".npy": value for key, value in replaced.items()})
    return write_zip(out, data)


def _refused(read):
    """The DatasetError ``read()`` raises, and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as info:
            read()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_zip_bomb_group_is_refused_for_the_memory_it_needs_before_it_is_inflated(tmp_path, monkeypatch):
    """Shapes, images and masks that agree, and 16 MiB of zeros in 16 KiB of deflate: read
    whole, as np.load did, a 40 MiB pack could have asked for 40 GiB. The group's pixels are
    weighed against the memory available before a byte of them is inflated."""
    n = BOMB_SIDE * BOMB_SIDE
    bomb = _with_members(_tiny_pack(tmp_path / "p.npz"), tmp_path / "bomb.npz",
                         g_shapes=npy(np.array([[BOMB_SIDE, BOMB_SIDE]], np.int32)),
                         g_images=npy(np.zeros(n, np.uint8)), g_masks=npy(np.zeros(n // 8, np.uint8)))
    assert bomb.stat().st_size < n // 100
    monkeypatch.setattr(pack_module, "available_memory", lambda: 32 * 2**20)
    err, peak = _refused(lambda: pack_items(bomb, "g"))
    assert f"pack group 'g' declares {n} pixels (members g.shapes.npy, g.images.npy)" in str(err)
    assert "more than the 0.03 GiB of memory available" in str(err)
    assert peak < INFLATE_LIMIT
    monkeypatch.setattr(pack_module, "available_memory", lambda: 2**40)
    assert pack_items(bomb, "g")[0][0].shape == (BOMB_SIDE, BOMB_SIDE)  # where it fits, it reads


def test_a_member_larger_than_the_layout_says_is_refused_before_it_is_inflated(tmp_path):
    """A 4x4 frame's images member holding 16 MiB: np.load inflated all of it first."""
    bomb = _with_members(_tiny_pack(tmp_path / "p.npz"), tmp_path / "bomb.npz",
                         g_images=npy(np.zeros(BOMB_SIDE * BOMB_SIDE, np.uint8)))
    err, peak = _refused(lambda: pack_items(bomb, "g"))
    assert "pack group 'g' is damaged (member g.images.npy declares 16777344 bytes uncompressed" in str(err)
    assert peak < INFLATE_LIMIT


@pytest.mark.parametrize("member", ["meta", "g.shapes", "g.images", "g.masks"])
def test_an_npy_header_declaring_a_huge_array_is_refused_without_allocating_it(tmp_path, member):
    """A header declaring 2**40 bytes over 16 bytes of data: np.load allocated the header's
    size up front (a MemoryError, or a terabyte of address space)."""
    dtype = "<i4" if member.endswith("shapes") else "|u1"
    shape = (2**38, 2) if member.endswith("shapes") else (2**40,)
    lying = _with_members(_tiny_pack(tmp_path / "p.npz"), tmp_path / "lying.npz",
                          **{member.replace(".", "_"): npy_header(shape, dtype) + bytes(16)})
    err, peak = _refused(lambda: pack_items(lying, "g"))
    assert f"member {member}.npy holds shape {shape}" in str(err)
    assert peak < INFLATE_LIMIT


def test_a_member_whose_zip_size_and_npy_header_disagree_is_refused(tmp_path):
    """np.load read the header's count and ignored the rest: bytes beyond it, or a zip
    entry declaring gigabytes, passed silently."""
    pack = _tiny_pack(tmp_path / "p.npz")
    trailing = _with_members(pack, tmp_path / "trailing.npz",
                             g_shapes=npy(np.array([[4, 4]], np.int32)) + bytes(100))
    with pytest.raises(DatasetError, match=r"damaged \(member g.shapes.npy: its .npy header declares 136 bytes, the zip 236\)"):
        pack_items(trailing, "g")
    declared = patch_entry(write_zip(tmp_path / "declared.npz", members(pack)), "meta.npy", file_size=0xFFFFFF00)
    with pytest.raises(DatasetError, match=r"not a pack \(.+\): .+declared.npz: member meta.npy declares 4294967040 bytes"):
        Pack(declared)


@pytest.mark.parametrize(("change", "words"), [({"flag_bits": 1}, "encrypted"), ({"method": 9}, "not supported")])
@pytest.mark.parametrize("member", ["meta", "g.images"])
def test_an_encrypted_or_unknown_compression_member_is_a_dataset_error(tmp_path, member, change, words):
    """zipfile's RuntimeError and NotImplementedError escaped as tracebacks."""
    odd = patch_entry(write_zip(tmp_path / "odd.npz", members(_tiny_pack(tmp_path / "p.npz"))),
                      f"{member}.npy", **change)
    with pytest.raises(DatasetError, match=rf"member {member}.npy cannot be read \(.*{words}"):
        pack_items(odd, "g")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_a_refused_pack_leaves_no_file_open(tmp_path):
    """A pack of another format left its zip open as long as the error lived."""
    def change(name, data):
        if name != "meta.npy":
            return data
        meta = json.loads(bytes(np.load(io.BytesIO(data))).decode())
        return npy(np.frombuffer(json.dumps({**meta, "format": 99}).encode(), np.uint8))

    pack = _tiny_pack(tmp_path / "p.npz")
    other = _rewritten(pack, tmp_path / "other.npz", change)
    bomb = patch_entry(write_zip(tmp_path / "bomb.npz", members(pack)), "meta.npy", file_size=0xFFFFFF00)
    before, errors = len(os.listdir("/proc/self/fd")), []
    for path in [other, bomb] * 20:
        try:
            Pack(path)
        except DatasetError as exc:
            errors.append(exc)  # as a program collecting them would: their frames live on
    assert len(os.listdir("/proc/self/fd")) == before
    assert len(errors) == 40 and "pack format 99" in str(errors[0])


def test_a_pack_is_a_context_manager_that_closes_its_file(pack):
    with Pack(pack) as opened:
        assert opened.groups == ["nudt_train", "nudt_test", "sirst_crops"]
        assert opened._zip.fp is not None
    assert opened._zip.fp is None


def _hard_file(path, places):
    from irstd_ros.data.mixture import HARD_FORMAT

    path.write_text(json.dumps({"format": HARD_FORMAT, "frames": {
        stem: {"false": [[y, x, 0.9] for y, x in pts], "miss": [[1, 1, 0.1]]} for stem, pts in places.items()}}))
    return path


def test_hard_crops_hold_each_mined_false_place_and_its_mask():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[30:32, 40:42] = True
    small = rng.integers(0, 256, (20, 20), dtype=np.uint8)  # reflect-padded to the crop
    items = [(img, mask, "a"), (small, np.zeros((20, 20), bool), "b")]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        hard = _hard_file(Path(d) / "h.json", {"a": [(5, 7), (31, 41)], "b": [(19, 2)], "other": [(0, 0)]})
        crops = hard_crops(items, [hard], crop=CROP, seed=3)
    assert [n for _, _, n in crops] == ["a@0", "a@1", "b@2"]  # misses (hard_misses false) left out
    for (ci, cm, _), (y, x), src in zip(crops, [(5, 7), (31, 41), (19, 2)], [img, img, small]):
        assert ci.shape == cm.shape == (CROP, CROP) and cm.dtype == bool
        patch = src[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]  # the place with its neighbours
        found = np.lib.stride_tricks.sliding_window_view(ci, patch.shape)
        assert (found == patch).all(axis=(2, 3)).any()  # lies in the crop
    assert crops[1][1].sum() == 4  # the true target beside the second place stays labelled


def test_cli_hard_writes_the_sirst_hard_group(tmp_path, roots, capsys):
    frames = folder_items(roots["sirst"], "train")
    stem = frames[0][2]
    hard = _hard_file(tmp_path / "h.json", {stem: [(3, 4), (10, 12)]})
    out = tmp_path / "hard.npz"
    assert main(["pack", "--out", str(out), "--no-nudt", "--sirst", str(roots["sirst"]), "--crop", str(CROP),
                 "--hard", str(hard)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["groups"]["sirst_hard"]["count"] == 2
    with Pack(out) as p:
        assert [n for _, _, n in p.items("sirst_hard")] == [f"{stem}@0", f"{stem}@1"]
    # a file that is not a mining report, and --hard without SIRST-v2: one line each
    (tmp_path / "bad.json").write_text("{}")
    code, err = run_cli(capsys, "pack", "--out", str(out), "--no-nudt", "--sirst", str(roots["sirst"]), "--hard",
                        str(tmp_path / "bad.json"))
    assert code == 2 and "is not a hard-example file" in one_error_line(err)
    code, err = run_cli(capsys, "pack", "--out", str(out), "--nudt", str(roots["nudt"]), "--no-sirst", "--hard",
                        str(hard))
    assert code == 2 and "give --sirst with them" in one_error_line(err)


def test_sirst_frames_are_packed_whole_and_no_crops_group_when_none_is_asked(tmp_path, roots):
    out = tmp_path / "frames.npz"
    summary = build_pack(PackConfig(out=out, nudt=None, sirst=roots["sirst"], crop=CROP, target_crops=0,
                                    random_crops=0, sirst_frames=True))
    assert set(summary["groups"]) == {"sirst_train"}
    frames = folder_items(roots["sirst"], "train")
    with Pack(out) as p:
        packed = p.items("sirst_train")
    assert [n for _, _, n in packed] == [n for _, _, n in frames]
    assert all(np.array_equal(a, b) and np.array_equal(am, bm) for (a, am, _), (b, bm, _) in zip(packed, frames))
    with pytest.raises(ConfigError, match="give --sirst with them"):
        build_pack(PackConfig(out=out, nudt=roots["nudt"], sirst=None, sirst_frames=True))


def test_sirst_without_anything_to_take_from_it_says_so(tmp_path, roots):
    with pytest.raises(DatasetError, match=r"no SIRST-v2 crops asked for \(--target-crops 0 --random-crops 0\)"):
        build_pack(PackConfig(out=tmp_path / "x.npz", nudt=None, sirst=roots["sirst"], target_crops=0, random_crops=0))


def test_cli_mask_suffix_reads_masks_of_a_suffix(tmp_path, roots, capsys):
    """`irstd pack` had no --mask-suffix: a copy with `_pixels0` masks was '... samples lack an image or mask'."""
    import shutil

    nudt = Path(shutil.copytree(roots["nudt"], tmp_path / "nudt"))
    for mask in (nudt / "masks").iterdir():
        mask.rename(mask.with_name(f"{mask.stem}_pixels0{mask.suffix}"))
    out = tmp_path / "p.npz"
    code, err = run_cli(capsys, "pack", "--out", str(out), "--nudt", str(nudt), "--no-sirst", "--mask-suffix", "_pixels0")
    assert code == 0, err
    assert [(i[0].tobytes(), i[1].tobytes(), i[2]) for i in Pack(out).items("nudt_test")] == [
        (i[0].tobytes(), i[1].tobytes(), i[2]) for i in folder_items(roots["nudt"], "test")]
    code, err = run_cli(capsys, "pack", "--out", str(out), "--nudt", str(nudt), "--no-sirst")
    assert code == 2 and "lack an image or mask" in one_error_line(err)


def _renamed_masks(root: Path, to: Path, suffix: str) -> Path:
    """A copy of the dataset ``root`` at ``to`` whose masks are named ``<stem><suffix>``."""
    import shutil

    shutil.copytree(root, to)
    for mask in (to / "masks").iterdir():
        mask.rename(mask.with_name(f"{mask.stem}{suffix}{mask.suffix}"))
    return to


def _reference_pack(roots, tmp_path) -> Path:
    """The pack of the datasets as made (masks without a suffix), with the crops of the CLI tests."""
    out = tmp_path / "reference.npz"
    build_pack(PackConfig(out=out, nudt=roots["nudt"], sirst=roots["sirst"], crop=CROP))
    return out


def test_cli_mask_suffix_per_dataset(tmp_path, roots, capsys):
    """One --mask-suffix was used for both datasets: a NUDT-SIRST copy with `_pixels0` masks
    beside a SIRST-v2 one with plain (or `_mask`) ones could not be packed."""
    nudt = _renamed_masks(roots["nudt"], tmp_path / "nudt", "_pixels0")
    sirst = _renamed_masks(roots["sirst"], tmp_path / "sirst", "_mask")
    out = tmp_path / "p.npz"
    base = ["pack", "--out", str(out), "--nudt", str(nudt), "--sirst", str(sirst), "--crop", str(CROP)]
    code, err = run_cli(capsys, *base, "--mask-suffix", "nudt=_pixels0", "--mask-suffix", "sirst=_mask")
    assert code == 0, err
    with Pack(out) as p, Pack(_reference_pack(roots, tmp_path)) as reference:
        for group in ("nudt_test", "sirst_crops"):
            assert [(i[0].tobytes(), i[1].tobytes(), i[2]) for i in p.items(group)] == [
                (i[0].tobytes(), i[1].tobytes(), i[2]) for i in reference.items(group)]
    # SUFFIX for every dataset, NAME=SUFFIX over it for one
    code, err = run_cli(capsys, *base, "--mask-suffix", "_pixels0", "--mask-suffix", "sirst=_mask")
    assert code == 0, err
    code, err = run_cli(capsys, *base, "--mask-suffix", "nudt=_pixels0")  # SIRST-v2's masks: not found
    assert code == 2 and "lack an image or mask" in one_error_line(err)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["other=_x"], "--mask-suffix 'other=_x': no dataset named 'other'; NAME is one of nudt, sirst"),
        (["=_x"], "no dataset named ''; NAME is one of nudt, sirst"),
        (["_a", "_b"], "--mask-suffix '_a' and '_b': give one suffix for every dataset"),
        (["nudt=_a", "nudt=_b"], "--mask-suffix nudt= given twice ('_a' and '_b')"),
    ],
)
def test_cli_mask_suffix_mistakes_are_one_line_and_write_nothing(tmp_path, roots, capsys, values, message):
    out = tmp_path / "p.npz"
    args = [a for v in values for a in ("--mask-suffix", v)]
    code, err = run_cli(capsys, "pack", "--out", str(out), "--nudt", str(roots["nudt"]), "--sirst", str(roots["sirst"]),
                        *args)
    assert code == 2 and message in one_error_line(err)
    assert not out.exists()


def test_cli_mask_suffix_of_a_dataset_left_out_is_refused(tmp_path, roots, capsys):
    out = tmp_path / "p.npz"
    code, err = run_cli(capsys, "pack", "--out", str(out), "--nudt", str(roots["nudt"]), "--no-sirst",
                        "--mask-suffix", "sirst=_mask")
    assert code == 2 and "--mask-suffix sirst=... with --no-sirst" in one_error_line(err)


def test_pack_config_mask_suffixes_of_unknown_datasets_are_refused(tmp_path, roots):
    with pytest.raises(ConfigError, match=r"unknown datasets \['nudt_test'\]; the datasets are nudt, sirst"):
        build_pack(PackConfig(out=tmp_path / "x.npz", nudt=roots["nudt"], sirst=None,
                              mask_suffixes={"nudt_test": "_x"}))
    assert not (tmp_path / "x.npz").exists()
