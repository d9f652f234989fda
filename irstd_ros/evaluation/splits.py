"""Held-out splits: the split lists a dataset's results are reported on.

NUDT-SIRST's authors report on ``test`` (``50_50/test.txt``), open-sirst-v2's on ``val``
(``splits/val.txt``; its ``trainval`` holds those frames too). Their frames must never
reach a training run: not as training frames, and not through hard examples mined there
(:mod:`irstd_ros.evaluation.mining`), whose places a training mixture crops around. The
training's own final evaluation takes them by default (``eval_split: auto``).
"""

from __future__ import annotations

from pathlib import Path

from irstd_ros.data import DatasetSpec, find_pairs
from irstd_ros.data.datasets import available_splits
from irstd_ros.errors import ConfigError

# by name: NUDT-SIRST's test, open-sirst-v2's val (in the order a held-out split is chosen)
HELD_OUT_SPLITS = ("test", "val")


def held_out_splits(root: Path) -> list[str]:
    """The :data:`HELD_OUT_SPLITS` that the dataset folder ``root`` has a split list of (in
    that order); none for a folder without lists (a user's own data), or a pack file."""
    there = set(available_splits(Path(root)))
    return [name for name in HELD_OUT_SPLITS if name in there]


def check_not_held_out(root: Path, split: str, mask_suffix: str = "", purpose: str = "hard examples mined there") -> None:
    """:class:`~irstd_ros.errors.ConfigError` when ``split`` of the dataset ``root`` is one
    of its held-out splits (:func:`held_out_splits`), or holds any frame of one (a
    ``trainval`` list, ``all`` of a folder with lists): ``purpose`` (what is made of the
    split) would train on the frames results are reported on."""
    root = Path(root)
    images = {image for image, _ in find_pairs(DatasetSpec(root, split, mask_suffix))}
    hint = ", e.g. 'train'" if "train" in available_splits(root) else ""
    rule = (f"{purpose} would train on the frames results are reported on; use a training split{hint} "
            f"(held out: {', '.join(repr(s) for s in HELD_OUT_SPLITS)} and every split sharing their frames)")
    for name in held_out_splits(root):
        if name == split:
            raise ConfigError(f"split {split!r} of {root} is held out: {rule}")
        shared = sorted(images & {image for image, _ in find_pairs(DatasetSpec(root, name, mask_suffix))})
        if shared:
            frames = f"{len(shared)} frame{'s' if len(shared) > 1 else ''}"
            raise ConfigError(f"split {split!r} of {root} holds {frames} of the held-out split "
                              f"{name!r} (first: {shared[0].stem}): {rule}")
