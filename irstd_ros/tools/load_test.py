"""Load test of ``irstd_node``: a fast camera in front of a slower node.

``python -m irstd_ros.tools.load_test [--rate 200] [--duration 60] [--size 640x512] [--json]``

Starts the node as a process the way the launch file does (``config/irstd.yaml``, the
shipped model, ``model.backend`` torch-cpu unless ``--backend``), publishes mono16
frames at ``--rate`` for ``--duration`` seconds, and checks what the node's short frame
queue (``input.queue_size``, the oldest frame dropped when it is full) promises when the
node is slower than the camera:

* accounting: every frame that reached the node was processed, superseded (dropped),
  stale on arrival (``input.max_age``) or refused -- ``processed + dropped + stale +
  errors == received`` from the node's /diagnostics;
  frames sent but never received (DDS/QoS losses) and answers published but never
  received are reported separately, so ``sent - answered`` is fully explained;
* latency from the header stamp (set at publication) to the detections' arrival stays
  bounded -- no backlog builds up: its p99 is within 4 median inference times + 250 ms
  (with the default queue of two, at worst a frame waits for the inference in progress
  and the one queued before it, then for its own; the margin is for inference slowed
  down by other load). The medians of the first and last thirds
  of the run are reported to show any trend;
* the node's resident memory (RSS, sampled every second) stays flat: after the
  warm-up, the least-squares trend of the samples grows less than 5 % (a trend, because
  RSS swings by one inference's buffers from one sample to the next). A run too short to
  give the trend (``--duration`` under ``--warmup`` + 5 s) leaves it not judged, said so
  in the report, not failed.

Two goals are checked only when asked (they fail a run the checks above pass when the node
is slower than the camera, which is what this test stages by default):

* ``--expect-zero-drops``: no frame lost anywhere -- none sent but not received by the
  node, superseded, stale, refused, nor an answer lost;
* ``--min-fps HZ``: answers (detections received) arrive at ``HZ`` or more over the run.

The camera keeps its cadence like a real one: a send late by a period or more (the
process was descheduled) restarts the cadence from that send, with no catch-up burst of
frames back to back; the report gives the largest gap between two sends and the number of
such late sends. A percentile "p99" from fewer than 100 answers is their maximum, and is
printed as such with the count.

This is a benchmark, not a unit test; the exit code is 1 when a check fails (one not
judged fails nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.core.constants import WEIGHTS_HELP
from irstd_ros.core.parsing import non_negative_float, parse_size, positive_float, size_arg
from irstd_ros.core.stamps import NS_PER_S, stamp_ns
from irstd_ros.core.statistics import format_number, format_tail, json_safe, percentile
from irstd_ros.errors import ConfigError, IrstdError, one_line
from irstd_ros.inference.resources import cpu_model
from irstd_ros.ros.health import LATENCY_WINDOW, NOT_MEASURED, STAGES, STREAM_NOTICES
from irstd_ros.ros.transport import dds_environment, profile_environment
from irstd_ros.testing.node_process import NodeProcess, NodeProcessError, node_executable
from irstd_ros.tools.memory import cpu_seconds, rss_mib

DEFAULT_RATE_HZ = 200.0
DEFAULT_DURATION_S = 60.0
DEFAULT_SIZE = "640x512"
DEFAULT_BACKEND = "torch-cpu"
WARMUP_S = 10.0  # resident memory is compared from here on
RSS_WINDOW_S = 10.0  # medians reported for the start (after warm-up) and the end
RSS_GROWTH_LIMIT = 0.05
MIN_RSS_SAMPLES = 5  # one a second: the memory check needs --duration >= --warmup + this many s
LATENCY_INFER_FACTOR = 4.0  # p99 vs the node's median inference time
LATENCY_INFER_SLACK_MS = 250.0
PUBLISHER_DEPTH = 10
ANSWER_QOS_DEPTH = 100
DISTINCT_FRAMES = 16
NAMESPACE = "/irstd_load_test"
OWN_OPTIONS = {"qos.reliability": "--reliability", "model.backend": "--backend", "model.path": "--weights"}
START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0
PROCESSING = 1  # frames the node holds unaccounted beside its queue: the one being processed
LOG_TAIL_CHARS = 4000


def make_frames(width: int, height: int, count: int = DISTINCT_FRAMES) -> list[np.ndarray]:
    """mono16 sky frames (gradient, clouds, noise) with one small moving hot target."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = 8000 + 1500 * yy / height + 300 * np.sin(xx / 37.0) * np.cos(yy / 53.0)
    frames = []
    for i in range(count):
        cx, cy = width * (0.2 + 0.6 * i / count), height * 0.4
        target = 2500 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5**2))
        noise = rng.normal(0, 40, (height, width))
        frames.append(np.clip(sky + target + noise, 0, 65535).astype(np.uint16))
    return frames


