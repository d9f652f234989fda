"""``irstd replay``: publish a bag's topics through rclpy with the recorded timing.

What ``ros2 bag play`` does, for machines without rosbag2: the CDR bytes of each
message are published as they are (no re-serialisation), at the bag's receive times
divided by ``rate``, from ``start_offset`` seconds into the bag, optionally in a loop,
with remapped topic names and a chosen QoS. Remaps are refused up front where they would
be ambiguous: one topic remapped twice, two replayed topics published on one name.

``sync_topic`` turns the replay into a closed loop: after each message of the first
replayed topic (the consumer's input, e.g. the camera image; the other topics, such as
the truth, share its stamps) it waits (up to ``sync_timeout``) for a message with the
same header stamp on that topic -- e.g. the node's ``targets`` -- and pauses the bag
clock meanwhile, so a slow consumer never drops frames. A consumer that stops answering
is warned of after :data:`SYNC_WARN_AFTER` timeouts in a row (once), and with
``sync_give_up`` the replay stops with a :class:`BagError` after that many. Without it
the timing is the bag's, like ``ros2 bag play``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irstd_ros.bags.io import IMAGE_TOPIC, BagReader
from irstd_ros.bags.rosutil import (
    cdr_header_stamp,
    import_message_type,
    make_qos,
    ros_ok,
    ros_session,
)
from irstd_ros.core.stamps import NS_PER_S
from irstd_ros.errors import BagError, ConfigError

log = logging.getLogger(__name__)

SLEEP_SLICE_S = 0.05  # longest single sleep: stays responsive to Ctrl-C
SUBSCRIBER_POLL_S = 0.05
SYNC_QOS_DEPTH = 100
SYNC_WARN_AFTER = 3  # sync timeouts in a row before the warning that no answer comes


@dataclass(frozen=True)
class ReplayConfig:
    """``irstd replay`` options."""

    bag: Path
    topics: tuple[str, ...] = (IMAGE_TOPIC,)
    remaps: tuple[tuple[str, str], ...] = ()  # (bag topic, published topic)
    rate: float = 1.0
    loop: bool = False
    start_offset: float = 0.0  # s from the bag's first message
    qos: str = "reliable"
    depth: int = 10
    wait_subscribers: float = 5.0  # s to wait for a subscriber on every topic; 0: don't
    sync_topic: str | None = None
    sync_timeout: float = 5.0
    sync_give_up: int | None = None  # stop after so many sync timeouts in a row; None: never
    # s to wait, after the last message, until every reliable subscriber acknowledged it
    # (like `ros2 bag play --wait-for-all-acked`); destroying a publisher earlier can drop
    # what is still in flight. 0: don't wait. Best-effort publishers are never waited for.
    ack_timeout: float = 5.0
    progress: bool = True

    def validate(self) -> None:
        """:class:`ConfigError` on an invalid value (NaN and infinite numbers included, and
        topic names ROS would refuse), before anything is opened or published."""
        if not 0 < self.rate < math.inf:
            raise ConfigError(f"rate must be > 0, got {self.rate}")
        for name in ("start_offset", "wait_subscribers", "ack_timeout"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ConfigError(f"{name.replace('_', ' ')} must be >= 0 (seconds), got {value}")
        if not 0 < self.sync_timeout < math.inf:
            raise ConfigError(f"sync timeout must be > 0 (seconds), got {self.sync_timeout}")
        if self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        if self.sync_give_up is not None and self.sync_give_up < 1:
            raise ConfigError(f"sync give-up must be >= 1 (timeouts in a row), got {self.sync_give_up}")
        if self.sync_give_up is not None and self.sync_topic is None:
            raise ConfigError("--sync-give-up needs --sync-topic")
        if not self.topics:
            raise ConfigError("no topic to replay")
        for src, dst in self.remaps:
            check_topic_name(dst, f"--remap {src}:={dst}")
        targets: dict[str, str] = {}
        for src, dst in self.remaps:
            if targets.setdefault(src, dst) != dst:
                raise ConfigError(
                    f"--remap {src}:={targets[src]} and --remap {src}:={dst}: {src} remapped twice"
                )
        if self.sync_topic is not None:
            check_topic_name(self.sync_topic, "--sync-topic")


@dataclass
class ReplayStats:
    """What a replay did. ``max_lateness_ms``: the largest publish time minus scheduled
    time (a running maximum: a ``--loop`` replay keeps nothing per message)."""

    published: int = 0
    wall_s: float = 0.0
    bag_s: float = 0.0  # bag time covered (last - first published receive time)
    loops: int = 0
    sync_timeouts: int = 0
    unacked_topics: list[str] = field(default_factory=list)  # not all acknowledged in time
    max_lateness_ms: float = 0.0


def check_topic_name(name: str, option: str) -> None:
    """:class:`ConfigError` naming ``option`` and ``name`` unless ROS accepts ``name`` as a
    topic name (relative or absolute; ``~`` and ``{node}`` substitutions allowed), rather
    than an rclpy exception when the publisher or subscription is made."""
    from rclpy.exceptions import NameValidationException
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(name)
        validate_full_topic_name(expand_topic_name(name, "irstd", "/"))
    except (NameValidationException, ValueError) as exc:
        # rclpy's report is several lines (the name, a caret); keep the reason
        reason = str(exc).splitlines()[0].removeprefix("Invalid topic name: ").rstrip(":")
        reason = reason.split(", at /")[0]  # rcl's source location
        raise ConfigError(f"{option}: invalid ROS topic name {name!r}: {reason}") from None


def parse_remap(text: str) -> tuple[str, str]:
    """``/from:=/to`` -> ("/from", "/to")."""
    src, sep, dst = text.partition(":=")
    if not sep or not src or not dst:
        raise ConfigError(f"remap must be FROM:=TO, got {text!r}")
    return src, dst


class _StampWaiter:
    """Header stamps seen on a topic, to wait for a given one."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._cond = threading.Condition()

    def callback(self, raw: bytes) -> None:
        stamp = cdr_header_stamp(raw)
        if stamp is None:
            return
        with self._cond:
            self._seen.add(stamp)
            self._cond.notify_all()

    def wait(self, stamp: int, timeout: float) -> bool:
        with self._cond:
            ok = self._cond.wait_for(lambda: stamp in self._seen, timeout)
            # what else is there answers earlier frames, late: a loop's next pass, which
            # sends the same stamps again, must not take it for its own answer
            self._seen.clear()
            return ok


