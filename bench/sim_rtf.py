"""Real-time factor of the PyBullet simulation (sim/) as the fleet grows.

N robots start on distinct random free cells of a map (the bundled warehouse by
default) and drive random twists: every robot draws a new (v, w) uniformly in
[-max_v, max_v] x [-max_w, max_w] at random times (exponential, mean 1 s of sim time),
all from one seeded rng. Random driving is a load test, not a fleet: robots run into
shelves and each other, and the contacts are counted like in any run.

Each configuration runs `--repeat` times, each in its own process (so its peak memory is
its own), and the median run is shown: build the world, add the robots, run `--warmup`
sim seconds, then time `--seconds` sim seconds of `SimWorld.step()` (commands +
integration or physics + contact detection and counting). RTF = sim seconds / wall
seconds, and sim seconds / CPU seconds of the process, which other load on the machine
disturbs less. Peak memory = the process's max RSS (resource.getrusage), which includes
Python, numpy and PyBullet themselves.

With `--ros`, the same fleet runs behind the ROS 2 sim node instead (sim/sim_node.py:
/clock every step, odometry for every robot at `--odom-rate` Hz of sim time, cmd_vel
subscriptions, contact topics), as fast as possible; a second node in the same process
publishes the random twists on cmd_vel. Run that one inside scripts/isolated.sh.

Run:  .venv/bin/python bench/sim_rtf.py                 (10/50/100 kinematic, 10/20 physics)
      .venv/bin/python bench/sim_rtf.py --configs kinematic:100 physics:20 --seconds 60
      bash scripts/isolated.sh .venv/bin/python bench/sim_rtf.py --ros
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DEFAULT_CONFIGS = ["kinematic:10", "kinematic:50", "kinematic:100", "physics:10", "physics:20"]


def start_cells(world, n: int, rng: np.random.Generator) -> np.ndarray:
    free = np.argwhere(world.grid.free)  # (row, col)
    if n > len(free):
        raise SystemExit(f"{n} robots do not fit on {len(free)} free cells of {world.map_path}")
    pick = free[rng.choice(len(free), size=n, replace=False)]
    return pick[:, ::-1].astype(float)  # (x=col, y=row)


class RandomTwists:
    """Per-robot random (v, w), redrawn at exponential random times."""

    def __init__(self, n: int, limits, rng: np.random.Generator) -> None:
        self.rng, self.n = rng, n
        self.scale = np.array([limits.max_v, limits.max_w])
        self.cmd = self._draw(n)
        self.next_change = rng.exponential(1.0, n)

    def _draw(self, k: int) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (k, 2)) * self.scale

    def update(self, t: float) -> np.ndarray | None:
        due = np.flatnonzero(self.next_change <= t)
        if not len(due):
            return None
        self.cmd[due] = self._draw(len(due))
        self.next_change[due] = t + self.rng.exponential(1.0, len(due))
        return due


def run_world(mode: str, n: int, args) -> dict:
    from fleet_coord_sim import SimWorld
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    world = SimWorld(args.map, mode=mode, dt=args.dt)
    cells = start_cells(world, n, rng)
    for i, (x, y) in enumerate(cells):
        world.add_robot(f"robot_{i + 1}", x, y, rng.uniform(-math.pi, math.pi))
    build_s = time.perf_counter() - t0
    twists = RandomTwists(n, world.limits, rng)
    world.set_cmds(twists.cmd)

    def run(seconds: float) -> tuple[float, float]:
        steps = round(seconds / world.dt)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            if twists.update(world.time) is not None:
                world.set_cmds(twists.cmd)
            world.step()
        return time.perf_counter() - start, time.process_time() - cpu

    run(args.warmup)
    wall, cpu = run(args.seconds)
    result = dict(mode=mode, robots=n, dt=world.dt, sim_s=args.seconds, wall_s=wall, cpu_s=cpu,
                  build_s=build_s, obstacles=len(world.obstacle_bodies),
                  contacts_rr=world.contacts.robot_robot,
                  contacts_ro=world.contacts.robot_obstacle)
    world.close()
    return result


def run_ros(mode: str, n: int, args) -> dict:
    import rclpy
    from geometry_msgs.msg import Twist
    from rclpy.experimental import EventsExecutor
    from rclpy.parameter import Parameter

    from fleet_coord import qos
    from fleet_coord_sim import SimWorld
    from fleet_coord_sim.sim_node import SimNode

    rng = np.random.default_rng(args.seed)
    probe = SimWorld(args.map, mode="kinematic", dt=args.dt)
    cells = start_cells(probe, n, rng)
    limits = probe.limits
    probe.close()
    names = [f"robot_{i + 1}" for i in range(n)]
    poses = []
    for x, y in cells:
        poses += [float(x), float(y), float(rng.uniform(-math.pi, math.pi))]
    rclpy.init()
    node = SimNode(parameter_overrides=[
        Parameter("robots", value=names), Parameter("start_poses", value=poses),
        Parameter("map", value=args.map or ""), Parameter("mode", value=mode),
        Parameter("dt", value=args.dt), Parameter("real_time_factor", value=0.0),
        Parameter("odom_rate", value=args.odom_rate), Parameter("cmd_timeout", value=5.0)])
    # The random driver is an ordinary fleet node: sim time, a 10 Hz (sim) timer.
    driver = rclpy.create_node("random_twists",
                               parameter_overrides=[Parameter("use_sim_time", value=True)])
    pubs = [driver.create_publisher(Twist, f"/{r}/cmd_vel", qos.COMMAND) for r in names]
    twists = RandomTwists(n, limits, rng)
    sent = [0]

    def publish(indices) -> None:
        for i in indices:
            msg = Twist()
            msg.linear.x, msg.angular.z = float(twists.cmd[i, 0]), float(twists.cmd[i, 1])
            pubs[i].publish(msg)
            sent[0] += 1

    def on_timer() -> None:
        due = twists.update(driver.get_clock().now().nanoseconds * 1e-9)
        if due is not None:
            publish(due)

    driver.create_timer(0.1, on_timer)
    publish(range(n))
    ex = EventsExecutor()
    ex.add_node(node)
    ex.add_node(driver)
    world = node.world

    def run(seconds: float) -> tuple[float, float]:
        end = world.time + seconds
        start, cpu = time.perf_counter(), time.process_time()
        while world.time < end - 1e-9:
            ex.spin_once(timeout_sec=0.1)
        return time.perf_counter() - start, time.process_time() - cpu

    run(args.warmup)
    odom0 = node.odom_published
    wall, cpu = run(args.seconds)
    result = dict(mode=mode, robots=n, dt=world.dt, sim_s=world.time - args.warmup,
                  wall_s=wall, cpu_s=cpu, odom_rate=args.odom_rate,
                  odom_per_wall_s=(node.odom_published - odom0) / wall, cmd_sent=sent[0],
                  contacts_rr=world.contacts.robot_robot,
                  contacts_ro=world.contacts.robot_obstacle)
    ex.shutdown()
    driver.destroy_node()
    node.destroy_node()
    rclpy.shutdown()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="MODE:N",
                    help="mode:robots pairs (default: %(default)s)")
    ap.add_argument("--map", default="", help="MovingAI .map (default: bundled warehouse)")
    ap.add_argument("--dt", type=float, default=0.02, help="sim seconds per step")
    ap.add_argument("--seconds", type=float, default=30.0, help="timed sim seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="untimed sim seconds first")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per configuration (fresh process each); the median is shown")
    ap.add_argument("--ros", action="store_true", help="through the ROS 2 sim node")
    ap.add_argument("--odom-rate", type=float, default=10.0,
                    help="with --ros: odometry per robot per sim second")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: run one config
    args = ap.parse_args()

    if args.one:
        mode, n = args.one.split(":")
        result = (run_ros if args.ros else run_world)(mode, int(n), args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, map {args.map or 'config/maps/warehouse.map'}, "
          f"dt {args.dt}, {args.seconds:g} sim s timed"
          f"{', via the ROS 2 sim node' if args.ros else ''}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(other processes on the machine slow the wall-clock RTF; the CPU-time RTF is "
          "sim seconds per CPU second of this process)")
    print("| mode | robots | RTF wall | RTF CPU | wall per step | peak RSS | contacts r-r / r-o |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cfg in args.configs:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", cfg] + sys.argv[1:]
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        runs.sort(key=lambda r: r["wall_s"])
        r = runs[len(runs) // 2]  # the median run by wall time
        r["cpu_s"] = sorted(x["cpu_s"] for x in runs)[len(runs) // 2]
        r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
        step_us = r["wall_s"] / round(r["sim_s"] / r["dt"]) * 1e6
        print(f"| {r['mode']} | {r['robots']} | {r['sim_s'] / r['wall_s']:.1f} | "
              f"{r['sim_s'] / r['cpu_s']:.1f} | {step_us:.0f} µs | "
              f"{r['peak_rss_mb']:.0f} MB | {r['contacts_rr']} / {r['contacts_ro']} |",
              flush=True)


if __name__ == "__main__":
    main()
