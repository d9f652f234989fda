"""Bearings and line-of-sight rates against a known pinhole model with distortion."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from irstd_ros.errors import ConfigError
from irstd_ros.tracking import CameraModel, bearings

K = np.array([[800.0, 0.0, 320.5], [0.0, 790.0, 255.5], [0.0, 0.0, 1.0]])
PLUMB_BOB = (-0.28, 0.11, 0.0012, -0.0008, -0.02)  # a wide-ish lens, barrel distortion
RATIONAL = (-0.28, 0.11, 0.0012, -0.0008, -0.02, 0.05, 0.01, 0.002)


def rays_in_fov(n: int = 200, half_fov: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-np.tan(half_fov), np.tan(half_fov), (n, 2))
    rays = np.concatenate([xy, np.ones((n, 1))], axis=1)
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [(), PLUMB_BOB, RATIONAL], ids=["none", "plumb_bob", "rational"])
def test_bearing_inverts_the_projection(d):
    cam = CameraModel(K, d)
    rays = rays_in_fov()
    px = cam.project(rays)
    got = cam.bearing(px[:, 0], px[:, 1])
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0)
    assert np.abs(got - rays).max() < 1e-9  # radians, about


def test_bearing_inverts_a_projection_with_skew():
    """A K with a non-zero skew K[0, 1] (sensor axes not perpendicular)."""
    skewed = K.copy()
    skewed[0, 1] = 12.0
    cam = CameraModel(skewed, PLUMB_BOB)
    rays = rays_in_fov()
    px = cam.project(rays)
    assert np.abs(cam.bearing(px[:, 0], px[:, 1]) - rays).max() < 1e-9


def test_principal_point_is_the_optical_axis_and_axes_follow_rep103():
    cam = CameraModel(K, PLUMB_BOB[:2])  # radial only: the centre stays the centre
    assert np.allclose(cam.bearing(320.5, 255.5), [0, 0, 1])
    right, down = cam.bearing(500.0, 255.5), cam.bearing(320.5, 400.0)
    assert right[0] > 0 and abs(right[1]) < 1e-12 and down[1] > 0


def test_distortion_matters():
    """Ignoring the distortion would misplace a corner target by a visible angle."""
    px = CameraModel(K, PLUMB_BOB).project(np.array([[0.3, 0.25, 1.0]]))[0]
    with_d, without = CameraModel(K, PLUMB_BOB).bearing(*px), CameraModel(K).bearing(*px)
    assert np.degrees(np.arccos(with_d @ without)) > 0.5


def test_angular_rate_of_a_known_rotation():
    """A line of sight turning about the camera's y axis at 0.2 rad/s: rate (0, 0.2, 0)."""
    cam = CameraModel(K, PLUMB_BOB)
    omega, theta, h = 0.2, 0.15, 1e-4

    def ray(t):
        a = theta + omega * t
        return np.array([[np.sin(a), 0.0, np.cos(a)]])

    p0, pm, pp = cam.project(ray(0))[0], cam.project(ray(-h))[0], cam.project(ray(h))[0]
    vel = (pp - pm) / (2 * h)  # px/s
    rate = cam.angular_rate(p0[0], p0[1], vel[0], vel[1])
    assert np.allclose(rate, [0.0, omega, 0.0], atol=1e-5)
    assert cam.angular_rate(p0[0], p0[1], 0.0, 0.0).tolist() == [0.0, 0.0, 0.0]


def camera_info(**changes):
    msg = SimpleNamespace(
        k=K.ravel().tolist(), d=list(PLUMB_BOB), distortion_model="plumb_bob",
        binning_x=0, binning_y=0, roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0),
        width=640, height=512, header=SimpleNamespace(frame_id=""),
    )
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def test_from_camera_info_with_binning_and_roi():
    full = CameraModel.from_camera_info(camera_info())
    binned = CameraModel.from_camera_info(
        camera_info(binning_x=2, binning_y=4, roi=SimpleNamespace(x_offset=100, y_offset=40, width=400, height=300))
    )
    # image pixel (50, 30) of the binned ROI is sensor pixel (100 + 50 * 2, 40 + 30 * 4)
    assert np.allclose(binned.bearing(50.0, 30.0), full.bearing(200.0, 160.0))
    # the images each describes: the calibrated size, the region of interest binned
    assert (full.image_size, binned.image_size) == ((512, 640), (75, 200))


def test_unusable_camera_info_is_refused():
    with pytest.raises(ConfigError, match="uncalibrated"):
        CameraModel.from_camera_info(camera_info(k=[0.0] * 9))
    with pytest.raises(ConfigError, match="not supported"):
        CameraModel.from_camera_info(camera_info(distortion_model="equidistant"))


def test_bearings_of_tracks():
    cam = CameraModel(K)
    track = SimpleNamespace(x=320.5, y=255.5, vx=8.0, vy=0.0)
    ((b, rate),) = bearings(cam, [track])
    assert np.allclose(b, [0, 0, 1])
    assert rate[1] == pytest.approx(8.0 / 800.0, rel=1e-4)  # turning about +y, 0.01 rad/s


