"""Noise-free IR backgrounds: sky with clouds, sea with waves and glint, ground with urban edges.

Radiances are floats in 8-bit digital numbers (DN, 0-255 for the 8-bit output; the
16-bit output maps them affinely, see :mod:`irstd_ros.sim.sequence`). Every scene is
already blurred by the sensor PSF. Textures that move (clouds, waves) are periodic
canvases translated a little every frame; the rest of the scene is static (a fixed
surveillance camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from irstd_ros.errors import ConfigError

# Sky radiance (DN): colder towards the zenith, warmer at the horizon.
SKY_ZENITH_DN = 70.0
SKY_HORIZON_DN = 105.0
SKY_GRADIENT_EXPONENT = 1.5
# Clouds: warmer than clear sky, with brighter (sun-lit) edges.
CLOUD_SPECTRAL_SLOPE = 3.4  # power spectrum ~ 1/f^slope: large smooth cloud shapes
CLOUD_CONTRAST_DN = 55.0
CLOUD_TEXTURE_DN = 25.0
CLOUD_EDGE_DN = 28.0
CLOUD_TEXTURE_SLOPE = 3.3
CLOUD_EDGE_BLUR_PX = 2.5
CLOUD_SOFTNESS = 0.9  # in units of the cloud field's std: soft, gradual cloud borders
CLOUD_DRIFT_PX_S = (2.0, 0.4)
# Atmospheric structure of clear sky (fine, low contrast).
HAZE_SPECTRAL_SLOPE = 3.2
HAZE_DN = 22.0
# Sea.
SEA_HORIZON_ROW = 0.32  # fraction of the height
SEA_HORIZON_TILT_PX = 4.0
HORIZON_HAZE_DN = 12.0
HORIZON_HAZE_SIGMA_PX = 3.0
SEA_FAR_DN = 112.0
SEA_NEAR_DN = 88.0
WAVE_SPECTRAL_SLOPE = 2.2
WAVE_ANISOTROPY = 3.5  # waves are longer horizontally than vertically
WAVE_FAR_DN = 5.0
WAVE_NEAR_DN = 16.0
WAVE_DRIFT_PX_S = (1.0, 5.0)
GLINT_PER_FRAME = 30.0  # mean number of sun glints per frame
GLINT_MEAN_DN = 12.0  # exponential amplitude distribution
GLINT_MAX_DN = 40.0
GLINT_COLUMN_SPREAD = 0.12  # std of the glint column around the sun's, fraction of width
GLINT_SIGMA_PX = (1.0, 0.45)  # (x, y): glints are flat specks
# Ground.
GROUND_HORIZON_ROW = 0.38
GROUND_BASE_DN = 104.0
TERRAIN_SPECTRAL_SLOPE = 2.4
TERRAIN_DN = 14.0
FIELD_PATCHES = 24
FIELD_DN = 12.0
BUILDINGS = 14  # per frame of REFERENCE_AREA_PX; in proportion to the area on others
REFERENCE_AREA_PX = 640 * 512  # overlapping on a small frame, 14 summed to 400+ DN (saturated)
BUILDING_SIZE_PX = ((18, 80), (14, 56))  # (width range, height range)
BUILDING_DN = (12.0, 34.0)
SHADOW_DN = 10.0
ROADS = 3
ROAD_WIDTH_PX = (3, 6)
ROAD_DN = 9.0
GROUND_SKY_CLOUD_COVER = 0.25

SCENES = ("sky", "sea", "ground")


def fbm(
    rng: np.random.Generator, shape: tuple[int, int], slope: float, anisotropy: float = 1.0
) -> np.ndarray:
    """Periodic fractal noise (power spectrum ~ 1/f^slope), zero mean, unit std."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :] * anisotropy
    k = np.hypot(kx, ky)
    k[0, 0] = np.inf
    spectrum = np.fft.rfft2(rng.standard_normal(shape)) * k ** (-slope / 2.0)
    out = np.fft.irfft2(spectrum, s=shape)
    return (out - out.mean()) / (out.std() + 1e-12)


