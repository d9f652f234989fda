"""Multi-target tracking of small targets in pixel coordinates.

One constant-velocity Kalman filter per track (state ``x, y, vx, vy`` in px and px/s),
gated Hungarian association on the innovation's negative log-likelihood (squared
Mahalanobis distance plus ln det S, S the track's position covariance plus the
detection's), track birth as *tentative*, M-of-N confirmation, coasting through missed
frames for up to ``max_coast_s`` seconds (longer for tracks held longer, up to
``max_coast_long_s``), then deletion. A detection's centroid noise grows with its box
(``EXTENT_VARIANCE``): a large blob, such as two crossing targets merged into one
component, moves a track much less than a point detection does.

Everything but M-of-N confirmation is driven by the frames' header stamps (seconds), not
by frame counts: the filter's ``dt`` is the stamp difference, so dropped frames and
irregular rates only widen the predictions; coasting and deletion are measured in
seconds. M-of-N counts the frames the tracker processed (a dropped frame is no miss, a
repeated stamp no frame). A stamp earlier than the latest tracked one by at most
``STREAM_RESTART_S`` is a frame out of order (reordered by the network, a second
publisher): it is not tracked (no prediction, association, correction or birth) and
:meth:`Tracker.update` returns the tracks as they are; it is counted in
:attr:`Tracker.out_of_order` and warned about at most once per ``OUT_OF_ORDER_WARN_S``.
Before, any step back reset the tracker, so one late frame dropped every track. Further
back, time went back (a replay's loop, a simulation reset): the tracker resets (tracks
dropped, a warning logged); the id counter is kept, so an id is never reused (until ids
wrap to 1 after ``MAX_TRACK_ID``, the message's uint32; a live track's id is never given
again). A repeated stamp is the same instant, already tracked: the frame is
not tracked at all (no prediction, association, correction or birth, and no frame of
M-of-N) and :meth:`Tracker.update` returns the tracks as they are; it is counted in
:attr:`Tracker.repeated_stamps`, and warned about once a stretch of
``REPEATED_STAMP_WARN`` frames in a row with one stamp. Tracked as another frame, one
instant counted twice: a frame delivered twice made two hits, so a 2-frame flicker was
confirmed under 4-of-6, and two corrections from one measurement (the position variance
about half what it should be). The node times frames whose stamps do not advance (3 in a
row) by their arrival instead (``irstd_ros.ros.pipeline``), so there only a stamp
repeated once (a duplicate delivery) reaches the tracker.

Why this is written here (about 300 lines, numpy/scipy only) rather than taken from a
library: the trackers we compared count time in frames — norfair's hit counters and
initialisation delay are frame counts, and its Kalman filter advances one unit step per
``update``; motpy takes a single ``dt`` at construction and matches by IoU; ByteTrack
implementations associate by IoU and keep tracks for a number of frames. IoU is a poor
cue for 1–5 px targets (their boxes barely overlap from one frame to the next at speed),
and frame counts are wrong as soon as the node drops a frame. The whole filter bank is
vectorised (all tracks predicted and updated in a few numpy calls), which keeps the
tracker well under a millisecond per frame at 50 targets.

Association is a cascade: confirmed tracks (coasting ones included) first, then
tentative tracks on the detections left over, so that a spurious new track can never
take the detection of an established one; then, when the detector keeps sub-threshold
*candidates* (low-SNR confirmation), every track still without a detection on the
candidates. New tracks are born from the detections and candidates left over. A
candidate counts like a detection for M-of-N, so a dim target that is consistent over
several frames is confirmed while a single-frame blip is not. Last, *gated* components
(gated low threshold: probabilities lower still) are offered to the confirmed tracks
still without a detection, inside their fixed ``gate_px`` gate only, and never start a
track: the gate bounds their false-alarm rate, and a dim target keeps its track (and its
id) through frames where it falls below the candidate threshold.

Coasting scales with the track's quality: a confirmed track may coast as long as it has
been held by detections (between ``max_coast_s`` and ``max_coast_long_s``), so an
established target hidden by glint for two seconds keeps its id while a young track
(often clutter) ends after ``max_coast_s``. A confirmed track's gate stays at ``gate_px``
however long it coasts; a track predicted outside the image gets ``max_coast_s`` only.

Merges: when two targets cross, the detector often sees one component for a few frames;
one track takes it and the other is left without a detection. A confirmed track left
over whose predicted box overlaps the box of a detection taken by another confirmed
track is corrected by that shared detection (a weak measurement, given its size) rather
than coasting: a coasting track would otherwise take the nearest clutter or candidate
(measured: the 0.3 model's crossing pair on the sky sequence, 2 ID switches,
docs/results.md). The candidate and the merge of each such track compete in one
assignment. A merge is not a hit (the track coasts, and ends at its coast limit), so a
duplicate track sitting on another track's target dies.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from irstd_ros.core.ratelimit import RateLimiter
from irstd_ros.errors import ConfigError

log = logging.getLogger(__name__)

GATE_SIGMAS = 3.0  # a tentative track's gate widens to this many sigmas of its uncertainty
SIZE_SMOOTHING = 0.5  # weight of a new detection's box size in the track's size
SCORE_SMOOTHING = 0.3  # weight of a new detection's score in the track's score
_INFEASIBLE = 1e9
# the neighbour search's radius is a hair above a track's gate; the exact gate is applied after
_SEARCH_SLACK = 1e-9
# up to this many track-detection pairs, every pair is scored and one Hungarian assignment
# solves them all (what a neighbour search and per-component assignments save costs more)
_DENSE_PAIRS = 4096
# a connected component of the pairs up to this many cells (its rows x columns) is solved as a
# dense matrix (the Hungarian solver is as fast there); a larger one by a sparse assignment of
# its pairs alone (LAPJVsp): thousands of detections crowded together chain into a component
# of thousands of tracks and detections, whose dense matrix (almost all of it infeasible)
# took the Hungarian solver 0.3-1.5 s; the sparse one 0.05-0.3 s
_DENSE_COMPONENT = 65536
MAX_TRACK_ID = 2**32 - 1  # irstd_ros/Track's id is a uint32: ids wrap to 1 after it
# a detection's centroid is uncertain within its box: on top of meas_noise², each axis gets
# the variance of a point uniform over the box's extent (w²/12, h²/12). A 1-px point adds
# 0.08 px²; a 10x9 blob (two targets merged, a fragmented extended target) ~8 px², so such
# a blob corrects a track's position and velocity far less than a point detection does
EXTENT_VARIANCE = 1.0 / 12.0
# this many frames in a row with one stamp (a camera or driver whose stamps do not advance)
# are warned about, once a stretch; a stamp repeated once (a duplicate delivery) only counts
REPEATED_STAMP_WARN = 3
# A stamp further back than this (s) behind the latest tracked one is time going back (a
# replay's loop, a simulation reset): the tracker resets; one at most this far back is a
# frame out of order, skipped. Above the jitter and reordering of a network's frames, below
# any loop worth replaying. The node's pipeline restarts its stream beyond it too
# (irstd_ros.ros.pipeline imports it), so there only out-of-order frames reach the tracker.
STREAM_RESTART_S = 1.0
OUT_OF_ORDER_WARN_S = 5.0  # at most one out-of-order warning in this period (s, monotonic)
# why :meth:`Tracker.update` left a frame untracked (:attr:`Tracker.last_skip`)
SkipReason = Literal["out_of_order", "repeated"]


class TrackState(str, Enum):
    TENTATIVE = "tentative"  # born, not yet confirmed (M of its first N frames)
    CONFIRMED = "confirmed"  # confirmed and associated with a detection this frame
    COASTING = "coasting"  # confirmed, no detection this frame: predicted only


class Detection(Protocol):
    """What the tracker reads of a detection (:class:`irstd_ros.core.targets.Target`
    has these fields)."""

    @property
    def score(self) -> float: ...
    @property
    def width(self) -> float: ...
    @property
    def height(self) -> float: ...
    @property
    def centroid_x(self) -> float: ...
    @property
    def centroid_y(self) -> float: ...


class Logger(Protocol):
    def warning(self, msg: str) -> Any: ...


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings (the ``tracking.*`` node parameters and a few more).

    ``gate_px``: a detection farther than this from a track's predicted position is not
    associated with it; a tentative track's gate widens to ``GATE_SIGMAS`` sigmas of the
    prediction's position uncertainty when that is larger (its velocity is not known yet).
    ``confirm_m``/``confirm_n``: a tentative track is confirmed once it has ``confirm_m``
    detections within its first ``confirm_n`` frames (frames the tracker processed), and
    its score is at least ``min_score``; it is deleted when it can no longer make it.
    ``max_coast_s``: a track without a detection for longer than this is deleted, unless
    it is a confirmed track predicted inside the image that has been held longer: that
    one may coast as long as it has been held (birth to last detection), up to
    ``max_coast_long_s`` (never less than ``max_coast_s``).
    ``accel_noise``: process noise, px/s² (white-noise acceleration spectral density
    ``accel_noise²``); ``meas_noise``: centroid noise, px (std);
    ``init_speed``: std of the unknown velocity of a new track, px/s.
    """

    gate_px: float = 10.0
    confirm_m: int = 4
    confirm_n: int = 6
    max_coast_s: float = 1.0
    max_coast_long_s: float = 3.0
    min_score: float = 0.0
    accel_noise: float = 20.0
    meas_noise: float = 1.0
    init_speed: float = 30.0
    image_margin_px: float = 10.0  # tracks predicted farther outside the image are deleted

    def validate(self) -> None:
        """:class:`~irstd_ros.errors.ConfigError` (a ValueError) for a setting out of range."""
        if not self.gate_px > 0:
            raise ConfigError(f"gate_px must be > 0, got {self.gate_px}")
        if not 1 <= self.confirm_m <= self.confirm_n:
            raise ConfigError(
                f"need 1 <= confirm_m <= confirm_n, got {self.confirm_m}, {self.confirm_n}"
            )
        for name in ("max_coast_s", "max_coast_long_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("accel_noise", "meas_noise", "init_speed"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Track:
    """A track as of the latest update (a snapshot; the tracker keeps its own state)."""

    id: int  # stable over the track's life, never reused (1 to MAX_TRACK_ID, then wraps)
    state: TrackState
    x: float  # filtered centroid, px (pixel (0, 0) centred at 0.0, 0.0)
    y: float
    vx: float  # px/s
    vy: float
    width: float  # box size, px (smoothed over the associated detections)
    height: float
    score: float  # smoothed detection score
    age_s: float  # since birth
    hits: int  # detections associated, birth included
    misses: int  # consecutive frames without a detection
    time_since_update_s: float
    # the filter's position covariance, px²: (variance of x, variance of y, covariance x-y)
    position_cov: tuple[float, float, float]
    # the filter's velocity covariance, (px/s)²: (variance of vx, of vy, covariance vx-vy)
    velocity_cov: tuple[float, float, float]

    @property
    def has_velocity(self) -> bool:
        """The velocity is estimated: two detections so far (one: vx, vy are the prior, 0)."""
        return self.hits >= 2

    @property
    def position_std(self) -> float:
        """px, sqrt of the larger position variance."""
        return math.sqrt(max(self.position_cov[0], self.position_cov[1]))

    @property
    def velocity_std(self) -> float:
        """px/s, sqrt of the larger velocity variance (``init_speed`` at birth)."""
        return math.sqrt(max(self.velocity_cov[0], self.velocity_cov[1]))

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(centre x, centre y, width, height) in px."""
        return self.x, self.y, self.width, self.height

    @property
    def confirmed(self) -> bool:
        return self.state is not TrackState.TENTATIVE


@dataclass
class _Meta:
    id: int
    born_s: float
    last_hit_s: float
    width: float
    height: float
    score: float
    hits: int = 1
    frames: int = 1  # frames processed since birth, birth included (one per distinct stamp)
    misses: int = 0
    confirmed: bool = False


def _check_finite(stamp_s: float, fields: np.ndarray, n_det: int, n_cand: int) -> None:
    """ValueError for a non-finite stamp, or a detection (rows of ``fields``: centroid x, y,
    width, height, score; candidates from ``n_det``, gated ones from ``n_cand``) with a
    non-finite field or a negative size: it would crash the assignment, start a track at
    NaN, or publish a track of negative width."""
    if not np.isfinite(stamp_s):
        raise ValueError(f"tracker: the frame's stamp is not finite ({stamp_s})")
    finite = np.isfinite(fields).all(axis=1)
    bad = np.flatnonzero(~finite | (fields[:, 2:4] < 0).any(axis=1))
    if len(bad):
        i = int(bad[0])
        kind, j = (
            ("detection", i) if i < n_det
            else ("candidate", i - n_det) if i < n_cand
            else ("gated component", i - n_cand)
        )
        x, y, w, h, score = fields[i].tolist()
        what = "a non-finite field" if not finite[i] else "a negative size"
        raise ValueError(
            f"tracker: {kind} {j} has {what} (centroid {x}, {y}, size {w}x{h}, "
            f"score {score}); frame refused"
        )


class Tracker:
    """Tracks detections frame after frame; call :meth:`update` once per processed frame.

    ``logger``: where the time-went-backwards, out-of-order and repeated-stamp warnings
    go (a :mod:`logging` logger or an rclpy one); :attr:`resets` counts those resets,
    :attr:`out_of_order` the frames not tracked because their stamp was behind the latest
    tracked one (by at most ``STREAM_RESTART_S``), :attr:`repeated_stamps` those not
    tracked because their stamp repeated the previous frame's. ``first_id``: the first
    track's id (a tracker taking over from another: :attr:`next_id` of that one, so no id
    is reused). ``clock``: monotonic seconds, to rate-limit the out-of-order warning.
    :attr:`last_skip`: why the latest :meth:`update` left its frame untracked
    (``"out_of_order"``, ``"repeated"``), None when it tracked it.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        logger: Logger = log,
        first_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self.logger = logger
        self.resets = 0
        self.repeated_stamps = 0  # frames not tracked: their stamp was the previous frame's
        self.out_of_order = 0  # frames not tracked: stamped before the latest tracked one
        self._repeat_run = 0  # frames in a row with the current stamp after the first
        self._warn = RateLimiter(OUT_OF_ORDER_WARN_S, clock)
        self.last_skip: SkipReason | None = None
        self._next_id = first_id
        self._clear()
        self.last_stamp: float | None = None

    def _clear(self) -> None:
        self._x = np.zeros((0, 4))  # x, y, vx, vy
        self._p = np.zeros((0, 4, 4))
        self._meta: list[_Meta] = []
        self._confirmed = np.zeros(0, bool)  # per track, as of this update's association

    def reset(self) -> None:
        """Drop every track and forget the time (ids keep counting up)."""
        self._clear()
        self.last_stamp = None
        self._repeat_run = 0

    def configure(self, config: TrackerConfig) -> None:
        """New settings for the next updates; existing tracks are kept."""
        config.validate()
        self.config = config

    def __len__(self) -> int:
        return len(self._meta)

    @property
    def next_id(self) -> int:
        """The id counter: the next new track gets this id (or, once ids have wrapped, the
        next one no live track has)."""
        return self._next_id

    # --- the filter -----------------------------------------------------------------------
    def _predict(self, dt: float) -> None:
        if not len(self._meta) or dt == 0.0:
            return
        f = np.eye(4)
        f[0, 2] = f[1, 3] = dt
        q = self.config.accel_noise**2
        q11, q12, q22 = q * dt**3 / 3.0, q * dt**2 / 2.0, q * dt
        qm = np.array(
            [[q11, 0, q12, 0], [0, q11, 0, q12], [q12, 0, q22, 0], [0, q12, 0, q22]]
        )
        self._x = self._x @ f.T
        self._p = f @ self._p @ f.T + qm

    def _meas_cov(self, size: np.ndarray) -> np.ndarray:
        """Centroid noise of detections of ``size`` (n, 2: width, height), (n, 2) diagonal
        variances: ``meas_noise²`` plus the variance of a point uniform over the box."""
        return self.config.meas_noise**2 + EXTENT_VARIANCE * np.square(size)

    def _correct(self, idx: np.ndarray, z: np.ndarray, r: np.ndarray) -> None:
        """Kalman update of tracks ``idx`` with centroids ``z`` (k, 2) of diagonal noise
        variances ``r`` (k, 2); Joseph form."""
        p = self._p[idx]
        rm = r[:, :, None] * np.eye(2)  # (k, 2, 2)
        s = p[:, :2, :2] + rm
        k = p[:, :, :2] @ np.linalg.inv(s)  # (k, 4, 2)
        y = z - self._x[idx, :2]
        self._x[idx] += (k @ y[:, :, None])[:, :, 0]
        ikh = np.eye(4) - np.concatenate([k, np.zeros_like(k)], axis=2)  # I - K H
        self._p[idx] = ikh @ p @ ikh.transpose(0, 2, 1) + k @ rm @ k.transpose(0, 2, 1)

    # --- association ----------------------------------------------------------------------
    def _pairs(
        self, tracks: np.ndarray, dets: np.ndarray, z: np.ndarray, r: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (track, detection) pairs inside the gate, with their association costs:
        (i, j, cost), ``i`` indexing ``tracks``, ``j`` indexing ``dets`` (indices into z and
        r), sorted by i then j.

        The cost is the negative log-likelihood of the innovation, d² + ln det S, with
        S = P + R (the track's position covariance plus the detection's ``r``) and d² the
        squared Mahalanobis distance. The gate is ``gate_px`` around the prediction; a
        tentative track's (velocity still unknown) widens to ``GATE_SIGMAS`` sigmas of S
        when that is larger. A confirmed track's never widens: over a long coast its
        sigmas grow to tens of px and the gate would take clutter or another target
        (measured in docs/results.md#tracking-on-generated-sequences).

        Beyond ``_DENSE_PAIRS`` pairs, only those a neighbour search (:func:`_within`)
        finds inside each track's widest gate are scored, so the cost grows with the pairs
        near each other, not with tracks × detections.
        """
        if not len(tracks) or not len(dets):
            empty = np.zeros(0, int)
            return empty, empty, np.zeros(0)
        gate_px = self.config.gate_px
        confirmed = self._confirmed[tracks]
        if len(tracks) * len(dets) <= _DENSE_PAIRS:
            i, j = np.divmod(np.arange(len(tracks) * len(dets)), len(dets))
        else:  # each track's widest gate: the one it has with the noisiest detection
            p, rmax = self._p[tracks], r[dets].max(axis=0)
            widest = GATE_SIGMAS * np.sqrt(np.maximum(p[:, 0, 0] + rmax[0], p[:, 1, 1] + rmax[1]))
            reach = np.where(confirmed, gate_px, np.maximum(gate_px, widest))
            i, j = _within(self._x[tracks, :2], z[dets], reach * (1.0 + _SEARCH_SLACK))
        # per pair, the operations of the whole-matrix form, in its order (same floats)
        t, d = tracks[i], dets[j]
        y = z[d] - self._x[t, :2]
        sxx = self._p[t, 0, 0] + r[d, 0]
        syy = self._p[t, 1, 1] + r[d, 1]
        sxy = self._p[t, 0, 1]
        det = sxx * syy - sxy * sxy
        d2 = (syy * y[:, 0] ** 2 - 2 * sxy * y[:, 0] * y[:, 1] + sxx * y[:, 1] ** 2) / det
        widened = np.maximum(gate_px, GATE_SIGMAS * np.sqrt(np.maximum(sxx, syy)))
        gate = np.where(confirmed[i], gate_px, widened)
        ok = np.square(y).sum(axis=1) <= np.square(gate)
        return i[ok], j[ok], (d2 + np.log(det))[ok]

    def _associate(
        self, tracks: np.ndarray, dets: np.ndarray, z: np.ndarray, r: np.ndarray
    ) -> list[tuple[int, int]]:
        """Gated Hungarian assignment of ``tracks`` (indices) to ``dets`` (indices into z
        and r)."""
        i, j, cost = self._pairs(tracks, dets, z, r)
        pairs = _assign(len(tracks), len(dets), i, j, cost)
        return [(int(tracks[a]), int(dets[b])) for a, b in pairs]

    # --- one frame ------------------------------------------------------------------------
    def update(
        self,
        stamp_s: float,
        detections: Sequence[Detection],
        image_size: tuple[int, int] | None = None,
        candidates: Sequence[Detection] = (),
        gated: Sequence[Detection] = (),
    ) -> list[Track]:
        """Advance to ``stamp_s`` and take this frame's detections; returns every live track
        (tentative ones included; see :attr:`Track.confirmed`).

        ``image_size`` (height, width): tracks predicted more than ``image_margin_px``
        outside the image are deleted (targets that left the field of view).
        ``candidates``: sub-threshold detections, associated only with the tracks left
        without a detection, and births. ``gated``: lower still, associated only with the
        confirmed tracks left without either, inside ``gate_px``; they start no track.
        ValueError, and the tracker unchanged, for a non-finite stamp or detection field,
        or a detection of negative size.

        A ``stamp_s`` equal to the previous frame's is the same instant, already tracked:
        the frame changes nothing (its detections are not used) and the tracks are returned
        as they are; it is counted in :attr:`repeated_stamps`, and warned about once a
        stretch of ``REPEATED_STAMP_WARN`` frames in a row with one stamp. One earlier than
        the latest tracked frame's by at most ``STREAM_RESTART_S`` is a frame out of order,
        likewise not tracked (counted in :attr:`out_of_order`, warned at most once per
        ``OUT_OF_ORDER_WARN_S``); further back, the tracker resets (:attr:`resets`).
        """
        cfg = self.config
        n_det = len(detections)
        n_cand = n_det + len(candidates)
        detections = [*detections, *candidates, *gated]  # candidates, gated after the detections
        fields = np.array(
            [[d.centroid_x, d.centroid_y, d.width, d.height, d.score] for d in detections], float
        ).reshape(-1, 5)
        _check_finite(stamp_s, fields, n_det, n_cand)  # before any change: a refusal loses nothing
        self.last_skip = None
        if self.last_stamp is not None and stamp_s < self.last_stamp:
            if self.last_stamp - stamp_s <= STREAM_RESTART_S:
                return self._out_of_order_frame(stamp_s)
            self.logger.warning(
                f"tracker: time went backwards from {self.last_stamp:.6f} s to {stamp_s:.6f} s; "
                f"{len(self._meta)} tracks dropped"
            )
            self.resets += 1
            self.reset()
        if stamp_s == self.last_stamp:
            return self._repeated(stamp_s)
        self._repeat_run = 0
        dt = 0.0 if self.last_stamp is None else stamp_s - self.last_stamp
        self.last_stamp = stamp_s
        self._predict(dt)
        # tracks silent for too long are gone before they can take a detection
        silent = np.array([stamp_s - m.last_hit_s for m in self._meta], float)
        self._keep(silent <= self._coast_limits(image_size))
        for m in self._meta:
            m.frames += 1

        z, wh = fields[:, :2], fields[:, 2:4]
        r = self._meas_cov(wh)
        free = np.arange(n_det)
        self._confirmed = np.array([m.confirmed for m in self._meta], bool)
        confirmed = np.flatnonzero(self._confirmed)
        tentative = np.flatnonzero(~self._confirmed)
        pairs = self._associate(confirmed, free, z, r)
        used = {d for _, d in pairs}
        free = np.array([d for d in free if d not in used], int)
        pairs += self._associate(tentative, free, z, r)
        taken = {t for t, _ in pairs}
        rest = np.array([t for t in range(len(self._meta)) if t not in taken], int)
        held = np.array(sorted({d for t, d in pairs if self._meta[t].confirmed}), int)
        more, merges = self._rest(rest, np.arange(n_det, n_cand), held, z, r, wh)
        pairs += more
        if len(gated):  # gated low threshold: confirmed tracks still without a detection
            taken = {t for t, _ in pairs + merges}
            left = np.array([t for t in rest if t not in taken and self._confirmed[t]], int)
            pairs += self._associate(left, np.arange(n_cand, len(detections)), z, r)
        used = {d for _, d in pairs}

        hit = np.zeros(len(self._meta), bool)
        if pairs or merges:
            ti = np.array([t for t, _ in pairs + merges], int)
            di = np.array([d for _, d in pairs + merges], int)
            self._correct(ti, z[di], r[di])
            hit[[t for t, _ in pairs]] = True
            for t, d in pairs:
                m, det = self._meta[t], detections[d]
                m.hits += 1
                m.misses = 0
                m.last_hit_s = stamp_s
                m.width += SIZE_SMOOTHING * (float(det.width) - m.width)
                m.height += SIZE_SMOOTHING * (float(det.height) - m.height)
                m.score += SCORE_SMOOTHING * (float(det.score) - m.score)
        keep = np.ones(len(self._meta), bool)
        for i, m in enumerate(self._meta):
            if not hit[i]:
                m.misses += 1
            if m.confirmed:
                continue
            if m.hits >= cfg.confirm_m and m.score >= cfg.min_score:
                m.confirmed = True
            elif m.frames >= cfg.confirm_n or m.hits + (cfg.confirm_n - m.frames) < cfg.confirm_m:
                keep[i] = False  # cannot reach M of its first N frames any more
        if image_size is not None:
            h, w = image_size
            mg = cfg.image_margin_px
            x, y = self._x[:, 0], self._x[:, 1]
            keep &= (x >= -mg) & (x <= w - 1 + mg) & (y >= -mg) & (y <= h - 1 + mg)
        self._keep(keep)
        births = [d for d in range(n_cand) if d not in used]  # gated ones start nothing
        self._birth(stamp_s, [detections[d] for d in births], z[births])
        return self.tracks()

    def _out_of_order_frame(self, stamp_s: float) -> list[Track]:
        """A frame stamped before the latest tracked one, by at most ``STREAM_RESTART_S``:
        counted, warned at most once per ``OUT_OF_ORDER_WARN_S``, not tracked. Before, it
        reset the tracker: one frame reordered by the network dropped every track."""
        assert self.last_stamp is not None
        self.out_of_order += 1
        self.last_skip = "out_of_order"
        self._repeat_run = 0
        if self._warn.allow("out_of_order"):
            self.logger.warning(
                f"tracker: a frame stamped {stamp_s:.6f} s, {self.last_stamp - stamp_s:.3f} s "
                f"before the latest tracked one ({self.last_stamp:.6f} s): out of order, not "
                f"tracked, the tracks kept ({self.out_of_order} such frames so far; over "
                f"{STREAM_RESTART_S:g} s back resets the tracks)"
            )
        return self.tracks()

    def _repeated(self, stamp_s: float) -> list[Track]:
        """A frame stamped as the previous one: counted, warned once a stretch, not tracked.
        Tracked, it was one instant counted twice (two hits toward M-of-N, two corrections
        from one measurement)."""
        self.repeated_stamps += 1
        self.last_skip = "repeated"
        self._repeat_run += 1
        if self._repeat_run == REPEATED_STAMP_WARN - 1:
            self.logger.warning(
                f"tracker: {REPEATED_STAMP_WARN} frames in a row stamped {stamp_s:.6f} s: a "
                "repeated stamp is the same instant, so these frames are not tracked and the "
                "tracks stand still until the stamps advance (said once a stretch; "
                f"{self.repeated_stamps} such frames so far); stamp the frames at capture"
            )
        return self.tracks()

    def _rest(
        self,
        rest: np.ndarray,
        cands: np.ndarray,
        held: np.ndarray,
        z: np.ndarray,
        r: np.ndarray,
        wh: np.ndarray,
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The tracks ``rest``, left without a detection: (pairs with the candidates
        ``cands``, merges).

        A merge is a confirmed track whose predicted box (its smoothed size) overlaps the
        box of a detection of ``held`` (those taken by confirmed tracks): its target is
        most likely inside that detection, merged with another track's (two targets
        crossing). It is corrected by that detection, whose large box makes it a weak
        measurement, instead of coasting into clutter or a candidate farther away; one
        Hungarian assignment chooses, per track, between a candidate and its merge (the
        cheaper of the two). A merge is not a hit: the track still counts as coasting and
        is deleted at its coast limit without a detection of its own.
        """
        if not len(rest) or not (len(cands) or len(held)):
            return [], []
        k, nc = len(rest), len(cands)
        # candidates, then one merge column per track (nc + its row)
        i, j, cost = self._pairs(rest, cands, z, r)
        best = np.zeros(k, int)
        mergeable = np.flatnonzero(self._confirmed[rest])
        if len(held) and len(mergeable):
            mi, mj, mc = self._pairs(rest[mergeable], held, z, r)
            t, h = rest[mergeable[mi]], held[mj]
            size = np.array([[self._meta[a].width, self._meta[a].height] for a in t]).reshape(-1, 2)
            half = (size + wh[h]) / 2.0
            overlap = (np.abs(z[h] - self._x[t, :2]) <= half).all(axis=1)
            rows, mj, mc = mergeable[mi[overlap]], mj[overlap], mc[overlap]
            # per track, its cheapest merge (the first in ``held`` of equal ones)
            order = np.lexsort((mj, mc, rows))
            first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]] if len(order) else order
            best[rows[first]] = mj[first]
            i = np.concatenate([i, rows[first]])
            j = np.concatenate([j, nc + rows[first]])
            cost = np.concatenate([cost, mc[first]])
        pairs, merges = [], []
        for a, b in _assign(k, nc + k, i, j, cost):
            if b < nc:
                pairs.append((int(rest[a]), int(cands[b])))
            else:
                merges.append((int(rest[a]), int(held[best[a]])))
        return pairs, merges

    def _coast_limits(self, image_size: tuple[int, int] | None) -> np.ndarray:
        """Per track, the seconds it may go without a detection: a confirmed track whose
        prediction is inside the image may coast as long as it has been held (birth to
        last detection), at least ``max_coast_s`` and at most ``max_coast_long_s``; any
        other, ``max_coast_s`` (a target that left the image cannot be seen again)."""
        cfg = self.config
        held = np.array([m.last_hit_s - m.born_s if m.confirmed else 0.0 for m in self._meta])
        limit = np.maximum(cfg.max_coast_s, np.minimum(cfg.max_coast_long_s, held))
        if image_size is not None and len(self._meta):
            h, w = image_size
            x, y = self._x[:, 0], self._x[:, 1]
            inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
            limit = np.where(inside, limit, cfg.max_coast_s)
        return limit

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self._x, self._p = self._x[keep], self._p[keep]
        self._meta = [m for m, k in zip(self._meta, keep) if k]

    def _birth(self, stamp_s: float, dets: list[Detection], z: np.ndarray) -> None:
        if not dets:
            return
        cfg = self.config
        n = len(dets)
        x = np.zeros((n, 4))
        x[:, :2] = z
        p0 = np.diag([cfg.meas_noise**2] * 2 + [cfg.init_speed**2] * 2)
        self._x = np.concatenate([self._x, x])
        self._p = np.concatenate([self._p, np.broadcast_to(p0, (n, 4, 4))])
        live = {m.id for m in self._meta}
        for d in dets:
            while self._next_id in live:  # only once ids have wrapped
                self._next_id = self._next_id % MAX_TRACK_ID + 1
            m = _Meta(
                self._next_id, stamp_s, stamp_s, float(d.width), float(d.height), float(d.score)
            )
            m.confirmed = cfg.confirm_m <= 1 and m.score >= cfg.min_score
            self._meta.append(m)
            live.add(m.id)
            self._next_id = self._next_id % MAX_TRACK_ID + 1

    def tracks(self) -> list[Track]:
        """Snapshots of every live track, oldest first."""
        now = self.last_stamp if self.last_stamp is not None else 0.0
        out = []
        # plain floats in bulk: per-element numpy scalars cost more than the rest together
        states = self._x.tolist()
        # per track: var x, var y, cov x-y, var vx, var vy, cov vx-vy
        covs = self._p[:, [0, 1, 0, 2, 3, 2], [0, 1, 1, 2, 3, 3]].tolist()
        for (x, y, vx, vy), (cxx, cyy, cxy, vxx, vyy, vxy), m in zip(states, covs, self._meta):
            if not m.confirmed:
                state = TrackState.TENTATIVE
            else:
                state = TrackState.CONFIRMED if m.misses == 0 else TrackState.COASTING
            out.append(
                Track(
                    id=m.id,
                    state=state,
                    x=x,
                    y=y,
                    vx=vx,
                    vy=vy,
                    width=m.width,
                    height=m.height,
                    score=m.score,
                    age_s=now - m.born_s,
                    hits=m.hits,
                    misses=m.misses,
                    time_since_update_s=now - m.last_hit_s,
                    position_cov=(cxx, cyy, cxy),
                    velocity_cov=(vxx, vyy, vxy),
                )
            )
        return out


