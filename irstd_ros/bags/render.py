"""``irstd render``: an annotated video (MP4, or GIF) and a PNG contact sheet of a bag.

Frames come from the bag's image topic; detections (red, with scores) from the outputs
bag (or the same bag) matched by header stamp; truth boxes (green) from
``/camera/truth/targets`` when present; the node's tracks (yellow, ``#id`` and a trail)
from a recorded ``*/tracks`` topic when present. Drawing: :func:`irstd_ros.core.overlay.draw_overlay`.
Outputs of which no stamp is that of a rendered frame are refused, as eval-bag refuses them;
a frame without a message on an output topic the bag records is labelled ``DET -`` (or
``TRK -``), not "none found", and counted in a warning; so is a count of no topic at all
(``DET -`` without outputs, ``TRUE -`` without truth). The truth is counted from its boxes,
else from the truth mask's connected components, as eval-bag counts them. A video's frames share one size:
a bag whose frames change size is refused, naming the first frame that does.
MP4 needs imageio-ffmpeg; without it the video is written as a GIF next to the
requested path.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irstd_ros.bags.evaluate import (
    check_mask_size,
    check_outputs_match,
    find_output_topics,
    frames_without_output,
    output_boxes_topic,
    read_output_boxes,
    read_truth_boxes,
)
from irstd_ros.bags.io import (
    FRAME_TYPES,
    IMAGE_TOPIC,
    TRUTH_MASK_TOPIC,
    BagReader,
    boxes_from_detections,
)
from irstd_ros.bags.rosutil import cdr_header_stamp
from irstd_ros.core.components import components
from irstd_ros.core.overlay import TRAIL_POINTS, draw_overlay
from irstd_ros.core.paths import atomic_path
from irstd_ros.core.stamps import NS_PER_S, stamp_ns
from irstd_ros.errors import BagError, ConfigError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")
DEFAULT_FPS = 10.0
MP4_QUALITY = 8  # imageio-ffmpeg 0-10
MP4_BLOCK = 2  # yuv420p needs even sizes: pad to a multiple of this
SHEET_GAP_PX = 4
# a video's frame rate: within it both encoders write a playable file (a GIF frame lasts at
# most 655.35 s; ffmpeg fails on rates of 1e12 and writes a broken MP4 at 1e-6); a bag's own
# rate outside it is clamped, a --fps outside it refused
VIDEO_FPS_RANGE = (0.01, 1000.0)
MAX_VIDEO_SIDE = 8192  # px, a rendered (scaled) frame's longer side
NO_MESSAGE = "-"  # a label's count for a frame without a message on that output topic


@dataclass(frozen=True)
class RenderConfig:
    """``irstd render`` options."""

    bag: Path
    out: Path  # .mp4 or .gif
    outputs: Path | None = None
    sheet: Path | None = None
    image_topic: str = IMAGE_TOPIC
    outputs_ns: str | None = None  # the node whose outputs are drawn; None: the only one
    sheet_frames: int = 6
    sheet_columns: int = 3
    fps: float | None = None  # None: the bag's frame rate
    scale: int = 1
    max_frames: int | None = None

    def validate(self) -> None:
        if self.out.suffix.lower() not in VIDEO_SUFFIXES:
            raise ConfigError(
                f"video must end in {' or '.join(VIDEO_SUFFIXES)}, got {self.out.name}"
            )
        if self.sheet_frames < 1 or self.sheet_columns < 1 or self.scale < 1:
            raise ConfigError("sheet frames, columns and scale must be >= 1")
        lo, hi = VIDEO_FPS_RANGE
        if self.fps is not None and not lo <= self.fps <= hi:
            raise ConfigError(f"video frame rate must be in [{lo:g}, {hi:g}] fps, got {self.fps:g}")
        if self.sheet is not None and self.sheet.suffix.lower() != ".png":  # so never the video too
            raise ConfigError(f"contact sheet must end in .png (it is a PNG), got {self.sheet.name}")


@dataclass(frozen=True)
class RenderSummary:
    video: Path
    frames: int
    sheet: Path | None


BOX_ROLES = ("targets", "detections", "tracks")  # the outputs drawn (no mask)


@dataclass(frozen=True)
class _TrackBox:
    """A recorded track (``tracks`` topic) as :func:`draw_overlay` draws it."""

    id: int
    x: float
    y: float
    width: float
    height: float


def _track_boxes(reader: BagReader, topic: str | None) -> dict[int, list[_TrackBox]]:
    """stamp -> the node's recorded tracks (on ``topic``, its ``*/tracks`` Detection2DArray
    topic), or {} without one."""
    if topic is None:
        return {}
    return reader.by_stamp(
        topic,
        lambda m, _t: [
            _TrackBox(
                int(b.id) if b.id.isdigit() else hash(b.id) % 100_000,
                b.center_x if b.centroid_x is None else b.centroid_x,
                b.center_y if b.centroid_y is None else b.centroid_y,
                float(b.width),
                float(b.height),
            )
            for b in boxes_from_detections(m)
        ],
    )


def _bag_fps(reader: BagReader, topic: str) -> float:
    """The rate of ``topic`` in the bag, over its own first to last message (other topics
    may start earlier or end later), within :data:`VIDEO_FPS_RANGE`."""
    n, first, last = 0, 0, 0
    for _, _, t, _ in reader.raw_messages([topic]):  # receive-time order; nothing decoded
        first = t if n == 0 else first
        n, last = n + 1, t
    if n < 2 or last <= first:
        return DEFAULT_FPS
    lo, hi = VIDEO_FPS_RANGE
    return min(max((n - 1) * NS_PER_S / (last - first), lo), hi)


class _GifWriter:
    """A GIF written in one piece at :meth:`close` (imageio's GIF writer buffers every frame
    too, but opens the file only when it is closed, and if that fails its finalisers retry
    and print "Exception ignored" tracebacks): encoded in memory, then written once."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.duration_ms = 1000.0 / fps
        self.frames: list[np.ndarray] = []

    def append_data(self, img: np.ndarray) -> None:
        self.frames.append(img)

    def close(self) -> None:
        if not self.frames:
            return
        import imageio.v3 as iio

        data = iio.imwrite("<bytes>", self.frames, extension=".gif", duration=self.duration_ms, loop=0)
        self.frames = []
        self.path.write_bytes(data)