@pytest.mark.parametrize(
    "change, message",
    [
        ({"d": [float("nan"), 0.11, 0.0, 0.0, 0.0]}, "distortion D has non-finite"),
        ({"k": [800.0, 0.0, float("nan"), 0.0, 790.0, 255.5, 0.0, 0.0, 1.0]}, "K has non-finite"),
        ({"k": [800.0, 0.0, float("inf"), 0.0, 790.0, 255.5, 0.0, 0.0, 1.0]}, "K has non-finite"),
        ({"k": [0.0, 0.0, 320.0, 0.0, 790.0, 255.5, 0.0, 0.0, 1.0]}, "focal lengths fx, fy >= "),
        # a focal length of 1e-300 px gave the "unit" bearing [0, 0, 0]
        ({"k": [800.0, 0.0, 320.0, 0.0, 1e-300, 255.5, 0.0, 0.0, 1.0]}, "focal lengths fx, fy >= "),
        # a third row other than [0, 0, 1] was ignored: the same bearings as a pinhole's
        ({"k": [800.0, 0.0, 320.0, 0.0, 790.0, 255.5, 0.0, 0.0, 2.0]}, "not a pinhole camera's"),
        ({"k": [800.0, 0.0, 320.0, 0.0, 790.0, 255.5, 0.3, 0.0, 1.0]}, "not a pinhole camera's"),
        ({"k": [800.0, 0.0, 320.0, 790.0]}, "has 4 values, not 9"),  # was "all zeros: uncalibrated"
    ],
)
def test_non_finite_camera_info_is_refused_not_nan_bearings(change, message):
    """It gave NaN bearings, published as valid (has_bearing true)."""
    with pytest.raises(ConfigError, match=message):
        CameraModel.from_camera_info(camera_info(**change))


def test_a_distortion_the_fixed_point_cannot_invert_over_the_image_is_refused():
    """k1 -0.6, k2 0.2: the image corners came back 73 px off through undistort and
    project, and their bearings were published as valid."""
    wide = np.array([[500.0, 0.0, 320.5], [0.0, 500.0, 255.5], [0.0, 0.0, 1.0]])
    strong = (-0.6, 0.2, 0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match=r"does not invert over the 640x512 image: pixel \(0, 0\)"):
        CameraModel(wide, strong, image_size=(512, 640))
    CameraModel(wide, strong)  # no image size: nothing to check over
    CameraModel(K, strong, image_size=(512, 640))  # a longer focal length: corners within reach
    CameraModel(wide, PLUMB_BOB, image_size=(512, 640))  # a real lens


@pytest.mark.parametrize(
    "model, d",
    [
        ("rational_polynomial", [*RATIONAL, 0.01, 0.0, 0.02, 0.0, 0.0, 0.0]),  # OpenCV's 14: thin prism
        ("plumb_bob", [*PLUMB_BOB, 0.3, 0.0, 0.0]),  # a 6th: was read as rational k4
    ],
)
def test_distortion_coefficients_the_model_does_not_have_are_refused(model, d):
    """They were dropped (thin prism) or read as another model's: bearings off, silently."""
    with pytest.raises(ConfigError, match="coefficients"):
        CameraModel.from_camera_info(camera_info(distortion_model=model, d=d))
    # zeros past the model's count are harmless padding
    CameraModel.from_camera_info(camera_info(distortion_model="plumb_bob", d=[*PLUMB_BOB, 0.0, 0.0, 0.0]))


def test_bearings_of_many_tracks_are_one_vectorised_pass(monkeypatch):
    """The node computes every track's bearing and rate each frame: two scalar undistortions
    (fixed-point loops) per track took ~0.5 ms each, 33 ms for 50 tracks and 0.46 s for
    the 600 tentative tracks of a clutter burst. Same values, one undistortion."""
    cam = CameraModel(K, PLUMB_BOB)
    rng = np.random.default_rng(1)
    tracks = [
        SimpleNamespace(x=x, y=y, vx=vx, vy=vy)
        for x, y, vx, vy in zip(*rng.uniform(0, 512, (2, 40)), *rng.normal(0, 20, (2, 40)))
    ]
    tracks.append(SimpleNamespace(x=10.0, y=20.0, vx=0.0, vy=0.0))  # still: rate 0
    expected = [(cam.bearing(t.x, t.y), cam.angular_rate(t.x, t.y, t.vx, t.vy)) for t in tracks]
    calls = []
    undistort = CameraModel.undistort
    monkeypatch.setattr(CameraModel, "undistort", lambda *a: calls.append(1) or undistort(*a))
    got = bearings(cam, tracks)
    assert len(calls) == 1
    for (b, w), (eb, ew) in zip(got, expected, strict=True):
        assert np.allclose(b, eb, atol=1e-12) and np.allclose(w, ew, atol=1e-9)
    assert got[-1][1].tolist() == [0.0, 0.0, 0.0]
    assert bearings(cam, []) == []


def test_an_unknown_velocity_gives_no_rate_not_a_still_target():
    """A NaN velocity is no speed of 0: the rate stays NaN (the node then publishes no
    bearing), as the scalar path gave before the vectorised one; a still target's is 0."""
    cam = CameraModel(K, PLUMB_BOB)
    assert np.isnan(cam.angular_rate(100.0, 50.0, float("nan"), 0.0)).all()
    tracks = [SimpleNamespace(x=100.0, y=50.0, vx=np.nan, vy=0.0), SimpleNamespace(x=10.0, y=20.0, vx=0.0, vy=0.0)]
    (b, w), (_, still) = bearings(cam, tracks)
    assert np.isfinite(b).all() and np.isnan(w).all()
    assert still.tolist() == [0.0, 0.0, 0.0]
