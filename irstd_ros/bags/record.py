"""``irstd record``: record topics (the node's outputs) to a rosbag2 bag through rclpy.

Messages are received serialised (``raw=True`` subscriptions) and written as they are;
the bag timestamp of each is its receive time (system clock), as ``ros2 bag record``
does. Topic types are discovered from the ROS graph: a topic is subscribed as soon as
a publisher of it appears, with a QoS compatible with its publishers ("auto"); a topic
of ``known_types`` (``--type TOPIC=TYPE``) is subscribed at once, so that the recording
is ready before its publisher starts (a replay started after it loses no first frame). Stops
on ``duration``, after ``max_messages``, after ``idle_timeout`` without messages (once
the first arrived), or on Ctrl-C; the bag is always closed properly. The bag is opened,
written and closed on one thread of its own (:class:`_BagThread`): messages arrive on the
executor's thread, and a sqlite3 bag's connection serves only the thread that opened it.
A subscription's callback only queues its message for that thread and returns, so a slow
disk never holds up the executor: at most ``queue_size`` messages (and
:data:`QUEUE_MAX_BYTES`) wait to be written; more are dropped, counted (per topic, in
:attr:`RecordStats.dropped`) and warned of, never waited for. A write that fails stops the
recording with a :class:`BagError`, also when it fails while the queue is written out on
closing: the bag is closed only once everything queued before is written.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from irstd_ros.bags.io import OUTPUT_TOPICS, BagWriter, qos_profile
from irstd_ros.bags.replay import check_topic_name
from irstd_ros.bags.rosutil import import_message_type, make_qos, ros_ok, ros_session, to_bag_qos
from irstd_ros.core.stamps import NS_PER_S
from irstd_ros.errors import BagError, ConfigError

log = logging.getLogger(__name__)

DISCOVERY_PERIOD_S = 0.2
LOOP_PERIOD_S = 0.05
QOS_MODES = ("auto", "reliable", "best_effort")
BAG_THREAD_NAME = "irstd_record_bag"
QUEUE_SIZE = 1000  # messages received, not yet written (RecordConfig.queue_size)
QUEUE_MAX_BYTES = 256 * 2**20  # ...of at most so many bytes together (one message always fits)

R = TypeVar("R")


@dataclass(frozen=True)
class RecordConfig:
    """``irstd record`` options. Relative topic names resolve in the recorder's namespace."""

    out: Path
    topics: tuple[str, ...] = OUTPUT_TOPICS
    # (topic, type) of topics to subscribe at once, before any publisher is seen: each one
    # of ``topics`` once resolved (the Recorder refuses another)
    known_types: tuple[tuple[str, str], ...] = ()
    storage: str = "mcap"
    compress: bool = False
    duration: float | None = None  # s
    max_messages: int | None = None  # over all topics
    idle_timeout: float | None = None  # s without a message, once one arrived
    discovery_timeout: float = 10.0  # s to wait for a publisher of every topic
    qos: str = "auto"
    depth: int = 100
    overwrite: bool = False
    progress: bool = True
    queue_size: int = QUEUE_SIZE  # messages waiting to be written, at most; more are dropped

    def validate(self) -> None:
        """:class:`ConfigError` on an invalid value (NaN and infinite numbers included, and
        topic names ROS would refuse), before any bag is created."""
        if not self.topics:
            raise ConfigError("no topic to record")
        if self.qos not in QOS_MODES:
            raise ConfigError(f"qos must be one of {', '.join(QOS_MODES)}, got {self.qos!r}")
        for name in ("duration", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise ConfigError(f"{name} must be > 0 (seconds), got {value}")
        if not 0 <= self.discovery_timeout < math.inf:
            raise ConfigError(f"discovery_timeout must be >= 0 (seconds), got {self.discovery_timeout}")
        if self.max_messages is not None and self.max_messages < 1:
            raise ConfigError(f"max_messages must be >= 1, got {self.max_messages}")
        if self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {self.queue_size}")
        for topic in self.topics:
            check_topic_name(topic, "--topics")
        for topic, msgtype in self.known_types:
            check_topic_name(topic, f"--type {topic}={msgtype}")


def parse_known_type(text: str) -> tuple[str, str]:
    """``/camera/image=sensor_msgs/msg/Image`` -> (topic, type): a topic subscribed at once,
    before its publisher is seen (:attr:`RecordConfig.known_types`)."""
    topic, sep, msgtype = text.partition("=")
    if not sep or not topic or msgtype.count("/") != 2 or "" in msgtype.split("/"):
        raise ConfigError(f"--type must be TOPIC=PKG/msg/TYPE, got {text!r}")
    return topic, msgtype


@dataclass
class RecordStats:
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    stopped_by: str = ""
    missing_topics: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # received, not written: disk too slow

    @property
    def messages(self) -> int:
        return sum(self.counts.values())


class _BagThread:
    """Runs calls one at a time, in the order given, on a thread of its own: every call on
    the bag writer goes through it, so the storage is only ever used by the thread that
    opened it (sqlite3 refuses any other).

    :meth:`call` waits for its call (its result, or its exception, is the caller's);
    :meth:`post` and :meth:`offer` return at once, their call's exception going to
    ``on_error``. :meth:`offer` queues a call only while fewer than ``max_items`` offered
    calls (the one running included) of fewer than ``max_bytes`` together wait: else it
    returns False, for the caller to count what it left out. :meth:`stop` runs everything
    queued, then ends the thread.
    """

    def __init__(
        self, on_error: Callable[[Exception], None], max_items: int = QUEUE_SIZE,
        max_bytes: int = QUEUE_MAX_BYTES,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=BAG_THREAD_NAME)
        self._on_error = on_error
        self._max_items, self._max_bytes = max_items, max_bytes
        self._lock = threading.Lock()
        self._items = self._bytes = 0  # offered calls not done yet, and their sizes

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        return self._pool.submit(fn, *args).result()

    def post(self, fn: Callable[..., object], *args: Any) -> None:
        self._pool.submit(self._run, fn, args, 0)

    def offer(self, nbytes: int, fn: Callable[..., object], *args: Any) -> bool:
        with self._lock:
            full = self._items >= self._max_items or self._bytes + nbytes > self._max_bytes
            if self._items and full:
                return False
            self._items += 1
            self._bytes += nbytes
        self._pool.submit(self._run, fn, args, nbytes, True)
        return True

    def _run(self, fn: Callable[..., object], args: tuple[Any, ...], nbytes: int, offered: bool = False) -> None:
        try:
            fn(*args)
        except Exception as exc:  # nobody waits for this call: its failure is reported
            self._on_error(exc)
        finally:
            if offered:
                with self._lock:
                    self._items -= 1
                    self._bytes -= nbytes

    def stop(self) -> None:
        self._pool.shutdown(wait=True)


class Recorder:
    """Subscribes ``topics`` on ``node`` (spun by the caller) and writes them to a bag.

    :meth:`close` must be called (it writes metadata.yaml).
    """

    def __init__(self, node: Any, cfg: RecordConfig) -> None:
        cfg.validate()
        self.node = node
        self.cfg = cfg
        self.topics = [node.resolve_topic_name(t) for t in cfg.topics]
        self._known: dict[str, str] = {}
        for topic, msgtype in cfg.known_types:
            resolved = node.resolve_topic_name(topic)
            if resolved not in self.topics:  # as resolved: "targets" is "/targets" at the root
                recorded = ", ".join(self.topics)
                raise ConfigError(f"--type {topic}={msgtype}: {resolved} is not recorded ({recorded})")
            self._known[resolved] = msgtype
        self.last_ns: int | None = None
        self._lock = threading.Lock()
        self._discover_lock = threading.Lock()
        self._subs: dict[str, Any] = {}
        self._closed = False
        self._discard = False  # closing with keep=False: what is queued is not written
        self.error: Exception | None = None  # the first failure in a callback or a write
        self._accepted = 0  # messages queued to be written (max_messages counts these)
        self._dropped: dict[str, int] = {}  # messages left out: the queue was full
        self._io = _BagThread(self._failed, cfg.queue_size)
        try:
            bag = BagWriter(cfg.out, cfg.storage, compress=cfg.compress, overwrite=cfg.overwrite)
            self._bag = self._io.call(bag.__enter__)
        except BaseException:
            self._io.stop()
            raise
        try:
            self._timer = node.create_timer(DISCOVERY_PERIOD_S, self._discover_callback)
            self.discover()
        except BaseException as exc:  # no half-written bag left behind
            try:
                self._io.call(self._bag.__exit__, type(exc), exc, None)
            finally:
                self._io.stop()
            raise

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._bag.counts)

    @property
    def messages(self) -> int:
        return sum(self._bag.counts.values())

    @property
    def dropped(self) -> dict[str, int]:
        """topic -> messages received but left out, the bag's queue being full."""
        with self._lock:
            return dict(self._dropped)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def failure(self) -> BagError:
        """The recording's failure (:attr:`error` set) as the :class:`BagError` to raise."""
        return BagError(
            f"recording into {self.cfg.out} stopped after {self.messages} messages: {self.error}"
        )

    def raise_if_failed(self) -> None:
        """Raise :meth:`failure` if the recording failed (:attr:`error` set): while
        recording, or after :meth:`close` (a write still queued then may have failed)."""
        if self.error is not None:
            raise self.failure() from self.error

    def flush(self) -> None:
        """Wait until every message queued so far is written (or left out after a failure)."""
        self._io.call(lambda: None)

    @property
    def missing(self) -> list[str]:
        """Topics not subscribed yet (no publisher seen)."""
        return [t for t in self.topics if t not in self._subs]

    def discover(self) -> None:
        """Subscribe to the requested topics that now have a publisher."""
        with self._discover_lock:
            if not self._closed and self.missing:
                self._discover()

    def _failed(self, exc: Exception) -> None:
        """Keep the first failure of a callback for the main thread (an exception left in
        a callback would stop the executor's thread, and with it every subscription).
        Called on the executor's thread and the bag's: checked and set under ``_lock``
        (whose holders never wait for the bag's thread)."""
        with self._lock:
            first = self.error is None
            if first:
                self.error = exc
        if first:
            log.error("recording failed: %s", exc)

    def _discover_callback(self) -> None:
        try:
            self.discover()
        except Exception as exc:
            self._failed(exc)

    def _discover(self) -> None:
        graph = dict(self.node.get_topic_names_and_types())
        for topic in self.missing:
            infos = self.node.get_publishers_info_by_topic(topic)
            if infos and graph.get(topic):
                msgtype = graph[topic][0]
                reliability = self._reliability(infos)
                offered = to_bag_qos(infos[0].qos_profile)
                type_hash = getattr(infos[0], "topic_type_hash", None)  # Jazzy and later
                type_hash = str(type_hash) if type_hash is not None else None
            elif topic in self._known:
                msgtype = self._known[topic]
                reliability = "best_effort" if self.cfg.qos == "best_effort" else "reliable"
                offered, type_hash = qos_profile(reliability == "reliable"), None
            else:
                continue
            cls = import_message_type(msgtype)
            qos = make_qos(reliability, self.cfg.depth)
            self._bag.check_type(topic, msgtype)  # here: the bag's thread may be busy writing
            with self._lock:  # declared on the bag's thread before any message of the topic
                self._io.post(self._bag.add_topic, topic, msgtype, offered, type_hash)
            self._subs[topic] = self.node.create_subscription(
                cls, topic, lambda raw, t=topic: self._on_message(t, raw), qos, raw=True
            )
            log.info("recording %s (%s)", topic, msgtype)

    def _reliability(self, infos: list[Any]) -> str:
        if self.cfg.qos != "auto":
            return self.cfg.qos
        from rclpy.qos import ReliabilityPolicy

        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        return "reliable" if reliable else "best_effort"

    def _on_message(self, topic: str, raw: bytes) -> None:
        """Queue the message for the bag's thread and return (never wait for the disk)."""
        now = time.time_ns()
        with self._lock:
            if self._closed or self.error is not None or self._full():
                return
            self.last_ns = now  # a message arrived, written or not
            if not self._io.offer(len(raw), self._write, topic, now, raw):
                self._drop(topic)
                return
            self._accepted += 1

    def _write(self, topic: str, now: int, raw: bytes) -> None:
        """On the bag's thread: write one message, unless the recording failed or is discarded."""
        if self.error is None and not self._discard:
            self._bag.write_raw(topic, now, raw)

    def _drop(self, topic: str) -> None:
        """Count a message the full queue left out (the caller holds ``_lock``)."""
        if not self._dropped:
            log.warning(
                "the bag %s is written slower than messages arrive (its queue of %d messages, "
                "%d MiB, is full): dropping messages, counted, from %s on",
                self.cfg.out, self.cfg.queue_size, QUEUE_MAX_BYTES // 2**20, topic,
            )
        self._dropped[topic] = self._dropped.get(topic, 0) + 1

    def _full(self) -> bool:
        """``max_messages`` are queued: what arrives before the main thread stops the
        recording is left out, so the bag holds exactly that many."""
        limit = self.cfg.max_messages
        return limit is not None and self._accepted >= limit

    def close(self, keep: bool | None = True, *, log_dropped: bool = True) -> None:
        """Stop subscribing, write what is queued and close the bag (idempotent).

        ``keep=False`` deletes the bag (what is queued is not written); ``None`` keeps it
        only if a message was written. A recording whose writing failed (:attr:`error`)
        is kept only if a message was written, as with ``None``. A failure of a write
        still queued is kept in :attr:`error`, for the caller to check after closing
        (:meth:`raise_if_failed`). The messages dropped (:attr:`dropped`) are logged, in
        sum, unless ``log_dropped`` is False (a caller that reports them itself) and the
        recording did not fail (its caller raises instead: they would be said nowhere).
        """
        with self._discover_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            self._discard = keep is False
        self.node.destroy_timer(self._timer)
        for sub in self._subs.values():
            self.node.destroy_subscription(sub)
        try:
            self._io.call(self._finish, keep)  # after every write queued before it
        finally:
            self._io.stop()
        dropped = self.dropped
        if dropped and (log_dropped or self.error is not None):
            log.warning(
                "%d message(s) were dropped, not written to %s (the disk did not keep up): %s",
                sum(dropped.values()), self.cfg.out,
                ", ".join(f"{t}: {n}" for t, n in dropped.items()),
            )

    def _finish(self, keep: bool | None) -> None:
        """On the bag's thread: close the bag, kept or removed (:meth:`close`)."""
        if keep is None or (keep and self.error is not None):
            keep = self.messages > 0
        if keep:
            self._bag.__exit__(None, None, None)
        else:
            self._bag.__exit__(BagError, BagError("aborted"), None)


