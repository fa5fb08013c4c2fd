"""Prioritised planning with priority inversion on demand, restarts and a repair pass.

Robots are planned one after the other, each with SIPP against the reservations of
those before it, and each committed to the table parked at its goal
(``park_until=inf``), so later robots drive around parked ones (Silver's cooperative A*
with SIPP as the single-robot planner).

Plain prioritised planning is incomplete: a robot fails when earlier ones parked on
every way to its goal, or boxed it in at its start. Then, in this order:

1. **priority inversion on demand**: the culprits (the fewest parked robots whose
   removal opens a way, else the robots driving through its start) are lifted out of
   the table and re-planned after it (at most ``max_bumps`` times per robot per pass);
2. **restart** (Bennewitz et al. 2002; Čáp et al. 2015): the robot moves to the front
   of the priority order and the pass starts over, until the time limit (when it was
   at the front already, the others follow it in a random order).

A plan found is then shortened by ``_unblock_goals``: robots that waited near their
goal for later traffic to drive through it get to park first, and the traffic detours.
"""
from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from bisect import bisect_right
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union, cast

from .reservations import CommitResult, ReservationTable
from .grid_sipp import NEVER, UnitGridModel, UnitGridTable, grid_sipp, unit_grid_model
from .sipp import _resolve_vertex, motion_model, sipp
from .timed_path import Segment, TimedPath, path_cost, path_to_segments

if TYPE_CHECKING:
    from .roadmap import Exclusion, Roadmap
    from .sipp import Vertex

_Table = Union[ReservationTable, Callable[[], ReservationTable]]


class _Fleet(Protocol):
    """What planning needs of a fleet: ``_TableFleet`` or ``_GridFleet``."""
    goals: List[int]
    neighbours: List[List[int]]
    distance: List[float]

    def reset(self) -> None: ...
    def plan(self, i: int, deadline_s: float) -> Optional[TimedPath]: ...
    def commit(self, i: int, path: TimedPath) -> None: ...
    def release(self, i: int) -> None: ...
    def result(self, paths: List[TimedPath]) -> Tuple[List[TimedPath], _Table]: ...


class _TableFleet:
    """Robots planned with ``sipp`` against a ``SafeIntervalIndex`` (any roadmap)."""

    def __init__(self, roadmap: Roadmap, exclusion: Exclusion, max_speed: float, t_start: float,
                 starts: List[int], goals: List[int]) -> None:
        self.roadmap, self.exclusion, self.max_speed = roadmap, exclusion, max_speed
        self.t_start, self.starts, self.goals = t_start, starts, goals
        model = motion_model(roadmap, exclusion, max_speed)
        self.neighbours = model.neighbours()
        self.distance = [model.times_to(goals[i])[starts[i]] for i in range(len(starts))]
        self.robots = [str(i) for i in range(len(starts))]  # the table's robot ids
        self.index: SafeIntervalIndex       # set by reset()
        self.segments: Dict[int, List[Segment]] = {}

    def reset(self) -> None:
        self.index = SafeIntervalIndex(
            ReservationTable(self.exclusion.of, self.roadmap.num_resources,
                             record_updates=False), self.exclusion, self.t_start)
        self.segments = {}

    def plan(self, i: int, deadline_s: float) -> Optional[TimedPath]:
        return sipp(self.roadmap, self.exclusion, self.index, self.robots[i], self.starts[i],
                    self.goals[i], self.t_start, self.max_speed, deadline_s=deadline_s)

    def commit(self, i: int, path: TimedPath) -> None:
        segments = path_to_segments(self.roadmap, self.exclusion, path, self.max_speed)
        result = self.index.commit(self.robots[i], segments)
        if not result.ok:
            raise RuntimeError(f"SIPP produced a path for robot {i} that the table "
                               f"refuses: {result.conflict}")
        self.segments[i] = segments

    def release(self, i: int) -> None:
        self.index.release(self.robots[i], self.segments.pop(i))

    def result(self, paths: List[TimedPath]) -> Tuple[List[TimedPath], _Table]:
        return paths, self.index.table


