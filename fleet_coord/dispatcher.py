"""dispatcher: accepts tasks, runs the Contract Net auctions, tracks execution.

| in / out | name | type |
|---|---|---|
| service | `/fleet/submit_task`, `/fleet/cancel_task` | SubmitTask, CancelTask |
| service | `/fleet/list_tasks` | ListTasks |
| pub | `/fleet/cfp`, `/fleet/awards`, `/fleet/rejections` | CallForProposal, Award, Rejection (PROTOCOL) |
| sub | `/fleet/proposals`, `/fleet/refusals` | Proposal, Refusal (PROTOCOL) |
| pub / sub | `/fleet/task_status` | TaskStatus (PROTOCOL), see below |
| sub | `/fleet/robot_states` (STATE) | RobotState |
| sub | `/fleet/robot_lost`, `/fleet/robot_removed` | RobotNotice (PROTOCOL) |
| sub | `/traffic/updates` | ReservationSet (TABLE): a replica of the reservation table |

On `/fleet/task_status` the dispatcher publishes its own states (QUEUED, ANNOUNCED,
AWARDED, FAILED, CANCELLED; robot empty except AWARDED) and hears the robots' (ACTIVE,
DONE, FAILED).

Every accepted task is in the `TaskLedger` (SQLite WAL, parameter `ledger`) before the
client hears "accepted". One core `Initiator` per open task and round: cfp with a bid
window (`bid_window`, default 0.3 s), the lowest marginal cost wins; a round without
bids is retried with exponential back-off (`RetryPolicy`) and finally fails with the
reason the robots gave. A robot's failure or loss sends its tasks back to auction (at
most `max_task_attempts` times). On start-up pending tasks are announced again and
in-flight ones must be confirmed by their robot's RobotState within `confirm_window`
seconds, else they go back to auction. A task one of whose stations a lost robot holds
for good (it stands there, or its committed path ends there) is not announced until that
robot is heard again or removed: it stays QUEUED with the reason on `/fleet/task_status`.

Robots join by speaking (their first RobotState makes them bidders) and leave when the
traffic authority announces their removal on `/fleet/robot_removed`: the dispatcher
drops them from its auctions, ignores their bids and states (until an agent started after
the removal speaks for them, fleet_coord.core.membership) and re-announces their
unfinished tasks.

Late results (a lost robot that was only cut off). The traffic authority cannot tell a
dead agent from a partitioned one, so a task whose robot was declared lost goes back to
auction while that robot may still be driving it: with the network cut nobody can tell
it to stop, and it parks on the task's last station, which no one else can then reach.
In Contract Net terms the dispatcher withdrew the contract unilaterally, but the first
contractor's inform-done still reports real work. So the dispatcher remembers the robots
it took a task from on loss, and a DONE from one of them while the task has not ended is
accepted (first completion wins, `TaskLedger.complete_late`): a running re-auction is
cancelled (its bidders get reject-proposal), a pending retry dropped, and a re-award is
withdrawn by a reject-proposal (Rejection) for the round the new robot won, which the
agent takes as a cancel (it drops the task; a leg it is driving it finishes and parks).
A DONE from the new robot that comes first ends the task as usual and the late one is
ignored. What this cannot prevent is the work being done twice when both robots get
through before either hears of the other: with a partition, a task is done at least
once, never "exactly once"; the ledger records it done once. A former holder's ACTIVE
statuses are ignored (the re-auction stands until one of them reports DONE). The ledger
records who gave a task back and whether it was lost (`TaskLedger.given_back`), so a
restarted dispatcher still takes a former holder's late DONE and does not ask robots
that gave the task back again.
"""
from __future__ import annotations

import math
import os
from collections.abc import Collection
from dataclasses import replace

from fleet_coord_msgs.msg import (Award, CallForProposal, Proposal, Refusal, Rejection,
                                  ReservationSet, RobotNotice, RobotState, TaskStatus)
from fleet_coord_msgs.msg import Task as TaskMsg
from fleet_coord_msgs.srv import CancelTask, ListTasks, SubmitTask
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from fleet_coord import qos
from fleet_coord.convert import from_time, task_to_msg, to_time
from fleet_coord.spin import run_nodes
from fleet_coord.core import contract_net as cn
from fleet_coord.core.membership import Membership, incarnation_of
from fleet_coord.core.roadmap import Roadmap
from fleet_coord.core.tasks import (DuplicateTask, LedgerError, Task, TaskError, TaskLedger,
                                    TaskState, TERMINAL_STATES)