def _sleep_until(deadline: float, stop: Callable[[], bool]) -> None:
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, SLEEP_SLICE_S))


def check_start_offset(cfg: ReplayConfig) -> None:
    """:class:`ConfigError` when ``cfg.start_offset`` skips the whole bag (its metadata says
    how long it is), rather than publishing nothing."""
    if cfg.start_offset <= 0:
        return
    with BagReader(cfg.bag) as reader:
        duration_s = reader.duration_ns / NS_PER_S
    if cfg.start_offset > duration_s:
        raise ConfigError(
            f"start offset {cfg.start_offset:g} s is past the end of {cfg.bag}, which lasts {duration_s:.3f} s"
        )


def replay(
    cfg: ReplayConfig, node: Any | None = None, should_stop: Callable[[], bool] = lambda: False
) -> ReplayStats:
    """Publish ``cfg.bag``; with ``node`` given, the caller spins it (else a node is made)."""
    cfg.validate()
    check_start_offset(cfg)
    if node is None:
        with ros_session("irstd_replay") as own:
            return replay(cfg, own, should_stop)
    user_stop = should_stop

    def should_stop() -> bool:  # type: ignore[no-redef]  # also when rclpy was shut down (SIGINT)
        return user_stop() or not ros_ok()

    with BagReader(cfg.bag) as reader:
        for topic in cfg.topics:
            reader.require(topic)
        if not any(reader.topics[t].count for t in cfg.topics):  # before waiting for subscribers
            raise _nothing_to_replay(cfg)
        names = published_names(cfg, node.resolve_topic_name)
        qos = make_qos(cfg.qos, cfg.depth)
        pubs = {
            t: node.create_publisher(import_message_type(reader.topics[t].msgtype), names[t], qos)
            for t in cfg.topics
        }
        waiter: _StampWaiter | None = None
        sync_sub = None
        if cfg.sync_topic:
            waiter = _StampWaiter()
            msgtype = _topic_type(node, cfg.sync_topic, cfg.sync_timeout)
            sync_sub = node.create_subscription(
                import_message_type(msgtype),
                cfg.sync_topic,
                waiter.callback,
                make_qos("reliable", SYNC_QOS_DEPTH),
                raw=True,
            )
        try:
            if cfg.sync_topic:  # the consumer itself, not only a recorder, must be listening
                first = cfg.topics[0]
                _wait_for_consumer(node, pubs[first], cfg.sync_topic, cfg.wait_subscribers, should_stop)
            _wait_for_subscribers(pubs, cfg.wait_subscribers, should_stop)
            stats = _play(cfg, reader, pubs, waiter, should_stop)
            if cfg.qos == "reliable" and ros_ok():  # not after rclpy was shut down
                stats.unacked_topics = _wait_for_acks(pubs, cfg.ack_timeout)
            return stats
        finally:
            for pub in pubs.values():
                node.destroy_publisher(pub)
            if sync_sub is not None:
                node.destroy_subscription(sync_sub)


