"""A hardware fleet end to end (issue #5): two emulated robots (the C firmware behind a
pty each) in a `backend: serial` fleet config, started with `fleet-coord launch` as a user
would; tasks submitted with `fleet-coord submit` are won by the nearer robot, driven
through the serial bridges and completed. An independent monitor in the test (reservation
table + odometry only) checks each robot stayed inside what it held; the devices
themselves report that they moved to the goal stations; SIGTERM leaves nothing behind."""
import math
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
import rclpy  # noqa: E402
from fleet_coord_msgs.msg import RobotState  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402

from fleet_coord_bridge import protocol as p  # noqa: E402
from fleet_coord_bridge.emulator import Emulator  # noqa: E402
from fleet_coord_bridge.link import Link, LinkConfig, LinkState  # noqa: E402
from fleet_checks import Monitor  # noqa: E402
from fleet_coord import qos  # noqa: E402
from fleet_coord.fleet_config import load_roadmap  # noqa: E402
from fleet_coord.launcher import mapped_shm, shm_files  # noqa: E402
from rosutil import descendants, ros_context, spin_until  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAP = "warehouse_small.yaml"
RADIUS = 0.3
ROBOTS = {"amr_1": "park_1", "amr_2": "park_2"}      # robot -> start station
# task -> (goal station, the robot that must win it: the nearer one). Both robots start
# heading east and first turn north in place; amr_1 also turns at a vertex it passes.
TASKS = {"t1": ("main_w", "amr_1"),    # park_1 -> main_a -> main_w (4 m, a left turn)
         "t2": ("main_b", "amr_2")}    # park_2 -> main_b (2 m)
#: the process count of the fleet: traffic, dispatcher, fleet_monitor, a bridge and an
#: agent per robot
PROCESSES = 3 + 2 * len(ROBOTS)


def config(tmp_path, ports: dict[str, str]) -> str:
    """The shipped config/fleet_hardware.yaml made local: LOCALHOST discovery, no
    domain_id (the test's ROS_DOMAIN_ID), the emulators' ptys as ports, a ledger in
    tmp_path, and restart: never (a crashed node fails the test instead of being
    restarted). Robot, agent, bridge and device limits are the defaults: nothing is tuned
    for the emulator."""
    robots = "\n".join(f"  - {{name: {r}, start_station: {st}, port: {ports[r]}, "
                       f"baud: 115200, max_speed: 0.5}}" for r, st in ROBOTS.items())
    text = f"""\
fleet:
  map: {MAP}
  footprint_radius: {RADIUS}
  discovery_range: LOCALHOST
  backend: serial
  agents_per_process: 1
  restart: never
  ledger: ledger.sqlite
robots:
{robots}
nodes:
  traffic: {{lost_after: 2.0}}
  # the round closes as soon as both robots answered; the long window only keeps a bid
  # that a loaded CI machine delays from losing the task to the farther robot
  dispatcher: {{bid_window: 3.0}}
  serial_bridge: {{cmd_rate_hz: 20.0, link_timeout_ms: 500}}
"""
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return str(path)


def device_odometry(port: str, timeout: float = 10.0) -> p.Odometry:
    """The device's own odometry (its frame: where it was powered on), read over the pty
    with a link of our own once the fleet's bridge has let go of it."""
    got: list[p.Odometry] = []
    link = Link(LinkConfig(port=port), on_odometry=lambda m, _t: got.append(m))
    link.start()
    try:
        assert link.wait_for(LinkState.UP, timeout), f"{port}: {link.state}: {link.reason}"
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got, f"{port}: no odometry"
        return got[-1]
    finally:
        link.stop()





@pytest.fixture
def emulators(tmp_path):
    emus = {r: Emulator(link=str(tmp_path / f"{r}.pty"), args=["--device-id", str(i + 1)])
            for i, r in enumerate(ROBOTS)}
    try:
        for e in emus.values():
            e.start()
        yield emus
    finally:
        for e in emus.values():
            e.stop()


