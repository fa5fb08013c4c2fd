"""SIPP in integer time on unit grids: the classic-MAPF special case of ``sipp``.

On a unit grid (every lane 1 m, driven in 1 s) with the closed-form exclusion of
docs/core-model.md ("Reduction to classic MAPF"), the reservation table with integer
arrival times admits exactly the classic MAPF plans: two robots never occupy one vertex
at one integer time (**vertex conflict**) and never exchange two vertices in one step
(**swap conflict**); following is allowed. So the table shrinks to

- per vertex, the integer times at which some robot occupies it: sorted, disjoint
  half-open **occupied intervals** ``[a, b)`` (a robot parked for good: ``b = NEVER``);
  the **safe intervals** are their complement;
- the set of moves ``(edge, departure time)`` made, to refuse the reverse move (a swap).

``UnitGridTable`` keeps these; ``grid_sipp`` is ``sipp`` (same states, same successor
rule) with every time an ``int``, every safe interval a pair of ints in one flat list
per vertex, and every state one ``int`` key. It finds the earliest arrivals ``sipp``
finds on the equivalent ``ReservationTable`` (tests/test_planner.py compares them on
random instances; ``sipp``'s float arithmetic occasionally misses an exact-fit move,
the integers do not), at a fraction of the cost.

``unit_grid_model`` says whether a (roadmap, exclusion, speed) is such a grid.
"""
from __future__ import annotations

import time
import weakref
from bisect import bisect_right
from collections import OrderedDict
from heapq import heappop, heappush
from typing import TYPE_CHECKING, AbstractSet, Dict, List, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    from .roadmap import Exclusion, Roadmap

NEVER = 1 << 40            # "until the end of time", as an int
_TIME_BITS = 24            # arrival times below 2**24 s fit the heap key
_TIME_MASK = (1 << _TIME_BITS) - 1
_WEIGHT_SCALE = 64         # f is kept in 1/64 s, so a weight w adds (w - 1) * 64 * h

IntPath = List[Tuple[int, int]]
_Scratch = Tuple[List[int], List[int], bytearray, List[int]]   # best, parent, closed, reached


