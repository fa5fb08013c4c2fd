"""Yielding: a parked robot moves out of the way of a robot that needs its spot.

A robot parked at its last goal holds its vertex until further notice (``t_end = inf``,
docs/core-model.md). When that vertex is the next station of another robot's task, or
lies on the only way there (a bottleneck), the working robot cannot plan. The parked
robot notices and yields: it drives to a nearby vertex that nobody needs.

Each idle agent decides for itself, from what every agent already knows:

- the open tasks (``OpenTask``: who executes them, the station it heads to next, the
  stations still to visit), heard on the Contract Net and task-status topics;
- the reservation table replica (who is where, who is parked for good).

``needed_by`` asks, per open task, for the **least-disturbing path**: the fastest way from
the working robot to its next station where every lane or vertex blocked by a parked
robot costs ``PARKED_PENALTY`` seconds. It passes a parked robot only when no free way
exists, and then through as few parked robots as possible; those robots yield. Every
agent computes the same path from the same replica, so exactly those robots move.

Why it cannot livelock (two robots yielding back and forth):

1. only robots standing still yield: idle ones, and (robot_agent) ones whose task waits
   for its next station, which set the task aside for the move and resume it after; a
   robot driving a task never does, so a requester and a yielder never swap roles
   while both move;
2. ``yield_target`` picks a vertex off every open task's remaining stations and
   least-disturbing path, so right after yielding ``needed_by`` is None for the tasks
   known then: a robot moves again only for a task that appeared later (progress);
3. the spot a robot left is tabu for a while (``tabu``), so two tasks that come and go
   cannot bounce it between the same two spots.

Pure: time and the table are parameters; no rclpy.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from heapq import heappop, heappush
from weakref import WeakKeyDictionary
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, TypeVar, cast

from fleet_coord.core.reservations import sort_key

if TYPE_CHECKING:
    from fleet_coord.core.reservations import Reservation, ReservationTable
    from fleet_coord.core.roadmap import Exclusion, Roadmap

_T = TypeVar("_T")

__all__ = ["OpenTask", "PARKED_PENALTY", "YieldMemo", "forever_holders",
           "least_disturbing_path", "needed_by", "parked_at", "position", "yield_target"]

#: Extra cost (s) of passing through a resource blocked by a parked robot: larger than any
#: detour, so the path crosses parked robots only when there is no other way.
PARKED_PENALTY = 1e4
#: A parked robot further off a task's shortest path than this (s of travel) is not
#: searched for: agents check often, the search is the expensive part.
DETOUR_S = 20.0


@dataclass(frozen=True)
class OpenTask:
    """A task being executed: `robot` heads to vertex `goal`, then visits `later`."""
    task_id: str
    robot: str
    goal: int
    later: tuple[int, ...] = field(default_factory=tuple)

    @property
    def stations(self) -> tuple[int, ...]:
        return (self.goal, *self.later)


def forever_holders(table: ReservationTable, exclusion: Exclusion, *,
                    skip: Iterable[str] = ()) -> dict[int, str]:
    """resource -> robot, for every resource blocked by a reservation that never ends
    (a robot parked, or going to park), including resources exclusive with it."""
    skip = set(skip)
    out: dict[int, str] = {}
    for r in _forever(table):
        if r.robot not in skip:
            for y in exclusion.of(r.resource):
                out.setdefault(int(y), r.robot)
    return out


class YieldMemo:
    """What `needed_by` and `yield_target` compute per open task (who holds what for
    good, the task's least-disturbing path), shared by the agents of one process: every
    agent asks about the same tasks on the same table, and that search dominates an
    agents process's CPU (docs/benchmarks.md, "Yield checks"). Results are keyed by the table's
    `version`, so the caller must only pass tables whose equal versions mean equal
    contents: replicas of one authority that are not stale. The latest `keep` versions
    are kept. Results are shared: do not modify them."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._slots: OrderedDict[tuple[object, ...], dict[tuple[object, ...], object]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, table: ReservationTable, roadmap: Roadmap, exclusion: Exclusion, speed: float,
            key: tuple[object, ...], compute: Callable[[], _T]) -> _T:
        slot_key = (int(table.version), id(roadmap), id(exclusion), float(speed))
        slot = self._slots.get(slot_key)
        if slot is None:
            slot = self._slots[slot_key] = {}
            while len(self._slots) > self.keep:
                self._slots.popitem(last=False)
        else:
            self._slots.move_to_end(slot_key)
        if key in slot:
            self.hits += 1
            return cast(_T, slot[key])
        self.misses += 1
        value = slot[key] = compute()
        return value