from fleet_coord.core.yielding import parked_at
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.table_replica import TableReplica

_CODE_TO_REASON = {
    Refusal.REASON_UNREACHABLE: cn.RefuseReason.UNREACHABLE,
    Refusal.REASON_UNKNOWN_STATION: cn.RefuseReason.UNREACHABLE,
    Refusal.REASON_BATTERY: cn.RefuseReason.BATTERY,
    Refusal.REASON_PAYLOAD: cn.RefuseReason.PAYLOAD,
    Refusal.REASON_DEADLINE: cn.RefuseReason.DEADLINE,
    Refusal.REASON_BUSY: cn.RefuseReason.BUSY,
}
_STATE_CODE = {TaskState.QUEUED: TaskStatus.QUEUED, TaskState.ANNOUNCED: TaskStatus.ANNOUNCED,
               TaskState.AWARDED: TaskStatus.AWARDED, TaskState.ACTIVE: TaskStatus.ACTIVE,
               TaskState.DONE: TaskStatus.DONE, TaskState.FAILED: TaskStatus.FAILED,
               TaskState.CANCELLED: TaskStatus.CANCELLED}


def task_from_submission(m: TaskMsg, roadmap: Roadmap, now: float,
                         stations: Collection[str] | None = None) -> Task:
    """The task of a SubmitTask request as a validated core Task, accepted at `now`:
    poses are snapped to roadmap vertices (appended to `stations`), deadline 0 = none.
    Raises `TaskError` naming the bad field. `stations`: the roadmap's station names
    (pass a set when calling often)."""
    if not m.id.strip():
        raise TaskError("task id must be a non-empty string")
    names = list(m.stations)
    for i, pose in enumerate(m.poses):
        x, y = pose.position.x, pose.position.y
        if not (math.isfinite(x) and math.isfinite(y)):
            raise TaskError(f"task {m.id!r}: poses[{i}] is not finite ({x}, {y})")
        v = roadmap.vertex_at(round(x), round(y)) \
            if abs(x - round(x)) < 1e-6 and abs(y - round(y)) < 1e-6 else None
        if v is None:
            raise TaskError(f"task {m.id!r}: poses[{i}] = ({x:g}, {y:g}) is not a "
                            "vertex of the roadmap")
        names.append(roadmap.names[v])
    if m.deadline.sec < 0:
        raise TaskError(f"task {m.id!r}: deadline must be >= 0 s (0 = none), got "
                        f"{from_time(m.deadline):g}")
    # builtin_interfaces/Time wants nanosec < 1e9. (sec 2**31 - 1 plus nanosec can reach
    # 2**31 s: Task.validate refuses that, its int32 sec would wrap in the cfp.)
    if m.deadline.nanosec >= 1_000_000_000:
        raise TaskError(f"task {m.id!r}: deadline.nanosec must be < 1000000000, got "
                        f"{m.deadline.nanosec}")
    deadline = from_time(m.deadline)
    task = Task(id=m.id, kind=m.kind, stations=names, priority=int(m.priority),
                deadline=deadline if deadline > 0 else None,
                payload_kg=float(m.payload_kg), submitted_at=now)
    task.validate(set(roadmap.names) if stations is None else stations)
    return task


