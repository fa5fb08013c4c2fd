"""What of a committed timed path a self-driving robot may drive now: walls, pieces, the
release rule. Pure (time is a parameter); used by the VDA 5050 master control
(``fleet_coord/vda5050/orders.py``: orders and their base) and by an agent whose robot
follows paths by itself (progress and lateness against its holds).

Route and pieces
----------------
A timed path ``[(vertex, t), ...]`` runs along a **route**: its vertices (waits dropped)
and on every lane ``u -> v`` the *walls* where the robot's reference point passes from one
resource to the next (docs/core-model.md): ``w = min(L, length / 2)`` after ``u`` (leaving
``u``'s star) and ``w`` before ``v`` (entering ``v``'s star), one wall when they coincide.
Vertices and walls are the route's nodes. Between two walls the robot is inside exactly
one resource: the route is a chain of **pieces** ``(resource, s_in, s_out)`` along the arc
length ``s``, one per hold ``path_to_segments`` gives the path, in the same order. A robot
standing *on* a wall is inside both neighbouring resources, and the table holds them back
to back (the first until the time the second starts), so a robot that waits on a wall is
inside its holds whatever the time: walls are the only places it is ever told to stop.

The release rule
----------------
What the robot may drive (the VDA 5050 *base*) only grows piece by piece from the front.
The next piece ``k`` (resource ``r``, hold ``[t_in, t_out)`` in the table) is released
when

1. **held**: the robot holds ``r``, chained to the previous piece's hold (it starts no
   later than that one ends), so the robot is never given a piece it does not hold;
2. **not early**: the robot cannot reach the piece's entry before ``t_in``, even at the
   top speed it is allowed (each route edge's ``max_speed``): from its last reported
   position at the report's time ``t_state`` it needs at least ``min_time(s_pos, s_base)``
   to the end of what is released, cannot leave that before ``now`` (a release sent now is
   not known earlier), and then ``min_time(s_base, s_in)``;
3. **not late**: at the speed it is expected to drive (``expected_speed``: what it was
   seen driving, never more than allowed) it leaves the piece before ``t_out``.

A robot early at a wall waits there; one that runs late stops at a wall instead of
driving into a piece whose hold would end around it, and its agent re-commits (later
holds) when it falls behind (:func:`lateness`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from fleet_coord.core.roadmap import Roadmap

__all__ = ["RouteNode", "RouteEdge", "Piece", "Route", "route_vertices", "build_route",
           "chain_holds", "next_release", "lateness", "project", "retimed", "EPS_T", "EPS_S"]

EPS_T = 1e-6     # s: rounding in the table's arithmetic, not a real difference
EPS_S = 1e-6     # m


@dataclass(frozen=True)
class RouteNode:
    node_id: str
    x: float
    y: float
    s: float                 # arc length from the route's start (m)
    vertex: int | None       # the roadmap vertex, None for a wall


@dataclass(frozen=True)
class RouteEdge:
    edge_id: str
    lane: int                # roadmap edge
    length: float
    max_speed: float         # what the order allows (m/s)


@dataclass(frozen=True)
class Piece:
    resource: int
    s_in: float
    s_out: float
    end: int                 # index of the node the piece ends at
    wall_in: bool = True     # entered across a wall (False: the route's first piece, or
                             # one continuing the previous piece's resource)


@dataclass
class Route:
    nodes: list[RouteNode]
    edges: list[RouteEdge]   # edges[i] joins nodes[i] and nodes[i + 1]
    pieces: list[Piece]

    def vertices(self) -> list[int]:
        return [n.vertex for n in self.nodes if n.vertex is not None]

    def min_time(self, s0: float, s1: float) -> float:
        """The least time (s) to drive from arc length s0 to s1 at the allowed speeds."""
        return self._time(s0, s1, None)

    def time_at(self, s0: float, s1: float, speed: float) -> float:
        """Time from s0 to s1 at `speed`, never faster than allowed."""
        return self._time(s0, s1, speed)

    def _time(self, s0: float, s1: float, speed: float | None) -> float:
        if s1 <= s0:
            return 0.0
        t = 0.0
        for i, e in enumerate(self.edges):
            a, b = self.nodes[i].s, self.nodes[i + 1].s
            lo, hi = max(a, s0), min(b, s1)
            if hi > lo:
                v = e.max_speed if speed is None else min(speed, e.max_speed)
                t += (hi - lo) / v
        return t

    def piece_at(self, s: float) -> int:
        """Index of the piece the reference point at arc length s is in (on a wall: the
        piece after it)."""
        for k, p in enumerate(self.pieces):
            if s < p.s_out - EPS_S:
                return k
        return len(self.pieces) - 1

    def locate(self, after_node: int, x: float | None, y: float | None) -> float:
        """Arc length of a vehicle that last traversed node `after_node` and stands at
        (x, y): its projection on the next edge. Without a position it is taken to be
        as far along as it can be (the next node), which errs on the side of early."""
        after_node = max(0, min(after_node, len(self.nodes) - 1))
        if after_node >= len(self.edges):
            return self.nodes[-1].s
        a, b = self.nodes[after_node], self.nodes[after_node + 1]
        if x is None or y is None:
            return b.s
        dx, dy = b.x - a.x, b.y - a.y
        length2 = dx * dx + dy * dy
        u = ((x - a.x) * dx + (y - a.y) * dy) / length2 if length2 > 0 else 1.0
        return a.s + max(0.0, min(1.0, u)) * (b.s - a.s)


def route_vertices(path: Sequence[tuple[int, float]]) -> list[int]:
    """The vertices of a timed path in order, waits dropped."""
    out: list[int] = []
    for v, _ in path:
        if not out or out[-1] != int(v):
            out.append(int(v))
    return out


def build_route(roadmap: Roadmap, clearance: float, vertices: Sequence[int],
                max_speed: float, ids: Sequence[str] | None = None) -> Route:
    """The route through `vertices` (consecutive ones joined by a lane): nodes (a vertex
    named by `ids`, default the roadmap's names; a wall ``<u>--<v>:1`` / ``:2``), edges
    (``<u>--<v>.0`` ...; speed = the lane's limit, at most `max_speed`) and pieces.

    Raises ValueError for an empty list or two consecutive vertices with no lane."""
    if not vertices:
        raise ValueError("build_route: the route has no vertex")
    if not max_speed > 0:
        raise ValueError(f"build_route: max_speed must be > 0 m/s, got {max_speed!r}")
    ids = list(roadmap.names) if ids is None else list(ids)
    V = roadmap.num_vertices
    pos = roadmap.pos

    def vertex_node(v: int, s: float) -> RouteNode:
        return RouteNode(ids[v], float(pos[v][0]), float(pos[v][1]), s, v)

    u = int(vertices[0])
    nodes = [vertex_node(u, 0.0)]
    edges: list[RouteEdge] = []
    pieces: list[Piece] = []
    s, piece_start, piece_res = 0.0, 0.0, u
    wall_in = False
    for k, v in enumerate(map(int, vertices[1:]), start=1):
        e = roadmap.edge_id(u, v)
        if e is None or e < 0:
            raise ValueError(f"build_route: step {k} goes from {roadmap.names[u]!r} to "
                             f"{roadmap.names[v]!r}, which is not a lane of the roadmap")
        length = float(roadmap.edge_length[e])
        speed = min(float(roadmap.edge_speed[e]), float(max_speed))
        lane = f"{ids[u]}--{ids[v]}"
        w = min(clearance, length / 2.0)
        walls = [w, length - w] if length - 2 * w > EPS_S else [length / 2.0]
        (x0, y0), (x1, y1) = (map(float, pos[u]), map(float, pos[v]))
        marks = walls + [length]
        prev = 0.0
        for j, d in enumerate(marks):
            end_s = s + d
            if j < len(walls):
                f = d / length
                nodes.append(RouteNode(f"{lane}:{j + 1}", x0 + f * (x1 - x0),
                                       y0 + f * (y1 - y0), end_s, None))
            else:
                nodes.append(vertex_node(v, end_s))
            edges.append(RouteEdge(f"{lane}.{j}", int(e), d - prev, speed))
            prev = d
            if j < len(walls):   # a wall closes the current piece
                pieces.append(Piece(piece_res, piece_start, end_s, len(nodes) - 1, wall_in))
                piece_start, wall_in = end_s, True
                piece_res = V + int(e) if (j == 0 and len(walls) == 2) else v
        s += length
        u = v
    pieces.append(Piece(piece_res, piece_start, s, len(nodes) - 1, wall_in))
    return Route(nodes, edges, pieces)


def chain_holds(route: Route, first: int, holds: Sequence[tuple[int, float, float]],
                now: float) -> list[tuple[float, float]]:
    """The holds ``(t_in, t_out)`` of pieces ``first, first + 1, ...`` as far as the
    table covers them without a gap. Piece ``first`` by the hold of its resource that
    covers `now` (else the last one that started before, else the first to come); each
    later piece by the earliest hold of its resource that starts no earlier than the
    previous one and no later than the previous one ends."""
    by_res: dict[int, list[tuple[float, float]]] = {}
    for r, t0, t1 in holds:
        by_res.setdefault(int(r), []).append((float(t0), float(t1)))
    for lst in by_res.values():
        lst.sort()
    out: list[tuple[float, float]] = []
    for k in range(first, len(route.pieces)):
        cands = by_res.get(route.pieces[k].resource, [])
        pick: tuple[float, float] | None
        if not out:
            started = [h for h in cands if h[0] <= now + EPS_T]
            covering = [h for h in started if h[1] > now]
            pick = covering[-1] if covering else started[-1] if started else \
                (cands[0] if cands else None)
        else:
            p0, p1 = out[-1]
            pick = next((h for h in cands if p0 - EPS_T <= h[0] <= p1 + EPS_T), None)
        if pick is None:
            break
        out.append(pick)
    return out


def next_release(route: Route, base_pieces: int, holds: Sequence[tuple[int, float, float]],
                 now: float, t_state: float, s_pos: float, expected_speed: float,
                 latency: float = 0.0) -> int:
    """How many pieces (from the route's start) the base may hold now: `base_pieces` or
    more, by the release rule of the module doc. `s_pos` is the vehicle's arc length at
    `t_state`; `latency` (s) is added to the time the vehicle needs to learn of a release
    when checking it is not late."""
    n = len(route.pieces)
    if base_pieces >= n:
        return n
    # the chain from the base's last piece: every piece up to it is released already
    first = max(0, base_pieces - 1)
    chain = chain_holds(route, first, holds, now)
    s_base = route.pieces[base_pieces - 1].s_out if base_pieces > 0 else route.nodes[0].s
    s_pos = min(s_pos, s_base)
    reach_base = max(now, t_state + route.min_time(s_pos, s_base))
    slow_reach_base = max(now + latency,
                          t_state + route.time_at(s_pos, s_base, expected_speed))
    k = base_pieces
    while k < n and k - first < len(chain):
        t_in, t_out = chain[k - first]
        p = route.pieces[k]
        if p.wall_in and s_pos <= p.s_in + EPS_S:
            earliest_in = reach_base + route.min_time(s_base, p.s_in)
            if earliest_in < t_in - EPS_T:
                break
        expected_out = slow_reach_base + route.time_at(s_base, p.s_out, expected_speed)
        if expected_out > t_out + EPS_T:
            break
        k += 1
    return k


def lateness(route: Route, holds_chain: Sequence[tuple[float, float]], first: int,
             s_pos: float, t_state: float) -> float:
    """How late (s, > 0) or early (< 0) the vehicle at arc length `s_pos` at `t_state` is
    against its holds: for the piece it is in (``first``, whose hold is
    ``holds_chain[0]``), the time left before the hold ends minus the time it needs at
    the allowed speed to reach the piece's exit. 0 when unknown."""
    if not holds_chain:
        return 0.0
    t_in, t_out = holds_chain[0]
    if math.isinf(t_out):
        return 0.0
    p = route.pieces[first]
    return t_state + route.min_time(s_pos, p.s_out) - t_out


def project(route: Route, x: float, y: float, s_from: float = 0.0) -> float:
    """Arc length of the route point nearest to (x, y) at or after `s_from` (progress
    never goes back: on a route that passes a place twice, the later pass counts only
    once the robot got there)."""
    best_s, best_d = s_from, math.inf
    for i in range(len(route.edges)):
        a, b = route.nodes[i], route.nodes[i + 1]
        if b.s < s_from - EPS_S:
            continue
        dx, dy = b.x - a.x, b.y - a.y
        length2 = dx * dx + dy * dy
        u = ((x - a.x) * dx + (y - a.y) * dy) / length2 if length2 > 0 else 0.0
        u = max(0.0, min(1.0, u))
        s = max(a.s + u * (b.s - a.s), s_from)
        px, py = a.x + (s - a.s) / (b.s - a.s) * dx, a.y + (s - a.s) / (b.s - a.s) * dy
        d = math.hypot(x - px, y - py)
        if d < best_d - 1e-9:
            best_s, best_d = s, d
    return best_s


def retimed(segments: Sequence[tuple[int, float, float]], first: int, now: float,
            shift: float) -> list[tuple[int, float, float]]:
    """The holds of a route's pieces ``first, first + 1, ...`` (`segments`: one per piece,
    as ``path_to_segments`` gives them) `shift` s later, the current piece ``first`` held
    from `now` (the robot is in it): what a robot that runs late re-commits."""
    if not 0 <= first < len(segments):
        raise ValueError(f"retimed: piece {first} is not one of the {len(segments)} pieces")
    if not shift >= 0:
        raise ValueError(f"retimed: shift must be >= 0 s, got {shift!r}")
    out = []
    for k, (r, t0, t1) in enumerate(segments[first:]):
        start = min(now, t0 + shift) if k == 0 else t0 + shift
        out.append((int(r), float(start), float(t1 + shift)))
    return out
