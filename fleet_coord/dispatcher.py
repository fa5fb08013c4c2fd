"""dispatcher: the node of the dispatcher core (fleet_coord.core.dispatch), which accepts
tasks, runs the Contract Net auctions and follows their execution. This node only turns
messages into core calls and the core's actions into messages.

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
| pub | `/traffic/resync` | std_msgs/String (PROTOCOL): asks for a snapshot while the replica is stale |

On `/fleet/task_status` the dispatcher publishes its own states (QUEUED, ANNOUNCED,
AWARDED, FAILED, CANCELLED; robot empty except AWARDED) and hears the robots' (ACTIVE,
DONE, FAILED).

Parameters: `map`, `footprint_radius`, `ledger` (the SQLite task ledger, default
`~/.ros/fleet_coord_tasks.db`), `bid_window`, `retry_base`, `retry_max_rounds`,
`max_task_attempts`, `robot_timeout`, `confirm_window`, `restart_grace`
(fleet_coord.core.dispatch.DispatchConfig). Robots are told apart across restarts of
their agents by the DDS GID of their state publisher (fleet_coord.core.membership).
"""
from __future__ import annotations

import math
import functools
import os
from collections.abc import Collection, Sequence
from typing import Any

from fleet_coord_msgs.msg import (Award, CallForProposal, Proposal, Refusal, Rejection,
                                  ReservationSet, RobotNotice, RobotState, TaskStatus)
from fleet_coord_msgs.msg import Task as TaskMsg
from fleet_coord_msgs.srv import CancelTask, ListTasks, SubmitTask
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from fleet_coord import qos
from fleet_coord.convert import (STATE_CODE, from_time, proposal_from_msg, refusal_from_msg,
                                 state_from_code, task_to_msg, to_time)
from fleet_coord.core import contract_net as cn
from fleet_coord.core import dispatch as dp
from fleet_coord.core.membership import incarnation_of
from fleet_coord.core.roadmap import Roadmap
from fleet_coord.core.tasks import TERMINAL_STATES, Task, TaskError, TaskLedger
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.guard import Guard, check_robot_state
from fleet_coord.node_auth import NodeAuth
from fleet_coord.namespace import FleetNames
from fleet_coord.execute_task import ExecuteTaskServer
from fleet_coord.spin import run_nodes
from fleet_coord.table_replica import ResyncRequester, TableReplica

