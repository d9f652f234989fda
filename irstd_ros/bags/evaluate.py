"""``irstd eval-bag``: score detections against the truth stored in a bag.

Predictions come either from recorded outputs (a bag holding the node's ``mask`` --
or, without it, its ``targets``/``detections`` boxes, filled) or from running the
:class:`~irstd_ros.inference.detector.Detector` over the bag's frames, without a ROS
graph. Outputs are matched to truth frames by header stamp; a bag of several nodes'
outputs (one camera each) needs ``outputs_ns``, the namespace of the one scored.
Metrics are those of :mod:`irstd_ros.evaluation.metrics` (Pd, Fa, IoU...), over the
sequence and per frame;
truth frames without any output are counted in ``frames_missing`` and left out of the
metrics, outputs of no truth frame in ``outputs_without_truth`` (with a warning). A scored
frame without a message on another output topic the bag records (boxes, tracks: a
recorder that subscribed late, or dropped some) is no frame without detections: it is left
out of that topic's figures (the per-frame ``detections`` count is null, the tracking
metrics skip it) and counted per topic in ``frames_missing_by_topic`` (with a warning).
Boxes (of the truth, or of boxes-only outputs) are filled at the size of their own frame,
and Fa counts each scored frame's own pixels (``pixels`` of each per-frame row and of the
sequence; ``pixels_per_frame`` is their mean where frame sizes change within a bag). The
image topic is read once: by the detector, or for the frame sizes (a CompressedImage's from
its file header, not decoded) where truth boxes are filled.

Latency (ms), where it can be measured:

* ``recorded``: an output's receive time minus the receive time of the input frame of
  the same stamp, when the outputs bag also recorded the image topic;
* ``header``: an output's receive time minus its header stamp, when stamps are live
  (a replayed bag keeps its old stamps);
* ``detector``: pre-processing + inference + post-processing time, with ``--run-detector``.

The first two only where every value is within [0, ``LIVE_STAMP_WINDOW_S``]
(:func:`_on_one_clock`): an image recorded on another clock gives no recorded latency.

Tracking (``tracking`` in the result, when the truth bag has target ids on
``/camera/truth/targets`` and the outputs have boxes, not a recorded mask alone):
:func:`irstd_ros.tracking.metrics.tracking_metrics` of the per-frame detections ("without
tracking": every detection its own hypothesis) and of the tracks ("with tracking": the
confirmed and coasting tracks, by track id), scored on the truth frames. The tracks are
those the node recorded on a ``*/tracks`` topic, else the tracker run here over the
detections of every frame (annotated or not: sparse truth) with the node's defaults; a ``tracker`` given is run over the detections in
any case (a recording is then re-tracked with those settings, not scored as recorded). With
``candidate_threshold`` (and the detector run here), the detector's sub-threshold
candidates are fed to that tracker too, as the node does with
``tracking.candidate_threshold``, and with ``gated_threshold`` the gated components below
them (``tracking.gated_threshold``); either < 0 takes the checkpoint's own, as the node's
default does. The "detections" figures are unchanged by either. A sequence without any truth target
(clutter alone) has its false tracks (per minute) scored, the figures that need a
target (Pd, MOTA, IDF1...) null.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.bags.io import (
    DETECTIONS_TYPE,
    FRAME_TYPES,
    IMAGE_TOPIC,
    IMAGE_TYPE,
    TARGETS_TYPE,
    TRUTH_MASK_TOPIC,
    TRUTH_TARGETS_TOPIC,
    BagReader,
    BagWriter,
    Box,
    boxes_from_detections,
    boxes_from_targets,
    detections_msg,
    image_msg,
    targets_msg,
)
from irstd_ros.bags.rosutil import cdr_header_stamp
from irstd_ros.core.constants import (
    DETECTION_OUTPUTS,
    DETECTIONS_TOPIC,
    LIVE_STAMP_WINDOW_S,
    MASK_TOPIC,
    TARGETS_TOPIC,
    TRACKS_TOPIC,
)
from irstd_ros.core.paths import atomic_path, write_text_atomic
from irstd_ros.core.stamps import NS_PER_S, stamp_ns
from irstd_ros.core.statistics import format_number, percentile
from irstd_ros.core.targets import Target
from irstd_ros.errors import BagError, ConfigError
from irstd_ros.evaluation.metrics import MetricAccumulator
from irstd_ros.tracking.metrics import DEFAULT_MATCH_PX, DEFAULT_WARMUP_S, Point, tracking_metrics
from irstd_ros.tracking.tracker import Tracker, TrackerConfig

log = logging.getLogger(__name__)

ROLLING_FRAMES = 10  # window of the rolling Pd in the plot
OUTPUT_MASK_TOPIC, OUTPUT_DETECTIONS_TOPIC, OUTPUT_TARGETS_TOPIC = (f"/{t}" for t in DETECTION_OUTPUTS)
# the kinds of output a bag may hold, and the name of each the node publishes
OWN_NAMES = {"mask": MASK_TOPIC, "targets": TARGETS_TOPIC, "detections": DETECTIONS_TOPIC,
             "tracks": TRACKS_TOPIC}
OUTPUT_ROLES = tuple(OWN_NAMES)
MASK_ON = 255


@dataclass(frozen=True)
class EvalBagConfig:
    """``irstd eval-bag`` options."""

    truth: Path
    outputs: Path | None = None
    run_detector: bool = False
    weights: Path | None = None
    backend: str = "auto"
    image_topic: str = IMAGE_TOPIC
    truth_mask_topic: str = TRUTH_MASK_TOPIC
    mask_topic: str | None = None  # in outputs; None: the Image topic named */mask
    outputs_ns: str | None = None  # the node whose outputs are scored; None: the only one
    save_outputs: Path | None = None  # with run_detector: write the outputs as the node would
    progress: bool = False
    tracking: bool = True  # also score tracks (needs truth ids)
    # None: the node's recorded tracks where the outputs hold them, else the tracker with
    # the node's defaults; given: the tracker with it, over the detections, in any case
    tracker: TrackerConfig | None = None
    match_px: float = DEFAULT_MATCH_PX  # truth-hypothesis match distance of the tracking metrics
    warmup_s: float = DEFAULT_WARMUP_S
    # with run_detector, the tracker's sub-threshold candidates and the gated components
    # below them (as the node's tracking.*_threshold): < 0 the checkpoint's own, 0 off
    candidate_threshold: float = 0.0
    gated_threshold: float = 0.0

    def validate(self) -> None:
        try:
            (self.tracker or TrackerConfig()).validate()
        except ConfigError as exc:
            raise ConfigError(f"tracker: {exc}") from None
        if not self.match_px > 0:
            raise ConfigError(f"match_px must be > 0, got {self.match_px}")
        if not self.warmup_s >= 0:
            raise ConfigError(f"warmup_s must be >= 0, got {self.warmup_s}")
        for name in ("candidate_threshold", "gated_threshold"):
            if not getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be below 1 (0: off, < 0: the model's own), got {getattr(self, name)}"
                )
        if self.run_detector == (self.outputs is not None):
            raise ConfigError("give exactly one of --outputs BAG and --run-detector")
        if self.candidate_threshold != 0 and not self.run_detector:
            raise ConfigError("--candidate-threshold needs --run-detector")
        if self.gated_threshold != 0 and not self.run_detector:
            raise ConfigError("--gated-threshold needs --run-detector")
        if self.save_outputs is not None and not self.run_detector:
            raise ConfigError("--save-outputs needs --run-detector")
        if self.mask_topic is not None and self.run_detector:
            raise ConfigError("--mask-topic names a topic of --outputs; not with --run-detector")
        if self.outputs_ns is not None and self.run_detector:
            raise ConfigError("--outputs-ns names a node of --outputs; not with --run-detector")


@dataclass(frozen=True)
class _FrameSizes:
    """(H, W) of the scored topic's frames by header stamp, and ``first``: the size of its
    first frame, taken for a stamp it has no frame of."""

    by_stamp: Mapping[int, tuple[int, int]]
    first: tuple[int, int]

    def of(self, stamp: int) -> tuple[int, int]:
        return self.by_stamp.get(stamp, self.first)


@dataclass(frozen=True)
class _Truth:
    """The truth of a bag as read: its masks (by stamp), or, without a mask topic, its
    boxes, to be filled at the size of each one's frame (:meth:`masks`)."""

    recorded: dict[int, np.ndarray] | None = None
    boxes: dict[int, list[Box]] | None = None

    def __len__(self) -> int:
        return len(self.recorded if self.recorded is not None else self.boxes or {})

    def masks(self, sizes: Callable[[], _FrameSizes]) -> dict[int, np.ndarray]:
        """stamp -> boolean mask; ``sizes`` is called only where boxes are to be filled."""
        if self.recorded is not None:
            return self.recorded
        frames = sizes()
        return {s: boxes_to_mask(b, frames.of(s)) for s, b in (self.boxes or {}).items()}


