#!/usr/bin/env bash
# Creates / updates the project's virtualenv (.venv) with everything irstd_ros needs,
# ROS 2 included, on a machine without a ROS install. `make setup` runs this.
#
#   scripts/setup_env.sh [--force]
#
# Environment: IRSTD_VENV (default <repo>/.venv), IRSTD_PYTHON (default python3.11),
#              IRSTD_BUILD_DIR (default <repo>/.underlay: colcon build/ and log/).
#
# Steps:
#  1. python3.11 -m venv .venv (only if absent: an existing venv is updated in place).
#  2. pip install the pinned requirements/*.txt (-c requirements/constraints.txt):
#     torch 2.13.0 (CPU), and ROS 2 Kilted as PyPI wheels. Those install a ROS prefix
#     at the venv root (.venv/lib, .venv/share, ...); a .pth of ros-wheels-bootstrapper
#     re-executes every Python process of the venv once with LD_LIBRARY_PATH=.venv/lib.
#  3. colcon builds the interface packages no registry provides, installing them INTO
#     the venv prefix (--merge-install --install-base .venv): libraries land in
#     .venv/lib (found through the bootstrapper), Python modules in site-packages.
#       * vision_msgs: copied from underlay/vision_msgs (kept there under COLCON_IGNORE
#         so a colcon build on a real ROS install uses the system's vision_msgs).
#       * irstd_ros messages (msg/): the repository's root package itself, configured
#         with -DIRSTD_ROS_INTERFACES_ONLY=ON so that only the messages are installed.
#     The wheels' exported CMake targets name include dirs of the manylinux build
#     container (/opt/python/cp311-cp311/...); underlay/cmake/fix_wheel_paths.cmake,
#     injected with CMAKE_PROJECT_INCLUDE, rewrites them to this venv's interpreter.
#  4. site-packages/irstd_ros then holds only the generated msg code: its generated
#     __init__.py is removed so the folder is a plain portion of the package, and the
#     sources are installed editable (`pip install -e . --no-deps`, compat mode: a .pth
#     puts the repository root on sys.path). `import irstd_ros` thus loads the regular
#     package <repo>/irstd_ros, whose __init__.py calls pkgutil.extend_path(), which
#     appends site-packages/irstd_ros to __path__: irstd_ros.msg (and the typesupport
#     extension modules rclpy imports) resolve there, everything else from the sources.
#  5. A smoke test imports rclpy, vision_msgs.msg and irstd_ros.msg; then a stamp
#     (hash of requirements/, underlay/, msg/, the build files and this script) is
#     written to .venv. With an up-to-date stamp the script exits at once.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(realpath -m "${IRSTD_VENV:-$REPO/.venv}")"
PYTHON="${IRSTD_PYTHON:-python3.11}"
BUILD_DIR="$(realpath -m "${IRSTD_BUILD_DIR:-$REPO/.underlay}")"
STAMP="$VENV/.irstd_setup_stamp"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[setup] %s\n' "$*" >&2; }

setup_hash() {
  (
    cd "$REPO"
    {
      find requirements underlay msg -type f ! -name '*.pyc' 2>/dev/null | LC_ALL=C sort
      printf '%s\n' package.xml CMakeLists.txt setup.py pyproject.toml scripts/setup_env.sh
    } | while read -r f; do
      [[ -f "$f" ]] && printf '%s  %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"
    done
    printf 'venv=%s\n' "$VENV"
  ) | sha256sum | cut -c1-64
}

