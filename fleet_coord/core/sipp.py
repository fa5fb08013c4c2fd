"""SIPP: Safe Interval Path Planning (Phillips & Likhachev, ICRA 2011).

One robot plans against everyone else's reservations. Time is continuous. A **safe
interval** of a resource is a maximal stretch of time in which no other robot holds a
resource exclusive with it (``ReservationTable.safe_intervals``). A search **state** is
``(vertex, index of a safe interval of that vertex)``; its ``g`` is the **earliest
arrival** time at the vertex within that interval, and waiting inside an interval is
free to decide later, so one state per interval suffices (the paper's key idea). The
heuristic is the obstacle-free travel time to the goal (``Roadmap.shortest_times``).

The holds follow docs/core-model.md: moving ``u -> v`` along lane ``e`` departing at
``t`` (duration ``d``, hold offset ``c``) keeps ``u`` until ``t + c``, the lane's middle
over ``[t + c, t + d - c)`` and ``v`` from ``t + d - c``. So a **successor** in the safe
interval ``[a, b)`` of ``v`` exists when some departure ``t >= g`` has

- ``t + c <= end of u's current safe interval`` (still safe while leaving ``u``),
- ``[t + c, t + d - c)`` inside one safe interval of the lane middle,
- ``a <= t + d - c < b`` (arriving inside the target interval);

the successor is reached by the earliest such ``t`` (wait at ``u`` until then).
"""
from __future__ import annotations

import math
import time
from bisect import bisect_right
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Dict, List, Optional, Protocol, Tuple, Union

from .timed_path import TimedPath

if TYPE_CHECKING:
    from .roadmap import Exclusion, Roadmap

INF = math.inf

_Interval = Tuple[float, float]


class SafeIntervals(Protocol):
    """What SIPP reads from a table (ReservationTable, prioritized.SafeIntervalIndex)."""

    def safe_intervals(self, resource: int, *, robot: Optional[str] = None,
                       t_from: float = 0.0) -> List[_Interval]: ...


class MotionModel:
    """Per (roadmap, exclusion, max speed): the successor lists and heuristics SIPP reads.

    ``successors[u]`` is a list of ``(v, e, d, c, middle)`` with the lane's duration
    ``d``, hold offset ``c`` and the middle's resource id (``-1`` when the middle is
    empty). Built once and cached: plain Python lists are what the search loop reads fastest.
    """

    def __init__(self, roadmap: Roadmap, exclusion: Exclusion, max_speed: float) -> None:
        if not max_speed > 0:
            raise ValueError(f"max_speed must be > 0, got {max_speed!r}")
        self.roadmap = roadmap
        self.exclusion = exclusion
        self.max_speed = float(max_speed)
        num_vertices = roadmap.num_vertices
        edge_to = [int(v) for v in roadmap.edge_to]
        edge_speed = [float(s) for s in roadmap.edge_speed]
        self.successors: List[List[Tuple[int, int, float, float, int]]] = []
        for u in range(num_vertices):
            succ = []
            for e in roadmap.out_edges[u]:
                e = int(e)
                d = float(roadmap.travel_time(e, max_speed))
                c = float(exclusion.hold_offset(e, min(edge_speed[e], max_speed)))
                middle = num_vertices + e if d - c > c else -1
                succ.append((edge_to[e], e, d, c, middle))
            self.successors.append(succ)
        self._times_to: Dict[int, List[float]] = {}

    def times_to(self, goal: int) -> List[float]:
        """Obstacle-free travel time from every vertex to ``goal`` (inf: unreachable)."""
        h = self._times_to.get(goal)
        if h is None:
            if len(self._times_to) >= 4096:
                self._times_to.clear()
            h = self._times_to[goal] = [
                float(x) for x in self.roadmap.shortest_times(goal, self.max_speed)]
        return h


_models: Dict[Tuple[int, int, float], MotionModel] = {}


def motion_model(roadmap: Roadmap, exclusion: Exclusion, max_speed: float) -> MotionModel:
    """The cached ``MotionModel`` of this roadmap, exclusion and speed."""
    key = (id(roadmap), id(exclusion), float(max_speed))
    model = _models.get(key)
    # The model keeps roadmap and exclusion alive, so their ids cannot be reused while cached.
    if model is None or model.roadmap is not roadmap or model.exclusion is not exclusion:
        if len(_models) >= 16:
            _models.clear()
        model = _models[key] = MotionModel(roadmap, exclusion, max_speed)
    return model