def _within(a: np.ndarray, b: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j): the pairs of points ``a[i]``, ``b[j]`` at most ``radius[i]`` apart, sorted by
    i then j (a k-d tree of ``b``)."""
    hits = cKDTree(b).query_ball_point(a, radius, return_sorted=True)
    counts = np.fromiter(map(len, hits), int, len(hits))
    j = np.fromiter(itertools.chain.from_iterable(hits), int, int(counts.sum()))
    return np.repeat(np.arange(len(a)), counts), j


def _assign(
    rows: int, cols: int, i: np.ndarray, j: np.ndarray, cost: np.ndarray
) -> list[tuple[int, int]]:
    """The assignment of ``rows`` to ``cols`` over the feasible pairs (i[e], j[e]) of cost
    cost[e], sorted by row: the same as the Hungarian assignment of the whole matrix with
    ``_INFEASIBLE`` elsewhere (the most feasible pairs, then the cheapest). Beyond
    ``_DENSE_PAIRS`` cells, solved per connected component of the pairs: a component of one
    pair is that pair, one of up to ``_DENSE_COMPONENT`` cells a Hungarian assignment of its
    own rows and columns, a larger one a sparse assignment of its pairs (:func:`_sparse`)."""
    keep = cost < _INFEASIBLE
    i, j, cost = i[keep], j[keep], cost[keep]
    if not len(i):
        return []
    if rows * cols <= _DENSE_PAIRS:
        whole = np.full((rows, cols), _INFEASIBLE)
        whole[i, j] = cost
        a, b = linear_sum_assignment(whole)
        ok = whole[a, b] < _INFEASIBLE
        return list(zip(a[ok].tolist(), b[ok].tolist()))
    graph = coo_matrix((np.ones(len(i)), (i, rows + j)), shape=(rows + cols, rows + cols))
    _, label = connected_components(graph, directed=False)
    comp = label[i]
    single = np.bincount(comp)[comp] == 1
    pairs = list(zip(i[single].tolist(), j[single].tolist()))
    many = np.flatnonzero(~single)
    many = many[np.argsort(comp[many], kind="stable")]
    bounds = np.flatnonzero(np.diff(comp[many])) + 1
    for e in np.split(many, bounds) if len(many) else []:
        ri, ci = np.unique(i[e]), np.unique(j[e])
        si, sj = np.searchsorted(ri, i[e]), np.searchsorted(ci, j[e])
        if len(ri) * len(ci) > _DENSE_COMPONENT:
            a, b = _sparse(len(ri), len(ci), si, sj, cost[e])
        else:
            sub = np.full((len(ri), len(ci)), _INFEASIBLE)
            sub[si, sj] = cost[e]
            a, b = linear_sum_assignment(sub)
            ok = sub[a, b] < _INFEASIBLE
            a, b = a[ok], b[ok]
        pairs += zip(ri[a].tolist(), ci[b].tolist())
    return sorted(pairs)


def _sparse(
    rows: int, cols: int, i: np.ndarray, j: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): the pairs (rows a, columns b) of the assignment of ``rows`` to ``cols`` over
    the pairs (i, j) of ``cost`` alone (no dense matrix): the most pairs, then the cheapest,
    as :func:`_assign` (a full matching, LAPJVsp). Each row gets a column of its own, its
    "unassigned", at a cost above what any number of feasible pairs can save, so a full
    matching always exists and one more feasible pair always beats a cheaper set; costs are
    shifted to 1 and up (the solver takes no zero weight)."""
    shifted = cost - float(cost.min()) + 1.0  # in [1, top]
    # k + 1 feasible pairs cost at most (k + 1) x top, k of them at least k: with ``unset``
    # above rows x top, leaving a row unassigned never pays for a cheaper set of pairs
    unset = (rows + 1) * (float(shifted.max()) + 2.0)
    graph = csr_matrix(
        (
            np.concatenate([shifted, np.full(rows, unset)]),
            (np.concatenate([i, np.arange(rows)]), np.concatenate([j, cols + np.arange(rows)])),
        ),
        shape=(rows, cols + rows),
    )
    a, b = min_weight_full_bipartite_matching(graph)
    ok = b < cols
    return a[ok], b[ok]
