"""The in-process fleet (fleet_coord.in_process): wall time of the demo's workload, and a
large fleet (200 robots, 1000 tasks) on a generated warehouse.

    .venv/bin/python bench/in_process.py demo            # 8 robots, 40 tasks, seed 7
    .venv/bin/python bench/in_process.py large           # 200 robots, 1000 tasks
    .venv/bin/python bench/in_process.py large --robots 50 --tasks 200
    .venv/bin/python bench/in_process.py large --max-wall 3000   # stop after 50 min of wall

Prints one JSON line per run: outcomes, makespan (sim s), wall s, sim s per wall s,
conflicts and excursions seen by the independent monitor, bus events and messages. A run
stopped before every task ended (`--max-wall`, or SIGTERM) prints what it reached, with
`"completed": false`; progress lines on stderr every 15 s of wall. The
ROS demo's wall time to compare with is `fleet-coord demo`'s "wall for the run"
(docs/benchmarks.md, "In-process fleet"). No ROS is started.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fleet_coord.cli_demo import make_workload  # noqa: E402
from fleet_coord.core.execution import ExecutionConfig  # noqa: E402
from fleet_coord.fleet_config import load_roadmap_and_exclusion  # noqa: E402
from fleet_coord.in_process import FleetParams, InProcessFleet  # noqa: E402


def warehouse_map(width: int = 121, shelf_rows: int = 4, open_rows: int = 10) -> str:
    """A MovingAI map of a warehouse: rows of shelves (2 deep, 10 long, aisles between) over
    an open area at the bottom where robots have their homes and the drops are."""
    rows = ["@" * width]
    for _ in range(shelf_rows):
        rows.append("@" + "." * (width - 2) + "@")
        for _ in range(2):
            line = ["@"] + ["."] * (width - 2) + ["@"]
            for x in range(2, width - 2):
                if (x - 2) % 12 < 10:
                    line[x] = "@"
            rows.append("".join(line))
    rows += ["@" + "." * (width - 2) + "@" for _ in range(open_rows)]
    rows.append("@" * width)
    path = os.path.join(tempfile.mkdtemp(prefix="fleet-coord-bench-"), "warehouse-large.map")
    with open(path, "w") as f:
        f.write(f"type octile\nheight {len(rows)}\nwidth {width}\nmap\n" + "\n".join(rows) + "\n")
    return path


class Stopped(Exception):
    """The run was stopped before every task ended (--max-wall, SIGTERM)."""


def run(map_path: str, robots: int, tasks: int, seed: int, params: FleetParams,
        max_wall: float = 0.0) -> dict:
    roadmap, exclusion, rid = load_roadmap_and_exclusion(map_path, 0.15)
    fleet_robots, workload = make_workload(roadmap, robots, tasks, seed)
    t0 = time.perf_counter()
    last = [t0]
    with InProcessFleet(roadmap, exclusion, fleet_robots, seed=seed, params=params,
                        roadmap_id=rid) as fleet:
        def progress(n: int, sim: float) -> None:
            now = time.perf_counter()
            if now - last[0] > 15:
                last[0] = now
                print(f"  {n}/{tasks} tasks ended, sim {sim:.0f} s, wall {now - t0:.0f} s, "
                      f"conflicts {len(fleet.monitor.conflicts)}, excursions "
                      f"{len(fleet.monitor.excursions)}", file=sys.stderr, flush=True)
            if max_wall and now - t0 > max_wall:
                raise Stopped(f"--max-wall {max_wall:g}")

        def stop(signum: int, _frame: object) -> None:
            raise Stopped(signal.Signals(signum).name)
        signal.signal(signal.SIGTERM, stop)
        t_run = time.perf_counter()
        try:
            fleet.run(workload, submit_at=1.0, interval=0.6, progress=progress)
            stopped = ""
        except Stopped as e:
            stopped = str(e)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        wall = time.perf_counter() - t_run
        done = Counter(v for v in fleet.outcomes().values() if v)
        ends = [f["t"] for f in fleet.final().values()]
        makespan = max(ends, default=1.0) - 1.0
        sim = fleet.bus.now
        # (the fleet's RunResult, also for a run stopped early)
        out = {"robots": robots, "tasks": tasks, "seed": seed,
               "completed": not stopped and sum(done.values()) == tasks,
               "stopped_by": stopped, "outcomes": dict(done),
               "makespan_sim_s": round(makespan, 1), "sim_s": round(sim, 1),
               "wall_s": round(wall, 1), "sim_per_wall": round(sim / wall, 2),
               "conflicts": len(fleet.monitor.conflicts),
               "excursions": len(fleet.monitor.excursions),
               "checked_poses": fleet.monitor.samples, "bus_events": fleet.bus.stats.events,
               "messages": fleet.bus.stats.sent}
    return {**out, "control_period_s": params.control_period,
            "agents_per_process": params.agents_per_process or robots,
            "load_avg": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("demo", "large"))
    ap.add_argument("--robots", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--control-period", type=float, default=0.05)
    ap.add_argument("--time-model", choices=("stop_and_turn", "real"), default="stop_and_turn",
                    help="the agents' time model (real: as `fleet-coord demo --time-model real`)")
    ap.add_argument("--max-wall", type=float, default=0.0,
                    help="stop after this many s of wall time and report how far it got "
                         "(0: run until every task ended)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.what == "demo":
        params = FleetParams(control_period=args.control_period, trace_period=0.0)
    else:
        params = FleetParams(control_period=args.control_period, trace_period=0.0,
                             agents_per_process=25)
    if args.time_model == "real":
        # as the ROS agents: delay compensation of two control periods at real speed
        params = dataclasses.replace(params, execution=ExecutionConfig(
            limits=params.limits, turn_margin=params.turn_margin, time_model="real",
            control_latency=2.0 * params.control_period, bid_objective=params.bid_objective))
    if args.what == "demo":
        out = run("", args.robots or 8, args.tasks or 40, args.seed, params, args.max_wall)
    else:
        out = run(warehouse_map(), args.robots or 200, args.tasks or 1000, args.seed, params,
                  args.max_wall)
    out["time_model"] = args.time_model
    print(json.dumps(out))


if __name__ == "__main__":
    main()