Vertex = Union[int, str, Tuple[int, int]]
"""A vertex as callers name it: its id, its name or its ``(x, y)`` position."""


def _resolve_vertex(roadmap: Roadmap, v: Vertex) -> int:
    if isinstance(v, (int,)) or hasattr(v, "__index__"):
        i = int(v)  # type: ignore[arg-type]  # numpy integers too
        if not 0 <= i < roadmap.num_vertices:
            raise ValueError(f"vertex {i} is not in the roadmap (0..{roadmap.num_vertices - 1})")
        return i
    return int(roadmap.vertex(v))


def _after(t: float, minimum: float) -> float:
    """``t`` rounded away from float noise, but never below ``minimum``.

    Departure times are found by inverting ``t + d - c >= a``; rounding keeps unit-grid
    times exactly integral and the check afterwards keeps the inversion exact.
    """
    r = round(t, 9)
    while r < minimum:
        r = math.nextafter(r, INF)
    return r


def sipp(roadmap: Roadmap, exclusion: Exclusion, table: SafeIntervals, robot: Optional[str],
         start: Vertex, goal: Vertex, t_start: float, max_speed: float,
         *, horizon: Optional[float] = None, park: bool = True,
         deadline_s: Optional[float] = None) -> Optional[TimedPath]:
    """Earliest-arrival timed path for ``robot`` from ``start`` (at ``t_start``) to ``goal``.

    Plans against the other robots' holds in ``table`` (the robot's own holds are
    ignored) and returns ``[(vertex, time), ...]`` — the start, then a step per
    traversal, with an explicit wait step ``(u, departure)`` before a delayed
    departure — or ``None`` when there is no such path (or the search ran out of
    ``deadline_s`` seconds of computation).

    - ``park=True``: the path ends at the goal in a safe interval that never ends, so the
      robot can stay there (commit it with ``park_until=inf``). ``park=False``: any
      arrival at the goal will do; the caller decides how long the goal stays held.
    - ``horizon``: rolling-horizon planning. The search stops at the first state reached
      at or after ``t_start + horizon`` whose safe interval never ends (or at the goal,
      whichever it pops first). The partial path reserves only about the next
      ``horizon`` seconds of driving and ends where the robot can wait safely for as
      long as it needs (commit it with ``park_until=inf``, then plan again from its end).

    ``start`` and ``goal`` are vertex ids, names or ``(x, y)`` positions.
    """
    start = _resolve_vertex(roadmap, start)
    goal = _resolve_vertex(roadmap, goal)
    t_start = float(t_start)
    model = motion_model(roadmap, exclusion, max_speed)
    h = model.times_to(goal)
    if h[start] == INF:
        return None  # the goal is not reachable at all: no search needed
    successors = model.successors
    t_horizon = INF if horizon is None else t_start + float(horizon)
    wall_deadline = INF if deadline_s is None else time.perf_counter() + float(deadline_s)

    # Safe intervals, read from the table once per resource and search. Each is a sorted
    # list of disjoint (a, b); `_first_open(intervals, x)` bisects for the first b > x.
    safe: Dict[int, List[_Interval]] = {}

    def safe_intervals(resource: int) -> List[_Interval]:
        intervals = safe.get(resource)
        if intervals is None:
            intervals = safe[resource] = table.safe_intervals(resource, robot=robot,
                                                              t_from=t_start)
        return intervals

    # The start state: the safe interval of the start vertex that holds t_start.
    intervals = safe_intervals(start)
    i0 = _first_open(intervals, t_start)
    if i0 >= len(intervals) or intervals[i0][0] > t_start:
        return None  # someone else holds the start vertex right now

    best: Dict[Tuple[int, int], float] = {(start, i0): t_start}     # earliest arrival g
    parent: Dict[Tuple[int, int], Optional[Tuple[int, int, float, float]]] = {(start, i0): None}
    # Ties in f go to the later arrival (deeper state): fewer expansions on grids.
    open_list: List[Tuple[float, float, int, int]] = [(t_start + h[start], -t_start, start, i0)]
    pops = 0
    while open_list:
        _, neg_g, u, i = heappop(open_list)
        g = -neg_g
        if g > best[(u, i)]:
            continue  # a stale entry: this state was reached earlier since
        pops += 1
        if pops & 255 == 1 and time.perf_counter() > wall_deadline:
            return None
        interval_end = safe[u][i][1]
        if u == goal and (interval_end == INF or not park):
            return _reconstruct(parent, (u, i), g)
        if g >= t_horizon and interval_end == INF:
            return _reconstruct(parent, (u, i), g)

        for v, _e, d, c, middle in successors[u]:
            h_v = h[v]
            if h_v == INF:
                continue
            latest = interval_end - c          # latest departure: u is held until t + c
            if g > latest:
                continue
            dc = d - c                          # the hold on v starts at t + d - c
            v_intervals = safe.get(v)
            if v_intervals is None:
                v_intervals = safe_intervals(v)
            # The safe intervals of v still open when we could arrive first ...
            j = bisect_right(v_intervals, (g + dc, INF))
            if j and v_intervals[j - 1][1] > g + dc:
                j -= 1
            for j in range(j, len(v_intervals)):  # noqa: B020 (resumes at j)
                a_v, b_v = v_intervals[j]
                if a_v > latest + dc:
                    break                       # ... and not after we must have left u
                # Earliest departure that arrives inside [a_v, b_v).
                if a_v <= g + dc:
                    t = g
                else:
                    t = _after(a_v - dc, g)
                    while t + dc < a_v:
                        t = math.nextafter(t, INF)
                if middle >= 0:
                    # ... whose lane middle [t + c, t + d - c) fits in one safe interval.
                    m_intervals = safe.get(middle)
                    if m_intervals is None:
                        m_intervals = safe_intervals(middle)
                    k = bisect_right(m_intervals, (t + c, INF))
                    # (fast path: the interval holding t + c also holds up to t + dc)
                    if not (k and m_intervals[k - 1][1] >= t + dc):
                        t = _earliest_through(m_intervals, t, c, dc)
                        if t + dc >= b_v:
                            continue
                if t > latest:
                    continue
                arrival = t + d
                key = (v, j)
                if arrival < best.get(key, INF):
                    best[key] = arrival
                    parent[key] = (u, i, g, t)
                    heappush(open_list, (arrival + h_v, -arrival, v, j))
    return None


