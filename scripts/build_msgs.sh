#!/usr/bin/env bash
# Builds an interface package (default: fleet_coord_msgs) and installs it into a Python
# venv's prefix (the venv that holds the ROS 2 PyPI wheels), so `import <pkg>.msg` works
# from that venv's python with nothing sourced.
#
#   bash scripts/build_msgs.sh VENV [PACKAGE_DIR]   (scripts/setup.sh calls this; ~35 s
#                                                    on 2 cores for fleet_coord_msgs)
#
# Needs cmake, make, g++ and the Python headers (python3-dev), plus the interface
# build wheels from requirements.txt. See docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 VENV [PACKAGE_DIR]   (a venv with the ROS 2 wheels, e.g. .venv;" \
       "default package: fleet_coord_msgs)" >&2; exit 2
fi
PKG_DIR=$(cd "${2:-fleet_coord_msgs}" && pwd) || { echo "build_msgs: package '$2' not found" >&2; exit 2; }
PKG=$(basename "$PKG_DIR")
VENV=$(cd "$1" && pwd) || { echo "build_msgs: venv '$1' not found" >&2; exit 2; }
PY=$VENV/bin/python
[ -x "$PY" ] || { echo "build_msgs: $PY not found: '$1' is not a venv" >&2; exit 2; }
[ -f "$VENV/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ] || {
  echo "build_msgs: rosidl_default_generators is not installed in $VENV" \
       "(pip install -r requirements.txt into it first)" >&2; exit 2; }

# Not build/<pkg>: that is where `colcon build` at the repo root puts its build.
BUILD=$ROOT/build/venv/$PKG
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# The wheels' CMake code runs Python generators and finds packages through the ament
# index; both must resolve to this venv only (not a sourced ROS install).
export AMENT_PREFIX_PATH=$VENV
export CMAKE_PREFIX_PATH=$VENV
unset COLCON_PREFIX_PATH PYTHONPATH || true
export PATH=$VENV/bin:$PATH

# A build dir configured against another venv would mix prefixes; start over then.
if [ -f "$BUILD/CMakeCache.txt" ] && \
   ! grep -qxF "CMAKE_INSTALL_PREFIX:PATH=$VENV" "$BUILD/CMakeCache.txt"; then
  rm -rf "$BUILD"
fi

cmake -S "$PKG_DIR" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DBUILD_TESTING=OFF \
  -DCMAKE_PROJECT_INCLUDE="$ROOT/scripts/cmake/fix_rosidl_py_include.cmake"
cmake --build "$BUILD" -- -j"$JOBS"
# Remove what the previous build installed first, so an interface that was renamed or
# removed does not linger in the venv.
if [ -f "$BUILD/install_manifest.txt" ]; then
  tr '\n' '\0' < "$BUILD/install_manifest.txt" | xargs -0 rm -f
fi
cmake --install "$BUILD"

# Prove it: the Python bindings import from the venv with nothing sourced.
env -u LD_LIBRARY_PATH -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH "$PY" -c \
  "import importlib, sys; importlib.import_module('$PKG.msg'); print('build_msgs: $PKG installed into', sys.prefix)"
