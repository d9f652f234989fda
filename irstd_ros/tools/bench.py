"""``irstd bench``: latency, throughput and peak memory of every backend here, and the node.

Each (model, backend) pair runs in its own child process (``python -m irstd_ros.tools.bench
--worker SPEC``), so that its peak memory is its own: the child reports the kernel's
resident-set high-water mark (``VmHWM``, :mod:`irstd_ros.tools.memory`) after each resolution
(sizes run in ascending order, so the mark after a size is that size's peak; it includes
the Python + torch runtime, reported alone as ``base_mem_mb``). Not tracemalloc, which
does not see torch's allocations.

Timings: wall clock per ``backend.predict`` (pad, infer, sigmoid, crop) on a synthetic IR
frame normalised with the checkpoint's rule (what the node hands the backend) after
warm-up calls, repeated until a time budget or an iteration cap; p50/p99 are nearest-rank
percentiles, FPS = calls / total time; a p99 of fewer than
:data:`~irstd_ros.core.statistics.TAIL_SAMPLES` calls is their maximum, printed as
``max X (n=N)`` (:func:`~irstd_ros.core.statistics.format_tail`; the count is the row's
``p99_samples``). Threads: 2 for every backend (torch intra-op, ONNX Runtime intra-op,
OpenVINO inference threads). The same child also times the node's own work around the
backend on that frame, as the node does it: :meth:`Detector.detect` on the backend's
probabilities with the node's default parameters (``config/irstd.yaml``: the checkpoint's
threshold, tracking on with the checkpoint's candidate and gated thresholds), its own
``pre`` (grey conversion + :func:`normalize`) and ``post`` (NaN check, target extraction,
and the tracker's candidate and gated extractions) timings, as p50 and as a share of the
backend's p50.

Besides the registered backends, :data:`BENCH_VARIANTS` names backend + option
combinations (``openvino-dynamic``: one model compiled for any size). ``openvino-int8``
is prepared like the exports: its INT8 IR is calibrated once
(:func:`irstd_ros.tools.quantize.export_int8`, no accuracy measurement) into the bench's
cache before the timed child starts, or copied from the default cache with its accuracy
record (and ``openvino-int8-bf16``'s, which compiles that IR); ``openvino-bf16``'s accuracy
record (``irstd export --backend openvino-bf16``) is copied likewise, so the node row's
``auto`` gates on what it would find on this machine.
:func:`format_table` prints backend x precision x size side by side with the speed-up
over ``openvino`` FP32 (static shapes).

The node row runs the whole ``irstd_node`` in one process: a driver node publishes a
mono16 ``image``, the node (``IrstdNode``, parameters ``model.path``/``model.backend``)
converts, scales, infers, extracts targets and publishes; the time is from publish to
receipt of ``detections`` (closed loop: the next frame goes when the answer is in). The
same process then times its backend's ``predict`` alone, so the ROS + pre/post-processing
overhead is a ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.core.normalization import normalize
from irstd_ros.core.statistics import format_number, format_tail, json_safe, percentile
from irstd_ros.errors import CheckpointError, ConfigError
from irstd_ros.tools.memory import peak_rss_mib, reset_peak_rss, rss_mib

THREADS = 2
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"
OMP_WAIT_POLICY_DEFAULT = "PASSIVE"
FULL_SIZES = ((256, 256), (512, 640), (1024, 1280))  # (H, W): 256x256, 640x512, 1280x1024
QUICK_SIZES = ((32, 32), (48, 64))
NODE_SIZE = (512, 640)
QUICK_NODE_SIZE = (64, 80)
FULL_MODELS = ("shipped", "paper")
QUICK_MODELS = ("config:tiny",)  # said as what it is: the network, random weights (no note)
QUICK_BACKENDS = ("torch-cpu",)
WARMUP_CALLS = 2
QUICK_WARMUP_CALLS = 1
BUDGET_S = 4.0  # timed seconds per (backend, model, size) cell
QUICK_BUDGET_S = 0.2
MIN_CALLS = 3
MAX_CALLS = 200
QUICK_MAX_CALLS = 5
NODE_FRAMES = 40
QUICK_NODE_FRAMES = 4
NODE_WARMUP = 3
QUICK_NODE_WARMUP = 1
NODE_TIMEOUT_S = 60.0  # per frame answer
CHILD_TIMEOUT_S = 900.0
NODE_OVERHEAD_TARGET = 0.10  # the node may add at most 10 % to its backend's latency
MODEL_SEED = 0
# backends whose artefact (ONNX, OpenVINO IR) is exported once per weights into the cache;
# the bench exports it in a separate child first, so the measured process only loads it
PREPARED_BACKENDS = (
    "onnxruntime", "openvino", "openvino-bf16", "openvino-dynamic", "openvino-int8", "openvino-int8-dynamic",
    "openvino-int8-bf16",
)
# bench name -> (registered backend, BackendOptions fields)
BENCH_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "openvino-dynamic": ("openvino", {"dynamic_shapes": True}),
    "openvino-int8-dynamic": ("openvino-int8", {"dynamic_shapes": True}),
}
PRECISIONS = {  # the rest: fp32
    "openvino-bf16": "bf16", "openvino-int8": "int8", "openvino-int8-dynamic": "int8", "openvino-int8-bf16": "int8+bf16",
}
REFERENCE = "openvino"  # ratios are its p50 over each row's p50 (same model and size)
OVERHEAD_CALLS = 20  # pre / post timings per size
FRAME_SEED = 0
P50, P99 = 50.0, 99.0
# Synthetic 14-bit-ish IR frame: cold background, a few small warm targets.
FRAME_BACKGROUND = 7000.0
FRAME_NOISE = 20.0
FRAME_TARGETS = 5
TARGET_AMPLITUDE = 400.0
TARGET_SIGMA = 1.2
TARGET_MARGIN = 8


# --- helpers --------------------------------------------------------------------------------
def synthetic_frame(height: int, width: int, seed: int = FRAME_SEED) -> np.ndarray:
    """(H, W) uint16 IR-like frame with a few Gaussian point targets."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(FRAME_BACKGROUND, FRAME_NOISE, (height, width))
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(FRAME_TARGETS):
        cy = rng.integers(min(TARGET_MARGIN, height - 1), max(height - TARGET_MARGIN, 1))
        cx = rng.integers(min(TARGET_MARGIN, width - 1), max(width - TARGET_MARGIN, 1))
        frame += TARGET_AMPLITUDE * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * TARGET_SIGMA**2))
    return np.clip(frame, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def unit_frame(height: int, width: int) -> np.ndarray:
    """The synthetic frame scaled to [0, 1] the way the detector does (``auto``)."""
    from irstd_ros.inference.preprocess import to_unit_range

    return to_unit_range(synthetic_frame(height, width)).astype(np.float32)


def machine() -> dict[str, Any]:
    """CPU model, cores, library versions, the normalisation's asinh path and the load
    average now."""
    from irstd_ros.core.normalization import ASINH_LOG_FORM
    from irstd_ros.inference.resources import cpu_flags, cpu_identity, cpu_model

    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_identity": cpu_identity()}
    flags = cpu_flags()
    if flags is not None:
        info["avx512_bf16"] = "avx512_bf16" in flags
    import torch

    info["torch"] = torch.__version__
    for mod in ("onnxruntime", "openvino"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    info["asinh"] = "log form (AVX2)" if ASINH_LOG_FORM else "numpy arcsinh"
    info["loadavg"] = loadavg()
    return info


def loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


# --- models ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model to measure: a checkpoint path, or a named config with random weights."""

    label: str
    path: str | None = None
    config: str | None = None
    note: str = ""


SHIPPED = "shipped"  # the default shipped model, as --weights is when not given
SHIPPED_PREFIX = "shipped:"  # shipped:NAME: that shipped model's checkpoint, as --weights NAME
CONFIG_PREFIX = "config:"  # config:NAME: that network with random weights


def model_name(item: str) -> str:
    """One ``--models`` item as :func:`resolve_models` measures it: ``shipped:NAME`` the
    path of that shipped checkpoint (what ``--weights NAME`` loads), ``config:NAME`` the
    config name; ``shipped``, ``*.safetensors`` files and config names stay. A bare word is
    a name, never a file: one that names no model is a :class:`ConfigError` listing the
    valid forms (a file not named ``*.safetensors`` too)."""
    from irstd_ros.core.constants import SHIPPED_MODELS
    from irstd_ros.inference.detector import default_model_path
    from irstd_ros.models.config import NAMED_CONFIGS

    if item.startswith(SHIPPED_PREFIX):
        name = item.removeprefix(SHIPPED_PREFIX)
        if name not in SHIPPED_MODELS:
            raise ConfigError(f"--models {item}: no shipped model {name!r}; the shipped models are "
                              f"{', '.join(SHIPPED_MODELS)}")
        return str(default_model_path(name))
    if item.startswith(CONFIG_PREFIX):
        name = item.removeprefix(CONFIG_PREFIX)
        if name not in NAMED_CONFIGS:
            raise ConfigError(f"--models {item}: unknown config {name!r}; valid: {', '.join(NAMED_CONFIGS)}")
        return name
    if item == SHIPPED or item.endswith(".safetensors") or item in NAMED_CONFIGS:
        return item
    hint = " (a checkpoint file must be named *.safetensors)" if Path(item).expanduser().exists() else ""
    raise ConfigError(
        f"--models {item}: unknown model{hint}; valid: {SHIPPED}, {SHIPPED_PREFIX}NAME "
        f"({', '.join(SHIPPED_MODELS)}), a checkpoint file (*.safetensors), or a config name "
        f"or {CONFIG_PREFIX}NAME ({', '.join(NAMED_CONFIGS)})"
    )


def resolve_models(names: Sequence[str]) -> list[ModelSpec]:
    """The models ``names`` say (:func:`model_name`'s forms): ``shipped`` (falls back to
    random ``tiny`` when the file is missing), checkpoint files, config names; a name that
    names none is a :class:`ConfigError` listing the valid forms, and a checkpoint that
    cannot be loaded (corrupt, truncated, another architecture) a :class:`CheckpointError`
    naming it, before any cell runs. A bare name that is both a config and a shipped
    model's (``tiny``) is the config, with a note on stderr saying how to name the
    checkpoint."""
    from irstd_ros.core.constants import SHIPPED_MODELS
    from irstd_ros.inference.detector import default_model_path

    specs = []
    for item in names:
        name = model_name(item)
        if item == name and item in SHIPPED_MODELS:
            print(f"note: --models {item} is the {item} network with random weights "
                  f"({CONFIG_PREFIX}{item}); the shipped checkpoint is {SHIPPED_PREFIX}{item}", file=sys.stderr)
        if name == SHIPPED:
            path = default_model_path()
            if path.is_file():
                _check_loads(name, path)
                specs.append(ModelSpec("shipped", path=str(path), note=f"shipped model {path.name}"))
            else:
                specs.append(ModelSpec("tiny-random", config="tiny", note=f"shipped model missing ({path}): random-weight tiny config"))
        elif name.endswith(".safetensors"):
            path = Path(name).expanduser()
            if not path.is_file():
                raise ConfigError(f"--models {item}: no such checkpoint file")
            _check_loads(item, path)
            specs.append(ModelSpec(path.stem, path=str(path), note=f"checkpoint {path}"))
        else:
            specs.append(ModelSpec(name, config=name, note=f"{name} config, random weights (seed {MODEL_SEED})"))
    return specs


def _check_loads(name: str, path: Path) -> None:
    """:class:`CheckpointError` naming ``--models name`` unless the checkpoint at ``path``
    loads: a model named explicitly that cannot be measured fails the command up front,
    rather than each of its cells being skipped."""
    from irstd_ros.checkpoint import load_checkpoint

    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"--models {name}: {exc}") from None


def load_model(spec: ModelSpec) -> tuple[Any, Any]:
    """(model, CheckpointInfo) of a spec."""
    import torch

    from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint
    from irstd_ros.models import build_model, named_config

    if spec.path:
        model, info, _ = load_checkpoint(spec.path)
        return model, info
    torch.manual_seed(MODEL_SEED)
    cfg = named_config(spec.config or "tiny")
    return build_model(cfg).eval(), CheckpointInfo(cfg)


# --- the worker (one child per model x backend) ---------------------------------------------
@dataclass
class WorkerSpec:
    backend: str
    model: ModelSpec
    sizes: list[tuple[int, int]]
    cache_dir: str
    budget_s: float = BUDGET_S
    warmup: int = WARMUP_CALLS
    max_calls: int = MAX_CALLS
    threads: int = THREADS
    extra: dict[str, Any] = field(default_factory=dict)


def time_calls(fn: Any, warmup: int, budget_s: float, max_calls: int) -> tuple[list[float], float]:
    """Per-call wall times (ms) after ``warmup`` calls, and the first call's time (ms): at
    least :data:`MIN_CALLS`, then until ``budget_s`` has passed or ``max_calls`` were timed
    (``budget_s`` :data:`math.inf`: exactly ``max_calls``)."""
    t0 = time.perf_counter()
    fn()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup - 1):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < MIN_CALLS or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times, first_ms