def test_hardware_fleet_drives_emulated_robots_to_their_goals(tmp_path, emulators):
    roadmap = load_roadmap(MAP)
    pos = {name: (float(roadmap.pos[roadmap.vertex(name), 0]),
                  float(roadmap.pos[roadmap.vertex(name), 1]))
           for name in list(ROBOTS.values()) + [g for g, _ in TASKS.values()]}
    cfg = config(tmp_path, {r: e.port for r, e in emulators.items()})
    log = open(tmp_path / "launch.log", "w+")

    def log_tail(n=6000):
        log.flush()
        log.seek(0)
        return log.read()[-n:]

    def cli(*args, **kw):
        return subprocess.Popen([sys.executable, "-m", "fleet_coord.cli", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO, **kw)

    launcher = subprocess.Popen([sys.executable, "-m", "fleet_coord.cli", "launch", cfg],
                                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
    children, ours, mine, subs = set(), set(), set(), {}
    with ros_context() as (ctx, ex):
        node = rclpy.create_node("hardware_fleet_test", context=ctx)
        ex.add_node(node)
        monitor = Monitor(node, list(ROBOTS), MAP, radius=RADIUS)
        odom: dict[str, list] = {r: [] for r in ROBOTS}
        for r in ROBOTS:
            node.create_subscription(Odometry, f"/{r}/odom",
                                     lambda m, r=r: odom[r].append(m.pose.pose), qos.ODOM)
        # an agent that was granted its spot says so (its state's table_epoch); the spot in
        # the table alone is not that: the authority holds configured start vertices itself
        parked: set[str] = set()
        node.create_subscription(RobotState, "/fleet/robot_states",
                                 lambda m: parked.add(m.robot) if m.table_epoch else None,
                                 qos.state_qos())
        try:
            # up: every agent has odometry through its bridge and holds its start station
            up = spin_until(ex, lambda: launcher.poll() is not None or (
                set(monitor.replica.table.robots()) >= set(ROBOTS) and parked >= set(ROBOTS)
                and all(odom.values())), 60)
            assert up and launcher.poll() is None, "fleet did not come up:\n" + log_tail()
            children = descendants(launcher.pid)
            assert len(children) >= PROCESSES
            for r, st in ROBOTS.items():   # the bridge anchored the odometry at the start
                first = odom[r][0]
                assert math.dist((first.position.x, first.position.y), pos[st]) < 0.05, (r, first)
            subs = {tid: cli("submit", tid, "--kind", "goto", "--stations", goal, "--wait",
                             "--timeout", "30")
                    for tid, (goal, _) in TASKS.items()}
            spin_until(ex, lambda: all(s.poll() is not None for s in subs.values())
                       or launcher.poll() is not None, 120)
            outs = {}
            for tid, s in subs.items():
                if s.poll() is None:
                    s.kill()
                outs[tid] = s.communicate()
            for tid, (_goal, robot) in TASKS.items():
                out, err = outs[tid]
                assert subs[tid].returncode == 0 and f"{tid}: DONE by {robot}" in out, \
                    (tid, out, err, log_tail())
            # odometry at rest at the goal station (the agent's tracker stops within 2 cm)
            spin_until(ex, lambda: False, 1.0)
            for goal, robot in TASKS.values():
                last = odom[robot][-1]
                err = math.dist((last.position.x, last.position.y), pos[goal])
                assert err < 0.1, (robot, goal, last.position, err)
            assert monitor.samples > 0
            assert monitor.conflicts == [], monitor.conflicts[:5]
            assert monitor.excursions == [], monitor.excursions[:10]
            # the Fast DDS files the fleet's processes use; the port files this test's own
            # participant shares with them are ours to clean up, not the launcher's
            ours = mapped_shm(children)
            mine = mapped_shm([os.getpid()])
        finally:
            for s in subs.values():
                if s.poll() is None:
                    s.kill()
                    s.communicate()
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                pytest.fail("launcher did not stop on SIGTERM")
    text = log_tail(100000)
    assert f"all {PROCESSES} processes stopped" in text, text[-3000:]
    time.sleep(0.3)
    left = [q for q in children if os.path.exists(f"/proc/{q}")
            and open(f"/proc/{q}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert left == [], f"processes left behind: {left}"
    assert ((ours - mine) & shm_files()) - mapped_shm() == set()
    for name in (ours & mine & shm_files()) - mapped_shm():
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass
    # the devices' own word: each moved from where it was powered on (its start station,
    # heading east = theta 0) to its goal station
    for goal, robot in TASKS.values():
        d = device_odometry(emulators[robot].port)
        start = pos[ROBOTS[robot]]
        moved = (d.x, d.y)
        want = (pos[goal][0] - start[0], pos[goal][1] - start[1])
        assert math.dist(moved, want) < 0.1, (robot, moved, want)
        assert abs(d.v) < 0.01 and abs(d.omega) < 0.01, (robot, d)
