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

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from .time_model import LaneTiming, TimeModel, as_time_model, lane_times
from .timed_path import TimedPath

if TYPE_CHECKING:
    from .roadmap import Exclusion, Roadmap

INF = math.inf

_Interval = Tuple[float, float]
#: (m, w, turn, d, hold_u, m0, m1, middle, w_from): see MotionModel
_Successor = Tuple[int, int, float, float, float, float, float, int, float]


class SafeIntervals(Protocol):
    """What SIPP reads from a table (ReservationTable, prioritized.SafeIntervalIndex)."""

    def safe_intervals(self, resource: int, *, robot: Optional[str] = None,
                       t_from: float = 0.0) -> List[_Interval]: ...


class MotionModel:
    """Per (roadmap, exclusion, time model): the search graph SIPP reads.

    **Nodes** are what the robot can be doing at a vertex:

    - *stand* nodes ``0 .. R-1``: stopped at a vertex, facing one heading class (the
      direction of a lane arriving there; modulo pi when the robot may reverse). One per
      vertex, numbered as the vertex, when turns take no time;
    - *pass* nodes ``R + e``: passing the head of lane ``e`` at its through speed, on the
      way into the lane that continues it (only when the model passes vertices).

    ``successors[n]`` lists ``(m, w, turn, d, hold_u, m0, m1, middle, w_from)``: drive a
    lane to vertex ``w`` reaching node ``m``, after turning ``turn`` s in place (stand
    nodes), taking ``d`` s; relative to the departure, the tail is held until
    ``hold_u``, the lane's middle (resource ``middle``, ``-1``: none) over ``[m0, m1)``
    and ``w`` from ``w_from`` (time_model.decode, margin included). Built once and
    cached: plain Python lists are what the search loop reads fastest.
    """

    def __init__(self, roadmap: Roadmap, exclusion: Exclusion,
                 model: Union[TimeModel, float]) -> None:
        model = as_time_model(model)
        self.roadmap = roadmap
        self.exclusion = exclusion
        self.model = model
        self.max_speed = model.max_v
        lt = self.lanes = lane_times(roadmap, exclusion.clearance, model)
        num_vertices = roadmap.num_vertices
        self.period = math.pi if model.reverse else 2.0 * math.pi
        # Stand nodes.
        self.node_vertex: List[int] = []
        self.node_heading: List[Optional[float]] = []
        self.arrival_node: List[int] = [0] * roadmap.num_edges
        if not model.turns:
            self.node_vertex = list(range(num_vertices))
            self.node_heading = [None] * num_vertices
            self.arrival_node = list(lt.edge_to)
        else:
            for v in range(num_vertices):
                classes: Dict[float, int] = {}
                for e in roadmap.in_edges[v].tolist():
                    key = self._heading_class(lt.angle[e])
                    if key not in classes:
                        classes[key] = len(self.node_vertex)
                        self.node_vertex.append(v)
                        self.node_heading.append(key)
                    self.arrival_node[e] = classes[key]
                if not classes:
                    self.node_vertex.append(v)
                    self.node_heading.append(None)
        self.num_stand = len(self.node_vertex)
        # Pass nodes: R + e for every lane that has a continuation.
        self.node_vertex.extend(lt.edge_to)
        self.successors: List[List[_Successor]] = [self._stand_successors(self.node_vertex[n],
                                                              self.node_heading[n])
                                       for n in range(self.num_stand)]
        for e in range(roadmap.num_edges):
            f = lt.next[e]
            succ: List[_Successor] = []
            if f >= 0:
                v0 = lt.through(e)
                self._add(succ, f, 0.0, lt.timing(f, v0, 0.0), self.arrival_node[f])
                if lt.next[f] >= 0:
                    self._add(succ, f, 0.0, lt.timing(f, v0, lt.through(f)),
                              self.num_stand + f)
            self.successors.append(succ)
        self._times_to: Dict[int, List[float]] = {}
        self._node_times_to: Dict[int, List[float]] = {}
        self._vertex_times_to: Dict[int, List[float]] = {}
        self._reverse_graph = None

    def _heading_class(self, angle: float) -> float:
        a = angle % self.period
        if self.period - a < 1e-9:
            a = 0.0
        return round(a, 9)

    def _add(self, succ: List[_Successor], e: int, turn: float, timing: Optional[LaneTiming],
             node: int) -> None:
        if timing is None:
            return
        middle = self.roadmap.num_vertices + e if timing.has_middle else -1
        succ.append((node, self.lanes.edge_to[e], turn, timing.d, timing.hold_u, timing.m0,
                     timing.m1, middle, timing.w_from))

    def _stand_successors(self, u: int, heading: Optional[float]) -> List[_Successor]:
        """Successors of standing at ``u`` facing ``heading`` (None: turns are free)."""
        lt, model = self.lanes, self.model
        succ: List[_Successor] = []
        for e in self.roadmap.out_edges[u].tolist():
            turn = 0.0 if heading is None else model.turn(model.turn_angle(heading, lt.angle[e]))
            self._add(succ, e, turn, lt.timing(e, 0.0, 0.0), self.arrival_node[e])
            if lt.next[e] >= 0:
                self._add(succ, e, turn, lt.timing(e, 0.0, lt.through(e)), self.num_stand + e)
        return succ

    def start_successors(self, u: int, heading: Optional[float]) -> List[_Successor]:
        """Successors of the start: standing at ``u`` facing ``heading`` (rad; None: the
        heading is not known, the first turn is free)."""
        if heading is None or not self.model.turns:
            heading = None
        return self._stand_successors(u, heading)

    def neighbours(self) -> List[List[int]]:
        """Per vertex, the vertices one lane away (in lane order)."""
        to = self.lanes.edge_to
        return [[to[e] for e in out.tolist()] for out in self.roadmap.out_edges]

    def times_to(self, goal: int) -> List[float]:
        """Obstacle-free travel time from every vertex to ``goal`` at cruise speed,
        turns and speed changes not counted (inf: unreachable)."""
        h = self._times_to.get(goal)
        if h is None:
            if len(self._times_to) >= 4096:
                self._times_to.clear()
            h = self._times_to[goal] = [
                float(x) for x in self.roadmap.shortest_times(goal, self.max_speed)]
        return h

    def node_times_to(self, goal: int) -> List[float]:
        """SIPP's heuristic: per node, the obstacle-free time the model needs from it to
        stand at ``goal`` (inf: unreachable). ``times_to`` when nodes are vertices
        (turns and speed changes take no time); else one Dijkstra over the node graph,
        so turns and stops count: exact without traffic, hence consistent."""
        if not (self.model.turns or self.model.passes):
            return self.times_to(goal)
        h = self._node_times_to.get(goal)
        if h is None:
            if len(self._node_times_to) >= 1024:
                self._node_times_to.clear()
            sources = [n for n in range(self.num_stand) if self.node_vertex[n] == goal]
            times = dijkstra(self._reverse_node_graph(), indices=sources, min_only=True)
            h = self._node_times_to[goal] = times.tolist()
        return h

    def vertex_times_to(self, goal: int) -> List[float]:
        """Per vertex, the obstacle-free time the model needs from standing there (in the
        best heading: a stop's heading is not known in advance) to standing at ``goal``:
        turns, stops and speed changes counted. For estimates (bids, ETAs)."""
        h = self._vertex_times_to.get(goal)
        if h is None:
            nodes = self.node_times_to(goal)
            if not (self.model.turns or self.model.passes):
                return nodes
            out = [INF] * self.roadmap.num_vertices
            for n in range(self.num_stand):
                v = self.node_vertex[n]
                if nodes[n] < out[v]:
                    out[v] = nodes[n]
            if len(self._vertex_times_to) >= 1024:
                self._vertex_times_to.clear()
            h = self._vertex_times_to[goal] = out
        return h

    def _reverse_node_graph(self) -> csr_matrix:
        if self._reverse_graph is None:
            weight: Dict[Tuple[int, int], float] = {}
            for n, succ in enumerate(self.successors):
                for m, _, turn, d, *_ in succ:
                    w = turn + d
                    if w < weight.get((m, n), INF):
                        weight[(m, n)] = w
            size = len(self.successors)
            rows = np.fromiter((k[0] for k in weight), dtype=np.int64, count=len(weight))
            cols = np.fromiter((k[1] for k in weight), dtype=np.int64, count=len(weight))
            vals = np.fromiter(weight.values(), dtype=float, count=len(weight))
            self._reverse_graph = csr_matrix((vals, (rows, cols)), shape=(size, size))
        return self._reverse_graph


