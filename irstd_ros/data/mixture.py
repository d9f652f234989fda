"""Training samples drawn from a mixture of datasets, with implanted targets and sensor
augmentation, normalised exactly as the detector normalises frames at run time.

One sample: pick a source by weight, an image of it, a crop (half of the time one
that holds a target; with ``hard_prob`` one centred on a mined hard example, see
:mod:`irstd_ros.evaluation.mining`) → sensor degradation (blur, FPN, noise) → implanted targets
(``implant_prob``), at SNRs relative to the crop's measured noise → real targets pasted
from a bank of labelled ones (``paste_prob``; :mod:`irstd_ros.data.paste`) → an encoding
(as is, 14-bit counts, 8-bit AGC, float at any gain) → :func:`normalize` → flips and
90-degree turns. Every sample is a pure function of (seed, epoch, index): runs resume
exactly and DataLoader workers need no shared state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from irstd_ros.core.fields import (
    FieldRule,
    Number,
    as_flag,
    as_optional_text,
    as_path,
    as_paths,
    as_text,
)
from irstd_ros.core.normalization import InputNorm, centred_wide, noise_sigma, normalize
from irstd_ros.core.parsing import dataclass_from_dict, path_tuple
from irstd_ros.data.datasets import DatasetSpec, IRSTDDataset, find_pairs
from irstd_ros.data.paste import BankTarget, PasteConfig, paste_targets, target_bank
from irstd_ros.data.transforms import augment, point_crop, random_crop, rescale, target_crop
from irstd_ros.errors import ConfigError
from irstd_ros.sim.implant import ImplantConfig, implant_targets
from irstd_ros.sim.sensor import SensorConfig, degrade, encode

TARGET_CROP_PROB = 0.5  # crops forced to contain a target (when the image has one)
GENERATOR_SCENES = ("sky", "sea", "ground")
GENERATOR_SIZE = (512, 640)
HARD_FORMAT = "irstd-hard-examples/1"  # written by irstd_ros.evaluation.mining

Item = tuple[np.ndarray, np.ndarray, str]


@dataclass(frozen=True)
class SourceSpec:
    """One dataset of the mixture: where, which split, how often, how often implanted;
    ``hard``: mined hard-example files (one or a list: successive mining rounds) whose
    places get ``hard_prob`` of the crops; ``hard_misses``: whether their missed targets
    count as places too, or only their false targets; ``paste_prob``: share of its samples
    that get real targets of the bank pasted in; ``bank``: whether its labelled targets
    join the bank; ``border_prob``: share of its samples not implanted otherwise that get
    targets on the crop's border only (``implant.border_fraction`` 1), so a source kept
    free of implants can still teach targets entering the view."""

    root: Path
    split: str | None = "train"
    weight: float = 1.0
    implant_prob: float = 0.3
    mask_suffix: str = ""
    hard: tuple[Path, ...] = ()
    hard_prob: float = 0.0
    hard_misses: bool = True
    # distillation teachers of this source's samples (training): None, the run's `teacher`;
    # an empty list, none
    teacher: tuple[Path, ...] | None = None
    paste_prob: float = 0.0
    bank: bool = False
    border_prob: float = 0.0

    def __post_init__(self) -> None:
        if bool(self.hard) != (self.hard_prob > 0):  # one without the other would do nothing
            raise ConfigError(
                f"data source {self.root}: hard (mined files, `irstd mine`) and hard_prob > 0 "
                f"(the share of its crops on their places) go together, got hard "
                f"{[str(h) for h in self.hard]} and hard_prob {self.hard_prob}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> SourceSpec:
        """A source of a YAML ``sources`` list: unknown keys, a missing ``root`` and values of
        the wrong type or range are one :class:`ConfigError` naming the key."""
        if "root" not in d:
            raise ConfigError(f"a data source needs a root (its dataset folder), got {d!r}")
        checked = {k: SOURCE_FIELDS[k](f"data source {k}", v) if k in SOURCE_FIELDS else v for k, v in d.items()}
        teacher = None if d.get("teacher") is None else path_tuple(checked["teacher"])
        return dataclass_from_dict(
            cls, {**checked, "hard": path_tuple(checked.get("hard")), "teacher": teacher}, "data source"
        )


SOURCE_FIELDS: dict[str, FieldRule] = {
    "root": as_path,
    "split": as_optional_text,
    "weight": Number(low=0),
    "implant_prob": Number(low=0, high=1),
    "mask_suffix": as_text,
    "hard": as_paths,
    "hard_prob": Number(low=0, high=1),
    "hard_misses": as_flag,
    "teacher": as_paths,
    "paste_prob": Number(low=0, high=1),
    "bank": as_flag,
    "border_prob": Number(low=0, high=1),
}


def is_pack(root: Path | str) -> bool:
    """Whether a source's ``root`` is a pack file (``irstd pack``, ``.npz``), not a dataset folder."""
    return Path(root).suffix.lower() == ".npz"


