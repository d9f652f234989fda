"""No API newer than the library versions the supported ROS distributions ship: ROS 2
Humble's Ubuntu 22.04 has numpy 1.21 and Pillow 9.0.1 (`rosdep` installs those), which lack
numpy's ``percentile``/``quantile`` ``method=`` (1.22), Pillow's ``Image.Transpose`` and
``Image.Resampling`` enums (9.1) and ``ImageFont.load_default(size=)`` (10.1). This machine
has newer ones, so the names are checked in the source; the behaviour of each replacement
is tested beside it (test/core/test_statistics.py, test_overlay.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import irstd_ros

PACKAGE = Path(irstd_ros.__file__).parent
NEWER_ATTRIBUTES = {  # attribute of PIL's Image -> the Pillow version it appeared in
    "Transpose": "9.1 (use irstd_ros.core.pillow.TRANSPOSE)",
    "Resampling": "9.1 (use irstd_ros.core.pillow.RESAMPLING)",
}
METHOD_FUNCTIONS = ("percentile", "quantile", "nanpercentile", "nanquantile")
PILLOW_HOME = PACKAGE / "core" / "pillow.py"


def _uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in NEWER_ATTRIBUTES:
            if isinstance(node.value, ast.Name) and node.value.id == "Image":
                found.append((node.lineno, f"Image.{node.attr}: Pillow {NEWER_ATTRIBUTES[node.attr]}"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            keywords = {k.arg for k in node.keywords}
            if node.func.attr in METHOD_FUNCTIONS and "method" in keywords:
                found.append((node.lineno, f"{node.func.attr}(method=): numpy 1.22"))
    return found


def test_no_api_newer_than_humble_s_numpy_and_pillow():
    offences = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PILLOW_HOME
        for line, what in _uses(ast.parse(path.read_text(), str(path)))
    ]
    assert offences == []


def test_the_check_finds_what_it_looks_for():
    source = "np.percentile(a, 5, method='inverted_cdf')\nImage.Resampling.BOX\nx = Image.Transpose.ROTATE_90\n"
    assert [line for line, _ in _uses(ast.parse(source))] == [1, 2, 3]
