"""Task allocation quality of the Contract Net auction against the optimum.

Random instances: robots, pick and drop stations uniform in a 100 m x 100 m square,
straight-line travel at 1 m/s (so a cost is seconds of driving). Every task is a
pick_and_drop. The objective is the fleet's total route time (sum over robots of the time
to drive their queue), which is what the marginal-cost bids add up to.

(a) one task per robot (n robots, n tasks, queues of at most one task): every award rule
    against the optimal assignment (scipy's linear_sum_assignment on robot-to-pick plus
    pick-to-drop times).
(b) batches of k tasks per robot (n*k tasks, queues unlimited): against the exact optimum
    (`optimum_routes`: MILP with lazy subtour cuts, HiGHS via scipy), falling back to the
    assignment lower bound (`assignment_bound`) if HiGHS hits its time limit.

Run:  .venv/bin/python bench/allocation.py            (the tables in docs/benchmarks.md)
      .venv/bin/python bench/allocation.py --quick    (a smoke run)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp
from scipy.sparse import coo_matrix, csr_matrix
from tqdm import tqdm

from fleet_coord.core.allocation import TaskPool
from fleet_coord.core.contract_net import (AcceptProposal, Participant, Proposal, RobotProfile,
                                           RobotState, route_time, sequential_auction)
from fleet_coord.core.tasks import Task

SIDE = 100.0  # m; travel at 1 m/s


@dataclass
class Instance:
    n: int                  # robots
    m: int                  # tasks
    D: np.ndarray           # travel times between all points: starts, picks, drops
    names: list[str]

    @property
    def starts(self) -> slice:
        return slice(0, self.n)

    @property
    def picks(self) -> slice:
        return slice(self.n, self.n + self.m)

    @property
    def drops(self) -> slice:
        return slice(self.n + self.m, self.n + 2 * self.m)

    def inner(self) -> float:
        """Sum of the pick -> drop drives: the part of the cost no allocation can change."""
        return float(np.trace(self.D[self.picks, self.drops]))

    def travel_time(self):
        index = {s: k for k, s in enumerate(self.names)}
        rows = self.D.tolist()
        return lambda a, b: rows[index[a]][index[b]]

    def tasks(self) -> list[Task]:
        return [Task(f"t{i}", "pick_and_drop", [f"pick{i}", f"drop{i}"]) for i in range(self.m)]

    def robots(self) -> dict[str, RobotState]:
        return {f"r{i:03d}": RobotState(f"start{i}") for i in range(self.n)}


def random_instance(rng: np.random.Generator, n: int, m: int) -> Instance:
    pts = rng.uniform(0, SIDE, (n + 2 * m, 2))
    D = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    names = ([f"start{i}" for i in range(n)] + [f"pick{i}" for i in range(m)]
             + [f"drop{i}" for i in range(m)])
    return Instance(n, m, D, names)


def one_per_robot_optimum(inst: Instance) -> float:
    cost = inst.D[inst.starts, inst.picks] + np.diag(inst.D[inst.picks, inst.drops])[None, :]
    r, c = linear_sum_assignment(cost)
    return float(cost[r, c].sum())


def _predecessor_costs(inst: Instance) -> np.ndarray:
    """C[i, p]: cost of reaching task i's pick from predecessor p, where p < n is robot
    p's start and p = n + j is the drop of task j (j == i forbidden)."""
    n, m = inst.n, inst.m
    C = np.empty((m, n + m))
    C[:, :n] = inst.D[inst.starts, inst.picks].T
    C[:, n:] = inst.D[inst.drops, inst.picks].T  # C[i, n+j] = D[drop_j, pick_i]
    C[np.arange(m), n + np.arange(m)] = np.inf
    return C


def assignment_bound(inst: Instance) -> tuple[float, np.ndarray]:
    """Lower bound on the total route time of any allocation of the batch.

    In any solution every task has exactly one predecessor -- a robot's start (each
    robot precedes at most one task: the first of its queue) or another task's drop (each
    task precedes at most one) -- and costs that predecessor-to-pick drive plus its own
    pick-to-drop drive. Minimising over predecessor assignments without forbidding
    cycles among tasks (the assignment relaxation of the multi-depot open routing
    problem) is a linear assignment: a lower bound. It is the optimum when the
    assignment happens to have no cycle.
    """
    C = _predecessor_costs(inst)
    rows, cols = linear_sum_assignment(np.where(np.isfinite(C), C, 1e12))
    return float(C[rows, cols].sum()) + inst.inner(), cols


