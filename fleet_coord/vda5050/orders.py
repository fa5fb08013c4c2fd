"""VDA 5050 orders from reservations: what a vehicle may drive, released in space and
time (docs/vda5050.md).

Pure: no MQTT, no ROS, time is a parameter. The master control (``master.py``) feeds the
:class:`OrderBook` the robot's planned path, its holds in the reservation table and the
vehicle's state, and sends what it returns. The route, its pieces and the release rule
are ``fleet_coord.core.release`` (module doc there): the route's nodes and edges are the
order's nodes and edges, the released pieces its base, the rest its horizon.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from fleet_coord.core import release
from fleet_coord.core.release import (EPS_S, Piece, Route, RouteNode, chain_holds, lateness,
                                      next_release, route_vertices)
from fleet_coord.vda5050.protocol import ID_RE

__all__ = ["node_ids", "build_route", "OrderBook", "VehicleView"]


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


def build_route(roadmap: Any, clearance: float, vertices: Sequence[int],
                max_speed: float) -> Route:
    """The route through `vertices` with VDA node ids (:func:`node_ids`)."""
    return release.build_route(roadmap, clearance, vertices, max_speed, node_ids(roadmap))


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
    start_deviation: float = 0.0  # allowedDeviationXY of a new order's first node (m)
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

    def foreign_order(self) -> str | None:
        """The orderId of an active order the vehicle runs that is not this book's (left
        from before this master control started): it must be cancelled before the
        vehicle takes orders again. None when there is none."""
        v = self.vehicle
        if v.idle or not v.order_id or v.order_id == self.order_id:
            return None
        return v.order_id

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
        # a vehicle done with its order (no horizon either) starts a new one: orders stay
        # one leg long instead of growing with every leg of a long run
        if self.vehicle.idle and self.acked_id == self.update_id and self._new_order(route):
            return True
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
        """Start a new order on `route` if the vehicle is idle at (or next to) its first
        node; False: not now (kept pending)."""
        v = self.vehicle
        if self.update_id >= 0 and not (v.idle and self.acked_id == self.update_id):
            return False
        if v.x is None or v.y is None:
            return False   # where the vehicle is is not known yet: its first state
        start = route.nodes[0]
        off = math.hypot(start.x - v.x, start.y - v.y)
        if off > 2.0 * self.clearance:
            return False   # not where the vehicle stands (yet): wait for it
        # a vehicle that stopped next to the vertex (a cancel, a restart where it stood)
        # takes the first node as reached: its allowed deviation covers it (spec 6.1.3.1)
        self.start_deviation = off + 0.05 if off > 0.02 else 0.0
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
            if i == 0 and self.start_deviation > 0:
                node["nodePosition"]["allowedDeviationXY"] = {
                    "a": self.start_deviation, "b": self.start_deviation, "theta": 0.0}
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
