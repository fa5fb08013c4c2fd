"""Prioritised planning with priority re-ordering and restarts.

Robots are planned one after the other, each with SIPP against the reservations of
those before it, and each committed to the table parked at its goal
(``park_until=inf``), so later robots drive around parked ones (Silver's cooperative A*
with SIPP as the single-robot planner).

Plain prioritised planning is incomplete: a robot fails when an earlier one parked on
the only way to its goal, or boxed it in at its start. Following Bennewitz et al. (2002)
and Čáp et al. (2015), a robot that fails moves to the front of the priority order and
planning restarts, until every robot has a path or the time limit is spent. Robots that
keep failing drift to the front, which is what dense instances need: the robots whose
routes cross other robots' goals go first.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from bisect import bisect_right
from typing import Dict, List, Optional, Sequence, Tuple

from .reservations import ReservationTable
from .sipp import _resolve_vertex, motion_model, sipp
from .timed_path import TimedPath, path_cost, path_to_segments


class SafeIntervalIndex:
    """The reservation table plus, per resource, its safe intervals kept up to date.

    Prioritised planning asks for the safe intervals of a robot that holds nothing yet,
    so "free of other robots' holds" is "free of all holds": each commit cuts its holds
    out of the safe-interval lists of every resource exclusive with them, and SIPP's
    queries become list reads instead of table scans. Same answers as
    ``ReservationTable.safe_intervals`` for any robot without holds (the tests compare
    them); commits still go through the table, which checks the invariant.
    """

    def __init__(self, table: ReservationTable, exclusion, t_from: float = 0.0) -> None:
        self.table = table
        self._of = exclusion.of
        self._t_from = float(t_from)
        self._everything = [(self._t_from, math.inf)]
        self._safe: Dict[int, List[Tuple[float, float]]] = {}
        self._exclusive: Dict[int, List[int]] = {}
        self._robots = set()

    def commit(self, robot: str, segments: Sequence[Tuple[int, float, float]]):
        result = self.table.commit(robot, segments)
        if result.ok:
            self._robots.add(robot)
            for resource, a, b in segments:
                if b > self._t_from and b > a:
                    self._block(resource, max(a, self._t_from), b)
        return result

    def _block(self, resource: int, a: float, b: float) -> None:
        exclusive = self._exclusive.get(resource)
        if exclusive is None:
            exclusive = self._exclusive[resource] = [int(y) for y in self._of(resource)]
        safe = self._safe
        for y in exclusive:
            intervals = safe.get(y)
            if intervals is None:
                intervals = safe[y] = [(self._t_from, math.inf)]
            k = bisect_right(intervals, (a, math.inf))
            if k and intervals[k - 1][1] > a:
                k -= 1
            j = k
            pieces = []
            while j < len(intervals) and intervals[j][0] < b:
                s, e = intervals[j]
                if s < a:
                    pieces.append((s, a))
                if e > b:
                    pieces.append((b, e))
                j += 1
            intervals[k:j] = pieces

    def safe_intervals(self, resource: int, *, robot=None, t_from: float = 0.0
                       ) -> List[Tuple[float, float]]:
        """``ReservationTable.safe_intervals`` for a robot that holds nothing (a list the
        caller must not modify)."""
        if robot in self._robots:
            raise ValueError(f"robot {robot!r} already holds reservations; ask the table")
        intervals = self._safe.get(resource, self._everything)
        if t_from <= self._t_from:
            return intervals
        k = bisect_right(intervals, (t_from, math.inf))
        if k and intervals[k - 1][1] > t_from:
            k -= 1
        out = intervals[k:]
        if out and out[0][0] < t_from:
            out[0] = (t_from, out[0][1])
        return out


@dataclass
class MultiPlan:
    """A conflict-free plan for a fleet: ``paths[i]`` is robot ``i``'s timed path.

    Every path ends at its robot's goal, where the robot stays (the table holds the
    goal until released). ``table`` holds all of it; ``order`` is the priority order
    that succeeded; ``attempts`` counts the planning passes (1 = no restart).
    """
    paths: List[TimedPath]
    order: List[int]
    attempts: int
    solve_time_s: float
    table: ReservationTable = field(repr=False)

    @property
    def sum_of_costs(self) -> float:
        """Sum over robots of the time from start until it reaches its goal for good."""
        return sum(path_cost(p) for p in self.paths)

    @property
    def makespan(self) -> float:
        """Time until the last robot reaches its goal for good."""
        return max((path_cost(p) for p in self.paths), default=0.0)


def plan_prioritized(roadmap, exclusion, starts: Sequence, goals: Sequence, *,
                     max_speed: float = 1.0, time_limit_s: float = 10.0, seed: int = 0,
                     t_start: float = 0.0, max_attempts: Optional[int] = None
                     ) -> Optional[MultiPlan]:
    """Conflict-free timed paths for robots ``i`` from ``starts[i]`` to ``goals[i]``.

    Starts and goals are vertex ids, names or ``(x, y)`` positions; all robots start at
    ``t_start``. Returns ``None`` when no plan was found within ``time_limit_s`` seconds
    of computation (or ``max_attempts`` planning passes), and at once when a goal is not
    reachable from its start at all. Raises ``ValueError`` for mismatched lists or two
    robots sharing a start or a goal. ``seed`` fixes the tie-breaking of the order, so a
    run is repeatable up to where the time limit cuts it.
    """
    t0 = time.perf_counter()
    if len(starts) != len(goals):
        raise ValueError(f"{len(starts)} starts but {len(goals)} goals")
    starts_v = [_resolve_vertex(roadmap, s) for s in starts]
    goals_v = [_resolve_vertex(roadmap, g) for g in goals]
    for name, vs in (("start", starts_v), ("goal", goals_v)):
        seen = {}
        for i, v in enumerate(vs):
            if v in seen:
                raise ValueError(f"robots {seen[v]} and {i} share the {name} vertex {v}")
            seen[v] = i
    n = len(starts_v)
    model = motion_model(roadmap, exclusion, max_speed)
    distance = [model.times_to(goals_v[i])[starts_v[i]] for i in range(n)]
    if any(d == math.inf for d in distance):
        return None

    # Longest trips first (with a seeded shuffle breaking ties): a long trip has the
    # fewest detours to choose from once others are parked.
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    order.sort(key=lambda i: -distance[i])

    robots = [str(i) for i in range(n)]  # the table's robot ids
    deadline = t0 + float(time_limit_s)
    attempts = 0
    while True:
        attempts += 1
        table = SafeIntervalIndex(
            ReservationTable(exclusion.of, roadmap.num_resources, record_updates=False),
            exclusion, t_start)
        paths: List[Optional[TimedPath]] = [None] * n
        failed = None
        for i in order:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            path = sipp(roadmap, exclusion, table, robots[i], starts_v[i], goals_v[i], t_start,
                         max_speed, deadline_s=remaining)
            if path is None:
                failed = i
                break
            result = table.commit(robots[i], path_to_segments(roadmap, exclusion, path, max_speed))
            if not result.ok:
                raise RuntimeError(f"SIPP produced a path for robot {i} that the table "
                                   f"refuses: {result.conflict}")
            paths[i] = path
        if failed is None:
            return MultiPlan(paths=paths, order=list(order), attempts=attempts,
                             solve_time_s=time.perf_counter() - t0, table=table.table)
        if order[0] == failed or (max_attempts is not None and attempts >= max_attempts):
            # First in line fails only if boxed in by nothing: cannot happen with a
            # reachable goal, but never loop on it.
            return None
        order.remove(failed)
        order.insert(0, failed)