def _holders(table: ReservationTable, exclusion: Exclusion, skip: str, memo: YieldMemo | None,
             roadmap: Roadmap,
             speed: float) -> dict[int, str]:
    if memo is None:
        return forever_holders(table, exclusion, skip=[skip])
    return memo.get(table, roadmap, exclusion, speed, ("holders", skip),
                    lambda: forever_holders(table, exclusion, skip=[skip]))


def parked_at(table: ReservationTable, exclusion: Exclusion, vertex: int, robot: str) -> str | None:
    """Another robot (not `robot`) whose never-ending hold blocks `vertex`, or None: the
    station is taken until that robot yields."""
    for r in _forever(table):
        if r.robot != robot and int(vertex) in exclusion.of(r.resource):
            return r.robot
    return None


def _forever(table: ReservationTable) -> list[Reservation]:
    """The never-ending holds in the table's order; sorting only these, not the whole
    table, is what keeps a 200-robot fleet's yield checks affordable. Kept per table
    version (every agent and every task of a check asks on the same one)."""
    cached = _FOREVER.get(table)
    if cached is not None and cached[0] == table.version:
        return cached[1]
    out = sorted((r for r in table.reservations(ordered=False) if r.t_end == math.inf),
                 key=sort_key)
    _FOREVER[table] = (table.version, out)
    return out


#: table -> (version, its never-ending holds in order)
_FOREVER: WeakKeyDictionary[ReservationTable, tuple[int, list[Reservation]]] = \
    WeakKeyDictionary()


def position(table: ReservationTable, roadmap: Roadmap, robot: str, now: float) -> int | None:
    """The vertex `robot` is at (or heading to, when on a lane) at `now`, from its holds;
    None when it holds nothing around `now`."""
    holds = table.reservations(robot, ordered=False)   # called per robot per yield check
    current = sorted((r for r in holds if r.t_start <= now < r.t_end), key=sort_key)
    if not current:
        later = [r for r in holds if r.t_start > now]
        current = [min(later, key=sort_key)] if later else []
    if not current:
        return None
    res = min(current, key=lambda r: r.t_start).resource
    V = roadmap.num_vertices
    if res < V:
        # at a vertex it may also hold the next lane's start; the vertex is where it is
        verts = [r.resource for r in current if r.resource < V]
        return int(verts[0]) if verts else int(res)
    return int(roadmap.edge_to[res - V])


def least_disturbing_path(roadmap: Roadmap, start: int, goal: int, speed: float,
                          blocked: dict[int, str] | set[int]) -> list[int] | None:
    """Vertices of the fastest path start -> goal where entering a blocked resource (a
    vertex, or a lane's middle) costs PARKED_PENALTY extra; None when unreachable.
    Ties are broken by vertex id, so every caller gets the same path."""
    V = roadmap.num_vertices
    start, goal = int(start), int(goal)
    lanes = roadmap.lanes_from(speed)
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
        for e, v, cost in lanes[u]:
            if v in blocked:
                cost += PARKED_PENALTY
            if V + e in blocked:
                cost += PARKED_PENALTY
            ng = g + cost
            if ng < best.get(v, math.inf):
                best[v] = ng
                parent[v] = u
                heappush(heap, (ng, v))
    return None


def _reachable(roadmap: Roadmap, start: int, blocked: dict[int, str] | set[int]) -> set[int]:
    """Vertices reachable from `start` over lanes and vertices not in `blocked`."""
    V = roadmap.num_vertices
    seen = {int(start)}
    todo = [int(start)]
    while todo:
        u = todo.pop()
        for e in roadmap.out_edges[u]:
            v = int(roadmap.edge_to[int(e)])
            if v in seen or v in blocked or V + int(e) in blocked:
                continue
            seen.add(v)
            todo.append(v)
    return seen


def _path_resources(roadmap: Roadmap, path: Sequence[int]) -> list[int]:
    out = [int(path[0])]
    for u, v in zip(path, path[1:]):
        e = roadmap.edge_id(u, v)
        assert e is not None, (u, v)   # the path was searched over the roadmap's lanes
        out += [roadmap.num_vertices + e, int(v)]
    return out


def _task_path(roadmap: Roadmap, exclusion: Exclusion, table: ReservationTable, task: OpenTask,
               now: float, speed: float,
               blocked: dict[int, str], memo: YieldMemo | None = None,
               start: int | None = None) -> list[int] | None:
    if start is None:
        start = _position(table, roadmap, exclusion, task.robot, now, speed, memo)
    if start is None:
        return None
    if memo is None:
        return least_disturbing_path(roadmap, start, task.goal, speed, blocked)
    return memo.get(table, roadmap, exclusion, speed, ("path", task.robot, start, task.goal),
                    lambda: least_disturbing_path(roadmap, start, task.goal, speed, blocked))


