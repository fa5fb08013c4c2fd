"""A dispatcher restarted on its ledger (a new Dispatcher node, real DDS) still knows who
gave a task back: a lost robot's late DONE ends the task (first completion wins), and the
robots that gave it back are not asked again (docs/reliability.md, Known gap 3)."""
import rclpy
from fleet_coord_msgs.msg import RobotNotice, TaskStatus
from rclpy.parameter import Parameter

from fleet_coord import qos
from fleet_coord.core.tasks import Task, TaskLedger, TaskState
from fleet_coord.dispatcher import Dispatcher
from fleet_coord.fleet_config import DEFAULT_MAP
from rosutil import ros_context, spin_until


def test_a_restarted_dispatcher_still_takes_a_lost_former_holders_late_done(tmp_path):
    path = str(tmp_path / "ledger.db")
    with TaskLedger(path) as led:     # t1 is being driven by a; t2 was failed by b
        led.submit(Task("t1", "goto", ["5,1"]), 0.0)
        led.submit(Task("t2", "goto", ["9,1"]), 0.0)
        for tid, robot in (("t1", "a"), ("t2", "b")):
            led.transition(tid, TaskState.ANNOUNCED, 0.0)
            led.transition(tid, TaskState.AWARDED, 0.0, robot=robot, auction_round=1)
            led.transition(tid, TaskState.ACTIVE, 0.0)
        led.transition("t2", TaskState.QUEUED, 0.0, robot="b", reason="b failed: blocked")
    params = [Parameter("map", value=DEFAULT_MAP), Parameter("ledger", value=path)]
    with ros_context() as (ctx, ex):
        node = rclpy.create_node("fleet_test", context=ctx)
        lost_pub = node.create_publisher(RobotNotice, "/fleet/robot_lost", qos.PROTOCOL)
        status_pub = node.create_publisher(TaskStatus, "/fleet/task_status", qos.PROTOCOL)
        ex.add_node(node)
        first = Dispatcher(context=ctx, parameter_overrides=params)
        ex.add_node(first)
        assert spin_until(ex, lambda: lost_pub.get_subscription_count() > 0, 10.0)
        # a is declared lost while it drives t1: t1 goes back to auction
        lost_pub.publish(RobotNotice(robot="a"))
        assert spin_until(ex, lambda: first.ledger.get("t1").state in (
            TaskState.QUEUED, TaskState.ANNOUNCED), 5.0), first.ledger.get("t1")
        # the dispatcher is restarted (its memory is gone; the ledger is what is left)
        ex.remove_node(first)
        first.destroy_node()
        first.ledger.close()
        second = Dispatcher(context=ctx, parameter_overrides=params)
        ex.add_node(second)
        assert second.core.former_holders() == {"t1": {"a"}}
        assert second.core.excluded() == {"t1": {"a"}, "t2": {"b"}}
        assert spin_until(ex, lambda: status_pub.get_subscription_count() > 0, 10.0)
        # ... and a, back after all, reports t1 done: the first completion wins
        status_pub.publish(TaskStatus(task_id="t1", robot="a", state=TaskStatus.DONE))
        assert spin_until(ex, lambda: second.ledger.get("t1").state is TaskState.DONE, 5.0), \
            second.ledger.get("t1")
        assert second.ledger.get("t1").robot == "a"
        assert second.ledger.events("t1")[-1].detail.get("late") is True
        # b gave t2 back: its DONE for t2 does not count (it was not lost, just failed)
        status_pub.publish(TaskStatus(task_id="t2", robot="b", state=TaskStatus.DONE))
        spin_until(ex, lambda: False, 0.5)
        assert second.ledger.get("t2").state is not TaskState.DONE
        ex.remove_node(second)
        second.destroy_node()
