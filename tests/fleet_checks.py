"""An independent safety monitor for fleet tests: it listens to /traffic/updates and the
robots' odometry only (it knows nothing of the agents) and records every reservation
conflict and every moment a robot is outside the resources it holds."""
from __future__ import annotations

from fleet_coord_msgs.msg import ReservationSet
from nav_msgs.msg import Odometry

from fleet_coord import qos
from fleet_coord.core.tracking import containment_error
from fleet_coord.fleet_config import DEFAULT_MAP, load_roadmap_and_exclusion
from fleet_coord.table_replica import TableReplica

TOLERANCE_M = 0.1


class Monitor:
    """Listens to /traffic/updates and odometry only; knows nothing of the agents."""

    def __init__(self, node, robots, map_path: str = DEFAULT_MAP, radius: float = 0.15,
                 every: int = 5):
        self.roadmap, self.exclusion, rid = load_roadmap_and_exclusion(map_path, radius)
        self.every = every
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources, rid)
        self.conflicts, self.excursions, self.samples = [], [], 0
        self._n = {}
        node.create_subscription(ReservationSet, "/traffic/updates", self._on_update, qos.TABLE)
        for r in robots:
            node.create_subscription(Odometry, f"/{r}/odom",
                                     lambda m, r=r: self._on_odom(r, m), qos.ODOM)

    def _on_update(self, msg):
        self.replica.apply(msg)
        table = self.replica.table
        for s in msg.added:
            hit = table.first_conflict(s.resource, s.t_start, s.t_end, robot=s.robot)
            if hit is not None:
                self.conflicts.append((s.robot, s.resource, s.t_start, s.t_end, str(hit)))

    def _on_odom(self, robot, msg):
        self._n[robot] = self._n.get(robot, 0) + 1
        if self._n[robot] % self.every:
            return  # 20 Hz of 100 is plenty
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        holds = [(r.resource, r.t_start, r.t_end) for r in self.replica.table.reservations(robot)]
        if not holds:
            return  # not parked yet
        p = msg.pose.pose.position
        err = containment_error(self.exclusion, holds, p.x, p.y, t, slack_t=0.05)
        self.samples += 1
        if err > TOLERANCE_M:
            self.excursions.append((robot, t, round(p.x, 3), round(p.y, 3), err))
