"""The independent safety monitor of a running ROS fleet (fleet_coord.core.monitor: what
it checks and when) fed from ``/traffic/updates`` and the robots' odometry only; it knows
nothing of the agents, the dispatcher or the planner. Used by the fleet tests and by
``fleet-coord demo``. Reads only.
"""
from __future__ import annotations

from typing import Any, Callable

from fleet_coord_msgs.msg import ReservationSet
from nav_msgs.msg import Odometry

from fleet_coord import qos
from fleet_coord.convert import from_time, table_update_from_msg
from fleet_coord.core.monitor import SafetyMonitor
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.namespace import names_of


class RunMonitor:
    """Attach to `node`; `robots` are the names whose ``/<robot>/odom`` is checked, every
    `check_every`-th message of each robot (odometry comes faster than it needs checking).
    """

    def __init__(self, node: Any, robots: list[str], map_path: str = "",
                 footprint_radius: float = 0.15, tolerance_m: float = 0.1,
                 check_every: int = 5, slack_t: float = 0.05) -> None:
        self.roadmap, self.exclusion, rid = load_roadmap_and_exclusion(map_path, footprint_radius)
        self.core = SafetyMonitor(self.exclusion, self.roadmap.num_resources, rid,
                                  tolerance_m=tolerance_m, slack_t=slack_t)
        self.check_every = max(1, int(check_every))
        #: optional hook: f(robot, t, x, y, qz, qw, v) for every odometry message
        self.on_odom: Callable[..., None] | None = None
        self._n: dict[str, int] = {}
        names = names_of(node)
        node.create_subscription(ReservationSet, names("/traffic/updates"), self._on_update,
                                 qos.TABLE)
        for r in robots:
            node.create_subscription(Odometry, names(f"/{r}/odom"),
                                     lambda m, r=r: self._on_odom(r, m), qos.ODOM)

    @property
    def conflicts(self) -> list[tuple]:
        """(robot, resource, t_start, t_end, the existing hold)"""
        return [(c.robot, c.resource, c.t_start, c.t_end, c.existing) for c in self.core.conflicts]

    @property
    def excursions(self) -> list[tuple]:
        """(robot, t, x, y, metres outside)"""
        return [(e.robot, e.t, e.x, e.y, e.outside_m) for e in self.core.excursions]

    @property
    def samples(self) -> int:
        return self.core.samples

    @property
    def updates(self) -> int:
        return self.core.updates

    @property
    def gaps(self) -> int:
        return self.core.gaps

    @property
    def violations(self) -> int:
        return self.core.violations

    def holds(self, robot: str) -> list[tuple[int, float, float]]:
        return self.core.holds(robot)

    def _on_update(self, msg: ReservationSet) -> None:
        stamp = from_time(msg.stamp)
        if self.core.replica.wants(msg.version, msg.is_snapshot, msg.roadmap_id):
            self.core.on_update(table_update_from_msg(msg), stamp)
        else:   # nothing new; a snapshot still says the replica is current as of its stamp
            self.core.on_update(table_update_from_msg(msg, segments=False), stamp)

    def _on_odom(self, robot: str, msg: Odometry) -> None:
        t = from_time(msg.header.stamp)
        p = msg.pose.pose
        if self.on_odom is not None:
            self.on_odom(robot, t, p.position.x, p.position.y, p.orientation.z,
                         p.orientation.w, msg.twist.twist.linear.x)
        n = self._n[robot] = self._n.get(robot, 0) + 1
        if n % self.check_every:
            return
        self.core.on_pose(robot, t, p.position.x, p.position.y)