def _cycles(pred: np.ndarray, n: int) -> list[list[int]]:
    """Cycles of tasks (no robot at their head) in a predecessor assignment."""
    m = len(pred)
    succ = {int(p) - n: i for i, p in enumerate(pred) if p >= n}
    seen = np.zeros(m, dtype=bool)
    for i, p in enumerate(pred):  # walk every robot's chain
        if p < n:
            cur = i
            while cur is not None and not seen[cur]:
                seen[cur] = True
                cur = succ.get(cur)
    cycles = []
    for i in range(m):
        if not seen[i]:
            cyc, cur = [], i
            while not seen[cur]:
                seen[cur] = True
                cyc.append(cur)
                cur = succ[cur]
            cycles.append(cyc)
    return cycles


def optimum_routes(inst: Instance, time_limit: float = 60.0) -> float | None:
    """The exact minimum total route time of the batch, or None if HiGHS runs out of time.

    The assignment relaxation above plus subtour-elimination cuts, added lazily: solve,
    find the task cycles, forbid each (sum of its arcs <= |cycle| - 1), solve again. When
    the solution has no cycle every task hangs off a robot's chain: a feasible allocation
    with the relaxation's cost, hence optimal.
    """
    n, m = inst.n, inst.m
    C = _predecessor_costs(inst)
    bound, pred = assignment_bound(inst)
    cycles = _cycles(pred, n)
    if not cycles:
        return bound
    nv = m * (n + m)  # variable (i, p) at i * (n + m) + p
    c = np.where(np.isfinite(C), C, 0.0).ravel()
    ub = np.isfinite(C).astype(float).ravel()
    ii, pp = np.divmod(np.arange(nv), n + m)
    rows = np.concatenate([ii, m + pp])  # in-degree of task i; out-degree of predecessor p
    A = csr_matrix((np.ones(2 * nv), (rows, np.tile(np.arange(nv), 2))),
                   shape=(m + n + m, nv))
    lo = np.concatenate([np.ones(m), np.zeros(n + m)])
    cut_rows: list[np.ndarray] = []  # variable indices of each cut's arcs
    cut_rhs: list[int] = []
    while True:
        for cyc in cycles:
            cyc = np.asarray(cyc)
            ci, cj = np.meshgrid(cyc, cyc, indexing="ij")
            mask = ci != cj
            cut_rows.append(ci[mask] * (n + m) + n + cj[mask])  # arcs drop_j -> pick_i in S
            cut_rhs.append(len(cyc) - 1)
        cuts = coo_matrix((np.ones(sum(len(r) for r in cut_rows)),
                           (np.repeat(np.arange(len(cut_rows)), [len(r) for r in cut_rows]),
                            np.concatenate(cut_rows))), shape=(len(cut_rows), nv))
        res = milp(c, integrality=np.ones(nv), bounds=Bounds(0, ub),
                   constraints=[LinearConstraint(A, lo, np.ones(m + n + m)),
                                LinearConstraint(cuts.tocsr(), -np.inf, np.array(cut_rhs))],
                   options={"time_limit": time_limit})
        if res.status != 0 or res.x is None:
            return None
        x = np.round(res.x).reshape(m, n + m)
        pred = x.argmax(axis=1)
        cycles = _cycles(pred, n)
        if not cycles:
            return float(res.fun) + inst.inner()


# ---------------------------------------------------------------------------------------

RULES_A = [("cheapest", False), ("matching", False)]
RULES_B = [("cheapest", False), ("cheapest", True), ("assignment", True),
           ("matching", False), ("matching", True)]


def rule_name(award: str, improve: bool) -> str:
    return award + (" + re-auction" if improve else "")


