"""The drivers of an authenticated fleet (the serial bridge against the C emulator over a
pty, the PyBullet sim, the ideal driver): only the agent's signed commands drive a robot,
odometry comes out signed, anybody may engage an e-stop but only an operator releases it
or spawns a robot (docs/security.md)."""
import os
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from fleet_coord_msgs.msg import SignedOdometry, SignedTwist  # noqa: E402
from fleet_coord_msgs.srv import SetEstop  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from fleet_coord_bridge.bridge_node import SerialBridge  # noqa: E402
from fleet_coord_bridge.emulator import Emulator  # noqa: E402
from fleet_coord import qos  # noqa: E402
from fleet_coord.auth import LinkSigner, Signer, Verifier  # noqa: E402
from fleet_coord.fleet_config import load_fleet_config  # noqa: E402
from fleet_coord.keys import KeyDir, fleet_identities, robot_identities  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402

CONFIG = """fleet: {map: warehouse.map, discovery_range: LOCALHOST}
robots:
  - {name: r1, start: [2, 18], backend: serial, port: /dev/null}
auth: {mode: enforce}
"""


def provision(tmp_path, backend="serial, port: /dev/null"):
    """The key directory of a one-robot authenticating fleet on `backend`."""
    p = tmp_path / "fleet_d.yaml"
    p.write_text(CONFIG.replace("serial, port: /dev/null", backend))
    cfg = load_fleet_config(str(p))
    kd = KeyDir(cfg.auth.keys)
    kd.init(fleet_identities(cfg))
    return kd


@pytest.fixture
def keys(tmp_path):
    return provision(tmp_path)


def call(ex, client, req):
    fut = client.call_async(req)
    assert spin_until(ex, fut.done, 10)
    return fut.result()


def test_signed_commands_drive_and_only_an_operator_releases_the_estop(tmp_path, keys):
    with Emulator(link=str(tmp_path / "r1.pty")) as emu, ros_context() as (ctx, ex):
        bridge = SerialBridge(context=ctx, parameter_overrides=[
            Parameter("robot", value="r1"), Parameter("port", value=emu.port),
            Parameter("autostart", value=True),
            Parameter("cmd_rate_hz", value=50.0), Parameter("auth_mode", value="enforce"),
            Parameter("auth_keys", value=keys.path)])
        client = rclpy.create_node("r1_agent_side", context=ctx)
        ex.add_node(bridge)
        ex.add_node(client)
        plain_odom, signed_odom = [], []
        client.create_subscription(Odometry, "/r1/odom", plain_odom.append, qos.ODOM)
        client.create_subscription(SignedOdometry, "/r1/odom_signed", signed_odom.append,
                                   qos.ODOM)
        plain = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        signed = client.create_publisher(SignedTwist, "/r1/cmd_vel_signed", qos.COMMAND)
        agent = LinkSigner("r1", keys.link_key("r1"))
        rogue = LinkSigner("r1", os.urandom(32))
        verifier = Verifier(keys.keyring(), link_key=keys.link_key_or_none)
        assert spin_until(ex, lambda: signed_odom and plain_odom, 10), "no odometry"

        def x():
            return plain_odom[-1].pose.pose.position.x

        def drive(pub, signer, seconds):
            t = Twist()
            t.linear.x = 0.5
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                pub.publish(signer.sign(SignedTwist(twist=t), "r1/cmd_vel_signed")
                            if signer else t)
                ex.spin_once(timeout_sec=0.05)

        x0 = x()
        drive(plain, None, 0.6)                      # an unsigned Twist: nobody listens
        drive(signed, rogue, 0.6)                    # a MAC with the wrong key: dropped
        assert abs(x() - x0) < 0.01
        drive(signed, agent, 0.6)                    # its agent's: it drives
        assert x() - x0 > 0.1
        assert verifier.verify_link(signed_odom[-1], "r1", "r1/odom_signed") is None

        operator = Signer("operator", keys.private_key("operator"))
        other = Signer("r1", keys.private_key("r1"))
        estop = client.create_client(SetEstop, "/r1/set_estop")
        setbool = client.create_client(SetBool, "/r1/estop")
        assert estop.wait_for_service(timeout_sec=10)
        # engaging: plain SetBool (anyone) works
        assert call(ex, setbool, SetBool.Request(data=True)).success
        # releasing: not unsigned, not by a robot, only by an operator
        assert not call(ex, setbool, SetBool.Request(data=False)).success
        req = other.sign(SetEstop.Request(engage=False), "r1/set_estop")
        assert not call(ex, estop, req).ok
        unsigned = call(ex, estop, SetEstop.Request(engage=False))
        assert not unsigned.ok
        req = operator.sign(SetEstop.Request(engage=False, reason="cleared"), "r1/set_estop")
        resp = call(ex, estop, req)
        assert resp.ok, resp.message
        # the answer is the bridge's, bound to this request
        assert verifier.verify(resp, "r1/set_estop#response", rule="{robot}/set_estop#response",
                               subjects=["r1"], request=req.auth) is None
        client.destroy_node()