def _read_truth(reader: BagReader, topic: str) -> _Truth:
    """The truth masks of the mask ``topic`` or, without the default one, the truth boxes
    (a topic named other than the default must be there: no silent fallback); read (and
    checked) before any long work."""
    if topic in reader.topics:
        reader.require(topic, FRAME_TYPES)
        return _Truth(recorded=reader.by_stamp(topic, lambda m, _t: reader.image(topic, m) > 0))
    if topic != TRUTH_MASK_TOPIC:
        reader.require(topic, IMAGE_TYPE)
    boxes = read_truth_boxes(reader)
    if boxes is not None:
        return _Truth(boxes=boxes)
    raise BagError(f"{reader.path} holds no truth ({topic} or {TRUTH_TARGETS_TOPIC})")


def read_truth_boxes(reader: BagReader) -> dict[int, list[Box]] | None:
    """stamp -> the truth boxes on :data:`TRUTH_TARGETS_TOPIC` (a Detection2DArray topic, as
    ``irstd generate`` writes it); None without that topic, a :class:`BagError` naming the
    topic's type where it is of another."""
    if TRUTH_TARGETS_TOPIC not in reader.topics:
        return None
    reader.require(TRUTH_TARGETS_TOPIC, DETECTIONS_TYPE)
    return reader.by_stamp(TRUTH_TARGETS_TOPIC, lambda m, _t: boxes_from_detections(m))


