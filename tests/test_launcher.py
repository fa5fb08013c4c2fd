"""fleet-coord's own launcher: real processes, per-node log prefixes, restart of a crashed
node, clean shutdown with no process and no /dev/shm file left behind."""
import io
import mmap
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from nav_msgs.msg import Odometry  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.fleet_config import load_fleet_config  # noqa: E402
from fleet_coord.launcher import FleetLauncher, clean_shm, mapped_shm, shm_files  # noqa: E402
from fleet_coord.node_set import fleet_nodes  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_world_nodes_start_restart_after_kill_and_stop_cleanly():
    cfg = load_fleet_config("config/fleet_demo.yaml")
    specs = [s for s in fleet_nodes(cfg, robot_count=2)
             if s.executable in ("traffic", "fleet_monitor", "ideal_driver")]
    out = io.StringIO()
    launcher = FleetLauncher(cfg, specs, out=out, grace_s=3.0,
                             extra_env={"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]})
    launcher.start()
    try:
        with ros_context() as (ctx, ex):
            node = rclpy.create_node("launch_probe", context=ctx)
            odom = {}
            node.create_subscription(Odometry, "/robot_2/odom",
                                     lambda m: odom.__setitem__("r2", m), qos.ODOM)
            ex.add_node(node)
            assert spin_until(ex, lambda: "r2" in odom, 20), out.getvalue()
            assert odom["r2"].pose.pose.position.x == 6.0  # its start in the config
            pids = launcher.pids()
            assert set(pids) == {"traffic", "fleet_monitor", "ideal_driver"}
            # a crash (kill -9) is restarted (policy on-failure) and serves again
            os.kill(pids["ideal_driver"], signal.SIGKILL)
            odom.clear()

            def restarted():
                launcher.poll()
                new = launcher.pids().get("ideal_driver")
                return new is not None and new != pids["ideal_driver"] and "r2" in odom
            assert spin_until(ex, restarted, 30), out.getvalue()
        ours = mapped_shm(launcher.pids().values())  # Fast DDS files the fleet uses
    finally:
        launcher.shutdown()
    log = out.getvalue()
    assert "[traffic" in log and "restarting" in log
    for c in launcher.children:
        assert c.proc.poll() is not None
        assert not _alive(c.proc.pid)
    time.sleep(0.2)
    # /dev/shm is shared with every other process on the machine: count only files nobody maps
    assert (ours & shm_files()) - mapped_shm() == set(), "Fast DDS shared-memory files left behind"


_OWNER = """
import fcntl, os, sys, time
seg = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o666)
os.ftruncate(seg, 4096)
lock = os.open(sys.argv[1] + "_el", os.O_CREAT | os.O_RDONLY, 0o666)
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("ready", flush=True)
time.sleep(60)
"""


def _segment_owner(path):
    """A process that owns a segment the way Fast DDS does: it holds a flock on `<seg>_el`."""
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_clean_shm_removes_a_dead_owners_segment_that_a_live_reader_still_maps():
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    before = shm_files()
    dead, alive, plain = (f"fastdds_{uuid.uuid4().hex[:16]}" for _ in range(3))
    owners = {name: _segment_owner(f"/dev/shm/{name}") for name in (dead, alive)}
    maps = []
    try:
        for name in (dead, alive):   # this process reads both, as a subscriber would
            with open(f"/dev/shm/{name}", "r+b") as f:
                maps.append(mmap.mmap(f.fileno(), 4096))
        with open(f"/dev/shm/{plain}", "wb") as f:   # no lock file: nobody maps it -> stale
            f.write(b"x")
        owners[dead].kill()   # kill -9: the kernel drops its flock
        owners[dead].wait()
        removed = clean_shm(before)
        assert removed == sorted([dead, dead + "_el", plain])
        left = shm_files()
        assert {alive, alive + "_el"} <= left and not {dead, dead + "_el", plain} & left
        assert maps[0][:1] == b"\0"   # the reader's mapping stays valid
    finally:
        for m in maps:
            m.close()
        for proc in owners.values():
            proc.kill()
            proc.wait()
        for name in (dead, dead + "_el", alive, alive + "_el", plain):
            if os.path.exists(f"/dev/shm/{name}"):
                os.unlink(f"/dev/shm/{name}")


class _Exited:
    """A child process that has exited with `code` (the launcher only polls it)."""

    def __init__(self, code):
        self.code, self.pid = code, -1

    def poll(self):
        return self.code


def test_restarts_back_off_in_a_row_and_a_child_that_ran_starts_afresh(monkeypatch):
    """The restart policy's bookkeeping on a clock the test drives (real restarts of real
    processes: test_world_nodes_start_restart_after_kill_and_stop_cleanly)."""
    import fleet_coord.launcher as launcher_mod
    clock = [1000.0]
    monkeypatch.setattr(launcher_mod.time, "monotonic", lambda: clock[0])
    cfg = load_fleet_config("config/fleet_demo.yaml")
    cfg.restart = "on-failure"
    specs = [s for s in fleet_nodes(cfg, robot_count=1) if s.executable == "traffic"]
    starts = []

    class Scripted(FleetLauncher):
        def _start(self, child):
            child.proc = _Exited(None)   # running
            child.started = clock[0]
            starts.append(clock[0])

    launcher = Scripted(cfg, specs, out=io.StringIO(), max_restarts=3, stable_s=30.0)
    launcher.start()
    c = launcher.children[0]

    def crash_after(run_s):
        clock[0] += run_s
        c.proc = _Exited(1)
        launcher.poll()                    # seen: restart scheduled
        delay = c.next_start - clock[0]
        clock[0] = c.next_start
        launcher.poll()                    # restarted
        return delay

    # a crash loop backs off 0.5, 1, 2 s, then is given up after 3 restarts in a row
    assert [crash_after(1.0) for _ in range(3)] == [0.5, 1.0, 2.0]
    clock[0] += 1.0
    c.proc = _Exited(1)
    launcher.poll()
    assert c.proc is None and c.restarts == 3
    # a child that ran 30 s before each crash is restarted every time, after 0.5 s
    launcher = Scripted(cfg, specs, out=io.StringIO(), max_restarts=3, stable_s=30.0)
    launcher.start()
    c = launcher.children[0]
    assert [crash_after(60.0) for _ in range(6)] == [0.5] * 6
    assert c.restarts == 6 and c.proc is not None