def _first_open(intervals: List[_Interval], x: float) -> int:
    """Index of the first interval (sorted, disjoint) that ends after ``x``."""
    j = bisect_right(intervals, (x, INF))
    if j and intervals[j - 1][1] > x:
        j -= 1
    return j


def _earliest_through(middle_intervals: List[_Interval], t: float, c: float,
                      dc: float) -> float:
    """Earliest departure ``>= t`` whose lane-middle hold ``[t + c, t + dc)`` lies inside
    one of ``middle_intervals``; inf when none."""
    k = _first_open(middle_intervals, t + dc)
    if k and middle_intervals[k - 1][1] == t + dc:
        k -= 1  # the hold is half-open: an interval ending exactly at t + dc still fits
    for k in range(k, len(middle_intervals)):  # noqa: B020 (resumes at k)
        m_a, m_b = middle_intervals[k]
        if m_a <= t + c:
            t_k = t
        else:
            t_k = _after(m_a - c, t)
            while t_k + c < m_a:
                t_k = math.nextafter(t_k, INF)
        if t_k + dc <= m_b:
            return t_k
    return INF


def _reconstruct(parent: Dict[Tuple[int, int], Optional[Tuple[int, int, float, float]]],
                 state: Tuple[int, int], arrival: float) -> TimedPath:
    """The steps leading to ``state``: arrivals, and a wait step before each delayed departure."""
    steps: TimedPath = []
    while True:
        steps.append((state[0], arrival))
        back = parent[state]
        if back is None:
            break
        u, i, arrival_u, depart = back
        if depart > arrival_u:
            steps.append((u, depart))  # waited at u
        state, arrival = (u, i), arrival_u
    steps.reverse()
    return steps