_models: Dict[Tuple[int, int, TimeModel], MotionModel] = {}


def motion_model(roadmap: Roadmap, exclusion: Exclusion,
                 model: Union[TimeModel, float]) -> MotionModel:
    """The cached ``MotionModel`` of this roadmap, exclusion and time model (a
    ``TimeModel`` or a plain speed in m/s)."""
    model = as_time_model(model)
    key = (id(roadmap), id(exclusion), model)
    mm = _models.get(key)
    # The model keeps roadmap and exclusion alive, so their ids cannot be reused while cached.
    if mm is None or mm.roadmap is not roadmap or mm.exclusion is not exclusion:
        if len(_models) >= 16:
            _models.clear()
        mm = _models[key] = MotionModel(roadmap, exclusion, model)
    return mm


Vertex = Union[int, str, Tuple[int, int]]
"""A vertex as callers name it: its id, its name or its ``(x, y)`` position."""


def _resolve_vertex(roadmap: Roadmap, v: Vertex) -> int:
    if isinstance(v, (int,)) or hasattr(v, "__index__"):
        i = int(v)  # type: ignore[arg-type]  # numpy integers too
        if not 0 <= i < roadmap.num_vertices:
            raise ValueError(f"vertex {i} is not in the roadmap (0..{roadmap.num_vertices - 1})")
        return i
    return int(roadmap.vertex(v))


