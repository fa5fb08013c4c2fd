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
replicas go on applying deltas) and never grants a conflicting one. A robot found in a
reloaded table that stays silent is declared lost as usual, judged from when it could
have been heard: the last writer of robot states DDS discovered (hosts are found one by
one, seconds apart on a loaded machine), at most `discovery_grace` s (default 5) after
the first state heard. Without `table_log` the table lives in memory only (the shipped
configs and `fleet-coord launch` keep it on; docs/fleet-config.md).

Restarts: every start without a table picks a new `epoch` (a random non-zero 63-bit
number; one that reloads its table log keeps the log's) that every update and every
Reserve answer carries, so replicas resynchronise on a new incarnation and an answer is
known to come from it. Without a table log a new incarnation does not know what the old
one granted: for up to `recovery_window` s it grants only re-assertions (Reserve
`reassert`), ending as soon as every robot it heard has re-asserted or reports no earlier
table, once it has listened `lost_after` s from when every robot could be heard (as
above; fleet_coord.core.traffic, docs/core-model.md "Authority restarts").

Revocation: a robot whose future holds are revoked keeps for good what it holds over the
next `brake_horizon` s (default 1; the time to hear of the cut and brake to a stop from
its planned speed): it stops there, later than its plan (docs/core-model.md, "Lost
robots and revocation").

Resync: a replica that finds itself stale (a delta lost, a version jump, another
incarnation's delta) asks for the table on `/traffic/resync` (std_msgs/String: who asks,
for the log; PROTOCOL QoS); the node publishes a snapshot out of turn, at most one every
0.25 s whoever asks (core/traffic.py `snapshot_due`), as it does when a robot that was
silent is heard again. The request is trusted for nothing: a snapshot is the authority's
own word (signed with `auth`), so a forged one only costs a snapshot.

History: before each snapshot, reservations that ended more than `keep_history` s ago
(default 60) are dropped, as ordinary deltas, so the table and the replicas stay the size
of the fleet's present and future plans.

Thin by design: every decision lives in fleet_coord.core.traffic (TrafficAuthority:
membership, liveness, locating, removal, history, the table log) and core.reservations;
this node translates messages, keeps the odometry subscriptions the core asks for, and
publishes what the core drains.
"""
from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from typing import Any

from fleet_coord_msgs.msg import ReservationSet, RobotNotice, RobotState
from fleet_coord_msgs.srv import Release, RemoveRobot, Reserve
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.subscription import Subscription
from std_msgs.msg import String

from fleet_coord import parameters, qos
from fleet_coord.convert import reservation_to_segment, table_update_msg
from fleet_coord.core import traffic as tc
from fleet_coord.core.membership import incarnation_of
from fleet_coord.core.replica import TableUpdate
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.table_log import TableLog
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.guard import Guard, check_robot_state
from fleet_coord.node_auth import NodeAuth
from fleet_coord.namespace import FleetNames
from fleet_coord.robot_link import subscribe_odom
from fleet_coord.spin import run_nodes

_ERROR_CODE = {tc.ReserveError.NONE: Reserve.Response.ERROR_NONE,
               tc.ReserveError.CONFLICT: Reserve.Response.ERROR_CONFLICT,
               tc.ReserveError.INVALID: Reserve.Response.ERROR_INVALID,
               tc.ReserveError.ROADMAP_MISMATCH: Reserve.Response.ERROR_ROADMAP_MISMATCH,
               tc.ReserveError.RECOVERING: Reserve.Response.ERROR_RECOVERING}


class TrafficNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("traffic", **kwargs)
        self.names = FleetNames.of_node(self)
        p = self.declare_parameter
        map_path = p("map", "").value
        radius = p("footprint_radius", 0.15).value
        self.lost_after = p("lost_after", 1.5).value
        snapshot_period = p("snapshot_period", 5.0).value
        # reservations that ended this many seconds ago are dropped from the table (and
        # so from every replica) before each snapshot; 0 keeps them forever
        keep_history = p("keep_history", 60.0).value
        table_log = p("table_log", "").value
        fsync = p("table_fsync", True).value
        recovery_window = p("recovery_window", 10.0).value
        # a robot reloaded from the table log (or awaited by a recovery) is judged from when
        # its host could be heard: the last robot-state writer discovered, at most this
        # long after the first state heard (core/traffic.py listening_since)
        discovery_grace = p("discovery_grace", 5.0).value
        # a revoked robot keeps for good what its holds cover this far ahead: what it can
        # brake into before it stops (core/traffic.py _revoke)
        brake_horizon = p("brake_horizon", 1.0).value
        # the robots the fleet starts with and where (flat x, y, theta per robot): each
        # start vertex is held for its robot until its agent parks (core/traffic.py expect)
        anything = ParameterDescriptor(dynamic_typing=True)
        robots = list(p("robots", [], anything).value)
        poses = list(p("start_poses", [], anything).value)
        parameters.check_node(self, "traffic")
        if len(poses) != 3 * len(robots):
            raise parameters.ParameterError(
                f"node {self.get_fully_qualified_name()}: parameter start_poses: expected "
                f"{3 * len(robots)} numbers (x, y, theta for each of {len(robots)} robots), "
                f"got {len(poses)}")
        # not a parameter: a restarted node must differ from its predecessor
        epoch = secrets.randbits(63) or 1
        roadmap, self.exclusion, self.roadmap_id = load_roadmap_and_exclusion(map_path, radius)
        options = dict(roadmap_id=self.roadmap_id, lost_after=self.lost_after,
                       keep_history=keep_history, log=self.get_logger(), epoch=epoch,
                       discovery_grace=discovery_grace, brake_horizon=brake_horizon)
        if table_log:
            table_log = os.path.expanduser(table_log)
            os.makedirs(os.path.dirname(os.path.abspath(table_log)), exist_ok=True)
            self.authority = tc.TrafficAuthority.recover(
                TableLog(table_log, self.roadmap_id, fsync=fsync), self.exclusion,
                roadmap.num_resources, self.now(), **options)
        else:
            self.authority = tc.TrafficAuthority(
                ReservationTable(self.exclusion.of, roadmap.num_resources),
                exclusion=self.exclusion, **options)
            # it may be the restart of one that granted what it cannot know: re-learn it
            # (0: the caller knows it is a fresh start)
            if recovery_window > 0:
                self.authority.start_recovery(self.now(), recovery_window,
                                              listen=min(self.lost_after, recovery_window))
        for k, robot in enumerate(robots):
            x, y = poses[3 * k], poses[3 * k + 1]
            d = (roadmap.pos[:, 0] - x) ** 2 + (roadmap.pos[:, 1] - y) ** 2
            self.authority.expect(robot, int(d.argmin()), self.now())
        self._odom_subs: dict[str, Subscription] = {}   # lost robot -> its odometry
        # only a robot's own signature reserves, releases or keeps it alive; only an
        # operator's removes it; only this node's signature makes a grant
        self.auth = NodeAuth(self, identities=["traffic"], relay_keyring=True)
        names, pub = self.names, self.create_publisher
        self.updates = pub(ReservationSet, names("/traffic/updates"), qos.TABLE)
        self.lost_pub = pub(RobotNotice, names("/fleet/robot_lost"), qos.PROTOCOL)
        self.removed_pub = pub(RobotNotice, names("/fleet/robot_removed"), qos.PROTOCOL)
        self.create_service(Reserve, names("/traffic/reserve"), self._on_reserve)
        self.create_service(Release, names("/traffic/release"), self._on_release)
        self.create_service(RemoveRobot, names("/fleet/remove_robot"), self._on_remove_robot)
        events = SubscriptionEventCallbacks(liveliness=lambda _info: self._tick(),
                                            matched=self._on_state_writer_matched)
        self.guard = Guard(self.get_logger())   # what a callback cannot take is dropped
        self.guard.subscribe(self, RobotState, self.names("/fleet/robot_states"), self._on_state,
                             qos.state_qos(), event_callbacks=events)
        self.guard.subscribe(self, String, self.names("/traffic/resync"), self._on_resync,
                             qos.PROTOCOL)
        self.create_timer(0.1, self._tick)
        self.create_timer(snapshot_period, self._publish_snapshot)
        self._publish_snapshot()
        self.get_logger().info(
            f"traffic authority ready: {roadmap.num_resources} resources on {map_path or 'the bundled map'} "
            f"(roadmap {self.roadmap_id}), robots lost after {self.lost_after} s silent, "
            f"epoch {self.authority.epoch}, table {'log ' + table_log if table_log else 'in memory'}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_state_writer_matched(self, info: Any) -> None:
        if info.current_count_change > 0:   # a host's robots can be heard from now on
            self.authority.on_discovery(self.now())

    # actions and updates out -------------------------------------------------------------
    def _do(self, actions: Sequence[tc.Action]) -> None:
        for a in actions:
            if isinstance(a, tc.RobotLost):
                self.lost_pub.publish(self.auth.sign(RobotNotice(
                    robot=a.robot, reason=a.reason, stamp=self.get_clock().now().to_msg()),
                    "fleet/robot_lost"))
            elif isinstance(a, tc.RobotRemoved):
                self.removed_pub.publish(self.auth.sign(RobotNotice(
                    robot=a.robot, reason=a.reason, stamp=self.get_clock().now().to_msg()),
                    "fleet/robot_removed"))
            elif a.on:
                if a.robot not in self._odom_subs:
                    self._odom_subs[a.robot] = subscribe_odom(
                        self, self.auth, a.robot, self.guard.wrap(
                            f"/{a.robot}/odom", lambda m, r=a.robot: self._on_lost_odom(r, m),
                            lambda _m, r=a.robot: r))
            else:
                self._unsubscribe(a.robot)
        self.publish_updates()

    def publish_updates(self) -> None:
        """Publish the table's changes (written ahead to the table log by the core)."""
        self._publish(self.authority.drain())

    def _publish(self, updates: Sequence[TableUpdate]) -> None:
        stamp = self.get_clock().now().to_msg()
        for u in updates:
            self.updates.publish(self.auth.sign(table_update_msg(u, stamp), "traffic/updates"))

    def _publish_snapshot(self) -> None:
        self._publish(self.authority.snapshot(self.now()))

    def _on_resync(self, _msg: String) -> None:
        """A stale replica asks for the table: a snapshot now, or at the next tick once
        the last one is SNAPSHOT_MIN_INTERVAL old."""
        self.authority.want_snapshot()
        self._snapshot_if_due()

    def _snapshot_if_due(self) -> None:
        """A snapshot out of turn that was asked for (rate-limited by the authority)."""
        if self.authority.snapshot_due(self.now()):
            self._publish_snapshot()

    def _unsubscribe(self, robot: str) -> None:
        sub = self._odom_subs.pop(robot, None)
        if sub is None:
            return
        group = getattr(sub, "callback_group", None)
        self.destroy_subscription(sub)
        # rclpy (9.x) keeps a weak reference to every entity ever added to a callback
        # group, also once it is destroyed: drop the dead ones, or a long run with many
        # losses grows
        refs = getattr(group, "entities", None)
        if isinstance(refs, set):
            refs.difference_update([r for r in refs if r() is None])

    # services ----------------------------------------------------------------------------
    def _on_reserve(self, req: Reserve.Request, resp: Reserve.Response) -> Reserve.Response:
        return self.auth.sign(self._reserve(req, resp), "traffic/reserve#response",
                              request=req.auth)

    def _reserve(self, req: Reserve.Request, resp: Reserve.Response) -> Reserve.Response:
        if refused := self.auth.refusal(
                req, "traffic/reserve",
                subjects=[req.robot, *(s.robot for s in req.segments if s.robot)]):
            resp.version = self.authority.table.version
            resp.error = Reserve.Response.ERROR_INVALID
            resp.message = f"refused: not signed by robot {req.robot!r} ({refused})"
            return resp
        for i, s in enumerate(req.segments):
            if s.robot and s.robot != req.robot:
                resp.version = self.authority.table.version
                resp.error = Reserve.Response.ERROR_INVALID
                resp.segment_index = i
                resp.message = f"segment {i}: robot {s.robot!r} differs from the request's {req.robot!r}"
                return resp
        leases = [s.lease_expiry for s in req.segments if s.lease_expiry > 0]
        result = self.authority.request(
            req.robot, [(s.resource, s.t_start, s.t_end) for s in req.segments],
            replace_from=req.replace_from if req.replace else None,
            lease_expiry=min(leases) if leases else math.inf, roadmap_id=req.roadmap_id,
            reassert=req.reassert)
        resp.ok, resp.version, resp.epoch = result.ok, result.version, self.authority.epoch
        resp.error, resp.message = _ERROR_CODE[result.error], result.message
        resp.segment_index = result.segment_index
        if result.conflict is not None:
            resp.conflicting_segment = reservation_to_segment(result.conflict)
        self._do([])
        return resp

    def _on_release(self, req: Release.Request, resp: Release.Response) -> Release.Response:
        if self.auth.check_robot_msg(req, "traffic/release"):
            resp.released = self.authority.release(req.robot,
                                                   req.after if req.only_after else None)
        resp.version = self.authority.table.version
        self._do([])
        return self.auth.sign(resp, "traffic/release#response", request=req.auth)

    def _on_remove_robot(self, req: RemoveRobot.Request,
                         resp: RemoveRobot.Response) -> RemoveRobot.Response:
        if refused := self.auth.refusal(req, "fleet/remove_robot"):
            resp.ok = False
            resp.error = f"refused: not signed by an operator of the fleet ({refused})"
        else:
            self._remove_robot(req, resp)
        return self.auth.sign(resp, "fleet/remove_robot#response", request=req.auth)

    def _remove_robot(self, req: RemoveRobot.Request, resp: RemoveRobot.Response) -> None:
        result, actions = self.authority.remove_robot(req.robot, force=req.force,
                                                      reason=req.reason)
        resp.ok, resp.error = result.ok, result.error
        resp.released, resp.was_lost = result.released, result.was_lost
        if result.already:
            self.get_logger().info(f"robot {req.robot} was already removed")
        elif not result.ok:
            self.get_logger().warning(f"remove {req.robot!r} refused: {result.error}")
        else:
            self.get_logger().info(
                f"robot {req.robot} removed from the fleet ({'lost' if result.was_lost else 'alive'}"
                f"{', forced' if req.force else ''}{': ' + req.reason if req.reason else ''}): "
                f"{result.released} reservations released")
        self._do(actions)

    # robots ------------------------------------------------------------------------------
    def _on_state(self, msg: RobotState, info: Any) -> None:
        if not self.auth.check_state(msg):
            return
        check_robot_state(msg)
        now = self.now()
        stamp = msg.header.stamp
        sent = stamp.sec + stamp.nanosec * 1e-9
        self._do(self.authority.on_robot_state(
            now, msg.robot, [msg.task_id, *msg.queued_task_ids], incarnation_of(info),
            table_epoch=int(msg.table_epoch),
            resource=None if msg.resource == RobotState.NO_RESOURCE else int(msg.resource),
            # when it was sent, not after it arrived (a revocation it may have missed)
            sent=min(sent, now) if sent > 0 else None))
        self._snapshot_if_due()

    def _tick(self) -> None:
        recovering = self.authority.recovering
        self._do(self.authority.tick(self.now()))
        if (recovering and not self.authority.recovering) or \
                self.authority.snapshot_due(self.now()):
            self._publish_snapshot()   # agents wait for this to ask for new paths

    def _on_lost_odom(self, robot: str, msg: Odometry) -> None:
        p, tw = msg.pose.pose.position, msg.twist.twist
        moving = abs(tw.linear.x) > 0.01 or abs(tw.angular.z) > 0.05
        self._do(self.authority.on_lost_odometry(self.now(), robot, p.x, p.y, moving))


def main(args: list[str] | None = None) -> None:
    run_nodes(lambda _argv: [TrafficNode()], args)


if __name__ == "__main__":
    main()