def rss_trend(samples: Sequence[tuple[float, float]]) -> float | None:
    """Relative growth over ``samples`` (time, RSS) from a least-squares line.

    RSS swings by the size of one inference's buffers from sample to sample; the fitted
    trend over all samples measures what stays (a leak) rather than where one sample fell.
    """
    if len(samples) < MIN_RSS_SAMPLES:
        return None
    t = np.array([s[0] for s in samples], dtype=np.float64)
    k = np.array([s[1] for s in samples], dtype=np.float64)
    slope, intercept = np.polyfit(t, k, 1)
    start = intercept + slope * t[0]
    return float(slope * (t[-1] - t[0]) / start)


def memory_check(rss_growth: float | None, samples_after_warmup: int, elapsed: float,
                 warmup: float) -> tuple[bool | None, str | None]:
    """(verdict, why) of ``memory_flat``: whether the RSS trend after the warm-up
    (``rss_growth``, None where too few samples gave none) stays under
    :data:`RSS_GROWTH_LIMIT`. Not judged (None, why) on a run shorter than the warm-up +
    :data:`MIN_RSS_SAMPLES` s; failed (False, why) on a long enough run whose RSS gave too
    few samples (unreadable: memory is then not shown to be flat)."""
    if rss_growth is not None:
        return rss_growth < RSS_GROWTH_LIMIT, None
    if elapsed < warmup + MIN_RSS_SAMPLES:
        return None, (f"run shorter than warm-up + {MIN_RSS_SAMPLES} s ({elapsed:.0f} s run, "
                      f"{warmup:g} s warm-up)")
    return False, f"{samples_after_warmup} RSS samples after the warm-up, {MIN_RSS_SAMPLES} needed"


def next_due(due: float, now: float, period: float) -> tuple[float, bool]:
    """(when the next frame is due, whether this one was late) for a frame due at ``due``
    and sent at ``now``, one every ``period`` s.

    On time or late by less than a period, the cadence holds (``due + period``); late by a
    period or more (the process was descheduled), it restarts from ``now``: the next frame
    goes one period later, as from a camera, never a catch-up burst of frames back to back
    (which the node's short queue would drop as superseded)."""
    if now - due >= period:
        return now + period, True
    return due + period, False


class Pacing:
    """The camera's cadence (:func:`next_due`) and what it achieved: the largest gap
    between two sends and the sends late by a period or more."""

    def __init__(self, start: float, period: float) -> None:
        self.period = period
        self.due = start
        self.late = 0
        self.max_gap = 0.0
        self._last: float | None = None

    def ready(self, now: float) -> bool:
        return now >= self.due

    def sent(self, now: float) -> None:
        """A frame went at ``now``: schedule the next."""
        if self._last is not None:
            self.max_gap = max(self.max_gap, now - self._last)
        self._last = now
        self.due, late = next_due(self.due, now, self.period)
        self.late += late

    def summary(self) -> dict[str, Any]:
        return {"period_ms": 1e3 * self.period, "max_gap_ms": 1e3 * self.max_gap, "late_sends": self.late}


def frames_lost(r: dict[str, Any]) -> dict[str, int]:
    """Every frame lost in a result, by where (zero ones left out): not received by the
    node, superseded, stale, refused, answers lost."""
    losses = {
        "not received by the node": r["not_received_by_node"],
        "superseded": r["dropped_superseded"],
        "stale": r["dropped_stale"],
        "refused": r["refused"],
        "answers lost": r["answers_lost"],
    }
    return {k: int(v) for k, v in losses.items() if v}