class Dispatcher(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dispatcher", **kwargs)
        p = self.declare_parameter
        self.roadmap, self.exclusion, roadmap_id = load_roadmap_and_exclusion(
            p("map", "").value, p("footprint_radius", 0.15).value)
        ledger = p("ledger", os.path.join(os.path.expanduser("~"), ".ros",
                                          "fleet_coord_tasks.db")).value
        os.makedirs(os.path.dirname(os.path.abspath(ledger)), exist_ok=True)
        self.bid_window = p("bid_window", 0.3).value
        self.policy = cn.RetryPolicy(base=p("retry_base", 1.0).value, factor=2.0,
                                     max_attempts=p("retry_max_rounds", 4).value)
        self.max_task_attempts = p("max_task_attempts", 3).value
        self.robot_timeout = p("robot_timeout", 2.0).value
        self.confirm_window = p("confirm_window", 3.0).value
        self.ledger = TaskLedger(ledger)   # LedgerUnusable: the process stops (spin.run_nodes)
        for problem in self.ledger.problems:
            self.get_logger().error(f"task ledger {ledger}: {problem}; the record is kept as "
                                    "it is and skipped (`fleet-coord ledger check`)")
        self.stations = set(self.roadmap.names)
        self.initiators: dict[str, cn.Initiator] = {}
        self.no_bid_rounds: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.excluded: dict[str, set[str]] = {}
        self.robots: dict[str, float] = {}           # robot -> last state (s)
        self.unconfirmed: dict[str, float] = {}      # in-flight task id -> deadline
        self.former: dict[str, set[str]] = {}        # task -> robots it was taken from on loss
        self.membership = Membership()
        self._lamport = 0
        # the reservation table, to see stations a lost robot holds for good (see _tick)
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources, roadmap_id)
        self.lost: set[str] = set()                  # declared lost, not heard since
        self.deferred: dict[str, str] = {}           # task -> why it is not announced

        group = MutuallyExclusiveCallbackGroup()
        pub, sub = self.create_publisher, self.create_subscription
        self.cfp_pub = pub(CallForProposal, "/fleet/cfp", qos.PROTOCOL)
        self.award_pub = pub(Award, "/fleet/awards", qos.PROTOCOL)
        self.reject_pub = pub(Rejection, "/fleet/rejections", qos.PROTOCOL)
        self.status_pub = pub(TaskStatus, "/fleet/task_status", qos.PROTOCOL)
        sub(Proposal, "/fleet/proposals", self._on_proposal, qos.PROTOCOL, callback_group=group)
        sub(Refusal, "/fleet/refusals", self._on_refusal, qos.PROTOCOL, callback_group=group)
        sub(TaskStatus, "/fleet/task_status", self._on_status, qos.PROTOCOL,
            callback_group=group)
        sub(RobotState, "/fleet/robot_states", self._on_robot_state, qos.state_qos(),
            callback_group=group)
        sub(RobotNotice, "/fleet/robot_lost", self._on_robot_lost, qos.PROTOCOL,
            callback_group=group)
        sub(ReservationSet, "/traffic/updates", self.replica.apply, qos.TABLE,
            callback_group=group)
        sub(RobotNotice, "/fleet/robot_removed", self._on_robot_removed, qos.PROTOCOL,
            callback_group=group)
        self.create_service(SubmitTask, "/fleet/submit_task", self._on_submit,
                            callback_group=group)
        self.create_service(CancelTask, "/fleet/cancel_task", self._on_cancel,
                            callback_group=group)
        self.create_service(ListTasks, "/fleet/list_tasks", self._on_list, callback_group=group)
        self.create_timer(0.05, self._tick, callback_group=group)
        # Restart: announce what was pending, confirm what was in flight.
        now = self.now()
        for rec in self.ledger.pending():
            self.retry_at[rec.task.id] = now + 0.5   # give robots time to be discovered
        for rec in self.ledger.in_flight():
            self.unconfirmed[rec.task.id] = now + self.confirm_window
        for rec in [*self.ledger.pending(), *self.ledger.in_flight()]:
            # who gave it back: not asked again; whose late DONE still counts (lost ones)
            gave, lost = self.ledger.given_back(rec.task.id)
            if gave:
                self.excluded[rec.task.id] = gave
            if lost:
                self.former[rec.task.id] = lost
        if self.retry_at or self.unconfirmed:
            self.get_logger().info(f"restart: {len(self.retry_at)} pending task(s) to announce, "
                                   f"{len(self.unconfirmed)} in flight to confirm")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def alive_robots(self, now: float) -> list[str]:
        return sorted(r for r, t in self.robots.items() if now - t <= self.robot_timeout)

    # -- status ---------------------------------------------------------------------------

    def _publish(self, task_id: str, state: int, robot: str = "", rnd: int = 0,
                 reason: str = "") -> None:
        self._lamport += 1
        self.status_pub.publish(TaskStatus(task_id=task_id, robot=robot, state=state,
                                           round=rnd, reason=reason, lamport=self._lamport,
                                           stamp=self.get_clock().now().to_msg()))

    # -- services -------------------------------------------------------------------------

    def _validate(self, m: TaskMsg) -> Task:
        return task_from_submission(m, self.roadmap, self.now(), self.stations)

    def _on_submit(self, req: SubmitTask.Request, resp: SubmitTask.Response):
        resp.task_id = req.task.id
        try:
            task = self._validate(req.task)
            self.ledger.submit(task, self.now())
        except DuplicateTask as e:
            # Submit is idempotent for the same task: a client that retries because the
            # response to its first request was lost (DDS services can drop a response
            # sent before the client's reader is matched) gets "accepted" again. The same
            # id with different content is a duplicate.
            prev = self.ledger.get(task.id)
            if prev is not None and replace(prev.task, submitted_at=0.0) == replace(task, submitted_at=0.0):
                resp.accepted = True
                return resp
            resp.accepted = False
            resp.error = str(e)
            self.get_logger().warning(f"submit refused: {e}")
            return resp
        except (TaskError, LedgerError, ValueError) as e:
            resp.accepted = False
            resp.error = str(e)
            self.get_logger().warning(f"submit refused: {e}")
            return resp
        self.retry_at[task.id] = self.now()
        resp.accepted = True
        self._publish(task.id, TaskStatus.QUEUED)
        return resp

    def _on_cancel(self, req: CancelTask.Request, resp: CancelTask.Response):
        rec = self.ledger.get(req.task_id)
        if rec is None:
            resp.ok, resp.error = False, f"no task {req.task_id!r}"
            return resp
        if rec.state in TERMINAL_STATES:
            resp.ok, resp.error = False, f"task {req.task_id!r} already ended ({rec.state})"
            return resp
        init = self.initiators.pop(req.task_id, None)
        if init is not None and init.state in (cn.InitiatorState.CFP_SENT,
                                               cn.InitiatorState.EVALUATING):
            self._send(init.cancel(self.now()))
        self.retry_at.pop(req.task_id, None)
        self.deferred.pop(req.task_id, None)
        self.ledger.transition(req.task_id, TaskState.CANCELLED, self.now(),
                               reason=req.reason or "cancelled by a client")
        self._publish(req.task_id, TaskStatus.CANCELLED, rec.robot or "", rec.round, req.reason)
        resp.ok = True
        return resp

    def _on_list(self, req: ListTasks.Request, resp: ListTasks.Response):
        for rec in self.ledger.list():
            if rec.state in TERMINAL_STATES and not req.include_finished:
                continue
            if req.robot and rec.robot != req.robot:
                continue
            resp.tasks.append(task_to_msg(rec.task))
            resp.statuses.append(TaskStatus(task_id=rec.task.id, robot=rec.robot or "",
                                            state=_STATE_CODE[rec.state], round=rec.round,
                                            reason=rec.reason))
        return resp

    # -- auctions -------------------------------------------------------------------------

    def _announce(self, task_id: str, now: float) -> None:
        rec = self.ledger.transition(task_id, TaskState.ANNOUNCED, now)
        robots = [r for r in self.alive_robots(now) if r not in self.excluded.get(task_id, ())]
        init = cn.Initiator(rec.task, rec.round, robots, now, self.bid_window)
        self.initiators[task_id] = init
        self.cfp_pub.publish(CallForProposal(
            task=task_to_msg(rec.task), round=rec.round,
            bid_deadline=to_time(init.deadline), initiator=self.get_name(),
            excluded_robots=sorted(self.excluded.get(task_id, ()))))
        self._publish(task_id, TaskStatus.ANNOUNCED, rnd=rec.round)

    def _send(self, actions) -> None:
        for a in actions:
            if isinstance(a, cn.AcceptProposal):
                self.award_pub.publish(Award(task_id=a.task_id, round=a.round, robot=a.robot,
                                             initiator=self.get_name()))
            else:
                init = self.initiators.get(a.task_id)
                self.reject_pub.publish(Rejection(task_id=a.task_id, round=a.round,
                                                  robot=a.robot, initiator=self.get_name(),
                                                  winner=(init.winner or "") if init else ""))

    def _on_proposal(self, m: Proposal) -> None:
        init = self.initiators.get(m.task_id)
        if init is None or self.membership.is_removed(m.robot):
            return
        try:
            self._send(init.on_message(cn.Proposal(m.robot, m.task_id, m.round, m.cost,
                                                   from_time(m.eta)), self.now()))
        except ValueError as e:
            self.get_logger().warning(f"bad proposal from {m.robot}: {e}")

    def _on_refusal(self, m: Refusal) -> None:
        init = self.initiators.get(m.task_id)
        if init is None or self.membership.is_removed(m.robot):
            return
        reason = _CODE_TO_REASON.get(m.reason_code, cn.RefuseReason.BUSY)
        self._send(init.on_message(cn.Refusal(m.robot, m.task_id, m.round, reason, m.reason),
                                   self.now()))

    def _tick(self) -> None:
        now = self.now()
        for task_id, at in list(self.retry_at.items()):
            if now >= at and (self.alive_robots(now) or now - at > 5.0):
                if self._defer(task_id, now):
                    continue
                del self.retry_at[task_id]
                try:
                    self._announce(task_id, now)
                except LedgerError as e:
                    self.get_logger().warning(f"cannot announce {task_id}: {e}")
        for task_id, init in list(self.initiators.items()):
            actions = init.tick(now)
            if init.state is cn.InitiatorState.AWARDED and actions:
                try:
                    self.ledger.transition(task_id, TaskState.AWARDED, now, robot=init.winner,
                                           auction_round=init.round)
                except LedgerError as e:
                    self.get_logger().warning(f"award of {task_id} refused: {e}")
                    del self.initiators[task_id]
                    continue
                self._send(actions)
                self._publish(task_id, TaskStatus.AWARDED, init.winner, init.round)
                del self.initiators[task_id]
                self.no_bid_rounds.pop(task_id, None)
            elif init.state is cn.InitiatorState.NO_BIDS:
                del self.initiators[task_id]
                k = self.no_bid_rounds.get(task_id, 0) + 1
                self.no_bid_rounds[task_id] = k
                decision = self.policy.after_no_bids(k, now, init)
                if isinstance(decision, cn.GiveUp):
                    self._fail(task_id, decision.reason, now)
                else:
                    self.ledger.transition(task_id, TaskState.QUEUED, now,
                                           reason=init.no_bids_reason())
                    self.retry_at[task_id] = decision.at
        for task_id, deadline in list(self.unconfirmed.items()):
            if now >= deadline:
                del self.unconfirmed[task_id]
                self._requeue(task_id, None, "its robot did not confirm it after a "
                                             "dispatcher restart", now)

    def _defer(self, task_id: str, now: float) -> bool:
        """Hold back a task while one of its stations is held for good by a lost robot
        (Known gap 4, docs/reliability.md): whoever won it would wait at that station for
        a robot that cannot yield, and fail it after `yield_wait`, again and again. The
        task stays QUEUED, with the reason on /fleet/task_status, and is announced once
        the robot is heard again (it yields like any idle robot), is removed (its holds
        are released), or is located elsewhere by the traffic authority."""
        rec = self.ledger.get(task_id)
        why = ""
        if rec is not None and self.lost and not self.replica.stale:
            for station in rec.task.stations:
                holder = parked_at(self.replica.table, self.exclusion,
                                   self.roadmap.vertex(station), "")
                if holder in self.lost:
                    why = (f"waiting: station {station} is held by lost robot {holder} "
                           f"(announced when it is back or removed)")
                    break
        if not why:
            if self.deferred.pop(task_id, None) is not None:
                self.get_logger().info(f"task {task_id}: its stations are free of lost "
                                       f"robots; announcing it")
            return False
        if self.deferred.get(task_id) != why:
            self.deferred[task_id] = why
            self.get_logger().warning(f"task {task_id} {why}")
            self._publish(task_id, TaskStatus.QUEUED, reason=why)
        self.retry_at[task_id] = now + 1.0
        return True

    def _fail(self, task_id: str, reason: str, now: float) -> None:
        try:
            self.ledger.transition(task_id, TaskState.FAILED, now, reason=reason)
        except LedgerError as e:
            self.get_logger().warning(f"cannot fail {task_id}: {e}")
            return
        self.get_logger().warning(f"task {task_id} failed: {reason}")
        self._publish(task_id, TaskStatus.FAILED, reason=reason)

    def _requeue(self, task_id: str, robot: str | None, reason: str, now: float, *,
                 lost: bool = False) -> None:
        rec = self.ledger.get(task_id)
        if rec is None or rec.state not in (TaskState.AWARDED, TaskState.ACTIVE):
            return
        if rec.attempts + 1 >= self.max_task_attempts:
            self._fail(task_id, f"{reason} (after {rec.attempts + 1} attempts)", now)
            return
        self.ledger.transition(task_id, TaskState.QUEUED, now, robot=robot or None,
                               reason=reason, lost=lost and bool(robot))
        if robot:
            self.excluded.setdefault(task_id, set()).add(robot)
            if lost:
                self.former.setdefault(task_id, set()).add(robot)
        self.retry_at[task_id] = now
        self.get_logger().info(f"task {task_id} back to auction: {reason}")

    # -- execution ------------------------------------------------------------------------

    def _on_status(self, m: TaskStatus) -> None:
        if not m.robot or m.state not in (TaskStatus.ACTIVE, TaskStatus.DONE,
                                          TaskStatus.FAILED):
            return  # our own announcements
        now = self.now()
        rec = self.ledger.get(m.task_id)
        if rec is None or rec.state in TERMINAL_STATES:
            return
        if rec.robot != m.robot:
            if m.state == TaskStatus.DONE and m.robot in self.former.get(m.task_id, ()):
                self._late_done(rec, m, now)
            return
        self.unconfirmed.pop(m.task_id, None)
        try:
            if m.state == TaskStatus.ACTIVE and rec.state is TaskState.AWARDED:
                self.ledger.transition(m.task_id, TaskState.ACTIVE, now, robot=m.robot,
                                       remote_lamport=m.lamport)
            elif m.state == TaskStatus.DONE:
                if rec.state is TaskState.AWARDED:
                    self.ledger.transition(m.task_id, TaskState.ACTIVE, now, robot=m.robot)
                self.ledger.transition(m.task_id, TaskState.DONE, now, robot=m.robot,
                                       remote_lamport=m.lamport)
            elif m.state == TaskStatus.FAILED:
                self._requeue(m.task_id, m.robot, f"{m.robot} failed: {m.reason}", now)
        except LedgerError as e:
            self.get_logger().warning(f"status {m.state} of {m.task_id} from {m.robot}: {e}")

    def _late_done(self, rec, m: TaskStatus, now: float) -> None:
        """`m.robot`, which the task was taken from when it was lost, finished it: see the
        module doc (late results)."""
        task_id = m.task_id
        init = self.initiators.pop(task_id, None)
        if init is not None and init.state in (cn.InitiatorState.CFP_SENT,
                                               cn.InitiatorState.EVALUATING):
            self._send(init.cancel(now))
        self.retry_at.pop(task_id, None)
        self.no_bid_rounds.pop(task_id, None)
        self.unconfirmed.pop(task_id, None)
        try:
            self.ledger.complete_late(task_id, m.robot, now, remote_lamport=m.lamport)
        except LedgerError as e:
            self.get_logger().warning(f"late DONE of {task_id} from {m.robot}: {e}")
            return
        self.former.pop(task_id, None)
        self.excluded.pop(task_id, None)
        if rec.state in (TaskState.AWARDED, TaskState.ACTIVE) and rec.robot:
            self.reject_pub.publish(Rejection(
                task_id=task_id, round=rec.round, robot=rec.robot, winner=m.robot,
                initiator=self.get_name(), reason=f"withdrawn: done by {m.robot}"))
        self.get_logger().info(
            f"task {task_id} done by {m.robot}, which it had been taken from when it was "
            f"lost (it was {rec.state}{' with ' + rec.robot if rec.robot else ''}"
            f"{', award withdrawn' if rec.robot else ''})")

    def _on_robot_state(self, m: RobotState, info) -> None:
        if not self.membership.heard(m.robot, incarnation_of(info)):
            return   # the old agent of a removed robot
        now = self.now()
        self.robots[m.robot] = now
        self.lost.discard(m.robot)
        for task_id in [m.task_id, *m.queued_task_ids]:
            if task_id and task_id in self.unconfirmed:
                rec = self.ledger.get(task_id)
                if rec is not None and rec.robot == m.robot:
                    del self.unconfirmed[task_id]

    def _on_robot_lost(self, m: RobotNotice) -> None:
        now = self.now()
        self.robots.pop(m.robot, None)
        self.lost.add(m.robot)
        for rec in self.ledger.in_flight():
            if rec.robot == m.robot:
                self._requeue(rec.task.id, m.robot, f"robot {m.robot} was lost", now, lost=True)

    def _on_robot_removed(self, m: RobotNotice) -> None:
        now = self.now()
        self.robots.pop(m.robot, None)
        self.lost.discard(m.robot)
        self.membership.remove(m.robot)
        requeued = []
        for rec in self.ledger.in_flight():
            if rec.robot == m.robot:
                self._requeue(rec.task.id, m.robot, f"robot {m.robot} was removed from the fleet",
                              now)
                requeued.append(rec.task.id)
        self.get_logger().info(f"robot {m.robot} removed from the fleet; tasks back to auction: "
                               f"{requeued or 'none'}")


def main(args=None) -> None:
    run_nodes(lambda _argv: [Dispatcher()], args)


if __name__ == "__main__":
    main()