def run_worker(spec: WorkerSpec) -> dict[str, Any]:
    """Create the backend, time each size; rows plus errors (runs inside the child)."""
    import torch

    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.select import create_backend

    torch.set_num_threads(spec.threads)
    model, info = load_model(spec.model)
    name, variant = BENCH_VARIANTS.get(spec.backend, (spec.backend, {}))
    options = BackendOptions(threads=spec.threads, cache_dir=spec.cache_dir, **{**variant, **spec.extra})
    t0 = time.perf_counter()
    backend = create_backend(name, model, info, options)
    create_s = time.perf_counter() - t0
    base = rss_mib()
    create_peak = peak_rss_mib()
    reset = reset_peak_rss()
    rows = []
    for h, w in sorted(spec.sizes, key=lambda s: s[0] * s[1]):
        raw = synthetic_frame(h, w)
        frame = normalize(raw, info.norm)
        times, first_ms = time_calls(lambda f=frame: backend.predict(f), spec.warmup, spec.budget_s, spec.max_calls)
        p50 = percentile(times, P50)
        rows.append(
            {
                "backend": spec.backend,
                "precision": PRECISIONS.get(spec.backend, "fp32"),
                "shapes": "dynamic" if options.dynamic_shapes else "static",
                "model": spec.model.label,
                "height": h,
                "width": w,
                "p50_ms": p50,
                "p99_ms": percentile(times, P99),
                "p99_samples": len(times),  # under TAIL_SAMPLES: p99_ms is their max
                "fps": len(times) / (sum(times) / 1e3),
                **node_work(raw, backend.predict(frame), info, p50),
                "peak_mem_mb": peak_rss_mib(),
                "base_mem_mb": base,
                "create_peak_mem_mb": create_peak,
                "peak_reset": reset,
                "calls": len(times),
                "first_call_ms": first_ms,
                "create_s": create_s,
            }
        )
    return {"rows": rows, "describe": json_safe(backend.describe())}