def _size_topics(reader: BagReader, image_topic: str) -> list[str]:
    """Where frame sizes are taken from: ``image_topic`` (an Image or CompressedImage topic),
    else any Image topic."""
    found = reader.topics.get(image_topic)
    scored = found is not None and found.msgtype in FRAME_TYPES
    return [image_topic] if scored else reader.topics_of_type(IMAGE_TYPE)


def _frame_size(reader: BagReader, image_topic: str) -> tuple[int, int]:
    """(H, W) of the first frame on ``image_topic`` (:func:`_size_topics`: a bag of several
    cameras gives the scored one's size, not the first to arrive); one message read."""
    for topic, _, msg in reader.messages(_size_topics(reader, image_topic)):
        return reader.image_size(topic, msg)
    raise _no_frames(reader, image_topic)


def _no_frames(reader: BagReader, image_topic: str) -> BagError:
    """The error of a bag without a frame to take the frame size from: its image topics
    (of another name, or CompressedImage ones, never taken unasked) named."""
    have = [f"{t.name} ({t.msgtype})" for t in reader.topics.values() if t.msgtype in FRAME_TYPES]
    if not have:
        return BagError(f"{reader.path} holds no image (Image or CompressedImage topic) to take "
                        "the frame size from")
    return BagError(
        f"{reader.path} has no frame on {image_topic} to take the frame size from; its image "
        f"topics: {', '.join(have)}: choose one with --image-topic"
    )


def _frame_sizes(reader: BagReader, image_topic: str) -> _FrameSizes:
    """The size of each frame on ``image_topic``, in one pass over it (a CompressedImage's
    from its file header: :meth:`BagReader.image_size`, no pixel decoded). A bag without
    that topic has none by stamp (no frame to tell one camera's sizes from another's): the
    first frame of its Image topics gives every stamp's."""
    topics = _size_topics(reader, image_topic)
    by_stamp: dict[int, tuple[int, int]] = {}
    first: tuple[int, int] | None = None
    for topic, _, msg in reader.messages(topics):
        size = reader.image_size(topic, msg)
        if first is None:
            first = size
            if topics != [image_topic]:
                break
        by_stamp.setdefault(stamp_ns(msg.header), size)
    if first is None:
        raise _no_frames(reader, image_topic)
    return _FrameSizes(by_stamp, first)


def check_output_size(
    stamp: int, output: tuple[int, ...], output_what: str, frame: tuple[int, ...], frame_what: str
) -> None:
    """:class:`BagError` unless the output of the frame at ``stamp`` has that frame's size
    ((H, W) each; ``*_what``: what each is, named in the message): else the outputs are of
    another sequence."""
    if tuple(output[:2]) != tuple(frame[:2]):
        raise BagError(
            f"frame at stamp {stamp} ns: {output_what} is {output[1]}x{output[0]} but {frame_what} "
            f"is {frame[1]}x{frame[0]}; outputs of another sequence?"
        )


def check_mask_size(outputs: BagReader, mask_topic: str | None, frames: BagReader, image_topic: str) -> None:
    """:func:`check_output_size` of the first output mask on ``mask_topic`` in ``outputs``
    (None: no mask, nothing to check) against the frames of ``image_topic`` in ``frames``:
    one message read, before the long work."""
    if mask_topic is None:
        return
    for _, _, msg in outputs.messages([mask_topic]):
        check_output_size(
            stamp_ns(msg.header), (int(msg.height), int(msg.width)),
            f"the output mask ({mask_topic} in {outputs.path})",
            _frame_size(frames, image_topic), f"the frame ({image_topic} in {frames.path})",
        )
        return


def boxes_to_mask(boxes: Iterable[Any], size: tuple[int, int]) -> np.ndarray:
    """Filled boxes as a boolean mask of ``size`` (H, W)."""
    mask = np.zeros(size, dtype=bool)
    for b in boxes:  # clipped to the frame (a negative end would count from the far side)
        mask[max(b.y, 0) : max(b.y + b.height, 0), max(b.x, 0) : max(b.x + b.width, 0)] = True
    return mask


def output_namespace(topic: str) -> str:
    """The namespace of the node that published ``topic`` (``/cam1/irstd/detections`` ->
    ``/cam1/irstd``, ``/detections`` -> ``/``)."""
    return topic.rsplit("/", 1)[0] or "/"


