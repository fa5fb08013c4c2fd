"""Micro-benchmark of the reservation table: does the cost of one operation stay flat
as the table grows?

The workspace is a W x H 4-connected unit grid with the classic-MAPF exclusion of
docs/core-model.md (vertex v: itself and the middles of the lanes touching v; lane
u -> v: itself, v -> u, u and v) -- 50 x 50 gives 2 500 vertices + 9 800 lanes =
12 300 resources. A fleet of R robots drives one random 20-segment path after another
(speed 1, robot radius 1/6, random waits), each path committed through
`ReservationTable.commit`, until the table holds N reservations. The fleet density is
the same for every N (R robots on the same grid): a bigger N is a longer history (or a
longer planned future), so the per-resource interval lists grow with N. Two fleets by
default: 10 robots (sparse) and 200 robots (8 % of the cells busy). Each (fleet, N)
runs in its own interpreter.

Then, on the full table, it times (CPU time per call: median over batches of 20 calls /
mean over all `--ops` calls):
  commit   a fresh conflict-free 20-segment path that replaces the robot's previous one
           (`replace_from`, the replanning step: release 20 + add 20, one update logged)
  refused  a random 20-segment path that conflicts (stops at the first clash)
  check    a dry run of a conflict-free 20-segment path (every segment examined)
  safe[30] safe_intervals(resource, t_from=t, t_to=t+30): what windowed SIPP asks
  is_free  is_free(resource, t, t+1)
  safe[->] safe_intervals(resource, t_from=t) up to infinity: the answer itself grows
           with the history after t, shown for completeness

Run:  .venv/bin/python bench/reservations.py            (10^3 .. 10^6, about 2 minutes)
      .venv/bin/python bench/reservations.py --sizes 1000 10000 --ops 500
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter

from fleet_coord.core.reservations import ReservationTable

RADIUS = 1 / 6
CLEAR = 2 * RADIUS      # L = 2 r_bound: the robot has left a vertex's star after L
SEGMENTS = 20


class Grid:
    """A 4-connected unit grid as resources: vertices 0..V-1, directed lanes V..V+E-1."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.V = w * h
        self.edges: list[tuple[int, int]] = []
        self.edge_id: dict[tuple[int, int], int] = {}
        self.nbrs: list[list[int]] = [[] for _ in range(self.V)]
        for y in range(h):
            for x in range(w):
                u = y * w + x
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    if 0 <= x + dx < w and 0 <= y + dy < h:
                        v = (y + dy) * w + x + dx
                        self.edge_id[(u, v)] = self.V + len(self.edges)
                        self.edges.append((u, v))
                        self.nbrs[u].append(v)
        self.num_resources = self.V + len(self.edges)
        self._excl: list[list[int]] = [[] for _ in range(self.num_resources)]
        for (u, v), e in self.edge_id.items():
            self._excl[e] = sorted({e, self.edge_id[(v, u)], u, v})
            self._excl[u].append(e)
            self._excl[v].append(e)
        for v in range(self.V):
            self._excl[v] = sorted(set(self._excl[v]) | {v})

    def exclusive(self, r: int) -> list[int]:
        return self._excl[r]


def random_path(grid: Grid, rng: random.Random, start: int, t0: float
                ) -> tuple[list[tuple[int, float, float]], int, float]:
    """SEGMENTS holds of a random walk from `start` at t0 (core-model.md: vertex u until
    t+c, lane [t+c, t+d-c), vertex v from t+d-c). Returns segments, end vertex, end time."""
    segs: list[tuple[int, float, float]] = []
    v, hold_from, t, prev = start, t0, t0, -1
    while True:
        dep = t + (rng.uniform(0.0, 1.0) if rng.random() < 0.3 else 0.0)
        choices = [w for w in grid.nbrs[v] if w != prev] or grid.nbrs[v]
        w = rng.choice(choices)
        segs.append((v, hold_from, dep + CLEAR))
        if len(segs) == SEGMENTS:
            return segs, v, dep + CLEAR
        segs.append((grid.edge_id[(v, w)], dep + CLEAR, dep + 1 - CLEAR))
        if len(segs) == SEGMENTS:
            return segs, w, dep + 1 - CLEAR
        prev, v, hold_from, t = v, w, dep + 1 - CLEAR, dep + 1


def fill(grid: Grid, n: int, robots: int, rng: random.Random, label: str
         ) -> tuple[ReservationTable, float, float, int]:
    """Robots take turns (earliest clock first) committing their next path until the
    table holds n reservations. Returns the table, the horizon reached, the fill time
    and the number of refused commits."""
    table = ReservationTable(grid.exclusive, grid.num_resources)
    for r in range(grid.num_resources):
        table.exclusive(r)     # the table caches the relation; a long-running table has it all
    clock = [rng.uniform(0.0, 2.0) for _ in range(robots)]
    where = rng.sample(range(grid.V), robots)
    refused = 0
    t_cpu = time.process_time()
    next_report = 0.0
    while len(table) < n:
        k = min(range(robots), key=clock.__getitem__)
        segs, end_v, end_t = random_path(grid, rng, where[k], clock[k])
        if table.commit(f"r{k}", segs).ok:
            where[k], clock[k] = end_v, end_t
        else:
            refused += 1                       # try elsewhere a little later
            where[k] = rng.randrange(grid.V)
            clock[k] += rng.uniform(0.5, 2.0)
        if len(table) % 4096 < SEGMENTS:
            table.drain_updates()              # the authority publishes them; keep memory flat
            now = time.perf_counter()
            if now >= next_report:
                print(f"\r[{label}] filling {len(table):>9,}/{n:,} reservations", end="",
                      file=sys.stderr, flush=True)
                next_report = now + 0.5
    table.drain_updates()
    elapsed = time.process_time() - t_cpu
    print(f"\r[{label}] filled {len(table):,} reservations in {elapsed:.1f} s CPU"
          f" ({refused:,} refused commits)", file=sys.stderr, flush=True)
    return table, max(clock), elapsed, refused


