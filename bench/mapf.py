#!/usr/bin/env python3
"""MAPF benchmark of `fleet-coord plan` (prioritised SIPP with restarts) on MovingAI maps.

For every map, agent count N and scenario, plans the first N rows of
``<map>-random-<k>.scen`` with a time limit, validates the plan with the independent
checker (tests/mapf_validator.py) and records: solved, solve time (wall clock, what the
time limit applies to), CPU time, the load average, sum of costs (SoC), SoC / LB where
LB is the sum of single-agent breadth-first distances, and makespan.
Per (map, N): success rate over the scenarios, and medians over the scenarios (time:
over all of them, an unsolved one counting as the time limit; SoC/LB and makespan:
over the solved ones).

Writes a markdown table and a JSON file (default under build/bench/) and prints the
table. A map's larger N are skipped once an N solves none of its scenarios.

    .venv/bin/python bench/mapf.py                       # the default set, ~30 s idle
    .venv/bin/python bench/mapf.py --maps random-32-32-20 --agents 100 200 --scens 1-5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the independent plan validator

from mapf_validator import check_plan  # noqa: E402

from fleet_coord.cli_plan import MAPF_ROBOT_RADIUS  # noqa: E402
from fleet_coord.core.planner import plan_prioritized, vertices_at_unit_times  # noqa: E402
from fleet_coord.core.roadmap import (Footprint, Roadmap, load_movingai_map,  # noqa: E402
                                      load_scenario)

DEFAULT_AGENTS = {
    "random-32-32-20": [50, 100, 150, 200],
    "warehouse-10-20-10-2-1": [100, 200, 300, 400],
    "den312d": [50, 100, 150, 200],
    "room-32-32-4": [50, 100, 150],
    "maze-32-32-2": [50, 100],
    "empty-32-32": [50, 100, 200, 300],
}


def parse_scens(text: str) -> list[int]:
    """'1-5' or '1,3,7' -> scenario numbers."""
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected scenario numbers like 1-5 or 1,3, got {text!r}")
    return out


def run_one(bench_dir: str, name: str, scen: int, agents: int, time_limit: float,
            seed: int) -> dict:
    grid = load_movingai_map(os.path.join(bench_dir, f"{name}.map"))
    rows = load_scenario(os.path.join(bench_dir, f"{name}-random-{scen}.scen"), agents,
                         grid=grid)
    # A fresh roadmap per run, so each run pays for its own distance tables.
    roadmap = Roadmap.from_grid(grid)
    exclusion = roadmap.exclusion(Footprint(radius=MAPF_ROBOT_RADIUS))
    starts = [roadmap.vertex_at(*s) for s, _ in rows]
    goals = [roadmap.vertex_at(*g) for _, g in rows]
    t0, c0 = time.perf_counter(), time.process_time()
    plan = plan_prioritized(roadmap, exclusion, starts, goals, time_limit_s=time_limit,
                            seed=seed)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    record = {"map": name, "scen": scen, "agents": agents, "solved": plan is not None,
              "time_s": round(seconds, 4), "cpu_s": round(cpu, 4),
              "load1": round(os.getloadavg()[0], 2)}
    if plan is None:
        return record
    xy = roadmap.pos.astype(int).tolist()
    paths = [[tuple(xy[v]) for v in vertices_at_unit_times(p)] for p in plan.paths]
    errors = check_plan(grid.free, [r[0] for r in rows], [r[1] for r in rows], paths)
    if errors:
        raise SystemExit(f"INVALID PLAN for {name} scen {scen} N={agents}: {errors[:5]}")
    lower = sum(int(roadmap.shortest_times(g)[s]) for s, g in zip(starts, goals))
    soc = sum(len(p) - 1 for p in paths)
    record.update(soc=soc, lb=lower, soc_lb=round(soc / lower, 4) if lower else 1.0,
                  makespan=max(len(p) - 1 for p in paths), attempts=plan.attempts)
    return record


def summarise(records: list[dict], time_limit: float) -> list[dict]:
    rows = []
    keys = sorted({(r["map"], r["agents"]) for r in records},
                  key=lambda k: (list(DEFAULT_AGENTS).index(k[0]) if k[0] in DEFAULT_AGENTS
                                 else 99, k[0], k[1]))
    for name, agents in keys:
        group = [r for r in records if r["map"] == name and r["agents"] == agents]
        solved = [r for r in group if r["solved"]]
        times = [r["time_s"] if r["solved"] else time_limit for r in group]
        cpus = [r["cpu_s"] for r in group if "cpu_s" in r]
        rows.append({
            "map": name, "agents": agents, "scens": len(group), "solved": len(solved),
            "success": len(solved) / len(group),
            "median_time_s": statistics.median(times),
            "median_cpu_s": statistics.median(cpus) if cpus else None,
            "median_load1": statistics.median([r["load1"] for r in group if "load1" in r])
            if any("load1" in r for r in group) else None,
            "median_soc_lb": statistics.median([r["soc_lb"] for r in solved]) if solved else None,
            "median_makespan": statistics.median([r["makespan"] for r in solved]) if solved else None,
            "max_attempts": max((r["attempts"] for r in solved), default=None),
        })
    return rows


def markdown(summary: list[dict], time_limit: float) -> str:
    lines = ["| map | agents | solved | median time (s) | median CPU (s) | median SoC/LB "
             "| median makespan | max attempts | load (1 min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        t = s["median_time_s"]
        t_text = f"≥ {time_limit:g} (limit)" if s["solved"] * 2 <= s["scens"] and t >= time_limit \
            else f"{t:.2f}"
        cpu = s.get("median_cpu_s")
        load = s.get("median_load1")
        lines.append(
            f"| {s['map']} | {s['agents']} | {s['solved']}/{s['scens']} | {t_text} | "
            + (f"{cpu:.2f}" if cpu is not None else "–") + " | "
            + (f"{s['median_soc_lb']:.3f}" if s["median_soc_lb"] is not None else "–") + " | "
            + (f"{s['median_makespan']:g}" if s["median_makespan"] is not None else "–") + " | "
            + (f"{s['max_attempts']}" if s["max_attempts"] is not None else "–") + " | "
            + (f"{load:.1f}" if load is not None else "–") + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench-dir", default=os.environ.get(
        "FLEET_COORD_MAPF_BENCH", os.path.join(os.path.dirname(REPO), "shared", "mapf-bench")),
        help="folder with the MovingAI .map/.scen files (default: ../shared/mapf-bench)")
    parser.add_argument("--maps", nargs="+", default=list(DEFAULT_AGENTS),
                        help="map names (default: %(default)s)")
    parser.add_argument("--agents", nargs="+", type=int, default=None,
                        help="agent counts (default: per map, see DEFAULT_AGENTS)")
    parser.add_argument("--scens", type=parse_scens, default=parse_scens("1-5"),
                        help="scenario numbers, e.g. 1-5 or 1,3 (default: 1-5)")
    parser.add_argument("--time-limit", type=float, default=10.0,
                        help="seconds per instance (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(REPO, "build", "bench", "mapf"),
                        help="output prefix: writes PREFIX.json and PREFIX.md "
                             "(default: build/bench/mapf)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.bench_dir):
        parser.error(f"--bench-dir {args.bench_dir}: no such folder")
    for name in args.maps:
        if not os.path.exists(os.path.join(args.bench_dir, f"{name}.map")):
            parser.error(f"--maps: {name}.map not found in {args.bench_dir}")
    plan = [(name, agents) for name in args.maps
            for agents in (args.agents or DEFAULT_AGENTS.get(name, [50, 100]))]
    total = len(plan) * len(args.scens)
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, disable=args.no_progress, unit="run")
    except ImportError:  # pragma: no cover - tqdm is a dependency of the package
        bar = None

    records: list[dict] = []
    hopeless: set[str] = set()
    for name, agents in plan:
        for scen in args.scens:
            if name in hopeless:
                records.append({"map": name, "scen": scen, "agents": agents, "solved": False,
                                "time_s": args.time_limit, "skipped": True})
            else:
                if bar is not None:
                    bar.set_description(f"{name} N={agents} scen {scen}")
                records.append(run_one(args.bench_dir, name, scen, agents, args.time_limit,
                                       args.seed))
            if bar is not None:
                bar.update(1)
        if not any(r["solved"] for r in records if r["map"] == name and r["agents"] == agents):
            hopeless.add(name)  # larger N on this map would only burn the time limit
    if bar is not None:
        bar.close()

    summary = summarise(records, args.time_limit)
    table = markdown(summary, args.time_limit)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {"command": " ".join([os.path.relpath(sys.argv[0], REPO)] + (argv or sys.argv[1:])),
            "time_limit_s": args.time_limit, "seed": args.seed, "scens": args.scens,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_at_end": os.getloadavg()}
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": records}, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(table)
    print(table)
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
