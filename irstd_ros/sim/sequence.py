"""Synthetic IR sequences with per-frame ground truth, deterministic from a seed.

The image model, per frame ``t``:

1. scene radiance (DN, PSF-blurred background: :mod:`irstd_ros.sim.scenes`);
2. sensor: vignetting, per-pixel gain non-uniformity and column/row fixed-pattern offsets
   (fixed for the sequence), giving the noise-free background ``B``;
3. targets: uniform elliptical objects (``target_size`` across, elongated along their
   heading) blurred by the Gaussian PSF and integrated over each pixel, scaled so that
   the brightest pixel of each is ``A = snr x sigma_local`` above ``B``, where
   ``sigma_local`` is the standard deviation of ``B`` in a ``LOCAL_WINDOW_PX`` window
   around the target combined with the temporal noise (``sqrt(std(B)^2 + noise_sigma^2)``):
   the SNR is over local clutter, so a target over a cloud edge is brighter than one over
   clear sky at the same SNR;
4. temporal Gaussian noise, then quantisation: 8-bit DN, or 16-bit counts
   ``OFFSET_16BIT + GAIN_16BIT x DN`` (a radiometric camera using a narrow band). The
   8-bit output saturates at 255: a bright target over warm clutter clips there, and its
   truth keeps the amplitude and SNR before clipping (the requested ones, not those
   delivered). Measured (out/v44/audit_sim/clip_rate.py, clip_demo.py; an instance
   "clips" when its truth box holds a 255): with the defaults (SNR 4-10, 40 frames) none
   of 111 instances over sky or ground; the demo sample (sky, SNR 10-16, 100 frames) 127
   of 624 (20 %), and 78 of the 624 keep under 0.9 of the requested peak (the frame minus
   the same frame without targets, over the truth amplitude; 43 under 0.75, the worst
   0.31); the same over ground 37 of 624 (6 %). 16-bit counts clip only above 3845 DN.

Truth: a pixel belongs to a target's mask when the target's rendered signal there is at
least ``TRUTH_FRACTION`` (one half) of its peak pixel. The peak pixel itself always
qualifies, so a 1-px target has at least one truth pixel. A target is *visible* (in the
truth of a frame) while its brightest in-frame pixel is at least that fraction of its
full peak; entering and leaving targets appear and disappear accordingly.

Scenarios for tracking (all off by default; ids in this order): ``n_targets`` smooth
paths (with ``enter_leave``, target 0 enters and target 1 leaves), ``dim_targets`` point
targets at ``dim_snr``, ``crossings`` pairs of targets whose paths cross mid-sequence,
``manoeuvres`` targets that turn sharply and change speed, and flickering clutter
(``flicker_rate`` new hot spots per frame, each for ``flicker_frames`` frames at
``flicker_snr``: rendered like point targets, never in the truth). Each scenario draws
from its own random stream, so adding one leaves the others' frames unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from irstd_ros.core.stamps import NS_PER_S
from irstd_ros.errors import ConfigError
from irstd_ros.sim.clutter import flickers_by_frame, plan_flicker
from irstd_ros.sim.scenes import SCENES, make_scene
from irstd_ros.sim.targets import (
    PlanSpace,
    TargetPlan,
    plan_crossings,
    plan_manoeuvres,
    plan_targets,
    render_blob,
)

TRUTH_FRACTION = 0.5  # truth mask: target signal >= this fraction of its peak pixel
LOCAL_WINDOW_PX = 21  # window of the local clutter std that defines the SNR
OFFSET_16BIT = 4000.0  # 16-bit counts = OFFSET_16BIT + GAIN_16BIT x DN
GAIN_16BIT = 16.0
MAX_8BIT, MAX_16BIT = 255, 65535
VIGNETTING = 0.06  # relative radiance loss in the corners
ROW_FPN_RATIO = 0.4  # row offsets std relative to the column offsets std
DEFAULT_START_NS = 1_735_689_600 * NS_PER_S  # 2025-01-01T00:00:00Z, first frame stamp
MIN_SIZE_PX, MAX_SIZE_PX = 16, 8192
BIT_DEPTHS = (8, 16)
# Upper bounds (validate): what a stamp, a frame and the planned sequence can hold.
STAMP_LIMIT_NS = 2**31 * NS_PER_S  # header stamps hold int32 seconds: stamps stay below this
MAX_FPS = float(NS_PER_S)  # a frame period of at least 1 ns: every frame its own stamp
SEED_LIMIT = 2**32  # numpy seeds a stream from 32-bit words: larger seeds collide
MAX_FRAMES = 1_000_000  # 28 h at 10 fps (330 GB of 640x512 mono8)
MAX_TARGETS = 1_000  # ids in all; placement is quadratic in them (~7 s for 1,000)
MAX_TARGET_FRAMES = 10_000_000  # targets x frames: trajectories are planned up front (24 B each)
MAX_TARGET_SIZE_PX = 64.0  # small targets; a rendered patch grows with the square of the size
MAX_PSF_SIGMA_PX = 4.0  # a point spread over ~20 px; the render grows with its cube
MAX_FLICKERS = 1_000_000  # flickers planned over the sequence (flicker_rate x frames)
MAX_FLICKERS_ON = 1_000  # flicker_rate x longest flicker: hot spots rendered in one frame

# Independent random streams: changing one aspect (e.g. frames) keeps the others.
(
    _STREAM_SCENE, _STREAM_TARGETS, _STREAM_SENSOR, _STREAM_NOISE, _STREAM_GLINT, _STREAM_DIM,
    _STREAM_CROSSINGS, _STREAM_MANOEUVRES, _STREAM_FLICKER,
) = range(1, 10)
DIM_SIZE_PX = (0.3, 1.0)  # dim targets are points: the PSF shapes them
# numbers and (lo, hi) ranges of SequenceConfig that must be finite
_FLOAT_FIELDS = (
    "fps", "snr", "target_size", "target_speed", "dim_snr", "flicker_rate", "flicker_snr",
    "psf_sigma", "noise_sigma", "fpn_sigma", "gain_nonuniformity",
)


@dataclass(frozen=True)
class SequenceConfig:
    """What to generate. Ranges ``(lo, hi)`` are drawn uniformly per target."""

    width: int = 640
    height: int = 512
    frames: int = 100
    fps: float = 10.0
    scene: str = "sky"  # sky | sea | ground
    n_targets: int = 3
    snr: tuple[float, float] = (4.0, 10.0)  # peak amplitude / local clutter std
    target_size: tuple[float, float] = (1.0, 6.0)  # object extent (px) before the PSF
    target_speed: tuple[float, float] = (5.0, 25.0)  # px/s
    enter_leave: bool = True  # target 0 enters the frame, target 1 leaves it
    dim_targets: int = 0  # extra point targets (ids after the others) at ``dim_snr``
    dim_snr: tuple[float, float] = (4.0, 6.0)
    crossings: int = 0  # pairs of targets (at ``snr``) whose paths cross mid-sequence
    manoeuvres: int = 0  # targets (at ``snr``) that turn sharply and change speed
    flicker_rate: float = 0.0  # new flickering hot spots per frame (clutter, not truth)
    flicker_frames: tuple[int, int] = (1, 3)  # frames each flicker lasts, inclusive range
    flicker_snr: tuple[float, float] = (6.0, 15.0)  # flicker peak / local clutter std
    quiet: tuple[int, int] = (0, 0)  # frames [start, end) show no target (within [0, frames])
    psf_sigma: float = 0.6  # px, Gaussian sensor PSF
    noise_sigma: float = 1.5  # DN, temporal noise
    fpn_sigma: float = 1.0  # DN, column offsets (rows: ROW_FPN_RATIO of it)
    gain_nonuniformity: float = 0.01  # relative per-pixel gain std
    bit_depth: int = 8  # 8 (mono8) or 16 (mono16)
    seed: int = 0
    start_time_ns: int = DEFAULT_START_NS
    frame_id: str = "ir_camera"

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an invalid value (a NaN or infinite number
        included: it would overflow the random draws or give every frame one stamp).

        Upper bounds keep a sequence within what its stamps and memory hold and its
        generation finite: ``fps`` at most ``MAX_FPS`` (a frame period of at least 1 ns) and
        high enough that the whole sequence (``frames / fps``) ends before ``STAMP_LIMIT_NS``
        (a header stamp's int32 seconds); ``frames`` at most ``MAX_FRAMES``; at most
        ``MAX_TARGETS`` targets (all scenarios), ``MAX_TARGET_FRAMES`` targets x frames
        (trajectories are planned up front); ``target_size`` at most ``MAX_TARGET_SIZE_PX``
        and ``psf_sigma`` at most ``MAX_PSF_SIGMA_PX`` (the rendered patch grows with
        them); ``flicker_rate`` at most ``MAX_FLICKERS`` planned over the sequence and
        ``MAX_FLICKERS_ON`` on in one frame (``flicker_rate`` x the longest flicker)."""
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{name} must be finite, got {value}")
        if not (
            MIN_SIZE_PX <= self.width <= MAX_SIZE_PX and MIN_SIZE_PX <= self.height <= MAX_SIZE_PX
        ):
            raise ConfigError(
                f"size {self.width}x{self.height} outside [{MIN_SIZE_PX}, {MAX_SIZE_PX}]"
            )
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ConfigError(f"frames must be in [1, {MAX_FRAMES}], got {self.frames}")
        if not 0 <= self.start_time_ns < STAMP_LIMIT_NS:
            raise ConfigError(
                f"start_time_ns must be in [0, {STAMP_LIMIT_NS}) (int32 seconds), got {self.start_time_ns}"
            )
        # the last stamp, start + (frames - 1) / fps, stays below the limit
        min_fps = self.frames * NS_PER_S / (STAMP_LIMIT_NS - self.start_time_ns)
        if min_fps > MAX_FPS:  # no fps fits: the start is what is wrong
            raise ConfigError(
                f"start_time_ns {self.start_time_ns} leaves no room for {self.frames} frames before "
                f"the int32-seconds limit {STAMP_LIMIT_NS}"
            )
        if not min_fps <= self.fps <= MAX_FPS:
            raise ConfigError(
                f"fps must be in [{min_fps:.3g}, {MAX_FPS:.0e}] for {self.frames} frames (a frame "
                f"period of at least 1 ns; the last stamp within int32 seconds), got {self.fps}"
            )
        if self.scene not in SCENES:
            raise ConfigError(f"unknown scene {self.scene!r}; valid: {', '.join(SCENES)}")
        names = ("n_targets", "dim_targets", "crossings", "manoeuvres")
        counts = {k: getattr(self, k) for k in names}
        if min(counts.values()) < 0:
            raise ConfigError(f"target counts must be >= 0, got {counts}")
        targets = self.n_targets + self.dim_targets + 2 * self.crossings + self.manoeuvres
        if targets > MAX_TARGETS:
            raise ConfigError(
                f"at most {MAX_TARGETS} targets (n_targets + dim_targets + 2 x crossings + "
                f"manoeuvres), got {targets} from {counts}"
            )
        if targets * self.frames > MAX_TARGET_FRAMES:
            raise ConfigError(
                f"targets x frames must be <= {MAX_TARGET_FRAMES} (trajectories are planned up "
                f"front), got {targets} x {self.frames}"
            )
        if not 1 <= self.flicker_frames[0] <= self.flicker_frames[1] <= MAX_FRAMES:
            raise ConfigError(
                f"flicker_frames must satisfy 1 <= lo <= hi <= {MAX_FRAMES}, got {self.flicker_frames}"
            )
        longest = min(self.flicker_frames[1], self.frames)
        max_rate = min(MAX_FLICKERS / self.frames, MAX_FLICKERS_ON / longest)
        if not 0 <= self.flicker_rate <= max_rate:
            raise ConfigError(
                f"flicker_rate must be in [0, {max_rate:.4g}] for {self.frames} frames and flickers "
                f"of up to {longest} frames (at most {MAX_FLICKERS} flickers in all, "
                f"{MAX_FLICKERS_ON} on at once), got {self.flicker_rate}"
            )
        if not 0 <= self.quiet[0] <= self.quiet[1] <= self.frames:
            # a stretch past the end would silently shorten (or drop) the background-only part
            raise ConfigError(
                f"quiet must be a frame range 0 <= start <= end <= frames ({self.frames}), "
                f"got {self.quiet}"
            )
        integer = isinstance(self.seed, (int, np.integer)) and not isinstance(self.seed, bool)
        if not (integer and 0 <= self.seed < SEED_LIMIT):  # numpy's seeding refuses negatives
            # naming no field; and splits seeds >= 2**32 into 32-bit words, so that one
            # would replay another's streams ([4 * 2**32, 1] draws as [0, 4, 1])
            raise ConfigError(f"seed must be an integer in [0, {SEED_LIMIT}), got {self.seed!r}")
        if self.bit_depth not in BIT_DEPTHS:
            raise ConfigError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        for name in ("snr", "dim_snr", "flicker_snr", "target_size", "target_speed"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name != "target_speed" and lo <= 0):
                raise ConfigError(f"{name} range must satisfy 0 < lo <= hi, got ({lo}, {hi})")
        if self.target_size[1] > MAX_TARGET_SIZE_PX:
            raise ConfigError(
                f"target_size must be at most {MAX_TARGET_SIZE_PX:g} px (small targets), "
                f"got {self.target_size}"
            )
        for name in ("psf_sigma", "noise_sigma", "fpn_sigma", "gain_nonuniformity"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.psf_sigma > MAX_PSF_SIGMA_PX:
            raise ConfigError(
                f"psf_sigma must be in [0, {MAX_PSF_SIGMA_PX:g}] px, got {self.psf_sigma}"
            )

    @property
    def encoding(self) -> str:
        return "mono8" if self.bit_depth == 8 else "mono16"

    def stamp_ns(self, index: int) -> int:
        """Header stamp of frame ``index``."""
        return self.start_time_ns + round(index * NS_PER_S / self.fps)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TargetTruth:
    """One visible target in one frame (coordinates: pixel (0, 0) centred at 0.0, 0.0)."""

    id: int  # stable over the sequence (a track id)
    x: float  # sub-pixel centre
    y: float
    bbox: tuple[int, int, int, int]  # x, y, width, height of its truth-mask pixels
    area: int  # truth-mask pixels
    amplitude: float  # peak above the background, in output units (DN or counts)
    snr: float
    size: float  # object extent (px) before the PSF


@dataclass
class Frame:
    """One generated frame and its truth."""

    index: int
    stamp_ns: int
    image: np.ndarray  # (H, W) uint8 or uint16
    mask: np.ndarray  # (H, W) bool: union of the visible targets' truth masks
    targets: list[TargetTruth] = field(default_factory=list)


def _rng(cfg: SequenceConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, *stream])