def apply_goals(r: dict[str, Any], zero_drops: bool = False, min_fps: float | None = None) -> dict[str, Any]:
    """The opt-in goal checks added to a result (in place, returned): ``zero_drops``
    (``--expect-zero-drops``: :func:`frames_lost` empty) and ``min_fps``
    (``--min-fps``: the answer rate at least that, to within one frame over the run);
    each failure says why, and ``ok``
    is the verdict over every check again."""
    checks, failed = r.setdefault("checks", {}), r.setdefault("failed", {})
    if zero_drops:
        lost = frames_lost(r)
        checks["zero_drops"] = not lost
        if lost:
            failed["zero_drops"] = f"{sum(lost.values())} frames lost: " + ", ".join(
                f"{n} {where}" for where, n in lost.items())
    if min_fps is not None:
        # to within one frame over the run: a camera paced at exactly ``min_fps`` sends
        # N frames in a little over N periods, so even N answers of N read 29.99999 Hz
        slack_hz = 1.0 / r["elapsed_s"] if r["elapsed_s"] > 0 else 0.0
        checks["min_fps"] = r["answered_hz"] + slack_hz >= min_fps
        if not checks["min_fps"]:
            failed["min_fps"] = (f"answered {r['answered_hz']:.2f} Hz < {min_fps:g} Hz "
                                 f"(camera sent {r['sent_hz']:.1f} Hz)")
    r.setdefault("config", {}).update({"expect_zero_drops": zero_drops, "min_fps": min_fps})
    r["ok"] = verdict(checks)
    return r


def verdict(checks: dict[str, bool | None]) -> bool:
    """The run passes unless a check failed; one not judged (None) fails nothing."""
    return all(v is not False for v in checks.values())


def format_checks(checks: dict[str, bool | None], not_judged: dict[str, str],
                  failed: dict[str, str] | None = None) -> str:
    """``accounting ok, memory_flat not judged: <why>, clean_exit FAILED: <why>, ...``."""
    def word(name: str, value: bool | None) -> str:
        if value is None:
            return f"not judged: {not_judged.get(name, 'no figure')}"
        if value:
            return "ok"
        why = (failed or {}).get(name)
        return f"FAILED: {why}" if why else "FAILED"

    return ", ".join(f"{k} {word(k, v)}" for k, v in checks.items())


def use_dds_profile(path: Path) -> None:
    """Make ``path`` the Fast DDS XML profile of this process and of the node it starts
    (read when the first participant is created)."""
    if not path.is_file():
        raise ConfigError(f"--dds-profile {path}: no such file")
    os.environ.update(profile_environment(path))


def _pct(values: Sequence[float], q: float) -> float | None:
    return percentile(values, q) if len(values) else None


def accounting_closes(in_flight: int, settled: bool, queue_size: int, received: int, sent: int) -> bool:
    """Every frame sent is received at most once, and every frame received is processed,
    dropped, stale or failed, except, when the node did not settle, those its queue
    (``input.queue_size``) and its worker may still hold."""
    allowed = 0 if settled else queue_size + PROCESSING
    return 0 <= in_flight <= allowed and received <= sent


def _int(values: dict[str, str], key: str) -> int:
    return int(values.get(key, "0"))


def _float(values: dict[str, str], key: str) -> float:
    """A diagnostics figure; NaN where the node had none (absent or ``NOT_MEASURED``)."""
    value = values.get(key, NOT_MEASURED)
    return math.nan if value == NOT_MEASURED else float(value)


