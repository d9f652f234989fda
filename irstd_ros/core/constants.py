"""Names and limits shared by the node, the bag tools and the tools: one home each."""

from __future__ import annotations

CLASS_ID = "target"  # hypothesis class of every detection the node publishes

# Inference backends by name (irstd_ros.inference.backends.select registers one factory
# each; here without torch, for the node's parameters and the tools' options).
BACKEND_NAMES = (
    "tensorrt", "cuda", "torch-cpu", "torch-compile", "onnxruntime", "openvino", "openvino-bf16",
    "openvino-int8", "openvino-int8-bf16",
)
GPU_BACKENDS = ("tensorrt", "cuda")
# Fastest first; measured in docs/benchmarks.md (0.8 at 640x512 on Zen 5, one irstd bench run:
# INT8 with bf16 14.4, bf16 19.1, INT8 20.2, FP32 42.0 ms; the records' speeds on the CPU at
# hand reorder them).
# openvino-int8-bf16 and openvino-bf16 (native bf16 only) and openvino-int8 are candidates
# only when their accuracy gate passes (select.ACCURACY_GATES), then the FP32 backends
# (parity with eager PyTorch). torch-compile is opt-in: a long first-frame compile.
CPU_PREFERENCE = ("openvino-int8-bf16", "openvino-bf16", "openvino-int8", "openvino", "onnxruntime", "torch-cpu")
BACKEND_CHOICES: dict[str, tuple[str, ...]] = {  # names that choose among backends
    "auto": (*GPU_BACKENDS, *CPU_PREFERENCE),
    "cpu": CPU_PREFERENCE,
}
VALID_BACKENDS = (*BACKEND_CHOICES, *BACKEND_NAMES)  # what model.backend and --backend take

# Exit codes of a command stopped by a signal, as a shell reports them (128 + the signal)
INTERRUPTED_EXIT = 130  # SIGINT (Ctrl-C)
TERMINATED_EXIT = 143  # SIGTERM (kill, timeout)

# The node's topics, relative: one node per camera, each in its own namespace.
IMAGE_INPUT = "image"
CAMERA_INFO_INPUT = "camera_info"
MASK_TOPIC = "mask"
DETECTIONS_TOPIC = "detections"
TARGETS_TOPIC = "targets"
OVERLAY_TOPIC = "overlay"
TRACKS_TOPIC = "tracks"
TARGET_TRACKS_TOPIC = "target_tracks"
DIAGNOSTICS_TOPIC = "/diagnostics"
# What `irstd record` records by default (per frame: mask, detections, then targets last)
DETECTION_OUTPUTS = (MASK_TOPIC, DETECTIONS_TOPIC, TARGETS_TOPIC)
TRACKING_OUTPUTS = (TRACKS_TOPIC, TARGET_TRACKS_TOPIC)

# A tracker's sub-threshold operating points for a checkpoint that records none: the
# probabilities above which components feed a tracker only (low-SNR confirmation), and
# above which they are taken inside confirmed tracks' gates only. Tuned on 0.5 and 0.6's
# one-line calibration (docs/tracking.md; docs/results.md, "Tracks through glint").
CANDIDATE_THRESHOLD = 0.2
GATED_THRESHOLD = 0.05
# a threshold parameter set below 0 takes the checkpoint's own value (node and tools alike)
OWN_THRESHOLD = -1.0
OWN_WORD = "own"  # how a command line says it

DEFAULT_MAX_PIXELS = 4096 * 4096  # frames declaring more are refused before any allocation
# A header stamp within this many seconds of the receiving clock is "live" (a camera, a
# publisher stamping now); further off, it is a replayed bag's or a test's own time base.
LIVE_STAMP_WINDOW_S = 60.0

# Models shipped inside the package (irstd_ros/weights), by the names ``model.path`` and
# ``--weights`` accept: ``tiny`` the default (accuracy), ``fast`` the space-to-depth
# network (CPU real time; docs/results.md, "The fast model").
SHIPPED_MODELS = {"tiny": "irstd_tiny.safetensors", "fast": "irstd_fast.safetensors"}
DEFAULT_SHIPPED_MODEL = "tiny"
_SHIPPED_NAMES = [f"{n} (the default)" if n == DEFAULT_SHIPPED_MODEL else n for n in SHIPPED_MODELS]
# The help of every ``--weights`` option.
WEIGHTS_HELP = (
    "checkpoint file, or a shipped model: "
    + " or ".join([", ".join(_SHIPPED_NAMES[:-1]), _SHIPPED_NAMES[-1]])
)