class _Answer:
    """A backend that answers every frame with the same probabilities (what the timed
    backend gave): :meth:`Detector.detect` then times the node's own work alone."""

    name = "bench-probabilities"

    def __init__(self, prob: np.ndarray) -> None:
        self.prob = prob

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.prob


def node_detector(backend: Any, info: Any) -> Any:
    """A :class:`Detector` on ``backend`` set as the node sets it with its default
    parameters (:data:`irstd_ros.ros.params.SPECS`, as ``config/irstd.yaml``): detection
    threshold, areas and cap, input scaling, and, tracking being on, the candidate and
    gated thresholds (each < 0: the checkpoint's own), by the node's own
    :func:`~irstd_ros.ros.params.detector_settings`."""
    from irstd_ros.inference.detector import Detector
    from irstd_ros.ros.params import SPECS, detector_settings

    detector = Detector(backend, info)
    detector.apply(**detector_settings(info, {name: spec.default for name, spec in SPECS.items()}))
    return detector


def node_work(raw: np.ndarray, prob: np.ndarray, info: Any, backend_p50_ms: float) -> dict[str, Any]:
    """p50 of the node's pre-processing (grey + normalise) and post-processing (NaN check,
    targets, the tracker's candidates and gated components) on one frame, from
    :meth:`Detector.detect`'s own ``pre_ms`` / ``post_ms`` with the node's default
    parameters (:func:`node_detector`, the backend answering ``prob``), and their sum as
    a share of the backend's p50."""
    detector = node_detector(_Answer(prob), info)
    timings: list[dict[str, float]] = []
    time_calls(lambda: timings.append(detector.detect(raw).timings), 1, math.inf, OVERHEAD_CALLS)
    timings = timings[1:]  # the warm-up call's out
    pre_ms = percentile([t["pre_ms"] for t in timings], P50)
    post_ms = percentile([t["post_ms"] for t in timings], P50)
    settings = detector.settings
    return {
        "pre_p50_ms": pre_ms, "post_p50_ms": post_ms, "node_work_ratio": (pre_ms + post_ms) / backend_p50_ms,
        "post_thresholds": {"detection": settings.post.threshold, "candidate": settings.candidate_threshold,
                            "gated": settings.gated_threshold},
    }