def find_output_topics(
    reader: BagReader,
    exclude: Sequence[str] = (),
    namespace: str | None = None,
    roles: Sequence[str] = OUTPUT_ROLES,
) -> dict[str, str | None]:
    """The node's output topics in a bag, by type and name, of the ``roles`` asked for:
    mask, targets, detections, tracks (a Detection2DArray topic named ``*/tracks``).

    ``namespace``: the node's (``--outputs-ns``); None: the bag must hold one node's
    outputs. A :class:`BagError` lists the candidates when it holds several nodes' (one
    camera each), when ``namespace`` holds none, or when one namespace has several topics
    of a kind and none of the node's name -- never the first by name in silence.
    """
    skip = {TRUTH_MASK_TOPIC, TRUTH_TARGETS_TOPIC, *exclude}
    images = [t for t in reader.topics_of_type(IMAGE_TYPE) if t not in skip]
    arrays = [t for t in reader.topics_of_type(DETECTIONS_TYPE) if t not in skip]
    tracks = [t for t in arrays if t.rsplit("/", 1)[-1] == TRACKS_TOPIC]
    found = {
        "mask": [t for t in images if t.rsplit("/", 1)[-1] == MASK_TOPIC],
        "targets": [t for t in reader.topics_of_type(TARGETS_TYPE) if t not in skip],
        "detections": [t for t in arrays if t not in tracks],
        "tracks": tracks,
    }
    found = {role: found[role] for role in roles}
    by_ns: dict[str, list[str]] = {}
    for topic in sorted(t for ts in found.values() for t in ts):
        by_ns.setdefault(output_namespace(topic), []).append(topic)
    listing = "; ".join(f"{ns}: {', '.join(ts)}" for ns, ts in sorted(by_ns.items()))
    if namespace is not None:
        ns = "/" + namespace.strip("/")
        if ns not in by_ns:
            raise BagError(
                f"{reader.path} holds no node output in namespace {ns} (--outputs-ns); "
                f"outputs: {listing or 'none'}"
            )
        found = {role: [t for t in ts if output_namespace(t) == ns] for role, ts in found.items()}
    elif len(by_ns) > 1:
        raise BagError(
            f"{reader.path} holds the outputs of several nodes ({listing}); "
            "choose one with --outputs-ns NAMESPACE"
        )
    chosen: dict[str, str | None] = {}
    for role, topics in found.items():
        own = [t for t in topics if t.rsplit("/", 1)[-1] == OWN_NAMES[role]]
        if len(topics) > 1 and len(own) != 1:
            raise BagError(
                f"{reader.path} has several {role} topics of one node ({', '.join(topics)}) "
                f"and none named {OWN_NAMES[role]}: which is the node's cannot be told"
            )
        chosen[role] = (own or topics)[0] if topics else None
    return chosen


def output_boxes_topic(found: Mapping[str, str | None]) -> str | None:
    """The topic of ``found`` (:func:`find_output_topics`) boxes are read from: the targets,
    else the detections; None without either."""
    return found.get("targets") or found.get("detections")


def read_output_boxes(reader: BagReader, found: Mapping[str, str | None]) -> dict[int, list[Box]]:
    """stamp -> detected boxes (with scores) from :func:`output_boxes_topic` of ``found``."""
    topic = output_boxes_topic(found)
    if topic is None:
        return {}
    convert = boxes_from_targets if topic == found.get("targets") else boxes_from_detections
    return reader.by_stamp(topic, lambda m, _t: convert(m))


def check_outputs_match(
    frames: Collection[int], outputs: Iterable[int], frames_what: str, outputs_what: str = "output"
) -> None:
    """:class:`BagError` unless some output stamp (``outputs``) is that of one of ``frames``
    (stamps; ``*_what``: one frame, one output, as the message names them): else nothing is
    paired, and nothing would be scored or drawn."""
    if not any(s in frames for s in outputs):
        raise BagError(f"no {outputs_what} matches {frames_what} by header stamp; wrong bags?")


def frames_without_output(
    frames: Collection[int], outputs: Mapping[str, Collection[int]], frames_what: str, effect: str
) -> dict[str, int]:
    """topic -> how many of ``frames`` (stamps) have no message on it, for each topic of
    ``outputs`` (topic -> the stamps of its messages) that misses some, each with a warning
    (``frames_what``: what the frames are, ``effect``: what is done with them). A recorder
    that subscribed late, or dropped messages, leaves such frames: not frames where the
    node found nothing."""
    missing: dict[str, int] = {}
    for topic, have in outputs.items():
        n = sum(s not in have for s in frames)
        if n:
            missing[topic] = n
            log.warning(
                "%d of %d %s have no message on %s: %s", n, len(frames), frames_what, topic, effect
            )
    return missing


@dataclass
class _Outputs:
    masks: dict[int, np.ndarray]
    boxes: dict[int, list[Box]]
    latency_ms: dict[int, float]
    latency_source: str | None
    mask_source: str
    topic: str = ""  # where the masks came from, for messages
    tracks: dict[int, list[Box]] | None = None  # recorded by the node, by track id
    candidates: dict[int, list[Box]] | None = None  # sub-threshold, for the tracker only
    gated: dict[int, list[Box]] | None = None  # lower still, for confirmed tracks' gates only
    candidate_threshold: float | None = None  # the probabilities they were cut at
    gated_threshold: float | None = None
    has_boxes: bool = True  # False: a recorded mask without a targets or detections topic
    boxes_topic: str | None = None  # the recorded topic ``boxes`` came from
    tracks_topic: str | None = None  # the recorded topic ``tracks`` came from
    frame_sizes: _FrameSizes | None = None  # of the frames the detector ran on


