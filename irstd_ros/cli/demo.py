"""``irstd demo``: the whole pipeline on a sample sequence (:mod:`irstd_ros.tools.demo`)."""

from __future__ import annotations

import argparse

from irstd_ros.tools import demo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the node over a sample sequence, scored (make demo)",
                       description=demo.DESCRIPTION)
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)
