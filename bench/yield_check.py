"""The idle robots' yield check: CPU per check round of one agents process.

Every `yield_check_period` (1 s of sim time) each idle (or waiting) agent asks
`needed_by`: does an open task of another robot need my spot? When one does, it also asks
`yield_target`. Per open task that is a least-disturbing-path search on the roadmap. A
py-spy profile of a 25-agent process in the 50-robot demo (2026-12-03) put 45 % of its
CPU there. This measures one check round of `--agents` parked agents on the bundled
warehouse with `--tasks` open tasks and `--robots` robots in all, three ways, in this
process:

- **before**: each agent alone, with the search as it was (a `Roadmap.travel_time` call
  and numpy scalar conversions per lane; a copy of the old loop is below);
- **alone**: each agent alone, with the search over `Roadmap.lanes_from` (plain tuples);
- **shared**: the agents share one `YieldMemo` (what robot_agent does): per table version
  each task's search runs once for the process.

Each round starts with a new table version (a robot re-parks), as in a running fleet.

Run:  .venv/bin/python bench/yield_check.py            (the table in docs/benchmarks.md)
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from heapq import heappop, heappush
from unittest import mock

import numpy as np
from tqdm import tqdm

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from fleet_coord.core import yielding  # noqa: E402
from fleet_coord.core.reservations import ReservationTable  # noqa: E402
from fleet_coord.core.yielding import OpenTask, YieldMemo, needed_by, yield_target  # noqa: E402
from fleet_coord.fleet_config import DEFAULT_MAP, load_roadmap_and_exclusion  # noqa: E402

INF = math.inf


def old_least_disturbing_path(roadmap, start, goal, speed, blocked):
    """`least_disturbing_path` as of commit 0ea639a (the baseline)."""
    V = roadmap.num_vertices
    best = {start: 0.0}
    parent: dict[int, int] = {}
    heap = [(0.0, start)]
    while heap:
        g, u = heappop(heap)
        if g > best.get(u, math.inf):
            continue
        if u == goal:
            path = [u]
            while path[-1] != start:
                path.append(parent[path[-1]])
            return path[::-1]
        for e in roadmap.out_edges[u]:
            e = int(e)
            v = int(roadmap.edge_to[e])
            cost = float(roadmap.travel_time(e, speed))
            if v in blocked:
                cost += yielding.PARKED_PENALTY
            if V + e in blocked:
                cost += yielding.PARKED_PENALTY
            ng = g + cost
            if ng < best.get(v, math.inf):
                best[v] = ng
                parent[v] = u
                heappush(heap, (ng, v))
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--robots", type=int, default=50)
    ap.add_argument("--agents", type=int, default=25, help="parked agents in the process")
    ap.add_argument("--tasks", type=int, default=20, help="open tasks of other robots")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--speed", type=float, default=0.33, help="plan speed (m/s)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.agents + args.tasks > args.robots:
        ap.error("--agents + --tasks must not exceed --robots")
    roadmap, ex, _ = load_roadmap_and_exclusion(DEFAULT_MAP, 0.15)
    rng = np.random.default_rng(args.seed)
    spots = [int(v) for v in rng.choice(roadmap.num_vertices, args.robots + args.rounds,
                                        replace=False)]
    table = ReservationTable(ex.of, roadmap.num_resources)
    robots = {f"robot_{k}": spots[k] for k in range(args.robots)}
    for r, v in robots.items():
        assert table.commit(r, [(v, 0.0, INF)]).ok
    names = list(robots)
    agents = names[:args.agents]
    workers = names[args.agents:args.agents + args.tasks]
    # a quarter of the tasks head for an agent's spot (those agents must yield)
    goals = [robots[a] for a in agents[:args.tasks // 4]]
    goals += [int(v) for v in rng.choice(roadmap.num_vertices, args.tasks - len(goals))]
    tasks = [OpenTask(f"t{k}", w, g) for k, (w, g) in enumerate(zip(workers, goals))]
    spare = spots[args.robots:]

    def check(agent, memo):
        here = robots[agent]
        need = needed_by(agent, here, tasks, table, roadmap, ex, 0.0, args.speed, memo=memo)
        if need is not None:
            yield_target(agent, here, tasks, table, roadmap, ex, 0.0, args.speed, memo=memo)
        return need

    def round_(way: str, k: int) -> float:
        mover = names[-1]        # a robot not among agents and workers re-parks: new version
        table.release(mover)
        assert table.commit(mover, [(spare[k % len(spare)], 0.0, INF)]).ok
        memo = YieldMemo() if way == "shared" else None
        t0 = time.perf_counter()
        if way == "before":
            with mock.patch.object(yielding, "least_disturbing_path", old_least_disturbing_path):
                out = [check(a, None) for a in agents]
        else:
            out = [check(a, memo) for a in agents]
        dt = time.perf_counter() - t0
        results[way].append(out)
        return dt

    results: dict[str, list] = {w: [] for w in ("before", "alone", "shared")}
    times: dict[str, list[float]] = {w: [] for w in results}
    for k in tqdm(range(args.rounds), desc="check rounds", unit="round"):
        for way in results:   # the three ways interleaved: machine noise hits all alike
            times[way].append(round_(way, k))
    # the three ways answer alike (same tasks, same table per round)
    for k in range(args.rounds):
        assert results["before"][k] == results["alone"][k] == results["shared"][k], k
    yielded = sum(n is not None for n in results["shared"][0])
    print(f"{args.agents} parked agents, {args.tasks} open tasks, {args.robots} robots on "
          f"{roadmap.num_vertices} vertices; {yielded} agents needed each round; "
          f"{args.rounds} rounds (median, ms per check round of the process):")
    base = statistics.median(times["before"])
    for way, ts in times.items():
        med = statistics.median(ts)
        print(f"  {way:7s} {med * 1e3:8.1f} ms   {base / med:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
