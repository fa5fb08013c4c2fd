"""An independent safety monitor for fleet tests: it listens to /traffic/updates and the
robots' poses from their driver only (odometry, or /tf; it knows nothing of the agents)
and records every reservation conflict and every moment a robot is outside the resources
it holds.

Every robot is checked, including one that holds nothing (`Containment`): before it has
ever held anything (it has not joined yet) it must stand where it was first seen; once it
has held something, holding nothing at all is an excursion, whether it moves or not (the
table no longer says it is there, so it could be granted to someone else)."""
from __future__ import annotations

import math

from fleet_coord_msgs.msg import ReservationSet
from nav_msgs.msg import Odometry
from tf2_msgs.msg import TFMessage

from fleet_coord import qos
from fleet_coord.core.tracking import containment_error
from fleet_coord.fleet_config import DEFAULT_MAP, load_roadmap_and_exclusion
from fleet_coord.table_replica import TableReplica

TOLERANCE_M = 0.1


class Containment:
    """Is a robot where the table says it may be? One judgement for the live monitor and
    the offline analysis of the multi-host tests (multihost_fleet.analyse)."""

    def __init__(self, exclusion, tolerance_m: float = TOLERANCE_M, slack_t: float = 0.05):
        self.exclusion, self.tolerance, self.slack_t = exclusion, tolerance_m, slack_t
        self.joined: set[str] = set()
        self.first: dict[str, tuple[float, float]] = {}

    def error(self, robot: str, holds, x: float, y: float, t: float) -> float:
        """How far (m) `robot` at (x, y) at time t is outside what it holds: the distance
        from where it was first seen if it never held anything, inf if it held something
        before and now holds nothing. An excursion is an error above the tolerance."""
        self.first.setdefault(robot, (x, y))
        if holds:
            self.joined.add(robot)
            return containment_error(self.exclusion, holds, x, y, t, slack_t=self.slack_t)
        if robot in self.joined:
            return math.inf
        fx, fy = self.first[robot]
        return math.hypot(x - fx, y - fy)