class UnitGridModel:
    """Per unit-grid roadmap: neighbour lists, reverse edges and distance tables as
    plain Python ints (what the search loop reads fastest).

    ``neighbours[u]`` is a tuple of ``(v, reverse_edge)``: the lane ``u -> v`` and the id
    of ``v -> u`` (the move a swap would collide with).
    """

    def __init__(self, roadmap: Roadmap) -> None:
        self.num_vertices = roadmap.num_vertices
        self.num_edges = roadmap.num_edges
        edge_to = roadmap.edge_to.tolist()
        reverse = roadmap.reverse_edges().tolist()
        self.reverse_edge: List[int] = reverse   # v -> u for each u -> v (-1: none)
        self.edge_ids: Dict[Tuple[int, int], int] = {}
        self.neighbours: List[Tuple[Tuple[int, int], ...]] = []
        for u in range(self.num_vertices):
            out = []
            for e in roadmap.out_edges[u].tolist():
                out.append((edge_to[e], reverse[e]))
                self.edge_ids[(u, edge_to[e])] = e
            self.neighbours.append(tuple(out))
        self._reverse_graph = roadmap._reverse_graph(1.0)[0]   # lanes reversed, 1 s each
        self._dist: Dict[int, List[int]] = {}
        # Distance tables are lists of Python ints (~36 bytes a vertex): keep ~8 M.
        self._max_tables = max(64, (1 << 23) // max(self.num_vertices, 1))

    def distances(self, goals: Sequence[int]) -> None:
        """Compute (in one batch) and cache the step distances to ``goals``."""
        todo = sorted({int(g) for g in goals} - set(self._dist))
        if not todo:
            return
        if len(self._dist) + len(todo) > self._max_tables:
            self._dist.clear()
        from scipy.sparse.csgraph import dijkstra
        for lo in range(0, min(len(todo), self._max_tables), 256):   # bounded memory
            chunk = todo[lo:lo + 256]
            rows = dijkstra(self._reverse_graph, indices=chunk, unweighted=True)
            rows = np.where(np.isinf(rows), NEVER, rows).astype(np.int64).tolist()
            self._dist.update(zip(chunk, rows))

    def distance_to(self, goal: int) -> List[int]:
        """Steps from every vertex to ``goal`` (``NEVER``: unreachable)."""
        d = self._dist.get(goal)
        if d is None:
            self.distances([goal])
            d = self._dist[goal]
        return d


# Per exclusion (which belongs to one roadmap); dropped with it. The model holds neither.
_models: "weakref.WeakKeyDictionary[object, Optional[UnitGridModel]]" = \
    weakref.WeakKeyDictionary()


def unit_grid_model(roadmap: Roadmap, exclusion: Exclusion, max_speed: float
                    ) -> Optional[UnitGridModel]:
    """The cached ``UnitGridModel`` when integer-time planning is exact for this roadmap,
    exclusion and speed, else ``None``.

    Exact when every lane is 1 m between integer poses, a robot drives every lane in
    exactly 1 s (``max_speed`` 1, no lower speed limit) and the exclusion relation is
    the grid's closed form with hold offsets below half a second (docs/core-model.md).
    """
    if (float(max_speed) != 1.0 or not roadmap.is_unit_grid()
            or exclusion.roadmap is not roadmap):
        return None
    try:
        return _models[exclusion]
    except KeyError:
        pass
    model = None
    if exclusion.clearance < 0.5 and bool(np.all(roadmap.edge_speed >= 1.0)):
        from .roadmap import _csr, _grid_exclusive_pairs
        indptr, indices = _csr(*_grid_exclusive_pairs(roadmap), roadmap.num_resources)
        if (np.array_equal(indptr, exclusion.indptr)
                and np.array_equal(indices, exclusion.indices)):
            model = UnitGridModel(roadmap)
    _models[exclusion] = model
    return model


class UnitGridTable:
    """Classic-MAPF reservations in integer time (see the module docstring).

    ``safe[v]`` is the flat list ``[a0, b0, a1, b1, ...]`` of ``v``'s safe intervals
    ``[a, b)`` from ``t_from`` on (what ``grid_sipp`` reads); ``occupied[v]`` the flat
    list of occupied intervals and ``holder[v]`` who occupies each. ``commit`` refuses a
    path with a vertex or swap conflict (the invariant of ``ReservationTable``).
    """

    def __init__(self, model: UnitGridModel, t_from: int = 0) -> None:
        self.model = model
        self.t_from = int(t_from)
        V = model.num_vertices
        self.occupied: List[List[int]] = [[] for _ in range(V)]
        self.holder: List[List[int]] = [[] for _ in range(V)]
        self.safe: List[List[int]] = [[self.t_from, NEVER] for _ in range(V)]
        self.moves: set[int] = set()     # departure * num_edges + edge
        self._paths: Dict[int, IntPath] = {}
        self.max_intervals = 1           # an upper bound of len(safe[v]) // 2
        self._scratch_arrays: Optional[_Scratch] = None

    def runs_and_moves(self, path: IntPath, park: bool = True
                       ) -> Tuple[List[Tuple[int, int, int]], List[int]]:
        """``[(v, a, b)]``: the path's stays (``v`` occupied over ``[a, b)``), and its
        moves as ``departure * num_edges + edge``."""
        E = self.model.num_edges
        edge_ids = self.model.edge_ids
        runs = []
        moves = []
        here, since = path[0]
        for v, t in path[1:]:
            if v == here:
                continue
            depart = t - 1
            if depart < since:
                raise ValueError(f"path moves {here} -> {v} arriving at {t}, before it "
                                 f"reached {here} ({since})")
            e = edge_ids.get((here, v))
            if e is None:
                raise ValueError(f"path moves {here} -> {v}, which is not a lane")
            runs.append((here, since, t))
            moves.append(depart * E + e)
            here, since = v, t
        runs.append((here, since, NEVER if park else since + 1))
        return runs, moves

    def conflict(self, path: IntPath) -> Optional[str]:
        """Why ``path`` (parked at its end) cannot be committed, or ``None``."""
        return self._conflict(*self.runs_and_moves(path))

    def _conflict(self, runs: Sequence[Tuple[int, int, int]], moves: Sequence[int]) -> Optional[str]:
        E = self.model.num_edges
        for v, a, b in runs:
            occ = self.occupied[v]
            p = bisect_right(occ, a)
            if p & 1 or (p < len(occ) and occ[p] < b):
                k = min(p >> 1, len(self.holder[v]) - 1)
                return (f"vertex conflict at {v} over [{a}, {b}) with robot "
                        f"{self.holder[v][k]}")
        reverse_edge = self.model.reverse_edge
        for m in moves:
            t, e = divmod(m, E)
            reverse = reverse_edge[e]
            if reverse >= 0 and t * E + reverse in self.moves:
                return f"swap conflict on edge {e} departing at {t}"
        return None

    def commit(self, robot: int, path: IntPath) -> None:
        """Occupy ``path`` for ``robot``, parked at its end for good. Raises
        ``ValueError`` naming the conflict when another robot is in the way."""
        if robot in self._paths:
            raise ValueError(f"robot {robot} already holds a path; release it first")
        runs, moves = self.runs_and_moves(path)
        why = self._conflict(runs, moves)
        if why is not None:
            raise ValueError(f"robot {robot}'s path conflicts: {why}")
        t_from = self.t_from
        for v, a, b in runs:
            occ = self.occupied[v]
            p = bisect_right(occ, a)
            occ[p:p] = (a, b)
            self.holder[v].insert(p >> 1, robot)
            if b > t_from:
                # Cut [a, b) out of the one safe interval that holds it (checked above).
                a = max(a, t_from)
                safe = self.safe[v]
                q = bisect_right(safe, a) - 1
                s, e = safe[q], safe[q + 1]
                pieces = ([s, a] if a > s else []) + ([b, e] if e > b else [])
                safe[q:q + 2] = pieces
                if len(safe) > 2 * self.max_intervals:
                    self.max_intervals = len(safe) // 2
        self.moves.update(moves)
        self._paths[robot] = path

    def release(self, robot: int) -> IntPath:
        """Drop ``robot``'s path (returns it)."""
        path = self._paths.pop(robot)
        runs, moves = self.runs_and_moves(path)
        for v, a, _ in runs:
            occ = self.occupied[v]
            k = bisect_right(occ, a) >> 1
            del occ[2 * k:2 * k + 2]
            del self.holder[v][k]
            self._resafe(v)
        self.moves.difference_update(moves)
        return path

    def _resafe(self, v: int) -> None:
        """``safe[v]`` = the complement of ``occupied[v]`` from ``t_from`` on."""
        cur = self.t_from
        out = []
        occ = self.occupied[v]
        for k in range(0, len(occ), 2):
            a, b = occ[k], occ[k + 1]
            if a > cur:
                out.append(cur)
                out.append(a)
            if b > cur:
                cur = b
        if cur < NEVER:
            out.append(cur)
            out.append(NEVER)
        self.safe[v] = out
        if len(out) > 2 * self.max_intervals:
            self.max_intervals = len(out) // 2

    def paths(self) -> Dict[int, IntPath]:
        return dict(self._paths)

    def _scratch(self, size: int) -> _Scratch:
        """``grid_sipp``'s per-state arrays (best, parent, closed) of at least ``size``
        states, clean, and the list where it records the states it touches."""
        scratch = self._scratch_arrays
        if scratch is None or len(scratch[0]) < size:
            scratch = self._scratch_arrays = ([NEVER] * size, [-1] * size,
                                              bytearray(size), [])
        else:
            best, _, closed, reached = scratch
            for key in reached:
                best[key] = NEVER
                closed[key] = 0
            reached.clear()
        return scratch


def grid_sipp(model: UnitGridModel, table: UnitGridTable, start: int, goal: int,
              t_start: int, *, deadline_s: Optional[float] = None,
              weight: float = 1.0) -> Optional[IntPath]:
    """Earliest-arrival path from ``start`` (at integer time ``t_start``) to ``goal``,
    parked there for good, against everything committed to ``table``.

    Same contract as ``sipp(..., park=True)``: ``[(vertex, time)]`` with an explicit
    wait step before each delayed departure, or ``None`` when there is no such path (or
    after ``deadline_s`` seconds of computation).

    ``weight`` > 1 inflates the heuristic (weighted A*, no re-expansions): the arrival
    is then at most ``weight`` times the earliest one, found with far fewer expansions
    where the robot must wait or detour. It is rounded to a multiple of 1/64.
    """
    w_extra = round((float(weight) - 1.0) * _WEIGHT_SCALE)
    if w_extra < 0:
        raise ValueError(f"weight must be >= 1, got {weight!r}")
    h = model.distance_to(goal)
    if h[start] >= NEVER:
        return None
    wall_deadline = None if deadline_s is None else time.perf_counter() + float(deadline_s)
    safe = table.safe
    neighbours = model.neighbours
    moves = table.moves
    E = model.num_edges
    V = model.num_vertices
    # State key = vertex * J + interval index; a heap entry packs (f, h, later arrival
    # first, key) into one int, compared without building tuples.
    J = table.max_intervals + 1
    key_bits = (V * J).bit_length()
    key_mask = (1 << key_bits) - 1
    # The robot can park at the goal only in its last safe interval, so it arrives no
    # earlier than that opens: f = max(g + h, goal_open) is admissible and consistent,
    # and far fewer states fall below it when the goal is crossed late. Ties in f go to
    # the state closest to the goal, then to the later arrival: on the plateau below
    # goal_open the search closes in on the goal; elsewhere this is sipp's order.
    goal_intervals = safe[goal]
    if not goal_intervals or goal_intervals[-1] != NEVER:
        return None  # someone parks on the goal for good
    goal_open = goal_intervals[-2]
    h_bits = V.bit_length()            # every finite distance is below V
    g_shift = key_bits
    h_shift = key_bits + _TIME_BITS
    f_shift = h_shift + h_bits

    intervals = safe[start]
    p = bisect_right(intervals, t_start)
    if not p & 1:
        return None  # someone occupies the start now
    key0 = start * J + (p >> 1)
    # Per state key: earliest arrival g (NEVER: not reached), the state it came from, and
    # whether it was expanded. Flat lists beat dicts here; they are kept by the table
    # and reset where the previous search wrote (allocating them would cost more).
    best, parent, closed, reached = table._scratch(V * J)
    best[key0] = t_start
    parent[key0] = -1
    reached.append(key0)
    f0 = _WEIGHT_SCALE * max(t_start + h[start], goal_open) + w_extra * h[start]
    open_list = [(f0 << f_shift) | (h[start] << h_shift)
                 | ((_TIME_MASK - t_start) << g_shift) | key0]
    pops = 0
    while open_list:
        key = heappop(open_list) & key_mask
        if closed[key]:
            continue  # reached earlier already
        closed[key] = 1
        pops += 1
        if pops & 255 == 0 and wall_deadline is not None \
                and time.perf_counter() > wall_deadline:
            return None
        u, i = divmod(key, J)
        g = best[key]
        end = safe[u][2 * i + 1]          # u is safe until end - 1
        if u == goal and end == NEVER:
            return _reconstruct(parent, best, key, J)
        if g >= _TIME_MASK:
            return None  # beyond the packed time range: give up rather than misorder
        g1 = g + 1
        for v, reverse in neighbours[u]:
            # _arrivals(safe[v], g1, end, reverse, E, moves), inlined: the call costs 12 %
            # of plan_prioritized's CPU on warehouse-10-20-10-2-1 with 300 robots.
            sv = safe[v]
            k = bisect_right(sv, g1) | 1   # first interval of v ending after g + 1
            n = len(sv)
            while k < n:
                a = sv[k - 1]
                if a > end:
                    break  # we must have left u (at end - 1) before this interval opens
                if a >= g1:
                    s = a                  # arrive when v's interval opens (maybe waiting)
                    if reverse >= 0 and (s - 1) * E + reverse in moves:
                        k += 2             # a swap with whoever left v at s - 1
                        continue
                else:
                    s = g1
                nkey = v * J + (k >> 1)
                # (A closed state is not reopened: with weight 1 it was reached no later,
                # f never decreasing; with weight > 1 that keeps the bound.)
                b = best[nkey]
                if s < b and not closed[nkey]:
                    h_v = h[v]
                    if h_v < NEVER:
                        if b == NEVER:
                            reached.append(nkey)
                        best[nkey] = s
                        parent[nkey] = key
                        f = s + h_v
                        if f < goal_open:
                            f = goal_open
                        f = _WEIGHT_SCALE * f + w_extra * h_v
                        heappush(open_list, (f << f_shift) | (h_v << h_shift)
                                 | ((_TIME_MASK - s) << g_shift) | nkey)
                k += 2
    return None


def _arrivals(sv: List[int], g1: int, end: int, reverse: int, E: int,
              moves: AbstractSet[int]) -> List[Tuple[int, int]]:
    """The moves into a cell with safe intervals ``sv`` (flat ``[a0, b0, a1, b1, ...]``)
    from one the robot reached by ``g1 - 1`` and may stay in until ``end - 1``: per
    interval it can enter, ``(earliest arrival, interval index)``, waiting before the
    move when the interval opens later. ``reverse`` is the lane the other way: a move
    that would swap places with a robot coming along it (in ``moves``) is left out."""
    out = []
    k = bisect_right(sv, g1) | 1           # first interval ending after g1
    n = len(sv)
    while k < n:
        a = sv[k - 1]
        if a > end:
            break  # the robot must have left (at end - 1) before this interval opens
        if a >= g1:
            # Arrive when the interval opens. Whoever left at a - 1 must not be coming
            # the other way (a swap); arriving later than a, the cell was free at the
            # step before: no swap possible.
            if reverse < 0 or (a - 1) * E + reverse not in moves:
                out.append((a, k >> 1))
        else:
            out.append((g1, k >> 1))
        k += 2
    return out


def _reconstruct(parent: List[int], best: List[int], key: int, J: int) -> IntPath:
    """The steps to state ``key``: arrivals, and a wait step before each delayed departure."""
    steps: IntPath = []
    while True:
        t = best[key]
        steps.append((key // J, t))
        back = parent[key]
        if back < 0:
            break
        if best[back] < t - 1:
            steps.append((back // J, t - 1))  # waited at the previous vertex
        key = back
    steps.reverse()
    return steps


# ---------------------------------------------------------------------------------------
# With headings: the unit-step action model of the League of Robot Runners
# ---------------------------------------------------------------------------------------

#: Headings: 0 = +x, 1 = +y, 2 = -x, 3 = -y (x = column, y = row; +y is the next row).
#: A step is one action: forward one cell, a 90-degree turn (clockwise: heading + 1,
#: counter-clockwise: heading + 3, mod 4) or a wait.
HEADINGS = ((1, 0), (0, 1), (-1, 0), (0, -1))

HeadingPath = List[Tuple[int, int]]   # (vertex, heading) at t_start, t_start + 1, ...


class HeadingGridModel:
    """A unit grid with headings: the robot's state is ``s = 4 * vertex + heading``.

    ``ahead[s]`` is ``(v, reverse_edge)`` for the cell straight ahead (``None``: a wall).
    ``distance_to(goal)[s]`` is the number of actions (moves and turns) from state ``s``
    to the goal cell in any heading, ``far`` or more when unreachable: the heuristic of
    ``grid_sipp_heading``, exact without other robots. On small grids a table is a list
    (fastest to read, ``far`` = ``NEVER``); above 65536 states a uint16 array (a quarter
    of the memory; ``far`` = 65535), so that a table per robot's goal stays cached for
    fleets of a thousand robots on large maps.
    """

    def __init__(self, model: UnitGridModel, roadmap: Roadmap) -> None:
        self.base = model
        V = self.num_vertices = model.num_vertices
        pos = np.asarray(roadmap.pos, dtype=np.int64).tolist()
        index = {(dx, dy): o for o, (dx, dy) in enumerate(HEADINGS)}
        self.ahead: List[Optional[Tuple[int, int]]] = [None] * (4 * V)
        for u in range(V):
            for v, reverse in model.neighbours[u]:
                o = index.get((pos[v][0] - pos[u][0], pos[v][1] - pos[u][1]))
                if o is None:
                    raise ValueError(f"lane {u} -> {v} is not one grid step")
                self.ahead[4 * u + o] = (v, reverse)
        # The state graph reversed (an edge s' -> s for each action s -> s'), for the
        # breadth-first distance tables.
        rows, cols = [], []
        for s in range(4 * V):
            u, o = divmod(s, 4)
            for t in (4 * u + (o + 1) % 4, 4 * u + (o + 3) % 4):
                rows.append(t)
                cols.append(s)
            a = self.ahead[s]
            if a is not None:
                rows.append(4 * a[0] + o)
                cols.append(s)
        from scipy.sparse import csr_matrix
        self._reverse = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(4 * V, 4 * V))
        self._dist: "OrderedDict[int, Sequence[int]]" = OrderedDict()
        self.compact = 4 * V > (1 << 16)
        self.far = 65535 if self.compact else NEVER
        # Keep ~128 MB of tables: a list entry costs ~8 bytes, a compact one 2.
        self._max_tables = max(16, (1 << (26 if self.compact else 24)) // (4 * max(V, 1)))

    def distance_array(self, goal: int) -> np.ndarray:
        """``distance_to(goal)`` as a fresh int64 array (not cached)."""
        from scipy.sparse.csgraph import dijkstra
        row = dijkstra(self._reverse, indices=[4 * goal + o for o in range(4)],
                       unweighted=True, min_only=True)
        return np.where(np.isinf(row), NEVER, row).astype(np.int64)

    def distance_to(self, goal: int) -> Sequence[int]:
        """Actions from every state to the cell ``goal`` (any heading; ``far`` or more:
        unreachable); cached (LRU)."""
        cached = self._dist.get(goal)
        if cached is not None:
            self._dist.move_to_end(goal)
            return cached
        full = self.distance_array(goal)
        d: Sequence[int]
        if self.compact:
            if int(full[full < NEVER].max(initial=0)) >= self.far:
                raise ValueError(f"distances on this map exceed {self.far - 1} actions")
            d = np.minimum(full, self.far).astype(np.uint16)
        else:
            d = full.tolist()
        self._dist[goal] = d
        if len(self._dist) > self._max_tables:
            self._dist.popitem(last=False)
        return d


def grid_sipp_heading(model: HeadingGridModel, table: UnitGridTable, start: int,
                      heading: int, errands: Sequence[int], t_start: int, *,
                      horizon: Optional[int] = None, max_expansions: Optional[int] = None,
                      weight: float = 1.0, forbidden: Optional[AbstractSet[int]] = None,
                      partial: bool = False) -> Optional[HeadingPath]:
    """SIPP over (cell, heading, safe interval) in unit steps: visit the cells
    ``errands`` in order from ``start`` facing ``heading`` at integer time ``t_start``,
    then stop where the robot may stay for good; against everything in ``table``.

    The unit-step case of a heading-aware SIPP: a state is (cell, heading, safe interval
    of the cell, how many errands are done); its ``g`` is the earliest arrival. A turn
    takes one step inside the cell's safe interval, a move forward enters the next cell
    in one of its safe intervals (waiting before it if needed) unless that would swap
    places with a robot coming the other way (the table's moves). Arriving at the next
    errand's cell visits it (one errand per arrival; an errand in the cell the robot is
    in, e.g. the same cell twice in a row, is visited by staying one more step).

    Returns the robot's ``(cell, heading)`` at ``t_start``, ``t_start + 1``, ... up to
    the end, where it can stay for good (commit it parked there), or ``None`` when there
    is no such path within ``max_expansions`` expanded states. With ``horizon`` the
    search also stops at the first state reached at or after ``t_start + horizon`` in a
    safe interval that never ends (rolling horizon: reserve only about that much and
    plan again before the end). Without errands it finds the nearest place to stay.

    ``partial=True``: where the errands cannot be reached (other robots parked on every
    way, or the search ran out of expansions), return instead the path to the place
    to stay found closest to them (most errands visited, then fewest actions left;
    at worst the start itself, if the robot may stay there), not ``None``.

    ``weight`` > 1 inflates the heuristic (weighted A*; 1/64 resolution). The robot
    never enters a cell of ``forbidden``.
    """
    w64 = round(float(weight) * _WEIGHT_SCALE)
    if w64 < _WEIGHT_SCALE:
        raise ValueError(f"weight must be >= 1, got {weight!r}")
    L = len(errands)
    tables = [model.distance_to(e) for e in errands]
    far = model.far
    base = model.base
    tails = [0] * (L + 1)      # actions between later errands, from the best heading
    for k in range(L - 2, -1, -1):
        e = 4 * errands[k]
        d = int(min(tables[k + 1][e:e + 4]))
        if d >= far:
            return None
        tails[k] = tails[k + 1] + d
    s0 = 4 * start + heading
    if L and tables[0][s0] >= far:
        return None
    safe = table.safe
    moves = table.moves
    ahead = model.ahead
    E = base.num_edges
    S = 4 * model.num_vertices
    J = table.max_intervals + 1
    t_horizon = NEVER if horizon is None else t_start + int(horizon)
    limit = NEVER if max_expansions is None else int(max_expansions)
    key_bits = ((L + 1) * S * J).bit_length()
    key_mask = (1 << key_bits) - 1
    h_max = (max(tails[0], 0) + 4 * S + 1) if L else 1
    h_bits = h_max.bit_length()
    g_shift = key_bits
    h_shift = key_bits + _TIME_BITS
    f_shift = h_shift + h_bits

    intervals = safe[start]
    p = bisect_right(intervals, t_start)
    if not p & 1:
        return None  # someone occupies the start now
    key0 = s0 * J + (p >> 1)
    best: Dict[int, int] = {key0: t_start}
    parent: Dict[int, int] = {key0: -1}
    closed = set()
    h0 = int(tables[0][s0]) + tails[0] if L else 0
    open_list = [((_WEIGHT_SCALE * t_start + w64 * h0) << f_shift) | (h0 << h_shift)
                 | ((_TIME_MASK - t_start) << g_shift) | key0]
    SJ = S * J
    expansions = 0
    fallback = None        # (errands left, actions left, arrival, key) of a place to stay

    def push(nkey: int, s: int, k: int, t: int, back: int) -> None:
        if nkey in closed or best.get(nkey, NEVER) <= t:
            return
        if k < L:
            h = tables[k][s]
            if h >= far:
                return
            h = int(h) + tails[k]
        else:
            h = 0
        best[nkey] = t
        parent[nkey] = back
        heappush(open_list, ((_WEIGHT_SCALE * t + w64 * h) << f_shift) | (h << h_shift)
                 | ((_TIME_MASK - t) << g_shift) | nkey)

    while open_list:
        key = heappop(open_list) & key_mask
        if key in closed:
            continue
        closed.add(key)
        expansions += 1
        if expansions > limit:
            break
        k, rest = divmod(key, SJ)
        s, i = divmod(rest, J)
        u = s >> 2
        g = best[key]
        end = safe[u][2 * i + 1]          # u is safe until end - 1
        if end == NEVER:
            if k == L or g >= t_horizon:
                return _reconstruct_heading(parent, best, key, J, SJ)
            if partial:
                here = (L - k, int(tables[k][s]), g, key)
                if fallback is None or here < fallback:
                    fallback = here
        if g >= _TIME_MASK:
            break  # beyond the packed time range: give up rather than misorder
        g1 = g + 1
        if g1 < end:
            if k < L and u == errands[k]:
                push(key + SJ, s, k + 1, g1, key)      # stay a step: visits the errand
            o = s & 3
            for o2 in ((o + 1) & 3, (o + 3) & 3):     # turn in place
                s2 = (s & ~3) | o2
                push(k * SJ + s2 * J + i, s2, k, g1, key)
        a_v = ahead[s]
        if a_v is None:
            continue
        v, reverse = a_v
        if forbidden is not None and v in forbidden:
            continue
        k2 = k + 1 if k < L and v == errands[k] else k
        s2 = 4 * v + (s & 3)
        for t, q in _arrivals(safe[v], g1, end, reverse, E, moves):
            push(k2 * SJ + s2 * J + q, s2, k2, t, key)
    if fallback is not None:
        return _reconstruct_heading(parent, best, fallback[3], J, SJ)
    return None


def _reconstruct_heading(parent: Dict[int, int], best: Dict[int, int], key: int, J: int,
                         SJ: int) -> HeadingPath:
    """Per-step (cell, heading) from the start state to ``key``: waits are repeated
    entries, each action one step."""
    chain = []
    while key >= 0:
        s = (key % SJ) // J
        chain.append((s >> 2, s & 3, best[key]))
        key = parent[key]
    chain.reverse()
    steps: HeadingPath = [(chain[0][0], chain[0][1])]
    for (u, o, _), (v, o2, t) in zip(chain, chain[1:]):
        while len(steps) < t - chain[0][2]:
            steps.append((u, o))           # wait before the action
        steps.append((v, o2))
    return steps