class Peer:
    """Publishes the camera stream and collects answers and /diagnostics (rclpy)."""

    def __init__(self, namespace: str, reliability: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from irstd_ros.core.constants import DETECTIONS_TOPIC
        from irstd_ros.ros.pipeline import consume_outputs

        reliable = reliability == "reliable"
        rel = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        self.node = rclpy.create_node("irstd_load_test_camera")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=PUBLISHER_DEPTH, reliability=rel)
        self.pub = self.node.create_publisher(Image, f"{namespace}/image", qos)
        self.answers: list[tuple[int, int]] = []  # (stamp ns, arrival ns)
        self.diag: dict[str, str] = {}
        self.diag_count = 0
        self._diag_name = f"{namespace}/irstd_node"
        self.node.create_subscription(
            Detection2DArray, f"{namespace}/detections", self._on_det, ANSWER_QOS_DEPTH
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        # the node builds no output nobody subscribes to: consume them all, as a deployment
        consume_outputs(self.node, namespace, skip=(DETECTIONS_TOPIC,))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="load_test_spin", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _spin(self) -> None:
        """Spin until closed, or until Ctrl-C / SIGTERM shut the context down (rclpy's
        handlers): the main thread then reports the stop, no thread traceback."""
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            while not self._stop.is_set():
                self.executor.spin_once(timeout_sec=0.05)

    def _on_det(self, msg: Any) -> None:
        arrival = time.time_ns()
        stamp = stamp_ns(msg.header)
        self.answers.append((stamp, arrival))

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(self._diag_name):
                self.diag = {kv.key: kv.value for kv in status.values}
                self.diag_count += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.executor.shutdown()
        self.node.destroy_node()


def run_load_test(
    rate: float = DEFAULT_RATE_HZ,
    duration: float = DEFAULT_DURATION_S,
    size: tuple[int, int] = (640, 512),
    reliability: str = "reliable",
    backend: str = DEFAULT_BACKEND,
    warmup: float = WARMUP_S,
    log_path: Path | None = None,
    weights: Path | None = None,
    node_params: Sequence[tuple[str, Any]] = (),
) -> dict[str, Any]:
    """Run the node against the stream (``weights``: the node's ``model.path``, the
    shipped model when None; ``node_params``: more (name, value) parameters of the node,
    over ``config/irstd.yaml``); returns the measurements and the checks."""
    for name, _ in node_params:
        if name in OWN_OPTIONS:
            raise ConfigError(f"--param {name}: use {OWN_OPTIONS[name]}")
    import rclpy
    from sensor_msgs.msg import Image

    from irstd_ros.ros.conversions import array_to_image_fields
    from irstd_ros.ros.launch_args import default_params_file, node_command

    width, height = size
    frames = []
    for arr in make_frames(width, height):
        msg = Image()
        for k, v in array_to_image_fields(arr, "mono16").items():
            setattr(msg, k, v)
        msg.header.frame_id = "load_test_camera"
        frames.append(msg)
    exe = node_executable()[0]
    params = ["-p", f"qos.reliability:={reliability}", "-p", f"model.backend:={backend}"]
    if weights is not None:
        from irstd_ros.inference.detector import resolve_model_path

        path = resolve_model_path(weights)
        if not path.is_file():
            raise ConfigError(f"--weights {weights}: no such checkpoint file")
        params += ["-p", f"model.path:={path.resolve()}"]
    params += [a for name, value in node_params for a in ("-p", f"{name}:={_ros_value(value)}")]
    cmd = node_command(default_params_file(), namespace=NAMESPACE, executable=exe, extra_ros_args=params)
    log_path = log_path or Path(tempfile.mkdtemp(prefix="irstd_load_test_")) / "node.log"
    node = NodeProcess(cmd, log_path)
    proc = node.proc
    peer: Peer | None = None
    rss: list[tuple[float, float]] = []  # (s, MiB)
    try:
        # in the try: a failure here still stops the node. args=[]: not sys.argv, where rcl
        # would take a FROM:=TO for a process-wide remap rule (our options are argparse's)
        rclpy.init(args=[])
        peer = Peer(NAMESPACE, reliability)
        node.wait_for(lambda: peer.pub.get_subscription_count() > 0, START_TIMEOUT_S, "subscription")
        # warm-up stream at the camera rate until the node has answered once (model loaded,
        # first inference done; best effort may lose the first frames), then let it drain
        period = 1.0 / rate
        end = time.monotonic() + START_TIMEOUT_S
        while not peer.answers:
            if proc.poll() is not None or time.monotonic() > end:
                raise TimeoutError("no answer to the warm-up stream")
            frames[0].header.stamp = peer.node.get_clock().now().to_msg()
            peer.pub.publish(frames[0])
            time.sleep(period)
        count_at_prime = peer.diag_count
        node.wait_for(lambda: _settled(peer.diag) and peer.diag_count > count_at_prime + 1,
                      DRAIN_TIMEOUT_S, "the node to finish the warm-up frames")
        base = dict(peer.diag)
        answered0 = len(peer.answers)

        sent = 0
        load_start = os.getloadavg()
        cpu0 = cpu_seconds(proc.pid)
        t0, t0_ns = time.monotonic(), time.time_ns()
        pacing, next_rss = Pacing(t0, period), t0
        while (now := time.monotonic()) < t0 + duration:
            if now >= next_rss:
                mib = rss_mib(proc.pid)
                if mib is not None:
                    rss.append((now - t0, mib))
                next_rss += 1.0
            if not pacing.ready(now):
                time.sleep(min(pacing.due - now, 0.002))
                continue
            msg = frames[sent % len(frames)]
            msg.header.stamp = peer.node.get_clock().now().to_msg()
            peer.pub.publish(msg)
            sent += 1
            pacing.sent(now)  # late by a period or more: the cadence restarts, no burst
        elapsed = time.monotonic() - t0
        cpu1 = cpu_seconds(proc.pid)

        count_at_end = peer.diag_count
        settled = True
        try:
            node.wait_for(lambda: _settled(peer.diag) and peer.diag_count > count_at_end + 1,
                          DRAIN_TIMEOUT_S, "the node to finish its last frame")
        except NodeProcessError:  # still taking frames in: reported as in flight
            node.check_alive()
            settled = False
        final = dict(peer.diag)
        time.sleep(0.5)  # the last answer's way back
        answers = peer.answers[answered0:]
    finally:
        if peer is not None:
            peer.close()
        with contextlib.suppress(Exception):
            rclpy.try_shutdown()
        t_sig = time.monotonic()
        code = node.stop(signal.SIGINT, EXIT_TIMEOUT_S)
        rc = None if node.killed else code
        exit_s = time.monotonic() - t_sig
        node_log = node.log_text()

    received = _int(final, "received") - _int(base, "received")
    processed = _int(final, "processed") - _int(base, "processed")
    dropped = _int(final, "dropped") - _int(base, "dropped")
    stale = _int(final, "stale") - _int(base, "stale")
    errors = _errors(final) - _errors(base)
    in_flight = received - processed - dropped - stale - errors
    answered = len(answers)
    latency = [(a - s) / 1e6 for s, a in answers]
    third = max(1, len(latency) // 3)
    lat_first, lat_last = latency[:third], latency[-third:]
    p50_first, p50_last = _pct(lat_first, 50), _pct(lat_last, 50)
    p99 = _pct(latency, 99)
    window = node_window(final, processed)
    infer_p50 = window["infer_p50_ms"]
    after = [(t, k) for t, k in rss if t >= warmup]
    rss_start = [k for t, k in after if t < warmup + RSS_WINDOW_S]
    rss_end = [k for t, k in after if t >= elapsed - RSS_WINDOW_S]
    rss_growth = rss_trend(after)
    memory_flat, memory_why = memory_check(rss_growth, len(after), elapsed, warmup)
    checks: dict[str, bool | None] = {
        "accounting": accounting_closes(in_flight, settled, _int(final, "queue_size"), received, sent),
        "latency_bounded": bool(p99 is not None
                                and p99 <= LATENCY_INFER_FACTOR * infer_p50 + LATENCY_INFER_SLACK_MS),
        "memory_flat": memory_flat,  # None: not judged (too short a run)
        "clean_exit": rc == 0 and "Traceback" not in node_log,
    }
    not_judged = {"memory_flat": memory_why} if memory_flat is None and memory_why else {}
    failed = {"memory_flat": memory_why} if memory_flat is False and memory_why else {}
    return {
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
            "python": platform.python_version(), "rmw": rclpy.get_rmw_implementation_identifier(),
            "dds_env": dds_environment(),
        },
        "config": {
            "rate_hz": rate, "duration_s": duration, "size": f"{width}x{height}",
            "encoding": "mono16", "reliability": reliability, "backend": final.get("backend"),
            "publisher_depth": PUBLISHER_DEPTH, "node_queue_size": final.get("queue_size"),
            "node_qos_depth": final.get("qos_depth"),
            "node_params": dict(node_params), "warmup_s": warmup,
        },
        "sent": sent,
        "elapsed_s": elapsed,
        "sent_hz": sent / elapsed,
        "pacing": pacing.summary(),
        "received_at_node": received,
        "not_received_by_node": sent - received,
        "processed": processed,
        "dropped_superseded": dropped,
        "dropped_stale": stale,
        "refused": errors,
        "in_flight_at_end": in_flight,
        "settled": settled,
        "answered": answered,
        "answers_lost": processed - answered,
        "answered_hz": answered / elapsed,
        "latency_ms": {
            "p50": _pct(latency, 50), "p99": p99, "max": max(latency, default=None),
            "n": len(latency),  # p99 of fewer than 100 is their max
            "p50_first_third": p50_first, "p50_last_third": p50_last,
        },
        **window,
        "node_cpu_cores": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / elapsed,
        "answers": [(round((a - t0_ns) / NS_PER_S, 2), round((a - s) / 1e6, 1)) for s, a in answers],
        "rss_mib": {
            "after_warmup": float(np.median(rss_start)) if rss_start else None,
            "end": float(np.median(rss_end)) if rss_end else None,
            "max": max(k for _, k in rss) if rss else None,
            "growth_pct": 100 * rss_growth if rss_growth is not None else None,
            "samples": [(round(t, 1), round(k, 1)) for t, k in rss],
        },
        "exit_code": rc,
        "exit_s": exit_s,
        "checks": checks,
        "not_judged": not_judged,
        "failed": failed,
        "ok": verdict(checks),
        "node_log": str(log_path),
    }


def node_window(final: dict[str, str], processed: int) -> dict[str, Any]:
    """The node's own figures from its last /diagnostics (``processed``: frames it
    processed during the run). They are percentiles over its last
    :data:`~irstd_ros.ros.health.LATENCY_WINDOW` processed frames, which still hold the
    warm-up's (the first inference: seconds) when the run processed fewer:
    ``node_window_includes_warmup``."""
    return {
        "node_latency_ms": {"p50": _float(final, "latency_p50_ms"), "p99": _float(final, "latency_p99_ms")},
        "infer_p50_ms": _float(final, "infer_p50_ms"),
        "node_stages_p50_ms": {s: _float(final, f"{s}_p50_ms") for s in STAGES},
        "node_window_includes_warmup": processed < LATENCY_WINDOW,
    }


def _ros_value(value: Any) -> str:
    """A parameter value as ``-p name:=value`` spells it (YAML: true/false, not True/False)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _settled(values: dict[str, str]) -> bool:
    """Every frame the node received is accounted for (no frame pending or in flight)."""
    done = (_int(values, "processed") + _int(values, "dropped") + _int(values, "stale")
            + _errors(values))
    return bool(values) and done == _int(values, "received")


def _errors(values: dict[str, str]) -> int:
    """Frames the node failed on (its ``errors.*`` counters less the stream notices, which
    count no lost frame)."""
    return sum(
        int(v) for k, v in values.items() if k.startswith("errors.") and k[len("errors."):] not in STREAM_NOTICES
    )


def format_report(r: dict[str, Any]) -> str:
    """The result as a Markdown table (what docs/benchmarks.md shows)."""
    c, lat, rss = r["config"], r["latency_ms"], r["rss_mib"]
    window = " (its last frames, warm-up included)" if r.get("node_window_includes_warmup") else ""
    pacing = r.get("pacing")
    rows = [
        ("frames sent (camera)", f"{r['sent']} ({r['sent_hz']:.1f} Hz)"),
        *([("camera pacing: largest gap between sends (ms) / sends late by a period or more",
            f"{pacing['max_gap_ms']:.0f} / {pacing['late_sends']}")] if pacing else []),
        ("received by the node", str(r["received_at_node"])),
        ("not taken by the node (sent - received)", str(r["not_received_by_node"])),
        ("processed", str(r["processed"])),
        ("dropped, superseded by a newer frame", str(r["dropped_superseded"])),
        ("dropped, stale on arrival (input.max_age)", str(r["dropped_stale"])),
        ("refused (errors)", str(r["refused"])),
        ("in flight at the end (received - processed - dropped - stale - refused)",
         str(r["in_flight_at_end"])),
        ("answered (detections received)", f"{r['answered']} ({r['answered_hz']:.2f} Hz)"),
        ("answers lost (processed - answered)", str(r["answers_lost"])),
        ("latency stamp -> answer p50 / p99 / max (ms)",
         f"{format_number(lat['p50'], '.0f')} / {format_tail(lat['p99'], lat.get('n', r['answered']), '.0f')} / "
         f"{format_number(lat['max'], '.0f')}"),
        ("latency p50 first third / last third (ms)",
         f"{format_number(lat['p50_first_third'], '.0f')} / {format_number(lat['p50_last_third'], '.0f')}"),
        (f"node inference p50{window} (ms)", format_number(r["infer_p50_ms"], ".0f")),
        ("node stages p50" + window + ": " + " / ".join(STAGES) + " (ms)",
         " / ".join(format_number(r["node_stages_p50_ms"].get(s), ".1f") for s in STAGES)),
        ("node CPU used (cores)", format_number(r["node_cpu_cores"], ".2f")),
        ("node RSS median, 10 s after warm-up / last 10 s / max (MiB)",
         f"{format_number(rss['after_warmup'])} / {format_number(rss['end'])} / {format_number(rss['max'])}"),
        ("node RSS trend after warm-up (growth)", f"{format_number(rss['growth_pct'], '+.2f')} %"),
        ("node exit code after SIGINT (time to exit)", f"{r['exit_code']} ({r['exit_s']:.1f} s)"),
    ]
    env = r["machine"].get("dds_env") or {}
    transport = ", ".join(f"{k}={v}" for k, v in env.items()) or "default transport"
    head = (
        f"{c['size']} {c['encoding']} at {c['rate_hz']:g} Hz for {c['duration_s']:g} s, "
        f"QoS {c['reliability']} (node depth {c.get('node_qos_depth', '?')}), backend {c['backend']}, "
        f"{r['machine']['cpu']} ({r['machine']['cores']} cores), {r['machine']['rmw']} "
        f"({transport}), load average {r['machine']['loadavg_start'][0]:.1f} at the start"
    )
    checks = format_checks(r["checks"], r.get("not_judged", {}), r.get("failed", {}))
    lines = [head, "", "| measure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", f"checks: {checks}"]
    return "\n".join(lines)


DESCRIPTION = __doc__.split("\n\n")[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The load test's options (``python -m irstd_ros.tools.load_test``, ``irstd load-test``)."""
    parser.add_argument("--rate", type=positive_float, default=DEFAULT_RATE_HZ, metavar="HZ",
                        help="camera frame rate, Hz (default: %(default)g)")
    parser.add_argument("--duration", type=positive_float, default=DEFAULT_DURATION_S, metavar="SEC",
                        help="seconds of the timed stream, after the node's first answer; the memory check "
                        f"needs at least --warmup + {MIN_RSS_SAMPLES} (default: %(default)g)")
    parser.add_argument("--size", type=size_arg, default=parse_size(DEFAULT_SIZE), metavar="WIDTHxHEIGHT",
                        help=f"frame size (default: {DEFAULT_SIZE})")
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable",
                        help="QoS reliability of the camera and the node (default: %(default)s)")
    parser.add_argument("--backend", type=_backend_arg, default=DEFAULT_BACKEND, metavar="NAME",
                        help="the node's inference backend, model.backend (default: %(default)s)")
    parser.add_argument("--weights", type=Path, default=None, help=f"the node's model.path: {WEIGHTS_HELP}")
    parser.add_argument("--dds-profile", type=Path, default=None,
                        help="Fast DDS XML profile for the camera and the node, e.g. "
                        "config/dds/fastdds_large_images.xml (default: the environment's)")
    parser.add_argument("--param", dest="node_params", action="append", default=[],
                        type=_override_arg, metavar="NAME:=VALUE",
                        help="another node parameter (README, 'Parameters'), e.g. qos.depth:=1; repeatable")
    parser.add_argument("--warmup", type=non_negative_float, default=WARMUP_S, metavar="SEC",
                        help="seconds of the timed stream before the node's memory (RSS) counts (default: %(default)g)")
    parser.add_argument("--expect-zero-drops", action="store_true",
                        help="also fail (exit 1, with the reason) when any frame is lost: sent but not "
                        "received by the node, superseded by a newer one, stale, refused, or its answer "
                        "lost (off by default: the default --rate is far above what a CPU node keeps up with)")
    parser.add_argument("--min-fps", type=positive_float, default=None, metavar="HZ",
                        help="also fail (exit 1, with the reason) when answers (detections received) "
                        "arrive at less than HZ over the run, e.g. 30 with --rate 30 (default: not checked)")
    parser.add_argument("--log", type=Path, default=None,
                        help="file the node's output is written to (default: a temporary folder's node.log)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object instead of text")