# --- the node pipeline ----------------------------------------------------------------------
def measure_node_pipeline(
    model_path: str | Path,
    backend: str = "auto",
    height: int = NODE_SIZE[0],
    width: int = NODE_SIZE[1],
    frames: int = NODE_FRAMES,
    warmup: int = NODE_WARMUP,
    threads: int = THREADS,
    cache_dir: str | None = None,
    timeout_s: float = NODE_TIMEOUT_S,
) -> dict[str, Any]:
    """Publish-to-``detections`` latency of ``IrstdNode`` in this process, and its backend's.

    Needs rclpy, sensor_msgs, vision_msgs and :mod:`irstd_ros.ros.node`. The node gets
    ``model.path``, ``model.backend``, ``model.threads`` (and ``model.cache_dir``) as
    parameter overrides, subscribes ``image`` and publishes ``detections``; a driver node
    in the same context publishes mono16 frames (reliable, depth 1) one at a time.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from irstd_ros.core.constants import DETECTIONS_TOPIC
    from irstd_ros.ros.conversions import array_to_image_fields
    from irstd_ros.ros.node import IrstdNode
    from irstd_ros.ros.pipeline import consume_outputs

    raw = synthetic_frame(height, width)
    fields = array_to_image_fields(raw, "mono16")
    context = rclpy.Context()
    rclpy.init(args=[], context=context)  # not sys.argv: its FROM:=TO would remap the node's names
    overrides = [
        Parameter("model.path", value=str(model_path)),
        Parameter("model.backend", value=backend),
        Parameter("model.threads", value=threads),
        Parameter("diagnostics.period", value=0.0),
    ]
    if cache_dir:
        overrides.append(Parameter("model.cache_dir", value=str(cache_dir)))
    node = driver = executor = None
    received: dict[int, float] = {}
    arrived = threading.Condition()
    try:
        node = IrstdNode(parameter_overrides=overrides, context=context)
        driver = rclpy.create_node("irstd_bench_driver", context=context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        pub = driver.create_publisher(Image, "image", qos)

        def on_detections(msg: Detection2DArray) -> None:
            with arrived:
                received[msg.header.stamp.sec] = time.perf_counter()
                arrived.notify_all()

        driver.create_subscription(Detection2DArray, "detections", on_detections, 10)
        # the node builds no output nobody subscribes to: consume them all, as a deployment
        consume_outputs(driver, skip=(DETECTIONS_TOPIC,))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(driver)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        _wait_for_match(pub, timeout_s)
        latencies: list[float] = []
        for i in range(1, warmup + frames + 1):
            msg = Image()
            for key, value in fields.items():
                setattr(msg, key, value)
            msg.header.stamp.sec = i  # the frame's id, echoed in the detections' header
            msg.header.frame_id = "bench"
            sent = time.perf_counter()
            pub.publish(msg)
            with arrived:
                if not arrived.wait_for(partial(received.__contains__, i), timeout=timeout_s):
                    raise TimeoutError(f"no detections for frame {i} within {timeout_s} s")
            if i > warmup:
                latencies.append((received[i] - sent) * 1e3)
        detector = node.detector
        unit = unit_frame(height, width)
        backend_times, _ = time_calls(lambda: detector.backend.predict(unit), 1, math.inf, frames)
        detect_times, _ = time_calls(lambda: detector.detect(raw), 1, math.inf, frames)
        p50 = percentile(latencies, P50)
        backend_p50 = percentile(backend_times, P50)
        return {
            "height": height,
            "width": width,
            "backend": detector.backend.name,
            "frames": len(latencies),
            "p50_ms": p50,
            "p99_ms": percentile(latencies, P99),
            "p99_samples": len(latencies),  # under TAIL_SAMPLES: p99_ms is their max
            "backend_p50_ms": backend_p50,
            "detector_p50_ms": percentile(detect_times, P50),
            "overhead_ratio": p50 / backend_p50 - 1.0,
            "overhead_target": NODE_OVERHEAD_TARGET,
        }
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.close()
        if driver is not None:
            driver.destroy_node()
        rclpy.try_shutdown(context=context)


def _wait_for_match(pub: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the node did not subscribe to 'image'")
        time.sleep(0.01)


def node_unavailable_reason() -> str | None:
    """Why the node row cannot run here (rclpy, messages or the node module missing)."""
    try:
        import rclpy  # noqa: F401
        from sensor_msgs.msg import Image  # noqa: F401
        from vision_msgs.msg import Detection2DArray  # noqa: F401

        from irstd_ros.ros.node import IrstdNode  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or a missing shared library
        return f"{type(exc).__name__}: {exc}"
    return None


# --- the parent -----------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    """Defaults for the children (the caller's environment wins; recorded in the result).

    ``OMP_WAIT_POLICY=PASSIVE``: with the default (spin) policy, torch's 2 OpenMP threads
    spin at every barrier; on a CPU shared with other work one of them is often
    descheduled and each op waits a scheduler slice: eager PyTorch then ran 50-200x
    slower on the project's 2-core machine while other jobs ran (see docs/benchmarks.md).
    It must be set before torch is imported, hence per child process.
    """
    return {OMP_WAIT_POLICY: OMP_WAIT_POLICY_DEFAULT}


def _child(args: list[str], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """Run ``python -m irstd_ros.tools.bench ARGS``; (its JSON result or None, error text)."""
    env = {**child_env(), **os.environ, "OMP_NUM_THREADS": str(THREADS)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "irstd_ros.tools.bench", *args],
            capture_output=True, text=True, timeout=timeout_s, env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"exit {proc.returncode}: {tail}"
    return json.loads(lines[-1]), ""


@dataclass
class BenchConfig:
    quick: bool = False
    backends: list[str] | None = None
    models: list[str] | None = None
    sizes: list[tuple[int, int]] | None = None
    node: bool = True
    budget_s: float | None = None
    cache_dir: str | None = None


def run_bench(cfg: BenchConfig, progress: Any = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-able result (see the module doc)."""
    from irstd_ros.inference.backends.select import BACKENDS, unavailable_reason

    say = progress or (lambda _msg: None)
    sizes = cfg.sizes or list(QUICK_SIZES if cfg.quick else FULL_SIZES)
    models = resolve_models(cfg.models or (QUICK_MODELS if cfg.quick else FULL_MODELS))
    if cfg.backends:
        wanted = list(cfg.backends)
    elif cfg.quick:
        wanted = list(QUICK_BACKENDS)
    else:
        wanted = [*BACKENDS, *BENCH_VARIANTS]

    def unavailable(name: str) -> str | None:
        return unavailable_reason(BENCH_VARIANTS.get(name, (name, {}))[0])

    result: dict[str, Any] = {
        "machine": machine(),
        "threads": THREADS,
        "env": {OMP_WAIT_POLICY: os.environ.get(OMP_WAIT_POLICY, OMP_WAIT_POLICY_DEFAULT)},
        "quick": cfg.quick,
        "models": {m.label: m.note for m in models},
        "backends": [],
        "skipped": [],
        "describe": {},
        "prepare": {},
        "node": None,
        "memory": (
            "peak_mem_mb: VmHWM (resident high-water, whole process incl. the Python/torch runtime) "
            "of one child process per model x backend while it runs the sizes in ascending order; "
            "the mark is reset (clear_refs) after the backend is created, whose own peak "
            "(exports, compiles) is create_peak_mem_mb; base_mem_mb: VmRSS after creation"
        ),
    }
    with tempfile.TemporaryDirectory(prefix="irstd_bench_") as tmp:
        cache = cfg.cache_dir or tmp
        exporters = [n for n in wanted if n in PREPARED_BACKENDS and unavailable(n) is None]
        if exporters:  # export once, outside the measured children (a node restart loads them)
            for model in models:
                say(f"exporting {model.label} for {', '.join(exporters)} ...")
                args = {"model": asdict(model), "backends": exporters, "cache_dir": cache}
                out, err = _child(["--prepare", json.dumps(args)], CHILD_TIMEOUT_S)
                result["prepare"][model.label] = out or {"error": err}
        for name in wanted:
            reason = unavailable(name)
            if reason:
                result["skipped"].append({"backend": name, "reason": reason})
                say(f"{name}: skipped ({reason})")
                continue
            for model in models:
                spec = WorkerSpec(
                    backend=name, model=model, sizes=sizes, cache_dir=cache,
                    budget_s=cfg.budget_s if cfg.budget_s is not None else (QUICK_BUDGET_S if cfg.quick else BUDGET_S),
                    warmup=QUICK_WARMUP_CALLS if cfg.quick else WARMUP_CALLS,
                    max_calls=QUICK_MAX_CALLS if cfg.quick else MAX_CALLS,
                )
                say(f"{name} x {model.label} ...")
                out, err = _child(["--worker", json.dumps(asdict(spec))], CHILD_TIMEOUT_S)
                if out is None:
                    result["skipped"].append({"backend": name, "model": model.label, "reason": err})
                    say(f"{name} x {model.label}: failed ({err})")
                    continue
                result["backends"].extend(out["rows"])
                result["describe"][f"{name}/{model.label}"] = out["describe"]
        if cfg.node:
            result["node"] = _node_row(cfg, models, cache, say)
    result["machine"]["loadavg_end"] = loadavg()
    return result


def _node_row(cfg: BenchConfig, models: list[ModelSpec], cache: str, say: Any) -> dict[str, Any]:
    reason = node_unavailable_reason()
    if reason:
        return {"skipped": f"rclpy / node not importable: {reason}"}
    with tempfile.TemporaryDirectory(prefix="irstd_bench_node_") as tmp:
        model = next((m for m in models if m.path), None)
        if model is None:  # no checkpoint among the models: save the first one's random weights
            from irstd_ros.checkpoint import save_checkpoint

            net, info = load_model(models[0])
            model = ModelSpec(models[0].label, path=str(save_checkpoint(Path(tmp) / "bench.safetensors", net, info)))
        h, w = QUICK_NODE_SIZE if cfg.quick else NODE_SIZE
        args = {
            "model_path": model.path, "backend": "auto", "height": h, "width": w,
            "frames": QUICK_NODE_FRAMES if cfg.quick else NODE_FRAMES,
            "warmup": QUICK_NODE_WARMUP if cfg.quick else NODE_WARMUP, "cache_dir": cache,
        }
        say(f"node pipeline {w}x{h} ({model.label}) ...")
        out, err = _child(["--node", json.dumps(args)], CHILD_TIMEOUT_S)
    if out is None:
        return {"skipped": f"node measurement failed: {err}"}
    out["model"] = model.label
    return out


# --- formatting -----------------------------------------------------------------------------
def format_matrix(result: dict[str, Any]) -> list[str]:
    """Backend x precision x size: p50 / p99 ms side by side, and the speed-up over
    :data:`REFERENCE` (its p50 / the row's p50, same model and size)."""
    rows = result["backends"]
    if not rows:
        return []
    sizes = sorted({(r["height"], r["width"]) for r in rows}, key=lambda s: s[0] * s[1])
    cell = {(r["model"], r["backend"], r["height"], r["width"]): r for r in rows}
    head = "| model | backend | precision | shapes | " + " | ".join(
        f"{w}x{h} p50 / p99 ms | x" for h, w in sizes
    ) + " |"
    lines = [head, "|---|---|---|---|" + "---:|---:|" * len(sizes)]
    seen: list[tuple[str, str]] = []
    for r in rows:
        if (r["model"], r["backend"]) not in seen:
            seen.append((r["model"], r["backend"]))
    for model, backend in seen:
        first = next(r for r in rows if r["model"] == model and r["backend"] == backend)
        parts = [model, backend, first.get("precision", "fp32"), first.get("shapes", "static")]
        for h, w in sizes:
            r = cell.get((model, backend, h, w))
            ref = cell.get((model, REFERENCE, h, w))
            if r is None:
                parts += ["-", "-"]
                continue
            ratio = f"{ref['p50_ms'] / r['p50_ms']:.2f}" if ref else "-"
            parts += [f"{format_number(r['p50_ms'])} / {_row_tail(r)}", ratio]
        lines.append("| " + " | ".join(parts) + " |")
    lines.append("")
    lines.append(f"x: p50 of `{REFERENCE}` (FP32, static shapes) / p50 of the row, same model and size.")
    return lines


def _row_tail(r: dict[str, Any]) -> str:
    """A backend row's p99 (:func:`~irstd_ros.core.statistics.format_tail`, over its
    ``p99_samples`` or ``calls``)."""
    return format_tail(r["p99_ms"], r.get("p99_samples", r.get("calls", 0)))


def format_overhead(result: dict[str, Any], size: tuple[int, int] = NODE_SIZE) -> list[str]:
    """The node's own work (pre: grey + normalise; post: targets, the tracker's candidates
    and gated components, as the node runs them) against each backend's p50 at ``size``
    (H, W)."""
    rows = [r for r in result["backends"] if (r["height"], r["width"]) == size and "pre_p50_ms" in r]
    if not rows:
        return []
    lines = [
        f"| model | backend | precision | backend p50 ms | pre p50 ms | post p50 ms | (pre + post) / backend ({size[1]}x{size[0]}) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r.get('precision', 'fp32')} | {format_number(r['p50_ms'])} | "
            f"{format_number(r['pre_p50_ms'], '.2f')} | {format_number(r['post_p50_ms'], '.2f')} | {r['node_work_ratio'] * 100:.1f} % |"
        )
    return lines


def format_table(result: dict[str, Any]) -> str:
    """Markdown tables of the result (what docs/benchmarks.md shows)."""
    m = result["machine"]
    lines = [
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, "
        f"onnxruntime {m.get('onnxruntime')}, openvino {m.get('openvino')}; {result['threads']} threads, "
        f"{', '.join(f'{k}={v}' for k, v in result.get('env', {}).items())}; "
        f"load average {m.get('loadavg')} -> {m.get('loadavg_end')}",
        "",
        "| backend | model | size (WxH) | p50 ms | p99 ms | FPS | peak MiB | calls |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["backends"]:
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['width']}x{r['height']} | {format_number(r['p50_ms'])} | "
            f"{_row_tail(r)} | {format_number(r['fps'])} | {format_number(r['peak_mem_mb'], '.0f')} | {r['calls']} |"
        )
    lines.append("")
    for part in (format_matrix(result), format_overhead(result)):
        if part:
            lines += [*part, ""]
    for label, note in result["models"].items():
        lines.append(f"- model `{label}`: {note}")
    for s in result["skipped"]:
        lines.append(f"- skipped {s['backend']}{' x ' + s['model'] if 'model' in s else ''}: {s['reason']}")
    node = result.get("node")
    if node:
        lines.append("")
        if "skipped" in node:
            lines.append(f"Node pipeline: skipped ({node['skipped']})")
        else:
            lines += [
                "| node pipeline | size (WxH) | backend | node p50 ms | node p99 ms | detector p50 ms | backend p50 ms | overhead |",
                "|---|---|---|---:|---:|---:|---:|---:|",
                f"| {node['model']} | {node['width']}x{node['height']} | {node['backend']} | {format_number(node['p50_ms'])} | "
                f"{format_tail(node['p99_ms'], node.get('p99_samples', node.get('frames', 0)))} | {format_number(node['detector_p50_ms'])} | {format_number(node['backend_p50_ms'])} | "
                f"{node['overhead_ratio'] * 100:+.1f} % (target <= {node['overhead_target'] * 100:.0f} %) |",
            ]
    return "\n".join(lines)


