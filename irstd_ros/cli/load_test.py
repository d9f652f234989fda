"""``irstd load-test``: the node process under a camera-rate stream (:mod:`irstd_ros.tools.load_test`)."""

from __future__ import annotations

import argparse

from irstd_ros.tools import load_test


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("load-test", help="the node process under a camera-rate stream: drops, "
                       "latency, CPU, memory trend", description=load_test.DESCRIPTION)
    load_test.add_arguments(p)
    p.set_defaults(func=load_test.run)