def translate(canvas: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The periodic ``canvas`` moved by (dx, dy) pixels, bilinear, wrapping around."""
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    a = np.roll(canvas, (iy, ix), axis=(0, 1))
    b = np.roll(a, 1, axis=1)
    top = (1 - fx) * a + fx * b
    bottom = np.roll(top, 1, axis=0)
    return (1 - fy) * top + fy * bottom


@dataclass
class DriftLayer:
    """A periodic texture moving at ``velocity`` px/frame, weighted by ``weight`` (H, W)."""

    canvas: np.ndarray
    velocity: tuple[float, float]
    weight: np.ndarray | float = 1.0

    def at(self, t: int) -> np.ndarray:
        return translate(self.canvas, self.velocity[0] * t, self.velocity[1] * t) * self.weight


@dataclass
class Glint:
    """Sun glint on water: short-lived specks in ``region`` around column ``sun_x``."""

    region: np.ndarray  # (H, W) bool: where glints may appear
    sun_x: float
    rows: np.ndarray  # candidate rows (those of the region)

    def render(
        self, rng: np.random.Generator, shape: tuple[int, int], psf_sigma: float
    ) -> np.ndarray:
        h, w = shape
        out = np.zeros(shape)
        n = rng.poisson(GLINT_PER_FRAME)
        sx = float(np.hypot(GLINT_SIGMA_PX[0], psf_sigma))
        sy = float(np.hypot(GLINT_SIGMA_PX[1], psf_sigma))
        r = int(np.ceil(3 * sx))
        for _ in range(n):
            x = rng.normal(self.sun_x, GLINT_COLUMN_SPREAD * w)
            # nearer water (lower rows) glints more: sample rows with a linear ramp
            y = float(self.rows[int(len(self.rows) * np.sqrt(rng.random()))])
            amp = min(rng.exponential(GLINT_MEAN_DN), GLINT_MAX_DN)
            x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, w)
            y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            out[y0:y1, x0:x1] += amp * np.exp(-0.5 * (((xx - x) / sx) ** 2 + ((yy - y) / sy) ** 2))
        return out * self.region


@dataclass
class Scene:
    """Static radiance + moving layers + optional glint; :meth:`at` gives frame ``t``."""

    name: str
    static: np.ndarray
    layers: list[DriftLayer] = field(default_factory=list)
    glint: Glint | None = None
    psf_sigma: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.static.shape  # type: ignore[return-value]

    def at(self, t: int, rng: np.random.Generator) -> np.ndarray:
        out = self.static.copy()
        for layer in self.layers:
            out += layer.at(t)
        if self.glint is not None:
            out += self.glint.render(rng, self.shape, self.psf_sigma)
        return out


def _sky_gradient(h: int, w: int, horizon_row: float) -> np.ndarray:
    y = np.clip(np.arange(h, dtype=np.float64) / max(horizon_row, 1.0), 0.0, 1.0)
    col = SKY_ZENITH_DN + (SKY_HORIZON_DN - SKY_ZENITH_DN) * y**SKY_GRADIENT_EXPONENT
    return np.repeat(col[:, None], w, axis=1)


def _sky(rng: np.random.Generator, shape: tuple[int, int], horizon_row: float) -> np.ndarray:
    """Clear sky: the elevation gradient plus faint atmospheric structure."""
    h, w = shape
    return _sky_gradient(h, w, horizon_row) + HAZE_DN * fbm(rng, shape, HAZE_SPECTRAL_SLOPE)


def _clouds(rng: np.random.Generator, shape: tuple[int, int], cover: float) -> np.ndarray:
    """Cloud radiance canvas (periodic): soft-thresholded fractal field, textured, lit edges."""
    f = fbm(rng, shape, CLOUD_SPECTRAL_SLOPE)
    thr = np.quantile(f, 1.0 - cover)
    c = np.clip((f - thr) / CLOUD_SOFTNESS, 0.0, 1.0)
    c = c * c * (3 - 2 * c)  # smoothstep
    texture = fbm(rng, shape, CLOUD_TEXTURE_SLOPE)
    gy, gx = np.gradient(ndimage.gaussian_filter(c, CLOUD_EDGE_BLUR_PX, mode="wrap"))
    edge = np.hypot(gx, gy)
    edge /= edge.max() + 1e-12
    return c * (CLOUD_CONTRAST_DN + CLOUD_TEXTURE_DN * texture) + CLOUD_EDGE_DN * edge


def _blur(img: np.ndarray, sigma: float, wrap: bool = False) -> np.ndarray:
    return (
        ndimage.gaussian_filter(img, sigma, mode="wrap" if wrap else "nearest")
        if sigma > 0
        else img
    )


def sky_scene(
    rng: np.random.Generator, shape: tuple[int, int], fps: float, psf_sigma: float
) -> Scene:
    h, w = shape
    static = _blur(_sky(rng, shape, h), psf_sigma)
    cover = rng.uniform(0.3, 0.5)
    clouds = _blur(_clouds(rng, shape, cover), psf_sigma, wrap=True)
    drift = (CLOUD_DRIFT_PX_S[0] / fps, CLOUD_DRIFT_PX_S[1] / fps)
    return Scene("sky", static, [DriftLayer(clouds, drift)], psf_sigma=psf_sigma)


def _horizon(
    rng: np.random.Generator, h: int, w: int, row_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(horizon row at each column, slightly tilted; row indices (H, 1); mask of the pixels
    below the horizon)."""
    tilt = rng.uniform(-SEA_HORIZON_TILT_PX, SEA_HORIZON_TILT_PX)
    horizon = row_fraction * h + tilt * (np.arange(w) / max(w - 1, 1) - 0.5)
    rows = np.arange(h, dtype=np.float64)[:, None]
    return horizon, rows, rows >= horizon[None, :]


def sea_scene(
    rng: np.random.Generator, shape: tuple[int, int], fps: float, psf_sigma: float
) -> Scene:
    h, w = shape
    horizon, rows, below = _horizon(rng, h, w, SEA_HORIZON_ROW)
    depth = np.clip((rows - horizon[None, :]) / np.maximum(h - horizon[None, :], 1.0), 0.0, 1.0)
    sky = _sky(rng, shape, float(horizon.mean()))
    sea = SEA_FAR_DN + (SEA_NEAR_DN - SEA_FAR_DN) * depth
    haze = HORIZON_HAZE_DN * np.exp(-0.5 * ((rows - horizon[None, :]) / HORIZON_HAZE_SIGMA_PX) ** 2)
    static = _blur(np.where(below, sea, sky) + haze, psf_sigma)
    waves = _blur(fbm(rng, shape, WAVE_SPECTRAL_SLOPE, WAVE_ANISOTROPY), psf_sigma, wrap=True)
    weight = _blur(below * (WAVE_FAR_DN + (WAVE_NEAR_DN - WAVE_FAR_DN) * depth), psf_sigma)
    drift = (WAVE_DRIFT_PX_S[0] / fps, WAVE_DRIFT_PX_S[1] / fps)
    sea_rows = np.arange(int(np.ceil(horizon.max())) + 2, h)
    glint = Glint(below, sun_x=rng.uniform(0.3, 0.7) * w, rows=sea_rows) if len(sea_rows) else None
    return Scene("sea", static, [DriftLayer(waves, drift, weight)], glint, psf_sigma)


def _voronoi_levels(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """Piecewise-constant patches (fields): each pixel takes the level of its nearest seed."""
    h, w = shape
    seeds = rng.uniform((0, 0), (h, w), size=(n, 2))
    levels = rng.uniform(-FIELD_DN, FIELD_DN, size=n)
    yy, xx = np.mgrid[0:h, 0:w]
    best = np.full(shape, np.inf)
    out = np.zeros(shape)
    for (sy, sx), level in zip(seeds, levels):
        d = (yy - sy) ** 2 + (xx - sx) ** 2
        closer = d < best
        best[closer] = d[closer]
        out[closer] = level
    return out


def ground_scene(
    rng: np.random.Generator, shape: tuple[int, int], fps: float, psf_sigma: float
) -> Scene:
    h, w = shape
    horizon, rows, below = _horizon(rng, h, w, GROUND_HORIZON_ROW)
    ground = GROUND_BASE_DN + TERRAIN_DN * fbm(rng, shape, TERRAIN_SPECTRAL_SLOPE)
    ground += _voronoi_levels(rng, shape, FIELD_PATCHES)
    top = int(np.ceil(horizon.max())) + 1
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(ROADS):
        y0, y1 = rng.uniform(top, h), rng.uniform(top, h)
        half = rng.uniform(*ROAD_WIDTH_PX) / 2
        line = y0 + (y1 - y0) * xx / max(w - 1, 1)
        ground[np.abs(yy - line) <= half] += ROAD_DN
    for _ in range(round(BUILDINGS * h * w / REFERENCE_AREA_PX)):
        (wlo, whi), (hlo, hhi) = BUILDING_SIZE_PX
        bw, bh = int(rng.integers(wlo, whi)), int(rng.integers(hlo, hhi))
        x0 = int(rng.integers(0, max(w - bw, 1)))
        y0 = int(rng.integers(top, max(h - bh, top + 1)))
        ground[y0 : y0 + bh, x0 : x0 + bw] += rng.uniform(*BUILDING_DN)
        ground[y0 + bh : y0 + bh + 4, x0 : x0 + bw] -= SHADOW_DN  # shadow below the wall
    sky = _sky(rng, shape, float(horizon.mean()))
    static = _blur(np.where(below, ground, sky), psf_sigma)
    clouds = _blur(_clouds(rng, shape, GROUND_SKY_CLOUD_COVER), psf_sigma, wrap=True)
    sky_weight = _blur((~below).astype(np.float64), psf_sigma)
    drift = (CLOUD_DRIFT_PX_S[0] / fps, CLOUD_DRIFT_PX_S[1] / fps)
    return Scene("ground", static, [DriftLayer(clouds, drift, sky_weight)], psf_sigma=psf_sigma)


SCENE_BUILDERS = {"sky": sky_scene, "sea": sea_scene, "ground": ground_scene}


def make_scene(
    name: str, rng: np.random.Generator, shape: tuple[int, int], fps: float, psf_sigma: float
) -> Scene:
    """Build scene ``name`` (one of :data:`SCENES`) of ``shape`` (H, W)."""
    if name not in SCENE_BUILDERS:
        raise ConfigError(f"unknown scene {name!r}; valid: {', '.join(SCENES)}")
    return SCENE_BUILDERS[name](rng, shape, fps, psf_sigma)