def _override_arg(text: str) -> tuple[str, Any]:
    from irstd_ros.ros.params import parse_override

    try:
        return parse_override(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _backend_arg(text: str) -> str:
    """``--backend``: a name the node takes as ``model.backend`` (checked up front, not by
    the node after it started)."""
    return str(_override_arg(f"model.backend:={text}")[1])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m irstd_ros.tools.load_test``: a failure is one line (``load_test: error:
    ...``), exit 1 (a file problem such as ``--log`` naming a folder too), Ctrl-C one line
    and exit 130; under ``irstd load-test`` the CLI's own line and exit code."""
    parser = argparse.ArgumentParser(prog="python -m irstd_ros.tools.load_test", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)  # --rate, --duration, --warmup checked by their types
    try:
        return run(args)
    except (IrstdError, OSError) as exc:
        print(f"load_test: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("load_test: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    min_fps = getattr(args, "min_fps", None)
    for option, value in (("--rate", args.rate), ("--duration", args.duration),
                          *((("--min-fps", min_fps),) if min_fps is not None else ())):
        if not 0 < value < math.inf:  # also for a Namespace built without the parser: nan, inf
            raise ConfigError(f"{option} must be a finite number > 0, got {value:g}")
    if not 0 <= args.warmup < math.inf:
        raise ConfigError(f"--warmup must be a finite number >= 0, got {args.warmup:g}")
    if args.duration < args.warmup + MIN_RSS_SAMPLES:
        print(f"note: memory_flat will not be judged: --duration {args.duration:g} s is shorter than "
              f"--warmup {args.warmup:g} s + {MIN_RSS_SAMPLES} s", file=sys.stderr)
    elif args.duration < args.warmup + 2 * RSS_WINDOW_S:
        print(f"note: memory_flat is judged on {args.duration - args.warmup:g} s after the warm-up "
              f"(the RSS medians of the first and last {RSS_WINDOW_S:g} s overlap)", file=sys.stderr)
    if args.dds_profile is not None:
        use_dds_profile(args.dds_profile)
    try:
        result = run_load_test(args.rate, args.duration, args.size, args.reliability,
                               args.backend, args.warmup, args.log, args.weights,
                               args.node_params)
    except (RuntimeError, TimeoutError) as exc:  # rclpy's failures, a node that never answers
        raise NodeProcessError(f"the load test stopped: {exc}") from None
    apply_goals(result, getattr(args, "expect_zero_drops", False), getattr(args, "min_fps", None))
    if args.json:
        print(json.dumps(json_safe(result), indent=2, allow_nan=False))
    else:
        print(format_report(result))
    if not result["ok"]:
        with contextlib.suppress(OSError):
            print(Path(result["node_log"]).read_text()[-LOG_TAIL_CHARS:], file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
