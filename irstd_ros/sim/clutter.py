"""Flickering clutter: hot spots and glints that look like point targets for a few frames.

Each flicker appears at a random place, stays put for ``1..3`` frames (``lifetime``) and
vanishes. It is rendered like a dim point target (the PSF shapes it) with a peak of
``snr`` times the local clutter, so a single-frame detector cannot tell it from a target;
it never belongs to the ground truth. Tracking is what rejects it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

FLICKER_SIZE_PX = (0.3, 1.0)  # object extent before the PSF: points


@dataclass(frozen=True)
class Flicker:
    """One hot spot, visible in frames ``[start, start + frames)``."""

    x: float
    y: float
    start: int
    frames: int
    snr: float
    size: float

    def on(self, t: int) -> bool:
        return self.start <= t < self.start + self.frames


def plan_flicker(
    rng: np.random.Generator,
    rate: float,
    frames: int,
    width: int,
    height: int,
    lifetime: tuple[int, int],
    snr_range: tuple[float, float],
) -> list[Flicker]:
    """Poisson(``rate``) new flickers per frame, anywhere in the frame, each lasting a
    uniform whole number of frames in ``lifetime`` (inclusive)."""
    out: list[Flicker] = []
    if rate <= 0:
        return out
    for t in range(frames):
        for _ in range(rng.poisson(rate)):
            out.append(
                Flicker(
                    x=float(rng.uniform(0, width - 1)),
                    y=float(rng.uniform(0, height - 1)),
                    start=t,
                    frames=int(rng.integers(lifetime[0], lifetime[1] + 1)),
                    snr=float(rng.uniform(*snr_range)),
                    size=float(rng.uniform(*FLICKER_SIZE_PX)),
                )
            )
    return out


def flickers_by_frame(flickers: list[Flicker]) -> Iterator[list[Flicker]]:
    """The flickers on in frames 0, 1, 2, ... (endless), in list order, from a list
    ordered by ``start`` (as :func:`plan_flicker` returns it): each frame looks only at
    the flickers still on and those starting, not at the whole sequence's."""
    pending = iter(flickers)
    upcoming = next(pending, None)
    on: list[Flicker] = []
    t = 0
    while True:
        on = [fl for fl in on if fl.on(t)]
        while upcoming is not None and upcoming.start <= t:
            if upcoming.on(t):
                on.append(upcoming)
            upcoming = next(pending, None)
        yield on
        t += 1
