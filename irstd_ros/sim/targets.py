"""Small targets: smooth trajectories (entering and leaving the frame), crossing pairs,
manoeuvres, and PSF rendering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SUPERSAMPLING = 5  # sub-pixel samples per axis: pixel-integrated rendering
PATCH_SIGMAS = 4.0  # PSF sigmas of margin around the object in a rendered patch
ASPECT_RANGE = (1.0, 1.6)  # object elongation along its heading (fuselage, hull)
TURN_RATE_MAX = 0.12  # rad/s of steady turn
WOBBLE_MAX = 0.35  # rad of heading oscillation
WOBBLE_PERIOD_S = (3.0, 9.0)
INTERIOR_MARGIN = 0.15  # "inside" targets start this fraction of the frame away from edges
ENTRY_TIME = (0.1, 0.3)  # fraction of the sequence after which an entering target is in
ENTRY_ANGLE_SPREAD = 0.5  # rad around the inward normal of the entry edge
MIN_SEPARATION_PX = 40.0  # between start points of different targets
PLACEMENT_TRIES = 50
MIN_MOVING_SPEED = 2.0  # px/s: crossing and manoeuvring targets always move
CROSSING_TIME = (0.4, 0.6)  # fraction of the sequence at which a pair crosses
CROSSING_REGION = (0.3, 0.7)  # fraction of the frame (each axis) where pairs cross
CROSSING_ANGLE = (np.pi / 6, 5 * np.pi / 6)  # rad between the headings of a pair
MANOEUVRE_START = (0.3, 0.5)  # fraction of the sequence at which the manoeuvre begins
MANOEUVRE_TURN = (np.pi / 3, 5 * np.pi / 6)  # rad of heading change, either way
MANOEUVRE_RATE = (np.pi / 6, np.pi / 2)  # rad/s while turning
MANOEUVRE_SPEED_FACTOR = (0.5, 2.0)  # speed after / before the turn (log-uniform)


@dataclass(frozen=True)
class TargetPlan:
    """One target over the whole sequence."""

    id: int
    size: float  # object extent (px) across its heading, before the PSF
    aspect: float  # length / width
    snr: float  # peak amplitude / local clutter std
    positions: np.ndarray  # (frames, 2): sub-pixel (x, y) of the centre
    headings: np.ndarray  # (frames,) rad, image coordinates (x right, y down)


def _headings(rng: np.random.Generator, n: int, dt: float, theta0: float) -> np.ndarray:
    t = np.arange(n) * dt
    turn = rng.uniform(-TURN_RATE_MAX, TURN_RATE_MAX)
    wobble = rng.uniform(0.0, WOBBLE_MAX)
    period = rng.uniform(*WOBBLE_PERIOD_S)
    phase = rng.uniform(0, 2 * np.pi)
    return theta0 + turn * t + wobble * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase))


def _integrate(start: np.ndarray, headings: np.ndarray, step: float) -> np.ndarray:
    steps = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    pos = np.empty_like(steps)
    pos[0] = start
    pos[1:] = start + np.cumsum(steps[:-1], axis=0)
    return pos


def _entering(
    rng: np.random.Generator, n: int, dt: float, step: float, w: int, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """A path that starts outside an edge and flies in after ``ENTRY_TIME`` of the sequence."""
    edge = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
    along = rng.uniform(0.2, 0.8)
    outside = step * n * rng.uniform(*ENTRY_TIME)
    inward = (0.0, np.pi, np.pi / 2, -np.pi / 2)[edge]
    if edge == 0:
        start = (-outside, along * h)
    elif edge == 1:
        start = (w - 1 + outside, along * h)
    elif edge == 2:
        start = (along * w, -outside)
    else:
        start = (along * w, h - 1 + outside)
    theta0 = inward + rng.uniform(-ENTRY_ANGLE_SPREAD, ENTRY_ANGLE_SPREAD) / 2
    headings = _headings(rng, n, dt, theta0)
    return _integrate(np.asarray(start, dtype=np.float64), headings, step), headings


@dataclass(frozen=True)
class PlanSpace:
    """Where and how targets are planned: sequence length and rate, frame size, and the
    ranges their size (px), speed (px/s) and peak SNR are drawn from."""

    frames: int
    fps: float
    width: int
    height: int
    size_range: tuple[float, float]
    speed_range: tuple[float, float]
    snr_range: tuple[float, float]


def plan_targets(
    rng: np.random.Generator,
    n_targets: int,
    space: PlanSpace,
    enter_leave: bool,
) -> list[TargetPlan]:
    """Trajectories of ``n_targets``: with ``enter_leave``, target 0 enters the frame and
    target 1 leaves it; the others start inside (and may leave)."""
    frames, fps, width, height = space.frames, space.fps, space.width, space.height
    size_range, speed_range, snr_range = space.size_range, space.speed_range, space.snr_range
    dt = 1.0 / fps
    plans: list[TargetPlan] = []
    starts: list[np.ndarray] = []
    for i in range(n_targets):
        kind = ("enter", "leave")[i] if enter_leave and i < 2 else "inside"
        step = rng.uniform(*speed_range) * dt
        size = rng.uniform(*size_range)
        aspect = rng.uniform(*ASPECT_RANGE)
        snr = rng.uniform(*snr_range)
        if kind == "inside":
            mx, my = INTERIOR_MARGIN * width, INTERIOR_MARGIN * height
            start = rng.uniform((mx, my), (width - mx, height - my))
            for _ in range(PLACEMENT_TRIES):
                if all(np.hypot(*(start - s)) >= MIN_SEPARATION_PX for s in starts):
                    break
                start = rng.uniform((mx, my), (width - mx, height - my))
            starts.append(start)
            headings = _headings(rng, frames, dt, rng.uniform(0, 2 * np.pi))
            positions = _integrate(start, headings, step)
        else:
            positions, headings = _entering(rng, frames, dt, step, width, height)
            if kind == "leave":  # the same kind of path, played backwards
                positions, headings = positions[::-1].copy(), headings[::-1] + np.pi
        plans.append(TargetPlan(i, size, aspect, snr, positions, headings))
    return plans


def _appearance(
    rng: np.random.Generator, size_range: tuple[float, float], snr_range: tuple[float, float]
) -> tuple[float, float, float]:
    """(size, aspect, snr) of one target."""
    return rng.uniform(*size_range), rng.uniform(*ASPECT_RANGE), rng.uniform(*snr_range)


def _speed(rng: np.random.Generator, speed_range: tuple[float, float]) -> float:
    return max(rng.uniform(*speed_range), MIN_MOVING_SPEED)


def plan_crossings(
    rng: np.random.Generator,
    pairs: int,
    space: PlanSpace,
    first_id: int,
) -> list[TargetPlan]:
    """``pairs`` pairs of straight, constant-velocity targets (ids from ``first_id``, two
    per pair) whose paths cross: both are at the same point at the same frame,
    ``CROSSING_TIME`` into the sequence, at ``CROSSING_ANGLE`` to each other."""
    frames, fps, width, height = space.frames, space.fps, space.width, space.height
    size_range, speed_range, snr_range = space.size_range, space.speed_range, space.snr_range
    dt = 1.0 / fps
    t = np.arange(frames) * dt
    lo, hi = CROSSING_REGION
    plans: list[TargetPlan] = []
    for k in range(pairs):
        centre = rng.uniform((lo * width, lo * height), (hi * width, hi * height))
        t_cross = round(rng.uniform(*CROSSING_TIME) * (frames - 1)) * dt
        theta_a = rng.uniform(0, 2 * np.pi)
        theta_b = theta_a + rng.choice((-1.0, 1.0)) * rng.uniform(*CROSSING_ANGLE)
        for j, theta in enumerate((theta_a, theta_b)):
            size, aspect, snr = _appearance(rng, size_range, snr_range)
            v = _speed(rng, speed_range)
            positions = centre + np.outer(t - t_cross, v * np.array([np.cos(theta), np.sin(theta)]))
            headings = np.full(frames, theta)
            plans.append(
                TargetPlan(first_id + 2 * k + j, size, aspect, snr, positions, headings)
            )
    return plans


def plan_manoeuvres(
    rng: np.random.Generator,
    count: int,
    space: PlanSpace,
    first_id: int,
) -> list[TargetPlan]:
    """``count`` manoeuvring targets (ids from ``first_id``): each starts inside the frame
    heading roughly towards its centre, flies straight, then, ``MANOEUVRE_START`` into
    the sequence, turns by ``MANOEUVRE_TURN`` at ``MANOEUVRE_RATE`` while its speed changes
    by ``MANOEUVRE_SPEED_FACTOR``, and flies straight again."""
    frames, fps, width, height = space.frames, space.fps, space.width, space.height
    size_range, speed_range, snr_range = space.size_range, space.speed_range, space.snr_range
    dt = 1.0 / fps
    t = np.arange(frames) * dt
    mx, my = INTERIOR_MARGIN * width, INTERIOR_MARGIN * height
    plans: list[TargetPlan] = []
    for k in range(count):
        size, aspect, snr = _appearance(rng, size_range, snr_range)
        start = rng.uniform((mx, my), (width - mx, height - my))
        to_centre = np.arctan2((height - 1) / 2 - start[1], (width - 1) / 2 - start[0])
        theta0 = to_centre + rng.uniform(-np.pi / 4, np.pi / 4)
        v0 = _speed(rng, speed_range)
        t_start = rng.uniform(*MANOEUVRE_START) * frames * dt
        turn = rng.choice((-1.0, 1.0)) * rng.uniform(*MANOEUVRE_TURN)
        turn_s = abs(turn) / rng.uniform(*MANOEUVRE_RATE)
        factor = float(np.exp(rng.uniform(*np.log(MANOEUVRE_SPEED_FACTOR))))
        progress = np.clip((t - t_start) / turn_s, 0.0, 1.0)
        headings = theta0 + turn * progress
        speeds = v0 * (1.0 + (factor - 1.0) * progress)
        steps = (speeds * dt)[:, None] * np.stack([np.cos(headings), np.sin(headings)], axis=1)
        positions = np.empty_like(steps)
        positions[0] = start
        positions[1:] = start + np.cumsum(steps[:-1], axis=0)
        plans.append(TargetPlan(first_id + k, size, aspect, snr, positions, headings))
    return plans


def render_blob(
    cx: float, cy: float, length: float, width: float, theta: float, psf_sigma: float
) -> tuple[int, int, np.ndarray]:
    """A uniform elliptical object (``length`` x ``width`` px, long axis at ``theta``)
    centred at (cx, cy), blurred by a Gaussian PSF and integrated over each pixel;
    its brightest pixel is 1.

    Returns (x0, y0, patch): the patch's top-left pixel in frame coordinates (may be
    negative or beyond the frame: the caller clips).
    """
    r = int(np.ceil(length / 2 + PATCH_SIGMAS * psf_sigma)) + 1
    x0, y0 = int(np.floor(cx)) - r, int(np.floor(cy)) - r
    n = 2 * r + 1
    ss = SUPERSAMPLING
    sub = (np.arange(n * ss) + 0.5) / ss - 0.5  # sub-pixel sample centres, in pixels
    xs = x0 + sub - cx
    ys = y0 + sub - cy
    c, s = np.cos(theta), np.sin(theta)
    u = xs[None, :] * c + ys[:, None] * s
    v = -xs[None, :] * s + ys[:, None] * c
    # at least one sub-sample wide, so that sub-pixel objects still carry signal
    a, b = max(length, 1.0 / ss) / 2, max(width, 1.0 / ss) / 2
    obj = ((u / a) ** 2 + (v / b) ** 2 <= 1.0).astype(np.float64)
    if not obj.any():  # an object smaller than the sampling grid: a point at the nearest sample
        obj[np.argmin(np.abs(ys)), np.argmin(np.abs(xs))] = 1.0
    if psf_sigma > 0:
        obj = ndimage.gaussian_filter(obj, psf_sigma * ss, mode="constant")
    patch = obj.reshape(n, ss, n, ss).mean(axis=(1, 3))
    return x0, y0, patch / patch.max()
