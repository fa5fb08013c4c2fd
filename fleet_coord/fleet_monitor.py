"""fleet_monitor: the fleet at a glance, for people and for tools.

- `/fleet/state` (msg/FleetState, 2 Hz): every robot's newest RobotState; robots declared
  lost (by the traffic authority on `/fleet/robot_lost`, or silent here for `lost_after`)
  are listed in `lost` with their mode set to LOST. A robot removed from the fleet
  (`/fleet/robot_removed`) leaves the list until an agent started after the removal speaks
  for it (fleet_coord.core.membership).
- `/fleet/markers` (visualization_msgs/MarkerArray, 2 Hz) for RViz: robots as cylinders,
  their reserved future paths as line strips, the resources held right now as cubes. A
  robot keeps its marker ids while it is in the fleet; its markers are deleted when it
  is removed.
- `/fleet/roadmap` (MarkerArray, reliable + transient-local, once): the roadmap's lanes
  and a grid map's obstacles, for RViz (config/fleet.rviz shows both topics).
- The causal event log (`event_log` parameter, JSONL; see fleet_coord.core.event_log):
  every cfp, proposal, refusal, award, rejection, reservation change, task status and
  robot loss and removal, with task id and a Lamport timestamp, from which a run can be reconstructed.

Reads only: the monitor never changes the fleet's behaviour.
"""
from __future__ import annotations

import copy
import functools

from fleet_coord_msgs.msg import (Award, CallForProposal, FleetState, Proposal, Refusal,
                                  Rejection, ReservationSet, RobotNotice, RobotState,
                                  TaskStatus)
from geometry_msgs.msg import Point
from rclpy.node import Node
from visualization_msgs.msg import Marker, MarkerArray

from fleet_coord import parameters, qos
from fleet_coord.spin import run_nodes
from fleet_coord.core.event_log import EventLog
from fleet_coord.core.liveness import LivenessTracker
from fleet_coord.core.membership import Membership, incarnation_of
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.guard import Guard
from fleet_coord.namespace import FleetNames
from fleet_coord.node_auth import NodeAuth
from fleet_coord.table_replica import TableReplica

STATE_NAMES = {v: k for k, v in vars(TaskStatus).items()
               if k.isupper() and isinstance(v, int)}


#: What the causal event log records of each protocol topic: topic -> (event, message
#: type, the event's fields of a message, how its sender is checked: "sender" any fleet
#: identity allowed on the topic, "robot" the robot it names, "status" by reporter). Also
#: used to rebuild the log from a recording (fleet_coord.report_mcap).
PROTOCOL_EVENTS = {
    "/fleet/cfp": ("cfp", CallForProposal, lambda m: dict(
        task_id=m.task.id, round=m.round, kind=m.task.kind, stations=list(m.task.stations)),
        "sender"),
    "/fleet/proposals": ("proposal", Proposal, lambda m: dict(
        robot=m.robot, round=m.round, cost=m.cost), "robot"),
    "/fleet/refusals": ("refusal", Refusal, lambda m: dict(
        robot=m.robot, round=m.round, reason=m.reason), "robot"),
    "/fleet/awards": ("award", Award, lambda m: dict(robot=m.robot, round=m.round), "sender"),
    "/fleet/rejections": ("rejection", Rejection, lambda m: dict(robot=m.robot, round=m.round),
                          "sender"),
    "/fleet/task_status": ("status", TaskStatus, lambda m: dict(
        robot=m.robot, state=STATE_NAMES.get(m.state, str(m.state)),
        progress=round(float(m.progress), 3), reason=m.reason), "status"),
}


def reservation_event(msg: ReservationSet) -> dict:
    """The event log's fields of a table delta (applied to a replica)."""
    def seg(segs):
        return [[s.resource, s.t_start, s.t_end] for s in segs]
    return dict(robot=msg.robot, version=msg.version, added=seg(msg.added),
                removed=seg(msg.removed))


def _color(i: int) -> tuple[float, float, float]:
    palette = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
               (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5),
               (0.74, 0.74, 0.13), (0.09, 0.75, 0.81)]
    return palette[i % len(palette)]