def published_names(cfg: ReplayConfig, resolve: Callable[[str], str]) -> dict[str, str]:
    """Replayed topic -> the name it is published on: remapped, then resolved by ``resolve``
    (the node's ``resolve_topic_name``). :class:`ConfigError` for a remap of a topic not
    replayed, and when two replayed topics would share a name (their streams would merge, or
    rclpy refuse the second type with a traceback)."""
    remap = dict(cfg.remaps)
    for src in remap:
        if src not in cfg.topics:
            raise ConfigError(f"remap of {src}, which is not replayed ({', '.join(cfg.topics)})")
    names: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for topic in cfg.topics:
        name = names[topic] = resolve(remap.get(topic, topic))
        other = by_name.setdefault(name, topic)
        if other != topic:
            how = " and ".join(
                f"{t} (--remap {t}:={remap[t]})" if t in remap else t for t in (other, topic)
            )
            raise ConfigError(f"{how} would both be published on {name}; remap one elsewhere")
    return names


def _nothing_to_replay(cfg: ReplayConfig) -> BagError:
    """The error of a bag with no message on the replayed topics (from the start offset)."""
    after = f" after {cfg.start_offset:g} s" if cfg.start_offset else ""
    return BagError(f"{cfg.bag} has no message on {', '.join(cfg.topics)}{after}")


def _topic_type(node: Any, topic: str, timeout: float) -> str:
    """The type of ``topic`` once a publisher of it is seen (for the sync subscription)."""
    name = node.resolve_topic_name(topic)
    deadline = time.monotonic() + max(timeout, SUBSCRIBER_POLL_S)
    while time.monotonic() < deadline:
        for found, types in node.get_topic_names_and_types():
            if found == name and types:
                return types[0]
        time.sleep(SUBSCRIBER_POLL_S)
    raise BagError(
        f"sync topic {name} has no publisher after {timeout:.0f} s; is the node running?"
    )


def _endpoint_nodes(infos: Any) -> set[tuple[str, str]]:
    return {(i.node_namespace, i.node_name) for i in infos}


def _wait_for_consumer(
    node: Any, pub: Any, sync_topic: str, timeout: float, should_stop: Callable[[], bool]
) -> bool:
    """Wait (up to ``timeout`` s) until a node that publishes ``sync_topic`` subscribes to
    ``pub``'s topic and every subscriber seen there is matched with ``pub``: a recorder
    subscribed before the consumer satisfied the count alone, and the first frame went out
    before the consumer's subscription matched (lost, a sync timeout). False, with a
    warning, when the time runs out (the replay goes on, as ``ros2 bag play`` would)."""
    if timeout <= 0:  # told not to wait, as _wait_for_subscribers
        return False
    sync_name = node.resolve_topic_name(sync_topic)
    deadline = time.monotonic() + timeout
    while not should_stop():
        consumers = _endpoint_nodes(node.get_publishers_info_by_topic(sync_name))
        listeners = _endpoint_nodes(node.get_subscriptions_info_by_topic(pub.topic_name))
        listeners.discard((node.get_namespace(), node.get_name()))
        if consumers & listeners and pub.get_subscription_count() >= len(listeners):
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(SUBSCRIBER_POLL_S)
    if not should_stop():
        log.warning("no node publishing %s subscribes to %s after %.1f s; publishing anyway",
                    sync_name, pub.topic_name, timeout)
    return False


