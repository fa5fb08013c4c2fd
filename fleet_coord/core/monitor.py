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

#: m the quick check erodes beyond r - tolerance (polygonal arcs err by < 0.5 mm)
EROSION_SAFETY_M = 1e-3
#: eroded unions cached (sets of resources held at once)
SHAPES_KEPT = 50_000


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
        self._eroded: dict[tuple[int, ...], Any] = {}
        self._holds: dict[str, list[tuple[int, float, float]]] = {}
        self._known_until = -math.inf    # the authority's stamp of the newest change applied
        # each robot's earliest hold seen: a pose from before it is from before the robot
        # first parked (its odometry may start before its park is granted)
        self._since: dict[str, float] = {}
        # poses (robot, t, x, y) not checked yet: newer than what the replica is current for
        self._waiting: deque[tuple[str, float, float, float]] = deque(maxlen=10_000)

    def _inside(self, robot: str, holds: list[tuple[int, float, float]], t: float,
                x: float, y: float) -> bool:
        """A quick, safe "within tolerance": the disc of radius r sticks out of what the
        robot holds at `t` by at most the tolerance when its centre lies in that union
        eroded by r - tolerance (a little more: the erosion's arcs are polygons). Only
        when it does not does `containment_error` say by how much. The eroded union is
        cached per set of resources (robots drive the same lanes over and over)."""
        slack = self.slack_t
        active = tuple(sorted({res for res, t0, t1 in holds if t0 - slack <= t < t1 + slack}))
        if not active:
            return False
        held = self._eroded.get(active)
        if held is None:
            if len(self._eroded) >= SHAPES_KEPT:
                self._eroded.clear()
            held = shapely.union_all([self.exclusion.geometry(res) for res in active])
            depth = self.exclusion.footprint.bounding_radius - self.tolerance_m
            if depth > 0:
                held = shapely.buffer(held, -(depth + EROSION_SAFETY_M), quad_segs=16)
            shapely.prepare(held)
            self._eroded[active] = held
        return bool(shapely.contains_xy(held, x, y))

    @property
    def violations(self) -> int:
        return len(self.conflicts) + len(self.excursions)

    def holds(self, robot: str) -> list[tuple[int, float, float]]:
        """`robot`'s holds [(resource, t_start, t_end)] in the replica (cached until the next
        update applies)."""
        cached = self._holds.get(robot)
        if cached is None:
            cached = self._holds[robot] = [(h.resource, h.t_start, h.t_end)
                                           for h in self.replica.table.reservations(robot)]
        return cached

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
        self._holds.clear()
        table = self.replica.table
        for r in update.added:
            self._since[r.robot] = min(self._since.get(r.robot, math.inf), r.t_start)
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
            if not holds or t < self._since.get(robot, math.inf):
                continue  # not parked yet
            self.samples += 1
            if self._inside(robot, holds, t, x, y):
                continue
            err = containment_error(self.exclusion, holds, x, y, t, slack_t=self.slack_t)
            if err > self.tolerance_m:
                self.excursions.append(Excursion(robot, round(t, 3), round(x, 3),
                                                 round(y, 3), err))
