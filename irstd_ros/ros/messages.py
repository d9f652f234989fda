"""Output messages built from targets and tracks, for rclpy and rosbags alike.

Every builder takes ``types``, a mapping from the full type name
(``"vision_msgs/msg/Detection2D"``) to the message class: :func:`rclpy_types` for the
node, a rosbags ``Typestore.types`` for the bag tools. Every field is given explicitly
(rosbags' message dataclasses have no defaults), with the values rclpy would default to.

Pose covariance (``results[0].pose.covariance``, geometry_msgs/PoseWithCovariance: 6x6
row-major over x, y, z, rotation about x, y, z): a detection's is all zeros, the ROS
convention for "covariance not known" (a single frame's centroid has no estimate of its
own); a track's carries its filter's position covariance in px² (x, y variances and
their covariance) and :data:`UNKNOWN_VARIANCE` on the diagonal of z and the three
rotations, which a pixel track does not estimate: a variance that large is no information
to a consumer that fuses the pose, where a 0 would read as exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from irstd_ros.core.constants import CLASS_ID
from irstd_ros.core.stamps import NS_PER_S, stamp_ns

Types = Mapping[str, Any]
# a coasting track's state (irstd_ros.tracking.TrackState.COASTING, a str Enum), compared by
# value: importing the tracker here loaded it and scipy.optimize into every bag tool
COASTING = "coasting"
# the variance on the pose covariance's diagonal for what a track does not estimate (z,
# the rotations): px² or rad², "no information", not a magic flag (any variance this large
# means it); finite and positive, so the matrix stays invertible and positive definite
UNKNOWN_VARIANCE = 1e9

TARGET_FIELDS = (
    "id", "score", "x", "y", "width", "height", "centroid_x", "centroid_y", "area",
    "peak_intensity", "mean_intensity", "local_contrast", "snr",
)
_TARGET_UINT_FIELDS = frozenset({"id", "x", "y", "width", "height", "area"})  # uint32 in Target.msg
_RCLPY_MODULES = {  # full type name -> (module, class)
    "builtin_interfaces/msg/Time": ("builtin_interfaces.msg", "Time"),
    "std_msgs/msg/Header": ("std_msgs.msg", "Header"),
    "geometry_msgs/msg/Point": ("geometry_msgs.msg", "Point"),
    "geometry_msgs/msg/Pose": ("geometry_msgs.msg", "Pose"),
    "geometry_msgs/msg/PoseWithCovariance": ("geometry_msgs.msg", "PoseWithCovariance"),
    "geometry_msgs/msg/Quaternion": ("geometry_msgs.msg", "Quaternion"),
    "vision_msgs/msg/BoundingBox2D": ("vision_msgs.msg", "BoundingBox2D"),
    "vision_msgs/msg/Detection2D": ("vision_msgs.msg", "Detection2D"),
    "vision_msgs/msg/Detection2DArray": ("vision_msgs.msg", "Detection2DArray"),
    "vision_msgs/msg/ObjectHypothesis": ("vision_msgs.msg", "ObjectHypothesis"),
    "vision_msgs/msg/ObjectHypothesisWithPose": ("vision_msgs.msg", "ObjectHypothesisWithPose"),
    "vision_msgs/msg/Point2D": ("vision_msgs.msg", "Point2D"),
    "vision_msgs/msg/Pose2D": ("vision_msgs.msg", "Pose2D"),
    "irstd_ros/msg/Target": ("irstd_ros.msg", "Target"),
    "irstd_ros/msg/TargetArray": ("irstd_ros.msg", "TargetArray"),
}


def rclpy_types() -> dict[str, Any]:
    """The rclpy message classes the builders use, by full type name."""
    import importlib

    return {
        name: getattr(importlib.import_module(module), cls)
        for name, (module, cls) in _RCLPY_MODULES.items()
    }


def detection(
    types: Types, header: Any, det_id: str, center: tuple[float, float],
    size: tuple[float, float], score: float, position: tuple[float, float],
    covariance: np.ndarray | None = None,
) -> Any:
    """One vision_msgs/Detection2D: box ``center``/``size`` in input pixels, hypothesis
    (:data:`CLASS_ID`, ``score``) with its pose at ``position``, of ``covariance`` (36
    float64, row-major 6x6; None: all zeros, unknown)."""
    t = types
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=float(position[0]), y=float(position[1]), z=0.0),
            orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, dtype=np.float64) if covariance is None else covariance,
    )
    hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
        hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=CLASS_ID, score=float(score)),
        pose=pose,
    )
    bbox = t["vision_msgs/msg/BoundingBox2D"](
        center=t["vision_msgs/msg/Pose2D"](
            position=t["vision_msgs/msg/Point2D"](x=float(center[0]), y=float(center[1])),
            theta=0.0,
        ),
        size_x=float(size[0]),
        size_y=float(size[1]),
    )
    return t["vision_msgs/msg/Detection2D"](header=header, results=[hyp], bbox=bbox, id=det_id)


def target_detection(types: Types, header: Any, target: Any, with_id: bool = True) -> Any:
    """The Detection2D of a target (a :class:`~irstd_ros.core.targets.Target` or any object
    with its box fields; ``centroid_x``/``_y`` None: the box centre). ``with_id`` False: an
    empty ``id``, for a target whose id is not the object's across frames (see
    :func:`detections_array`)."""
    cx = target.center_x if target.centroid_x is None else target.centroid_x
    cy = target.center_y if target.centroid_y is None else target.centroid_y
    return detection(
        types, header, str(target.id) if with_id else "", (target.center_x, target.center_y),
        (target.width, target.height), target.score, (cx, cy),
    )


def detections_array(types: Types, header: Any, targets: Iterable[Any], with_ids: bool = True) -> Any:
    """A vision_msgs/Detection2DArray: one Detection2D per target. vision_msgs keeps ``id``
    for the same object across messages (a track id, e.g. a truth target's); ``with_ids``
    False leaves it empty, as it may be, for targets numbered within their frame (the
    node's: 0 the highest score), which a consumer would otherwise take for identities."""
    dets = [target_detection(types, header, t, with_ids) for t in targets]
    return types["vision_msgs/msg/Detection2DArray"](header=header, detections=dets)


def track_covariance(position_cov: tuple[float, float, float]) -> np.ndarray:
    """The pose covariance (36 float64, row-major 6x6 over x, y, z, rotations about x, y,
    z) of a track of position covariance ``position_cov`` (var x, var y, cov xy; px²):
    those in the x-y block, :data:`UNKNOWN_VARIANCE` on the rest of the diagonal."""
    vxx, vyy, cxy = position_cov
    cov = np.zeros((6, 6), dtype=np.float64)
    cov[0, 0], cov[1, 1], cov[0, 1], cov[1, 0] = vxx, vyy, cxy, cxy
    cov[2, 2] = cov[3, 3] = cov[4, 4] = cov[5, 5] = UNKNOWN_VARIANCE
    return cov.reshape(36)


def track_detections_array(
    types: Types,
    header: Any,
    tracks: Iterable[Any],
    last_stamps: Mapping[int, int] | None = None,
    coasting: bool = True,
) -> Any:
    """A Detection2DArray of the confirmed tracks, coasting ones too unless ``coasting`` is
    False: ``id`` = the track id, box centred at the filtered position with the smoothed
    size, hypothesis with the track's score, pose at the filtered position with its
    covariance (:func:`track_covariance` of the track's ``position_cov``).

    Each Detection2D's ``header.stamp`` is that of the frame of the track's last detection,
    ``last_stamps[id]`` (ns; the array's ``header`` when the id is not in it, or without
    ``last_stamps``), its ``frame_id`` the array's: the array's stamp for a track detected
    in this frame, an older one for a coasting track (vision_msgs' way of telling them
    apart; the state itself is on irstd_ros/TrackArray)."""
    dets = []
    stamp = stamp_ns(header)
    for t in tracks:
        if not t.confirmed or not coasting and t.state == COASTING:
            continue
        own = header
        last = None if last_stamps is None else last_stamps.get(t.id)
        if last is not None and last != stamp:
            sec, nanosec = divmod(last, NS_PER_S)
            own = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                frame_id=header.frame_id,
            )
        box = (t.x, t.y), (t.width, t.height)
        cov = track_covariance(t.position_cov)
        dets.append(detection(types, own, str(t.id), *box, t.score, (t.x, t.y), cov))
    return types["vision_msgs/msg/Detection2DArray"](header=header, detections=dets)


def targets_array(types: Types, header: Any, targets: Iterable[Any]) -> Any:
    """An irstd_ros/TargetArray of :class:`~irstd_ros.core.targets.Target` objects."""
    items = []
    for tgt in targets:
        values = {}
        for name in TARGET_FIELDS:
            v = getattr(tgt, name)  # by the field's type: a numpy float32 score is no int
            values[name] = int(v) if name in _TARGET_UINT_FIELDS else float(v)
        items.append(types["irstd_ros/msg/Target"](**values))
    return types["irstd_ros/msg/TargetArray"](header=header, targets=items)