def _png_bytes(img: np.ndarray) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", img, extension=".png")


def _partial(path: Path) -> Path:
    """Where a video is written until it is complete (then renamed to ``path``)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _video_writer(path: Path, fps: float):  # noqa: ANN202 - imageio's writer type
    """(writer, the video's path): MP4 through imageio-ffmpeg, else GIF. The writer writes
    to the path's :func:`_partial` twin."""
    import imageio.v2 as imageio

    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            gif = path.with_suffix(".gif")
            log.warning("imageio-ffmpeg is not installed: writing %s instead of %s", gif, path)
            path = gif
        else:
            writer = imageio.get_writer(
                _partial(path),
                fps=fps,
                codec="libx264",
                quality=MP4_QUALITY,
                macro_block_size=MP4_BLOCK,
                ffmpeg_log_level="error",
            )
            return writer, path
    return _GifWriter(_partial(path), fps), path


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = (-h) % MP4_BLOCK, (-w) % MP4_BLOCK
    return np.pad(img, ((0, ph), (0, pw), (0, 0))) if ph or pw else img


def contact_sheet(frames: list[np.ndarray], columns: int) -> np.ndarray:
    """Frames (same size, RGB) tiled row by row with a dark gap."""
    h, w = frames[0].shape[:2]
    rows = -(-len(frames) // columns)
    cols = min(columns, len(frames))
    sheet = np.zeros(
        (rows * h + (rows - 1) * SHEET_GAP_PX, cols * w + (cols - 1) * SHEET_GAP_PX, 3), np.uint8
    )
    for i, f in enumerate(frames):
        r, c = divmod(i, columns)
        y, x = r * (h + SHEET_GAP_PX), c * (w + SHEET_GAP_PX)
        sheet[y : y + h, x : x + w] = f
    return sheet


def _sheet_indices(n: int, k: int, with_targets: list[int]) -> set[int]:
    """``k`` frame indices spread over the sequence, preferring frames with truth targets."""
    pool = with_targets if len(with_targets) >= k else list(range(n))
    picks = np.linspace(0, len(pool) - 1, num=min(k, len(pool))).round().astype(int)
    return {pool[i] for i in picks}


def _count(found: Mapping[int, Sequence[object] | int] | None, stamp: int) -> str:
    """A label's count of ``found`` (stamp -> boxes, or their number) at ``stamp``:
    :data:`NO_MESSAGE` where there is no such topic (None) or it has no message of that
    frame (unknown, not none)."""
    if found is None or stamp not in found:
        return NO_MESSAGE
    value = found[stamp]
    return str(value if isinstance(value, int) else len(value))


def _truth_counts(reader: BagReader, stamps: Collection[int | None]) -> dict[int, int] | None:
    """stamp -> the number of truth targets of a bag without truth boxes, for the frames
    at ``stamps`` (those rendered): the connected components of its truth mask, as eval-bag
    counts them, a mask of another frame neither decoded nor labelled; None without a
    truth mask."""
    topic = TRUTH_MASK_TOPIC
    if topic not in reader.topics:
        return None
    reader.require(topic, FRAME_TYPES)
    wanted = set(stamps)

    def count(msg: Any, _t: int) -> int | None:
        if stamp_ns(msg.header) not in wanted:
            return None
        return components(reader.image(topic, msg) > 0)[1]

    return {s: n for s, n in reader.by_stamp(topic, count).items() if n is not None}


def _check_frame_size(
    cfg: RenderConfig, index: int, stamp: int, shape: tuple[int, ...], first: tuple[int, ...]
) -> None:
    """:class:`BagError` naming the frame unless its (H, W) ``shape`` is the first frame's."""
    if tuple(shape[:2]) != tuple(first[:2]):
        raise BagError(
            f"{cfg.bag}: frame #{index} on {cfg.image_topic} (stamp {stamp} ns) is "
            f"{shape[1]}x{shape[0]} but the first is {first[1]}x{first[0]}: the frames change "
            "size mid-bag, and a video's frames share one size"
        )


def _check_outputs(
    cfg: RenderConfig, stamps: list[int | None], n_bag: int, recorded: Mapping[str, Collection[int]]
) -> None:
    """With outputs to draw (``recorded``: topic -> the stamps of its messages), a
    :class:`BagError` unless some are of the rendered frames (``stamps``, of ``n_bag`` in
    the bag), as eval-bag's; a warning per topic of how many frames have no message on it."""
    frames = {s for s in stamps if s is not None}
    where = cfg.outputs or cfg.bag
    if any(recorded.values()):
        shown = f" (the first {len(stamps)})" if len(stamps) < n_bag else ""
        check_outputs_match(
            frames, itertools.chain(*recorded.values()),
            f"a frame of {cfg.image_topic} in {cfg.bag}{shown}", f"output of {where}",
        )
    frames_without_output(
        frames, {f"{t} in {where}": d for t, d in recorded.items()},
        f"frames of {cfg.image_topic} rendered",
        f"drawn without it (its count labelled {NO_MESSAGE})",
    )


def render(cfg: RenderConfig) -> RenderSummary:
    """Write the annotated video (and contact sheet); returns what was written."""
    cfg.validate()
    with BagReader(cfg.bag) as reader:
        reader.require(cfg.image_topic, FRAME_TYPES)  # Image or CompressedImage (png, jpeg)
        truth = read_truth_boxes(reader)
        if cfg.outputs is not None:
            with BagReader(cfg.outputs) as out_reader:
                # the mask too: its size tells outputs of another sequence (as eval-bag's check)
                found = find_output_topics(out_reader, (cfg.image_topic,), cfg.outputs_ns, (*BOX_ROLES, "mask"))
                check_mask_size(out_reader, found["mask"], reader, cfg.image_topic)
                detections = read_output_boxes(out_reader, found)
                tracks = _track_boxes(out_reader, found.get("tracks"))
            if not detections:
                raise BagError(f"{cfg.outputs} holds no targets or detections topic")
        else:
            found = find_output_topics(reader, (cfg.image_topic,), cfg.outputs_ns, BOX_ROLES)
            detections = read_output_boxes(reader, found)
            tracks = _track_boxes(reader, found.get("tracks"))
        boxes_topic, tracks_topic = output_boxes_topic(found), found.get("tracks")
        trails: dict[int, deque[tuple[float, float]]] = {}
        fps = cfg.fps or _bag_fps(reader, cfg.image_topic)
        n_bag = reader.topics[cfg.image_topic].count
        n_total = n_bag if cfg.max_frames is None else min(n_bag, cfg.max_frames)
        # frames are counted on the image topic: its stamps, read without decoding
        raws = itertools.islice(reader.raw_messages([cfg.image_topic]), n_total)
        stamps = [cdr_header_stamp(raw) for _, _, _, raw in raws]
        truth_counts = truth if truth is not None else _truth_counts(reader, stamps)
        recorded = {t: d for t, d in ((boxes_topic, detections), (tracks_topic, tracks)) if t}
        _check_outputs(cfg, stamps, n_bag, recorded)
        stamps_with_targets: list[int] = []
        sheet_picks: set[int] = set()
        if cfg.sheet is not None and truth:
            stamps_with_targets = [i for i, s in enumerate(stamps) if s is not None and truth.get(s)]
        if cfg.sheet is not None:
            sheet_picks = _sheet_indices(n_total, cfg.sheet_frames, stamps_with_targets)
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        writer, video_path = _video_writer(cfg.out, fps)
        sheet_frames: list[np.ndarray] = []
        count = 0
        first: int | None = None
        first_shape: tuple[int, ...] | None = None
        try:
            for _, _, msg in reader.messages([cfg.image_topic]):
                if count >= n_total:
                    break
                s = stamp_ns(msg.header)
                first = s if first is None else first
                dets = detections.get(s, [])
                tru = (truth or {}).get(s, [])
                trk = tracks.get(s, [])
                for t in trk:
                    trails.setdefault(t.id, deque(maxlen=TRAIL_POINTS)).append((t.x, t.y))
                det_count = _count(detections if boxes_topic else None, s)
                label = (f"#{count} {(s - first) / NS_PER_S:5.1f}S DET {det_count} "
                         f"TRUE {_count(truth_counts, s)}")
                if tracks:
                    label += f" TRK {_count(tracks, s)}"
                frame = reader.image(cfg.image_topic, msg)
                first_shape = frame.shape if first_shape is None else first_shape
                _check_frame_size(cfg, count, s, frame.shape, first_shape)
                if max(frame.shape[:2]) * cfg.scale > MAX_VIDEO_SIDE:
                    raise ConfigError(
                        f"scale {cfg.scale} makes {frame.shape[1] * cfg.scale}x{frame.shape[0] * cfg.scale} "
                        f"frames; at most {MAX_VIDEO_SIDE} px a side"
                    )
                img = draw_overlay(
                    frame, dets, tru, label=label, scale=cfg.scale,
                    tracks=trk, trails={t.id: list(trails[t.id]) for t in trk},
                )
                writer.append_data(_even(img))
                if count in sheet_picks:
                    sheet_frames.append(img)
                count += 1
        except BaseException:
            with contextlib.suppress(Exception):  # the loop's error is the one to report
                writer.close()
            _partial(video_path).unlink(missing_ok=True)  # no truncated video; an older one stays
            raise
        try:
            writer.close()
            if _partial(video_path).exists():
                _partial(video_path).replace(video_path)
            elif count:  # ffmpeg fails on some inputs without an error of its own
                raise BagError(f"the video encoder wrote no {video_path.name} ({count} frames at {fps:g} fps)")
        except OSError:
            _partial(video_path).unlink(missing_ok=True)
            raise
    if count == 0:
        raise BagError(f"{cfg.bag} has no frames on {cfg.image_topic}")
    if cfg.sheet is not None and sheet_frames:
        cfg.sheet.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cfg.sheet) as tmp:
            tmp.write_bytes(_png_bytes(contact_sheet(sheet_frames, cfg.sheet_columns)))
    return RenderSummary(video_path, count, cfg.sheet if sheet_frames else None)