HASH="$(setup_hash)"
if [[ $FORCE == 0 && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  log "up to date ($VENV)"
  exit 0
fi

# A hermetic build: nothing from a sourced ROS install or from another venv's process
# (the bootstrapper's guard variable would stop it from setting LD_LIBRARY_PATH).
unset AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH PYTHONPATH ROS_DISTRO \
  ROS_VERSION ROS_PYTHON_VERSION _ROS_WHEELS_BOOTSTRAP_COMPLETE PYTHONHOME VIRTUAL_ENV

# 1. venv ---------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' \
  || { log "need Python >= 3.10 in $VENV"; exit 1; }
PYVER="$("$VPY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
SITE="$VENV/lib/python$PYVER/site-packages"

# 2. pinned requirements -------------------------------------------------------------
log "installing pinned requirements"
mkdir -p "$BUILD_DIR"
"$VPY" -m pip install --disable-pip-version-check --progress-bar off \
  -c "$REPO/requirements/constraints.txt" \
  -r "$REPO/requirements/base.txt" \
  -r "$REPO/requirements/ros.txt" \
  -r "$REPO/requirements/dev.txt" \
  -r "$REPO/requirements/backends-cpu.txt" > "$BUILD_DIR/pip_install.log" 2>&1 || {
  grep -v "is ignored: it is neither a file nor a directory" "$BUILD_DIR/pip_install.log" \
    | tail -n 40 >&2
  log "pip install failed (full log: $BUILD_DIR/pip_install.log)"
  exit 1
}

# 3. interface packages, built with colcon into the venv prefix ----------------------
log "building interface packages (vision_msgs, irstd_ros msgs) into $VENV"
mkdir -p "$BUILD_DIR/src"
rm -rf "$BUILD_DIR/src/vision_msgs"
cp -r "$REPO/underlay/vision_msgs" "$BUILD_DIR/src/vision_msgs"
rm -f "$BUILD_DIR/src/vision_msgs/COLCON_IGNORE"

export AMENT_PREFIX_PATH="$VENV"   # rosidl finds its typesupports in the ament index
export CMAKE_PREFIX_PATH="$VENV"
export PATH="$VENV/bin:$PATH"
(
  cd "$BUILD_DIR"
  "$VENV/bin/colcon" --log-base "$BUILD_DIR/log" build \
    --paths "$BUILD_DIR/src/vision_msgs" "$REPO" \
    --build-base "$BUILD_DIR/build" \
    --install-base "$VENV" --merge-install \
    --event-handlers console_cohesion+ summary+ status- \
    --cmake-args \
      -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_TESTING=OFF \
      "-DPython3_EXECUTABLE=$VPY" \
      "-DCMAKE_PREFIX_PATH=$VENV" \
      "-DCMAKE_PROJECT_INCLUDE=$REPO/underlay/cmake/fix_wheel_paths.cmake" \
      -DIRSTD_ROS_INTERFACES_ONLY=ON \
      --no-warn-unused-cli
) > "$BUILD_DIR/colcon_build.log" 2>&1 || {
  tail -n 80 "$BUILD_DIR/colcon_build.log" >&2
  log "colcon build failed (full log: $BUILD_DIR/colcon_build.log)"
  exit 1
}

# 4. irstd_ros: generated msg code in site-packages + the sources, editable ----------
# The generated package's metadata (irstd_ros-*.egg-info) goes: pip would take it for
# the irstd_ros distribution and delete the generated files when installing the sources.
rm -f "$SITE/irstd_ros/__init__.py"
rm -rf "$SITE/irstd_ros/__pycache__" "$SITE"/irstd_ros-*.egg-info
log "installing irstd_ros (editable)"
# editable_mode=compat: a plain .pth with the repository root. setuptools' default
# editable finder sits after the path finder in sys.meta_path, so it would never be asked
# about irstd_ros once site-packages/irstd_ros (a namespace portion) is found first.
"$VPY" -m pip install --disable-pip-version-check --no-deps --no-build-isolation \
  -e "$REPO" --config-settings editable_mode=compat > "$BUILD_DIR/pip_editable.log" 2>&1 || {
  cat "$BUILD_DIR/pip_editable.log" >&2
  exit 1
}

# 5. smoke test, from a neutral directory (not the repository root) ------------------
(
  cd /
  IRSTD_REPO="$REPO" "$VPY" - <<'EOF'
import os

import rclpy  # noqa: F401
import vision_msgs.msg  # noqa: F401
from rclpy.type_support import check_for_type_support

import irstd_ros
from irstd_ros.msg import Target, TargetArray

check_for_type_support(TargetArray)
check_for_type_support(vision_msgs.msg.Detection2DArray)
want = os.path.join(os.environ["IRSTD_REPO"], "irstd_ros", "__init__.py")
assert os.path.samefile(irstd_ros.__file__, want), (irstd_ros.__file__, want)
assert Target().snr == 0.0
EOF
) || { log "smoke test failed"; exit 1; }

echo "$HASH" > "$STAMP"
log "done: $VENV"
