"""The ideal kinematic driver follows cmd_vel and publishes odometry over real DDS."""
import math

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.convert import quaternion_to_yaw  # noqa: E402
from fleet_coord.ideal_driver import IdealDriver  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def _driver(ctx, **params):
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return IdealDriver(context=ctx, parameter_overrides=overrides)


def test_robot_follows_commanded_twist_and_stops_on_command_timeout():
    with ros_context() as (ctx, ex):
        drv = _driver(ctx, robots=["r1", "r2"], start_poses=[0.0, 0.0, 0.0, 5.0, 5.0, math.pi],
                      cmd_timeout=0.3, max_acc=100.0)
        client = rclpy.create_node("client", context=ctx)
        odom = {}
        for r in ("r1", "r2"):
            client.create_subscription(Odometry, f"/{r}/odom",
                                       lambda m, r=r: odom.__setitem__(r, m), qos.ODOM)
        cmd = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        ex.add_node(drv)
        ex.add_node(client)
        assert spin_until(ex, lambda: "r1" in odom and "r2" in odom, 10)
        tw = Twist()
        tw.linear.x = 0.5
        t0 = drv.get_clock().now()

        def moved():
            cmd.publish(tw)
            return odom["r1"].pose.pose.position.x > 0.5
        assert spin_until(ex, moved, 10)
        elapsed = (drv.get_clock().now() - t0).nanoseconds * 1e-9
        # it moved at the commanded speed (not faster), straight along +x
        assert odom["r1"].pose.pose.position.x <= 0.5 * elapsed + 0.1
        assert abs(odom["r1"].pose.pose.position.y) < 1e-6
        # the other robot did not move and faces pi
        p2 = odom["r2"].pose.pose
        assert (p2.position.x, p2.position.y) == (5.0, 5.0)
        o = p2.orientation
        assert abs(abs(quaternion_to_yaw(o.x, o.y, o.z, o.w)) - math.pi) < 1e-6
        # commands stop -> the watchdog stops the robot
        assert spin_until(ex, lambda: odom["r1"].twist.twist.linear.x == 0.0, 5)
        x_stopped = odom["r1"].pose.pose.position.x
        spin_until(ex, lambda: False, 0.3)
        assert odom["r1"].pose.pose.position.x == pytest.approx(x_stopped)


def test_bad_start_poses_are_rejected_naming_the_parameter():
    with ros_context() as (ctx, ex):
        with pytest.raises(ValueError, match="start_poses"):
            _driver(ctx, robots=["a", "b"], start_poses=[0.0, 0.0, 0.0])


def test_driver_as_clock_source_runs_the_fleet_faster_than_real_time():
    import time

    from rosgraph_msgs.msg import Clock

    with ros_context() as (ctx, ex):
        drv = _driver(ctx, robots=["r1"], start_poses=[0.0, 0.0, 0.0], max_acc=100.0,
                      publish_clock=True, real_time_factor=4.0, rate_hz=50.0)
        client = rclpy.create_node("client", context=ctx,
                                   parameter_overrides=[Parameter("use_sim_time", value=True)])
        clocks, odom = [], {}
        client.create_subscription(Clock, "/clock", clocks.append, qos.CLOCK)
        client.create_subscription(Odometry, "/r1/odom", lambda m: odom.__setitem__("r1", m),
                                   qos.ODOM)
        cmd = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        ex.add_node(drv)
        ex.add_node(client)
        assert spin_until(ex, lambda: len(clocks) > 5 and "r1" in odom, 10)
        sim0, wall0 = client.get_clock().now().nanoseconds * 1e-9, time.monotonic()
        tw = Twist()
        tw.linear.x = 0.5

        def moved():
            cmd.publish(tw)
            return odom["r1"].pose.pose.position.x > 1.0
        assert spin_until(ex, moved, 10)
        sim = client.get_clock().now().nanoseconds * 1e-9 - sim0
        wall = time.monotonic() - wall0
        assert sim > 2.0 * wall, (sim, wall)          # well faster than real time
        assert sim <= 4.0 * wall + 0.2, (sim, wall)   # never faster than asked
        # odometry is stamped with sim time, and the robot moved at 0.5 m/s of sim time
        stamp = odom["r1"].header.stamp.sec + odom["r1"].header.stamp.nanosec * 1e-9
        assert abs(stamp - client.get_clock().now().nanoseconds * 1e-9) < 0.5
        assert odom["r1"].pose.pose.position.x <= 0.5 * (sim + 0.2) + 0.1
        # the clock never goes back
        ts = [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks]
        assert ts == sorted(ts)


def test_bad_real_time_factor_is_rejected_naming_the_parameter():
    with ros_context() as (ctx, ex):
        with pytest.raises(ValueError, match="real_time_factor"):
            _driver(ctx, publish_clock=True, real_time_factor=0.0)


def test_a_standing_robots_odometry_slows_and_is_back_at_full_rate_at_the_first_command():
    """core/pacing.py in the driver: a robot that stood with no command for idle_after s
    reports at idle_rate_hz; its first non-zero command brings every step back at once
    (the agent's tracker acts on fresh odometry)."""
    import time

    with ros_context() as (ctx, ex):
        drv = _driver(ctx, robots=["r1", "r2"], start_poses=[0.0, 0.0, 0.0, 5.0, 5.0, 0.0],
                      rate_hz=50.0, idle_rate_hz=2.0, idle_after=0.5, max_acc=100.0)
        client = rclpy.create_node("client", context=ctx)
        got = {"r1": [], "r2": []}
        for r in got:
            client.create_subscription(Odometry, f"/{r}/odom",
                                       lambda m, r=r: got[r].append((time.monotonic(), m)),
                                       qos.ODOM)
        cmd = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        ex.add_node(drv)
        ex.add_node(client)
        assert spin_until(ex, lambda: got["r1"] and got["r2"], 10)
        spin_until(ex, lambda: False, 1.0)        # past idle_after
        for r in got:
            got[r].clear()
        spin_until(ex, lambda: False, 3.0)
        assert all(4 <= len(got[r]) <= 8 for r in got), {r: len(v) for r, v in got.items()}

        # the first command: odometry at every step from the next one
        tw = Twist()
        tw.linear.x = 0.5
        got["r1"].clear()
        t_cmd = time.monotonic()
        cmd.publish(tw)
        assert spin_until(ex, lambda: any(m.twist.twist.linear.x > 0 for _, m in got["r1"]), 2)
        first = next(t for t, m in got["r1"] if m.twist.twist.linear.x > 0)
        assert first - t_cmd < 0.25, first - t_cmd
        got["r1"].clear()
        got["r2"].clear()

        def driving() -> bool:
            cmd.publish(tw)
            return False
        spin_until(ex, driving, 1.0)
        assert len(got["r1"]) >= 30, len(got["r1"])     # ~50 Hz
        assert len(got["r2"]) <= 4, len(got["r2"])      # the other one still stands