def _recorded_outputs(
    cfg: EvalBagConfig, sizes: Mapping[int, tuple[int, int]], size: tuple[int, int]
) -> _Outputs:
    """The recorded outputs; boxes without a mask are filled at ``sizes`` (stamp -> the
    truth frame's (H, W)), else at ``size``."""
    assert cfg.outputs is not None
    with BagReader(cfg.outputs) as reader:
        inputs = (cfg.image_topic, cfg.truth_mask_topic)  # never taken for outputs
        # a mask topic given: the others are no candidates
        roles = [r for r in OUTPUT_ROLES if r != "mask" or cfg.mask_topic is None]
        found = {"mask": None, **find_output_topics(reader, inputs, cfg.outputs_ns, roles)}
        mask_topic = cfg.mask_topic or found["mask"]
        if mask_topic is not None:
            reader.require(mask_topic, IMAGE_TYPE)
        boxes = read_output_boxes(reader, found)
        boxes_topic = output_boxes_topic(found)
        recv: dict[int, int] = {}
        masks: dict[int, np.ndarray] = {}
        if mask_topic is not None:
            read = reader.by_stamp(mask_topic, lambda m, t: (reader.image(mask_topic, m) > 0, t))
            masks = {s: mask for s, (mask, _) in read.items()}
            recv = {s: t for s, (_, t) in read.items()}
            source = "mask"
        elif boxes_topic is not None:
            masks = {s: boxes_to_mask(b, sizes.get(s, size)) for s, b in boxes.items()}
            source = "boxes"
            recv = reader.by_stamp(boxes_topic, lambda _m, t: t)
        else:
            raise BagError(f"{cfg.outputs} holds no mask, targets or detections topic")
        latency, latency_source = _latencies(reader, cfg.image_topic, recv)
        topic = mask_topic or boxes_topic or ""
        tracks = None
        tracks_topic = found.get("tracks")
        if tracks_topic:
            tracks = reader.by_stamp(tracks_topic, lambda m, _t: boxes_from_detections(m))
    return _Outputs(
        masks, boxes, latency, latency_source, source, f"{topic} in {cfg.outputs}", tracks,
        has_boxes=boxes_topic is not None, boxes_topic=boxes_topic, tracks_topic=tracks_topic,
    )


def _on_one_clock(lat_ms: Mapping[int, float]) -> bool:
    """Whether latencies (ms) measure something: each within [0, ``LIVE_STAMP_WINDOW_S``]
    and not all 0; else their two times are of different clocks (a replayed bag's stamps,
    an image recorded elsewhere) or the same time written twice."""
    values = lat_ms.values()
    return any(values) and all(0 <= v <= LIVE_STAMP_WINDOW_S * 1e3 for v in values)


def _latencies(
    reader: BagReader, image_topic: str, recv: dict[int, int]
) -> tuple[dict[int, float], str | None]:
    """stamp -> latency (ms) and its source (module docstring), or ({}, None)."""
    if image_topic in reader.topics:
        inputs: dict[int, int] = {}
        for _, _, t, raw in reader.raw_messages([image_topic]):
            s = cdr_header_stamp(raw)
            if s is not None:
                inputs.setdefault(s, t)
        lat = {s: (t - inputs[s]) / 1e6 for s, t in recv.items() if s in inputs}
        if _on_one_clock(lat):
            return lat, "recorded"
        if lat:
            log.warning(
                "%s's receive times are not on the outputs' clock (latencies from %.3g to %.3g "
                "ms): no recorded latency", image_topic, min(lat.values()), max(lat.values()),
            )
    lat = {s: (t - s) / 1e6 for s, t in recv.items()}
    if _on_one_clock(lat):
        return lat, "header"
    return {}, None


