"""robot_agent: one robot's autonomous agent (Contract Net participant, planner, executor).

Topics and services (all absolute names; the robot is named by the parameter `robot`,
default: the node's namespace):

| in / out | name | type | QoS |
|---|---|---|---|
| sub | `/fleet/cfp` | CallForProposal | PROTOCOL |
| pub | `/fleet/proposals`, `/fleet/refusals` | Proposal, Refusal | PROTOCOL |
| sub | `/fleet/awards`, `/fleet/rejections` | Award, Rejection | PROTOCOL |
| pub | `/fleet/task_status` | TaskStatus (ACTIVE + progress, DONE, FAILED + reason) | PROTOCOL |
| pub | `/fleet/robot_states` | RobotState, `state_rate` Hz | STATE |
| sub | `/traffic/updates` | ReservationSet (local replica of the table) | TABLE |
| client | `/traffic/reserve` | Reserve (async; never blocks the executor) | |
| pub / sub | `/<robot>/cmd_vel`, `/<robot>/odom` | Twist, Odometry (the driver interface) | COMMAND, ODOM |

Life of a task: bid the marginal travel time (core Participant over
`Roadmap.shortest_times`), refuse what it cannot reach; on accept-proposal queue it; per
station: plan with SIPP against the replica from the vertex it stands on, commit through
`/traffic/reserve` (replacing its parking hold), replan with back-off on a refused
commit, track the timed path (core.tracking), dwell, go on; at the last station it parks
(its vertex held until further notice, t_end = inf) and reports DONE.

Yielding (fleet_coord.core.yielding): an idle parked agent checks every
`yield_check_period` s whether an open task of another robot needs its spot (its next
station, or its only way there) and if so drives to the nearest vertex nobody needs. It
learns the open tasks from the cfp (stations), task-status (who is ACTIVE, how far) and
robot-lost topics. A working agent whose station is held for good by a parked robot
waits for it to yield (up to `yield_wait` s) instead of burning its plan attempts.

Revoked reservations (fleet_coord.core.revocation): while driving, the agent compares
what it committed with its replica; when the traffic authority cut its holds (a lost
robot's spot is blocked) it re-commits a plan that stops before the cut — with a
continuation to its station when SIPP finds one — and never drives past the cut.

Speeds: the robot's limits (`max_v`, `max_w`, `max_acc`, `max_alpha`) must match its
driver; it *plans* at `plan_speed` (0 = `core.tracking.plan_speed_for(limits)`, slower
than max_v so it has time to stop and turn inside a vertex star; see core/tracking.py).

Removal: when the traffic authority announces this robot on `/fleet/robot_removed`
(`fleet-coord remove-robot`), the agent stops the robot, drops its job and queue (the
dispatcher re-announces them) and stands down for good: no states, no bids, no commands.
Starting a new agent is how the robot rejoins. Another robot's removal ends what this
agent knew of that robot's task (as a loss does).

`main()` runs one agent per process, or several on one executor (fleet_coord.spin) with
`--robots a,b,c` (parameters apply to all of them).
"""
from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field

from builtin_interfaces.msg import Time
from fleet_coord_msgs.msg import (Award, CallForProposal, Proposal, Refusal, Rejection,
                                  ReservationSet, RobotState, TaskStatus)
from fleet_coord_msgs.srv import Reserve
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from fleet_coord import qos
from fleet_coord.spin import run_nodes
from fleet_coord.core import contract_net as cn
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.planner import path_to_segments, sipp
from fleet_coord.core.revocation import clip, first_uncovered, legs_done_at, stop_point
from fleet_coord.core.tasks import Task
from fleet_coord.core.tracking import CommandHistory, PathTracker, plan_speed_for, turn_time
from fleet_coord.core.yielding import OpenTask, needed_by, parked_at, yield_target
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.ideal_driver import quaternion_to_yaw, yaw_to_quaternion
from fleet_coord.table_replica import TableReplica

INF = math.inf
#: A /traffic/reserve call unanswered for this long (s of the node's clock) is given up
#: and sent again: DDS can drop a service response (seen at start-up under load).
RESERVE_TIMEOUT_S = 2.0