def source_items(spec: SourceSpec) -> list[Item]:
    """A source's frames: its dataset folder's split, or, when ``root`` is a pack file
    (``irstd pack``, ``.npz``), the pack group its ``split`` names: the same frames
    (uint8 images, bool masks, stems as names), for a machine the folders do not reach."""
    if is_pack(spec.root):
        from irstd_ros.data.pack import Pack

        if not spec.split:
            raise ConfigError(f"data source {spec.root} is a pack: its split names the group to read")
        with Pack(spec.root) as pack:  # a group it lacks: its own error, naming those it has
            return pack.items(spec.split)
    return IRSTDDataset(find_pairs(DatasetSpec(spec.root, spec.split, spec.mask_suffix))).items


@dataclass(frozen=True)
class Source:
    """A loaded source: its frames, mixture weight, implant share and hard places
    (item index, y, x)."""

    items: list[Item]
    weight: float
    implant_prob: float
    hard: tuple[tuple[int, float, float], ...] = ()
    hard_prob: float = 0.0
    teacher: tuple[Path, ...] | None = None  # None: the run's (the generator's always)
    paste_prob: float = 0.0
    border_prob: float = 0.0


def load_hard_examples(
    paths: Path | Sequence[Path], items: Sequence[Item], misses: bool = True
) -> tuple[tuple[int, float, float], ...]:
    """The places of mined hard-example files that fall in ``items`` (matched by stem): their
    false targets, and their missed targets unless ``misses`` is False."""
    paths = path_tuple(paths)
    index = {name: i for i, (_, _, name) in enumerate(items)}
    places: list[tuple[int, float, float]] = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read hard examples {path}: {exc}") from None
        if not isinstance(report, dict) or report.get("format") != HARD_FORMAT:
            raise ConfigError(f"{path} is not a hard-example file ({HARD_FORMAT}, from `irstd mine`)")
        try:
            for stem, entry in report.get("frames", {}).items():
                if stem not in index:
                    continue
                i = index[stem]
                height, width = items[i][0].shape[:2]
                for kind in ("false", "miss") if misses else ("false",):
                    for y, x, *_ in entry.get(kind, []):
                        if not (0 <= float(y) < height and 0 <= float(x) < width):  # NaN fails too
                            raise ConfigError(
                                f"{path}: {kind} place ({y}, {x}) of {stem!r} lies outside its "
                                f"{width}x{height} frame; mined from other frames? (`irstd mine` again)"
                            )
                        places.append((i, float(y), float(x)))
        except ConfigError:  # a ValueError too: its own message, not "damaged"
            raise
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}: damaged hard-example file ({exc}); expected frames of "
                "{stem: {\"false\": [[y, x, score], ...], \"miss\": [...]}}, as `irstd mine` writes"
            ) from None
    if not places:
        raise ConfigError(f"{', '.join(map(str, paths))}: no hard example in this source's frames")
    return tuple(places)


