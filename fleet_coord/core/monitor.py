"""The independent safety monitor: does the fleet keep its own promises?

It sees only the traffic authority's table updates and where the robots really are, and
knows nothing of the agents, the dispatcher or the planner. It counts two kinds of
violation:

- **conflicts**: a reservation added to the table while another robot holds a mutually
  exclusive resource over an overlapping interval (checked on its own replica, as each
  update arrives);
- **excursions**: a robot whose footprint, at the time of a pose, sticks out of the union
  of the resources it holds at that time by more than `tolerance_m`
  (`tracking.containment_error`). A robot that holds nothing yet (not parked) is not
  checked. A pose is checked once the replica is current for its time: the authority
  stamped a change (or a snapshot) at or after it, since the updates may reach the
  monitor later than the pose of a robot already driving what they granted; and not
  while the replica is stale (an update was missed: it waits for the next snapshot
  rather than guess). Updates without a stamp (the in-process fleet hands them over as
  they are published) make every pose current.

Fed by `fleet_coord.run_monitor` (ROS: /traffic/updates and odometry) and by the
in-process fleet (the authority's updates and the driver's true poses).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import shapely

from fleet_coord.core.replica import Replica, TableUpdate
from fleet_coord.core.reservations import Exclusion
from fleet_coord.core.roadmap import Exclusion as Geometry
from fleet_coord.core.tracking import containment_error

__all__ = ["Conflict", "Excursion", "SafetyMonitor"]


@dataclass(frozen=True)
class Conflict:
    robot: str
    resource: int
    t_start: float
    t_end: float
    existing: str          # the other robot's hold it overlaps


@dataclass(frozen=True)
class Excursion:
    robot: str
    t: float
    x: float
    y: float
    outside_m: float       # how far its footprint sticks out of what it holds


class SafetyMonitor:
    def __init__(self, exclusion: Geometry, num_resources: int, roadmap_id: str = "", *,
                 tolerance_m: float = 0.1, slack_t: float = 0.05) -> None:
        self.exclusion = exclusion
        of: Exclusion = exclusion.of
        self.replica = Replica(of, num_resources, roadmap_id)
        self.tolerance_m = tolerance_m
        self.slack_t = slack_t
        self.conflicts: list[Conflict] = []
        self.excursions: list[Excursion] = []
        self.samples = 0        # poses checked
        self.updates = 0        # table updates applied
        self.gaps = 0           # updates out of order (the replica resyncs on a snapshot)
        self._held: dict[str, tuple[tuple[int, ...], Any, Any]] = {}
        self._known_until = -math.inf    # the authority's stamp of the newest change applied
        # poses (robot, t, x, y) not checked yet: newer than what the replica is current for
        self._waiting: deque[tuple[str, float, float, float]] = deque(maxlen=10_000)

    def _inside(self, robot: str, holds: list[tuple[int, float, float]], t: float,
                x: float, y: float) -> bool:
        """A quick, safe "within tolerance": the centre is inside what the robot holds at
        `t`, at depth d from its boundary, so the disc of radius r sticks out by at most
        r - d. Only when that bound exceeds the tolerance does `containment_error` say by
        how much. The union is cached while the active holds stay the same."""
        slack = self.slack_t
        active = tuple(sorted({res for res, t0, t1 in holds if t0 - slack <= t < t1 + slack}))
        if not active:
            return False
        cached = self._held.get(robot)
        if cached is None or cached[0] != active:
            held = shapely.union_all([self.exclusion.geometry(res) for res in active])
            shapely.prepare(held)
            cached = self._held[robot] = (active, held, held.boundary)
        _, held, boundary = cached
        r = self.exclusion.footprint.bounding_radius
        return bool(shapely.contains_xy(held, x, y)) and \
            r - float(shapely.distance(boundary, shapely.Point(x, y))) <= self.tolerance_m

    @property
    def violations(self) -> int:
        return len(self.conflicts) + len(self.excursions)

    def holds(self, robot: str) -> list[tuple[int, float, float]]:
        return [(h.resource, h.t_start, h.t_end) for h in self.replica.table.reservations(robot)]

    def on_update(self, update: TableUpdate, stamp: float | None = None) -> None:
        """An update of the authority, `stamp` the authority's time of it (None: now)."""
        known = math.inf if stamp is None else stamp
        if not self.replica.apply(update):
            if self.replica.stale:
                self.gaps += 1
            elif update.version <= self.replica.version:
                # nothing new (a periodic snapshot): the replica is current as of its stamp
                self._known_until = max(self._known_until, known)
                self._check_waiting()
            return
        self.updates += 1
        table = self.replica.table
        for r in update.added:
            hit = table.first_conflict(r.resource, r.t_start, r.t_end, robot=r.robot)
            if hit is not None:
                self.conflicts.append(Conflict(r.robot, r.resource, r.t_start, r.t_end,
                                               str(hit)))
        self._known_until = max(self._known_until, known)
        self._check_waiting()

    def on_pose(self, robot: str, t: float, x: float, y: float) -> None:
        """Where `robot` was at time `t` (checked once the replica is current for `t`)."""
        self._waiting.append((robot, t, x, y))
        self._check_waiting()

    def _check_waiting(self) -> None:
        while self._waiting and not self.replica.stale \
                and self._waiting[0][1] <= self._known_until:
            robot, t, x, y = self._waiting.popleft()
            holds = self.holds(robot)
            if not holds:
                continue  # not parked yet
            self.samples += 1
            if self._inside(robot, holds, t, x, y):
                continue
            err = containment_error(self.exclusion, holds, x, y, t, slack_t=self.slack_t)
            if err > self.tolerance_m:
                self.excursions.append(Excursion(robot, round(t, 3), round(x, 3),
                                                 round(y, 3), err))