def timed(fn, args_list, batch: int = 20) -> tuple[float, float]:
    """Per-call CPU time in microseconds: the median over batches of `batch` calls, and
    the mean over all calls. CPU time (not wall time) so that other processes on a
    shared machine do not count; the batch median drops the odd GC pause."""
    per_call = []
    total = 0.0
    for i in range(0, len(args_list), batch):
        chunk = args_list[i:i + batch]
        t0 = time.process_time()
        for args in chunk:
            fn(*args)
        dt = time.process_time() - t0
        total += dt
        per_call.append(dt / len(chunk) * 1e6)
    return statistics.median(per_call), total / len(args_list) * 1e6


def measure(grid: Grid, n: int, robots: int, ops: int, seed: int) -> dict:
    rng = random.Random(seed)
    label = f"N={n:,}"
    table, horizon, fill_s, refused = fill(grid, n, robots, rng, label)
    print(f"[{label}] timing {ops} calls per operation", file=sys.stderr, flush=True)
    size = len(table)
    per_resource = Counter(r.resource for r in table.reservations())
    longest = max(per_resource.values())
    occupied = len(per_resource) / grid.num_resources
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    free_paths, bad_paths = [], []
    while len(free_paths) < ops or len(bad_paths) < ops:
        segs, _, _ = random_path(grid, rng, rng.randrange(grid.V),
                                 rng.uniform(0.0, horizon))
        target = free_paths if table.check("bench", segs) is None else bad_paths
        if len(target) < ops:
            target.append(segs)

    def replan(segs):
        if not table.commit("bench", segs, replace_from=-math.inf).ok:
            raise AssertionError("a checked conflict-free path was refused")

    def refuse(segs):
        if table.commit("bench", segs, replace_from=-math.inf).ok:
            raise AssertionError("a conflicting path was accepted")

    queries = [(rng.randrange(grid.num_resources), rng.uniform(0.0, horizon))
               for _ in range(ops)]
    row = {"n": size, "robots": robots, "horizon": horizon, "fill_s": fill_s,
           "refused_fill": refused, "longest_list": longest, "occupied": occupied,
           "rss_mb": rss_mb,
           "paths_per_robot": size / SEGMENTS / robots}
    row["commit"] = timed(replan, [(s,) for s in free_paths])
    table.release("bench")
    table.drain_updates()
    row["refused"] = timed(refuse, [(s,) for s in bad_paths])
    row["check"] = timed(lambda s: table.check("bench", s), [(s,) for s in free_paths])
    row["safe30"] = timed(lambda r, t: table.safe_intervals(r, t_from=t, t_to=t + 30.0),
                          queries)
    row["is_free"] = timed(lambda r, t: table.is_free(r, t, t + 1.0), queries)
    row["safe_inf"] = timed(lambda r, t: table.safe_intervals(r, t_from=t), queries)
    row["safe_inf_len"] = statistics.fmean(
        len(table.safe_intervals(r, t_from=t)) for r, t in queries)
    assert len(table) == size
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+",
                    default=[1_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--grid", type=int, default=50, help="grid side (default 50 -> 12 300 resources)")
    ap.add_argument("--robots", type=int, nargs="+", default=[10, 200],
                    help="fleet sizes, one series each (default: a sparse and a busy fleet)")
    ap.add_argument("--ops", type=int, default=2000, help="calls timed per operation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    grid = Grid(args.grid, args.grid)
    if not args.worker:
        print(f"reservation table micro-benchmark: {args.grid}x{args.grid} grid, "
              f"{grid.num_resources:,} resources, fleets of {args.robots} robots, "
              f"{SEGMENTS}-segment paths, {args.ops} calls per op, seed {args.seed}; "
              f"Python {platform.python_version()}", flush=True)
    if args.worker:
        (n,), (robots,) = args.sizes, args.robots
        print(json.dumps(measure(grid, n, robots, args.ops, args.seed)))
        return
    # Each (fleet, size) runs in a fresh interpreter: its peak RSS is its own, and no run
    # inherits another's heap, caches or pending garbage collection.
    rows = []
    for robots in args.robots:
        for n in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", "--sizes", str(n), "--robots",
                 str(robots), "--grid", str(args.grid), "--ops", str(args.ops),
                 "--seed", str(args.seed)],
                stdout=subprocess.PIPE, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))

    cols = [("commit", "commit 20 (replan)"), ("refused", "refused commit"),
            ("check", "check 20"), ("safe30", "safe_intervals [t,t+30)"),
            ("is_free", "is_free"), ("safe_inf", "safe_intervals [t,inf)")]
    print()
    print("CPU time per call in microseconds: median of 20-call batches / mean")
    print()
    print("| robots | reservations | paths/robot | horizon (s) | resources used | longest list "
          "| fill CPU (s) | peak RSS (MB) | "
          + " | ".join(title for _, title in cols) + " | intervals in [t,inf) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(cols) + "---:|")
    for r in rows:
        cells = [f"{r[k][0]:.1f} / {r[k][1]:.1f}" for k, _ in cols]
        print(f"| {r['robots']} | {r['n']:,} | {r['paths_per_robot']:,.1f} | {r['horizon']:,.0f} | "
              f"{r['occupied']:.0%} | {r['longest_list']:,} | {r['fill_s']:.1f} | {r['rss_mb']:,.0f} | "
              + " | ".join(cells) + f" | {r['safe_inf_len']:.1f} |")


if __name__ == "__main__":
    main()