@dataclass(frozen=True)
class AugmentConfig:
    """Implantation and sensor augmentation of the training samples."""

    implant: ImplantConfig = field(default_factory=ImplantConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    sensor_prob: float = 0.7  # samples that get degrade + re-encoding at all
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range (log-uniform); < 1 shrinks targets
    scale_prob: float = 0.0  # samples that are zoomed at all
    paste: PasteConfig = field(default_factory=PasteConfig)

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi or not 0.0 <= self.scale_prob <= 1.0:
            raise ConfigError(f"scale needs 0 < low <= high and scale_prob in [0, 1], got {self.scale}, {self.scale_prob}")

    def crop_side(self, crop: int, rng: np.random.Generator) -> int:
        """The side of the source window that becomes a ``crop`` sample (``crop`` unless zoomed)."""
        if self.scale_prob <= 0 or rng.random() >= self.scale_prob:
            return crop
        lo, hi = self.scale
        zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        return max(round(crop / zoom), 8)


def generator_backgrounds(count: int, seed: int) -> list[Item]:
    """Target-free frames of the project's own generator (sky, sea, ground; 8 and 16 bit)."""
    from irstd_ros.sim.sequence import SequenceConfig, generate_sequence

    out = []
    for i in range(count):
        h, w = GENERATOR_SIZE
        cfg = SequenceConfig(
            width=w, height=h, frames=1, scene=GENERATOR_SCENES[i % len(GENERATOR_SCENES)],
            n_targets=0, enter_leave=False, bit_depth=(8, 16)[(i // 3) % 2], seed=seed + i,
        )
        frame = next(generate_sequence(cfg))
        out.append((frame.image, np.zeros(frame.image.shape, bool), f"generated-{cfg.scene}-{i}"))
    return out


class MixtureSamples(torch.utils.data.Dataset):
    """``samples_per_epoch`` augmented crops per epoch from weighted sources."""

    def __init__(
        self,
        sources: Sequence[Source],
        crop: int,
        samples_per_epoch: int,
        norm: InputNorm,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        bank: Sequence[BankTarget] = (),
    ) -> None:
        if not sources or any(not s.items for s in sources):
            raise ConfigError("every data source needs at least one image")
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        with np.errstate(over="ignore"):  # weights of 1e308: their sum overflows to inf
            total = weights.sum()
        if (weights < 0).any() or not 0 < total < np.inf:
            raise ConfigError(f"source weights must be >= 0 with a positive finite sum, got {weights.tolist()}")
        self.sources = list(sources)
        self.weights = weights / total
        self.crop, self.samples, self.norm, self.seed = crop, samples_per_epoch, norm, seed
        self.cfg = augment_cfg or AugmentConfig()
        self.border_implant = replace(self.cfg.implant, border_fraction=1.0)
        if not bank and any(s.paste_prob > 0 for s in self.sources):
            raise ConfigError(
                "paste_prob > 0 needs a bank of real targets: `bank: true` on a source whose "
                f"labelled targets include some of at most {self.cfg.paste.max_area} px with "
                "background round them (the bank is empty)"
            )
        self.bank = tuple(bank)
        self.epoch = 0

    @classmethod
    def from_specs(
        cls,
        specs: Sequence[SourceSpec],
        crop: int,
        samples_per_epoch: int,
        norm: InputNorm,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        generator: tuple[int, float, float] = (0, 0.0, 1.0),
        generator_paste: float = 0.0,
    ) -> MixtureSamples:
        """Load each source's split; ``generator`` = (frames, weight, implant_prob); the
        bank gathers the targets of the sources marked ``bank``."""
        sources = []
        bank: list[BankTarget] = []
        max_area = (augment_cfg or AugmentConfig()).paste.max_area
        for spec in specs:
            items = source_items(spec)
            hard = load_hard_examples(spec.hard, items, spec.hard_misses) if spec.hard else ()
            sources.append(
                Source(
                    items, spec.weight, spec.implant_prob, hard, spec.hard_prob, spec.teacher, spec.paste_prob,
                    spec.border_prob,
                )
            )
            if spec.bank:
                bank.extend(target_bank(items, max_area))
        frames, weight, implant_prob = generator
        if frames > 0 and weight > 0:
            sources.append(
                Source(generator_backgrounds(frames, seed), weight, implant_prob, paste_prob=generator_paste)
            )
        return cls(sources, crop, samples_per_epoch, norm, augment_cfg, seed, bank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(normalised float32 crop, bool mask) of one sample."""
        y, m, _ = self._draw(index)
        return y, m

    def _draw(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """One sample and the index (in ``sources``) of the source it was drawn from."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        which = int(rng.choice(len(self.sources), p=self.weights))
        source = self.sources[which]
        side = self.cfg.crop_side(self.crop, rng)
        if source.hard and rng.random() < source.hard_prob:
            i, hy, hx = source.hard[int(rng.integers(len(source.hard)))]
            raw, mask, _ = source.items[i]
            raw, mask = point_crop(raw, mask, side, rng, hy, hx)
        else:
            raw, mask, _ = source.items[int(rng.integers(len(source.items)))]
            crop = target_crop if rng.random() < TARGET_CROP_PROB else random_crop
            raw, mask = crop(raw, mask, side, rng)
        implant_prob = source.implant_prob
        raw = centred_wide(raw)
        native = raw.dtype
        x = raw.astype(np.float32)
        if side != self.crop:
            x, mask = rescale(x, mask, self.crop)
            sigma = noise_sigma(x)
        else:
            sigma = noise_sigma(raw)
        sensor = rng.random() < self.cfg.sensor_prob
        if sensor:
            x = degrade(x, rng, sigma, self.cfg.sensor)
            sigma = noise_sigma(x)
        if rng.random() < implant_prob:
            x, mask, _ = implant_targets(x, mask, rng, sigma, self.cfg.implant)
        # drawn only where asked, so that runs without border-only targets keep their samples
        elif source.border_prob > 0 and rng.random() < source.border_prob:
            x, mask, _ = implant_targets(x, mask, rng, sigma, self.border_implant)
        # drawn only where pasting is on, so that runs without it keep their samples
        if source.paste_prob > 0 and rng.random() < source.paste_prob:
            x, mask, _ = paste_targets(x, mask, rng, sigma, self.bank, self.cfg.paste)
        frame = encode(x, rng, native, self.cfg.sensor, None if sensor else "native")
        y, m = augment(normalize(frame, self.norm), mask, rng)
        return np.ascontiguousarray(y, dtype=np.float32), np.ascontiguousarray(m), which

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image, mask, source index): the source picks the sample's distillation teachers."""
        y, m, which = self._draw(index)
        return torch.from_numpy(y)[None], torch.from_numpy(m.astype(np.float32))[None], torch.tensor(which)