def test_the_sim_takes_only_signed_commands_and_signs_its_odometry(tmp_path):
    pytest.importorskip("pybullet", reason="pybullet is installed by `make setup`")
    from fleet_coord_sim.sim_node import SimNode
    kd = provision(tmp_path, "sim")
    with ros_context() as (ctx, ex):
        sim = SimNode(context=ctx, parameter_overrides=[
            Parameter(k, value=v) for k, v in dict(
                robots=["r1"], start_poses=[2.0, 18.0, 0.0], max_acc=100.0,
                real_time_factor=4.0, auth_mode="enforce", auth_keys=kd.path).items()])
        client = rclpy.create_node("sim_client", context=ctx)
        ex.add_node(sim)
        ex.add_node(client)
        odom = []
        client.create_subscription(SignedOdometry, "/r1/odom_signed", odom.append, qos.ODOM)
        plain = client.create_publisher(Twist, "/r1/cmd_vel", qos.COMMAND)
        signed = client.create_publisher(SignedTwist, "/r1/cmd_vel_signed", qos.COMMAND)
        assert spin_until(ex, lambda: odom, 10)
        verifier = Verifier(kd.keyring(), link_key=kd.link_key_or_none)
        assert verifier.verify_link(odom[-1], "r1", "r1/odom_signed") is None
        t = Twist()
        t.linear.x = 0.5
        agent = LinkSigner("r1", kd.link_key("r1"))
        x0 = odom[-1].odom.pose.pose.position.x
        spin_until(ex, lambda: plain.publish(t) and False, 0.5)
        assert odom[-1].odom.pose.pose.position.x == pytest.approx(x0)
        assert spin_until(ex, lambda: signed.publish(
            agent.sign(SignedTwist(twist=t), "r1/cmd_vel_signed")) or
            odom[-1].odom.pose.pose.position.x > x0 + 0.2, 10)
        client.destroy_node()


def test_the_ideal_driver_spawns_and_releases_an_estop_only_for_an_operator(tmp_path):
    from fleet_coord_msgs.srv import SpawnRobot

    from fleet_coord.ideal_driver import IdealDriver
    kd = provision(tmp_path, "ideal")
    with ros_context() as (ctx, ex):
        driver = IdealDriver(context=ctx, parameter_overrides=[
            Parameter("robots", value=["r1"]), Parameter("start_poses", value=[2.0, 18.0, 0.0]),
            Parameter("auth_mode", value="enforce"), Parameter("auth_keys", value=kd.path)])
        client = rclpy.create_node("spawn_client", context=ctx)
        ex.add_node(driver)
        ex.add_node(client)
        spawn = client.create_client(SpawnRobot, "/ideal_driver/spawn_robot")
        assert spawn.wait_for_service(timeout_sec=10)
        unsigned = call(ex, spawn, SpawnRobot.Request(robot="ghost", x=6.0, y=18.0))
        assert not unsigned.ok and "not signed by an operator" in unsigned.error
        robot = Signer("r1", kd.private_key("r1"))
        as_robot = call(ex, spawn, robot.sign(SpawnRobot.Request(robot="ghost2", x=6.0, y=18.0),
                                              "ideal_driver/spawn_robot"))
        assert not as_robot.ok and set(driver.robots) == {"r1"}
        operator = Signer("operator", kd.private_key("operator"))
        unprovisioned = call(ex, spawn, operator.sign(
            SpawnRobot.Request(robot="r9", x=6.0, y=18.0), "ideal_driver/spawn_robot"))
        assert not unprovisioned.ok and "no link key for 'r9'" in unprovisioned.error
        kd.add(robot_identities("r9", "ideal"))
        req = operator.sign(SpawnRobot.Request(robot="r9", x=6.0, y=18.0),
                            "ideal_driver/spawn_robot")
        resp = call(ex, spawn, req)
        assert resp.ok and "r9" in driver.robots
        verifier = Verifier(kd.keyring())
        assert verifier.verify(resp, "ideal_driver/spawn_robot#response", request=req.auth) is None
        # its e-stop: engaged by anyone, released only by an operator (robot_link.EstopServices)
        setbool = client.create_client(SetBool, "/r1/estop")
        estop = client.create_client(SetEstop, "/r1/set_estop")
        assert estop.wait_for_service(timeout_sec=10)
        assert call(ex, setbool, SetBool.Request(data=True)).success and driver.robots["r1"].estop
        assert not call(ex, setbool, SetBool.Request(data=False)).success
        assert not call(ex, estop, robot.sign(SetEstop.Request(engage=False), "r1/set_estop")).ok
        assert driver.robots["r1"].estop
        assert call(ex, estop, operator.sign(SetEstop.Request(engage=False), "r1/set_estop")).ok
        assert not driver.robots["r1"].estop
        client.destroy_node()