def record(cfg: RecordConfig, should_stop: Callable[[], bool] = lambda: False) -> RecordStats:
    """Record until a stop condition; Ctrl-C stops cleanly (the bag is kept)."""
    cfg.validate()
    stats = RecordStats(cfg.out)
    with ros_session("irstd_record") as node:
        rec = Recorder(node, cfg)
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_messages, desc="record", unit="msg")
        t0 = time.monotonic()
        keep: bool | None = True
        try:
            stats.stopped_by = _wait(rec, cfg, t0, bar, should_stop)
        except KeyboardInterrupt:
            stats.stopped_by = "interrupted"
        except BagError:
            keep = None  # what was recorded is kept; no empty bag left behind
            raise
        finally:
            # writes out what is queued; a recording that stopped returns its dropped
            # messages (stats.dropped, which `irstd record` prints), one that failed logs them
            rec.close(keep, log_dropped=not stats.stopped_by)
            if bar is not None:
                bar.close()
        rec.raise_if_failed()  # a write failed while the queue was written out
        stats.wall_s = time.monotonic() - t0
        stats.counts = rec.counts
        stats.missing_topics = rec.missing
        stats.dropped = rec.dropped
    return stats


def _wait(
    rec: Recorder, cfg: RecordConfig, t0: float, bar: Any, should_stop: Callable[[], bool]
) -> str:
    seen = 0
    while True:
        time.sleep(LOOP_PERIOD_S)
        rec.raise_if_failed()
        now = time.monotonic()
        n = rec.messages
        if bar is not None and n > seen:
            dropped = rec.dropped_total
            if dropped:
                bar.set_postfix(dropped=dropped, refresh=False)
            bar.update(n - seen)
        seen = n
        if should_stop():
            return "stopped"
        if not ros_ok():
            return "interrupted"
        if cfg.duration is not None and now - t0 >= cfg.duration:
            return "duration"
        if cfg.max_messages is not None and n >= cfg.max_messages:
            return "max_messages"
        if cfg.idle_timeout is not None and rec.last_ns is not None:
            if (time.time_ns() - rec.last_ns) / NS_PER_S >= cfg.idle_timeout:
                return "idle"
        nothing_found = len(rec.missing) == len(rec.topics)
        if nothing_found and now - t0 >= cfg.discovery_timeout:
            raise BagError(
                f"no publisher of {', '.join(rec.missing)} after {cfg.discovery_timeout:.0f} s; "
                "is the node running (same ROS_DOMAIN_ID)?"
            )