def roadmap_markers(roadmap, stamp) -> MarkerArray:
    """The roadmap for RViz: lanes as one line list, a grid map's obstacles as cubes."""
    lanes = Marker(ns="lanes", id=0, type=Marker.LINE_LIST, action=Marker.ADD)
    lanes.header.frame_id, lanes.header.stamp = "map", stamp
    lanes.pose.orientation.w = 1.0
    lanes.scale.x = 0.03
    lanes.color.r = lanes.color.g = lanes.color.b = 0.6
    lanes.color.a = 1.0
    pos = roadmap.pos
    for u, v in zip(roadmap.edge_from.tolist(), roadmap.edge_to.tolist()):
        if u < v or roadmap.edge_id(v, u) is None:   # a two-way lane once
            lanes.points += [Point(x=float(pos[u, 0]), y=float(pos[u, 1])),
                             Point(x=float(pos[v, 0]), y=float(pos[v, 1]))]
    out = MarkerArray(markers=[lanes])
    grid = roadmap.grid
    if grid is not None:
        walls = Marker(ns="obstacles", id=0, type=Marker.CUBE_LIST, action=Marker.ADD)
        walls.header.frame_id, walls.header.stamp = "map", stamp
        walls.pose.orientation.w = 1.0
        walls.scale.x = walls.scale.y = 1.0
        walls.scale.z = 0.3
        walls.color.r, walls.color.g, walls.color.b, walls.color.a = 0.35, 0.4, 0.45, 1.0
        walls.points = [Point(x=float(x), y=float(y), z=0.15)
                        for y in range(grid.height) for x in range(grid.width)
                        if not grid.free[y, x]]
        out.markers.append(walls)
    return out


