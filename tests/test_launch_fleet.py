"""`fleet-coord launch` runs a 3-robot fleet as processes (one agent process per robot);
tasks submitted with `fleet-coord submit` complete; SIGTERM stops everything, leaving no
process and no /dev/shm file behind. (Three robots: the processes, commands and clean-up
are the same with more; fleet size is test_fleet_processes' 10-robot run.)"""
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
from fleet_coord.launcher import mapped_shm, shm_files  # noqa: E402
from rosutil import descendants  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The robots at the default limits (1 m/s, 2 rad/s), which the agents' 20 Hz control loop
# drives on the real time model (agile ones it could only drive stop-and-turn, ~0.4 m/s).
CONFIG = """\
fleet:
  map: warehouse.map
  discovery_range: LOCALHOST
  backend: ideal
  ledger: ledger.sqlite
robots:
  - {name: robot_1, start: [2, 18]}
  - {name: robot_2, start: [6, 18]}
  - {name: robot_3, start: [14, 18]}
nodes:
  ideal_driver: {rate_hz: 100.0}
  dispatcher: {bid_window: 0.3}
"""





def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "fleet_coord.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_launch_three_robots_complete_tasks_and_sigterm_cleans_up(tmp_path, processes):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(CONFIG)
    log = open(tmp_path / "launch.log", "w+")
    launcher = subprocess.Popen([sys.executable, "-m", "fleet_coord.cli", "launch", str(cfg)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
    children, ours = set(), set()
    try:
        # the fleet is up when the monitor lists all three robots
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = _cli("status", "--timeout", "5", timeout=30)
            if r.returncode == 0 and all(f"robot_{i}" in r.stdout for i in range(1, 4)):
                break
            time.sleep(1)
        else:
            log.seek(0)
            pytest.fail("fleet did not come up:\n" + log.read()[-4000:])
        children = descendants(launcher.pid)
        assert len(children) >= 7  # traffic, dispatcher, monitor, driver, 3 agents
        # one bad request is rejected with a reason, good ones complete
        bad = _cli("submit", "bad1", "--kind", "goto", "--stations", "nowhere")
        assert bad.returncode == 1 and "nowhere" in bad.stderr
        jobs = [("t1", "2,13"), ("t2", "9,14"), ("t3", "20,15")]
        procs = [processes.popen([sys.executable, "-m", "fleet_coord.cli", "submit", tid, "--kind",
                                  "goto", "--stations", st, "--wait", "--timeout", "20"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
                 for tid, st in jobs]
        outs = [p.communicate(timeout=120) for p in procs]
        for (tid, _), p, (out, err) in zip(jobs, procs, outs):
            assert p.returncode == 0, (tid, out, err)
            assert f"{tid}: DONE" in out
        # --wait-timeout gives up waiting (exit 3) long before a robot can drive there;
        # the task itself goes on to DONE
        impatient = _cli("submit", "t4", "--kind", "goto", "--stations", "12,9", "--wait",
                         "--wait-timeout", "0.3")
        assert impatient.returncode == 3 and "still" in impatient.stderr, impatient
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listing = _cli("tasks", "--all")
            if listing.stdout.count("DONE") == 4:
                break
            time.sleep(1)
        assert listing.returncode == 0 and listing.stdout.count("DONE") == 4, listing.stdout
        ours = mapped_shm(children)  # the Fast DDS files the fleet's processes use
        assert ours, "expected the fleet to use Fast DDS shared memory"
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            pytest.fail("launcher did not stop on SIGTERM")
    log.seek(0)
    text = log.read()
    assert "all 7 processes stopped" in text, text[-3000:]
    time.sleep(0.3)
    left = [p for p in children if os.path.exists(f"/proc/{p}")
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert left == [], f"processes left behind: {left}"
    # /dev/shm is shared with every other process on the machine (port mutexes are shared
    # by every participant on a port): what the fleet used is gone unless someone alive
    # still maps it
    assert (ours & shm_files()) - mapped_shm() == set()
