"""traffic: the reservation-table authority node.

Serves `/traffic/reserve` (fleet_coord_msgs/srv/Reserve) and `/traffic/release`
(srv/Release), publishes every change on `/traffic/updates` (msg/ReservationSet,
TABLE QoS: reliable + transient-local, so a replica that joins late gets the latest
snapshot and what followed) and a full snapshot every `snapshot_period` seconds.
Watches `/fleet/robot_states` (msg/RobotState, STATE QoS with a liveliness lease): a
robot silent for `lost_after` seconds is declared lost — what it committed stays, what it
held since it was last heard stays blocked (fleet_coord.core.traffic) — and announced on
`/fleet/robot_lost` (RobotNotice, PROTOCOL QoS). While a robot is lost the node
listens to its `/<robot>/odom` (ODOM QoS): a robot whose agent died but whose base still
reports is located once it stands still, and only the spot it stands on stays blocked.

Membership (fleet_coord.core.membership): a robot joins by speaking; `/fleet/remove_robot`
(srv/RemoveRobot) takes one out on purpose — everything it holds is released (a lost
robot's blocked spot too), it is announced on `/fleet/robot_removed` (RobotNotice,
PROTOCOL QoS) for the dispatcher, the agents, the drivers and the monitor, and from then
on its reservations are refused and its states ignored until an agent started after the
removal speaks for it. An alive robot with a current or queued task is only removed with
`force`. Removals are not written to the table log (what they released is).

Durability: with the parameter `table_log` (a file path) the table and the lost set are
written ahead of every answer (fleet_coord.core.table_log) and reloaded on start, so a
traffic node killed and restarted keeps every reservation it granted (versions continue:
replicas go on applying deltas) and never grants a conflicting one. Robots found in a
reloaded table count as heard at start-up: one that stays silent is declared lost as
usual. Without `table_log` the table lives in memory only.

History: before each snapshot, reservations that ended more than `keep_history` s ago
(default 60) are dropped, as ordinary deltas, so the table and the replicas stay the size
of the fleet's present and future plans.

Thin by design: all decisions live in fleet_coord.core.traffic / reservations.
"""
from __future__ import annotations

import math

from fleet_coord_msgs.msg import ReservationSet, RobotNotice, RobotState
from fleet_coord_msgs.srv import Release, RemoveRobot, Reserve
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.event_handler import SubscriptionEventCallbacks

from fleet_coord import qos
from fleet_coord.convert import reservation_to_segment as to_segment_msg
from fleet_coord.spin import run_nodes
from fleet_coord.core.liveness import LivenessTracker
from fleet_coord.core.membership import Membership, incarnation_of, removal_refusal
from fleet_coord.core.reservations import Reservation, ReservationTable
from fleet_coord.core.table_log import TableLog
from fleet_coord.core.traffic import RobotLostError, TrafficAuthority
from fleet_coord.fleet_config import load_roadmap_and_exclusion


class TrafficNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("traffic", **kwargs)
        p = self.declare_parameter
        map_path = p("map", "").value
        radius = p("footprint_radius", 0.15).value
        self.lost_after = p("lost_after", 1.5).value
        snapshot_period = p("snapshot_period", 5.0).value
        # reservations that ended this many seconds ago are dropped from the table (and
        # so from every replica) before each snapshot; 0 keeps them forever
        self.keep_history = p("keep_history", 60.0).value
        roadmap, exclusion, self.roadmap_id = load_roadmap_and_exclusion(map_path, radius)
        self.exclusion = exclusion
        self._locating: dict[str, list] = {}   # lost robot -> [subscription, still_since, pose]
        table_log = p("table_log", "").value
        fsync = p("table_fsync", True).value
        self.authority = TrafficAuthority(ReservationTable(exclusion.of, roadmap.num_resources))
        self.liveness = LivenessTracker(self.lost_after)
        self.membership = Membership()
        self._work: dict[str, list[str]] = {}   # robot -> its current and queued tasks
        self.table_log: TableLog | None = None
        if table_log:
            self.table_log = TableLog(table_log, self.roadmap_id, fsync=fsync)
            rec = self.table_log.load(exclusion.of, roadmap.num_resources)
            if rec is not None:
                self.authority = TrafficAuthority(rec.table)
                self.authority.lost = set(rec.lost)
                now = self.now()
                for robot in rec.table.robots():
                    if robot not in rec.lost:
                        self.liveness.heard(robot, now)
                self.get_logger().info(
                    f"recovered the table from {table_log}: {len(rec.table)} reservations of "
                    f"{len(rec.table.robots())} robots at version {rec.table.version} "
                    f"({rec.updates} updates replayed), lost: {sorted(rec.lost) or 'none'}")
            self.table_log.start(self.authority.table, self.authority.lost)
        self._logged_lost = set(self.authority.lost)
        self.updates = self.create_publisher(ReservationSet, "/traffic/updates", qos.TABLE)
        self.lost_pub = self.create_publisher(RobotNotice, "/fleet/robot_lost", qos.PROTOCOL)
        self.removed_pub = self.create_publisher(RobotNotice, "/fleet/robot_removed", qos.PROTOCOL)
        self.create_service(Reserve, "/traffic/reserve", self._on_reserve)
        self.create_service(Release, "/traffic/release", self._on_release)
        self.create_service(RemoveRobot, "/fleet/remove_robot", self._on_remove_robot)
        events = SubscriptionEventCallbacks(liveliness=lambda _info: self._check_liveness())
        self.create_subscription(RobotState, "/fleet/robot_states", self._on_state,
                                 qos.state_qos(), event_callbacks=events)
        self.create_timer(0.1, self._check_liveness)
        self.create_timer(snapshot_period, self._publish_snapshot)
        self._publish_snapshot()
        self.get_logger().info(
            f"traffic authority ready: {roadmap.num_resources} resources on {map_path or 'the bundled map'} "
            f"(roadmap {self.roadmap_id}), robots lost after {self.lost_after} s silent")

    # time ------------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # services --------------------------------------------------------------------------
    def _on_reserve(self, req: Reserve.Request, resp: Reserve.Response) -> Reserve.Response:
        resp.version = self.authority.table.version
        if req.roadmap_id and req.roadmap_id != self.roadmap_id:
            resp.error = Reserve.Response.ERROR_ROADMAP_MISMATCH
            resp.message = f"roadmap_id {req.roadmap_id!r} is not this fleet's {self.roadmap_id!r}"
            return resp
        segs = [(s.resource, s.t_start, s.t_end) for s in req.segments]
        for i, s in enumerate(req.segments):
            if s.robot and s.robot != req.robot:
                resp.error = Reserve.Response.ERROR_INVALID
                resp.segment_index = i
                resp.message = f"segment {i}: robot {s.robot!r} differs from the request's {req.robot!r}"
                return resp
        if self.membership.is_removed(req.robot):
            resp.error = Reserve.Response.ERROR_INVALID
            resp.message = (f"robot {req.robot!r} was removed from the fleet; start a new agent "
                            "for it to rejoin (fleet-coord add-robot)")
            return resp
        leases = [s.lease_expiry for s in req.segments if s.lease_expiry > 0]
        lease = min(leases) if leases else math.inf
        try:
            result = self.authority.reserve(req.robot, segs,
                                            replace_from=req.replace_from if req.replace else None,
                                            lease_expiry=lease)
        except (ValueError, RobotLostError) as e:
            resp.error = Reserve.Response.ERROR_INVALID
            resp.message = str(e)
            return resp
        resp.version = result.version
        if result.ok:
            resp.ok = True
            resp.error = Reserve.Response.ERROR_NONE
        else:
            c = result.conflict
            resp.error = Reserve.Response.ERROR_CONFLICT
            resp.message = str(c)
            resp.conflicting_segment = to_segment_msg(c.existing)
            req_key = (c.requested.resource, c.requested.t_start, c.requested.t_end)
            resp.segment_index = segs.index(req_key) if req_key in segs else 0
        self._publish_updates()
        return resp

    def _on_release(self, req: Release.Request, resp: Release.Response) -> Release.Response:
        resp.released = self.authority.release(req.robot, req.after if req.only_after else None)
        resp.version = self.authority.table.version
        self._publish_updates()
        return resp

    def _on_remove_robot(self, req: RemoveRobot.Request,
                         resp: RemoveRobot.Response) -> RemoveRobot.Response:
        robot = req.robot
        table = self.authority.table
        if self.membership.is_removed(robot) and not table.reservations(robot):
            resp.ok = True   # idempotent: a client retrying after a lost response
            self.get_logger().info(f"robot {robot} was already removed")
            return resp
        known = (robot in self.liveness.last_seen or robot in self.authority.lost
                 or bool(table.reservations(robot)))
        alive = robot in self.liveness.last_seen and robot not in self.liveness.lost
        known_robots = set(self.liveness.last_seen) | set(table.robots()) | self.authority.lost
        refusal = removal_refusal(robot, known=known, alive=alive,
                                  tasks=self._work.get(robot, ()), force=req.force,
                                  known_robots=known_robots)
        if refusal is not None:
            resp.ok, resp.error = False, refusal
            self.get_logger().warning(f"remove {robot!r} refused: {refusal}")
            return resp
        resp.was_lost = robot in self.authority.lost or robot in self.liveness.lost
        resp.released = self.authority.robot_removed(robot)
        self.liveness.forget(robot)
        self.membership.remove(robot)
        self._work.pop(robot, None)
        self._stop_locating(robot)
        self._publish_updates()
        self.removed_pub.publish(RobotNotice(robot=robot, reason=req.reason,
                                                 stamp=self.get_clock().now().to_msg()))
        resp.ok = True
        self.get_logger().info(
            f"robot {robot} removed from the fleet ({'lost' if resp.was_lost else 'alive'}"
            f"{', forced' if req.force else ''}{': ' + req.reason if req.reason else ''}): "
            f"{resp.released} reservations released")
        return resp

    # liveness --------------------------------------------------------------------------
    def _on_state(self, msg: RobotState, info) -> None:
        if not self.membership.heard(msg.robot, incarnation_of(info)):
            return   # the old agent of a removed robot
        self._work[msg.robot] = [msg.task_id, *msg.queued_task_ids]
        if self.liveness.heard(msg.robot, self.now()):
            self.authority.robot_returned(msg.robot)
            self._stop_locating(msg.robot)

    def _check_liveness(self) -> None:
        now = self.now()
        for robot in self.liveness.check(now):
            outcome = self.authority.robot_lost(robot, now, self.liveness.last_seen.get(robot))
            self.get_logger().warning(
                f"robot {robot} lost (silent > {self.lost_after:.1f} s); what it committed "
                f"stays, spot {outcome.blocked} stays blocked; reservations revoked for "
                f"{sorted(outcome.revoked)}")
            self.lost_pub.publish(RobotNotice(
                robot=robot, reason=f"silent > {self.lost_after:.1f} s",
                stamp=self.get_clock().now().to_msg()))
            self._start_locating(robot)
        expired = self.authority.table.expire(now)
        if expired:
            self.get_logger().info(f"leases expired for {expired}")
        self._publish_updates()

    # locating a lost robot from its odometry -------------------------------------------
    def _start_locating(self, robot: str) -> None:
        if robot in self._locating:
            return
        sub = self.create_subscription(Odometry, f"/{robot}/odom",
                                       lambda m, r=robot: self._on_lost_odom(r, m), qos.ODOM)
        self._locating[robot] = [sub, None, None]

    def _stop_locating(self, robot: str) -> None:
        entry = self._locating.pop(robot, None)
        if entry is not None:
            group = getattr(entry[0], "callback_group", None)
            self.destroy_subscription(entry[0])
            # rclpy (9.x) keeps the weak references of every entity ever added to a
            # callback group, also once it is destroyed: two per loss add up in a long
            # run (found by fleet_coord.memtrace under bench/load.py). Drop the dead ones.
            refs = getattr(group, "entities", None)
            if isinstance(refs, set):
                refs.difference_update([r for r in refs if r() is None])

    def _on_lost_odom(self, robot: str, msg: Odometry) -> None:
        entry = self._locating.get(robot)
        if entry is None or robot not in self.authority.lost:
            return
        now = self.now()
        p, tw = msg.pose.pose.position, msg.twist.twist
        moving = abs(tw.linear.x) > 0.01 or abs(tw.angular.z) > 0.05
        if moving or entry[2] is None or math.hypot(p.x - entry[2][0], p.y - entry[2][1]) > 0.01:
            entry[1], entry[2] = now, (p.x, p.y)
            return
        if now - entry[1] < 0.5:
            return   # standing still, not for long enough yet
        spot = self._resources_under(robot, p.x, p.y)
        if not spot:
            self.get_logger().warning(f"lost robot {robot} stands at ({p.x:.2f}, {p.y:.2f}), "
                                      "outside everything it holds; keeping all of it blocked")
        else:
            outcome = self.authority.robot_located(robot, spot, now)
            self.get_logger().info(
                f"lost robot {robot} located at ({p.x:.2f}, {p.y:.2f}) by its odometry: spot "
                f"{outcome.blocked} stays blocked, the rest is released; reservations revoked "
                f"for {sorted(outcome.revoked)}")
            self._publish_updates()
        self._stop_locating(robot)

    def _resources_under(self, robot: str, x: float, y: float) -> list[int]:
        """The robot's held resources whose geometry its footprint touches."""
        import shapely
        disc = shapely.Point(x, y).buffer(self.exclusion.footprint.bounding_radius, quad_segs=8)
        held = {r.resource for r in self.authority.table.reservations(robot)}
        return sorted(res for res in held
                      if not self.exclusion.geometry(res).is_empty
                      and self.exclusion.geometry(res).intersection(disc).area > 1e-9)

    # replication -----------------------------------------------------------------------
    def _publish_updates(self) -> None:
        updates = self.authority.table.drain_updates()
        if self.table_log is not None:
            # written ahead: on disk before any answer or update leaves this node
            lost = self.authority.lost
            self.table_log.append(updates, set(lost) if lost != self._logged_lost else None)
            self._logged_lost = set(lost)
            if self.table_log.should_compact():
                self.table_log.compact(self.authority.table, lost)
        stamp = self.get_clock().now().to_msg()
        for upd in updates:
            self.updates.publish(ReservationSet(
                version=upd["version"], robot=upd.get("robot", ""), roadmap_id=self.roadmap_id,
                is_snapshot=False, stamp=stamp,
                removed=[to_segment_msg(Reservation.from_dict(d)) for d in upd["removed"]],
                added=[to_segment_msg(Reservation.from_dict(d)) for d in upd["added"]]))

    def _publish_snapshot(self) -> None:
        if self.keep_history > 0:
            # the past is no one's to plan against: without this the table (and each
            # agent's replica) grows by every segment ever driven (bench/load.py: +306
            # reservations a minute at 50 robots, agents' memory +6 MB/min per process)
            self.authority.table.release_before(self.now() - self.keep_history)
        self._publish_updates()
        snap = self.authority.table.snapshot()
        self.updates.publish(ReservationSet(
            version=snap["version"], roadmap_id=self.roadmap_id, is_snapshot=True,
            stamp=self.get_clock().now().to_msg(),
            added=[to_segment_msg(Reservation.from_dict(d)) for d in snap["reservations"]]))


def main(args=None) -> None:
    run_nodes(lambda _argv: [TrafficNode()], args)


if __name__ == "__main__":
    main()
