"""pip install of irstd_ros (the project's venv: `make setup` runs `pip install -e . --no-deps`).

On a ROS 2 install the package is built by colcon through CMakeLists.txt instead.
Pinned dependencies live in requirements/*.txt; the list below is what the code imports.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

# One version source: package.xml (what colcon and rosdep read).
PACKAGE_XML = (Path(__file__).resolve().parent / "package.xml").read_text()
VERSION = re.search(r"<version>([^<]+)</version>", PACKAGE_XML).group(1)

setup(
    name="irstd_ros",
    version=VERSION,
    description="Infrared small target detection (SGEM-UNet) for ROS 2",
    license="Apache-2.0",
    packages=find_packages(include=["irstd_ros", "irstd_ros.*"]),
    package_data={"irstd_ros": ["weights/*.safetensors", "py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "scipy",
        "pillow",
        "psutil",
        "pyyaml",
        "safetensors",
        "torch",
    ],
    entry_points={
        "console_scripts": [
            "irstd = irstd_ros.cli.main:main",
            "irstd_node = irstd_ros.ros.node:main",
            "irstd_lifecycle_node = irstd_ros.ros.lifecycle_node:main",
        ],
    },
    zip_safe=False,
)