class _GridFleet:
    """Robots planned with ``grid_sipp`` in integer time (unit grids, docs/core-model.md
    "Reduction to classic MAPF"); the ``UnitGridTable`` refuses vertex and swap
    conflicts on every commit, and the plan's ``ReservationTable`` (built on first access
    of ``MultiPlan.table``) checks the final plan once more."""

    def __init__(self, grid: UnitGridModel, roadmap: Roadmap, exclusion: Exclusion, t_start: int,
                 starts: List[int], goals: List[int], weight: float = 1.0) -> None:
        self.grid, self.roadmap, self.exclusion = grid, roadmap, exclusion
        self.weight = weight
        self.t_start, self.starts, self.goals = t_start, starts, goals
        grid.distances(goals)
        self.neighbours = [[v for v, _ in nb] for nb in grid.neighbours]
        distance = [grid.distance_to(goals[i])[starts[i]] for i in range(len(starts))]
        self.distance: List[float] = [math.inf if d >= NEVER else d for d in distance]
        self.table: UnitGridTable            # set by reset()

    def reset(self) -> None:
        self.table = UnitGridTable(self.grid, self.t_start)

    def plan(self, i: int, deadline_s: float) -> Optional[TimedPath]:
        # integer times are times: an IntPath is a TimedPath
        return cast(Optional[TimedPath], grid_sipp(
            self.grid, self.table, self.starts[i], self.goals[i], self.t_start,
            deadline_s=deadline_s, weight=self.weight))

    def commit(self, i: int, path: TimedPath) -> None:
        self.table.commit(i, cast(List[Tuple[int, int]], path))

    def release(self, i: int) -> None:
        self.table.release(i)

    def result(self, paths: List[TimedPath]) -> Tuple[List[TimedPath], _Table]:
        timed = [[(v, float(t)) for v, t in p] for p in paths]
        return timed, lambda: self._table_of(timed)

    def _table_of(self, paths: List[TimedPath]) -> ReservationTable:
        table = ReservationTable(self.exclusion.of, self.roadmap.num_resources,
                                 record_updates=False)
        for i, p in enumerate(paths):
            result = table.commit(str(i), path_to_segments(self.roadmap, self.exclusion, p, 1.0))
            if not result.ok:
                raise RuntimeError(f"grid SIPP produced a path for robot {i} that the "
                                   f"table refuses: {result.conflict}")
        return table


def _unblock_goals(fleet: _Fleet, paths: List[TimedPath], distance: List[float], t_start: float,
                   deadline: float) -> None:
    """Repair the typical loss of prioritised planning, in place.

    A robot planned late often waits near its goal until the last earlier robot has
    driven through it. For each such robot (largest delay first): release it and the
    robots crossing its goal after it could have arrived, plan it first (it parks early)
    and the crossers after it (they detour around it), and keep the result when the
    group's sum of costs went down; otherwise restore the old paths.
    """
    n = len(paths)
    goals = fleet.goals
    visits: Dict[int, List[Tuple[float, int]]] = {}   # vertex -> [(time, robot)]
    for j, path in enumerate(paths):
        for v, t in path:
            visits.setdefault(v, []).append((t, j))
    delays = sorted(((path_cost(paths[i]) - distance[i], i) for i in range(n)), reverse=True)
    for delay, a in delays:
        if delay <= 1e-9 or time.perf_counter() > deadline:
            break
        goal = goals[a]
        earliest = t_start + distance[a]
        crossers = sorted({j for t, j in visits.get(goal, ()) if j != a and t >= earliest})
        if not crossers:
            continue
        group = [a] + crossers
        old = {j: paths[j] for j in group}
        for j in group:
            fleet.release(j)
        new = {}
        for j in group:
            remaining = deadline - time.perf_counter()
            p: Optional[TimedPath] = None
            if remaining > 0:
                p = fleet.plan(j, remaining)
            if p is None:
                break
            fleet.commit(j, p)
            new[j] = p
        if (len(new) == len(group)
                and sum(path_cost(new[j]) for j in group)
                < sum(path_cost(old[j]) for j in group) - 1e-9):
            for j in group:
                for v, t in old[j]:
                    visits[v].remove((t, j))
                paths[j] = new[j]
                for v, t in paths[j]:
                    visits.setdefault(v, []).append((t, j))
            continue
        for j in new:
            fleet.release(j)
        for j in group:
            fleet.commit(j, old[j])  # the rest of the table did not change: cannot fail


def _culprits(neighbours: List[List[int]], i: int, starts: List[int], goals: List[int],
              paths: Sequence[Optional[TimedPath]]) -> List[int]:
    """The planned robots to lift out so that robot ``i`` can be planned.

    Robots parked at their goals act as walls. A 0-1 breadth-first search from ``i``'s
    start to its goal, where entering a parked robot's vertex costs 1, finds a route
    past the fewest of them: those are the culprits. When parked robots are not in the
    way, ``i`` was boxed in at its start: the culprits are the robots driving through it.
    """
    parked = {}
    for j, p in enumerate(paths):
        if p is not None:
            parked[p[-1][0]] = j
    start, goal = starts[i], goals[i]
    cost = {start: 0}
    back = {start: -1}
    frontier = deque([start])
    while frontier:
        u = frontier.popleft()
        if u == goal:
            break
        cu = cost[u]
        for v in neighbours[u]:
            cv = cu + (1 if v in parked else 0)
            if cv < cost.get(v, 1 << 30):
                cost[v] = cv
                back[v] = u
                if cv == cu:
                    frontier.appendleft(v)
                else:
                    frontier.append(v)
    culprits = []
    if cost.get(goal, 0) > 0:
        v = goal
        while v != -1:
            if v in parked:
                culprits.append(parked[v])
            v = back[v]
        culprits.reverse()
    else:
        culprits = [j for j, p in enumerate(paths)
                    if p is not None and any(v == start for v, _ in p)]
    return culprits


