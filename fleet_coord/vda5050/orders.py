"""Orders from reservations: what a VDA 5050 vehicle may drive, released in space and time.

Pure: no MQTT, no ROS, time is a parameter. The master control (``master.py``) feeds it
the robot's planned path, its holds in the reservation table and the vehicle's state,
and sends what it returns.

The mapping (docs/vda5050.md)
-----------------------------
A planned timed path ``[(vertex, t), ...]`` becomes a **route**: its vertices (waits
dropped) as order nodes, and on every lane ``u -> v`` the *walls* where the robot's
reference point passes from one resource to the next (docs/core-model.md): ``w =
min(L, length / 2)`` after ``u`` (leaving ``u``'s star) and ``w`` before ``v`` (entering
``v``'s star), one node when they coincide. Between two walls the robot is inside exactly
one resource: the route is a chain of **pieces** ``(resource, s_in, s_out)`` along the
arc length ``s``, each ending at a node. A vehicle standing *on* a wall is inside both
neighbouring resources, and the table holds them back to back (the first until the time
the second starts), so a vehicle that waits on a wall is inside its holds whatever the
time: walls are the only places a vehicle is ever told to stop.

The release rule
----------------
The base only ever grows piece by piece from the front (the base cannot be taken back,
spec 6.1.2). The next piece ``k`` (resource ``r``, hold ``[t_in, t_out)`` in the table)
is released when

1. **held**: the robot holds ``r`` in the table, chained to the previous piece's hold (it
   starts no later than that one ends), so the vehicle is never given a piece it does not
   hold;
2. **not early**: the vehicle cannot reach the piece's entry before ``t_in``, even at the
   top speed it is allowed (each order edge's ``maximumSpeed``): from its last reported
   position at the state's time ``t_state`` it needs at least ``min_time(s_pos, s_base)``
   to the end of its base, cannot leave that before ``now`` (a release sent now is not
   known earlier), and then ``min_time(s_base, s_in)``;
3. **not late**: at the speed it is expected to drive (``expected_speed``: what it was
   seen driving, never more than allowed) it leaves the piece before ``t_out``.

A vehicle early at a wall waits there; one that runs late stops at a wall instead of
driving into a piece whose hold would end around it, and the robot's agent re-commits
(new holds, later) when it sees the vehicle fall behind its plan (:func:`lateness`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from fleet_coord.vda5050.protocol import ID_RE

__all__ = ["RouteNode", "RouteEdge", "Piece", "Route", "node_ids", "route_vertices",
           "build_route", "chain_holds", "next_release", "OrderBook", "lateness"]

EPS_T = 1e-6     # s: rounding in the table's arithmetic, not a real difference
EPS_S = 1e-6     # m


def node_ids(roadmap: Any) -> list[str]:
    """One VDA node id per roadmap vertex: its name where that is a valid id (spec 7.1.2:
    ``A-Z a-z 0-9 _ - . :``), a grid cell ``"x,y"`` as ``"x_y"``; ``v<index>`` for the
    rest, and for all vertices should two of them collide."""
    cached = getattr(roadmap, "_vda5050_node_ids", None)
    if cached is not None:
        return list(cached)
    ids = [name.replace(",", "_") for name in roadmap.names]
    ok = [bool(ID_RE.match(i)) for i in ids]
    ids = [i if good else f"v{k}" for k, (i, good) in enumerate(zip(ids, ok))]
    if len(set(ids)) != len(ids):
        ids = [f"v{k}" for k in range(len(ids))]
    roadmap._vda5050_node_ids = tuple(ids)
    return ids


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


def build_route(roadmap: Any, clearance: float, vertices: Sequence[int],
                max_speed: float) -> Route:
    """The route through `vertices` (consecutive ones joined by a lane): nodes, order
    edges (``maximumSpeed`` = the lane's limit, at most `max_speed`) and pieces.

    Raises ValueError for an empty list or two consecutive vertices with no lane."""
    if not vertices:
        raise ValueError("build_route: the route has no vertex")
    if not max_speed > 0:
        raise ValueError(f"build_route: max_speed must be > 0 m/s, got {max_speed!r}")
    ids = node_ids(roadmap)
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


@dataclass
class VehicleView:
    """What the master knows of the vehicle from its last used state."""
    t_state: float = -math.inf
    order_id: str = ""
    order_update_id: int = 0
    last_node_id: str = ""
    last_seq: int = 0
    x: float | None = None
    y: float | None = None
    driving: bool = False
    idle: bool = True        # no nodeStates / edgeStates (spec 6.6.8)
    speed: float = 0.0       # |velocity| reported


@dataclass
class OrderBook:
    """The master's side of one vehicle's orders: the route it was given, how much of it
    is released, the update in flight. ``plan``/``on_state``/``step`` in, order bodies
    out (headers are added by the sender)."""
    roadmap: Any
    clearance: float
    max_speed: float              # the vehicle's limit (m/s)
    map_id: str = "map"
    resend_after: float = 1.0     # s without the vehicle showing an update: send again
    latency: float = 0.1          # s budgeted for a release to reach the vehicle
    order_prefix: str = "fc"
    route: Route | None = None
    seq0: int = 0                 # sequenceId of route node 0
    base_pieces: int = 0          # pieces of the route released
    order_id: str = ""
    update_id: int = -1           # last update sent (-1: none for this order)
    acked_id: int = -1            # last update the vehicle showed in its state
    sent_at: float = -math.inf
    last_body: dict[str, Any] | None = None
    stitch: int = 0               # route index of the first node of the update in flight
    pending_route: tuple[Route, float] | None = None
    vehicle: VehicleView = field(default_factory=VehicleView)
    expected_speed: float = 0.0   # 0 = max_speed
    _orders: int = 0
    _route_changed: bool = False  # the route changed since the last update sent
    _plan_vertices: list[int] = field(default_factory=list)

    # -- inputs --------------------------------------------------------------------------

    def plan(self, path: Sequence[tuple[int, float]], now: float) -> None:
        """A new planned path for the robot (from where the vehicle is or will stop). The
        same vertices as the current route's remainder only retime it: the holds carry
        the times."""
        vertices = route_vertices(path)
        if vertices == self._plan_vertices:
            return
        self._plan_vertices = vertices
        route = build_route(self.roadmap, self.clearance, vertices, self.max_speed)
        self.pending_route = (route, now)

    def reset(self) -> None:
        """Forget the order: the vehicle restarted (it knows no order) or was replaced.
        The next plan starts a new order."""
        self.route, self.pending_route, self._plan_vertices = None, None, []
        self.update_id = self.acked_id = -1
        self.base_pieces, self.stitch, self.last_body = 0, 0, None
        self.vehicle = VehicleView()

    def on_state(self, msg: dict[str, Any], t_state: float) -> None:
        v = self.vehicle
        v.t_state = t_state
        v.order_id, v.order_update_id = msg["orderId"], int(msg["orderUpdateId"])
        v.last_node_id, v.last_seq = msg["lastNodeId"], int(msg["lastNodeSequenceId"])
        pos = msg.get("mobileRobotPosition")
        v.x, v.y = (float(pos["x"]), float(pos["y"])) if pos else (None, None)
        v.driving = bool(msg["driving"])
        v.idle = not msg["nodeStates"] and not msg["edgeStates"]
        vel = msg.get("velocity") or {}
        v.speed = math.hypot(float(vel.get("vx", 0.0)), float(vel.get("vy", 0.0)))
        if v.order_id == self.order_id and v.order_update_id > self.acked_id:
            self.acked_id = v.order_update_id
        if v.driving and v.speed > 0.05:
            # what it really drives: a vehicle slower than its limit (worn, loaded) is
            # expected at its own pace
            seen = min(v.speed, self.max_speed)
            self.expected_speed = seen if self.expected_speed <= 0 else \
                0.7 * self.expected_speed + 0.3 * seen

    # -- where the vehicle is ------------------------------------------------------------

    def s_vehicle(self) -> float:
        """The vehicle's arc length on the current route (0 before it runs it)."""
        if self.route is None:
            return 0.0
        v = self.vehicle
        if v.order_id != self.order_id or v.last_node_id == "":
            return 0.0
        idx = (v.last_seq - self.seq0) // 2
        if idx < 0:
            return 0.0
        return self.route.locate(idx, v.x, v.y)

    def holds_lateness(self, holds: Sequence[tuple[int, float, float]], now: float) -> float:
        """How late the vehicle is against its holds (see :func:`lateness`)."""
        if self.route is None or self.vehicle.t_state == -math.inf:
            return 0.0
        s = self.s_vehicle()
        first = self.route.piece_at(s)
        return lateness(self.route, chain_holds(self.route, first, holds, now), first, s,
                        self.vehicle.t_state)

    # -- the order -----------------------------------------------------------------------

    def _speed(self) -> float:
        return self.expected_speed if self.expected_speed > 0 else self.max_speed

    def step(self, holds: Sequence[tuple[int, float, float]], now: float) -> dict[str, Any] | None:
        """The order (or order update) body to send now, or None."""
        if self.update_id >= 0 and self.acked_id < self.update_id:
            if now - self.sent_at >= self.resend_after and self.last_body is not None:
                self.sent_at = now
                return self.last_body    # the same update again (lost on the way)
            return None                   # one update in flight at a time
        if self.pending_route is not None and self._adopt(self.pending_route[0]):
            self.pending_route = None
        if self.route is None:
            return None
        new_base = next_release(self.route, self.base_pieces, holds, now,
                                self.vehicle.t_state if self.update_id >= 0 else now,
                                self.s_vehicle(), self._speed(), self.latency)
        if new_base == self.base_pieces and self.update_id >= 0 and not self._route_changed:
            return None
        return self._send(new_base, now)

    def _adopt(self, route: Route) -> bool:
        """Take `route` as the continuation of the current order if it starts from the
        base's end; as a new order when the vehicle is idle at its start. False: not now
        (kept pending)."""
        if self.route is None or self.update_id < 0:
            return self._new_order(route)
        end = self.route.pieces[self.base_pieces - 1].end if self.base_pieces else 0
        # the new route must run through the base's end along the same nodes: its first
        # vertex is at or before it on the current route
        cur_ids = [n.node_id for n in self.route.nodes]
        new_ids = [n.node_id for n in route.nodes]
        for j in range(end, -1, -1):
            if cur_ids[j] == new_ids[0]:
                span = end - j
                if cur_ids[j:end + 1] == new_ids[:span + 1]:
                    self._continue(route, span)
                    return True
                break
        if self.vehicle.idle and self.acked_id == self.update_id:
            return self._new_order(route)
        return False

    def _continue(self, route: Route, span: int) -> None:
        """Replace everything after the base's end by `route` after its node `span`."""
        assert self.route is not None
        end = self.route.pieces[self.base_pieces - 1].end if self.base_pieces else 0
        keep_nodes = self.route.nodes[:end + 1]
        keep_edges = self.route.edges[:end]
        shift = keep_nodes[-1].s - route.nodes[span].s
        nodes = keep_nodes + [RouteNode(n.node_id, n.x, n.y, n.s + shift, n.vertex)
                              for n in route.nodes[span + 1:]]
        edges = keep_edges + route.edges[span:]
        pieces = list(self.route.pieces[:self.base_pieces])
        for p in route.pieces:
            if p.s_out + shift <= keep_nodes[-1].s + EPS_S:
                continue
            wall_in = p.wall_in and p.s_in + shift >= keep_nodes[-1].s - EPS_S
            if len(pieces) == self.base_pieces and pieces:
                # the first new piece: a wall only where the resource changes
                wall_in = pieces[-1].resource != p.resource
            pieces.append(Piece(p.resource, max(p.s_in + shift, keep_nodes[-1].s),
                                p.s_out + shift, p.end - span + end, wall_in))
        self.route = Route(nodes, edges, pieces)
        self.stitch = end
        self._route_changed = True

    def _new_order(self, route: Route) -> bool:
        v = self.vehicle
        if self.update_id >= 0 and not (v.idle and self.acked_id == self.update_id):
            return False
        if v.x is not None and v.y is not None:
            start = route.nodes[0]
            if math.hypot(start.x - v.x, start.y - v.y) > 0.5 * self.clearance:
                return False   # not where the vehicle stands (yet): wait for it
        self._orders += 1
        self.order_id = f"{self.order_prefix}-{self._orders}"
        self.update_id, self.acked_id = -1, -1
        self.route, self.seq0, self.base_pieces, self.stitch = route, 0, 0, 0
        self._route_changed = True
        return True

    def _send(self, new_base: int, now: float) -> dict[str, Any]:
        route = self.route
        assert route is not None
        self.update_id += 1
        released_end = route.pieces[new_base - 1].end if new_base else 0
        start = self.stitch
        nodes, edges = [], []
        for i in range(start, len(route.nodes)):
            n = route.nodes[i]
            node: dict[str, Any] = {
                "nodeId": n.node_id, "sequenceId": self.seq0 + 2 * i,
                "released": i <= released_end,
                "nodePosition": {"x": n.x, "y": n.y, "mapId": self.map_id},
                "actions": []}
            nodes.append(node)
            if i < len(route.edges):
                e = route.edges[i]
                edges.append({"edgeId": e.edge_id, "sequenceId": self.seq0 + 2 * i + 1,
                              "released": i + 1 <= released_end,
                              "maximumSpeed": e.max_speed, "length": e.length,
                              "actions": []})
        body = {"orderId": self.order_id, "orderUpdateId": self.update_id,
                "nodes": nodes, "edges": edges}
        self.base_pieces = new_base
        self.stitch = released_end
        self._route_changed = False
        self.sent_at = now
        self.last_body = body
        return body