def _earliest(target: float, offset: float, minimum: float) -> float:
    """The earliest departure ``t >= minimum`` with ``t + offset >= target``.

    Inverting ``t + offset >= target`` in floats: ``target - offset`` rounded to 1e-9 s
    when that is exact enough (keeps unit-grid times exactly integral), else a few ulps
    above it.
    """
    t = round(target - offset, 9)
    if t + offset < target:
        t = target - offset
        while t + offset < target:
            t = math.nextafter(t, INF)
    return max(t, minimum)


def sipp(roadmap: Roadmap, exclusion: Exclusion, table: SafeIntervals, robot: Optional[str],
         start: Vertex, goal: Vertex, t_start: float, model: Union[TimeModel, float], *,
         horizon: Optional[float] = None, park: bool = True,
         deadline_s: Optional[float] = None,
         start_heading: Optional[float] = None) -> Optional[TimedPath]:
    """Earliest-arrival timed path for ``robot`` from ``start`` (at ``t_start``) to ``goal``.

    ``model`` is the ``TimeModel`` (or a plain speed in m/s: ``TimeModel.constant``);
    ``start_heading`` the robot's heading (rad) at the start, for the time of its first
    turn (None: that turn is not counted). Plans against the other robots' holds in
    ``table`` (the robot's own holds are ignored) and returns ``[(vertex, time), ...]`` —
    the start, then a step per traversal, with an explicit wait step ``(u, departure)``
    before a delayed departure — or ``None`` when there is no such path (or the search
    ran out of ``deadline_s`` seconds of computation).

    - ``park=True``: the path ends at the goal in a safe interval that never ends, so the
      robot can stay there (commit it with ``park_until=inf``). ``park=False``: any
      arrival at the goal will do; the caller decides how long the goal stays held.
    - ``horizon``: rolling-horizon planning. The search stops at the first state reached
      at or after ``t_start + horizon`` whose safe interval never ends (or at the goal,
      whichever it pops first). The partial path reserves only about the next
      ``horizon`` seconds of driving and ends where the robot can wait safely for as
      long as it needs (commit it with ``park_until=inf``, then plan again from its end).

    A path ends where the robot stands still: never in the middle of a straight run.
    ``start`` and ``goal`` are vertex ids, names or ``(x, y)`` positions.
    """
    start = _resolve_vertex(roadmap, start)
    goal = _resolve_vertex(roadmap, goal)
    t_start = float(t_start)
    mm = motion_model(roadmap, exclusion, model)
    if mm.times_to(goal)[start] == INF:
        return None  # the goal is not reachable at all: no search needed
    h = mm.node_times_to(goal)
    successors = mm.successors
    node_vertex = mm.node_vertex
    num_stand = mm.num_stand
    START = len(successors)          # the start node: standing at `start`, any heading
    start_successors = mm.start_successors(start, start_heading)
    h_start = 0.0 if start == goal else min(
        (turn + d + h[m] for m, _, turn, d, *_ in start_successors), default=INF)
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

    best: Dict[Tuple[int, int], float] = {(START, i0): t_start}     # earliest arrival g
    parent: Dict[Tuple[int, int], Optional[Tuple[int, int, float, float]]] = {(START, i0): None}
    # Ties in f go to the later arrival (deeper state): fewer expansions on grids.
    open_list: List[Tuple[float, float, int, int]] = [(t_start + h_start, -t_start, START, i0)]
    pops = 0
    while open_list:
        _, neg_g, n, i = heappop(open_list)
        g = -neg_g
        if g > best[(n, i)]:
            continue  # a stale entry: this state was reached earlier since
        pops += 1
        if pops & 255 == 1 and time.perf_counter() > wall_deadline:
            return None
        if n == START:
            u, succ = start, start_successors
        else:
            u, succ = node_vertex[n], successors[n]
        interval_end = safe[u][i][1]
        passing = num_stand <= n < START   # at speed: departs at g, no waiting
        if not passing:
            if u == goal and (interval_end == INF or not park):
                return _reconstruct(parent, node_vertex, START, start, (n, i), g)
            if g >= t_horizon and interval_end == INF:
                return _reconstruct(parent, node_vertex, START, start, (n, i), g)

        for m, v, turn, d, hold_u, m0, m1, middle, w_from in succ:
            h_m = h[m]
            if h_m == INF:
                continue
            latest = interval_end - hold_u      # latest departure: u is held until t + hold_u
            ready = g + turn                    # earliest departure: arrived, then turned
            if ready > latest:
                continue
            v_intervals = safe.get(v)
            if v_intervals is None:
                v_intervals = safe_intervals(v)
            # The safe intervals of v still open when we could arrive first ...
            j = bisect_right(v_intervals, (ready + w_from, INF))
            if j and v_intervals[j - 1][1] > ready + w_from:
                j -= 1
            for j in range(j, len(v_intervals)):  # noqa: B020 (resumes at j)
                a_v, b_v = v_intervals[j]
                if a_v > latest + w_from or (passing and a_v > ready + w_from):
                    break                       # ... and not after we must have left u
                # Earliest departure that holds v from inside [a_v, b_v).
                if a_v <= ready + w_from:
                    t = ready
                else:
                    t = _earliest(a_v, w_from, ready)
                if middle >= 0:
                    # ... whose lane middle [t + m0, t + m1) fits in one safe interval.
                    m_intervals = safe.get(middle)
                    if m_intervals is None:
                        m_intervals = safe_intervals(middle)
                    k = bisect_right(m_intervals, (t + m0, INF))
                    # (fast path: the interval holding t + m0 also holds up to t + m1)
                    if not (k and m_intervals[k - 1][1] >= t + m1):
                        if passing:
                            break
                        t = _earliest_through(m_intervals, t, m0, m1)
                        if t + w_from >= b_v:
                            continue
                # The holds exactly as path_to_segments computes them: from the departure
                # (arrival - d), which float rounding may put a hair before t.
                arrival = t + d
                dep = arrival - d
                if dep != t:
                    if dep < t and not passing:
                        t = math.nextafter(t, INF)
                        arrival = t + d
                        dep = arrival - d
                    if not (a_v <= dep + w_from < b_v):
                        continue
                    if middle >= 0 and not _fits(safe[middle], dep + m0, dep + m1):
                        continue
                if dep + hold_u > interval_end:
                    continue
                key = (m, j)
                if arrival < best.get(key, INF):
                    best[key] = arrival
                    parent[key] = (n, i, g, t)
                    heappush(open_list, (arrival + h_m, -arrival, m, j))
    return None