def _detector_outputs(cfg: EvalBagConfig, reader: BagReader) -> _Outputs:
    from irstd_ros.inference.detector import Detector

    reader.require(cfg.image_topic, FRAME_TYPES)
    detector = Detector.from_checkpoint(cfg.weights, backend=cfg.backend)
    detector.candidate_threshold, detector.gated_threshold = detector.info.tracking_thresholds(
        cfg.candidate_threshold, cfg.gated_threshold
    )
    masks: dict[int, np.ndarray] = {}
    boxes: dict[int, list[Box]] = {}
    candidates: dict[int, list[Box]] = {}
    gated: dict[int, list[Box]] = {}
    latency: dict[int, float] = {}
    sizes: dict[int, tuple[int, int]] = {}
    messages = reader.messages([cfg.image_topic])
    if cfg.progress:
        from tqdm import tqdm

        messages = tqdm(
            messages, total=reader.topics[cfg.image_topic].count, desc="detect", unit="frame"
        )
    writer = None
    if cfg.save_outputs is not None:
        writer = BagWriter(cfg.save_outputs, "mcap", compress=True).__enter__()
    try:
        for _, t, msg in messages:
            s = stamp_ns(msg.header)
            frame = reader.image(cfg.image_topic, msg)
            sizes.setdefault(s, (int(frame.shape[0]), int(frame.shape[1])))
            result = detector.detect(frame)
            masks[s] = result.mask
            boxes[s] = [_box(tg) for tg in result.targets]
            candidates[s] = [_box(tg) for tg in result.candidates]
            gated[s] = [_box(tg) for tg in result.gated]
            latency[s] = sum(result.timings.values())
            if writer is not None:
                fid = msg.header.frame_id
                store = writer.store
                mask = result.mask.astype(np.uint8) * MASK_ON
                writer.write(OUTPUT_MASK_TOPIC, t, image_msg(store, mask, "mono8", s, fid))
                writer.write(OUTPUT_DETECTIONS_TOPIC, t, detections_msg(store, boxes[s], s, fid))
                writer.write(OUTPUT_TARGETS_TOPIC, t, targets_msg(store, result.targets, s, fid))
    except BaseException as exc:
        if hasattr(messages, "close"):  # the progress bar: closed now, before "interrupted"
            messages.close()
        if writer is not None:
            writer.__exit__(type(exc), exc, None)
        raise
    if hasattr(messages, "close"):
        messages.close()
    if writer is not None:
        writer.__exit__(None, None, None)
    return _Outputs(
        masks, boxes, latency, "detector", "mask",
        topic=f"the detector on {cfg.image_topic} in {cfg.truth}",
        candidates=candidates if detector.candidate_threshold is not None else None,
        gated=gated if detector.gated_threshold is not None else None,
        candidate_threshold=detector.candidate_threshold,
        gated_threshold=detector.gated_threshold,
        frame_sizes=_FrameSizes(sizes, next(iter(sizes.values()))) if sizes else None,
    )


def _box(tg: Target) -> Box:
    """A detection as the node publishes it: no id (``tg.id`` is its rank in the frame, and
    vision_msgs reserves a Detection2D's id for the same object across messages)."""
    return Box(tg.x, tg.y, tg.width, tg.height, tg.score, "", tg.centroid_x, tg.centroid_y)


def _truth_points(path: Path) -> dict[int, list[Point]]:
    """stamp -> truth targets (id, sub-pixel centre), or {} without truth ids."""
    with BagReader(path) as reader:
        boxes = read_truth_boxes(reader) or {}
    return {s: [_point(b.id, b) for b in bs] for s, bs in boxes.items()}


def _point(pid: str, b: Any) -> Point:
    cx = b.center_x if getattr(b, "centroid_x", None) is None else b.centroid_x
    cy = b.center_y if getattr(b, "centroid_y", None) is None else b.centroid_y
    return Point(str(pid), float(cx), float(cy))


@dataclass(frozen=True)
class _Det:
    """A recorded box as the tracker reads a detection."""

    centroid_x: float
    centroid_y: float
    score: float
    width: float
    height: float


def _dets(boxes: Iterable[Box]) -> list[_Det]:
    out = []
    for b in boxes:
        p = _point("", b)
        out.append(_Det(p.x, p.y, b.score, b.width, b.height))
    return out


def run_tracker(
    boxes: dict[int, list[Box]],
    cfg: TrackerConfig,
    size: tuple[int, int] | None = None,
    candidates: dict[int, list[Box]] | None = None,
    gated: dict[int, list[Box]] | None = None,
) -> dict[int, list[Point]]:
    """stamp -> confirmed (and coasting) tracks of :class:`Tracker` run over ``boxes``
    (and the sub-threshold ``candidates`` and ``gated`` components, if any); BagError
    naming the stamp for a box the tracker refuses (a non-finite field)."""
    tracker = Tracker(cfg, logger=log)
    out: dict[int, list[Point]] = {}
    for s in sorted(boxes):
        extra = _dets(candidates.get(s, ())) if candidates else []
        low = _dets(gated.get(s, ())) if gated else []
        try:
            tracks = tracker.update(
                s / NS_PER_S, _dets(boxes[s]), image_size=size, candidates=extra, gated=low
            )
        except ValueError as exc:  # a recorded box with a NaN or infinite field
            raise BagError(f"the boxes at stamp {s} ns cannot be tracked: {exc}") from None
        out[s] = [Point(str(t.id), t.x, t.y) for t in tracks if t.confirmed]
    return out


