"""A fleet on sim time under a namespace, next to another fleet in the same domain; a node
on sim time with no clock source says so within seconds."""
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from fleet_coord.spin import CLOCK_WARN_AFTER_S  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_launch_on_sim_time_odometry_state_task_done_and_tf_matches_odometry(tmp_path):
    """`fleet-coord launch --use-sim-time true` of an ideal fleet: the ideal driver is the
    clock; odometry is stamped with sim time; /fleet/state lists the robots; a task is
    done; /tf carries map -> odom (static, identity) and odom -> base_link equal to the
    odometry at the same stamps, for every robot (REP-105).

    The fleet runs under the namespace fleet_a, next to a second small fleet in the same
    domain under fleet_b (in this process, on wall time, with a robot also named robot_1):
    each does its own task, neither hears the other's tasks, robots, odometry or clock,
    and nothing of either is left at the root; `fleet-coord tasks --namespace` lists a
    fleet's own. A third namespace, fleet_c, has a node on sim time and no clock source:
    it says so within seconds, naming its own clock topic (in this test, not one of its
    own, to share its waiting with the fleets' start)."""
    import io

    from fleet_coord_msgs.msg import FleetState, Task, TaskStatus
    from fleet_coord_msgs.srv import SubmitTask
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from tf2_msgs.msg import TFMessage

    from fleet_coord import frames, qos
    from fleet_coord.dispatcher import Dispatcher
    from fleet_coord.fleet_config import load_fleet_config
    from fleet_coord.ideal_driver import IdealDriver
    from fleet_coord.launcher import FleetLauncher
    from fleet_coord.node_set import fleet_nodes
    from fleet_coord.robot_agent import AgentGroup
    from fleet_coord.traffic import TrafficNode
    from rosutil import ros_context, spin_until
    from test_launch_fleet import CONFIG
    import rclpy

    cfg_path = tmp_path / "fleet.yaml"
    cfg_path.write_text(CONFIG)
    cfg = load_fleet_config(str(cfg_path))
    out = io.StringIO()
    launcher = FleetLauncher(cfg, fleet_nodes(cfg, use_sim_time=True, robot_count=2,
                                              namespace="fleet_a"),
                             out=out, grace_s=5.0,
                             extra_env={"ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", "0")})
    no_clock_log = open(tmp_path / "no_clock.log", "w+")
    no_clock = subprocess.Popen(
        [sys.executable, "-m", "fleet_coord.fleet_monitor", "--ros-args", "-r",
         "__ns:=/fleet_c", "-r", "/clock:=/fleet_c/clock", "-p", "use_sim_time:=true"],
        stdout=no_clock_log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    t_no_clock = time.monotonic()
    launcher.start()
    try:
        with ros_context() as (ctx, ex):
            # fleet B: one robot, named as one of fleet A's, its nodes in this process
            fast = [Parameter(k, value=v) for k, v in (("max_acc", 40.0), ("max_alpha", 400.0))]
            b_nodes = [
                TrafficNode(context=ctx, namespace="fleet_b"),
                Dispatcher(context=ctx, namespace="fleet_b", parameter_overrides=[
                    Parameter("ledger", value=str(tmp_path / "b.sqlite")),
                    Parameter("bid_window", value=0.3)]),
                IdealDriver(context=ctx, namespace="fleet_b", parameter_overrides=fast + [
                    Parameter("robots", value=["robot_1"]),
                    Parameter("start_poses", value=[14.0, 18.0, 0.0]),
                    Parameter("max_v", value=3.0), Parameter("max_w", value=20.0)]),
                *AgentGroup(["robot_1"], "fleet_b", context=ctx, parameter_overrides=fast + [
                    Parameter("max_v", value=3.0), Parameter("max_w", value=20.0),
                    Parameter("turn_margin", value=0.2)]).nodes()]
            for n in b_nodes:
                ex.add_node(n)
            node = rclpy.create_node("sim_time_probe", context=ctx)
            ex.add_node(node)
            got = {"clock": [], "state": [], "status": [], "static": [], "b_status": []}
            odom = {"robot_1": {}, "robot_2": {}}
            tf = {"robot_1": {}, "robot_2": {}}

            def on_tf(m):
                for t in m.transforms:
                    robot = t.child_frame_id.split("/")[0]
                    if t.header.frame_id == frames.odom_frame(robot) and robot in tf:
                        tr, q = t.transform.translation, t.transform.rotation
                        tf[robot][_sec(t.header.stamp)] = (tr.x, tr.y, q.z, q.w)

            a = "/fleet_a"
            node.create_subscription(Clock, f"{a}/clock", lambda m: got["clock"].append(
                _sec(m.clock)), qos.CLOCK)
            node.create_subscription(FleetState, f"{a}/fleet/state", got["state"].append,
                                     qos.state_qos())
            node.create_subscription(TaskStatus, f"{a}/fleet/task_status", got["status"].append,
                                     qos.PROTOCOL)
            node.create_subscription(TaskStatus, "/fleet_b/fleet/task_status",
                                     got["b_status"].append, qos.PROTOCOL)
            node.create_subscription(TFMessage, f"{a}/tf", on_tf, qos.TF)
            node.create_subscription(TFMessage, f"{a}/tf_static", got["static"].append,
                                     qos.LATCHED)
            for r in odom:
                node.create_subscription(
                    Odometry, f"{a}/{r}/odom", lambda m, r=r: odom[r].__setitem__(
                        _sec(m.header.stamp), m), qos.ODOM)
            submit = node.create_client(SubmitTask, f"{a}/fleet/submit_task")
            submit_b = node.create_client(SubmitTask, "/fleet_b/fleet/submit_task")

            def ready():
                # every subscription matched (under load the /clock and odometry readers
                # match after /fleet/state's)
                return (got["state"] and len(got["state"][-1].robots) == 2 and got["clock"]
                        and all(odom.values()) and submit.service_is_ready()
                        and submit_b.service_is_ready())
            assert spin_until(ex, ready, 60), (
                {k: len(v) for k, v in got.items()}, {r: len(v) for r, v in odom.items()},
                [t for t, _ in node.get_topic_names_and_types()], out.getvalue()[-3000:])
            # odometry on sim time: stamps follow /clock (which started at 0), not wall time
            assert got["clock"] and got["clock"][-1] < 1e6
            last = {r: max(odom[r]) for r in odom}
            assert all(abs(t - got["clock"][-1]) < 5.0 for t in last.values()), (last, got["clock"][-1])
            assert got["state"][-1].robots[0].header.stamp.sec < 1e6

            futs = [c.call_async(SubmitTask.Request(task=Task(id=tid, kind="goto",
                                                              stations=[st])))
                    for c, tid, st in ((submit, "st1", "2,14"), (submit_b, "b1", "14,14"))]
            assert spin_until(ex, lambda: all(f.done() for f in futs), 20)
            assert all(f.result().accepted for f in futs), [f.result() for f in futs]

            def done(statuses, tid):
                return any(s.task_id == tid and s.state == TaskStatus.DONE for s in statuses)
            assert spin_until(ex, lambda: done(got["status"], "st1")
                              and done(got["b_status"], "b1"), 90), (
                [(s.task_id, s.state, s.reason) for s in got["status"] + got["b_status"]])
            assert spin_until(ex, lambda: got["static"], 10)
            # each fleet heard only its own task, its own robots and its own clock
            assert {s.task_id for s in got["status"]} == {"st1"}
            assert {s.task_id for s in got["b_status"]} == {"b1"}
            assert {r.robot for r in got["state"][-1].robots} == {"robot_1", "robot_2"}
            a1 = list(odom["robot_1"].values())
            assert all(m.header.stamp.sec < 1e6 and m.pose.pose.position.x < 10 for m in a1)
            for topic in ("/fleet/state", "/fleet/task_status", "/clock", "/robot_1/odom",
                          "/tf"):
                assert node.count_publishers(topic) == 0, topic     # nothing at the root
            cli = subprocess.Popen(
                [sys.executable, "-m", "fleet_coord.cli", "tasks", "--all", "--namespace",
                 "fleet_b"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            try:   # fleet B answers from this process: spin while the command runs
                assert spin_until(ex, lambda: cli.poll() is not None, 60)
            finally:
                if cli.poll() is None:
                    cli.kill()
            listing = cli.communicate()[0]
            assert cli.returncode == 0 and "b1" in listing and "st1" not in listing, listing

        # the node without a clock warned, within CLOCK_WARN_AFTER_S + start-up
        text = ""
        while time.monotonic() < t_no_clock + CLOCK_WARN_AFTER_S + 25 and "no /" not in text:
            time.sleep(0.2)
            no_clock_log.seek(0)
            text = no_clock_log.read()
        assert "use_sim_time is true but no /fleet_c/clock received" in text, text
        assert "0 publishers of /fleet_c/clock" in text

        static = {(t.header.frame_id, t.child_frame_id): t.transform for t in got["static"][-1].transforms}
        moved = {}
        for r in ("robot_1", "robot_2"):
            m2o = static[(frames.MAP, frames.odom_frame(r))]
            assert (m2o.translation.x, m2o.translation.y, m2o.rotation.w) == (0.0, 0.0, 1.0)
            common = sorted(set(tf[r]) & set(odom[r]))
            assert len(common) >= 5, (r, len(tf[r]), len(odom[r]))
            moved[r] = 0
            for t in common:
                p = odom[r][t].pose.pose
                assert tf[r][t] == pytest.approx((p.position.x, p.position.y, p.orientation.z,
                                                  p.orientation.w), abs=1e-9)
                assert odom[r][t].header.frame_id == frames.odom_frame(r)
                assert odom[r][t].pose.covariance[0] > 0      # stated, not "unknown" zeros
                moved[r] += abs(p.position.y - 18.0) > 0.5
        assert any(moved.values()), "no transform of the robot that drove to 2,14 was checked"
    finally:
        launcher.shutdown()
        no_clock.terminate()
        try:
            no_clock.wait(timeout=20)
        except subprocess.TimeoutExpired:
            no_clock.kill()
            no_clock.wait()
        no_clock_log.close()