def _worker_main(spec_json: str) -> int:
    data = json.loads(spec_json)
    data["model"] = ModelSpec(**data["model"])
    data["sizes"] = [tuple(s) for s in data["sizes"]]
    print(json.dumps(run_worker(WorkerSpec(**data))))
    return 0


def prepare_exports(model: dict[str, Any], backends: list[str], cache_dir: str) -> dict[str, Any]:
    """Export the ONNX / OpenVINO artefacts of a model into ``cache_dir`` (seconds per step)."""
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.graph_export import cached_onnx, export_openvino_ir

    net, info = load_model(ModelSpec(**model))
    options = BackendOptions(cache_dir=cache_dir)
    out: dict[str, Any] = {}
    if "onnxruntime" in backends:
        t0 = time.perf_counter()
        cached_onnx(net, info, options)
        out["onnx_export_s"] = time.perf_counter() - t0
    if any(b.startswith("openvino") for b in backends):
        t0 = time.perf_counter()
        ir = export_openvino_ir(net, info, options)
        out["openvino_convert_s"] = time.perf_counter() - t0
    if "openvino-bf16" in backends:
        reused_bf16 = reuse_bf16_record(net, info, options, ir)
        if reused_bf16:  # bf16's accuracy record: the bf16 row lists it, and the node's auto gates on it
            out["openvino_bf16_record"] = reused_bf16
    if any(b.startswith("openvino-int8") for b in backends):
        reused = reuse_int8(net, info, options)
        if reused:  # the IR (and accuracy record) that `auto` runs on this machine
            out["openvino_int8_source"] = reused
            return out
        from irstd_ros.inference.backends.openvino_int8 import build_int8
        from irstd_ros.tools.quantize import calibration_frames, default_datasets

        t0 = time.perf_counter()
        try:  # calibrated with the plain recipe, accuracy not measured
            build_int8(net, info, options, lambda: calibration_frames(info.norm, default_datasets()))
            out["openvino_int8_s"] = time.perf_counter() - t0
            out["openvino_int8_source"] = "built here (plain recipe, accuracy not measured)"
        except Exception as exc:  # noqa: BLE001 - no datasets / no nncf: the int8 row is skipped
            out["openvino_int8_error"] = f"{type(exc).__name__}: {exc}"
    return out


