"""Held-out splits: the split lists a dataset's results are reported on.

NUDT-SIRST's authors report on ``test`` (``50_50/test.txt``), open-sirst-v2's on ``val``
(``splits/val.txt``; its ``trainval`` holds those frames too), BasicIRSTD's on
``test_<dataset>`` (``img_idx/test_NUDT-SIRST.txt``), SIRST-v1's on ``idx_427/test``: a
list is held out when its own name (the last part of its path) begins with ``test`` or
``val`` (:func:`is_held_out`). Only that name counts, not the folders above it (SIRST-v1's
``idx_427`` holds its training and held-out lists alike): a list ``val/list`` is not held
out by its name, while a training list named ``test_free`` is (rename it to mine or
calibrate on it).

Nothing made for training is drawn from their frames: hard examples mined there
(:mod:`irstd_ros.evaluation.mining`), whose places a training mixture crops around, and a
calibration fitted there (:mod:`irstd_ros.training.calibrate`) are refused
(:func:`check_not_held_out`). A training run itself may name a held-out split, or a
mixture source of one (it is not refused); its final evaluation, by default the held-out
list matching its training list (``eval_split: auto``, :func:`auto_held_out`), never
shares a frame with its training data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from irstd_ros.data import DatasetSpec
from irstd_ros.data.datasets import available_splits, split_images
from irstd_ros.errors import ConfigError

# how a held-out list's name begins: NUDT-SIRST's test, open-sirst-v2's val (in the order a
# held-out split is chosen)
HELD_OUT_SPLITS = ("test", "val")
# the words a list's name begins with, longest first; what follows them (``_NUDT-SIRST``)
# pairs a training list with its held-out one (train_X with test_X)
LIST_WORDS = ("trainval", "training", "train", "testing", "test", "validation", "val")


def _name(split: str) -> str:
    """The last part of a split's path, e.g. ``test`` of ``idx_427/test``."""
    return split.replace("\\", "/").rstrip("/").rpartition("/")[2]


def is_held_out(split: str | None) -> bool:
    """Whether ``split`` names a held-out list: its name (the last part of its path,
    without ``.txt``) begins with one of :data:`HELD_OUT_SPLITS`, in any case (``test``,
    ``test_NUDT-SIRST``, ``idx_427/test``, ``val``, ``Validation``)."""
    return split is not None and _name(split).casefold().startswith(HELD_OUT_SPLITS)


def held_out_splits(root: Path) -> list[str]:
    """The held-out lists (:func:`is_held_out`) the dataset folder ``root`` has, by name
    (:func:`~irstd_ros.data.datasets.available_splits`), those beginning with ``test``
    first; none for a folder without lists (a user's own data), or a pack file."""
    names = [name for name in available_splits(Path(root)) if is_held_out(name)]
    return sorted(names, key=lambda name: (not _name(name).casefold().startswith(HELD_OUT_SPLITS[0]), name))


def _pairing(split: str) -> tuple[str, str]:
    """(folder, what follows the list word) of a list name: ``("", "_nudt-sirst")`` of
    ``train_NUDT-SIRST`` and ``test_NUDT-SIRST``, ``("idx_427", "")`` of ``idx_427/test``;
    a name without a list word keeps its whole name (it pairs with no other)."""
    path = split.replace("\\", "/").rstrip("/")
    folder, _, name = path.rpartition("/")
    low = name.casefold()
    word = next((w for w in LIST_WORDS if low.startswith(w)), None)
    return folder, (low[len(word):].lstrip("_-. ") if word is not None else "\0" + low)


def matching_held_out(root: Path, split: str | None) -> list[str]:
    """The held-out lists of ``root`` that go with the training split ``split``, in order
    of preference: those whose name differs from it by the list word only (``test_X`` for
    ``train_X``, ``idx_427/test`` for ``idx_427/trainval``), else the plain ones of its
    folder (``test``, ``val`` for a list of another name, or ``all``)."""
    held_out = [name for name in held_out_splits(root) if name != split]
    folder, rest = _pairing(split or "")
    same = [name for name in held_out if _pairing(name) == (folder, rest)]
    return same or [name for name in held_out if _pairing(name) == (folder, "")]


def split_frames(root: Path, split: str | None) -> set[Path]:
    """The image files (resolved) that ``split`` of the dataset folder ``root`` names (every
    image for ``all`` of a folder without lists); masks not consulted."""
    return {path.resolve() for path in split_images(DatasetSpec(Path(root), split))}


def shared_frames(frames: Iterable[Path], root: Path, split: str | None) -> list[Path]:
    """The image files of ``frames`` (resolved paths) that ``split`` of ``root`` names too, sorted."""
    return sorted(set(frames) & split_frames(root, split))


def count_frames(n: int) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} frame{'s' if n != 1 else ''}"


def describe_shared(shared: list[Path]) -> str:
    """``2 frames (first: 000003)``."""
    return f"{count_frames(len(shared))} (first: {shared[0].stem})"


def auto_held_out(root: Path, split: str | None, trained: set[Path]) -> tuple[str | None, str]:
    """The held-out split of ``root`` a model trained on ``split`` (its frames: ``trained``,
    resolved image files) is scored on: the first of :func:`matching_held_out` sharing no
    frame with ``trained``; with why none is, when none is (no matching list, or each
    shares training frames)."""
    candidates = matching_held_out(root, split)
    if not candidates:
        there = held_out_splits(root)
        if not there:
            return None, f"{root} has no held-out list (a list named test* or val*)"
        if is_held_out(split):
            return None, f"the training split {split!r} is itself held out"
        return None, (f"none of the held-out lists of {root} ({', '.join(there)}) matches the training "
                      f"split {split!r} (test_X or val_X for train_X)")
    overlaps = []
    for name in candidates:
        shared = shared_frames(trained, root, name)
        if not shared:
            return name, ""
        overlaps.append(f"{name!r} shares {describe_shared(shared)} with the training data")
    return None, f"{'; '.join(overlaps)}: its metrics would be measured on frames the model trained on"


def check_not_held_out(root: Path, split: str, purpose: str = "hard examples mined there") -> None:
    """:class:`~irstd_ros.errors.ConfigError` when ``split`` of the dataset ``root`` is a
    held-out split (:func:`is_held_out`), or holds any frame of one of ``root``'s
    (:func:`held_out_splits`: a ``trainval`` list, ``all`` of a folder with lists):
    ``purpose`` (what is made of the split) would train on the frames results are reported on."""
    root = Path(root)
    images = split_frames(root, split)
    training = [name for name in available_splits(root) if _name(name).casefold().startswith("train")]
    hint = f", e.g. {'train' if 'train' in training else training[0]!r}" if training else ""
    rule = (f"{purpose} would train on the frames results are reported on; use a training split{hint} "
            f"(held out: lists named {', '.join(s + '*' for s in HELD_OUT_SPLITS)} and every split sharing their frames)")
    if is_held_out(split):
        raise ConfigError(f"split {split!r} of {root} is held out: {rule}")
    for name in held_out_splits(root):
        shared = shared_frames(images, root, name)
        if shared:
            raise ConfigError(f"split {split!r} of {root} holds {count_frames(len(shared))} of the held-out split "
                              f"{name!r} (first: {shared[0].stem}): {rule}")
