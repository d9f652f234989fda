"""A synthetic sequence written as a rosbag2 bag: camera frames plus their truth.

Topics (bag timestamps = header stamps = frame times):

* ``/camera/image``: sensor_msgs/Image, mono8 or mono16;
* ``/camera/truth/mask``: sensor_msgs/Image mono8, 255 on truth-mask pixels;
* ``/camera/truth/targets``: vision_msgs/Detection2DArray, one detection per visible
  target (box of its truth-mask pixels, ``id`` = track id, score 1, pose = sub-pixel centre).

The generator's config is stored as JSON in ``custom_data`` (``irstd_ros.sequence``).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irstd_ros.bags.io import (
    IMAGE_TOPIC,
    SEQUENCE_KEY,
    TRUTH_MASK_TOPIC,
    TRUTH_TARGETS_TOPIC,
    BagWriter,
    Box,
    detections_msg,
    image_msg,
)
from irstd_ros.sim.sequence import SequenceConfig, generate_sequence

MASK_ON = 255


@dataclass(frozen=True)
class GenerateConfig:
    """``irstd generate``: what to generate and where."""

    out: Path
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    storage: str = "mcap"
    compress: bool = False
    overwrite: bool = False
    progress: bool = False


@dataclass(frozen=True)
class GenerateSummary:
    path: Path
    frames: int
    target_instances: int  # visible (frame, target) pairs
    seconds: float


def generate_bag(cfg: GenerateConfig) -> GenerateSummary:
    """Generate ``cfg.sequence`` into the bag ``cfg.out``."""
    seq = cfg.sequence
    seq.validate()
    t0 = time.perf_counter()
    instances = 0
    with (
        BagWriter(cfg.out, cfg.storage, compress=cfg.compress, overwrite=cfg.overwrite) as bag,
        contextlib.ExitStack() as bars,  # closed first, also on Ctrl-C: before "interrupted"
    ):
        frames = generate_sequence(seq)
        if cfg.progress:
            from tqdm import tqdm

            frames = bars.enter_context(
                tqdm(frames, total=seq.frames, desc="generate", unit="frame")
            )
        store = bag.store
        bag.set_custom_data(SEQUENCE_KEY, json.dumps(seq.to_dict()))
        for frame in frames:
            stamp = frame.stamp_ns
            bag.write(
                IMAGE_TOPIC, stamp, image_msg(store, frame.image, seq.encoding, stamp, seq.frame_id)
            )
            mask = frame.mask.astype(np.uint8) * MASK_ON
            bag.write(TRUTH_MASK_TOPIC, stamp, image_msg(store, mask, "mono8", stamp, seq.frame_id))
            boxes = [
                Box(*t.bbox, score=1.0, id=str(t.id), centroid_x=t.x, centroid_y=t.y)
                for t in frame.targets
            ]
            bag.write(TRUTH_TARGETS_TOPIC, stamp, detections_msg(store, boxes, stamp, seq.frame_id))
            instances += len(frame.targets)
    return GenerateSummary(cfg.out, seq.frames, instances, time.perf_counter() - t0)
