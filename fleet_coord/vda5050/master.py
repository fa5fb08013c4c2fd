"""vda5050_master: VDA 5050 3.0 master control of one vehicle (one node per vehicle, like
the serial bridge per physical robot).

The robot's agent keeps its role (bids, plans, reserves). This node turns what the agent
committed into orders for the vehicle and the vehicle's reports into the robot's
odometry (docs/vda5050.md):

| in / out | name | type | QoS |
|---|---|---|---|
| sub | `/<robot>/plan` | nav_msgs/Path: the committed timed path (pose = vertex, stamp = time there) | PLAN |
| sub | `/traffic/updates` | ReservationSet (a replica: what the robot holds) | TABLE |
| pub | `/traffic/resync` | std_msgs/String: a stale replica asks for a snapshot | PROTOCOL |
| pub | `/<robot>/odom` | nav_msgs/Odometry: the vehicle's reports (see below) | ODOM |
| pub | `/<robot>/vehicle` | diagnostic_msgs/DiagnosticStatus (below) | PLAN |
| srv | `/<robot>/estop` | std_srvs/SetBool: true = instant action startPause, false = stopPause | |
| srv | `/<robot>/set_estop` | SetEstop: the same, signed (robot_link.EstopServices) | |
| srv | `/<robot>/cancel_order` | std_srvs/Trigger: instant action cancelOrder | |
| MQTT pub | `<interface>/v3/<manufacturer>/<serialNumber>/order`, `.../instantActions` | | QoS 0 |
| MQTT sub | `.../state`, `.../visualization`, `.../connection`, `.../factsheet` | | QoS 0 / 1 |

Odometry comes from the vehicle's state and visualization, stamped with the vehicle's
time, only while the vehicle is available. The status says connection, mode, errors,
order sent / acknowledged, messages dropped, and the vehicle's limits from its factsheet
(``max_speed``, ``max_angular_speed``, ``max_acceleration``: what its agent plans with);
on change and every 1 s.

Orders: ``orders.OrderBook`` (pure): the base never extends past what the robot holds
in the table, released in space and time. Every received message passes
``protocol.Inbox`` (JSON, official schema, version 3, this vehicle, fresh headerId); a
message that does not is logged and dropped. Nothing a vehicle sends can stop this node.

Availability: the vehicle is available while its connection is ONLINE, it was heard
(state or visualization) within ``silence`` s, it is in AUTOMATIC or SEMIAUTOMATIC mode
and reports no FATAL error. Odometry flows only while it is available: an agent that
hears no odometry stops speaking for its robot, and the fleet declares it lost.

The factsheet sets the vehicle's limits: orders never allow more than its
``maximumSpeed``, and a vehicle whose outline does not fit the fleet's footprint is never
given an order.

Authentication (parameters `auth_*`, docs/security.md): the node is robot N's driver,
`bridge_<robot>`. It takes the path only as `SignedPath` on `/<robot>/plan_signed`, signed
by robot N's agent; the table updates only signed by the traffic authority; the odometry
goes out signed too (`/<robot>/odom_signed`, HMAC with N's link key) and the status
(`SignedDiagnosticStatus` on `/<robot>/vehicle_signed`, its signature); releasing the e-stop
needs an operator's signature (`set_estop`; the plain `estop` still engages).
robot_link.FollowerDriverLink, DriverLink and EstopServices do it, as for every driver.

Time: VDA 5050 timestamps are UTC wall time; the fleet must run on wall time
(``use_sim_time: false``), with the vehicles' clocks synchronised (NTP).
"""
from __future__ import annotations

import json
import math
import queue
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from fleet_coord_msgs.msg import ReservationSet
from nav_msgs.msg import Path
from rclpy.node import Node
from std_srvs.srv import Trigger

from fleet_coord import qos
from fleet_coord.convert import odometry_msg, timed_path_from_msg, to_time
from fleet_coord.core.trust import bridge_identity
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.namespace import FleetNames, robot_of
from fleet_coord.node_auth import NodeAuth
from fleet_coord.robot_link import DriverLink, EstopServices, FollowerDriverLink
from fleet_coord.spin import run_nodes
from fleet_coord.table_replica import ResyncRequester, TableReplica
from fleet_coord.vda5050.emulator import parse_broker
from fleet_coord.vda5050.orders import OrderBook
from fleet_coord.vda5050.protocol import (INTERFACE, Inbox, Outbox, Rejected, check_id,
                                          parse_timestamp, topic)

PLAN_QOS = qos.PLAN

