#!/usr/bin/env bash
# Fetch the Python wheels the GPU device machine lacks into .whl/ (ignored by git), for
# `run(carry=[".whl", ...])`; scripts/gpu_session.sh installs whatever is there with
#   pip install --no-index --no-deps --target <work>/site .whl/*.whl   (never over torch)
#
# The device image (docs: the device tool's KINDS.md, "Python packages already there")
# has torch 2.11, numpy, scipy, safetensors, PyYAML, pillow, tqdm, matplotlib, imageio,
# onnx, onnxruntime, triton, pytest: everything the GPU session imports. So by default
# there is nothing to fetch and the script says so. It lacks rosbags, imageio-ffmpeg, ROS
# and TensorRT: the bag commands, video output and the tensorrt backend do not run there.
#
# Usage: scripts/gpu_wheels.sh                     # check: nothing needed
#        scripts/gpu_wheels.sh NAME==VERSION ...   # fetch these (no dependencies: name each)
# Wheels for CPython 3.12 on x86-64 Linux (pure-Python or manylinux), one version per name;
# the script refuses to leave more than IRSTD_WHEELS_MAX_MIB (default 16) in .whl/, since
# the tree, the pack (~41 MiB) and the wheels travel within 64 MiB.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/.whl
MAX_MIB=${IRSTD_WHEELS_MAX_MIB:-16}
PIP=${PIP:-"$ROOT/.venv/bin/python -m pip"}
[[ -x "$ROOT/.venv/bin/python" ]] || PIP="python3 -m pip"

if (( $# == 0 )); then
    echo "gpu_wheels: nothing to fetch: every package the GPU session imports is in the device image."
    echo "            (pass NAME==VERSION to fetch others; .whl/ holds: $(ls "$DEST" 2>/dev/null | tr '\n' ' '))"
    exit 0
fi

git -C "$ROOT" check-ignore -q .whl/x.whl || { echo "gpu_wheels: .whl/ is not ignored by git; add it to .gitignore" >&2; exit 2; }
mkdir -p "$DEST"
for spec in "$@"; do
    [[ "$spec" == *==* ]] || { echo "gpu_wheels: pin a version: $spec (NAME==VERSION)" >&2; exit 2; }
    $PIP download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
        -d "$DEST" "$spec"
done

# one version per distribution (two stop the whole install there)
dupes=$(ls "$DEST"/*.whl | xargs -n1 basename | awk -F- '{print tolower($1)}' | sort | uniq -d)
[[ -z "$dupes" ]] || { echo "gpu_wheels: several versions of: $dupes (delete the extra ones in .whl/)" >&2; exit 2; }
size=$(du -sm "$DEST" | cut -f1)
for whl in "$DEST"/*.whl; do
    echo "$(basename "$whl")"
    unzip -p "$whl" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' | sed 's/^/    needs: /' || true
done
echo "gpu_wheels: .whl/ holds ${size} MiB (limit ${MAX_MIB} MiB); carry it: run(..., carry=[\".whl\", ...])"
(( size <= MAX_MIB )) || { echo "gpu_wheels: over ${MAX_MIB} MiB: the call would not fit in 64 MiB" >&2; exit 2; }
