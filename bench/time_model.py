"""The time model at the planner level: what the real-speed model buys and what it costs.

The demo's workload (``fleet-coord demo``: the bundled warehouse, pick-and-drop tasks of
``cli_demo.make_workload``, the demo robot: 1 m/s, 4 rad/s, 4 m/s^2, 20 rad/s^2) is
planned leg by leg, as the agents do, with SIPP against one reservation table: each robot
takes the next open task when it is free (first come, first served: allocation is not
what is measured here), plans from where it stands to each station, commits the path
and parks there, dwells 2 s, and after the drop drives back to its home (so no robot
stays parked on a station another needs). No ROS, no tracking: planned times.

For each time model - ``stop_and_turn`` (every lane at ``plan_speed_for``, the model
before issue 14) and ``real`` (``TimeModel.of_robot``: straight runs at full speed, turns
only where the path turns) - it reports the planned makespan, the mean planned leg time,
and SIPP's CPU per leg (median / p95 / max): the agents plan with a 0.5 s deadline.

Run:  .venv/bin/python bench/time_model.py                 (8 and 50 robots)
      .venv/bin/python bench/time_model.py --robots 8 --tasks 40
"""
from __future__ import annotations

import argparse
import heapq
import math
import statistics
import sys
import time

from fleet_coord.cli_demo import make_workload
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.planner import path_to_segments, sipp
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.tracking import robot_time_model
from fleet_coord.demo import ROBOT_LIMITS, TURN_MARGIN_S
from fleet_coord.fleet_config import load_roadmap_and_exclusion

DWELL_S = 2.0


def plan_workload(roadmap, exclusion, robots: dict[str, int], tasks, model) -> dict:
    """Plan every task's legs in order of the robots' free times; returns the numbers."""
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    for r, v in robots.items():
        assert table.commit(r, [(v, 0.0, math.inf)]).ok
    todo = [list(t.stations) for t in tasks]
    at = dict(robots)
    heading: dict[str, float | None] = {r: 0.0 for r in robots}   # the demo starts facing +x
    free = [(0.0, r) for r in sorted(robots)]
    heapq.heapify(free)
    cpu, legs, end, failed = [], [], 0.0, 0
    while todo and free:
        t, r = heapq.heappop(free)
        stations = todo.pop(0)
        for goal in [roadmap.vertex(name) for name in stations] + [robots[r]]:
            path = None
            for attempt in range(100):
                c0 = time.process_time()
                path = sipp(roadmap, exclusion, table, r, at[r], goal, t + attempt, model,
                            start_heading=heading[r])
                cpu.append(time.process_time() - c0)
                if path is not None:
                    break
            if path is None:
                failed += 1
                break
            assert table.commit(r, path_to_segments(roadmap, exclusion, path, model),
                                replace_from=path[0][1]).ok
            legs.append(path[-1][1] - path[0][1])
            moves = [(u, v) for (u, _), (v, _) in zip(path, path[1:]) if u != v]
            if moves:
                u, v = moves[-1]
                d = roadmap.pos[v] - roadmap.pos[u]
                heading[r] = math.atan2(float(d[1]), float(d[0]))
            at[r] = goal
            t = path[-1][1] + DWELL_S
        end = max(end, t)
        heapq.heappush(free, (t, r))
    cpu.sort()
    return {"makespan": end, "leg_mean": statistics.mean(legs), "legs": len(legs),
            "failed": failed, "cpu_median_ms": 1e3 * statistics.median(cpu),
            "cpu_p95_ms": 1e3 * cpu[int(0.95 * (len(cpu) - 1))], "cpu_max_ms": 1e3 * cpu[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", type=int, nargs="*", default=[8, 50])
    ap.add_argument("--tasks", type=int, default=0, help="tasks (default: 5 per robot)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    roadmap, exclusion, _ = load_roadmap_and_exclusion("", 0.15)
    limits = Limits(**ROBOT_LIMITS)
    models = {"stop_and_turn": robot_time_model(limits, exclusion.clearance, "stop_and_turn",
                                                turn_margin=TURN_MARGIN_S),
              "real": robot_time_model(limits, exclusion.clearance, "real")}
    print("| robots | tasks | time model | planned makespan (s) | mean leg (s) | legs "
          "(failed) | SIPP CPU per leg median / p95 / max (ms) |")
    print("|---:|---:|---|---:|---:|---:|---|")
    for n in args.robots:
        robots, tasks = make_workload(roadmap, n, args.tasks or 5 * n, args.seed)
        for name, model in models.items():
            m = plan_workload(roadmap, exclusion, robots, tasks, model)
            print(f"| {n} | {len(tasks)} | {name} | {m['makespan']:.0f} | {m['leg_mean']:.1f} "
                  f"| {m['legs']} ({m['failed']}) | {m['cpu_median_ms']:.1f} / "
                  f"{m['cpu_p95_ms']:.1f} / {m['cpu_max_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