class Monitor:
    """Listens to /traffic/updates and the robots' poses only; knows nothing of the agents.

    `source` "odom": every `every`-th odometry message of each robot. "tf": the driver's
    `<robot>/odom -> <robot>/base_link` transforms on /tf, the same pose with the same
    stamp as its odometry (fleet_coord.frames; `map -> <robot>/odom` is the identity), all
    of a driver's robots in one message at its `tf_rate_hz` (20 Hz, what `every`=5 keeps
    of 100 Hz odometry): the same samples for a fraction of the messages to read.

    A sample at time t is judged against the table of the updates published up to t: when
    the first update published after t arrives, before it is applied (one writer delivers
    its updates in order). Judging on arrival would take a grant the robot had (the
    authority's answer to its request) for an excursion whenever the update reached the
    monitor later - as after a traffic restart, when the new process's updates arrive only
    once the monitor has discovered it (its history is kept for late readers).

    While a restarted authority re-learns what robots hold (it grants nothing but their
    re-assertions), a robot may be only where it held before the restart or what it has
    re-asserted: samples then are judged on both tables."""

    def __init__(self, node, robots, map_path: str = DEFAULT_MAP, radius: float = 0.15,
                 every: int = 5, source: str = "odom"):
        if source not in ("odom", "tf"):
            raise ValueError(f"Monitor source: expected 'odom' or 'tf', got {source!r}")
        self.roadmap, self.exclusion, rid = load_roadmap_and_exclusion(map_path, radius)
        self.every = every
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources, rid)
        self.containment = Containment(self.exclusion)
        self.conflicts: list = []
        self._excursions: list = []
        self._samples = 0
        self.unchecked = 0   # samples while the replica was stale (a missed update)
        self._pending: list[tuple[str, float, float, float]] = []   # (robot, t, x, y)
        self._whole = None       # (epoch, table) while the replica holds a whole table
        self._previous = None    # the last whole table of the incarnation before a restart
        self._n: dict[str, int] = {}
        #: each robot's latest pose sample: (stamp, x, y)
        self.last: dict[str, tuple[float, float, float]] = {}
        node.create_subscription(ReservationSet, "/traffic/updates", self._on_update, qos.TABLE)
        if source == "tf":
            self._of_frame = {f"{r}/base_link": r for r in robots}
            node.create_subscription(TFMessage, "/tf", self._on_tf, qos.TF)
            return
        for r in robots:
            node.create_subscription(Odometry, f"/{r}/odom",
                                     lambda m, r=r: self._on_odom(r, m), qos.ODOM)

    @property
    def excursions(self) -> list:
        self._judge()
        return self._excursions

    @property
    def samples(self) -> int:
        self._judge()
        return self._samples

    def _on_update(self, msg):
        # a delta that skips versions shows the table missed one: what came before it is
        # not known to have been judged on the whole table
        gap = not msg.is_snapshot and self.replica.version and \
            msg.version > self.replica.version + 1
        self._judge(before=msg.stamp.sec + msg.stamp.nanosec * 1e-9, unknown=bool(gap))
        core = self.replica.core
        epoch = core.epoch
        self.replica.apply(msg)
        if core.epoch != epoch and epoch is not None:
            whole = self._whole
            self._previous = whole[1] if whole is not None and whole[0] == epoch else None
        if not core.stale and not core.recovering:
            self._whole = (core.epoch, core.table)
        elif core.stale and msg.epoch == core.epoch:
            self._whole = None    # a gap in this incarnation: its table is not whole
        table = self.replica.table
        for s in msg.added:
            hit = table.first_conflict(s.resource, s.t_start, s.t_end, robot=s.robot)
            if hit is not None:
                self.conflicts.append((s.robot, s.resource, s.t_start, s.t_end, str(hit)))

    def _on_odom(self, robot, msg):
        self._n[robot] = self._n.get(robot, 0) + 1
        if self._n[robot] % self.every:
            return  # 20 Hz of 100 is plenty
        p = msg.pose.pose.position
        sample = (robot, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, p.x, p.y)
        self._pending.append(sample)
        self.last[robot] = sample[1:]

    def _on_tf(self, msg):
        for tf in msg.transforms:
            robot = self._of_frame.get(tf.child_frame_id)
            if robot is not None:
                p, s = tf.transform.translation, tf.header.stamp
                sample = (robot, s.sec + s.nanosec * 1e-9, p.x, p.y)
                self._pending.append(sample)
                self.last[robot] = sample[1:]

    def _judge(self, before: float = math.inf, unknown: bool = False) -> None:
        """Judge the pending samples taken before `before` against the table (all of them
        when read at the end of a run)."""
        judge = [x for x in self._pending if x[1] < before]
        if not judge:
            return
        self._pending = [x for x in self._pending if x[1] >= before]
        # a stale replica does not know what is held until the next snapshot; a restarted
        # authority without its table grants nothing but re-assertions until it has heard
        # the robots (docs/core-model.md "Authority restarts")
        core = self.replica.core
        tables = [core.table]
        if core.recovering:
            tables.append(self._previous)
        if unknown or core.stale or any(t is None for t in tables):
            self.unchecked += len(judge)
            return
        for robot, t, x, y in judge:
            holds = [(r.resource, r.t_start, r.t_end)
                     for table in tables for r in table.reservations(robot)]
            err = self.containment.error(robot, holds, x, y, t)
            self._samples += 1
            if err > TOLERANCE_M:
                self._excursions.append((robot, t, round(x, 3), round(y, 3), err))

    def check(self, min_samples: int = 1) -> None:
        """Assert: no conflict, no excursion of any robot, and the monitor looked
        (`min_samples` checked, at most 10 % of the samples unchecked)."""
        assert self.conflicts == [], self.conflicts[:5]
        assert self.excursions == [], self.excursions[:10]
        assert self.samples >= min_samples, (self.samples, self.unchecked)
        assert self.unchecked <= 0.1 * (self.samples + self.unchecked), \
            (self.unchecked, self.samples)