def _tracking(
    cfg: EvalBagConfig, outputs: _Outputs, stamps: list[int], size: tuple[int, int]
) -> dict[str, Any] | None:
    """Tracking metrics without (detections) and with tracking (tracks) over the scored
    frames (``stamps``); None without ids, or without the detections' boxes (a recorded
    mask alone: every frame would count as without detections). The tracker runs over
    every frame with boxes, annotated or not (fed the annotated ones alone, sparse truth
    would starve it). Without any truth target (clutter alone), only the false tracks are
    defined (:data:`~irstd_ros.tracking.metrics.TARGET_METRICS` are None)."""
    if not outputs.has_boxes:
        log.warning(
            "%s has no targets or detections topic: no tracking metrics (a mask has no boxes "
            "to track)", cfg.outputs,
        )
        return None
    points = _truth_points(cfg.truth)
    truth = {s: points.get(s, []) for s in stamps}
    if not points:  # no truth targets topic: no ids
        return None
    for pts in truth.values():
        ids = [p.id for p in pts]
        if "" in ids or len(set(ids)) < len(ids):
            log.warning(
                "truth targets without unique ids on %s: no tracking metrics (each target "
                "needs its own id in every frame, as `irstd generate` writes)", TRUTH_TARGETS_TOPIC,
            )
            return None
    # frames without a message on a topic are left out of its figures (not "none found")
    boxes = {s: outputs.boxes[s] for s in stamps if s in outputs.boxes}
    detections = {
        s: [_point(f"{s}:{i}", b) for i, b in enumerate(bs)] for s, bs in boxes.items()
    }
    tracker = cfg.tracker or TrackerConfig()
    if _uses_recorded_tracks(cfg, outputs):
        assert outputs.tracks is not None
        recorded = outputs.tracks
        tracks = {s: [_point(b.id, b) for b in recorded[s]] for s in stamps if s in recorded}
        source = "recorded"
    else:
        every = run_tracker(outputs.boxes, tracker, size, outputs.candidates, outputs.gated)
        tracks = {s: every[s] for s in stamps if s in every}
        source = "tracker"
    kw = {"match_px": cfg.match_px, "warmup_s": cfg.warmup_s}
    scored = {
        name: tracking_metrics({s: truth[s] for s in hyps}, hyps, **kw)
        for name, hyps in (("detections", detections), ("tracks", tracks))
    }
    return {
        "tracks_source": source,
        "tracker": tracker.__dict__ if source == "tracker" else None,
        "candidate_threshold": outputs.candidate_threshold,
        "gated_threshold": outputs.gated_threshold,
        **scored,
    }


def _uses_recorded_tracks(cfg: EvalBagConfig, outputs: _Outputs) -> bool:
    """Whether the tracks scored are the node's recorded ones (not the tracker's run here)."""
    return cfg.tracking and outputs.tracks is not None and cfg.tracker is None


def _detections_count(outputs: _Outputs, stamp: int) -> int | None:
    """How many boxes the outputs hold for the frame at ``stamp``: None when they record a
    boxes topic without a message of that frame, 0 when they have no boxes at all."""
    found = outputs.boxes.get(stamp)
    if found is None:
        return None if outputs.boxes_topic else 0
    return len(found)


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values)
    return {
        "mean": float(a.mean()),
        "p50": percentile(a, 50),
        "p95": percentile(a, 95),
        "max": float(a.max()),
    }


def evaluate_bag(cfg: EvalBagConfig) -> dict[str, Any]:
    """Score; returns the summary metrics plus ``per_frame`` rows (JSON-ready)."""
    cfg.validate()
    with BagReader(cfg.truth) as reader:
        read = _read_truth(reader, cfg.truth_mask_topic)  # checked before the long work
        if not len(read):
            raise BagError(f"{cfg.truth} holds no truth frames")
        # the image topic is read once: by the detector (its frames' sizes kept), or for
        # the frame sizes alone where truth boxes are filled
        detected = _detector_outputs(cfg, reader) if cfg.run_detector else None

        def frame_sizes() -> _FrameSizes:
            if detected is not None and detected.frame_sizes is not None:
                return detected.frame_sizes
            return _frame_sizes(reader, cfg.image_topic)

        truths = read.masks(frame_sizes)
        sizes = {s: (int(m.shape[0]), int(m.shape[1])) for s, m in truths.items()}
        size = next(iter(sizes.values()))
        outputs = detected if detected is not None else _recorded_outputs(cfg, sizes, size)
    check_outputs_match(truths, outputs.masks, "a truth frame")
    acc = MetricAccumulator()
    rows = []
    first = min(truths)
    missing = 0
    for s in sorted(truths):
        truth = truths[s]
        pred = outputs.masks.get(s)
        if pred is None:
            missing += 1
            continue
        check_output_size(s, pred.shape, f"the output mask ({outputs.topic})",
                          truth.shape, f"the truth ({cfg.truth_mask_topic} in {cfg.truth})")
        before = (acc.targets, acc.detected, acc.false_px)
        iou = acc.update(pred, truth)
        n, d, f = acc.targets - before[0], acc.detected - before[1], acc.false_px - before[2]
        rows.append(
            {
                "stamp_ns": s,
                "t_s": (s - first) / NS_PER_S,
                "targets": n,
                "detected": d,
                "false_px": f,
                "pixels": int(truth.size),  # of this frame: its Fa is false_px / pixels
                "iou": iou,
                "detections": _detections_count(outputs, s),
                "latency_ms": outputs.latency_ms.get(s),
            }
        )
    scored = {int(r["stamp_ns"] or 0) for r in rows}
    recorded: dict[str, Collection[int]] = {}  # the output topics scored beside the masks
    if outputs.boxes_topic:
        recorded[outputs.boxes_topic] = outputs.boxes
    if outputs.tracks_topic and outputs.tracks is not None and _uses_recorded_tracks(cfg, outputs):
        recorded[outputs.tracks_topic] = outputs.tracks
    missing_by_topic = frames_without_output(
        scored, recorded, f"scored frames of {cfg.truth}",
        "left out of its figures, not scored as none found",
    )
    unmatched = sorted(set(outputs.masks) - set(truths))
    if unmatched:
        log.warning(
            "%d output frame(s) of %s match no truth frame by header stamp (the first at %d ns); "
            "not scored, counted in outputs_without_truth", len(unmatched), outputs.topic, unmatched[0],
        )
    result: dict[str, Any] = acc.result()
    result.update(
        {
            "frames": len(rows),
            "frames_missing": missing,
            "frames_missing_by_topic": missing_by_topic,
            "outputs_without_truth": len(unmatched),
            "detected": acc.detected,
            "false_px": acc.false_px,
            "pixels": acc.pixels,  # of the scored frames, Fa's denominator
            "pixels_per_frame": _pixels_per_frame(acc.pixels, len(rows)),
            "mask_source": outputs.mask_source,
            "latency_source": outputs.latency_source,
            "latency_ms": _summary([r["latency_ms"] for r in rows if r["latency_ms"] is not None]),
            "truth": str(cfg.truth),
            "outputs": str(cfg.outputs) if cfg.outputs else "detector",
            "tracking": (
                _tracking(cfg, outputs, [int(r["stamp_ns"] or 0) for r in rows], size)
                if cfg.tracking
                else None
            ),
            "per_frame": rows,
        }
    )
    return result