def reuse_int8(net: Any, info: Any, options: Any) -> str | None:
    """Copy a valid INT8 IR of these weights from the default cache (where ``irstd export
    --backend openvino-int8`` puts it) into ``options``' cache, with its fingerprint and
    accuracy record and ``openvino-int8-bf16``'s (measured on that IR); returns where it came
    from and its recipe (None: there is none)."""
    import shutil

    from irstd_ros.errors import BackendError
    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.fingerprint import fingerprint_path, load_fingerprint
    from irstd_ros.inference.backends.openvino_int8 import accuracy_path, cached_int8, int8_path
    from irstd_ros.inference.backends.openvino_int8_bf16 import record_artifact

    try:
        src, _ = cached_int8(net, info, BackendOptions())
    except BackendError:
        return None
    dst, _ = int8_path(net, info, options)
    if src.resolve() == dst.resolve():
        return str(src)
    for a, b in ((src, dst), (src.with_suffix(".bin"), dst.with_suffix(".bin")),
                 (fingerprint_path(src), fingerprint_path(dst)), (accuracy_path(src), accuracy_path(dst)),
                 (accuracy_path(record_artifact(src)), accuracy_path(record_artifact(dst)))):
        if a.is_file():
            shutil.copy2(a, b)
    fp = load_fingerprint(src)
    return f"{src} (recipe {fp.recipe if fp else 'unknown'})"


