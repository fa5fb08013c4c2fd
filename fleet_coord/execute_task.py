"""/fleet/execute_task (fleet_coord_msgs/action/ExecuteTask): a task as a ROS 2 action,
served by the dispatcher node.

A goal is a submission (the dispatcher's own SubmitTask handling: the same checks, the
same ledger); every TaskStatus of the task is feedback; cancelling the goal cancels the
task (as CancelTask); the result comes when the task ends: DONE, CANCELLED, or FAILED as
the dispatcher's final word (a robot's FAILED is a hand-back, the task goes on). A goal
whose task is refused at submission ends at once, aborted, with the dispatcher's reason.
In a fleet that authenticates, goals must be signed like submissions (docs/security.md).
"""
from __future__ import annotations

import uuid
from typing import Any, Callable

from fleet_coord_msgs.action import ExecuteTask
from fleet_coord_msgs.msg import TaskStatus
from fleet_coord_msgs.srv import CancelTask, SubmitTask
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.task import Future

from fleet_coord import qos
from fleet_coord.namespace import names_of


def is_final(m: TaskStatus) -> bool:
    """The end of a task: DONE or CANCELLED, or FAILED from the dispatcher (not a
    robot's hand-back)."""
    return m.state in (TaskStatus.DONE, TaskStatus.CANCELLED) or (
        m.state == TaskStatus.FAILED and m.reporter != m.robot)


class ExecuteTaskServer:
    def __init__(self, node: Any, submit: Callable, cancel: Callable,
                 check: Callable[[Any, str], bool], callback_group: Any = None) -> None:
        """`submit(SubmitTask.Request, Response)` and `cancel(CancelTask.Request, Response)`:
        the dispatcher's handlers; `check(goal, channel)`: its sender check;
        `callback_group`: the dispatcher's (its handlers never run concurrently)."""
        self.node, self._submit, self._cancel, self._check = node, submit, cancel, check
        self._waiting: dict[str, tuple[Any, Future]] = {}   # task id -> (goal, end)
        names = names_of(node)
        node.create_subscription(TaskStatus, names("/fleet/task_status"), self._on_status,
                                 qos.PROTOCOL, callback_group=callback_group)
        self.server = ActionServer(node, ExecuteTask, names("/fleet/execute_task"),
                                   execute_callback=self._execute,
                                   goal_callback=self._on_goal,
                                   cancel_callback=self._on_cancel,
                                   callback_group=callback_group)

    def _on_goal(self, goal: ExecuteTask.Goal) -> GoalResponse:
        if not self._check(goal, "fleet/execute_task"):
            self.node.get_logger().warning("execute_task goal refused: not signed by an "
                                           "operator of the fleet")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, handle) -> CancelResponse:
        auth = getattr(self.node, "auth", None)
        if auth is not None and auth.enabled:
            # a goal's cancel request carries no signature (and goal ids are public on the
            # status topic): an authenticating fleet cancels through srv/CancelTask only
            self.node.get_logger().warning("execute_task cancel refused: unsigned; cancel "
                                           "with /fleet/cancel_task as an operator")
            return CancelResponse.REJECT
        for task_id, (h, _end) in self._waiting.items():
            if h is handle:
                resp = self._cancel(CancelTask.Request(task_id=task_id,
                                                       reason="the action goal was cancelled"),
                                    CancelTask.Response())
                return CancelResponse.ACCEPT if resp.ok else CancelResponse.REJECT
        return CancelResponse.REJECT

    def _on_status(self, m: TaskStatus) -> None:
        waiting = self._waiting.get(m.task_id)
        if waiting is None:
            return
        handle, end = waiting
        handle.publish_feedback(ExecuteTask.Feedback(status=m))
        if is_final(m) and not end.done():
            end.set_result(m)

    async def _execute(self, handle) -> ExecuteTask.Result:
        task = handle.request.task
        if not task.id:   # the action may leave the id to the dispatcher
            task.id = f"task-{uuid.uuid4().hex[:10]}"
        resp = self._submit(SubmitTask.Request(task=task), SubmitTask.Response())
        if not resp.accepted:
            handle.abort()
            return ExecuteTask.Result(ok=False, task_id=resp.task_id or task.id,
                                      state=TaskStatus.UNKNOWN, reason=resp.error)
        end: Future = Future()
        self._waiting[resp.task_id] = (handle, end)
        try:
            final: TaskStatus = await end
        finally:
            self._waiting.pop(resp.task_id, None)
        if final.state == TaskStatus.DONE:
            handle.succeed()
        elif final.state == TaskStatus.CANCELLED and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        return ExecuteTask.Result(ok=final.state == TaskStatus.DONE, task_id=resp.task_id,
                                  state=final.state, reason=final.reason)