class SafeIntervalIndex:
    """The reservation table plus, per resource, its safe intervals kept up to date.

    Prioritised planning asks for the safe intervals of a robot that holds nothing yet,
    so "free of other robots' holds" is "free of all holds": each commit cuts its holds
    out of the safe-interval lists of every resource exclusive with them, and SIPP's
    queries become list reads instead of table scans. Same answers as
    ``ReservationTable.safe_intervals`` for any robot without holds (the tests compare
    them); commits still go through the table, which checks the invariant.
    """

    def __init__(self, table: ReservationTable, exclusion: Exclusion, t_from: float = 0.0) -> None:
        self.table = table
        self._of = exclusion.of
        self._t_from = float(t_from)
        self._everything = [(self._t_from, math.inf)]
        self._safe: Dict[int, List[Tuple[float, float]]] = {}
        self._exclusive: Dict[int, List[int]] = {}
        self._dirty: set[int] = set()   # resources whose list must be re-read from the table
        self._robots: set[str] = set()

    def commit(self, robot: str, segments: Sequence[Tuple[int, float, float]]) -> CommitResult:
        result = self.table.commit(robot, segments)
        if result.ok:
            self._robots.add(robot)
            for resource, a, b in segments:
                if b > self._t_from and b > a:
                    self._block(resource, max(a, self._t_from), b)
        return result

    def release(self, robot: str, segments: Sequence[Tuple[int, float, float]]) -> None:
        """Drop all of ``robot``'s holds (``segments``: what it had committed)."""
        self.table.release(robot)
        self._robots.discard(robot)
        for resource, _, _ in segments:
            self._dirty.update(self._exclusive_of(resource))

    def _exclusive_of(self, resource: int) -> List[int]:
        exclusive = self._exclusive.get(resource)
        if exclusive is None:
            exclusive = self._exclusive[resource] = [int(y) for y in self._of(resource)]
        return exclusive

    def _block(self, resource: int, a: float, b: float) -> None:
        safe = self._safe
        for y in self._exclusive_of(resource):
            if y in self._dirty:
                self._refresh(y)
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

    def _refresh(self, resource: int) -> None:
        self._dirty.discard(resource)
        self._safe[resource] = self.table.safe_intervals(resource, t_from=self._t_from)

    def safe_intervals(self, resource: int, *, robot: Optional[str] = None, t_from: float = 0.0
                       ) -> List[Tuple[float, float]]:
        """``ReservationTable.safe_intervals`` for a robot that holds nothing (a list the
        caller must not modify)."""
        if robot in self._robots:
            raise ValueError(f"robot {robot!r} already holds reservations; ask the table")
        if resource in self._dirty:
            self._refresh(resource)
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

    On unit grids the planner works on a ``UnitGridTable``; the ``ReservationTable`` is
    then built (and the plan committed to it, which checks it once more) on first access
    of ``table``, outside the planning time.
    """
    paths: List[TimedPath]
    order: List[int]
    attempts: int
    solve_time_s: float
    # A ReservationTable, or a function that builds it on first access.
    _table: Union[ReservationTable, Callable[[], ReservationTable]] = field(repr=False)

    @property
    def table(self) -> ReservationTable:
        """The reservation table holding the whole plan."""
        if not isinstance(self._table, ReservationTable):
            self._table = self._table()
        return self._table

    @property
    def sum_of_costs(self) -> float:
        """Sum over robots of the time from start until it reaches its goal for good."""
        return sum(path_cost(p) for p in self.paths)

    @property
    def makespan(self) -> float:
        """Time until the last robot reaches its goal for good."""
        return max((path_cost(p) for p in self.paths), default=0.0)


def plan_prioritized(roadmap: Roadmap, exclusion: Exclusion, starts: Sequence[Vertex],
                     goals: Sequence[Vertex], *,
                     max_speed: float = 1.0, time_limit_s: float = 10.0, seed: int = 0,
                     t_start: float = 0.0, max_attempts: Optional[int] = None,
                     improve_s: Optional[float] = None, max_bumps: int = 3,
                     grid_fast_path: bool = True, grid_weight: float = 1.125
                     ) -> Optional[MultiPlan]:
    """Conflict-free timed paths for robots ``i`` from ``starts[i]`` to ``goals[i]``.

    Starts and goals are vertex ids, names or ``(x, y)`` positions; all robots start at
    ``t_start``. Returns ``None`` when no plan was found within ``time_limit_s`` seconds
    of computation (or ``max_attempts`` planning passes), and at once when a goal is not
    reachable from its start at all. Raises ``ValueError`` for mismatched lists or two
    robots sharing a start or a goal. ``seed`` fixes the tie-breaking of the order, so a
    run is repeatable up to where the time limit cuts it.

    The first plan found is then shortened where robots waited for others to drive
    through their goals (``_unblock_goals``) for up to ``improve_s`` seconds (default:
    as long as the first plan took; 0: return the first plan as found).

    On a unit grid with the closed-form exclusion, speed 1 and an integer ``t_start``,
    the robots are planned in integer time (``grid_sipp``: the same plans, faster);
    ``grid_fast_path=False`` plans with the general ``sipp`` everywhere. There each
    search inflates its heuristic by ``grid_weight`` (each robot arrives at most that
    factor later than it could; 1: earliest arrivals): measured on the MovingAI
    benchmark, 1.125 expands a third fewer states on warehouse-10-20-10-2-1 with 400
    robots, and the sum of costs of random-32-32-20 with 100 robots does not change.
    """
    t0 = time.perf_counter()
    if len(starts) != len(goals):
        raise ValueError(f"{len(starts)} starts but {len(goals)} goals")
    starts_v = [_resolve_vertex(roadmap, s) for s in starts]
    goals_v = [_resolve_vertex(roadmap, g) for g in goals]
    for name, vs in (("start", starts_v), ("goal", goals_v)):
        seen: Dict[int, int] = {}
        for i, v in enumerate(vs):
            if v in seen:
                raise ValueError(f"robots {seen[v]} and {i} share the {name} vertex {v}")
            seen[v] = i
    n = len(starts_v)
    grid = unit_grid_model(roadmap, exclusion, max_speed) if grid_fast_path else None
    fleet: _Fleet
    if grid is not None and float(t_start).is_integer():
        fleet = _GridFleet(grid, roadmap, exclusion, int(t_start), starts_v, goals_v,
                           grid_weight)
    else:
        fleet = _TableFleet(roadmap, exclusion, float(max_speed), float(t_start), starts_v,
                            goals_v)
    distance = fleet.distance
    if any(d == math.inf for d in distance):
        return None

    # Shortest trips first, ties in a seeded random order. Measured on the MovingAI
    # benchmark against longest-first and against precedence orders built from the
    # single-robot routes: fewest failures and the lowest sum of costs (short trips
    # park early and out of the way; long trips have room to detour).
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    order.sort(key=lambda i: distance[i])

    deadline = t0 + float(time_limit_s)
    attempts = 0
    while True:
        attempts += 1
        fleet.reset()
        paths: List[Optional[TimedPath]] = [None] * n
        planned: List[int] = []          # the priority order as it is being built
        queue = deque(order)
        bumps = [0] * n
        failed = None
        while queue:
            i = queue.popleft()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            path = fleet.plan(i, remaining)
            if path is None and bumps[i] < max_bumps:
                # Priority inversion on demand: the robots parked in i's way (or, when
                # none is, driving through i's start) are lifted out and re-planned after i.
                bumps[i] += 1
                culprits = _culprits(fleet.neighbours, i, starts_v, goals_v, paths)
                for j in culprits:
                    fleet.release(j)
                    paths[j] = None
                    planned.remove(j)
                if culprits:
                    queue.extendleft(reversed(culprits))
                    path = fleet.plan(i, deadline - time.perf_counter())
            if path is None:
                failed = i
                break
            fleet.commit(i, path)
            paths[i] = path
            planned.append(i)
        if failed is None:
            now = time.perf_counter()
            budget = now - t0 if improve_s is None else float(improve_s)
            if budget > 0:
                _unblock_goals(fleet, cast(List[TimedPath], paths), distance, t_start,
                               min(deadline, now + budget))
            done, table = fleet.result(cast(List[TimedPath], paths))   # all planned
            return MultiPlan(paths=done, order=planned, attempts=attempts,
                             solve_time_s=time.perf_counter() - t0, _table=table)
        if max_attempts is not None and attempts >= max_attempts:
            return None
        if order[0] == failed:
            # It was planned first, then lifted out for another robot and boxed in when
            # re-planned: the same order would fail the same way. Random restart (it
            # stays first, the others in a seeded random order).
            rest = order[1:]
            rng.shuffle(rest)
            order[1:] = rest
        else:
            order.remove(failed)
            order.insert(0, failed)
