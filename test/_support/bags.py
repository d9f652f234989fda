"""Small generated bags for the bag tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from irstd_ros.bags.generate import GenerateConfig, generate_bag
from irstd_ros.bags.io import COMPRESSED_IMAGE_TYPE, IMAGE_TOPIC, BagReader, BagWriter
from irstd_ros.sim import SequenceConfig

TINY = SequenceConfig(width=96, height=64, frames=8, fps=10.0, n_targets=2, seed=11)
COMPRESSED_TOPIC = IMAGE_TOPIC + "/compressed"  # image_transport's name


def make_bag(path: Path, storage: str = "mcap", **changes: object) -> Path:
    """A small generated bag at ``path`` (``changes``: SequenceConfig fields)."""
    generate_bag(GenerateConfig(path, replace(TINY, **changes), storage))
    return path


def compressed_copy(
    src: Path, path: Path, encode, fmt: str | None = None, drop: tuple[str, ...] = ()
) -> Path:
    """A copy of bag ``src`` whose :data:`IMAGE_TOPIC` frames are CompressedImage messages
    on :data:`COMPRESSED_TOPIC`: ``encode(array)`` bytes, the same header and receive time,
    ``fmt`` (default: compressed_image_transport's ``"<enc>; png compressed <enc>"``);
    every other topic but those of ``drop`` as it is."""
    with BagReader(src) as reader, BagWriter(path) as w:
        compressed = w.store.types[COMPRESSED_IMAGE_TYPE]
        for topic, t, msg in reader.messages():
            if topic in drop:
                continue
            if topic != IMAGE_TOPIC:
                w.write(topic, t, msg)
                continue
            data = np.frombuffer(encode(reader.image(topic, msg)), np.uint8)
            f = fmt or f"{msg.encoding}; png compressed {msg.encoding}"
            w.write(COMPRESSED_TOPIC, t, compressed(header=msg.header, format=f, data=data))
    return path
