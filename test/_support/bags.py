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


# --- MCAP files as rosbags writes them, taken apart (record: opcode, u64 length, body) -----
MCAP_MAGIC = b"\x89MCAP0\r\n"
MCAP_FOOTER, MCAP_CHUNK_INDEX, MCAP_STATISTICS, MCAP_SUMMARY_OFFSET = 0x02, 0x08, 0x0B, 0x0E
MCAP_END = 1 + 8 + 20 + len(MCAP_MAGIC)  # footer record (summary start, offsets start, crc), magic


def mcap_record(op: int, body: bytes) -> bytes:
    return bytes([op]) + len(body).to_bytes(8, "little") + body


def mcap_summary_start(data: bytes) -> int:
    """Where the summary section of a closed MCAP file begins (its footer says)."""
    footer = data[-MCAP_END:]
    assert footer[0] == MCAP_FOOTER and data.endswith(MCAP_MAGIC)
    start = int.from_bytes(footer[9:17], "little")
    assert start, "the file has no summary"
    return start


def mcap_footer(summary_start: int = 0) -> bytes:
    """A footer record (no summary offsets, no CRC) and the closing magic."""
    return mcap_record(MCAP_FOOTER, summary_start.to_bytes(8, "little") + bytes(12)) + MCAP_MAGIC


def mcap_unindexed(data: bytes, statistics: bool = True) -> bytes:
    """A closed MCAP file whose summary indexes its chunks without their message indexes,
    as a writer with message indexing off leaves it (the message index records stay in the
    data section, unreferenced); ``statistics``: keep the statistics record. The summary
    offsets are left out (they are optional)."""
    start = mcap_summary_start(data)
    summary, pos = [], start
    while pos < len(data) - MCAP_END:
        op, size = data[pos], int.from_bytes(data[pos + 1 : pos + 9], "little")
        body = data[pos + 9 : pos + 9 + size]
        pos += 9 + size
        if op == MCAP_SUMMARY_OFFSET or (op == MCAP_STATISTICS and not statistics):
            continue
        if op == MCAP_CHUNK_INDEX:  # times, offset, length | offsets map | index length | rest
            offsets = int.from_bytes(body[32:36], "little")
            rest = body[36 + offsets + 8 :]
            body = body[:32] + bytes(4) + bytes(8) + rest
        summary.append(mcap_record(op, body))
    return data[:start] + b"".join(summary) + mcap_footer(start)
