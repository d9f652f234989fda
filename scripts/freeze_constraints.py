#!/usr/bin/env python3
"""Print the pins of every distribution installed in this interpreter's environment.

`make freeze` writes them to requirements/constraints.txt, which `make setup` passes to pip
with -c so that transitive dependencies stay at the versions tested here.

Only real distributions (.dist-info) are listed: the ROS wheels also carry .egg-info
folders of their inner packages (rclpy, std_msgs, ...) that pip cannot install by name.
"""

from __future__ import annotations

import importlib.metadata as md
import re

SKIP = {"pip", "irstd-ros"}


def main() -> None:
    pins: dict[str, str] = {}
    for dist in md.distributions():
        path = str(getattr(dist, "_path", ""))
        if not path.endswith(".dist-info"):
            continue
        name = dist.metadata["Name"]
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in SKIP:
            continue
        # Local version labels (2.13.0+cpu) would tie the pin to one wheel index.
        pins[key] = dist.version.split("+", 1)[0]
    print("# Every distribution of the venv, pinned: `make setup` installs with -c this file.")
    print("# Regenerate with `make freeze` after changing requirements/*.txt.")
    for key in sorted(pins):
        print(f"{key}=={pins[key]}")


if __name__ == "__main__":
    main()