def reuse_bf16_record(net: Any, info: Any, options: Any, ir: Path) -> str | None:
    """Copy bf16's accuracy record of these weights from the default cache (where ``irstd
    export --backend openvino-bf16`` puts it) into ``options``' cache; returns where it
    came from and its verdict on the FP32 IR ``ir`` there, the one the bench's bf16 rows
    compile (None: there is no record)."""
    import shutil

    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.openvino_bf16 import bf16_artifact, record_refusal
    from irstd_ros.inference.backends.openvino_int8 import accuracy_path, load_accuracy

    src, digest = bf16_artifact(net, info, BackendOptions())
    record = load_accuracy(src)
    if record is None:
        return None
    dst = accuracy_path(bf16_artifact(net, info, options)[0])
    if accuracy_path(src).resolve() != dst.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(accuracy_path(src), dst)
    verdict = record_refusal(record, digest, info, ir=ir) or "within tolerance"
    return f"{accuracy_path(src)} ({verdict})"


def _prepare_main(args_json: str) -> int:
    print(json.dumps(prepare_exports(**json.loads(args_json))))
    return 0


def _node_main(args_json: str) -> int:
    print(json.dumps(measure_node_pipeline(**json.loads(args_json))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry points (``--worker`` / ``--node`` / ``--prepare``); the CLI is ``irstd bench``."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m irstd_ros.tools.bench")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--worker", help="JSON WorkerSpec: time one backend x model")
    group.add_argument("--node", help="JSON arguments of measure_node_pipeline")
    group.add_argument("--prepare", help="JSON arguments of prepare_exports")
    args = parser.parse_args(argv)
    if args.prepare:
        return _prepare_main(args.prepare)
    return _worker_main(args.worker) if args.worker else _node_main(args.node)


if __name__ == "__main__":
    sys.exit(main())
