"""A compact data pack: datasets as one compressed uint8 ``.npz`` that travels with the repo.

``irstd pack`` writes NUDT-SIRST ``50_50`` train and test at full resolution, plus
``crop`` x ``crop`` crops of the SIRST-v2 development subset (``splits/train.txt``), into
one file (about 41 MiB with the defaults: NUDT-SIRST 26.5, SIRST-v2 crops 14; 20 MiB with
``nudt_splits`` ``("train",)`` and no random crops, what fits beside the repository in a
64 MiB device call). Training
(:mod:`irstd_ros.training.gpu`) reads a pack exactly as it reads folders:
:func:`pack_items` yields the same ``(image, mask, name)`` items as
:attr:`irstd_ros.data.IRSTDDataset.items` (uint8 image in its own units, bool mask).

Layout (every array uint8 or int32, no pickle; ``np.load(path)`` reads it):

* ``meta``: UTF-8 JSON bytes: format version, groups, names, sources, filter;
* per group ``G`` (``nudt_train``, ``nudt_test``, ``sirst_crops``...):
  ``G.shapes`` (N, 2) int32 (H, W); ``G.images``: every image's pixels, flat, after the
  *gradient filter* (residual of the ``left + up - upleft`` prediction modulo 256, the
  2-D analogue of PNG's filters: about 40 % smaller after deflate than raw pixels, and
  exactly inverted by two cumulative sums modulo 256); ``G.masks``: the masks,
  ``np.packbits`` of each flattened mask, concatenated.

Only 8-bit frames are packed (both datasets are 8-bit); any other dtype is refused.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import psutil

from irstd_ros.core.paths import atomic_path
from irstd_ros.data.datasets import DatasetSpec, find_pairs
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.data.transforms import pad_to, point_crop
from irstd_ros.errors import ConfigError, DatasetError

PACK_FORMAT = 1
FILTER = "gradient-mod256"
META_KEY = "meta"
DEFAULT_NUDT = Path("../shared/data/NUDT-SIRST")
DEFAULT_SIRST = Path("../shared/data/SIRST-v2")
DEFAULT_OUT = Path("out/pack/irstd_pack.npz")
NUDT_SPLITS = ("train", "test")
DATASETS = ("nudt", "sirst")  # what a pack reads, by the names of its groups (and of --mask-suffix NAME=)
SIRST_SPLIT = "train"
CROP = 256
# the largest crop side: the crops are training windows (the network trains at 256), and each
# is held in memory until the pack is written (a 100000 px crop asked 10 GB per frame)
MAX_CROP = 2048
TARGET_CROPS = 1  # crops per SIRST-v2 frame that contain a target (one per component, at most)
RANDOM_CROPS = 1  # plus uniformly random crops per frame (two for background-only frames)
ZIP_LEVEL = 9
NOT_A_PACK_HINT = "expected an .npz written by irstd pack"

Item = tuple[np.ndarray, np.ndarray, str]  # (uint8 image, bool mask, name)


# --- the filter -------------------------------------------------------------------------------
def gradient_filter(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> residual of the ``left + up - upleft`` predictor, modulo 256."""
    x = img.astype(np.int16)
    d = np.diff(np.diff(x, axis=1, prepend=0), axis=0, prepend=0)
    return d.astype(np.uint8)  # wraps modulo 256