def _sensor_maps(cfg: SequenceConfig) -> tuple[np.ndarray, np.ndarray]:
    """(multiplicative gain incl. vignetting, additive offsets), fixed for the sequence."""
    rng = _rng(cfg, _STREAM_SENSOR)
    h, w = cfg.height, cfg.width
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (
        ((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2
    )
    gain = (1.0 - VIGNETTING * r2) * (1.0 + cfg.gain_nonuniformity * rng.standard_normal((h, w)))
    offsets = cfg.fpn_sigma * rng.standard_normal((1, w)) + (
        cfg.fpn_sigma * ROW_FPN_RATIO * rng.standard_normal((h, 1))
    )
    return gain, offsets


def _local_sigma(clean: np.ndarray, x: float, y: float, noise_sigma: float) -> float:
    h, w = clean.shape
    half = LOCAL_WINDOW_PX // 2
    cx = int(np.clip(round(x), 0, w - 1))
    cy = int(np.clip(round(y), 0, h - 1))
    win = clean[max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1]
    return float(np.hypot(win.std(), noise_sigma))


def _quantise(img: np.ndarray, bit_depth: int) -> np.ndarray:
    if bit_depth == 8:
        return np.clip(np.rint(img), 0, MAX_8BIT).astype(np.uint8)
    return np.clip(np.rint(OFFSET_16BIT + GAIN_16BIT * img), 0, MAX_16BIT).astype(np.uint16)


def _plans(cfg: SequenceConfig) -> list[TargetPlan]:
    """Every target's plan, ids in the order of the module docstring."""
    space = PlanSpace(
        cfg.frames, cfg.fps, cfg.width, cfg.height, cfg.target_size, cfg.target_speed, cfg.snr
    )
    plans = plan_targets(_rng(cfg, _STREAM_TARGETS), cfg.n_targets, space, cfg.enter_leave)
    if cfg.dim_targets:
        dim_space = replace(space, size_range=DIM_SIZE_PX, snr_range=cfg.dim_snr)
        dim = plan_targets(_rng(cfg, _STREAM_DIM), cfg.dim_targets, dim_space, False)
        plans += [replace(p, id=p.id + len(plans)) for p in dim]
    if cfg.crossings:
        plans += plan_crossings(_rng(cfg, _STREAM_CROSSINGS), cfg.crossings, space, len(plans))
    if cfg.manoeuvres:
        plans += plan_manoeuvres(_rng(cfg, _STREAM_MANOEUVRES), cfg.manoeuvres, space, len(plans))
    return plans


def _clip_patch(
    x0: int, y0: int, patch: np.ndarray, shape: tuple[int, int]
) -> tuple[int, int, np.ndarray] | None:
    """The part of a rendered patch inside the frame: (x, y, part), or None if none is."""
    h, w = shape
    ph, pw = patch.shape
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + pw, w), min(y0 + ph, h)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return fx0, fy0, patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


def generate_sequence(cfg: SequenceConfig) -> Iterator[Frame]:
    """Yield ``cfg.frames`` frames with their truth; same config, same frames."""
    cfg.validate()
    shape = (cfg.height, cfg.width)
    scene = make_scene(cfg.scene, _rng(cfg, _STREAM_SCENE), shape, cfg.fps, cfg.psf_sigma)
    plans = _plans(cfg)
    flickers = plan_flicker(
        _rng(cfg, _STREAM_FLICKER), cfg.flicker_rate, cfg.frames, cfg.width, cfg.height,
        cfg.flicker_frames, cfg.flicker_snr,
    )
    gain, offsets = _sensor_maps(cfg)
    unit = 1.0 if cfg.bit_depth == 8 else GAIN_16BIT
    for t, flickers_on in zip(range(cfg.frames), flickers_by_frame(flickers)):
        clean = scene.at(t, _rng(cfg, _STREAM_GLINT, t)) * gain + offsets
        img = clean.copy()
        for fl in flickers_on:  # clutter: in the image, never in the truth
            blob = render_blob(fl.x, fl.y, fl.size, fl.size, 0.0, cfg.psf_sigma)
            clipped = _clip_patch(*blob, shape)
            if clipped is not None:
                fx0, fy0, part = clipped
                amp = fl.snr * _local_sigma(clean, fl.x, fl.y, cfg.noise_sigma)
                img[fy0 : fy0 + part.shape[0], fx0 : fx0 + part.shape[1]] += amp * part
        mask = np.zeros(shape, dtype=bool)
        truths: list[TargetTruth] = []
        for plan in plans if not cfg.quiet[0] <= t < cfg.quiet[1] else ():
            x, y = plan.positions[t]
            blob = render_blob(
                x, y, plan.size * plan.aspect, plan.size, float(plan.headings[t]), cfg.psf_sigma
            )
            clipped = _clip_patch(*blob, shape)
            if clipped is None:
                continue  # entirely outside
            fx0, fy0, part = clipped
            fx1, fy1 = fx0 + part.shape[1], fy0 + part.shape[0]
            amp = plan.snr * _local_sigma(clean, x, y, cfg.noise_sigma)
            img[fy0:fy1, fx0:fx1] += amp * part
            on = part >= TRUTH_FRACTION
            if not on.any():
                continue  # only the faint tail is in the frame: not a visible target
            mask[fy0:fy1, fx0:fx1] |= on
            ys, xs = np.nonzero(on)
            bbox = (
                int(fx0 + xs.min()),
                int(fy0 + ys.min()),
                int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1),
            )
            truths.append(
                TargetTruth(
                    plan.id,
                    float(x),
                    float(y),
                    bbox,
                    int(on.sum()),
                    amp * unit,
                    plan.snr,
                    plan.size,
                )
            )
        img += cfg.noise_sigma * _rng(cfg, _STREAM_NOISE, t).standard_normal(shape)
        yield Frame(t, cfg.stamp_ns(t), _quantise(img, cfg.bit_depth), mask, truths)