def _first_open(intervals: List[_Interval], x: float) -> int:
    """Index of the first interval (sorted, disjoint) that ends after ``x``."""
    j = bisect_right(intervals, (x, INF))
    if j and intervals[j - 1][1] > x:
        j -= 1
    return j


def _fits(intervals: List[_Interval], a: float, b: float) -> bool:
    """Whether ``[a, b)`` lies inside one of ``intervals`` (sorted, disjoint)."""
    k = bisect_right(intervals, (a, INF))
    return bool(k) and intervals[k - 1][1] >= b


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
            t_k = _earliest(m_a, c, t)
        if t_k + dc <= m_b:
            return t_k
    return INF


def _reconstruct(parent: Dict[Tuple[int, int], Optional[Tuple[int, int, float, float]]],
                 node_vertex: List[int], start_node: int, start: int, state: Tuple[int, int],
                 arrival: float) -> TimedPath:
    """The steps leading to ``state``: arrivals, and a wait step before each delayed departure."""
    def vertex(n: int) -> int:
        return start if n == start_node else node_vertex[n]

    steps: TimedPath = []
    while True:
        steps.append((vertex(state[0]), arrival))
        back = parent[state]
        if back is None:
            break
        n, i, arrival_u, depart = back
        if depart > arrival_u:
            steps.append((vertex(n), depart))  # waited (or turned) at u
        state, arrival = (n, i), arrival_u
    steps.reverse()
    return steps