def _wait_for_subscribers(
    pubs: dict[str, Any], timeout: float, should_stop: Callable[[], bool]
) -> None:
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while not should_stop() and time.monotonic() < deadline:
        if all(p.get_subscription_count() > 0 for p in pubs.values()):
            return
        time.sleep(SUBSCRIBER_POLL_S)
    missing = [p.topic_name for p in pubs.values() if p.get_subscription_count() == 0]
    if missing:  # like ros2 bag play: go on, the first messages may be lost
        log.warning(
            "no subscriber on %s after %.1f s; publishing anyway", ", ".join(missing), timeout
        )


def _wait_for_acks(pubs: dict[str, Any], timeout: float) -> list[str]:
    """Topics whose subscribers did not acknowledge everything within ``timeout`` s."""
    if timeout <= 0:
        return []
    from rclpy.duration import Duration

    deadline = time.monotonic() + timeout
    unacked = []
    for pub in pubs.values():
        left = max(deadline - time.monotonic(), 0.0)
        if not pub.wait_for_all_acked(Duration(nanoseconds=round(left * NS_PER_S))):
            unacked.append(pub.topic_name)
    if unacked:
        log.warning(
            "not every subscriber of %s acknowledged the last messages within %.1f s; "
            "they may be lost",
            ", ".join(unacked),
            timeout,
        )
    return unacked


def _sync_timed_out(cfg: ReplayConfig, silent: int, stats: ReplayStats) -> None:
    """After the ``silent``-th sync timeout in a row: the warning, each time a run of them
    reaches :data:`SYNC_WARN_AFTER` (a consumer that answers again and stalls again is
    warned of again); a :class:`BagError` at ``cfg.sync_give_up``."""
    if cfg.sync_give_up is not None and silent >= cfg.sync_give_up:
        raise BagError(
            f"no answer on {cfg.sync_topic} to {silent} frames in a row (--sync-give-up "
            f"{cfg.sync_give_up}); stopped after {stats.published} messages"
        )
    if silent == SYNC_WARN_AFTER:
        log.warning(
            "no answer on %s to %d frames in a row (waiting %g s each); is its node running "
            "and subscribed? (--sync-give-up N stops the replay)",
            cfg.sync_topic, silent, cfg.sync_timeout,
        )


def _play(
    cfg: ReplayConfig,
    reader: BagReader,
    pubs: dict[str, Any],
    waiter: _StampWaiter | None,
    should_stop: Callable[[], bool],
) -> ReplayStats:
    stats = ReplayStats()
    first_ns = reader.start_ns + round(cfg.start_offset * NS_PER_S)
    # each topic once however often it is named; unknown from a start offset on (the
    # bag's counts are of whole topics, and counting would read it twice)
    topics = dict.fromkeys(cfg.topics)
    total = None if cfg.start_offset else sum(reader.topics[t].count for t in topics)
    silent = 0  # sync timeouts in a row
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="replay", unit="msg")
    t_start = time.monotonic()
    last_ns = first_ns
    try:
        while not should_stop():
            wall0 = time.monotonic()
            if bar is not None:
                bar.reset(total=total)
            read = 0
            for topic, _, t, raw in reader.raw_messages(cfg.topics, start_ns=first_ns):
                read += 1
                deadline = wall0 + (t - first_ns) / NS_PER_S / cfg.rate
                now = time.monotonic()
                if waiter is not None and now > deadline:
                    wall0 += now - deadline  # waited for the consumer: the bag clock stood still
                    deadline = now
                _sleep_until(deadline, should_stop)
                if should_stop():
                    break
                stats.max_lateness_ms = max(stats.max_lateness_ms, (time.monotonic() - deadline) * 1e3)
                pubs[topic].publish(bytes(raw))
                stats.published += 1
                last_ns = max(last_ns, t)
                if bar is not None:
                    bar.update()
                if waiter is not None and topic == cfg.topics[0]:
                    stamp = cdr_header_stamp(raw)
                    if stamp is None:
                        continue
                    if waiter.wait(stamp, cfg.sync_timeout):
                        silent = 0
                        continue
                    stats.sync_timeouts += 1
                    silent += 1
                    _sync_timed_out(cfg, silent, stats)
            if read == 0:  # else "published 0 messages", or a --loop spinning on nothing
                raise _nothing_to_replay(cfg)
            stats.loops += 1
            if not cfg.loop:
                break
    finally:
        if bar is not None:
            bar.close()
    stats.wall_s = time.monotonic() - t_start
    stats.bag_s = (last_ns - first_ns) / NS_PER_S
    return stats