def _pixels_per_frame(pixels: int, frames: int) -> int | float | None:
    """The mean pixels of a scored frame, ``pixels`` over ``frames`` (an int where whole):
    the frame size where all share one. Where sizes change within a bag, Fa is still
    ``false_px / (pixels_per_frame * frames)``, and each per-frame row holds its frame's
    own ``pixels``. None without a frame scored."""
    if not frames:
        return None
    return pixels // frames if pixels % frames == 0 else pixels / frames


def write_json(result: dict[str, Any], path: Path | None) -> str:
    """The result as JSON text, also written to ``path`` if given."""
    text = json.dumps(result, indent=2)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text + "\n")
    return text


def check_plot_path(path: Path) -> None:
    """:class:`ConfigError` unless matplotlib writes the format of ``path``'s suffix."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise ConfigError(f"plot {path.name}: not a format matplotlib writes; end it in .png, .svg or .pdf")


def fa_per_frame(result: dict[str, Any]) -> np.ndarray:
    """Fa of each per-frame row: its false-alarm pixels over its own frame's pixels (sizes
    may change within a bag; a row without ``pixels``, of an older result, takes
    ``pixels_per_frame``)."""
    rows = result["per_frame"]
    pixels = np.array([r.get("pixels", result["pixels_per_frame"]) for r in rows], dtype=float)
    return np.array([r["false_px"] for r in rows], dtype=float) / pixels


def plot_over_time(result: dict[str, Any], path: Path) -> None:
    """PNG: Pd (per frame and rolling) and Fa per frame over time, with the totals (those
    that are defined)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_frame"]
    t = np.array([r["t_s"] for r in rows])
    targets = np.array([r["targets"] for r in rows], dtype=float)
    detected = np.array([r["detected"] for r in rows], dtype=float)
    fa = fa_per_frame(result)
    with np.errstate(invalid="ignore", divide="ignore"):
        pd_frame = np.where(targets > 0, detected / targets, np.nan)
        kernel = np.ones(min(ROLLING_FRAMES, len(rows)))
        rolling = np.convolve(detected, kernel, "same") / np.convolve(targets, kernel, "same")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ax1.plot(t, pd_frame, ".", color="tab:blue", alpha=0.5, label="Pd per frame")
    ax1.plot(t, rolling, "-", color="tab:blue", label=f"Pd, {ROLLING_FRAMES}-frame window")
    pd_s, fa_s, iou_s = (
        format_number(result[k], f) for k, f in (("pd", ".3f"), ("fa", ".2e"), ("iou", ".3f"))
    )
    if result["pd"] is not None:  # None: no target in the sequence
        ax1.axhline(result["pd"], color="k", ls="--", lw=1, label=f"Pd overall {pd_s}")
    ax1.set_ylim(-0.05, 1.05)
    ax1.set_ylabel("Pd")
    ax1.legend(loc="lower left", fontsize=8)
    ax2.plot(t, fa, "-", color="tab:red", label="Fa per frame")
    if result["fa"] is not None:
        ax2.axhline(result["fa"], color="k", ls="--", lw=1, label=f"Fa overall {fa_s}")
    ax2.set_ylabel("Fa (false-alarm pixels / pixels)")
    ax2.set_xlabel("time (s)")
    ax2.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"{Path(result['truth']).name}: Pd {pd_s}, Fa {fa_s}, IoU {iou_s} over {result['frames']} frames"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
