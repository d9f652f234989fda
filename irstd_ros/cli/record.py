"""``irstd record``: record topics (the node's outputs) to a rosbag2 bag via rclpy."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType

from irstd_ros.bags.io import OUTPUT_TOPICS
from irstd_ros.bags.record import QOS_MODES, QUEUE_SIZE, RecordConfig, parse_known_type, record
from irstd_ros.cli._options import (
    add_bag_writing,
    check_bag_out,
    non_negative_float,
    positive_float,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record topics (default: the node's outputs) to a rosbag2 bag",
        description="Record topics like `ros2 bag record`; stops on --duration, --max-messages, "
        "--idle-timeout or Ctrl-C.",
    )
    p.add_argument("--out", type=Path, required=True, help="bag folder to create")
    p.add_argument(
        "--topics",
        nargs="+",
        default=list(OUTPUT_TOPICS),
        help="topics; relative names resolve in the root namespace "
        f"(default: {' '.join(OUTPUT_TOPICS)})",
    )
    p.add_argument("--duration", type=positive_float, metavar="SEC", help="stop after SEC seconds (default: no limit)")
    p.add_argument("--max-messages", type=positive_int, metavar="N", help="stop after N messages in all (default: no limit)")
    p.add_argument(
        "--idle-timeout",
        type=positive_float,
        metavar="SEC",
        help="stop SEC seconds after the last message (once one arrived) (default: never)",
    )
    p.add_argument(
        "--discovery-timeout",
        type=non_negative_float,
        default=10.0,
        metavar="SEC",
        help="fail if none of the topics has a publisher after SEC seconds (default: %(default)g)",
    )
    p.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        metavar="TOPIC=TYPE",
        help="subscribe TOPIC (one of --topics) at once as TYPE, e.g. "
        "/camera/image=sensor_msgs/msg/Image, rather than once its publisher is seen: "
        "started before `irstd replay`, the recording misses no first message (repeatable)",
    )
    p.add_argument(
        "--qos",
        choices=QOS_MODES,
        default="auto",
        help="subscription reliability; auto: compatible with the publishers (default: %(default)s)",
    )
    p.add_argument(
        "--queue-size",
        type=positive_int,
        default=QUEUE_SIZE,
        metavar="N",
        help="messages received but not yet written, at most; more are dropped and counted "
        "(a disk that does not keep up) (default: %(default)s)",
    )
    add_bag_writing(p)
    p.set_defaults(func=run)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    check_bag_out(args)  # a folder that can be made (or --overwrite): before any work
    cfg = RecordConfig(
        out=args.out,
        topics=tuple(args.topics),
        known_types=tuple(parse_known_type(t) for t in args.types),
        storage=args.storage,
        compress=args.compress,
        duration=args.duration,
        max_messages=args.max_messages,
        idle_timeout=args.idle_timeout,
        discovery_timeout=args.discovery_timeout,
        qos=args.qos,
        overwrite=args.overwrite,
        queue_size=args.queue_size,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` also closes the bag cleanly
    try:
        stats = record(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts = ", ".join(f"{t}: {n}" for t, n in stats.counts.items()) or "nothing"
    print(f"wrote {stats.path} ({stats.stopped_by} after {stats.wall_s:.1f} s): {counts}")
    if stats.missing_topics:
        print(f"never published: {', '.join(stats.missing_topics)}")
    if stats.dropped:
        dropped = ", ".join(f"{t}: {n}" for t, n in stats.dropped.items())
        print(f"dropped (the disk did not keep up; see --queue-size): {dropped}")
    return 0
