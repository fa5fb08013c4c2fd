"""The sim node over real DDS: /clock, the driver interface (cmd_vel in, odom out), contacts."""
import math
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
pytest.importorskip("pybullet", reason="pybullet is installed by `make setup`")
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_msgs.msg import UInt32  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from fleet_coord import frames, qos  # noqa: E402
from fleet_coord.convert import quaternion_to_yaw  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402
from fleet_coord_sim.sim_node import CONTACTS_QOS, SimNode  # noqa: E402


def _sim(ctx, **params):
    return SimNode(context=ctx,
                   parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_clock_advances_and_a_sim_time_node_sees_odom_stamps_advance_with_it():
    with ros_context() as (ctx, ex):
        # use_sim_time=true as a launch file would set it for every node: the sim must
        # ignore it (it is the clock) and still run as fast as possible
        sim = _sim(ctx, robots=["r1"], start_poses=[2.0, 1.0, 0.0], real_time_factor=0.0,
                   odom_rate=25.0, use_sim_time=True)
        assert sim.get_parameter("use_sim_time").value is False
        client = rclpy.create_node("client", context=ctx, parameter_overrides=[
            Parameter("use_sim_time", value=True)])
        clocks, stamps = [], []
        client.create_subscription(Clock, "/clock", clocks.append, qos.CLOCK)
        client.create_subscription(Odometry, "/r1/odom", lambda m: stamps.append(
            (_stamp(m), client.get_clock().now().nanoseconds * 1e-9)), qos.ODOM)
        ex.add_node(sim)
        ex.add_node(client)
        wall0 = time.monotonic()
        assert spin_until(ex, lambda: len(stamps) > 20 and stamps[-1][0] > 2.0, 30)
        wall = time.monotonic() - wall0
        sim_now = client.get_clock().now().nanoseconds * 1e-9
        assert sim_now > 2.0  # the client's ROS clock is the sim's /clock
        # rtf 0: sim time ran ahead of wall time (not a timing assertion: just "faster")
        assert sim.world.time > wall
        ticks = [c.clock.sec + c.clock.nanosec * 1e-9 for c in clocks]
        assert ticks == sorted(ticks) and ticks[-1] > 2.0
        odom_stamps = [s for s, _ in stamps]
        assert odom_stamps == sorted(odom_stamps)
        # odom at 25 Hz of sim time (every other 0.02 s step), stamped on the sim clock:
        # consecutive stamps 0.04 s apart (best-effort may drop some, never reorder)
        gaps = {round(b - a, 6) for a, b in zip(odom_stamps, odom_stamps[1:])}
        assert min(gaps) == pytest.approx(0.04)
        assert all(g == pytest.approx(0.04 * round(g / 0.04)) for g in gaps)
        # the subscriber's sim-time clock moved along with the stamps it received (/clock
        # and odom are separate topics, so either may arrive first for a given step)
        received = [r for _, r in stamps]
        assert received == sorted(received) and received[-1] > 1.0


def test_tf_carries_each_robots_odometry_pose_and_static_map_to_odom():
    with ros_context() as (ctx, ex):
        sim = _sim(ctx, robots=["r1", "r2"], start_poses=[2.0, 1.0, 0.0, 5.0, 15.0, math.pi],
                   real_time_factor=0.0, odom_rate=20.0, tf_rate=10.0)
        client = rclpy.create_node("client", context=ctx)
        tf, static, odom = {}, [], {"r1": {}, "r2": {}}

        def on_tf(msg):
            for t in msg.transforms:
                tr, q = t.transform.translation, t.transform.rotation
                tf[(t.child_frame_id, _stamp(t))] = (t.header.frame_id, tr.x, tr.y, q.z, q.w)
        client.create_subscription(TFMessage, "/tf", on_tf, qos.TF)
        client.create_subscription(TFMessage, "/tf_static", static.append, qos.LATCHED)
        for r in odom:
            client.create_subscription(Odometry, f"/{r}/odom", lambda m, r=r: odom[r].__setitem__(
                _stamp(m), m), qos.ODOM)
        ex.add_node(sim)
        ex.add_node(client)
        assert spin_until(ex, lambda: static and len(tf) >= 20, 30)
        assert {(t.header.frame_id, t.child_frame_id) for t in static[-1].transforms} == {
            ("map", "r1/odom"), ("map", "r2/odom")}
        for r in odom:
            common = [t for t in odom[r] if (f"{r}/base_link", t) in tf]
            assert len(common) >= 3, r
            for t in common:
                m = odom[r][t]
                p, q = m.pose.pose.position, m.pose.pose.orientation
                assert tf[(f"{r}/base_link", t)] == (f"{r}/odom", p.x, p.y, q.z, q.w)
                assert m.pose.covariance[0] == frames.EXACT_COVARIANCE[0]


def test_robot_follows_cmd_vel_and_stops_on_command_timeout():
    with ros_context() as (ctx, ex):
        sim = _sim(ctx, robots=["r1", "r2"], start_poses=[2.0, 1.0, 0.0, 5.0, 15.0, math.pi],
                   cmd_timeout=0.3, max_acc=100.0, real_time_factor=4.0)
        client = rclpy.create_node("client", context=ctx)
        odom = {}
        for r in ("r1", "r2"):
            client.create_subscription(Odometry, f"/{r}/odom",
                                       lambda m, r=r: odom.__setitem__(r, m), qos.ODOM)
        cmd = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        ex.add_node(sim)
        ex.add_node(client)
        assert spin_until(ex, lambda: "r1" in odom and "r2" in odom, 10)
        assert (odom["r1"].header.frame_id, odom["r1"].child_frame_id) == ("r1/odom",
                                                                           "r1/base_link")
        tw = Twist()
        tw.linear.x = 0.5
        t0 = sim.world.time

        def moved():
            cmd.publish(tw)
            return odom["r1"].pose.pose.position.x > 3.0
        assert spin_until(ex, moved, 10)
        elapsed = sim.world.time - t0
        assert odom["r1"].pose.pose.position.x <= 2.0 + 0.5 * elapsed + 0.05
        assert abs(odom["r1"].pose.pose.position.y - 1.0) < 1e-6
        assert odom["r1"].twist.twist.linear.x == pytest.approx(0.5)
        p2 = odom["r2"].pose.pose
        assert (p2.position.x, p2.position.y) == (5.0, 15.0)
        o = p2.orientation
        assert abs(abs(quaternion_to_yaw(o.x, o.y, o.z, o.w)) - math.pi) < 1e-6
        # commands stop -> after cmd_timeout of sim time the watchdog stops the robot
        assert spin_until(ex, lambda: odom["r1"].twist.twist.linear.x == 0.0, 5)
        x_stopped = odom["r1"].pose.pose.position.x
        spin_until(ex, lambda: False, 0.3)
        assert odom["r1"].pose.pose.position.x == pytest.approx(x_stopped)
        # the e-stop: commands are ignored while it is engaged, obeyed once released
        estop = client.create_client(SetBool, "/r1/estop")
        for engage in (True, False):
            fut = estop.call_async(SetBool.Request(data=engage))
            assert spin_until(ex, fut.done, 10) and fut.result().success
            if engage:
                spin_until(ex, lambda: cmd.publish(tw) and False, 0.5)
                assert odom["r1"].twist.twist.linear.x == 0.0
                assert odom["r1"].pose.pose.position.x == pytest.approx(x_stopped)
        assert spin_until(ex, lambda: cmd.publish(tw) or odom["r1"].twist.twist.linear.x > 0, 5)


def test_lock_step_never_runs_past_a_moving_robots_last_command(monkeypatch):
    """max_cmd_lead: a robot driving on a non-zero command holds the sim (here as fast as
    possible) max_cmd_lead sim seconds after its last command, while its controller is
    starved; a stopped robot does not; a controller silent for _FOLLOW_SILENT_S wall
    seconds is taken for gone (the sim runs on and its watchdog stops the robot)."""
    monkeypatch.setattr("fleet_coord_sim.sim_node._FOLLOW_SILENT_S", 1.5)
    with ros_context() as (ctx, ex):
        sim = _sim(ctx, robots=["r1"], start_poses=[2.0, 1.0, 0.0], real_time_factor=0.0,
                   max_cmd_lead=0.1, cmd_timeout=0.5, max_acc=100.0)
        client = rclpy.create_node("client", context=ctx)
        cmd = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        ex.add_node(sim)
        ex.add_node(client)
        assert spin_until(ex, lambda: client.count_subscribers("/r1/cmd_vel") > 0, 10)
        # a stop command does not hold the sim
        assert spin_until(ex, lambda: (cmd.publish(Twist()), sim._cmd_stamp[0] > 0)[1], 5)
        stop_at = sim._cmd_stamp[0]
        assert spin_until(ex, lambda: sim.world.time > stop_at + 2.0, 5)
        # driving: the sim runs on while the commands keep coming
        tw = Twist()
        tw.linear.x = 0.5
        t0 = sim.world.time
        assert spin_until(ex, lambda: (cmd.publish(tw), sim.world.time > t0 + 1.0)[1], 10)
        # the controller falls silent: the sim stops max_cmd_lead after its last command
        spin_until(ex, lambda: False, 0.5)
        held_at = sim.world.time
        assert held_at - sim._cmd_stamp[0] <= 0.1 + sim.world.dt + 1e-9
        assert sim.held_steps > 0
        spin_until(ex, lambda: False, 0.3)
        assert sim.world.time == held_at
        # ... until it has been silent for _FOLLOW_SILENT_S: then the watchdog stops it
        assert spin_until(ex, lambda: sim.world.time > held_at + 1.0, 5)
        assert sim.world.robots.cmd[0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("mode", ["kinematic", "physics"])
def test_robots_driven_into_each_other_publish_one_contact(mode):
    with ros_context() as (ctx, ex):
        sim = _sim(ctx, robots=["a", "b"], start_poses=[5.0, 1.0, 0.0, 6.0, 1.0, math.pi],
                   mode=mode, real_time_factor=0.0, cmd_timeout=30.0)
        client = rclpy.create_node("client", context=ctx)
        counts = {}
        for kind in ("robot_robot", "robot_obstacle"):
            client.create_subscription(UInt32, f"/sim/contacts/{kind}",
                                       lambda m, k=kind: counts.__setitem__(k, m.data),
                                       CONTACTS_QOS)
        pubs = [client.create_publisher(Twist, f"/{r}/cmd_vel", qos.COMMAND) for r in "ab"]
        ex.add_node(sim)
        ex.add_node(client)
        assert spin_until(ex, lambda: counts == {"robot_robot": 0, "robot_obstacle": 0}, 10)
        tw = Twist()
        tw.linear.x = 0.5
        for pub in pubs:
            pub.publish(tw)
        assert spin_until(ex, lambda: counts["robot_robot"] >= 1 and sim.world.time > 3.0, 20)
        assert counts == {"robot_robot": 1, "robot_obstacle": 0}
        assert sim.world.contacts.events[0].a == "a"


def test_bad_parameters_are_refused_naming_them():
    with ros_context() as (ctx, ex):
        with pytest.raises(ValueError, match="start_poses"):
            _sim(ctx, robots=["a", "b"], start_poses=[1.0, 1.0, 0.0])
        with pytest.raises(ValueError, match="robot 'a' .* overlaps the obstacle"):
            _sim(ctx, robots=["a"], start_poses=[0.0, 0.0, 0.0])
        with pytest.raises(ValueError, match="real_time_factor"):
            _sim(ctx, real_time_factor=-1.0)
        with pytest.raises(ValueError, match="parameter .mode.: expected one of kinematic, physics"):
            _sim(ctx, mode="gazebo")
        with pytest.raises(ValueError, match="max_cmd_lead: expected 0 .* below cmd_timeout"):
            _sim(ctx, max_cmd_lead=0.5, cmd_timeout=0.5)
