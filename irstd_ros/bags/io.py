"""Reading and writing rosbag2 bags (MCAP or sqlite3) with ``rosbags``, no ROS install needed.

Bags are written in the standard layout (a folder with ``metadata.yaml`` and one storage
file), CDR serialisation, rosbag2 format version :data:`BAG_VERSION`, with each topic's
offered QoS profile, so that ``ros2 bag info`` / ``ros2 bag play`` read them.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np
import yaml
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.serde import SerdeError
from rosbags.typesys.store import Typestore

from irstd_ros.bags.typestore import reading_typestore, register_bag_types, typestore
from irstd_ros.core.constants import DETECTION_OUTPUTS
from irstd_ros.core.stamps import NS_PER_S, stamp_ns
from irstd_ros.core.targets import BoxCentre
from irstd_ros.errors import BagError, ImageConversionError
from irstd_ros.ros.messages import detections_array, targets_array

log = logging.getLogger(__name__)

# Topics of the generated sequences and of the node (relative: resolved in its namespace).
IMAGE_TOPIC = "/camera/image"
TRUTH_MASK_TOPIC = "/camera/truth/mask"
TRUTH_TARGETS_TOPIC = "/camera/truth/targets"
OUTPUT_TOPICS = DETECTION_OUTPUTS
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)  # what an image topic may hold
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
TARGETS_TYPE = "irstd_ros/msg/TargetArray"

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION: Literal[8] = 8  # rosbag2 metadata version of Jazzy; Kilted reads it too
DEFAULT_QOS_DEPTH = 10
# a sqlite3 bag commits its messages at most this long apart: a recording killed before it
# closed keeps those (rosbags' writer alone commits only when it closes, losing them all)
SQLITE3_COMMIT_PERIOD_S = 1.0
SEQUENCE_KEY = "irstd_ros.sequence"  # custom_data entry: the generator's config (JSON)
# what rosbags' readers raise on a damaged file besides ReaderError (measured by flipping
# and cutting bytes of MCAP and sqlite3 files: a name that is no UTF-8, a cut header, a
# record size no memory holds, a metadata record that lacks a key, a malformed database
# page met while reading, which apsw reports)
CORRUPT_BAG_ERRORS: tuple[type[BaseException], ...] = (
    ReaderError, OSError, ValueError, KeyError, IndexError, TypeError, struct.error, MemoryError,
    sqlite3.Error,
)


def _corrupt_bag_errors() -> tuple[type[BaseException], ...]:
    """:data:`CORRUPT_BAG_ERRORS`, with apsw's errors when rosbags reads through it (its
    sqlite3 storage does in 0.11; not a dependency of ours, so not imported here)."""
    apsw = sys.modules.get("apsw")
    return (*CORRUPT_BAG_ERRORS, apsw.Error) if apsw is not None else CORRUPT_BAG_ERRORS


MCAP_MAGIC = b"\x89MCAP0\r\n"  # the first and the last 8 bytes of a closed MCAP file


def _recover_hint(mcap: Path) -> str:
    """How to rebuild an MCAP file's summary and indexes (the mcap CLI's ``recover``); the
    rebuilt file is a bag of its own to read (a bare file needs no metadata.yaml)."""
    fixed = mcap.with_name(f"{mcap.stem}.recovered.mcap")
    return f"rebuild it with `mcap recover {mcap} -o {fixed}` (the mcap CLI) and read {fixed}"


def _an_mcap_file(mcap: Path, bag: Path) -> str:
    """The subject of an error about the MCAP file ``mcap`` of the bag at ``bag``."""
    return "it is an MCAP file" if mcap == bag else f"its {mcap.name} is an MCAP file"


def _unfinished_mcap(path: Path) -> bool:
    """Whether ``path`` begins as an MCAP file but does not end as one (no footer, no closing
    magic): a recording killed or cut before its writer wrote the summary and indexes."""
    try:
        with path.open("rb") as f:
            if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC or f.seek(0, 2) <= len(MCAP_MAGIC):
                return False
            f.seek(-len(MCAP_MAGIC), 2)
            return f.read() != MCAP_MAGIC
    except OSError:
        return False


def _unindexed_reason(path: Path) -> str | None:
    """Why the bag at ``path`` could not be opened if its storage lacks its summary or index,
    with the fix; None if it does not. An MCAP file that never closed (``mcap recover``;
    ``ros2 bag reindex`` writes a metadata.yaml but leaves the file unindexed, rosbag2#2003),
    or a bag folder without metadata.yaml: its storage file is read itself (a killed
    sqlite3 recording's holds what was committed), or ``ros2 bag reindex`` writes one."""
    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path]
    for mcap in files:
        if _unfinished_mcap(mcap):
            return (f"{_an_mcap_file(mcap, path)} without its summary and index (the recording "
                    f"was killed or cut before it closed); {_recover_hint(mcap)}")
    if not path.is_dir() or (path / "metadata.yaml").exists():
        return None
    db3 = sorted(path.glob("*.db3"))
    if db3:
        return (f"no metadata.yaml (the recording was killed before it closed); its {db3[0].name} "
                "holds the messages committed before (`irstd record` commits every "
                f"{SQLITE3_COMMIT_PERIOD_S:g} s; a recorder that commits only on closing leaves "
                f"none): read {db3[0]} itself, or write the metadata.yaml with "
                f"`ros2 bag reindex {path} sqlite3` (it recovers nothing more)")
    if files:
        return (f"no metadata.yaml (the recording was killed before it closed); read {files[0]} "
                f"itself, or rebuild it with `ros2 bag reindex {path} mcap`")
    return None


def _mcap_storages(reader: Reader) -> list[McapReader]:
    """The MCAP storage files rosbags opened for ``reader`` (a bare file, or a bag folder's)."""
    storage = getattr(reader, "storage", None)
    found = getattr(storage, "storages", [storage])
    return [s for s in found if isinstance(s, McapReader)]


def _unindexed_chunks(storage: McapReader) -> bool:
    """Whether an opened MCAP file has chunks with messages that its summary indexes without
    their message indexes (a writer with message indexing off): rosbags skips those chunks,
    and reads the file as empty, or short of their messages, without an error. Chunks of no
    message (a topic declared, nothing written) have no message index either: those are
    told by the statistics (no more messages than the indexed chunks hold) or, where rosbags
    counts the indexed chunks for want of statistics, by their times (no message span)."""
    missing = [c for c in getattr(storage, "chunks", None) or [] if not c.message_index_offsets]
    if not missing:
        return False
    indexed = sum(sum(c.channel_count.values()) for c in storage.chunks)
    if storage.metadata.message_count > indexed:
        return True
    return any(0 < c.message_end_time and c.message_start_time <= c.message_end_time for c in missing)


V = TypeVar("V")


def qos_profile(reliable: bool = True, depth: int = DEFAULT_QOS_DEPTH) -> Qos:
    """An offered QoS profile for a bag topic (keep-last, volatile, default timings)."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.VOLATILE,
        deadline=QosTime(0, 0),
        lifespan=QosTime(0, 0),
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=QosTime(0, 0),
        avoid_ros_namespace_conventions=False,
    )


# what a bag folder may hold besides the storage files its metadata.yaml lists: rosbag2's
# and rosbags' own files (a storage file of a split, a killed sqlite3 recording's journal)
BAG_FILE_SUFFIXES = (".mcap", ".db3", ".db3-journal", ".db3-wal", ".db3-shm")


def _not_bag_files(path: Path) -> list[str]:
    """The entries of the bag folder ``path`` that are no file of its bag: neither
    metadata.yaml nor a storage file (listed in it, or named as rosbag2 names them)."""
    listed: set[str] = set()
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        listed = {str(f) for f in info.get("relative_file_paths") or ()}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        pass  # a damaged metadata.yaml: the storage files are told by their names
    return sorted(
        e.name + ("/" if e.is_dir() else "")
        for e in path.iterdir()
        if e.is_dir()
        or not (e.name == "metadata.yaml" or e.name in listed or e.name.endswith(BAG_FILE_SUFFIXES))
    )


def check_replaceable(path: Path, overwrite: bool = True) -> None:
    """:class:`BagError` unless a bag may be written at ``path``: nothing there, or (with
    ``overwrite``) an empty folder or a bag, which a new one replaces (a folder of bag files
    alone, metadata.yaml or not: a killed recording's are too); never another folder,
    a file, a folder that holds other files beside its bag's (notes, an eval/ folder: they
    would be deleted with it), or a symbolic link (replacing it would either drop the link
    or write the bag somewhere not named; the link's target may be given instead). Callers
    that write several outputs check each before writing any."""
    if path.is_symlink():
        raise BagError(
            f"{path} is a symbolic link (to {os.readlink(path)}); not replacing it: give the "
            "folder it points to, or another path"
        )
    if not path.exists():
        return
    if not overwrite:
        raise BagError(f"{path} exists; remove it or choose another output")
    # a bag is told by its files alone: metadata.yaml, or only the storage files of a
    # recording killed before it wrote one
    others = _not_bag_files(path) if path.is_dir() else None
    if others is None or (others and len(others) == len(os.listdir(path))):
        raise BagError(f"{path} exists and is not a bag; not overwriting it")
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise BagError(
            f"{path} holds files that are not its bag's ({shown}); not overwriting it (they "
            "would be deleted with it): move them, or choose another output"
        )


def _sqlite3_connection(writer: Writer) -> sqlite3.Connection | None:
    """The database connection of an open sqlite3 ``writer``; None (warned of once) where
    it is not found. rosbags (0.11) has no API for it: its writer keeps the storage on
    ``writer.storage`` and the connection on ``storage.conn`` (test_bag_writer fails if a
    rosbags release moves them)."""
    conn = getattr(getattr(writer, "storage", None), "conn", None)
    if isinstance(conn, sqlite3.Connection):
        return conn
    _warn_no_sqlite3_connection()
    return None


@functools.cache
def _warn_no_sqlite3_connection() -> None:
    log.warning(
        "rosbags' sqlite3 writer keeps no connection at writer.storage.conn (is rosbags newer "
        "than 0.11?): sqlite3 bags are written without periodic commits, so a recording "
        "killed before it closes may keep none of its messages"
    )


class BagWriter:
    """A rosbag2 writer (context manager) that adds topics on first use.

    On leaving the ``with`` block normally the bag is closed (``metadata.yaml``
    written); on an exception the partial bag is removed. With ``overwrite`` the new bag
    is written in a hidden folder beside the old one and takes its place only when it
    closes cleanly, so a failed or interrupted overwrite leaves the old bag as it was.
    A sqlite3 bag is written in WAL mode and committed (and checkpointed into its .db3
    file) every :data:`SQLITE3_COMMIT_PERIOD_S`: a process killed before closing leaves a
    .db3 file that holds the messages up to the last commit; closed, the bag is in
    rosbag2's usual rollback-journal mode.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        *,
        compress: bool = False,
        overwrite: bool = False,
        store: Typestore | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; valid: {', '.join(STORAGES)}")
        if compress and storage != "mcap":
            raise BagError("compression is supported for mcap storage only")
        # absolute and normalised, links not followed: "." has a name and a parent
        self.path = Path(os.path.abspath(path))
        if not self.path.name:
            raise BagError(f"{path} cannot be a bag folder (it has no name)")
        self._staging: Path | None = None  # holds the new bag until it replaces the old
        check_replaceable(self.path, overwrite)
        if self.path.exists():
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = store or typestore()
        target = self.path if self._staging is None else self._staging / self.path.name
        self._writer = Writer(target, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        if compress:  # zstd-compressed MCAP chunks (ros2 bag's "zstd_fast" preset)
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._sqlite3: sqlite3.Connection | None = None  # a sqlite3 bag's, committed periodically
        self._commit_due = 0.0

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except WriterError as exc:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
            raise BagError(str(exc)) from exc
        if self._writer.storage_plugin == StoragePlugin.SQLITE3:
            self._sqlite3 = _sqlite3_connection(self._writer)
        if self._sqlite3 is not None:
            try:
                self._sqlite3.execute("PRAGMA journal_mode=WAL")  # the .db3 file: commits only
            except sqlite3.Error as exc:
                self.__exit__(type(exc), exc, None)  # no half-made bag left
                raise BagError(f"cannot write the sqlite3 bag {self.path}: {exc}") from exc
            self._commit_due = time.monotonic() + SQLITE3_COMMIT_PERIOD_S
        return self

    def _commit(self) -> None:
        """Commit a sqlite3 bag's messages so far and copy them into its .db3 file."""
        assert self._sqlite3 is not None
        self._sqlite3.commit()
        self._sqlite3.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._commit_due = time.monotonic() + SQLITE3_COMMIT_PERIOD_S

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._writer.abort()
            shutil.rmtree(self._staging or self.path, ignore_errors=True)
            return
        if self._sqlite3 is not None:  # back to rosbag2's journal mode (the WAL written out)
            self._sqlite3.commit()
            self._sqlite3.execute("PRAGMA journal_mode=DELETE")
        self._writer.close()
        if self._staging is None:
            return
        staged = self._staging / self.path.name
        try:  # the new bag is complete: now replace the old
            shutil.rmtree(self.path)
            staged.rename(self.path)
        except OSError as exc:
            raise BagError(
                f"the new bag is complete but could not replace {self.path} ({exc}); "
                f"it was left at {staged}"
            ) from exc
        shutil.rmtree(self._staging, ignore_errors=True)

    def add_topic(
        self, topic: str, msgtype: str, qos: Qos | None = None, type_hash: str | None = None
    ) -> None:
        """Declare ``topic`` (idempotent). ``type_hash``: the RIHS01 hash the publisher reported."""
        if topic in self._connections:
            return
        self.check_type(topic, msgtype)
        msgdef = rihs01 = None
        if type_hash:
            msgdef, _ = self.store.generate_msgdef(msgtype, ros_version=2)
            rihs01 = type_hash
        self._connections[topic] = self._writer.add_connection(
            topic,
            msgtype,
            typestore=self.store,
            msgdef=msgdef,
            rihs01=rihs01,
            offered_qos_profiles=[qos or qos_profile()],
        )
        self.counts[topic] = 0

    def check_type(self, topic: str, msgtype: str) -> None:
        """:class:`BagError` unless ``msgtype`` (of ``topic``) can be declared: its definition
        is known. Reads the typestore only: any thread may ask, before :meth:`add_topic`."""
        if msgtype not in self.store.types:
            raise BagError(f"no definition of {msgtype} (topic {topic}) to write it to a bag")

    def write_raw(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Write CDR bytes on a declared topic; ``timestamp_ns``: the receive (log) time."""
        try:
            self._writer.write(self._connections[topic], int(timestamp_ns), data)
        except KeyError:
            raise BagError(f"topic {topic} was not declared") from None
        self.counts[topic] += 1
        if self._sqlite3 is not None and time.monotonic() >= self._commit_due:
            self._commit()

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Serialise a rosbags message and write it (declaring the topic if needed)."""
        self.add_topic(topic, msg.__msgtype__)
        self.write_raw(topic, timestamp_ns, self.store.serialize_cdr(msg, msg.__msgtype__))

    def set_custom_data(self, key: str, value: str) -> None:
        self._writer.set_custom_data(key, value)


def _reason(exc: BaseException) -> str:
    """Why a bag could not be read: rosbags' own message, else the error's type and text."""
    if isinstance(exc, (ReaderError, OSError)):
        return str(exc)
    return f"damaged ({type(exc).__name__}: {exc})"


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int


class BagReader:
    """Read a rosbag2 bag (folder with metadata.yaml, or a bare .mcap/.db3 file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        self.store = reading_typestore()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except _corrupt_bag_errors() as exc:
            reason = _unindexed_reason(self.path) or _reason(exc)
            raise BagError(f"cannot read bag {self.path}: {reason}") from exc
        for storage in _mcap_storages(self._reader):
            if _unindexed_chunks(storage):
                self._reader.close()
                mcap = Path(str(storage.path))
                raise BagError(
                    f"cannot read bag {self.path}: {_an_mcap_file(mcap, self.path)} whose chunks "
                    "have no message index (its writer had message indexing off): their "
                    f"messages would be missed; {_recover_hint(mcap)}"
                )
        register_bag_types(self.store, self._reader.connections)

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, TopicSummary]:
        return {
            name: TopicSummary(name, info.msgtype or "", info.msgcount)
            for name, info in self._reader.topics.items()
        }

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def duration_ns(self) -> int:
        return int(self._reader.duration)

    @property
    def custom_data(self) -> dict[str, str]:
        """``custom_data`` of metadata.yaml (empty for a bare storage file)."""
        meta = self.path / "metadata.yaml"
        if not meta.is_file():
            return {}
        info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information", {})
        return dict(info.get("custom_data") or {})

    def connections(self, topics: Iterable[str] | None = None) -> list[Any]:
        wanted = None if topics is None else set(topics)
        return [c for c in self._reader.connections if wanted is None or c.topic in wanted]

    def require(self, topic: str, msgtype: str | tuple[str, ...] | None = None) -> None:
        """:class:`BagError` unless ``topic`` (of ``msgtype``, or of one of them) is in the bag."""
        found = self.topics.get(topic)
        if found is None:
            have = ", ".join(f"{t.name} ({t.msgtype})" for t in self.topics.values()) or "none"
            raise BagError(f"{self.path} has no topic {topic}; topics: {have}")
        wanted = (msgtype,) if isinstance(msgtype, str) else msgtype or ()
        if wanted and found.msgtype not in wanted:
            raise BagError(
                f"{topic} in {self.path} is {found.msgtype}, expected {' or '.join(wanted)}"
            )

    def raw_messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None
    ) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, receive time ns, CDR bytes) in receive-time order."""
        conns = self.connections(topics)
        if not conns:
            return
        try:
            for conn, t, raw in self._reader.messages(connections=conns, start=start_ns):
                yield conn.topic, conn.msgtype, int(t), raw
        except _corrupt_bag_errors() as exc:
            reason = _reason(exc)
            unindexed = [s for s in _mcap_storages(self._reader) if not getattr(s, "chunks", True)]
            if isinstance(exc, ReaderError) and unindexed and "not in timestamp order" in reason:
                # rosbags reads an MCAP file without a chunk index in file order only
                reason = f"{reason.rstrip('.')}; {_recover_hint(Path(str(unindexed[0].path)))}"
            raise BagError(f"cannot read bag {self.path}: {reason}") from exc

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, Any]]:
        """(topic, receive time ns, deserialised rosbags message)."""
        for topic, msgtype, t, raw in self.raw_messages(topics):
            try:
                msg = self.store.deserialize_cdr(raw, msgtype)
            except SerdeError as exc:
                raise BagError(
                    f"{self.path}: cannot decode a {msgtype} message on {topic}: {exc}"
                ) from exc
            except KeyError:  # neither known here nor defined in the bag
                raise BagError(
                    f"{self.path}: no definition of {msgtype} (topic {topic}) to decode it"
                ) from None
            yield topic, t, msg

    def by_stamp(self, topic: str, value: Callable[[Any, int], V]) -> dict[int, V]:
        """header stamp (ns) -> ``value(message, receive time ns)`` of each message on
        ``topic``; a :class:`BagError` if two share a stamp (frames are paired by stamp,
        so a bag recorded over two replay passes, or of unstamped frames, cannot be)."""
        out: dict[int, V] = {}
        for _, t, msg in self.messages([topic]):
            s = stamp_ns(msg.header)
            if s in out:
                raise BagError(
                    f"{self.path}: two messages on {topic} have the header stamp {s} ns; "
                    "frames are paired by stamp (record one replay pass, of stamped frames)"
                )
            out[s] = value(msg, t)
        return out

    def image(self, topic: str, msg: Any) -> np.ndarray:
        """The array of a sensor_msgs/Image or CompressedImage (png, jpeg) of this bag; a
        :class:`BagError` naming the bag, the topic and the stamp if it is no readable image."""
        from irstd_ros.ros.conversions import frame_to_array

        return self._read_frame(frame_to_array, topic, msg)

    def image_size(self, topic: str, msg: Any) -> tuple[int, int]:
        """(H, W) of a sensor_msgs/Image (its fields) or CompressedImage of this bag, the
        latter from its file's header (PNG, JPEG), its pixels not decoded; a
        :class:`BagError` as :meth:`image`'s for a frame whose header is unreadable (a frame
        readable so far but damaged further on is found where its pixels are decoded)."""
        from irstd_ros.ros.conversions import frame_size

        return self._read_frame(frame_size, topic, msg)

    def _read_frame(self, read: Callable[[Any], V], topic: str, msg: Any) -> V:
        """``read(msg)``, its :class:`ImageConversionError` a :class:`BagError` naming the
        bag, the topic and the frame's stamp."""
        try:
            return read(msg)
        except ImageConversionError as exc:
            raise BagError(f"{self.path}: {topic} at stamp {stamp_ns(msg.header)}: {exc}") from exc

    def topics_of_type(self, msgtype: str) -> list[str]:
        return sorted(t.name for t in self.topics.values() if t.msgtype == msgtype)


# --- message construction (rosbags dataclasses) --------------------------------------------


def header_msg(store: Typestore, stamp: int, frame_id: str) -> Any:
    t = store.types
    time_cls, header_cls = t["builtin_interfaces/msg/Time"], t["std_msgs/msg/Header"]
    return header_cls(
        stamp=time_cls(sec=stamp // NS_PER_S, nanosec=stamp % NS_PER_S), frame_id=frame_id
    )


def image_msg(store: Typestore, arr: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """A sensor_msgs/Image (little-endian, unpadded) of a (H, W) array."""
    from irstd_ros.ros.conversions import array_to_image_fields

    fields = array_to_image_fields(arr, encoding)
    fields["data"] = np.frombuffer(fields["data"], dtype=np.uint8)
    return store.types[IMAGE_TYPE](header=header_msg(store, stamp, frame_id), **fields)


@dataclass(frozen=True)
class Box(BoxCentre):
    """A box in input pixels: top-left (x, y) pixel and size, like the node's targets."""

    x: int
    y: int
    width: int
    height: int
    score: float = 1.0
    id: str = ""
    centroid_x: float | None = None  # sub-pixel position (default: the box centre)
    centroid_y: float | None = None


def detections_msg(store: Typestore, boxes: Iterable[Box], stamp: int, frame_id: str) -> Any:
    """A vision_msgs/Detection2DArray as the node fills it (centre/size in pixels)."""
    return detections_array(store.types, header_msg(store, stamp, frame_id), boxes)


def targets_msg(store: Typestore, targets: Iterable[Any], stamp: int, frame_id: str) -> Any:
    """An irstd_ros/TargetArray of :class:`irstd_ros.core.targets.Target` objects."""
    return targets_array(store.types, header_msg(store, stamp, frame_id), targets)


def _check_finite(msg: Any, index: int, **values: float) -> None:
    """:class:`BagError` naming the message's stamp and the first of ``values`` (of its
    ``index``-th box) that is NaN or infinite: such a box has no pixels to compare."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise BagError(
                f"{getattr(msg, '__msgtype__', type(msg).__name__)} at stamp "
                f"{stamp_ns(msg.header)}: box {index} has {name} {value}; it must be finite"
            )


def boxes_from_detections(msg: Any) -> list[Box]:
    """:class:`Box` es of a Detection2DArray (centre/size back to top-left pixel boxes); a
    :class:`BagError` for a box with a NaN or infinite coordinate or score."""
    boxes = []
    for i, d in enumerate(msg.detections):
        score = float(d.results[0].hypothesis.score) if d.results else 1.0
        pos = d.results[0].pose.pose.position if d.results else None
        centre, pose = d.bbox.center.position, {"pose_x": pos.x, "pose_y": pos.y} if pos else {}
        _check_finite(msg, i, x=centre.x, y=centre.y, size_x=d.bbox.size_x, size_y=d.bbox.size_y,
                      score=score, **pose)
        w, h = round(d.bbox.size_x), round(d.bbox.size_y)
        x = round(d.bbox.center.position.x - (w - 1) / 2.0)
        y = round(d.bbox.center.position.y - (h - 1) / 2.0)
        boxes.append(
            Box(
                int(x),
                int(y),
                int(w),
                int(h),
                score,
                d.id,
                float(pos.x) if pos else None,
                float(pos.y) if pos else None,
            )
        )
    return boxes


def boxes_from_targets(msg: Any) -> list[Box]:
    """:class:`Box` es of an irstd_ros TargetArray; a :class:`BagError` for a target with a
    NaN or infinite score or centroid."""
    for i, t in enumerate(msg.targets):
        _check_finite(msg, i, score=t.score, centroid_x=t.centroid_x, centroid_y=t.centroid_y)
    return [
        Box(
            int(t.x),
            int(t.y),
            int(t.width),
            int(t.height),
            float(t.score),
            str(t.id),
            float(t.centroid_x),
            float(t.centroid_y),
        )
        for t in msg.targets
    ]