class FleetMonitor(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("fleet_monitor", **kwargs)
        self.names = FleetNames.of_node(self)
        p = self.declare_parameter
        map_path, radius = p("map", "").value, p("footprint_radius", 0.15).value
        lost_after, event_log = p("lost_after", 1.5).value, p("event_log", "").value
        parameters.check_node(self, "fleet_monitor")
        self.roadmap, exclusion, self.roadmap_id = load_roadmap_and_exclusion(map_path, radius)
        self.liveness = LivenessTracker(lost_after)
        self.log = EventLog(event_log or None, "fleet_monitor")
        self.robots: dict[str, RobotState] = {}
        self.lost: set[str] = set()
        self.membership = Membership()
        self.replica = TableReplica(exclusion.of, self.roadmap.num_resources, self.roadmap_id)
        # what it hears counts (and is logged) only when its sender may say it
        self.auth = NodeAuth(self, identities=["fleet_monitor"])
        self.state_pub = self.create_publisher(FleetState, self.names("/fleet/state"),
                                               qos.state_qos())
        self.marker_pub = self.create_publisher(MarkerArray, self.names("/fleet/markers"), 10)
        self._marker_ids: dict[str, int] = {}     # robot -> its markers' id, while a member
        self._deleted: list[int] = []             # ids of removed robots, deleted next
        self.roadmap_pub = self.create_publisher(MarkerArray, self.names("/fleet/roadmap"),
                                                 qos.LATCHED)
        self.roadmap_pub.publish(roadmap_markers(self.roadmap, self.get_clock().now().to_msg()))
        sub = functools.partial(Guard(self.get_logger()).subscribe, self)   # drops bad input
        sub(RobotState, self.names("/fleet/robot_states"), self._on_state, qos.state_qos())
        sub(RobotNotice, self.names("/fleet/robot_lost"), self._on_lost, qos.PROTOCOL)
        sub(RobotNotice, self.names("/fleet/robot_removed"), self._on_removed, qos.PROTOCOL)
        sub(ReservationSet, self.names("/traffic/updates"), self._on_table, qos.TABLE)
        # each message is checked for its sender (fleet_coord.node_auth) before it is logged
        checks = {"sender": self.auth.check, "robot": self.auth.check_robot_msg,
                  "status": lambda m, _topic: self.auth.check_status(m)}
        for topic, (kind, msg_type, fields, who) in PROTOCOL_EVENTS.items():
            name = topic.lstrip("/")
            sub(msg_type, self.names(topic), lambda m, kind=kind, fields=fields, check=checks[who],
                name=name: check(m, name) and self._log(kind, m, **fields(m)), qos.PROTOCOL)
        self.create_timer(0.5, self._publish)
        self.get_logger().info("fleet monitor ready: /fleet/state, /fleet/markers"
                               + (f", event log {self.log.path}" if self.log.path else ""))

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # inputs ----------------------------------------------------------------------------
    def _log(self, event: str, msg, task_id: str | None = None, **detail) -> None:
        tid = task_id if task_id is not None else getattr(msg, "task_id", "")
        lamport = getattr(msg, "lamport", None) or None
        self.log.record(event, t=self.now(), task_id=tid, lamport=lamport, **detail)

    def _on_state(self, msg: RobotState, info) -> None:
        if not self.auth.check_state(msg):
            return
        if not self.membership.heard(msg.robot, incarnation_of(info)):
            return   # the old agent of a removed robot
        self.robots[msg.robot] = msg
        if self.liveness.heard(msg.robot, self.now()) and msg.robot in self.lost:
            self.lost.discard(msg.robot)
            self.log.record("robot_returned", t=self.now(), robot=msg.robot)

    def _on_lost(self, msg: RobotNotice) -> None:
        if not self.auth.check(msg, "fleet/robot_lost"):
            return
        if msg.robot not in self.lost:
            self.lost.add(msg.robot)
            self.log.record("robot_lost", t=self.now(), robot=msg.robot, by="traffic")

    def _on_removed(self, msg: RobotNotice) -> None:
        if not self.auth.check(msg, "fleet/robot_removed"):
            return
        self.membership.remove(msg.robot)
        self.robots.pop(msg.robot, None)
        if msg.robot in self._marker_ids:
            self._deleted.append(self._marker_ids.pop(msg.robot))
        self.liveness.forget(msg.robot)
        self.lost.discard(msg.robot)
        self.log.record("robot_removed", t=self.now(), robot=msg.robot)

    def _on_table(self, msg: ReservationSet) -> None:
        if not self.auth.check(msg, "traffic/updates"):
            return
        if self.replica.apply(msg) and not msg.is_snapshot:
            self.log.record("reservation", t=self.now(), **reservation_event(msg))

    # outputs ---------------------------------------------------------------------------
    def _publish(self) -> None:
        now = self.now()
        for robot in self.liveness.check(now):
            if robot not in self.lost:
                self.lost.add(robot)
                self.log.record("robot_lost", t=now, robot=robot, by="fleet_monitor")
        fs = FleetState()
        fs.header.stamp = self.get_clock().now().to_msg()
        fs.header.frame_id = "map"
        for name in sorted(self.robots):
            st = self.robots[name]
            if name in self.lost:   # (a copy: the message taken is kept as it came)
                st = copy.deepcopy(st)
                st.mode = RobotState.LOST
            fs.robots.append(st)
        fs.lost = sorted(self.lost)
        self.state_pub.publish(self.auth.sign(fs, "fleet/state"))
        self.marker_pub.publish(self.markers(now))

    def markers(self, now: float) -> MarkerArray:
        arr = MarkerArray()
        stamp = self.get_clock().now().to_msg()
        pos = self.roadmap.pos
        nv = self.roadmap.num_vertices
        for marker_id in self._deleted:
            for ns in ("robots", "paths", "reservations"):
                gone = Marker(ns=ns, id=marker_id, action=Marker.DELETE)
                gone.header.frame_id, gone.header.stamp = "map", stamp
                arr.markers.append(gone)
        self._deleted.clear()
        for name in sorted(self.robots):
            st = self.robots[name]
            i = self._marker_ids.setdefault(name, max(self._marker_ids.values(), default=-1) + 1)
            r, g, b = _color(i)
            body = Marker(ns="robots", id=i, type=Marker.CYLINDER, action=Marker.ADD)
            body.header.frame_id, body.header.stamp = "map", stamp
            body.pose = st.pose
            body.scale.x = body.scale.y = 0.3
            body.scale.z = 0.2
            body.color.r, body.color.g, body.color.b, body.color.a = (
                (0.3, 0.3, 0.3, 0.6) if name in self.lost else (r, g, b, 1.0))
            arr.markers.append(body)
            future = sorted((h for h in self.replica.table.reservations(name)
                             if h.t_end > now and h.resource < nv), key=lambda h: h.t_start)
            path = Marker(ns="paths", id=i, type=Marker.LINE_STRIP, action=Marker.ADD)
            path.header.frame_id, path.header.stamp = "map", stamp
            path.scale.x = 0.05
            path.color.r, path.color.g, path.color.b, path.color.a = r, g, b, 0.8
            path.points = [Point(x=float(pos[h.resource, 0]), y=float(pos[h.resource, 1]), z=0.05)
                           for h in future]
            arr.markers.append(path)
            held = Marker(ns="reservations", id=i, type=Marker.CUBE_LIST, action=Marker.ADD)
            held.header.frame_id, held.header.stamp = "map", stamp
            held.scale.x = held.scale.y = 0.8
            held.scale.z = 0.02
            held.color.r, held.color.g, held.color.b, held.color.a = r, g, b, 0.35
            held.points = [Point(x=float(pos[h.resource, 0]), y=float(pos[h.resource, 1]))
                           for h in future if h.t_start <= now < h.t_end]
            arr.markers.append(held)
        return arr

    def destroy_node(self) -> None:
        self.log.close()
        super().destroy_node()


def main(args=None) -> None:
    run_nodes(lambda _argv: [FleetMonitor()], args)


if __name__ == "__main__":
    main()
