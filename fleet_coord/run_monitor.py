"""An independent monitor of a running fleet: does the fleet keep its own promises?

It listens to ``/traffic/updates`` and to the robots' odometry only — it knows nothing
of the agents, the dispatcher or the planner — and counts two kinds of violation:

- **conflicts**: a reservation added to the table while another robot holds a mutually
  exclusive resource over an overlapping interval (checked on its own replica of the
  table, as each update arrives);
- **excursions**: a robot whose footprint, at the time stamped on its odometry, sticks
  out of the union of the resources it holds at that time by more than ``tolerance_m``
  (``core.tracking.containment_error``). A robot that holds nothing yet (not parked) is
  not checked. A sample is checked once the monitor's replica shows a table change the
  authority stamped at or after the sample's time (or a snapshot): its table updates
  may reach it later than the odometry of a robot already driving what they granted.

Used by the fleet tests and by ``fleet-coord demo``. Reads only.
"""
from __future__ import annotations

import math
from collections import deque

from fleet_coord_msgs.msg import ReservationSet
from nav_msgs.msg import Odometry

from fleet_coord import qos
from fleet_coord.convert import from_time
from fleet_coord.core.tracking import containment_error
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.table_replica import TableReplica


class RunMonitor:
    """Attach to `node`; `robots` are the names whose ``/<robot>/odom`` is checked, every
    `check_every`-th message of each robot (odometry comes faster than it needs checking).
    """

    def __init__(self, node, robots, map_path: str = "", footprint_radius: float = 0.15,
                 tolerance_m: float = 0.1, check_every: int = 5, slack_t: float = 0.05) -> None:
        self.roadmap, self.exclusion, rid = load_roadmap_and_exclusion(map_path, footprint_radius)
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources, rid)
        self.tolerance_m = tolerance_m
        self.check_every = max(1, int(check_every))
        self.slack_t = slack_t
        self.conflicts: list[tuple] = []     # (robot, resource, t_start, t_end, existing hold)
        self.excursions: list[tuple] = []    # (robot, t, x, y, metres outside)
        self.samples = 0                     # odometry samples checked
        self.updates = 0                     # table updates applied
        self.gaps = 0                        # updates that arrived out of order (replica
                                             # stale until the next snapshot: not checked)
        self.on_odom = None                  # optional hook: f(robot, t, x, y, qz, qw, v)
        self._n: dict[str, int] = {}
        self._known_until = -math.inf        # authority's stamp of the newest change applied
        # sampled odometry (robot, t, x, y) not checked yet: newer than the replica
        self._waiting: deque[tuple[str, float, float, float]] = deque(maxlen=10_000)
        node.create_subscription(ReservationSet, "/traffic/updates", self._on_update, qos.TABLE)
        for r in robots:
            node.create_subscription(Odometry, f"/{r}/odom",
                                     lambda m, r=r: self._on_odom(r, m), qos.ODOM)

    @property
    def violations(self) -> int:
        return len(self.conflicts) + len(self.excursions)

    def holds(self, robot: str) -> list[tuple[int, float, float]]:
        return [(h.resource, h.t_start, h.t_end) for h in self.replica.table.reservations(robot)]

    def _on_update(self, msg: ReservationSet) -> None:
        if not self.replica.apply(msg):
            if self.replica.stale:
                self.gaps += 1
            elif msg.version <= self.replica.version:
                # nothing new (a periodic snapshot): the replica is current as of its stamp
                self._known_until = max(self._known_until, from_time(msg.stamp))
                self._check_waiting()
            return
        self.updates += 1
        table = self.replica.table
        for s in msg.added:
            hit = table.first_conflict(s.resource, s.t_start, s.t_end, robot=s.robot)
            if hit is not None:
                self.conflicts.append((s.robot, s.resource, s.t_start, s.t_end, str(hit)))
        self._known_until = max(self._known_until, from_time(msg.stamp))
        self._check_waiting()

    def _on_odom(self, robot: str, msg: Odometry) -> None:
        t = from_time(msg.header.stamp)
        p = msg.pose.pose
        if self.on_odom is not None:
            self.on_odom(robot, t, p.position.x, p.position.y, p.orientation.z,
                         p.orientation.w, msg.twist.twist.linear.x)
        n = self._n[robot] = self._n.get(robot, 0) + 1
        if n % self.check_every:
            return
        self._waiting.append((robot, t, p.position.x, p.position.y))
        self._check_waiting()

    def _check_waiting(self) -> None:
        """Check the samples the replica is current for (see the module docstring)."""
        while self._waiting and not self.replica.stale \
                and self._waiting[0][1] <= self._known_until:
            # (stale: a lost update; wait for the next snapshot rather than guess)
            robot, t, x, y = self._waiting.popleft()
            holds = self.holds(robot)
            if not holds:
                continue  # not parked yet
            err = containment_error(self.exclusion, holds, x, y, t, slack_t=self.slack_t)
            self.samples += 1
            if err > self.tolerance_m:
                self.excursions.append((robot, round(t, 3), round(x, 3), round(y, 3), err))
