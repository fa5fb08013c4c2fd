"""A fleet on sim time: with no clock source a node says so within seconds."""
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from fleet_coord.spin import CLOCK_WARN_AFTER_S  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_node_on_sim_time_without_clock_warns_within_seconds(tmp_path):
    log = open(tmp_path / "monitor.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "fleet_coord.fleet_monitor", "--ros-args",
                             "-p", "use_sim_time:=true"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + CLOCK_WARN_AFTER_S + 25   # + start-up on a busy machine
        text = ""
        while time.monotonic() < deadline and "no /clock received" not in text:
            time.sleep(0.5)
            log.seek(0)
            text = log.read()
        assert "use_sim_time is true but no /clock received" in text, text
        assert "0 publishers of /clock" in text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


CONFIG = """\
fleet:
  map: warehouse.map
  discovery_range: LOCALHOST
  backend: ideal
  ledger: ledger.sqlite
robots:
  - {name: robot_1, start: [2, 18], max_speed: 3.0, max_angular_speed: 20.0}
  - {name: robot_2, start: [6, 18], max_speed: 3.0, max_angular_speed: 20.0}
nodes:
  robot_agent: {max_acc: 40.0, max_alpha: 400.0, turn_margin: 0.2}
  ideal_driver: {max_acc: 40.0, max_alpha: 400.0, rate_hz: 100.0}
  dispatcher: {bid_window: 0.3}
"""


def _sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_launch_on_sim_time_odometry_state_task_done_and_tf_matches_odometry(tmp_path):
    """`fleet-coord launch --use-sim-time true` of an ideal fleet: the ideal driver is the
    clock; odometry is stamped with sim time; /fleet/state lists the robots; a task is
    done; /tf carries map -> odom (static, identity) and odom -> base_link equal to the
    odometry at the same stamps, for every robot (REP-105)."""
    import io

    from fleet_coord_msgs.msg import FleetState, Task, TaskStatus
    from fleet_coord_msgs.srv import SubmitTask
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from tf2_msgs.msg import TFMessage

    from fleet_coord import frames, qos
    from fleet_coord.fleet_config import load_fleet_config
    from fleet_coord.launcher import FleetLauncher
    from fleet_coord.node_set import fleet_nodes
    from rosutil import ros_context, spin_until
    import rclpy

    cfg_path = tmp_path / "fleet.yaml"
    cfg_path.write_text(CONFIG)
    cfg = load_fleet_config(str(cfg_path))
    out = io.StringIO()
    launcher = FleetLauncher(cfg, fleet_nodes(cfg, use_sim_time=True), out=out, grace_s=5.0,
                             extra_env={"ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", "0")})
    launcher.start()
    try:
        with ros_context() as (ctx, ex):
            node = rclpy.create_node("sim_time_probe", context=ctx)
            ex.add_node(node)
            got = {"clock": [], "state": [], "status": [], "static": []}
            odom = {"robot_1": {}, "robot_2": {}}
            tf = {"robot_1": {}, "robot_2": {}}

            def on_tf(m):
                for t in m.transforms:
                    robot = t.child_frame_id.split("/")[0]
                    if t.header.frame_id == frames.odom_frame(robot) and robot in tf:
                        tr, q = t.transform.translation, t.transform.rotation
                        tf[robot][_sec(t.header.stamp)] = (tr.x, tr.y, q.z, q.w)

            node.create_subscription(Clock, "/clock", lambda m: got["clock"].append(
                _sec(m.clock)), qos.CLOCK)
            node.create_subscription(FleetState, "/fleet/state", got["state"].append,
                                     qos.state_qos())
            node.create_subscription(TaskStatus, "/fleet/task_status", got["status"].append,
                                     qos.PROTOCOL)
            node.create_subscription(TFMessage, "/tf", on_tf, qos.TF)
            node.create_subscription(TFMessage, "/tf_static", got["static"].append,
                                     qos.LATCHED)
            for r in odom:
                node.create_subscription(
                    Odometry, f"/{r}/odom", lambda m, r=r: odom[r].__setitem__(
                        _sec(m.header.stamp), m), qos.ODOM)
            submit = node.create_client(SubmitTask, "/fleet/submit_task")

            def ready():
                # /clock and odometry too: under load their readers match after /fleet/state's
                return (got["state"] and len(got["state"][-1].robots) == 2
                        and got["clock"] and all(odom[r] for r in odom)
                        and submit.service_is_ready())
            assert spin_until(ex, ready, 60), out.getvalue()[-3000:]
            # odometry on sim time: stamps follow /clock (which started at 0), not wall time
            assert got["clock"] and got["clock"][-1] < 1e6
            last = {r: max(odom[r]) for r in odom}
            assert all(abs(t - got["clock"][-1]) < 5.0 for t in last.values()), (last, got["clock"][-1])
            assert got["state"][-1].robots[0].header.stamp.sec < 1e6

            fut = submit.call_async(SubmitTask.Request(task=Task(
                id="st1", kind="goto", stations=["2,14"])))
            assert spin_until(ex, fut.done, 20) and fut.result().accepted, fut.result()
            done = lambda: any(s.task_id == "st1" and s.state == TaskStatus.DONE  # noqa: E731
                               for s in got["status"])
            assert spin_until(ex, done, 90), [(s.state, s.reason) for s in got["status"]]
            assert spin_until(ex, lambda: got["static"], 10)

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