def gradient_unfilter(res: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gradient_filter` (two cumulative sums modulo 256)."""
    return np.cumsum(np.cumsum(res, axis=0, dtype=np.uint8), axis=1, dtype=np.uint8)


# --- building ---------------------------------------------------------------------------------
@dataclass
class PackGroup:
    """Items of one group, with where they came from."""

    name: str
    items: list[Item] = field(default_factory=list)
    source: dict = field(default_factory=dict)


def _check_uint8(img: np.ndarray, name: str) -> np.ndarray:
    if img.dtype != np.uint8:
        raise DatasetError(f"{name}: only 8-bit frames can be packed, got {img.dtype}")
    return img


def folder_items(root: Path, split: str, mask_suffix: str = "") -> list[Item]:
    """``(image, mask, name)`` of a split of a dataset folder, read as training reads them
    (``mask_suffix``: a mask is named ``<image stem><mask_suffix>``)."""
    items = []
    for img_path, mask_path in find_pairs(DatasetSpec(Path(root), split, mask_suffix)):
        img, mask = read_image(img_path), read_mask(mask_path)
        if img.shape != mask.shape:
            raise DatasetError(f"size mismatch: {img_path.name} {img.shape} vs mask {mask.shape}")
        items.append((_check_uint8(img, img_path.name), mask, img_path.stem))
    return items


def crop_items(
    items: Iterable[Item],
    crop: int = CROP,
    target_crops: int = TARGET_CROPS,
    random_crops: int = RANDOM_CROPS,
    seed: int = 0,
) -> list[Item]:
    """Fixed, seeded crops of each item: up to ``target_crops`` holding a target (each
    around a different target component when there are several), plus ``random_crops``
    uniformly placed ones (``random_crops + target_crops`` for frames without targets).
    Frames smaller than ``crop`` are reflect-padded first, as training pads them. A crop
    keeps the whole mask under its window. Names: ``<stem>#<k>``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out: list[Item] = []
    for img, mask, name in items:
        img, mask = pad_to(img, mask, crop)
        h, w = img.shape
        windows: list[tuple[int, int]] = []
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        for comp in rng.permutation(n)[:target_crops]:
            ys, xs = np.nonzero(labels == comp + 1)
            i = int(rng.integers(ys.size))
            windows.append((int(np.clip(ys[i] - rng.integers(0, crop), 0, h - crop)),
                            int(np.clip(xs[i] - rng.integers(0, crop), 0, w - crop))))
        for _ in range(random_crops + (0 if n else target_crops)):
            windows.append((int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))))
        for k, (y, x) in enumerate(windows):
            out.append((np.ascontiguousarray(img[y : y + crop, x : x + crop]),
                        np.ascontiguousarray(mask[y : y + crop, x : x + crop]).astype(bool), f"{name}#{k}"))
    return out


def hard_crops(items: Sequence[Item], hard: Sequence[Path], crop: int = CROP, seed: int = 0) -> list[Item]:
    """One seeded crop per mined false-target place (``irstd mine`` files, the ``hard:`` of
    a CPU training source) in ``items``, the place at a random spot of the crop, with the
    mask under it (a true target nearby stays labelled). Names: ``<stem>@<k>``."""
    from irstd_ros.data.mixture import load_hard_examples

    rng = np.random.default_rng(seed)
    out: list[Item] = []
    for k, (i, y, x) in enumerate(load_hard_examples(tuple(hard), items, misses=False)):
        img, mask, name = items[i]
        ci, cm = point_crop(img, mask, crop, rng, y, x)
        out.append((np.ascontiguousarray(ci), np.ascontiguousarray(cm).astype(bool), f"{name}@{k}"))
    return out


def write_pack(groups: Sequence[PackGroup], out: Path) -> dict:
    """Write ``groups`` into one ``.npz`` (deflate level 9); returns the meta written.
    The file appears whole or not at all (:func:`~irstd_ros.core.paths.atomic_path`)."""
    out = Path(out)
    if out.is_dir():
        raise DatasetError(f"{out} is a directory; give the pack's file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        return _write_zip(groups, tmp)


def _write_zip(groups: Sequence[PackGroup], tmp: Path) -> dict:
    meta: dict = {"format": PACK_FORMAT, "filter": FILTER, "groups": {}}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
        for group in groups:
            if not group.items:
                raise DatasetError(f"pack group {group.name!r} is empty")
            shapes = np.array([img.shape for img, _, _ in group.items], dtype=np.int32)
            images = np.concatenate([gradient_filter(_check_uint8(img, n)).ravel() for img, _, n in group.items])
            masks = np.concatenate([np.packbits(m.astype(bool).ravel()) for _, m, _ in group.items])
            for key, arr in (("shapes", shapes), ("images", images), ("masks", masks)):
                _write_array(zf, f"{group.name}.{key}", arr)
            meta["groups"][group.name] = {
                "count": len(group.items),
                "names": [n for _, _, n in group.items],
                "pixels": int(shapes.prod(axis=1).sum()),
                "targets_px": int(sum(int(m.sum()) for _, m, _ in group.items)),
                "source": group.source,
            }
        _write_array(zf, META_KEY, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return meta


def _write_array(zf: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
    with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


@dataclass
class PackConfig:
    """What ``irstd pack`` writes (``None`` root: that dataset is left out)."""

    out: Path = DEFAULT_OUT
    nudt: Path | None = DEFAULT_NUDT
    sirst: Path | None = DEFAULT_SIRST
    crop: int = CROP
    target_crops: int = TARGET_CROPS
    random_crops: int = RANDOM_CROPS
    seed: int = 0
    nudt_splits: tuple[str, ...] = NUDT_SPLITS  # ("train",): a smaller pack, scored elsewhere
    hard: tuple[Path, ...] = ()  # mined files (irstd mine) of SIRST-v2 train: group sirst_hard
    sirst_frames: bool = False  # SIRST-v2 train whole as well: group sirst_train (irstd train's data)
    mask_suffix: str = ""  # of both datasets: a mask is named <image stem><mask_suffix>
    # of one dataset, by its name in DATASETS (NUDT-SIRST and SIRST-v2 copies may name masks
    # differently), in place of mask_suffix
    mask_suffixes: dict[str, str] = field(default_factory=dict)

    def suffix_of(self, dataset: str) -> str:
        """The mask suffix of ``dataset`` (a name of :data:`DATASETS`)."""
        return self.mask_suffixes.get(dataset, self.mask_suffix)


def build_pack(cfg: PackConfig) -> dict:
    """Read the datasets and write the pack; returns a summary (file, size, groups)."""
    if not 1 <= cfg.crop <= MAX_CROP or cfg.target_crops < 0 or cfg.random_crops < 0:
        raise ConfigError(f"crop must be in [1, {MAX_CROP}] and crop counts >= 0, got crop {cfg.crop}, "
                          f"{cfg.target_crops} target and {cfg.random_crops} random crops")
    splits = list(cfg.nudt_splits)
    if any(s not in NUDT_SPLITS for s in splits) or len(set(splits)) < len(splits) or (cfg.nudt and not splits):
        raise ConfigError(f"nudt_splits must be some of {', '.join(NUDT_SPLITS)}, got {splits}")
    unknown = sorted(set(cfg.mask_suffixes) - set(DATASETS))
    if unknown:
        raise ConfigError(f"mask suffixes of unknown datasets {unknown}; the datasets are {', '.join(DATASETS)}")
    if Path(cfg.out).is_dir():  # before reading the datasets
        raise DatasetError(f"{cfg.out} is a directory; give the pack's file path")
    groups: list[PackGroup] = []
    if cfg.nudt is not None:
        for split in cfg.nudt_splits:
            groups.append(PackGroup(f"nudt_{split}", folder_items(cfg.nudt, split, cfg.suffix_of("nudt")),
                                    {"root": str(cfg.nudt), "split": split, "kind": "full frames"}))
    if cfg.sirst is not None:
        frames = folder_items(cfg.sirst, SIRST_SPLIT, cfg.suffix_of("sirst"))
        if cfg.target_crops or cfg.random_crops:  # none asked for: no crops group
            crops = crop_items(frames, cfg.crop, cfg.target_crops, cfg.random_crops, cfg.seed)
            groups.append(PackGroup("sirst_crops", crops, {
                "root": str(cfg.sirst), "split": SIRST_SPLIT, "frames": len(frames),
                "kind": f"{cfg.crop}x{cfg.crop} crops: <= {cfg.target_crops} with a target + "
                        f"{cfg.random_crops} random per frame, seed {cfg.seed}",
            }))
        if cfg.sirst_frames:
            groups.append(PackGroup("sirst_train", frames, {
                "root": str(cfg.sirst), "split": SIRST_SPLIT, "kind": "full frames"}))
        if cfg.hard:
            groups.append(PackGroup("sirst_hard", hard_crops(frames, cfg.hard, cfg.crop, cfg.seed), {
                "root": str(cfg.sirst), "split": SIRST_SPLIT, "hard": [str(h) for h in cfg.hard],
                "kind": f"{cfg.crop}x{cfg.crop} crops, one per mined false-target place, seed {cfg.seed}",
            }))
    elif cfg.hard or cfg.sirst_frames:
        raise ConfigError("--hard and --sirst-frames are SIRST-v2 train frames: give --sirst with them")
    if not groups:
        raise DatasetError("nothing to pack: give --nudt and/or --sirst" if cfg.sirst is None else
                           "nothing to pack: no SIRST-v2 crops asked for (--target-crops 0 --random-crops 0), "
                           "nor --sirst-frames or --hard, and no --nudt")
    meta = write_pack(groups, cfg.out)
    size = Path(cfg.out).stat().st_size
    return {
        "pack": str(cfg.out),
        "bytes": size,
        "mib": round(size / 2**20, 2),
        "groups": {k: {"count": v["count"], "source": v["source"]} for k, v in meta["groups"].items()},
    }


# --- reading ----------------------------------------------------------------------------------
# Every member is checked before it is decompressed: a zip's declared sizes and an .npy
# header's shape are the file's word, and a member of a few KiB of deflate can declare
# (and be) gigabytes of zeros, a zip bomb. The meta holds the names (about 20 bytes each:
# 64 MiB is millions of frames); the other members' shapes follow from the meta and the
# shapes; a group's pixels must fit in the memory available (psutil) before they are read.
MAX_META_BYTES = 64 * 2**20
MAX_NPY_HEADER = 65536 + 12  # an .npy 2.0 header at most; 1.0: 65535 + 10
BYTES_PER_PIXEL = 3.2  # to read a group: its stream, the unfiltered images, the masks (bits, bools)


def available_memory() -> int:
    """Bytes of memory this process can get without swapping: the machine's (psutil's
    ``available``), and no more than a container's memory limit leaves
    (:func:`~irstd_ros.inference.resources.cgroup_memory_headroom`), past which the kernel
    kills the process instead of refusing it."""
    from irstd_ros.inference.resources import cgroup_memory_headroom

    free = int(psutil.virtual_memory().available)
    room = cgroup_memory_headroom()
    return free if room is None else min(free, room)


class _BadMember(ValueError):
    """A member of the zip that is missing, of another dtype or shape than the pack's
    layout, or whose sizes disagree; the message names the member."""


class Pack:
    """A pack opened for reading (arrays are decompressed lazily, per group, each after
    its declared sizes are checked against the pack's layout and each other)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise DatasetError(f"{self.path} is a directory, not a pack ({NOT_A_PACK_HINT})")
        if not self.path.is_file():
            raise DatasetError(f"pack not found: {self.path}")
        # an .npz is a zip: anything else would reach np.load's pickle or .npy readers
        if not zipfile.is_zipfile(self.path):
            raise DatasetError(f"not a pack ({NOT_A_PACK_HINT}): {self.path}")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, ValueError, zipfile.BadZipFile):
            raise DatasetError(f"not a pack ({NOT_A_PACK_HINT}): {self.path}") from None
        try:
            self.meta = self._read_meta()
        except BaseException:
            self._zip.close()  # no handle left open by a file that is no pack
            raise

    def _read_meta(self) -> dict:
        not_a_pack = f"not a pack ({NOT_A_PACK_HINT}): {self.path}"
        if f"{META_KEY}.npy" not in self._zip.namelist():  # another .npz, another zip
            raise DatasetError(not_a_pack)
        try:
            meta = json.loads(bytes(self._array(META_KEY, np.uint8, limit=MAX_META_BYTES)).decode())
            if not isinstance(meta, dict):
                raise ValueError("meta is not a JSON object")
        except _BadMember as exc:  # a bomb, a lying header: said, naming the member
            raise DatasetError(f"{not_a_pack}: {exc}") from None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error):
            raise DatasetError(not_a_pack) from None
        if meta.get("format") != PACK_FORMAT or meta.get("filter") != FILTER:
            raise DatasetError(f"{self.path}: pack format {meta.get('format')} / filter "
                               f"{meta.get('filter')} not supported (expected {PACK_FORMAT} / {FILTER})")
        groups = meta.get("groups")
        if not (isinstance(groups, dict) and all(isinstance(g, dict) for g in groups.values())):
            raise DatasetError(f"{self.path}: the pack's list of groups is missing or damaged; write the pack again")
        return meta

    def _array(
        self, key: str, dtype: type, shape: tuple[int, ...] | None = None, limit: int = 0
    ) -> np.ndarray:
        """The array of member ``<key>.npy``, decompressed only once its ``.npy`` header says
        ``dtype`` and ``shape`` (None: one dimension of at most ``limit`` elements) and the
        zip declares exactly the header's size plus the array's bytes (:class:`_BadMember`
        otherwise). Read-only."""
        name = f"{key}.npy"
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise _BadMember(f"member {name} is missing") from None
        most = limit if shape is None else math.prod(shape)
        if info.file_size > MAX_NPY_HEADER + most * np.dtype(dtype).itemsize:  # before inflating a byte
            raise _BadMember(f"member {name} declares {info.file_size} bytes uncompressed, more than "
                             f"the {most} {np.dtype(dtype).name} values (plus header) it can hold")
        try:
            f = self._zip.open(info)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile) as exc:  # encrypted, an unknown compression
            raise _BadMember(f"member {name} cannot be read ({exc})") from None
        with f:
            try:
                data, got_shape, got_dtype, fortran = self._checked_read(f, info, dtype, shape, limit)
            except _BadMember:
                raise
            except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
                raise _BadMember(f"member {name}: {exc}") from None
        arr: np.ndarray = np.frombuffer(data, dtype=got_dtype).astype(dtype, copy=False)  # native order
        return arr.reshape(got_shape[::-1]).T if fortran else arr.reshape(got_shape)

    @staticmethod
    def _checked_read(
        f: IO[bytes], info: zipfile.ZipInfo, dtype: type, shape: tuple[int, ...] | None, limit: int
    ) -> tuple[bytes, tuple[int, ...], np.dtype, bool]:
        """:meth:`_array`'s reading of the open member ``f``: the data, shape, dtype and
        order once its header and sizes are checked."""
        name = info.filename
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _BadMember(f"member {name}: .npy format {version} is not a pack's (1.0 or 2.0)")
        want = np.dtype(dtype)
        if (got_dtype.kind, got_dtype.itemsize) != (want.kind, want.itemsize) or len(got_shape) != (
            1 if shape is None else len(shape)
        ):
            raise _BadMember(f"member {name} holds {got_dtype} of shape {got_shape}, expected "
                             f"{want} of shape {shape or '(n,)'}")
        if (got_shape[0] > limit) if shape is None else (tuple(got_shape) != shape):
            expected = f"at most {limit} values" if shape is None else f"shape {shape}"
            raise _BadMember(f"member {name} holds shape {got_shape}, expected {expected}")
        nbytes = math.prod(got_shape) * got_dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise _BadMember(f"member {name}: its .npy header declares {f.tell() + nbytes} bytes, "
                             f"the zip {info.file_size}")
        data = f.read(nbytes)  # the zip's CRC is checked on reaching its declared end
        if len(data) != nbytes:
            raise _BadMember(f"member {name} is cut short ({len(data)} of {nbytes} bytes)")
        return data, tuple(got_shape), got_dtype, bool(fortran)

    @property
    def groups(self) -> list[str]:
        return list(self.meta["groups"])

    def items(self, group: str) -> list[Item]:
        """``(uint8 image, bool mask, name)`` of a group, as :attr:`IRSTDDataset.items`."""
        if group not in self.meta["groups"]:
            raise DatasetError(f"{self.path} has no group {group!r}; it has: {', '.join(self.groups)}")
        try:
            names = self.meta["groups"][group]["names"]
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise ValueError("its names are not a list of names")
            shapes = self._array(f"{group}.shapes", np.int32, (len(names), 2)).tolist()
            if any(h <= 0 or w <= 0 for h, w in shapes):
                raise ValueError("it declares an image of no pixels (a side of 0 or less)")
            pixels = [h * w for h, w in shapes]
            total, bits_total = sum(pixels), sum((n + 7) // 8 for n in pixels)
            self._check_memory(group, total)
            flat = self._array(f"{group}.images", np.uint8, (total,))
            bits = self._array(f"{group}.masks", np.uint8, (bits_total,))
            out: list[Item] = []
            pos = mpos = 0
            for (h, w), name in zip(shapes, names):
                n, nb = h * w, (h * w + 7) // 8
                img = gradient_unfilter(flat[pos : pos + n].reshape(h, w))
                mask = np.unpackbits(bits[mpos : mpos + nb], count=n).reshape(h, w).astype(bool)
                out.append((img, mask, name))
                pos, mpos = pos + n, mpos + nb
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetError(f"{self.path}: pack group {group!r} is damaged ({exc}); write the pack again") from None
        return out

    def _check_memory(self, group: str, pixels: int) -> None:
        """A :class:`DatasetError` unless the ``pixels`` of ``group`` can be read into the
        memory available now (its member ``<group>.images.npy`` declares that many bytes)."""
        need, free = int(pixels * BYTES_PER_PIXEL), available_memory()
        if need > free:
            raise DatasetError(
                f"{self.path}: pack group {group!r} declares {pixels} pixels (members {group}.shapes.npy, "
                f"{group}.images.npy), "
                f"about {need / 2**30:.2f} GiB to read, more than the {free / 2**30:.2f} GiB of memory "
                "available; a damaged or hostile pack, or one for a larger machine"
            )

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Pack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pack_items(path: str | Path, group: str) -> list[Item]:
    """The items of one group of the pack at ``path``."""
    with Pack(path) as pack:
        return pack.items(group)


def pack_dataset(path: str | Path, group: str, crop: int | None = None, train: bool = False,
                 seed: int = 0, norm=None):
    """An :class:`~irstd_ros.data.IRSTDDataset` over a pack group (the CPU data path)."""
    from irstd_ros.data.datasets import IRSTDDataset

    ds = IRSTDDataset([], crop=crop, train=train, seed=seed, norm=norm)
    ds.items = pack_items(path, group)
    return ds