def _task_resources(roadmap: Roadmap, exclusion: Exclusion, table: ReservationTable,
                    task: OpenTask, now: float, speed: float, blocked: dict[int, str],
                    memo: YieldMemo | None, start: int) -> frozenset[int] | None:
    """The resources of the task's least-disturbing path (None: no path)."""
    def compute() -> frozenset[int] | None:
        path = _task_path(roadmap, exclusion, table, task, now, speed, blocked, memo, start)
        return None if path is None else frozenset(_path_resources(roadmap, path))
    if memo is None:
        return compute()
    return memo.get(table, roadmap, exclusion, speed, ("resources", task.robot, start,
                                                        task.goal), compute)


def _position(table: ReservationTable, roadmap: Roadmap, exclusion: Exclusion, robot: str,
              now: float, speed: float, memo: YieldMemo | None) -> int | None:
    if memo is None:
        return position(table, roadmap, robot, now)
    return memo.get(table, roadmap, exclusion, speed, ("position", robot, now),
                    lambda: position(table, roadmap, robot, now))


def needed_by(me: str, spot: int, tasks: Iterable[OpenTask], table: ReservationTable,
              roadmap: Roadmap, exclusion: Exclusion,
              now: float, speed: float, memo: YieldMemo | None = None) -> OpenTask | None:
    """The first open task (of another robot) whose next station or least-disturbing
    path needs the vertex `spot` that idle robot `me` is parked at; None when nobody
    needs it. `memo` shares the per-task searches among callers (see YieldMemo)."""
    mine = set(int(y) for y in exclusion.of(spot))
    to_me = roadmap.shortest_times(spot, speed)
    for task in tasks:
        if task.robot == me:
            continue
        if task.goal in mine:
            return task
        # Cheap filter before the search: a path through `spot` is at least as long as
        # start -> spot -> goal; skip spots far off any reasonable detour.
        start = _position(table, roadmap, exclusion, task.robot, now, speed, memo)
        if start is None:
            continue   # nowhere known: no path to check (as before: _task_path gave None)
        via = float(to_me[start]) + float(roadmap.shortest_times(task.goal, speed)[spot])
        if via > float(roadmap.shortest_times(task.goal, speed)[start]) + DETOUR_S:
            continue
        blocked = _holders(table, exclusion, task.robot, memo, roadmap, speed)
        resources = _task_resources(roadmap, exclusion, table, task, now, speed, blocked,
                                    memo, start)
        if resources is None:
            continue
        if any(r in resources and blocked.get(r) == me for r in mine):
            return task
    return None


def yield_target(me: str, here: int, tasks: Iterable[OpenTask], table: ReservationTable,
                 roadmap: Roadmap, exclusion: Exclusion,
                 now: float, speed: float, *, tabu: Iterable[int] = (),
                 memo: YieldMemo | None = None) -> int | None:
    """The nearest vertex (travel time from `here`) robot `me` can park at for good
    without being in anyone's way: free from some time on for ever in `table`, off every
    open task's stations and least-disturbing paths (and anything exclusive with them),
    not in `tabu`, and reachable from `here` without entering anything another robot
    holds for good (a free cell behind a parked robot is no way out: the move would be
    refused until the robot gives up). None when there is no such vertex."""
    tasks = [t for t in tasks if t.robot != me]
    avoid: set[int] = set()
    for task in tasks:
        need = list(task.stations)
        blocked = _holders(table, exclusion, task.robot, memo, roadmap, speed)
        path = _task_path(roadmap, exclusion, table, task, now, speed, blocked, memo)
        if path is not None:
            need += _path_resources(roadmap, path)
        for r in need:
            avoid.update(int(y) for y in exclusion.of(r))
    avoid.update(int(v) for v in tabu)
    reach = _reachable(roadmap, here, _holders(table, exclusion, me, memo, roadmap, speed))
    times = roadmap.shortest_times(here, speed)  # symmetric lanes: from `here` = to it
    order = sorted((float(t), v) for v, t in enumerate(times) if math.isfinite(t))
    for _, v in order:
        if v not in reach:
            continue
        if v == here or v in avoid:
            continue
        if any(int(y) in avoid for y in exclusion.of(v)):
            continue
        free = table.safe_intervals(v, robot=me, t_from=now)
        if free and free[-1][1] == math.inf:
            return v
    return None
