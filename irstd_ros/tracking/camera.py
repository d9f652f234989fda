"""Pixels to bearings: unit line-of-sight vectors in the camera's optical frame.

The optical frame of ROS (REP 103): z forward along the optical axis, x right, y down.
The camera model is that of sensor_msgs/CameraInfo: the intrinsic matrix ``K`` and the
distortion ``D`` of the ``plumb_bob`` model (k1, k2, p1, p2, k3) or of the
``rational_polynomial`` model (k1, k2, p1, p2, k3, k4, k5, k6). A pixel is undistorted
by the usual fixed-point iteration on the forward model (as OpenCV's
``undistortPoints``), which converges for the distortion of real lenses.

Binning and region of interest of CameraInfo are honoured: ``K`` describes the full
sensor, so image pixel ``u`` is sensor pixel ``roi.x_offset + u * binning_x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from irstd_ros.errors import ConfigError

MODELS = {"plumb_bob": 5, "rational_polynomial": 8}  # model -> its distortion coefficients
UNDISTORT_ITERATIONS = 50
UNDISTORT_TOLERANCE = 1e-12  # normalised image units
RATE_STEP_PX = 0.01  # pixel displacement of the numerical derivative of the bearing
MIN_FOCAL_PX = 1e-3  # below, no camera's: 1 / f overflows the normalised coordinates
K_LAST_ROW = (0.0, 0.0, 1.0)  # a pinhole K's third row
ROUND_TRIP_TOLERANCE_PX = 0.01  # undistort -> distort over the image must come back this close
ROUND_TRIP_GRID = 17  # points a side of the image checked (its edges and corners included)


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera with radial-tangential distortion;
    :class:`~irstd_ros.errors.ConfigError` (a ValueError) for an unusable ``K`` or ``D``."""

    k: np.ndarray  # (3, 3) intrinsic matrix
    d: tuple[float, ...] = ()  # k1, k2, p1, p2[, k3[, k4, k5, k6]]
    binning: tuple[int, int] = (1, 1)
    offset: tuple[int, int] = (0, 0)  # region of interest's top-left sensor pixel
    image_size: tuple[int, int] | None = None  # (height, width) of the images it describes
    frame_id: str = ""  # the optical frame of its camera_info's header ("": not given)

    def __post_init__(self) -> None:
        k = np.asarray(self.k, dtype=np.float64).reshape(3, 3)
        if not np.isfinite(k).all():
            raise ConfigError("camera matrix K has non-finite values")
        if not (k[0, 0] >= MIN_FOCAL_PX and k[1, 1] >= MIN_FOCAL_PX):
            raise ConfigError(
                f"camera matrix K needs focal lengths fx, fy >= {MIN_FOCAL_PX:g} px, got "
                f"{k[0, 0]:g}, {k[1, 1]:g}"
            )
        if not np.allclose(k[2], K_LAST_ROW) or k[1, 0] != 0:
            raise ConfigError(
                f"camera matrix K is not a pinhole camera's: [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
                f"expected, got {k.round(6).tolist()}"
            )
        object.__setattr__(self, "k", k)
        d = tuple(float(v) for v in self.d)
        if not all(np.isfinite(d)):
            raise ConfigError(f"distortion D has non-finite values: {list(d)}")
        if any(d[8:]):  # thin prism or tilt terms (OpenCV's 12 or 14): they would be ignored
            raise ConfigError(f"distortion D has {len(d)} coefficients; at most 8 are supported")
        object.__setattr__(self, "d", (d + (0.0,) * 8)[:8])
        if any(self.d) and self.image_size is not None:
            self._check_inverts()

    def _check_inverts(self) -> None:
        """:class:`ConfigError` unless every pixel of a grid over the image comes back to
        itself through :meth:`undistort` and :meth:`project` (a distortion too strong for
        the fixed-point inverse, e.g. k1 -0.6 with k2 0.2, gave corner bearings 73 px off)."""
        assert self.image_size is not None
        h, w = self.image_size
        u, v = np.meshgrid(np.linspace(0, w - 1, ROUND_TRIP_GRID), np.linspace(0, h - 1, ROUND_TRIP_GRID))
        x, y = self.undistort(u.ravel(), v.ravel())
        with np.errstate(all="ignore"):
            back = self.project(np.stack([x, y, np.ones_like(x)], axis=1))
            error = np.hypot(back[:, 0] - u.ravel(), back[:, 1] - v.ravel())
        worst = int(np.argmax(np.where(np.isfinite(error), error, np.inf)))
        if not error[worst] <= ROUND_TRIP_TOLERANCE_PX:
            raise ConfigError(
                f"distortion D {list(self.d)} does not invert over the {w}x{h} image: pixel "
                f"({u.ravel()[worst]:.0f}, {v.ravel()[worst]:.0f}) comes back {error[worst]:.3g} px off, "
                "so its bearings would be wrong"
            )

    @classmethod
    def from_camera_info(cls, msg: Any) -> CameraModel:
        """From a sensor_msgs/CameraInfo; :class:`~irstd_ros.errors.ConfigError` (a
        ValueError) for an unusable one."""
        k = np.asarray(msg.k, dtype=np.float64)
        if k.size != 9:
            raise ConfigError(f"camera_info's intrinsic matrix K has {k.size} values, not 9")
        if not k.any():
            raise ConfigError("camera_info has no intrinsic matrix K (all zeros: uncalibrated)")
        d = [float(v) for v in msg.d]
        model = str(msg.distortion_model)
        if any(d) and model not in MODELS:
            raise ConfigError(
                f"distortion model {model!r} not supported (supported: {', '.join(MODELS)})"
            )
        if any(d) and any(d[MODELS[model]:]):  # not the model's: would be read as another's
            raise ConfigError(
                f"distortion model {model!r} takes {MODELS[model]} coefficients, D has {len(d)}"
            )
        bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
        # the images it describes: the region of interest (else the calibrated size) binned
        w, h = int(msg.roi.width) or int(msg.width), int(msg.roi.height) or int(msg.height)
        size = (h // by, w // bx) if w and h else None
        offset = (int(msg.roi.x_offset), int(msg.roi.y_offset))
        return cls(k, tuple(d), (bx, by), offset, size, str(msg.header.frame_id))

    # --- model ----------------------------------------------------------------------------
    def _sensor(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.offset[0] + u * self.binning[0], self.offset[1] + v * self.binning[1]

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised undistorted (x, y) -> normalised distorted coordinates."""
        k1, k2, p1, p2, k3, k4, k5, k6 = self.d
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return xd, yd

    def project(self, rays: np.ndarray) -> np.ndarray:
        """(n, 3) rays in the optical frame (z > 0) -> (n, 2) image pixels (u, v)."""
        rays = np.atleast_2d(np.asarray(rays, dtype=np.float64))
        xd, yd = self.distort(rays[:, 0] / rays[:, 2], rays[:, 1] / rays[:, 2])
        k = self.k
        us = k[0, 0] * xd + k[0, 1] * yd + k[0, 2]
        vs = k[1, 1] * yd + k[1, 2]
        return np.stack(
            [(us - self.offset[0]) / self.binning[0], (vs - self.offset[1]) / self.binning[1]],
            axis=1,
        )

    def undistort(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixels -> normalised undistorted coordinates (iterative inverse)."""
        us, vs = self._sensor(np.asarray(u, np.float64), np.asarray(v, np.float64))
        k = self.k
        yd = (vs - k[1, 2]) / k[1, 1]
        xd = (us - k[0, 2] - k[0, 1] * yd) / k[0, 0]
        if not any(self.d):
            return xd, yd
        k1, k2, p1, p2, k3, k4, k5, k6 = self.d
        x, y = xd.copy(), yd.copy()
        for _ in range(UNDISTORT_ITERATIONS):
            r2 = x * x + y * y
            icdist = (1 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1 + r2 * (k1 + r2 * (k2 + r2 * k3)))
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            nx, ny = (xd - dx) * icdist, (yd - dy) * icdist
            done = np.max(np.abs(nx - x) + np.abs(ny - y)) < UNDISTORT_TOLERANCE
            x, y = nx, ny
            if done:
                break
        return x, y

    # --- bearings -------------------------------------------------------------------------
    def bearing(self, u: float | np.ndarray, v: float | np.ndarray) -> np.ndarray:
        """Unit line-of-sight vector(s) of image pixel(s) (u, v): shape (3,) or (n, 3)."""
        x, y = self.undistort(np.atleast_1d(u), np.atleast_1d(v))
        rays = np.stack([x, y, np.ones_like(x)], axis=-1)
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        return rays[0] if np.ndim(u) == 0 else rays

    def angular_rate(self, u: float, v: float, vu: float, vv: float) -> np.ndarray:
        """Line-of-sight rate (rad/s, a vector in the optical frame) of a target at pixel
        (u, v) moving at (vu, vv) px/s: ``b × db/dt``, b the unit bearing. Its norm is the
        rate at which the line of sight turns; its direction, the axis it turns about."""
        return self.bearings_and_rates(*(np.array([c], np.float64) for c in (u, v, vu, vv)))[1][0]

    def bearings_and_rates(
        self, u: np.ndarray, v: np.ndarray, vu: np.ndarray, vv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3) bearings and (n, 3) line-of-sight rates (:meth:`angular_rate`) of n
        targets at pixels (u, v) moving at (vu, vv) px/s, in one undistortion."""
        n = len(u)
        speed = np.hypot(vu, vv)
        still = speed == 0  # not NaN: an unknown velocity's rate stays NaN, not 0
        h = RATE_STEP_PX / np.where(still, 1.0, speed)  # seconds
        du, dv = vu * h, vv * h
        b = self.bearing(np.concatenate([u - du, u, u + du]), np.concatenate([v - dv, v, v + dv]))
        b = b.reshape(3, n, 3)
        rate = np.cross(b[1], (b[2] - b[0]) / (2 * h[:, None]))
        rate[still] = 0.0
        return b[1], rate


def bearings(
    camera: CameraModel, tracks: Sequence[Any]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bearing, angular rate) of each track (objects with x, y, vx, vy in px, px/s), all
    in one pass (:meth:`CameraModel.bearings_and_rates`)."""
    if not tracks:
        return []
    u, v, vu, vv = np.array([[t.x, t.y, t.vx, t.vy] for t in tracks], np.float64).T
    return list(zip(*camera.bearings_and_rates(u, v, vu, vv)))
