"""``irstd replay``: publish a bag's image topic(s) with the recorded timing (no rosbag2 needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.bags.io import IMAGE_TOPIC
from irstd_ros.bags.replay import ReplayConfig, parse_remap, replay
from irstd_ros.bags.rosutil import QOS_CHOICES
from irstd_ros.cli._options import non_negative_float, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="publish a bag's topics through rclpy with the recorded timing",
        description="Publish a bag's topics like `ros2 bag play`, for machines without rosbag2.",
    )
    p.add_argument("bag", type=Path, help="the rosbag2 bag folder to publish")
    p.add_argument(
        "--topic",
        action="append",
        dest="topics",
        metavar="TOPIC",
        help=f"topic to publish (repeatable; default: {IMAGE_TOPIC})",
    )
    p.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="publish FROM under the name TO (repeatable; default: none)",
    )
    p.add_argument("--rate", type=positive_float, default=1.0, help="playback speed factor (default: %(default)g)")
    p.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    p.add_argument(
        "--start-offset",
        type=non_negative_float,
        default=0.0,
        metavar="SEC",
        help="skip the first SEC seconds of the bag (default: %(default)g)",
    )
    p.add_argument("--qos", choices=QOS_CHOICES, default="reliable", help="publisher reliability (default: %(default)s)")
    p.add_argument("--depth", type=positive_int, default=10, help="publisher queue depth (default: %(default)s)")
    p.add_argument(
        "--wait-subscribers",
        type=non_negative_float,
        default=5.0,
        metavar="SEC",
        help="wait up to SEC for a subscriber before starting (0: don't) (default: %(default)g)",
    )
    p.add_argument(
        "--sync-topic",
        metavar="TOPIC",
        help="after each message of the first --topic wait for a message with the same "
        "header stamp here (e.g. the node's targets): no frame is dropped by a slow consumer",
    )
    p.add_argument("--sync-timeout", type=positive_float, default=5.0, metavar="SEC",
                   help="with --sync-topic: wait at most SEC for each answer, then go on (counted as "
                   "a sync timeout) (default: %(default)g)")
    p.add_argument("--sync-give-up", type=positive_int, metavar="N",
                   help="with --sync-topic: stop (exit non-zero) after N sync timeouts in a row "
                   "(default: never; a warning after 3)")
    p.add_argument(
        "--ack-timeout",
        type=non_negative_float,
        default=5.0,
        metavar="SEC",
        help="at the end, wait up to SEC until reliable subscribers acknowledged every "
        "message, so none in flight is lost (0: don't) (default: %(default)g)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = ReplayConfig(
        bag=args.bag,
        topics=tuple(args.topics or (IMAGE_TOPIC,)),
        remaps=tuple(parse_remap(r) for r in args.remap),
        rate=args.rate,
        loop=args.loop,
        start_offset=args.start_offset,
        qos=args.qos,
        depth=args.depth,
        wait_subscribers=args.wait_subscribers,
        sync_topic=args.sync_topic,
        sync_timeout=args.sync_timeout,
        sync_give_up=args.sync_give_up,
        ack_timeout=args.ack_timeout,
    )
    stats = replay(cfg)  # Ctrl-C: "interrupted" and exit 130 (SIGTERM 143), as every command
    late = stats.max_lateness_ms
    print(
        f"published {stats.published} messages ({stats.bag_s:.1f} s of bag) "
        f"in {stats.wall_s:.1f} s; "
        f"max lateness {late:.1f} ms"
        + (f"; {stats.sync_timeouts} sync timeouts" if cfg.sync_topic else "")
        + (
            f"; not acknowledged on {', '.join(stats.unacked_topics)}"
            if stats.unacked_topics
            else ""
        )
    )
    return 0