_REFUSE_CODE = {
    cn.RefuseReason.UNREACHABLE: Refusal.REASON_UNREACHABLE,
    cn.RefuseReason.BATTERY: Refusal.REASON_BATTERY,
    cn.RefuseReason.PAYLOAD: Refusal.REASON_PAYLOAD,
    cn.RefuseReason.BUSY: Refusal.REASON_BUSY,
    cn.RefuseReason.DEADLINE: Refusal.REASON_DEADLINE,
}


def to_time(t: float) -> Time:
    if not math.isfinite(t) or t < 0:
        return Time()
    sec = int(t)
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def from_time(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


def task_from_msg(m) -> Task:
    """fleet_coord_msgs/Task -> core Task (deadline 0 = none). Not validated here."""
    deadline = from_time(m.deadline)
    return Task(id=m.id, kind=m.kind, stations=list(m.stations), priority=int(m.priority),
                deadline=deadline if deadline > 0 else None, payload_kg=float(m.payload_kg),
                submitted_at=from_time(m.submitted_at))


@dataclass
class _Job:
    """The task being executed (or a yield move, task None): stations left, dwell, and
    what is in flight."""
    task: Task | None
    dwell: float
    round: int
    stations: list[int] = field(default_factory=list)  # vertices still to visit
    phase: str = "plan"      # plan | commit | drive | dwell
    attempts: int = 0        # refused / failed plans for the current station
    retry_at: float = 0.0
    dwell_until: float = 0.0
    legs_total: int = 1
    blocked_since: float | None = None   # its station is held by a parked robot

    @property
    def task_id(self) -> str:
        return self.task.id if self.task is not None else ""


class RobotAgent(Node):
    def __init__(self, robot: str | None = None, **kwargs) -> None:
        super().__init__("robot_agent", namespace=kwargs.pop("namespace", robot or ""),
                         **kwargs)
        p = self.declare_parameter
        ns_name = self.get_namespace().strip("/")
        self.robot = p("robot", robot or ns_name or "robot_1").value
        map_path = p("map", "").value
        radius = p("footprint_radius", 0.15).value
        self.limits = Limits(max_v=p("max_v", 1.0).value, max_w=p("max_w", 2.0).value,
                             max_acc=p("max_acc", 2.0).value,
                             max_alpha=p("max_alpha", 6.0).value)
        control_rate = p("control_rate", 20.0).value
        state_rate = p("state_rate", 10.0).value
        self.start_margin = p("start_margin", 0.6).value   # commit latency budget (s)
        # s from sending a command to its taking effect, beyond the odometry's age (which
        # the agent measures): delay compensation, core/tracking.py CommandHistory
        self.control_latency = p("control_latency", 1.0 / control_rate).value
        self.max_plan_attempts = p("max_plan_attempts", 20).value
        self.capacity_kg = p("capacity_kg", INF).value
        # what a bid measures: "travel" (marginal driving time) or "completion" (marginal
        # sum of completion times: spreads work over the fleet), core/contract_net.py
        objective = p("bid_objective", "travel").value
        if objective not in cn.OBJECTIVES:
            raise ValueError(f"parameter bid_objective must be one of "
                             f"{', '.join(cn.OBJECTIVES)}, got {objective!r}")
        self.dwell = p("dwell", 0.0).value   # seconds at each station (load / unload)
        self.yield_check_period = p("yield_check_period", 1.0).value
        self.yield_wait = p("yield_wait", 30.0).value
        self.yield_tabu = p("yield_tabu", 30.0).value
        self.roadmap, self.exclusion, self.roadmap_id = load_roadmap_and_exclusion(map_path, radius)
        speed = p("plan_speed", 0.0).value
        margin = p("turn_margin", 0.25).value   # s of control latency budget per turn
        self.plan_speed = speed if speed > 0 else plan_speed_for(
            self.limits, self.exclusion.clearance, margin)
        self.turn_allowance = turn_time(math.pi / 2, self.limits.max_w,
                                        0.7 * self.limits.max_alpha) + 0.1
        self._rng = random.Random(self.robot)
        self.participant = cn.Participant(self.robot, self._travel_time,
                                          cn.RobotProfile(capacity_kg=self.capacity_kg,
                                                         objective=objective))
        self.queue: list[Task] = []          # awarded, not started
        self._rounds: dict[str, int] = {}
        self.job: _Job | None = None
        self.tracker: PathTracker | None = None
        self.pose: tuple[float, float, float] | None = None
        self.twist = (0.0, 0.0)
        self.odom_t: float | None = None      # stamp of the last odometry (node clock)
        self.commands = CommandHistory()
        self.here: int | None = None          # vertex stood on / parked at
        self.parked = False                   # its vertex is held until further notice
        self._park_future = None
        self._park_sent = 0.0
        self._commit_future = None
        self._commit_sent = 0.0
        self._commit_path = None
        self._lamport = 0
        self._last_status = 0.0
        self._idle_stop_sent = False
        self._task_stations: dict[str, list[int]] = {}   # from cfps
        self._active: dict[str, tuple[str, float]] = {}   # task -> (robot, progress)
        self._tabu: dict[int, float] = {}                  # vertex -> tabu until
        self._next_yield_check = 0.0
        self._segments: list = []            # what the current drive committed
        self._commit_version = 0             # replica version that shows the commit
        self._checked_version = -1
        self._recommit = None                # (future, path, kind) after a cut
        self.removed = False                 # removed from the fleet: stands down
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources,
                                    self.roadmap_id)

        group = MutuallyExclusiveCallbackGroup()
        pub, sub = self.create_publisher, self.create_subscription
        self.cmd_pub = pub(Twist, f"/{self.robot}/cmd_vel", qos.COMMAND)
        self.proposal_pub = pub(Proposal, "/fleet/proposals", qos.PROTOCOL)
        self.refusal_pub = pub(Refusal, "/fleet/refusals", qos.PROTOCOL)
        self.status_pub = pub(TaskStatus, "/fleet/task_status", qos.PROTOCOL)
        self.state_pub = pub(RobotState, "/fleet/robot_states", qos.state_qos())
        sub(Odometry, f"/{self.robot}/odom", self._on_odom, qos.ODOM, callback_group=group)
        sub(CallForProposal, "/fleet/cfp", self._on_cfp, qos.PROTOCOL, callback_group=group)
        sub(Award, "/fleet/awards", self._on_award, qos.PROTOCOL, callback_group=group)
        sub(Rejection, "/fleet/rejections", self._on_rejection, qos.PROTOCOL,
            callback_group=group)
        sub(ReservationSet, "/traffic/updates", self.replica.apply, qos.TABLE,
            callback_group=group)
        sub(TaskStatus, "/fleet/task_status", self._on_task_status, qos.PROTOCOL,
            callback_group=group)
        sub(String, "/fleet/robot_lost", self._on_robot_lost, qos.PROTOCOL,
            callback_group=group)
        sub(String, "/fleet/robot_removed", self._on_robot_removed, qos.PROTOCOL,
            callback_group=group)
        self.reserve_client = self.create_client(Reserve, "/traffic/reserve",
                                                 callback_group=group)
        self.create_timer(1.0 / control_rate, self._tick, callback_group=group)
        self.create_timer(1.0 / state_rate, self._publish_state, callback_group=group)

    # -- helpers ------------------------------------------------------------------------

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _travel_time(self, a: str, b: str) -> float:
        va, vb = self.roadmap.vertex(a), self.roadmap.vertex(b)
        return float(self.roadmap.shortest_times(vb, self.plan_speed)[va])

    def _nearest_vertex(self, x: float, y: float) -> int:
        d = (self.roadmap.pos[:, 0] - x) ** 2 + (self.roadmap.pos[:, 1] - y) ** 2
        return int(d.argmin())

    def _lamport_tick(self) -> int:
        self._lamport += 1
        return self._lamport

    def busy(self) -> bool:
        return self.job is not None or bool(self.queue)

    def _core_state(self) -> cn.RobotState:
        """The plan as the Participant sees it: where the current job ends and when."""
        now = self.now()
        if self.job is not None:
            position = self.roadmap.names[self.job.stations[-1]] if self.job.stations \
                else self.roadmap.names[self.here]
            remaining = 0.0
            here = self.tracker.next_vertex if self.tracker else self.here
            for v in self.job.stations:
                remaining += float(self.roadmap.shortest_times(v, self.plan_speed)[here])
                here = v
            free_at = now + remaining
        else:
            position = self.roadmap.names[self.here]
            free_at = now
        return cn.RobotState(position=position, queue=list(self.queue), free_at=free_at,
                             now=now)

    # -- Contract Net ---------------------------------------------------------------------

    def _refuse(self, task_id: str, rnd: int, code: int, reason: str) -> None:
        self.refusal_pub.publish(Refusal(task_id=task_id, round=rnd, robot=self.robot,
                                         reason_code=code, reason=reason))

    def _on_cfp(self, msg: CallForProposal) -> None:
        task = task_from_msg(msg.task)
        try:
            self._task_stations[task.id] = [self.roadmap.vertex(s) for s in task.stations]
        except KeyError:
            pass
        if self.robot in msg.excluded_robots or self.removed:
            return
        if self.here is None:
            self._refuse(task.id, msg.round, Refusal.REASON_NOT_READY,
                         f"{self.robot} has no odometry yet")
            return
        for s in task.stations:
            try:
                self.roadmap.vertex(s)
            except KeyError as e:
                self._refuse(task.id, msg.round, Refusal.REASON_UNKNOWN_STATION, str(e))
                return
        answer = self.participant.bid(task, self._core_state(), msg.round)
        if isinstance(answer, cn.Refusal):
            self._refuse(task.id, msg.round, _REFUSE_CODE.get(answer.reason, Refusal.REASON_OTHER),
                         f"{answer.reason}: {answer.detail}")
            return
        self.proposal_pub.publish(Proposal(task_id=task.id, round=msg.round, robot=self.robot,
                                           cost=float(answer.cost), eta=to_time(answer.eta)))

    def _on_award(self, msg: Award) -> None:
        if msg.robot != self.robot or self.removed:
            return
        if self.job is not None and self.job.task_id == msg.task_id:
            return  # a duplicate award of the task it is doing
        result = self.participant.on_accept_proposal(
            cn.AcceptProposal(self.robot, msg.task_id, msg.round), self._core_queue())
        if isinstance(result, cn.Failure):
            self._status(msg.task_id, TaskStatus.FAILED, msg.round, reason=result.reason)
            return
        self._rounds[msg.task_id] = msg.round
        self.get_logger().info(f"awarded {msg.task_id} (round {msg.round}), queue "
                               f"{[t.id for t in self.queue]}")

    def _core_queue(self) -> cn.RobotState:
        # on_accept_proposal inserts into state.queue in place: hand it our queue.
        state = self._core_state()
        state.queue = self.queue
        return state

    def _on_rejection(self, msg: Rejection) -> None:
        if msg.robot == self.robot:
            self.participant.on_reject_proposal(
                cn.RejectProposal(self.robot, msg.task_id, msg.round))

    def _status(self, task_id: str, state: int, rnd: int, progress: float = 0.0,
                reason: str = "") -> None:
        self.status_pub.publish(TaskStatus(
            task_id=task_id, robot=self.robot, state=state, round=rnd,
            progress=float(progress), reason=reason, stamp=self.get_clock().now().to_msg(),
            lamport=self._lamport_tick()))

    # -- what the others are doing (for yielding) -----------------------------------------

    def _on_task_status(self, m: TaskStatus) -> None:
        if m.state == TaskStatus.ACTIVE and m.robot and m.robot != self.robot:
            if m.task_id in self._task_stations:
                self._active[m.task_id] = (m.robot, float(m.progress))
        elif m.state in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED):
            self._active.pop(m.task_id, None)
            if m.state != TaskStatus.FAILED:
                self._task_stations.pop(m.task_id, None)

    def _on_robot_lost(self, m: String) -> None:
        for tid, (robot, _) in list(self._active.items()):
            if robot == m.data:
                del self._active[tid]

    def _on_robot_removed(self, m: String) -> None:
        if m.data != self.robot:
            self._on_robot_lost(m)
            return
        if self.removed:
            return
        self.removed = True
        dropped = ([self.job.task_id] if self.job is not None and self.job.task_id else []) \
            + [t.id for t in self.queue]
        self.job, self.tracker = None, None
        self.queue.clear()
        self._stop()
        self.get_logger().warning(
            f"{self.robot} was removed from the fleet: stopped and standing down (tasks "
            f"dropped, the dispatcher re-announces them: {dropped or 'none'}); start a new "
            "agent for it to rejoin")

    def open_tasks(self) -> list[OpenTask]:
        out = []
        for tid, (robot, progress) in sorted(self._active.items()):
            stations = self._task_stations.get(tid)
            if not stations:
                continue
            k = min(int(progress * len(stations) + 1e-6), len(stations) - 1)
            out.append(OpenTask(tid, robot, stations[k], tuple(stations[k + 1:])))
        return out

    def _maybe_yield(self, now: float) -> None:
        tasks = self.open_tasks()
        if not tasks or self.replica.stale:
            return
        table = self.replica.table
        need = needed_by(self.robot, self.here, tasks, table, self.roadmap, self.exclusion,
                         now, self.plan_speed)
        if need is None:
            return
        tabu = [v for v, until in self._tabu.items() if until > now]
        target = yield_target(self.robot, self.here, tasks, table, self.roadmap,
                              self.exclusion, now, self.plan_speed, tabu=tabu)
        name = self.roadmap.names
        if target is None:
            self.get_logger().warning(f"{need.robot} needs my spot {name[self.here]} for "
                                      f"{need.task_id} but there is nowhere to yield to")
            return
        self.get_logger().info(f"yielding {name[self.here]} to {need.robot} ({need.task_id}, "
                               f"heading to {name[need.goal]}): moving to {name[target]}")
        self._tabu[self.here] = now + self.yield_tabu
        self.job = _Job(task=None, dwell=0.0, round=0, stations=[target])

    def _stop(self) -> None:
        self.cmd_pub.publish(Twist())
        self.commands.clear()

    # -- inputs ---------------------------------------------------------------------------

    def _on_odom(self, msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        self.pose = (msg.pose.pose.position.x, msg.pose.pose.position.y,
                     quaternion_to_yaw(q.x, q.y, q.z, q.w))
        self.twist = (msg.twist.twist.linear.x, msg.twist.twist.angular.z)
        self.odom_t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if self.here is None:
            self.here = self._nearest_vertex(self.pose[0], self.pose[1])

    # -- the control loop -----------------------------------------------------------------

    def _tick(self) -> None:
        if self.pose is None or self.here is None or self.removed:
            return
        now = self.now()
        if not self.parked:
            self._park(now)
        if self.job is None and self.queue and self.parked:
            self._start(self.queue.pop(0), now)
        if self.job is None and self.parked and now >= self._next_yield_check:
            self._next_yield_check = now + self.yield_check_period
            self._maybe_yield(now)
        if self.job is None:
            if not self._idle_stop_sent:
                self._stop()
                self._idle_stop_sent = True
            return
        self._idle_stop_sent = False
        job = self.job
        if job.phase == "plan" and now >= job.retry_at:
            self._plan(job, now)
        elif job.phase == "commit":
            self._check_commit(job, now)
        elif job.phase == "drive":
            self._drive(job, now)
        elif job.phase == "dwell" and now >= job.dwell_until:
            self._next_station(job, now)
        if job.phase != "drive":
            self._stop()

    def _park(self, now: float) -> None:
        """Hold the vertex it stands on until further notice (at start-up)."""
        if self._park_future is None:
            if not self.reserve_client.service_is_ready():
                return
            req = Reserve.Request(robot=self.robot, roadmap_id=self.roadmap_id, replace=True,
                                  replace_from=now)
            req.segments = [_segment(self.robot, self.here, now, INF)]
            self._park_future = self.reserve_client.call_async(req)
            self._park_sent = now
            return
        if not self._park_future.done():
            if now - self._park_sent > RESERVE_TIMEOUT_S:
                # DDS can drop a response sent before the server matched our reader:
                # ask again (holding the vertex it stands on is idempotent)
                self.reserve_client.remove_pending_request(self._park_future)
                self._park_future = None
            return
        resp = self._park_future.result()
        self._park_future = None
        if resp is not None and resp.ok:
            self.parked = True
            self.get_logger().info(f"parked at {self.roadmap.names[self.here]}")
        else:
            self.get_logger().warning(
                f"cannot hold my start vertex {self.roadmap.names[self.here]}: "
                f"{resp.message if resp else 'no answer'}; retrying")

    def _start(self, task: Task, now: float) -> None:
        stations = [self.roadmap.vertex(s) for s in task.stations]
        self.job = _Job(task=task, dwell=self.dwell,
                        round=self._rounds.pop(task.id, 0), stations=stations,
                        legs_total=len(stations))
        self._status(task.id, TaskStatus.ACTIVE, self.job.round, 0.0)
        self._last_status = now

    def _plan(self, job: _Job, now: float) -> None:
        goal = job.stations[0]
        if goal == self.here:
            self._arrived(job, now)
            return
        holder = parked_at(self.replica.table, self.exclusion, goal, self.robot)
        if holder is not None and job.task is not None:
            # A robot is parked on the station for good: it yields (core.yielding) when
            # it is idle; waiting costs no plan attempt, but only so long.
            if job.blocked_since is None:
                job.blocked_since = now
                self.get_logger().info(f"station {self.roadmap.names[goal]} is held by "
                                       f"{holder}; waiting for it to yield")
            if now - job.blocked_since > self.yield_wait:
                self._finish(job, TaskStatus.FAILED,
                             f"station {self.roadmap.names[goal]} stayed held by {holder} "
                             f"for {self.yield_wait:g} s")
            else:
                job.retry_at = now + 0.3
            return
        job.blocked_since = None
        t_start = now + self.start_margin + self.turn_allowance
        path = sipp(self.roadmap, self.exclusion, self.replica.table, self.robot, self.here,
                    goal, t_start, self.plan_speed, deadline_s=0.5)
        if path is None:
            self._retry(job, now, f"no conflict-free path from {self.roadmap.names[self.here]} "
                                  f"to station {self.roadmap.names[goal]} (it may be occupied)")
            return
        path = [(self.here, now)] + path
        segments = path_to_segments(self.roadmap, self.exclusion, path, self.plan_speed)
        req = Reserve.Request(robot=self.robot, roadmap_id=self.roadmap_id, replace=True,
                              replace_from=now)
        req.segments = [_segment(self.robot, r, a, b) for r, a, b in segments]
        self._commit_future = self.reserve_client.call_async(req)
        self._commit_sent = now
        self._commit_path = path
        self._commit_segments = segments
        job.phase = "commit"

    def _retry(self, job: _Job, now: float, reason: str) -> None:
        job.attempts += 1
        if job.attempts >= self.max_plan_attempts:
            self._finish(job, TaskStatus.FAILED, f"{reason}; gave up after {job.attempts} "
                                                 "attempts")
            return
        job.phase = "plan"
        job.retry_at = now + min(2.0, 0.1 * 1.5 ** job.attempts) * (0.5 + self._rng.random())

    def _check_commit(self, job: _Job, now: float) -> None:
        if not self._commit_future.done():
            if now - self._commit_sent > RESERVE_TIMEOUT_S:
                # a lost response (see _park): whatever was granted is replaced by the
                # next commit (replace=True), so plan again
                self.reserve_client.remove_pending_request(self._commit_future)
                self._commit_future = None
                self._retry(job, now, "no answer from /traffic/reserve")
            return
        resp = self._commit_future.result()
        self._commit_future = None
        path = self._commit_path
        if resp is None or not resp.ok:
            self._retry(job, now, f"reservation refused: {resp.message if resp else 'no answer'}")
            return
        # The parking hold was replaced by the path; it parks again at the path's end.
        first_departure = next((t for (v, t), (w, _) in zip(path[1:], path[2:]) if w != v),
                               path[-1][1])
        if now > first_departure - self.turn_allowance:
            self.get_logger().warning(f"commit answered {now - first_departure:.2f} s after "
                                      "the planned departure; replanning")
            job.phase = "plan"
            return
        self.tracker = PathTracker(self.roadmap, path, self.plan_speed,
                                   self.exclusion.clearance, self.limits)
        self.tracker_path = list(path)
        self._segments = self._commit_segments
        self._commit_version = resp.version
        self._checked_version = -1
        self._recommit = None
        job.phase = "drive"

    # -- revoked reservations ---------------------------------------------------------

    def _legs_driven(self) -> int:
        return self.tracker.index + int(self.tracker.driving)

    def _check_cut(self, job: _Job, now: float) -> None:
        """Did the authority take part of the committed plan away? Then stop before the
        cut (and go on from there when SIPP finds a way)."""
        rep = self.replica
        if rep.stale or rep.version < self._commit_version or rep.version == self._checked_version:
            return
        self._checked_version = rep.version
        cut = first_uncovered(rep.table, self.robot, self._segments, now)
        if cut is None:
            return
        path = self.tracker_path
        k = stop_point(rep.table, self.roadmap, self.exclusion, self.robot, path,
                       self.plan_speed, cut, self._legs_driven())
        name = self.roadmap.names
        if k is None:
            self.get_logger().error(f"my reservations were revoked from t={cut:.2f} and I "
                                    "cannot reach a free stop point; stopping here")
            self._stop_here(job, now)
            return
        prefix = list(path[:k + 1])
        self.get_logger().warning(f"my reservations were revoked from t={cut:.2f}: stopping "
                                  f"at {name[prefix[-1][0]]} and replanning")
        # Stop there whatever the authority answers: everything up to it is still ours.
        self._set_tracker(prefix)
        self._segments = clip(path_to_segments(self.roadmap, self.exclusion, prefix,
                                               self.plan_speed), now)
        plan = prefix
        goal = job.stations[0]
        v, t_v = prefix[-1]
        if v != goal:
            t0 = max(t_v, now + self.start_margin + self.turn_allowance)
            cont = sipp(self.roadmap, self.exclusion, rep.table, self.robot, v, goal, t0,
                        self.plan_speed, deadline_s=0.2)
            if cont is not None:
                plan = prefix + [(v, t0)] + cont[1:] if t0 > t_v else prefix + cont[1:]
        self._send_recommit(plan, now)

    def _send_recommit(self, plan, now: float) -> None:
        segs = clip(path_to_segments(self.roadmap, self.exclusion, plan, self.plan_speed), now)
        req = Reserve.Request(robot=self.robot, roadmap_id=self.roadmap_id, replace=True,
                              replace_from=now)
        req.segments = [_segment(self.robot, r, a, b) for r, a, b in segs]
        self._recommit = (self.reserve_client.call_async(req), plan, segs)

    def _check_recommit(self, job: _Job, now: float) -> None:
        fut, plan, segs = self._recommit
        if not fut.done():
            return
        self._recommit = None
        resp = fut.result()
        stop = self.tracker_path
        if resp is not None and resp.ok:
            self._commit_version = resp.version
            self._checked_version = -1
            if len(plan) > len(stop):
                # the continuation: only if the robot has not passed the stop point yet
                # and the next departure is still ahead
                departures = [t for (u, _), (w, t) in zip(plan[len(stop) - 1:],
                                                          plan[len(stop):]) if w != u]
                if self._legs_driven() <= legs_done_at(stop)[-1] and departures:
                    self._set_tracker(plan)
            self._segments = segs
            return
        if len(plan) > len(stop):
            self._send_recommit(stop, now)   # at least the stop point
            return
        self.get_logger().error(f"cannot hold my stop point: "
                                f"{resp.message if resp else 'no answer'}; stopping here")
        self._stop_here(job, now)

    def _set_tracker(self, path) -> None:
        old = self.tracker
        new = PathTracker(self.roadmap, path, self.plan_speed, self.exclusion.clearance,
                          self.limits)
        if old is not None:
            new.index, new.driving, new.reverse = old.index, old.driving, old.reverse
        self.tracker = new
        self.tracker_path = list(path)

    def _stop_here(self, job: _Job, now: float) -> None:
        self._stop()
        self.here = self.tracker.vertex if self.tracker else self.here
        self.tracker = None
        self._recommit = None
        job.phase = "plan"
        job.retry_at = now + 0.5
        self.parked = False   # hold where it stands again before anything else

    def _drive(self, job: _Job, now: float) -> None:
        if self._recommit is not None:
            self._check_recommit(job, now)
        else:
            self._check_cut(job, now)
        if job.phase != "drive":
            return
        x, y, th = self.pose
        # Act on where the robot will be when this command takes effect (see
        # CommandHistory). An odometry stamp far from our clock (a driver on another
        # clock) is not trusted: then the pose is taken as of now.
        t_odom = self.odom_t if self.odom_t is not None and abs(self.odom_t - now) < 1.0 \
            else now
        t_apply = max(now, t_odom) + self.control_latency
        x, y, th = self.commands.predict(x, y, th, t_odom, t_apply)
        cmd = self.tracker.command(x, y, th, t_apply)
        self.commands.record(t_apply, cmd.v, cmd.w)
        self.here = cmd.vertex
        twist = Twist()
        twist.linear.x, twist.angular.z = float(cmd.v), float(cmd.w)
        self.cmd_pub.publish(twist)
        if now - self._last_status > 0.5 and job.task is not None:
            done = job.legs_total - len(job.stations)
            self._status(job.task.id, TaskStatus.ACTIVE, job.round,
                         (done + cmd.progress) / job.legs_total)
            self._last_status = now
        if cmd.arrived:
            self.here = self.tracker.goal
            self.tracker = None
            if self.here == job.stations[0]:
                self._arrived(job, now)
            else:   # a stop point after a cut: plan on from here
                job.phase = "plan"
                job.retry_at = now

    def _arrived(self, job: _Job, now: float) -> None:
        job.stations.pop(0)
        job.attempts = 0
        job.phase = "dwell"
        job.dwell_until = now + job.dwell
        if job.stations and job.task is not None:
            # tell the others where it heads next (they may be parked there)
            done = job.legs_total - len(job.stations)
            self._status(job.task.id, TaskStatus.ACTIVE, job.round, done / job.legs_total)
            self._last_status = now

    def _next_station(self, job: _Job, now: float) -> None:
        if job.stations:
            job.phase = "plan"
            job.retry_at = now
        else:
            self._finish(job, TaskStatus.DONE)

    def _finish(self, job: _Job, state: int, reason: str = "") -> None:
        self.job = None
        if job.task is None:   # a yield move: nobody to report to
            if state == TaskStatus.FAILED:
                self.get_logger().warning(f"could not yield: {reason}")
            return
        self._status(job.task.id, state, job.round, 1.0 if state == TaskStatus.DONE else 0.0,
                     reason)
        if state == TaskStatus.FAILED:
            self.get_logger().warning(f"task {job.task.id} failed: {reason}")

    # -- state ----------------------------------------------------------------------------

    def _publish_state(self) -> None:
        if self.removed:
            return
        msg = RobotState(robot=self.robot, battery=1.0, lamport=self._lamport_tick())
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "map"
        if self.pose is not None:
            x, y, th = self.pose
            msg.pose.position.x, msg.pose.position.y = x, y
            o = msg.pose.orientation
            o.x, o.y, o.z, o.w = yaw_to_quaternion(th)
            msg.twist.linear.x, msg.twist.angular.z = self.twist
        if self.job is None:
            msg.mode = RobotState.IDLE
        else:
            msg.task_id = self.job.task_id
            msg.mode = RobotState.MOVING if self.job.phase == "drive" else RobotState.WAITING
        msg.queued_task_ids = [t.id for t in self.queue]
        if self.here is not None:
            msg.vertex = self.here
        self.state_pub.publish(msg)


def _segment(robot: str, resource: int, t0: float, t1: float):
    from fleet_coord_msgs.msg import ReservationSegment
    return ReservationSegment(robot=robot, resource=int(resource), t_start=float(t0),
                              t_end=float(t1))


def main(args=None) -> None:
    """One agent (`robot` parameter or namespace), or several in this process:
    `--robots a,b,c` (a large simulated fleet), all on one executor."""
    argv = list(sys.argv if args is None else args)
    robots: list[str] = []
    if "--robots" in argv:
        i = argv.index("--robots")
        robots = [r for r in argv[i + 1].split(",") if r]
        del argv[i:i + 2]
    run_nodes(lambda _argv: [RobotAgent(r) for r in robots] if robots else [RobotAgent()],
              argv)

if __name__ == "__main__":
    main()
