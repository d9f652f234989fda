"""Dataset discovery and loading.

Two layouts share one code path:

* NUDT-SIRST / BasicIRSTD / open-sirst-v2: ``root/images/*.png``,
  ``root/masks/*.png`` (same stem), split lists ``root/<split_dir>/<split>.txt``
  (``50_50``, ``img_idx`` or ``splits``), one stem per line, CRLF tolerated; a list in
  another folder of ``root`` by its path, e.g. SIRST-v1's ``idx_427/test``.
* Generic (users' own data): ``images/`` + ``masks/`` where a mask is named
  ``<stem><mask_suffix>.<ext>``; an optional split list, else every image (split
  ``all``: then every mask must have its image too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from irstd_ros.core.normalization import InputNorm, normalize
from irstd_ros.data.images import read_image, read_mask
from irstd_ros.data.transforms import augment, random_crop
from irstd_ros.errors import DatasetError

IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
SPLIT_DIRS = ("50_50", "img_idx", "splits", ".")
DATA_DIRS = ("images", "masks")  # not split folders
EVERY_IMAGE = ("all", "")  # split names of every image, where the folder has no such list


@dataclass(frozen=True)
class DatasetSpec:
    """Where the images, masks and split lists are."""

    root: Path
    split: str | None = "train"
    mask_suffix: str = ""
    split_dir: str | None = None  # None: search SPLIT_DIRS


def available_splits(root: Path, dirs: tuple[str | None, ...] = SPLIT_DIRS) -> list[str]:
    """The split lists (``<name>.txt``) in ``root``'s split folders, by name, sorted; with
    the default ``dirs``, also those of its other folders by their path, e.g. SIRST-v1's
    ``idx_427/test`` (a split name :class:`DatasetSpec` finds through ``.``)."""
    root = Path(root)
    names = {p.stem for d in dirs if d is not None and (root / d).is_dir() for p in (root / d).glob("*.txt")}
    if dirs == SPLIT_DIRS and root.is_dir():
        for folder in root.iterdir():
            if folder.name in SPLIT_DIRS or folder.name in DATA_DIRS or folder.name.startswith("."):
                continue
            if folder.is_dir():
                names.update(f"{folder.name}/{p.stem}" for p in folder.glob("*.txt"))
    return sorted(names)


def split_list(spec: DatasetSpec) -> Path | None:
    """The list file of ``spec``'s split; None: every image (split None, or ``all``/empty
    where the folder has no list of that name). A missing list is a :class:`DatasetError`
    naming the files tried and the splits there."""
    if spec.split is None:
        return None
    dirs = (spec.split_dir,) if spec.split_dir else SPLIT_DIRS
    candidates = [spec.root / d / f"{spec.split}.txt" for d in dirs]
    found = [p for p in candidates if p.is_file()]
    if not found:
        if spec.split_dir is None and spec.split in EVERY_IMAGE:
            return None
        tried = ", ".join(str(p) for p in candidates)
        there = available_splits(spec.root, dirs)
        listed = f"; the splits there: {', '.join(there)}" if there else ""
        raise DatasetError(
            f"split list {spec.split!r} not found (tried {tried}){listed}; split 'all' takes every image"
        )
    return found[0]


def _index(folder: Path) -> dict[str, Path]:
    """The image files of ``folder`` by stem; two files of one stem (``a.png`` and
    ``a.bmp``) are a :class:`DatasetError` naming both, rather than one being dropped."""
    if not folder.is_dir():
        raise DatasetError(f"folder not found: {folder}")
    index: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        if p.stem in index:
            raise DatasetError(
                f"{index[p.stem]} and {p} share the name {p.stem!r}: which one is meant is "
                "ambiguous; remove or rename one"
            )
        index[p.stem] = p
    return index


def _read_split(split: Path) -> list[str]:
    """The stems of a split list (UTF-8 text, one a line), with a :class:`DatasetError`
    naming the file when it is not text."""
    try:
        text = split.read_text(encoding="utf-8-sig")  # a byte-order mark is not a name
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"split list {split} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "expected one image name per line"
        ) from None
    lines = text.replace("\r", "").split("\n")
    return [ln.strip() for ln in lines if ln.strip()]


def _list_stems(split: Path) -> list[str]:
    """The image stems a split list names (an image extension in the list dropped); an
    empty list, or one naming an image twice, is a :class:`DatasetError`."""
    stems = _read_split(split)
    if not stems:
        raise DatasetError(f"split list {split} is empty")
    stems = [Path(s).stem if Path(s).suffix.lower() in IMAGE_EXTS else s for s in stems]
    repeated = sorted(n for n, k in Counter(stems).items() if k > 1)
    if repeated:  # each would count twice in every figure
        raise DatasetError(
            f"split list {split} names {len(repeated)} image(s) more than once "
            f"(first: {repeated[0]!r}); each image once"
        )
    return stems


def split_images(spec: DatasetSpec) -> list[Path]:
    """The image files of ``spec``'s split that ``images/`` holds, masks not consulted: the
    frames a list names (for comparing splits, :mod:`irstd_ros.evaluation.splits`, even
    when a list names frames this folder lacks); :func:`find_pairs` is the checked reading."""
    root = Path(spec.root)
    if not root.is_dir():  # as find_pairs says it
        raise DatasetError(f"dataset folder not found: {root}")
    images = _index(root / "images")
    split = split_list(DatasetSpec(root, spec.split, spec.mask_suffix, spec.split_dir))
    stems = list(images) if split is None else _list_stems(split)
    return [images[stem] for stem in stems if stem in images]


def _check_masks_have_images(root: Path, images: dict[str, Path], masks: dict[str, Path], suffix: str) -> None:
    """Every image without a list (split ``all``): a mask without its image is a
    :class:`DatasetError` (a frame renamed or deleted, images of another format), never
    silently left out of the figures."""
    orphans = [path for name, path in masks.items()
               if name.endswith(suffix) and name[: len(name) - len(suffix)] not in images]
    if orphans:
        first = ", ".join(p.name for p in orphans[:3])
        raise DatasetError(
            f"{len(orphans)} mask{'s' if len(orphans) > 1 else ''} in {root / 'masks'} "
            f"{'have' if len(orphans) > 1 else 'has'} no image in {root / 'images'} (first: {first}); "
            "without a split list every image is taken, and these masks' frames would be left out unsaid: "
            "add their images, remove the masks, or give a split list"
        )


def find_pairs(spec: DatasetSpec) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a split, with clear errors for anything missing: an image or
    mask of a listed frame, and without a list (every image) also a mask without an image."""
    root = Path(spec.root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    images = _index(root / "images")
    masks = _index(root / "masks")
    if not images:
        raise DatasetError(f"no images in {root / 'images'} (looked for {', '.join(IMAGE_EXTS)})")
    split = split_list(DatasetSpec(root, spec.split, spec.mask_suffix, spec.split_dir))
    if split is not None:
        stems = _list_stems(split)
    else:
        stems = list(images)
        _check_masks_have_images(root, images, masks, spec.mask_suffix)
    pairs, missing = [], []
    for stem in stems:
        img, msk = images.get(stem), masks.get(stem + spec.mask_suffix)
        if img is None or msk is None:
            missing.append(stem)
        else:
            pairs.append((img, msk))
    if missing:
        what = "image or mask" if spec.mask_suffix == "" else f"image or mask '*{spec.mask_suffix}'"
        raise DatasetError(
            f"{len(missing)} of {len(stems)} samples lack an {what} in {root} "
            f"(first: {missing[:3]})"
        )
    return pairs


def load_image(path: Path) -> np.ndarray:
    """A single-channel image in the file's own units (see :func:`read_image`)."""
    return read_image(path)


def load_mask(path: Path) -> np.ndarray:
    """A binary target mask as float32 {0, 1}."""
    return read_mask(path).astype(np.float32)


class IRSTDDataset(torch.utils.data.Dataset):
    """Image/mask pairs held in memory in their own units; items are normalised.

    ``norm`` turns each (cropped, augmented) frame into the network input, exactly as
    the detector does at run time. With ``train``: random crops, flips, 90-degree turns.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        crop: int | None = None,
        train: bool = False,
        seed: int = 0,
        norm: InputNorm | None = None,
    ) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray, str]] = []
        for img_path, mask_path in pairs:
            img, mask = load_image(img_path), read_mask(mask_path)
            if img.shape != mask.shape:
                raise DatasetError(
                    f"size mismatch: {img_path.name} is {img.shape}, its mask {mask.shape}"
                )
            self.items.append((img, mask, img_path.stem))
        self.crop, self.train = crop, train
        self.norm = norm or InputNorm(kind="robust")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask, _ = self.items[index]
        if self.train and self.crop:
            img, mask = random_crop(img, mask, self.crop, self.rng)
        x, m = normalize(img, self.norm), mask.astype(np.float32)
        if self.train:
            x, m = augment(x, m, self.rng)
        return torch.from_numpy(np.ascontiguousarray(x))[None], torch.from_numpy(np.ascontiguousarray(m))[None]

    def name(self, index: int) -> str:
        return self.items[index][2]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: each worker of an :class:`IRSTDDataset` draws its
    crops and flips from a stream of its own (seeded by the dataset's generator and the
    worker's id), not from a copy of the one every worker inherits, which would give
    worker k's batches the same crop windows and flips as worker 0's."""
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, IRSTDDataset):
        ds = info.dataset
        ds.rng = np.random.default_rng([int(ds.rng.integers(2**62)), worker_id])