def summarise(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} / {max(xs):.3f}"


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    lines = []
    header = ("| case | robots | tasks | award rule | cost / reference (median / max) "
              "| deadhead / reference (median / max) | reference | CPU ms per batch (median) |")
    lines += [header, "|---|---|---|---|---|---|---|---|"]
    jobs = [("a", n, 1) for n in args.robots] + [("b", n, k) for n in args.robots
                                                for k in args.k]
    def count_of(case: str, n: int) -> int:
        return args.instances if case == "a" or n <= 10 else args.batch_instances_large

    total = sum(count_of(case, n) for case, n, _ in jobs)
    bar = tqdm(total=total, desc="instances", file=sys.stderr)
    for case, n, k in jobs:
        count = count_of(case, n)
        rules = RULES_A if case == "a" else RULES_B
        ratios = {r: [] for r in rules}
        dead = {r: [] for r in rules}
        ms = {r: [] for r in rules}
        ref_kind = set()
        gap = []
        for _ in range(count):
            inst = random_instance(rng, n, n * k)
            inner = inst.inner()
            if case == "a":
                ref = one_per_robot_optimum(inst)
                ref_kind.add("optimal assignment (LSA)")
                profile = RobotProfile(max_queue=1)
            else:
                lb, _ = assignment_bound(inst)
                ref = optimum_routes(inst, time_limit=args.time_limit)
                if ref is None:
                    ref = lb
                    ref_kind.add("assignment lower bound")
                else:
                    ref_kind.add("exact optimum (MILP)")
                    gap.append(ref / lb)
                profile = RobotProfile(max_queue=10**6)
            tasks, robots, travel = inst.tasks(), inst.robots(), inst.travel_time()
            for award, improve in rules:
                t0 = time.process_time()  # CPU time: not inflated by other jobs on the host
                res = sequential_auction(tasks, robots, travel, profiles=profile, award=award,
                                         improve=improve)
                ms[(award, improve)].append(1e3 * (time.process_time() - t0))
                assert not res.unassigned
                ratios[(award, improve)].append(res.total_cost / ref)
                dead[(award, improve)].append((res.total_cost - inner) / (ref - inner))
            bar.update()
        label = "(a) 1 task/robot" if case == "a" else f"(b) {k} tasks/robot"
        for r in rules:
            lines.append(f"| {label} | {n} | {n * k} | {rule_name(*r)} | {summarise(ratios[r])} "
                         f"| {summarise(dead[r])} | {', '.join(sorted(ref_kind))} "
                         f"| {statistics.median(ms[r]):.0f} |")
        if gap:
            lines.append(f"| {label} | {n} | {n * k} | *(optimum / assignment bound)* "
                         f"| {summarise(gap)} | | | |")
    bar.close()
    print(f"\n{args.instances} instances per row ({args.batch_instances_large} for (b) with "
          f"more than 10 robots), seed {args.seed}\n")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------
# (c) execution: makespan, task time, tasks per hour

def _execute_queues(inst: Instance, queues: dict[str, list[Task]]) -> dict[str, float]:
    """Finish time of every task when each robot drives its queue from t = 0."""
    tt = inst.travel_time()
    done = {}
    for r, queue in queues.items():
        t, here = 0.0, "start" + str(int(r[1:]))
        for task in queue:
            t += tt(here, task.stations[0]) + tt(task.stations[0], task.stations[1])
            here = task.stations[1]
            done[task.id] = t
    return done


def per_task_auction(inst: Instance, objective: str) -> dict[str, list[Task]]:
    """One Contract Net round per task, in order; lowest bid wins, for good."""
    tt = inst.travel_time()
    parts = {r: Participant(r, tt, RobotProfile(max_queue=10**6, objective=objective))
             for r in inst.robots()}
    states = {r: RobotState(s.position, [], now=0.0) for r, s in inst.robots().items()}
    for task in inst.tasks():
        bids = [(p.cost, p.eta, r) for r in sorted(parts)
                if isinstance(p := parts[r].bid(task, states[r]), Proposal)]
        winner = min(bids)[2]
        parts[winner].on_accept_proposal(AcceptProposal(winner, task.id, 0), states[winner])
    return {r: s.queue for r, s in states.items()}


