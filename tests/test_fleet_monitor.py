"""The fleet monitor aggregates robot states into FleetState, marks silent robots lost,
draws reservations for RViz and writes a causal event log that replays the run."""
import math

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
from fleet_coord_msgs.msg import (Award, CallForProposal, FleetState, Proposal,  # noqa: E402
                                  ReservationSegment, RobotNotice, RobotState, TaskStatus)
from fleet_coord_msgs.srv import Reserve  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.core.event_log import read_log, replay  # noqa: E402
from fleet_coord.fleet_config import load_roadmap_and_exclusion  # noqa: E402
from fleet_coord.fleet_monitor import FleetMonitor  # noqa: E402
from fleet_coord.traffic import TrafficNode  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def test_fleet_state_markers_and_replayable_event_log(tmp_path):
    roadmap, _, _ = load_roadmap_and_exclusion("", 0.15)
    log_path = tmp_path / "events.jsonl"
    with ros_context() as (ctx, ex):
        traffic = TrafficNode(context=ctx, parameter_overrides=[
            Parameter("recovery_window", value=0.0)])   # a fresh start: nothing to recover
        monitor = FleetMonitor(context=ctx, parameter_overrides=[
            Parameter("event_log", value=str(log_path)), Parameter("lost_after", value=1.0)])
        fleet = rclpy.create_node("fake_fleet", context=ctx)
        pub = {t: fleet.create_publisher(m, n, qos.PROTOCOL) for t, m, n in [
            ("cfp", CallForProposal, "/fleet/cfp"), ("prop", Proposal, "/fleet/proposals"),
            ("award", Award, "/fleet/awards"), ("status", TaskStatus, "/fleet/task_status")]}
        states = fleet.create_publisher(RobotState, "/fleet/robot_states", qos.state_qos())
        got = {}
        fleet.create_subscription(FleetState, "/fleet/state", lambda m: got.__setitem__("fs", m),
                                  qos.state_qos())
        fleet.create_subscription(MarkerArray, "/fleet/markers", lambda m: got.__setitem__("mk", m), 10)
        reserve = fleet.create_client(Reserve, "/traffic/reserve")
        for n in (traffic, monitor, fleet):
            ex.add_node(n)
        v = roadmap.vertex_at(2, 1)
        now = traffic.now()
        assert reserve.wait_for_service(timeout_sec=10)
        fut = reserve.call_async(Reserve.Request(robot="r1", segments=[
            ReservationSegment(robot="r1", resource=v, t_start=now - 1, t_end=math.inf)]))
        assert spin_until(ex, fut.done, 10) and fut.result().ok

        def speak():
            for r in ("r1", "r2"):
                st = RobotState(robot=r)
                st.pose.position.x = 2.0
                states.publish(st)
        cfp = CallForProposal(initiator="dispatcher")
        cfp.task.id = "t1"
        for msg, key in [(cfp, "cfp"), (Proposal(task_id="t1", robot="r1", cost=3.0), "prop"),
                         (Award(task_id="t1", robot="r1"), "award"),
                         (TaskStatus(task_id="t1", robot="r1", state=TaskStatus.DONE), "status")]:
            pub[key].publish(msg)
            speak()
            spin_until(ex, lambda: False, 0.1)

        def fleet_has_both():
            speak()
            fs = got.get("fs")
            return fs is not None and sorted(r.robot for r in fs.robots) == ["r1", "r2"]
        assert spin_until(ex, fleet_has_both, 10)
        # RViz markers: r1's held vertex shows as a reservation cube at (2, 1)
        assert spin_until(ex, lambda: "mk" in got and any(
            m.ns == "reservations" and m.points and (m.points[0].x, m.points[0].y) == (2.0, 1.0)
            for m in got["mk"].markers), 10)
        # r2 stops speaking -> lost in FleetState within the bound
        assert spin_until(ex, lambda: (states.publish(RobotState(robot="r1")) or True)
                          and "fs" in got and got["fs"].lost == ["r2"], 5)
        lost_r2 = [r for r in got["fs"].robots if r.robot == "r2"][0]
        assert lost_r2.mode == RobotState.LOST
        # r2 removed: its markers (robot, path, holds) are deleted, r1 keeps its id
        r1_id, r2_id = 0, 1      # ids by first sight, in name order
        removed = fleet.create_publisher(RobotNotice, "/fleet/robot_removed", qos.PROTOCOL)
        got.pop("mk")
        assert spin_until(ex, lambda: (removed.publish(RobotNotice(robot="r2")) or True) and any(
            m.action == Marker.DELETE and m.id == r2_id for m in got.get("mk", MarkerArray()).markers), 10)
        deleted = {m.ns for m in got["mk"].markers if m.action == Marker.DELETE}
        assert deleted == {"robots", "paths", "reservations"}
        assert [m.id for m in got["mk"].markers if m.action == Marker.ADD and m.ns == "robots"
                ] == [r1_id]
        # the roadmap for RViz, latched: a late subscriber gets it
        fleet.create_subscription(MarkerArray, "/fleet/roadmap",
                                  lambda m: got.__setitem__("rm", m), qos.LATCHED)
        assert spin_until(ex, lambda: "rm" in got, 10)
        lanes = next(m for m in got["rm"].markers if m.ns == "lanes")
        assert len(lanes.points) == roadmap.num_edges   # two points per two-way lane
        assert next(m for m in got["rm"].markers if m.ns == "obstacles").points
    rows = read_log([log_path])
    kinds = [r["event"] for r in rows if r["task_id"] == "t1"]
    assert kinds == ["cfp", "proposal", "award", "status"]
    assert any(r["event"] == "reservation" and r["robot"] == "r1" for r in rows)
    assert any(r["event"] == "robot_lost" and r["robot"] == "r2" for r in rows)
    run = replay(rows)
    assert run.tasks["t1"] == {"state": "DONE", "robot": "r1"}
