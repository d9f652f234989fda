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
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irstd_ros.core.paths import atomic_path
from irstd_ros.data.datasets import DatasetSpec, find_pairs
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.data.transforms import pad_to
from irstd_ros.errors import ConfigError, DatasetError

PACK_FORMAT = 1
FILTER = "gradient-mod256"
META_KEY = "meta"
DEFAULT_NUDT = Path("../shared/data/NUDT-SIRST")
DEFAULT_SIRST = Path("../shared/data/SIRST-v2")
DEFAULT_OUT = Path("out/pack/irstd_pack.npz")
NUDT_SPLITS = ("train", "test")
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


def folder_items(root: Path, split: str) -> list[Item]:
    """``(image, mask, name)`` of a split of a dataset folder, read as training reads them."""
    items = []
    for img_path, mask_path in find_pairs(DatasetSpec(Path(root), split)):
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


def build_pack(cfg: PackConfig) -> dict:
    """Read the datasets and write the pack; returns a summary (file, size, groups)."""
    if not 1 <= cfg.crop <= MAX_CROP or cfg.target_crops < 0 or cfg.random_crops < 0:
        raise ConfigError(f"crop must be in [1, {MAX_CROP}] and crop counts >= 0, got crop {cfg.crop}, "
                          f"{cfg.target_crops} target and {cfg.random_crops} random crops")
    splits = list(cfg.nudt_splits)
    if any(s not in NUDT_SPLITS for s in splits) or len(set(splits)) < len(splits) or (cfg.nudt and not splits):
        raise ConfigError(f"nudt_splits must be some of {', '.join(NUDT_SPLITS)}, got {splits}")
    if Path(cfg.out).is_dir():  # before reading the datasets
        raise DatasetError(f"{cfg.out} is a directory; give the pack's file path")
    groups: list[PackGroup] = []
    if cfg.nudt is not None:
        for split in cfg.nudt_splits:
            groups.append(PackGroup(f"nudt_{split}", folder_items(cfg.nudt, split),
                                    {"root": str(cfg.nudt), "split": split, "kind": "full frames"}))
    if cfg.sirst is not None:
        frames = folder_items(cfg.sirst, SIRST_SPLIT)
        crops = crop_items(frames, cfg.crop, cfg.target_crops, cfg.random_crops, cfg.seed)
        groups.append(PackGroup("sirst_crops", crops, {
            "root": str(cfg.sirst), "split": SIRST_SPLIT, "frames": len(frames),
            "kind": f"{cfg.crop}x{cfg.crop} crops: <= {cfg.target_crops} with a target + "
                    f"{cfg.random_crops} random per frame, seed {cfg.seed}",
        }))
    if not groups:
        raise DatasetError("nothing to pack: give --nudt and/or --sirst")
    meta = write_pack(groups, cfg.out)
    size = Path(cfg.out).stat().st_size
    return {
        "pack": str(cfg.out),
        "bytes": size,
        "mib": round(size / 2**20, 2),
        "groups": {k: {"count": v["count"], "source": v["source"]} for k, v in meta["groups"].items()},
    }


# --- reading ----------------------------------------------------------------------------------
class Pack:
    """A pack opened for reading (arrays are decompressed lazily, per group)."""

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
            self._npz = np.load(self.path, allow_pickle=False)
        except (ValueError, zipfile.BadZipFile):
            raise DatasetError(f"not a pack ({NOT_A_PACK_HINT}): {self.path}") from None
        try:
            self.meta = json.loads(bytes(self._npz[META_KEY]).decode())
            if not isinstance(self.meta, dict):
                raise ValueError("meta is not a JSON object")
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error):
            self._npz.close()
            raise DatasetError(f"not a pack ({NOT_A_PACK_HINT}): {self.path}") from None
        if self.meta.get("format") != PACK_FORMAT or self.meta.get("filter") != FILTER:
            raise DatasetError(f"{self.path}: pack format {self.meta.get('format')} / filter "
                               f"{self.meta.get('filter')} not supported (expected {PACK_FORMAT} / {FILTER})")
        groups = self.meta.get("groups")
        if not (isinstance(groups, dict) and all(isinstance(g, dict) for g in groups.values())):
            self._npz.close()
            raise DatasetError(f"{self.path}: the pack's list of groups is missing or damaged; write the pack again")

    @property
    def groups(self) -> list[str]:
        return list(self.meta["groups"])

    def items(self, group: str) -> list[Item]:
        """``(uint8 image, bool mask, name)`` of a group, as :attr:`IRSTDDataset.items`."""
        if group not in self.meta["groups"]:
            raise DatasetError(f"{self.path} has no group {group!r}; it has: {', '.join(self.groups)}")
        try:
            names = self.meta["groups"][group]["names"]
            shapes = self._npz[f"{group}.shapes"]
            flat = self._npz[f"{group}.images"]
            bits = self._npz[f"{group}.masks"]
            pixels = np.prod(shapes.astype(np.int64), axis=1)
            if len(names) != len(shapes) or flat.size != pixels.sum() or bits.size != ((pixels + 7) // 8).sum():
                raise ValueError("its names, sizes, pixels and masks do not agree")
            out: list[Item] = []
            pos = mpos = 0
            for (h, w), name in zip(shapes.tolist(), names):
                n, nb = h * w, (h * w + 7) // 8
                img = gradient_unfilter(flat[pos : pos + n].reshape(h, w))
                mask = np.unpackbits(bits[mpos : mpos + nb], count=n).reshape(h, w).astype(bool)
                out.append((img, mask, name))
                pos, mpos = pos + n, mpos + nb
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetError(f"{self.path}: pack group {group!r} is damaged ({exc}); write the pack again") from None
        return out

    def close(self) -> None:
        self._npz.close()


def pack_items(path: str | Path, group: str) -> list[Item]:
    """The items of one group of the pack at ``path``."""
    pack = Pack(path)
    try:
        return pack.items(group)
    finally:
        pack.close()


def pack_dataset(path: str | Path, group: str, crop: int | None = None, train: bool = False,
                 seed: int = 0, norm=None):
    """An :class:`~irstd_ros.data.IRSTDDataset` over a pack group (the CPU data path)."""
    from irstd_ros.data.datasets import IRSTDDataset

    ds = IRSTDDataset([], crop=crop, train=train, seed=seed, norm=norm)
    ds.items = pack_items(path, group)
    return ds