def pool_run(inst: Instance, keep_next: bool = True
             ) -> tuple[dict[str, float], dict[str, list[Task]]]:
    """The pool: robots take their next task when free; rounds at every event.
    ``keep_next``: an awarded next task stays with its robot (the dispatcher)."""
    tt = inst.travel_time()
    robots = inst.robots()
    parts = {r: Participant(r, tt, RobotProfile(objective="completion")) for r in robots}
    pool = TaskPool(parts, keep_next=keep_next)
    for r, s in robots.items():
        pool.add_robot(r, s.position, 0.0)
    for task in inst.tasks():
        pool.add_task(task)
    done: dict[str, float] = {}
    queues: dict[str, list[Task]] = {r: [] for r in robots}
    busy_until = {r: 0.0 for r in robots}
    now = 0.0
    while pool.open or any(t > now for t in busy_until.values()):
        pool.round(now)
        for r in sorted(robots):
            if busy_until[r] <= now:
                task = pool.start_next(r)
                if task is not None:
                    slot = pool.slots[r]
                    end = now + tt(slot.position, task.stations[0]) + tt(*task.stations)
                    pool.finished(r, task.stations[1], end)
                    busy_until[r] = done[task.id] = end
                    queues[r].append(task)
        later = [t for t in busy_until.values() if t > now]
        if not later:
            break
        now = min(later)
    return done, queues


def run_execution(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    header = ("| robots | tasks | allocation | makespan (s) | mean task time (s) | tasks/hour "
              "| route time (s) | fewest tasks on a robot |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for n in args.robots:
        for k in args.k:
            stats: dict[str, list[tuple[float, float, float, float, int]]] = {}
            count = args.instances if n <= 10 else args.batch_instances_large
            for _ in tqdm(range(count), desc=f"(c) {n} x {k}", file=sys.stderr, leave=False):
                inst = random_instance(rng, n, n * k)
                runs = {
                    "per task, travel bids (the dispatcher before the pool)":
                        per_task_auction(inst, "travel"),
                    "per task, completion bids": per_task_auction(inst, "completion"),
                    "sequential_auction (batch, matching + re-auction)":
                        sequential_auction(inst.tasks(), inst.robots(),
                                           inst.travel_time()).queues,
                }
                results = {name: (_execute_queues(inst, q), q) for name, q in runs.items()}
                results["pool, completion bids (the dispatcher)"] = pool_run(inst)
                results["pool + moving awarded next tasks"] = pool_run(inst, keep_next=False)
                for name, (done, queues) in results.items():
                    times = list(done.values())
                    route = sum(route_time(s.position, queues[r], inst.travel_time())
                                for r, s in inst.robots().items())
                    stats.setdefault(name, []).append((
                        max(times), float(np.mean(times)), 3600 * len(times) / max(times),
                        route, min(len(q) for q in queues.values())))
            for name, xs in stats.items():
                a = np.array(xs)
                lines.append(f"| {n} | {n * k} | {name} | {np.median(a[:, 0]):.0f} | "
                             f"{np.median(a[:, 1]):.0f} | {np.median(a[:, 2]):.0f} | "
                             f"{np.median(a[:, 3]):.0f} | {int(np.min(a[:, 4]))} |")
    print("\n(c) execution, medians over the instances (fewest tasks: minimum)\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--robots", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--k", type=int, nargs="+", default=[3, 4, 5],
                    help="tasks per robot in the batch case (b)")
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--batch-instances-large", type=int, default=30,
                    help="instances per row in (b) with more than 10 robots (slow rows)")
    ap.add_argument("--time-limit", type=float, default=60.0,
                    help="HiGHS time limit per MILP solve; on timeout (b) falls back to "
                         "the assignment lower bound")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a smoke run: few small instances")
    ap.add_argument("--only-execution", action="store_true", help="only the (c) table")
    args = ap.parse_args(argv)
    if args.quick:
        args.robots, args.k, args.instances, args.batch_instances_large = [5, 20], [3], 5, 2
    if not args.only_execution:
        run(args)
    run_execution(args)


if __name__ == "__main__":
    main()