__all__ = ["Dispatcher", "task_from_submission", "task_to_msg"]


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
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("dispatcher", **kwargs)
        self.names = FleetNames.of_node(self)
        p = self.declare_parameter
        self.roadmap, self.exclusion, roadmap_id = load_roadmap_and_exclusion(
            p("map", "").value, p("footprint_radius", 0.15).value)
        ledger = p("ledger", os.path.join(os.path.expanduser("~"), ".ros",
                                          "fleet_coord_tasks.db")).value
        os.makedirs(os.path.dirname(os.path.abspath(ledger)), exist_ok=True)
        config = dp.DispatchConfig(
            bid_window=p("bid_window", 0.3).value,
            retry=cn.RetryPolicy(base=p("retry_base", 1.0).value, factor=2.0,
                                 max_attempts=p("retry_max_rounds", 4).value,
                                 max_delay=dp.SILENT_RETRY_MAX_DELAY),
            max_task_attempts=p("max_task_attempts", 3).value,
            robot_timeout=p("robot_timeout", 2.0).value,
            confirm_window=p("confirm_window", 3.0).value,
            restart_grace=p("restart_grace", 10.0).value,
            # pool: batch rounds, one unstarted task per robot; per_task: each round alone
            allocation=p("allocation", "pool").value,
            pool_period=p("pool_period", 5.0).value,
            pool_batch=p("pool_batch", 0).value,
            name=self.get_name())
        self.stations = set(self.roadmap.names)
        # the reservation table, to see stations a lost robot holds for good
        self.replica = TableReplica(self.exclusion.of, self.roadmap.num_resources, roadmap_id)
        task_ledger = TaskLedger(ledger)   # LedgerUnusable: the process stops (spin.run_nodes)
        for problem in task_ledger.problems:
            self.get_logger().error(f"task ledger {ledger}: {problem}; the record is kept as "
                                    "it is and skipped (`fleet-coord ledger check`)")
        # only an operator submits and cancels; a robot bids, refuses and reports for itself
        self.auth = NodeAuth(self, identities=["dispatcher"])
        # proposals taken after the cheap checks, by (task, round, robot): the signature of
        # one is checked only if it is about to win (`_authentic`); checking all of them
        # one after another held every auction round back (docs/benchmarks.md)
        self._proposals: dict[tuple[str, int, str], tuple[Proposal, bool]] = {}
        self._pruned_at = 0.0
        self.core = dp.Dispatch(task_ledger, config, self.now(), roadmap=self.roadmap,
                                exclusion=self.exclusion, replica=self.replica.core,
                                log=self.get_logger(),
                                authentic=self._authentic if self.auth.enabled else None)
        group = MutuallyExclusiveCallbackGroup()
        self.guard = Guard(self.get_logger())   # what a callback cannot take is dropped
        pub = self.create_publisher
        sub = functools.partial(self.guard.subscribe, self)
        self.cfp_pub = pub(CallForProposal, self.names("/fleet/cfp"), qos.PROTOCOL)
        self.award_pub = pub(Award, self.names("/fleet/awards"), qos.PROTOCOL)
        self.reject_pub = pub(Rejection, self.names("/fleet/rejections"), qos.PROTOCOL)
        self.status_pub = pub(TaskStatus, self.names("/fleet/task_status"), qos.PROTOCOL)
        sub(Proposal, self.names("/fleet/proposals"), self._on_proposal, qos.PROTOCOL,
            callback_group=group)
        sub(Refusal, self.names("/fleet/refusals"), self._on_refusal, qos.PROTOCOL,
            callback_group=group)
        sub(TaskStatus, self.names("/fleet/task_status"), self._on_status, qos.PROTOCOL,
            callback_group=group)
        sub(RobotState, self.names("/fleet/robot_states"), self._on_robot_state, qos.state_qos(),
            callback_group=group)
        sub(RobotNotice, self.names("/fleet/robot_lost"), self._on_robot_lost, qos.PROTOCOL,
            callback_group=group)
        sub(ReservationSet, self.names("/traffic/updates"), self._on_update, qos.TABLE,
            callback_group=group)
        sub(RobotNotice, self.names("/fleet/robot_removed"), self._on_robot_removed, qos.PROTOCOL,
            callback_group=group)
        # a stale replica asks for the table at once (the next snapshot is up to 5 s away)
        self.resync = ResyncRequester(self, self.names, self.get_name(),
                                      lambda: [self.replica.core], callback_group=group)
        self.create_service(SubmitTask, self.names("/fleet/submit_task"), self._on_submit,
                            callback_group=group)
        self.create_service(CancelTask, self.names("/fleet/cancel_task"), self._on_cancel,
                            callback_group=group)
        self.create_service(ListTasks, self.names("/fleet/list_tasks"), self._on_list,
                            callback_group=group)
        self.execute_task = ExecuteTaskServer(self, self._submit, self._cancel, self.auth.check,
                                              callback_group=group)
        self.create_timer(0.05, self._tick, callback_group=group)

    @property
    def ledger(self) -> TaskLedger:
        return self.core.ledger

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def alive_robots(self, now: float) -> list[str]:
        return self.core.alive_robots(now)

    # -- actions out ----------------------------------------------------------------------

    def _send(self, actions: Sequence[dp.Action]) -> None:
        name, sign = self.get_name(), self.auth.sign
        for a in actions:
            if isinstance(a, dp.StatusUpdate):
                self.status_pub.publish(sign(TaskStatus(
                    task_id=a.task_id, robot=a.robot, state=STATE_CODE[a.state], round=a.round,
                    reason=a.reason, lamport=a.lamport, stamp=self.get_clock().now().to_msg()),
                    "fleet/task_status"))
            elif isinstance(a, dp.CallForProposals):
                self.cfp_pub.publish(sign(CallForProposal(
                    task=task_to_msg(a.task), round=a.round, bid_deadline=to_time(a.bid_deadline),
                    initiator=name, excluded_robots=list(a.excluded)), "fleet/cfp"))
            elif isinstance(a, dp.Award):
                self.award_pub.publish(sign(Award(task_id=a.task_id, round=a.round,
                                                  robot=a.robot, initiator=name), "fleet/awards"))
            else:
                self.reject_pub.publish(sign(Rejection(
                    task_id=a.task_id, round=a.round, robot=a.robot, winner=a.winner,
                    reason=a.reason, initiator=name), "fleet/rejections"))

    # -- messages in ----------------------------------------------------------------------

    def _on_submit(self, req: SubmitTask.Request, resp: SubmitTask.Response) -> SubmitTask.Response:
        if refused := self.auth.refusal(req, "fleet/submit_task"):
            resp.accepted = False
            resp.error = f"refused: not signed by an operator of the fleet ({refused})"
        else:
            self._submit(req, resp)
        return self.auth.sign(resp, "fleet/submit_task#response", request=req.auth)

    def _submit(self, req: SubmitTask.Request, resp: SubmitTask.Response) -> SubmitTask.Response:
        resp.task_id = req.task.id
        now = self.now()
        try:
            task = task_from_submission(req.task, self.roadmap, now, self.stations)
            self._send(self.core.submit(now, task))
        except (TaskError, dp.Refused) as e:
            resp.accepted, resp.error = False, str(e)
            self.get_logger().warning(f"submit refused: {e}")
            return resp
        resp.accepted = True
        return resp

    def _on_cancel(self, req: CancelTask.Request, resp: CancelTask.Response) -> CancelTask.Response:
        if refused := self.auth.refusal(req, "fleet/cancel_task"):
            resp.ok = False
            resp.error = f"refused: not signed by an operator of the fleet ({refused})"
        else:
            self._cancel(req, resp)
        return self.auth.sign(resp, "fleet/cancel_task#response", request=req.auth)

    def _cancel(self, req: CancelTask.Request, resp: CancelTask.Response) -> CancelTask.Response:
        try:
            self._send(self.core.cancel(self.now(), req.task_id, req.reason))
        except dp.Refused as e:
            resp.ok, resp.error = False, str(e)
            return resp
        resp.ok = True
        return resp

    def _on_list(self, req: ListTasks.Request, resp: ListTasks.Response) -> ListTasks.Response:
        for rec in self.ledger.list():
            if rec.state in TERMINAL_STATES and not req.include_finished:
                continue
            if req.robot and rec.robot != req.robot:
                continue
            resp.tasks.append(task_to_msg(rec.task))
            resp.statuses.append(TaskStatus(task_id=rec.task.id, robot=rec.robot or "",
                                            state=STATE_CODE[rec.state], round=rec.round,
                                            reason=rec.reason))
        return resp

    def _on_update(self, m: ReservationSet) -> None:
        if self.auth.check(m, "traffic/updates"):
            self.replica.apply(m)
            self.resync.check()

    def _on_proposal(self, m: Proposal) -> None:
        if not self.auth.precheck_robot_msg(m, "fleet/proposals"):
            return
        if not self.auth.enabled:
            self._send(self.core.on_proposal(self.now(), proposal_from_msg(m)))
            return
        key = (m.task_id, m.round, m.robot)
        # a robot bids once a round: a second bid is checked at once, so a forged one can
        # neither displace its real bid nor be displaced by it unnoticed
        checked = key in self._proposals
        if checked and not self.auth.check_robot_msg(m, "fleet/proposals"):
            return
        actions = self.core.on_proposal(self.now(), proposal_from_msg(m))
        if actions:
            # not taken (late, stale, excluded): the robot gets a rejection if it is its own
            if checked or self.auth.check_robot_msg(m, "fleet/proposals"):
                self._send(actions)
            return
        entry = self.core.entries.get(m.task_id)
        init = entry.initiator if entry is not None else None
        if init is not None and init.round == m.round and m.robot in init.proposals:
            self._proposals[key] = (m, checked)

    def _authentic(self, p: cn.Proposal) -> bool:
        m, checked = self._proposals.pop((p.task_id, p.round, p.robot), (None, False))
        return m is not None and (checked or self.auth.check_robot_msg(m, "fleet/proposals"))

    def _on_refusal(self, m: Refusal) -> None:
        if not self.auth.check_robot_msg(m, "fleet/refusals"):
            return
        self._send(self.core.on_refusal(self.now(), refusal_from_msg(m)))

    def _on_status(self, m: TaskStatus) -> None:
        state = state_from_code(m.state)
        if state is None or not m.robot or not self.auth.check_status(m):
            return
        self._send(self.core.on_task_status(self.now(), m.task_id, m.robot, state,
                                            reason=m.reason, lamport=m.lamport,
                                            round=m.round))

    def _on_robot_state(self, m: RobotState, info: Any) -> None:
        if not self.auth.check_state(m):
            return
        check_robot_state(m)
        self._send(self.core.on_robot_state(self.now(), m.robot, [m.task_id, *m.queued_task_ids],
                                            incarnation_of(info), done=list(m.done_task_ids)))

    def _on_robot_lost(self, m: RobotNotice) -> None:
        if not self.auth.check(m, "fleet/robot_lost"):
            return
        self._send(self.core.on_robot_lost(self.now(), m.robot))

    def _on_robot_removed(self, m: RobotNotice) -> None:
        if not self.auth.check(m, "fleet/robot_removed"):
            return
        self._send(self.core.on_robot_removed(self.now(), m.robot))

    def _tick(self) -> None:
        now = self.now()
        self._send(self.core.tick(now))
        if self._proposals and now - self._pruned_at >= 1.0:
            # the proposals of rounds that closed (their winners' were checked)
            self._pruned_at = now
            running = {(t, e.initiator.round) for t, e in self.core.entries.items()
                       if e.initiator is not None}
            self._proposals = {k: m for k, m in self._proposals.items() if k[:2] in running}


def main(args: list[str] | None = None) -> None:
    run_nodes(lambda _argv: [Dispatcher()], args)


if __name__ == "__main__":
    main()