IN_TOPICS = ("state", "visualization", "connection", "factsheet")


def outline_radius(factsheet: dict[str, Any]) -> float:
    """The radius of the vehicle's outline from its factsheet: the farthest vertex of its
    2D envelopes, else half the diagonal of width x length."""
    geometry = factsheet.get("mobileRobotGeometry") or {}
    vertices = [v for env in geometry.get("envelopes2d", []) for v in env["vertices"]]
    if vertices:
        return max(math.hypot(v["x"], v["y"]) for v in vertices)
    phys = factsheet["physicalParameters"]
    return math.hypot(phys["width"], phys["length"]) / 2.0


class Vda5050Master(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("vda5050_master", **kwargs)
        p = self.declare_parameter
        self.robot = p("robot", robot_of(self.get_namespace()) or "robot_1").value
        self.names = FleetNames.of_node(self, self.robot)
        self.manufacturer = check_id("manufacturer", p("manufacturer", "").value)
        self.serial = check_id("serial_number", p("serial_number", self.robot).value)
        host, port = parse_broker(p("broker", "127.0.0.1:1883").value)
        interface = check_id("interface", p("interface", INTERFACE).value)
        map_path = p("map", "").value
        radius = float(p("footprint_radius", 0.15).value)
        self.max_speed = float(p("max_speed", 1.0).value)   # the config's cap (m/s)
        rate = float(p("rate", 20.0).value)
        # s without a state or visualization after which the vehicle is unavailable
        self.silence = float(p("silence", 3.0).value)
        map_id = check_id("map_id", p("map_id", "map").value)
        for name, value in (("max_speed", self.max_speed), ("rate", rate),
                            ("silence", self.silence)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"parameter {name} must be a finite number > 0, got {value!r}")
        self.roadmap, self.exclusion, roadmap_id = load_roadmap_and_exclusion(map_path, radius)
        self.footprint_radius = radius
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources, roadmap_id)
        # order ids unique across restarts of this node: the vehicle may still know an
        # order of the last run (a repeated id would be an outdated update to it)
        self.book = OrderBook(self.roadmap, self.exclusion.clearance, self.max_speed,
                              map_id=map_id,
                              order_prefix=f"{self.robot}.{int(time.time() * 10) % 10 ** 9:x}")
        self.inbox = Inbox(self.manufacturer, self.serial)
        self.out = Outbox(self.manufacturer, self.serial)
        self.topics = {name: topic(interface, self.manufacturer, self.serial, name)
                       for name in IN_TOPICS + ("order", "instantActions")}
        self.connection = "UNKNOWN"
        self.heard_at = -math.inf        # node clock: last state / visualization
        self.mode = "STARTUP"
        self.errors: list[dict[str, Any]] = []
        self.factsheet: dict[str, Any] | None = None
        self.limits: dict[str, float] = {}   # from the factsheet (0: not given)
        self.fits = True                 # the outline fits the fleet's footprint
        self.dropped = 0                 # messages from the vehicle that were not used
        self.sent = {"order": 0, "instantActions": 0}
        self._actions = 0
        self._cancelled = ""             # the foreign order last cancelled
        self._status_key: tuple = ()
        self._status_at = -math.inf
        self._inq: queue.SimpleQueue = queue.SimpleQueue()

        # the robot's driver, as a serial bridge is: its identity, odometry and e-stop
        identity = bridge_identity(self.robot)
        self.auth = NodeAuth(self, identities=[identity])
        self.odom_link = DriverLink(self, self.auth, self.robot, on_cmd=None)
        self.link = FollowerDriverLink(self, self.auth, self.robot, identity, self._on_plan)
        self.estop = EstopServices(self, self.auth, self.robot, self._set_estop)
        self.create_subscription(ReservationSet, self.names("/traffic/updates"),
                                 self._on_update, qos.TABLE)
        # stale, it releases nothing until a snapshot: ask for one at once
        self.resync = ResyncRequester(self, self.names, self.get_name(),
                                      lambda: [self.replica.core])
        self.create_service(Trigger, self.names(f"/{self.robot}/cancel_order"), self._on_cancel)
        self.create_timer(1.0 / rate, self._tick)

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"fleet_coord-master-{self.manufacturer}-{self.serial}",
                                  protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self._inq.put((m.topic, m.payload))
        self.client.reconnect_delay_set(0.2, 5.0)
        self.client.connect_async(host, port, keepalive=5)
        self.client.loop_start()
        self.get_logger().info(
            f"master control of {self.manufacturer}/{self.serial} for {self.robot} via "
            f"{host}:{port} ({self.topics['order'].rsplit('/', 1)[0]}/...)")

    # -- time -----------------------------------------------------------------------------

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- MQTT -----------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.get_logger().error(f"MQTT broker refused the connection: {reason_code}")
            return
        client.subscribe([(self.topics[name], 1 if name == "connection" else 0)
                          for name in IN_TOPICS])

    def _send(self, name: str, body: dict[str, Any]) -> None:
        msg = self.out.message(name, time.time(), body)
        self.client.publish(self.topics[name], json.dumps(msg), qos=0)
        self.sent[name] += 1

    def instant_action(self, action_type: str, **params: str) -> str:
        """Send one instant action; returns its actionId."""
        self._actions += 1
        aid = f"{self.robot}-{action_type}-{self._actions}"
        action: dict[str, Any] = {"actionId": aid, "actionType": action_type,
                                  "blockingType": "NONE"}
        if params:
            action["actionParameters"] = [{"key": k, "value": v} for k, v in params.items()]
        self._send("instantActions", {"actions": [action]})
        self.get_logger().info(f"instant action {action_type} ({aid}) sent")
        return aid

    # -- inputs ---------------------------------------------------------------------------

    def _on_update(self, msg: ReservationSet) -> None:
        # only the authority's table releases orders (a forged grant would drive the
        # vehicle into space another robot holds)
        if self.auth.check(msg, "traffic/updates"):
            self.replica.apply(msg)
            self.resync.check()

    def _on_plan(self, msg: Path) -> None:
        try:
            path = timed_path_from_msg(self.roadmap, msg)
            if path:
                self.book.plan(path, self.now())
        except ValueError as e:
            self.get_logger().error(f"plan dropped: {e}")

    def _set_estop(self, engage: bool, who: str, why: str) -> tuple[bool, str]:
        """EstopServices: engage = instant action startPause, release = stopPause."""
        self.instant_action("startPause" if engage else "stopPause")
        if not self.client.is_connected():
            return False, "not connected to the MQTT broker"
        by = f" ({who}{': ' + why if why else ''})" if who else ""
        return True, ("e-stop: startPause sent" if engage else "released: stopPause sent") + by

    def _on_cancel(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        if not self.book.order_id:
            resp.success, resp.message = False, "no order to cancel"
            return resp
        self.instant_action("cancelOrder", orderId=self.book.order_id)
        resp.success, resp.message = True, f"cancelOrder sent for {self.book.order_id}"
        return resp

    def _receive(self, mqtt_topic: str, payload: bytes) -> None:
        name = mqtt_topic.rsplit("/", 1)[-1]
        try:
            msg = self.inbox.accept(name, payload)
        except Rejected as e:
            self.dropped += 1
            self.get_logger().warning(f"dropped a message from {self.serial}: {e}")
            return
        now = self.now()
        if name == "connection":
            state = msg["connectionState"]
            if state != self.connection:
                # (rclpy: one severity per logging call site)
                if state == "ONLINE":
                    self.get_logger().info(f"vehicle {self.serial}: connection {state}")
                else:
                    self.get_logger().warning(f"vehicle {self.serial}: connection {state}")
                if state == "ONLINE" and self.book.order_id:
                    # a vehicle that comes back starts afresh: its order is gone
                    self.get_logger().warning(f"vehicle {self.serial} is back: order "
                                              f"{self.book.order_id} forgotten")
                    self.book.reset()
            self.connection = state
            return
        if name == "factsheet":
            self._on_factsheet(msg)
            return
        t_vehicle = parse_timestamp(msg["timestamp"])
        if name == "state":
            self.book.on_state(msg, t_vehicle)
            self.mode = msg["operatingMode"]
            new = [e for e in msg["errors"] if e not in self.errors]
            for e in new:
                self.get_logger().warning(
                    f"vehicle {self.serial} error {e['errorType']} ({e['errorLevel']}): "
                    f"{e.get('errorDescription', '')}")
            self.errors = msg["errors"]
        pos = msg.get("mobileRobotPosition")
        self.heard_at = now
        if pos is not None and self.available(now):
            vel = msg.get("velocity") or {}
            self.odom_link.publish_odom(odometry_msg(
                self.robot, pos["x"], pos["y"], pos["theta"], float(vel.get("vx", 0.0)),
                float(vel.get("omega", 0.0)), to_time(t_vehicle)))

    def _on_factsheet(self, msg: dict[str, Any]) -> None:
        self.factsheet = msg
        phys = msg["physicalParameters"]
        vmax = float(phys["maximumSpeed"])
        if vmax < self.max_speed:
            self.get_logger().warning(
                f"vehicle {self.serial} drives at most {vmax:g} m/s (factsheet), the config "
                f"says {self.max_speed:g}: orders allow {vmax:g}")
        self.book.max_speed = min(self.max_speed, vmax) if vmax > 0 else self.max_speed
        # what the robot's agent plans with (convert.DRIVER_LIMIT_KEYS): the factsheet's
        # limits; deceleration bounds the stops the agent's model budgets
        acc = [float(phys[k]) for k in ("maximumAcceleration", "maximumDeceleration")
               if float(phys.get(k, 0.0)) > 0]
        self.limits = {"max_speed": self.book.max_speed,
                       "max_angular_speed": float(phys.get("maximumAngularSpeed", 0.0)),
                       "max_acceleration": min(acc) if acc else 0.0}
        r = outline_radius(msg)
        self.fits = r <= self.footprint_radius + 1e-9
        if not self.fits:
            self.get_logger().error(
                f"vehicle {self.serial}'s outline (radius {r:.3f} m, factsheet) does not fit "
                f"the fleet's footprint (radius {self.footprint_radius:g} m): it gets no orders")

    # -- the loop -------------------------------------------------------------------------

    def available(self, now: float) -> bool:
        return (self.connection == "ONLINE" and now - self.heard_at <= self.silence
                and self.mode in ("AUTOMATIC", "SEMIAUTOMATIC")
                and not any(e["errorLevel"] == "FATAL" for e in self.errors))

    def _tick(self) -> None:
        for _ in range(1000):
            try:
                item = self._inq.get_nowait()
            except queue.Empty:
                break
            try:
                self._receive(*item)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                # content the schema allows but we did not foresee: never stops the node
                self.dropped += 1
                self.get_logger().error(f"dropped a message on {item[0]}: "
                                        f"{type(e).__name__}: {e}")
        now = self.now()
        foreign = self.book.foreign_order()
        if foreign is not None and foreign != self._cancelled and self.client.is_connected():
            # an order of an earlier run of this node (or another master) still active
            self.get_logger().warning(f"vehicle {self.serial} runs order {foreign}, not "
                                      "mine: cancelling it")
            self.instant_action("cancelOrder", orderId=foreign)
            self._cancelled = foreign
        if self.available(now) and self.fits and self.client.is_connected():
            holds = [(r.resource, r.t_start, r.t_end)
                     for r in self.replica.table.reservations(self.robot)]
            if not self.replica.stale:
                body = self.book.step(holds, now)
                if body is not None:
                    self._send("order", body)
                    released = [n["nodeId"] for n in body["nodes"] if n["released"]]
                    self.get_logger().info(
                        f"order {body['orderId']}/{body['orderUpdateId']} sent: base to "
                        f"{released[-1]}, {len(body['nodes']) - len(released)} horizon nodes")
        self._publish_status(now)

    def _publish_status(self, now: float) -> None:
        ok = self.available(now)
        key = (ok, self.connection, self.mode, self.book.order_id, self.book.update_id,
               self.book.acked_id, len(self.errors), self.fits, tuple(self.limits.values()))
        if key == self._status_key and now - self._status_at < 1.0:
            return
        self._status_key, self._status_at = key, now
        level = DiagnosticStatus.OK if ok and self.fits else DiagnosticStatus.ERROR
        values = {"connection": self.connection, "operating_mode": self.mode,
                  "available": str(ok).lower(), "order_id": self.book.order_id,
                  "order_update_sent": str(self.book.update_id),
                  "order_update_acknowledged": str(self.book.acked_id),
                  "errors": ", ".join(f"{e['errorType']}/{e['errorLevel']}" for e in self.errors),
                  "messages_dropped": str(self.dropped),
                  "orders_sent": str(self.sent["order"]),
                  "expected_speed": f"{self.book.expected_speed:.3f}"}
        values.update({k: f"{v:g}" for k, v in self.limits.items() if v > 0})
        msg = DiagnosticStatus(level=level, name=f"{self.robot}/vda5050",
                               message="available" if ok else "unavailable",
                               hardware_id=f"{self.manufacturer}/{self.serial}",
                               values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.link.publish_status(msg)

    def destroy_node(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_nodes(lambda _argv: [Vda5050Master()], sys.argv if args is None else args)


if __name__ == "__main__":
    main()
