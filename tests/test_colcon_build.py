"""Both packages build with colcon exactly as docs/install.md tells ROS 2 users to build
them (the workspace form and the clone form), checked by scripts/check_colcon.sh with
colcon from PyPI.

Offline: the check runs with COLCON_VENV set to this venv (sys.prefix, which `make setup`
gave colcon-common-extensions), and builds against a copy of it less this project's own
packages (see the script); the venv itself must come out untouched. Two full colcon
builds, side by side: 2-4 minutes on 2 cores."""
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "check_colcon.sh")
VENV = sys.prefix
COLCON = os.path.join(VENV, "bin", "colcon")
TIMEOUT_S = 900


def _fingerprint(root):
    """Every path under root with its size and mtime: what writing into it would change."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entries.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return sorted(entries)


@pytest.mark.skipif(not os.access(COLCON, os.X_OK),
                    reason=f"colcon is not installed in {VENV}: `make setup` installs "
                           "colcon-common-extensions (requirements.txt)")
@pytest.mark.timeout(TIMEOUT_S + 60)
def test_documented_colcon_builds_work():
    env = dict(os.environ, COLCON_VENV=VENV)
    env.pop("KEEP_WS", None)
    before = _fingerprint(VENV)
    start = time.monotonic()
    # Its own process group, so that a timeout ends the builds it started too.
    proc = subprocess.Popen(["bash", SCRIPT], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)   # the script then removes its temporary folder
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        pytest.fail(f"scripts/check_colcon.sh did not finish in {TIMEOUT_S} s; the end of "
                    "its output:\n" + "\n".join(output.splitlines()[-60:]))
    rc = proc.returncode
    elapsed = time.monotonic() - start
    tail = "\n".join(output.splitlines()[-60:])
    assert rc == 0 and "check_colcon: OK" in output, (
        f"scripts/check_colcon.sh failed (exit {rc}, {elapsed:.0f} s); "
        f"the end of its output:\n{tail}")

    after = _fingerprint(VENV)
    changed = sorted(set(before) ^ set(after))
    assert not changed, (f"the check wrote into {VENV}: "
                         + ", ".join(sorted({path for path, _, _ in changed})[:20]))
    print(f"check_colcon.sh passed in {elapsed:.0f} s:")
    print("\n".join(line for line in output.splitlines() if line.startswith(("check_colcon", "  "))))
