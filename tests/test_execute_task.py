"""/fleet/execute_task, served by the dispatcher: a refused task ends the goal at once
with the dispatcher's reason; an accepted one gives its status as feedback, and
cancelling the goal cancels the task. Real rclpy action client and dispatcher."""
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from fleet_coord_msgs.action import ExecuteTask  # noqa: E402
from fleet_coord_msgs.msg import Task, TaskStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fleet_coord.dispatcher import Dispatcher  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def test_execute_task_action_refuses_feeds_back_and_cancels(tmp_path):
    with ros_context() as (ctx, ex):
        dispatcher = Dispatcher(context=ctx, parameter_overrides=[
            Parameter("ledger", value=str(tmp_path / "ledger.db"))])
        client_node = rclpy.create_node("action_client", context=ctx)
        ex.add_node(dispatcher)
        ex.add_node(client_node)
        client = ActionClient(client_node, ExecuteTask, "/fleet/execute_task")
        assert client.wait_for_server(timeout_sec=10)

        def run(goal, feedback=None):
            sent = client.send_goal_async(goal, feedback_callback=feedback)
            assert spin_until(ex, sent.done, 10)
            return sent.result()

        bad = run(ExecuteTask.Goal(task=Task(id="a1", kind="goto", stations=["nowhere"])))
        result = bad.get_result_async()
        assert spin_until(ex, result.done, 10)
        r = result.result().result
        assert (r.ok, r.task_id, r.state) == (False, "a1", TaskStatus.UNKNOWN)
        assert "nowhere" in r.reason

        fed = []
        handle = run(ExecuteTask.Goal(task=Task(kind="goto", stations=["9,14"])),
                     lambda f: fed.append(f.feedback.status))
        assert handle.accepted
        # no robots: the task waits for a taker; its statuses are feedback
        assert spin_until(ex, lambda: fed, 10)
        task_id = fed[0].task_id
        assert task_id.startswith("task-") and fed[0].state == TaskStatus.QUEUED
        cancel = handle.cancel_goal_async()
        assert spin_until(ex, cancel.done, 10) and cancel.result().goals_canceling
        result = handle.get_result_async()
        assert spin_until(ex, result.done, 10)
        r = result.result().result
        assert (r.ok, r.task_id, r.state) == (False, task_id, TaskStatus.CANCELLED)
        assert fed[-1].state == TaskStatus.CANCELLED
        client.destroy()
