"""An emulated VDA 5050 3.0 vehicle: order handling by the book, kinematics, state.

Pure: no MQTT (``emulator.py`` is the program around it); time is a parameter.

- **Orders** (spec 6.1.2, figure 8, and 6.1.4): an order is checked (schema, then the
  graph rules: one more node than edges, sequenceIds continuous from the first node,
  the first node released, nothing released after something unreleased, an edge
  released only with both its nodes, the map known, no action it cannot do) and then
  taken as a new order (different orderId: only when idle, orderUpdateId 0, the first
  node within reach) or as an update (same orderId: a higher orderUpdateId, not after a
  cancel, and its first node the current decision point, nodeId and sequenceId). A
  rejected order is not taken and the error named in 6.1.4 is reported until an order is
  accepted. A repeated update (same id, same content) is ignored.
- **Driving**: turns in place toward the next released node, then drives straight to it
  at the edge's ``maximumSpeed`` (at most its own top speed) times ``speed_factor``
  (< 1: a vehicle slower than it says it is); passes released nodes, stops exactly on
  the last one (the decision point). Acceleration is not modelled.
- **Instant actions**: ``startPause`` / ``stopPause``, ``cancelOrder`` (stops at once:
  it navigates freely), ``stateRequest``, ``factsheetRequest``, ``clearInstantActions``;
  anything else FAILED with ``INVALID_INSTANT_ACTION``.
- ``changed`` says an event happened that the state must be published for (6.6).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from fleet_coord.vda5050 import schema

__all__ = ["VehicleSpec", "Vehicle", "SUPPORTED_INSTANT_ACTIONS"]

SUPPORTED_INSTANT_ACTIONS = ("startPause", "stopPause", "cancelOrder", "stateRequest",
                             "factsheetRequest", "clearInstantActions")
#: Position tolerance (m) of "standing on a node" where the order allows no deviation.
NODE_TOLERANCE = 0.05
HEADING_TOLERANCE = 1e-3


@dataclass
class VehicleSpec:
    manufacturer: str
    serial_number: str
    max_speed: float = 1.0            # m/s, what the factsheet says
    max_angular_speed: float = 2.0    # rad/s
    max_acceleration: float = 2.0     # m/s^2 (reported; the kinematics do not model it)
    radius: float = 0.15              # m, the vehicle's outline is a disc
    speed_factor: float = 1.0         # drives this share of the speed it is allowed
    map_id: str = "map"
    series: str = "fleet_coord emulator"

    def __post_init__(self) -> None:
        for name in ("max_speed", "max_angular_speed", "max_acceleration", "radius",
                     "speed_factor"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"vehicle {name} must be a finite number > 0, got {value!r}")


def _error(kind: str, level: str, description: str, refs: dict[str, str]) -> dict[str, Any]:
    return {"errorType": kind, "errorLevel": level, "errorDescription": description,
            "errorReferences": [{"referenceKey": k, "referenceValue": str(v)}
                                for k, v in refs.items()]}


@dataclass
class Vehicle:
    spec: VehicleSpec
    x: float
    y: float
    theta: float = 0.0
    order_id: str = ""
    order_update_id: int = 0
    last_node_id: str = ""
    last_seq: int = 0
    nodes: list[dict[str, Any]] = field(default_factory=list)   # not yet traversed
    edges: list[dict[str, Any]] = field(default_factory=list)
    last_order: dict[str, Any] | None = None    # nodes + edges of the last accepted update
    cancelled: bool = False
    paused: bool = False
    driving: bool = False
    speed: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    instant_states: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = True                # publish a state now
    factsheet_requested: bool = False
    _t: float | None = None

    # -- orders ---------------------------------------------------------------------------

    def on_order(self, msg: dict[str, Any]) -> bool:
        """Take or reject an order message; True when taken."""
        problem = self._order_problem(msg)
        if problem is not None:
            if problem[0] == "":   # the same update again: ignored
                return False
            kind, level, text = problem
            refs = {"orderId": msg.get("orderId", ""),
                    "orderUpdateId": msg.get("orderUpdateId", "")}
            self._set_order_error(_error(kind, level, text, refs))
            return False
        new = msg["orderId"] != self.order_id
        nodes = sorted(msg["nodes"], key=lambda n: n["sequenceId"])
        edges = sorted(msg["edges"], key=lambda e: e["sequenceId"])
        if new:
            first = nodes[0]
            self.order_id, self.cancelled = msg["orderId"], False
            self.last_node_id, self.last_seq = first["nodeId"], first["sequenceId"]
            self.nodes, self.edges = nodes[1:], edges
        else:
            # the base is kept; the horizon is replaced by what follows the decision point
            self.nodes = [n for n in self.nodes if n["released"]] + nodes[1:]
            self.edges = [e for e in self.edges if e["released"]] + edges
        self.order_update_id = msg["orderUpdateId"]
        self.last_order = {"nodes": nodes, "edges": edges}
        self.errors = [e for e in self.errors if e.get("_scope") != "order"]
        self.changed = True
        return True

    def _set_order_error(self, error: dict[str, Any]) -> None:
        error["_scope"] = "order"
        self.errors = [e for e in self.errors if e.get("_scope") != "order"] + [error]
        self.changed = True

    def _order_problem(self, msg: dict[str, Any]) -> tuple[str, str, str] | None:
        problems = schema.errors("order", msg)
        if problems:
            return ("VALIDATION_FAILURE", "WARNING", "; ".join(problems[:3]))
        if str(msg["version"]).split(".")[0] != "3":
            return ("VALIDATION_FAILURE", "WARNING", f"protocol version {msg['version']!r}, "
                    "this vehicle speaks 3.x.y")
        nodes = sorted(msg["nodes"], key=lambda n: n["sequenceId"])
        edges = sorted(msg["edges"], key=lambda e: e["sequenceId"])
        graph = self._graph_problem(nodes, edges)
        if graph is not None:
            return ("VALIDATION_FAILURE", "WARNING", graph)
        for n in nodes:
            pos = n.get("nodePosition")
            if pos is not None and pos["mapId"] != self.spec.map_id:
                return ("UNKNOWN_MAP_ID", "WARNING", f"node {n['nodeId']} is on map "
                        f"{pos['mapId']!r}, this vehicle knows {self.spec.map_id!r}")
        for item in nodes + edges:
            if item["actions"]:
                return ("INVALID_ORDER_ACTION", "WARNING", "this vehicle performs no "
                        f"node or edge actions ({item['actions'][0]['actionType']!r})")
        if msg["orderId"] != self.order_id:
            if not self.idle:
                return ("OTHER_ORDER_ACTIVE", "WARNING", f"order {self.order_id!r} is "
                        "still active")
            if msg["orderUpdateId"] != 0:
                return ("VALIDATION_FAILURE", "WARNING", "a new order must start with "
                        f"orderUpdateId 0, got {msg['orderUpdateId']}")
            first = nodes[0]
            pos = first.get("nodePosition")
            if pos is None:
                return ("VALIDATION_FAILURE", "WARNING", "the first node has no position")
            dev = pos.get("allowedDeviationXY") or {}
            reach = max(NODE_TOLERANCE, float(dev.get("a", 0.0)), float(dev.get("b", 0.0)))
            if math.hypot(pos["x"] - self.x, pos["y"] - self.y) > reach:
                return ("START_NODE_OUT_OF_RANGE", "WARNING", f"the first node "
                        f"{first['nodeId']} is {math.hypot(pos['x'] - self.x, pos['y'] - self.y):.2f} m away")
            return None
        if self.cancelled:
            return ("ORDER_UPDATE_FOLLOWING_CANCEL", "WARNING",
                    f"order {self.order_id!r} was cancelled")
        if msg["orderUpdateId"] < self.order_update_id:
            return ("OUTDATED_ORDER_UPDATE", "WARNING", f"orderUpdateId "
                    f"{msg['orderUpdateId']} is older than {self.order_update_id}")
        if msg["orderUpdateId"] == self.order_update_id:
            if self.last_order == {"nodes": nodes, "edges": edges}:
                return ("", "", "")
            return ("SAME_ORDER_UPDATE_ID", "WARNING", f"orderUpdateId "
                    f"{msg['orderUpdateId']} again with other content")
        decision = self._decision_point()
        first = nodes[0]
        if (first["nodeId"], first["sequenceId"]) != decision:
            return ("VALIDATION_FAILURE", "WARNING", f"the update starts at "
                    f"{first['nodeId']}/{first['sequenceId']}, not at the decision point "
                    f"{decision[0]}/{decision[1]}")
        return None

    @staticmethod
    def _graph_problem(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> str | None:
        if not nodes:
            return "an order needs at least one node"
        if len(edges) != len(nodes) - 1:
            return f"{len(nodes)} nodes need {len(nodes) - 1} edges, got {len(edges)}"
        s0 = nodes[0]["sequenceId"]
        if [n["sequenceId"] for n in nodes] != list(range(s0, s0 + 2 * len(nodes), 2)) or \
                [e["sequenceId"] for e in edges] != list(range(s0 + 1, s0 + 2 * len(edges), 2)):
            return "sequenceIds are not continuous (node, edge, node, ...)"
        if not nodes[0]["released"]:
            return "the first node must be released"
        seq = [nodes[0]]
        for e, n in zip(edges, nodes[1:]):
            seq += [e, n]
        for a, b in zip(seq, seq[1:]):
            if b["released"] and not a["released"]:
                return f"sequenceId {b['sequenceId']} is released after an unreleased one"
        return None

    def _decision_point(self) -> tuple[str, int]:
        base = [n for n in self.nodes if n["released"]]
        if base:
            return base[-1]["nodeId"], base[-1]["sequenceId"]
        return self.last_node_id, self.last_seq

    @property
    def idle(self) -> bool:
        return not self.nodes and not self.edges

    # -- instant actions ------------------------------------------------------------------

    def on_instant_actions(self, msg: dict[str, Any]) -> None:
        for action in msg["actions"]:
            kind, aid = action["actionType"], action["actionId"]
            status, result = "FINISHED", ""
            if kind == "startPause":
                self.paused, self.driving, self.speed = True, False, 0.0
            elif kind == "stopPause":
                self.paused = False
            elif kind == "cancelOrder":
                wanted = next((p["value"] for p in action.get("actionParameters", [])
                               if p["key"] == "orderId"), None)
                if self.idle or (wanted is not None and wanted != self.order_id):
                    status = "FAILED"
                    self._set_order_error(_error("NO_ORDER_TO_CANCEL", "WARNING",
                                                 "no active order to cancel", {"actionId": aid}))
                else:
                    self.nodes, self.edges = [], []
                    self.cancelled, self.driving, self.speed = True, False, 0.0
            elif kind == "stateRequest":
                pass   # `changed` below publishes it
            elif kind == "factsheetRequest":
                self.factsheet_requested = True
            elif kind == "clearInstantActions":
                self.instant_states = [s for s in self.instant_states
                                       if s["actionStatus"] not in ("FINISHED", "FAILED")]
            else:
                status, result = "FAILED", f"unsupported instant action {kind!r}"
                self.errors.append(_error("INVALID_INSTANT_ACTION", "WARNING", result,
                                          {"actionId": aid}))
            self.instant_states.append({"actionId": aid, "actionType": kind,
                                        "actionStatus": status,
                                        **({"actionResult": result} if result else {})})
        self.changed = True

    # -- motion ---------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """Drive from the last step's time to `now`."""
        dt = 0.0 if self._t is None else max(0.0, now - self._t)
        self._t = now
        moving = False
        while dt > 1e-12 and not self.paused and self.nodes and self.nodes[0]["released"]:
            target, edge = self.nodes[0], self.edges[0]
            if not edge["released"]:
                break
            pos = target["nodePosition"]
            dx, dy = pos["x"] - self.x, pos["y"] - self.y
            dist = math.hypot(dx, dy)
            if dist > 1e-9:
                heading = math.atan2(dy, dx)
                turn = math.atan2(math.sin(heading - self.theta), math.cos(heading - self.theta))
                if abs(turn) > HEADING_TOLERANCE:
                    w = self.spec.max_angular_speed * self.spec.speed_factor
                    dtheta = math.copysign(min(abs(turn), w * dt), turn)
                    self.theta += dtheta
                    dt -= abs(dtheta) / w
                    moving = True
                    continue
                v = min(float(edge.get("maximumSpeed", self.spec.max_speed)),
                        self.spec.max_speed) * self.spec.speed_factor
                step = min(dist, v * dt)
                self.x += dx / dist * step
                self.y += dy / dist * step
                dt -= step / v
                self.speed = v
                moving = True
                if step < dist - 1e-9:
                    break
            # reached the node: traversed (6.6.2)
            self.x, self.y = pos["x"], pos["y"]
            self.last_node_id, self.last_seq = target["nodeId"], target["sequenceId"]
            self.nodes.pop(0)
            self.edges.pop(0)
            self.changed = True
        if not moving:
            self.speed = 0.0
        if moving != self.driving:
            self.driving = moving
            self.changed = True

    # -- messages (bodies: the header is added by the sender) ------------------------------

    def state_body(self) -> dict[str, Any]:
        def node_state(n: dict[str, Any]) -> dict[str, Any]:
            out = {"nodeId": n["nodeId"], "sequenceId": n["sequenceId"], "released": n["released"]}
            if "nodePosition" in n:
                p = n["nodePosition"]
                out["nodePosition"] = {"x": p["x"], "y": p["y"], "mapId": p["mapId"]}
            return out

        return {
            "orderId": self.order_id, "orderUpdateId": self.order_update_id,
            "lastNodeId": self.last_node_id, "lastNodeSequenceId": self.last_seq,
            "nodeStates": [node_state(n) for n in self.nodes],
            "edgeStates": [{"edgeId": e["edgeId"], "sequenceId": e["sequenceId"],
                            "released": e["released"]} for e in self.edges],
            "mobileRobotPosition": self.position(),
            "velocity": {"vx": self.speed, "vy": 0.0, "omega": 0.0},
            "driving": self.driving, "paused": self.paused,
            "newBaseRequest": False,
            "actionStates": [], "instantActionStates": list(self.instant_states),
            "powerSupply": {"stateOfCharge": 100.0, "charging": False},
            "operatingMode": "AUTOMATIC",
            "errors": [{k: v for k, v in e.items() if not k.startswith("_")}
                       for e in self.errors],
            "safetyState": {"activeEmergencyStop": "NONE", "fieldViolation": False},
        }

    def position(self) -> dict[str, Any]:
        theta = math.atan2(math.sin(self.theta), math.cos(self.theta))
        return {"x": self.x, "y": self.y, "theta": theta, "mapId": self.spec.map_id,
                "localized": True}

    def visualization_body(self, state_header_id: int) -> dict[str, Any]:
        """Position and velocity; `state_header_id`: the last state sent (7.9)."""
        return {"referenceStateHeaderId": state_header_id,
                "mobileRobotPosition": self.position(),
                "velocity": {"vx": self.speed, "vy": 0.0, "omega": 0.0}}

    def factsheet_body(self) -> dict[str, Any]:
        s = self.spec
        r = s.radius
        circle = [{"x": r * math.cos(2 * math.pi * k / 16), "y": r * math.sin(2 * math.pi * k / 16)}
                  for k in range(16)]
        instant = [{"actionType": a, "actionScopes": ["INSTANT"], "pauseAllowed": False,
                    "cancelAllowed": False} for a in SUPPORTED_INSTANT_ACTIONS]
        return {
            "typeSpecification": {
                "seriesName": s.series,
                # the schema's name and the text's (7.10): both, so either reader finds it
                "mobileRobotKinematic": "DIFFERENTIAL", "mobileRobotKinematics": "DIFFERENTIAL",
                "mobileRobotClass": "CARRIER", "maximumLoadMass": 0.0,
                "localizationTypes": ["NATURAL"], "navigationTypes": ["VIRTUAL_LINE_GUIDED"]},
            "physicalParameters": {
                "minimumSpeed": 0.0, "maximumSpeed": s.max_speed,
                "maximumAngularSpeed": s.max_angular_speed,
                "maximumAcceleration": s.max_acceleration,
                "maximumDeceleration": s.max_acceleration,
                "minimumHeight": 0.0, "maximumHeight": 0.5,
                "width": 2 * r, "length": 2 * r},
            "protocolLimits": {
                "maximumStringLengths": {}, "maximumArrayLengths": {},
                "timing": {"minimumOrderInterval": 0.0, "minimumStateInterval": 0.0}},
            "protocolFeatures": {
                "optionalParameters": [
                    {"parameter": "order.edges.maximumSpeed", "support": "SUPPORTED"},
                    {"parameter": "order.edges.length", "support": "SUPPORTED"},
                    {"parameter": "order.nodes.nodePosition.allowedDeviationXY",
                     "support": "SUPPORTED"}],
                "mobileRobotActions": instant},
            "mobileRobotGeometry": {"envelopes2d": [{"envelope2dId": "outline",
                                                     "vertices": circle}]},
            "loadSpecification": {},
        }

    def snapshot(self) -> str:
        """The state body as canonical JSON (what `changed` compares in tests)."""
        return json.dumps(self.state_body(), sort_keys=True)
