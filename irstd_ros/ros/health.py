"""Pipeline health counters: rates, latency percentiles, drops and errors by kind.

Pure Python, thread-safe; the node feeds it and turns :meth:`snapshot` into
``diagnostic_msgs/DiagnosticArray`` messages.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping

import numpy as np

from irstd_ros.core.statistics import percentile

LATENCY_WINDOW = 512  # most recent frames kept for latency percentiles
NOT_MEASURED = "n/a"  # a diagnostics value with no samples yet (never a made-up 0)
# error kinds that are notices about the stream, not a frame lost: the frame is processed
# (or none was involved), so a frame count must not add them
STREAM_NOTICES = frozenset({
    "stamp_backwards", "stamp_not_advancing", "size_changed", "tracker_reset", "camera_info",
    "camera_info_mismatch", "camera_info_frame", "incompatible_qos", "frame_id_changed",
    "stamp_future", "stamp_repeated",
})
# Where a frame's latency goes, in order (ms): header stamp -> the node's callback
# (camera, transport, deserialising), callback -> the worker (the queue), message ->
# array, the detector's pre-processing, inference and post-processing, then tracking,
# message building and publishing. Each gets a p50 in the snapshot: "<stage>_p50_ms".
STAGES = ("arrival", "queue", "convert", "pre", "infer", "post", "publish")


class PipelineStats:
    """Counts what came in, what went out, what was dropped and why."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.received = 0
        self.processed = 0
        self.dropped = 0  # superseded: pushed out of the full queue by a newer frame
        self.stale = 0  # older than input.max_age on arrival, not processed
        self.restarts = 0  # the stream's time went back (a replay's loop): no error
        self.errors: Counter[str] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.stage_ms: dict[str, deque[float]] = {
            s: deque(maxlen=LATENCY_WINDOW) for s in STAGES
        }
        self._mark = (self._clock(), 0, 0)
        self._problems_mark = 0  # errors + dropped + stale at the previous snapshot

    def on_received(self, superseded: int) -> None:
        """A frame was queued; ``superseded`` waiting frames were dropped to make room."""
        with self._lock:
            self.received += 1
            self.dropped += superseded

    def on_stale(self) -> int:
        """A frame received too old to be worth processing; returns the stale count."""
        with self._lock:
            self.received += 1
            self.stale += 1
            return self.stale

    def on_restart(self) -> int:
        """The stream restarted (its time went back: a replay's loop, a simulation reset);
        a notice, not a problem. Returns the restarts so far."""
        with self._lock:
            self.restarts += 1
            return self.restarts

    def on_dropped(self, frames: int) -> None:
        """``frames`` waiting frames were discarded (e.g. on deactivation)."""
        with self._lock:
            self.dropped += frames

    def on_processed(self, latency_ms: float | None, stages: Mapping[str, float]) -> None:
        """A frame was answered ``latency_ms`` after its stamp (None: not measured, e.g. no
        live stamp; left out of the percentiles); ``stages`` holds the :data:`STAGES`
        measured for it (ms; a stage not measured is left out)."""
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown latency stages {sorted(unknown)}; valid: {STAGES}")
        with self._lock:
            self.processed += 1
            if latency_ms is not None:
                self.latency_ms.append(latency_ms)
            for stage, ms in stages.items():
                self.stage_ms[stage].append(ms)

    def on_error(self, kind: str) -> int:
        """Count an error of ``kind``; returns how many of that kind so far."""
        with self._lock:
            self.errors[kind] += 1
            return self.errors[kind]

    def snapshot(self) -> dict[str, float | int | dict[str, int] | None]:
        """Totals, rates and counts since the previous snapshot (``received_since_last``:
        frames that arrived, stale ones too; ``problems_since_last``), latency percentiles
        (ms; None where nothing was measured yet, never a made-up 0)."""
        with self._lock:
            now = self._clock()
            t0, rec0, proc0 = self._mark
            dt = max(now - t0, 1e-9)
            self._mark = (now, self.received, self.processed)
            problems = sum(self.errors.values()) + self.dropped + self.stale
            new_problems, self._problems_mark = problems - self._problems_mark, problems
            lat = np.asarray(self.latency_ms)
            stages = {
                f"{s}_p50_ms": percentile(np.asarray(v), 50) if v else None
                for s, v in self.stage_ms.items()
            }
            return {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "stale": self.stale,
                "stream_restarts": self.restarts,
                "errors": dict(self.errors),
                "problems_since_last": new_problems,  # errors, drops and stale frames
                "received_since_last": self.received - rec0,
                "input_hz": (self.received - rec0) / dt,
                "output_hz": (self.processed - proc0) / dt,
                "latency_p50_ms": percentile(lat, 50) if lat.size else None,
                "latency_p99_ms": percentile(lat, 99) if lat.size else None,
                **stages,
            }
