"""ideal_driver: the ideal kinematic robot backend behind the driver interface.

The driver interface (shared by the PyBullet sim and the serial bridge, like Gazebo's
diff-drive plugin), per robot namespace `/<robot>/`:
  - subscribes `cmd_vel` (geometry_msgs/Twist, COMMAND QoS),
  - publishes `odom` (nav_msgs/Odometry, frame `<robot>/odom`, child `<robot>/base_link`,
    exact covariances) and the same pose on /tf (`<robot>/odom -> <robot>/base_link`, at
    `tf_rate_hz`), with `map -> <robot>/odom` on /tf_static (fleet_coord.frames),
  - serves `estop` (std_srvs/SetBool): true latches the robot's motors off (commands are
    ignored, it stops at its deceleration limit) until false releases it, like the serial
    bridge's device e-stop.

One node can drive many robots (parameter `robots`), integrating every robot with one
timer: that is what large simulated fleets need. A robot whose commands stop for longer
than `cmd_timeout` is stopped, like a firmware watchdog.

Odometry goes out every step (`rate_hz`) while a robot is commanded or moves and for
`idle_after` s after; a robot that stands with no command after that reports at
`idle_rate_hz` (0: every step), until its first non-zero command (core/pacing.py
OdomPacer): a parked robot's unchanged pose is not sent, signed, checked 20-50 times a
second. /tf keeps `tf_rate_hz`.

Robots can join and leave at runtime: `~/spawn_robot` (fleet_coord_msgs/srv/SpawnRobot,
i.e. `/ideal_driver/spawn_robot`) puts a new robot at a pose (`fleet-coord add-robot`
calls it), and a robot removed from the fleet (`/fleet/robot_removed`, RobotNotice)
leaves the world: its topics go away.

Authentication (parameters `auth_*`, docs/security.md): commands come signed on
`cmd_vel_signed` and odometry also goes out signed (fleet_coord.robot_link); a spawn
needs an operator's signature, a removal the traffic authority's.

The clock (parameter `publish_clock`, default false): the driver can be the fleet's clock
source, as the PyBullet sim node is. It then publishes rosgraph_msgs/Clock on `/clock`
(CLOCK QoS) every step, starting at t = 0, and every step advances sim time by
`real_time_factor / rate_hz` seconds (fixed steps: the integration is the same whatever
the wall-clock jitter; a busy CPU only makes the real-time factor lower). Every other node
then runs with `use_sim_time: true`, so a fleet test runs `real_time_factor` times faster
than real time. The driver's own clock stays wall time (it paces itself by it).
"""
from __future__ import annotations

import math
import re

import rclpy
from fleet_coord_msgs.msg import RobotNotice
from fleet_coord_msgs.srv import SpawnRobot
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock

from fleet_coord import frames, parameters, qos
from fleet_coord.spin import run_nodes
from fleet_coord.convert import odometry_msg
from fleet_coord.core.kinematics import Limits, UnicycleState, step
from fleet_coord.core.pacing import IDLE_AFTER, IDLE_ODOM_RATE, OdomPacer
from fleet_coord.guard import BadInput, Guard
from fleet_coord.namespace import FleetNames
from fleet_coord.node_auth import NodeAuth
from fleet_coord.robot_link import DriverLink, EstopServices


class _Robot:
    def __init__(self, name: str, pose: tuple[float, float, float], pacer: OdomPacer) -> None:
        self.name = name
        self.pacer = pacer
        self.state = UnicycleState(*pose)
        self.cmd = (0.0, 0.0)
        self.cmd_stamp = None  # node time of the last command
        self.link: DriverLink | None = None
        self.estop = False
        self.estop_srv = None


class IdealDriver(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("ideal_driver", **kwargs)
        self.names = FleetNames.of_node(self)
        p = self.declare_parameter
        robots = p("robots", ["robot_1"]).value
        poses = p("start_poses", [0.0, 0.0, 0.0]).value  # flat [x, y, theta] per robot
        rate = p("rate_hz", 50.0).value
        self.cmd_timeout = p("cmd_timeout", 0.5).value
        self.publish_clock = p("publish_clock", False).value
        self.rtf = p("real_time_factor", 1.0).value
        self.idle_rate = p("idle_rate_hz", IDLE_ODOM_RATE).value
        self.idle_after = p("idle_after", IDLE_AFTER).value
        limits = [p(k, v).value for k, v in (("max_v", 1.0), ("max_w", 2.0), ("max_acc", 2.0),
                                             ("max_alpha", 6.0))]
        parameters.check_node(self, "ideal_driver")
        if self.publish_clock and self.get_parameter("use_sim_time").value:
            self.get_logger().warning("publish_clock: the clock source keeps wall time; "
                                      "ignoring use_sim_time: true")
            self.set_parameters([rclpy.parameter.Parameter("use_sim_time", value=False)])
        self._step_ns = int(round(self.rtf / rate * 1e9))
        self._period = (self.rtf if self.publish_clock else 1.0) / rate   # s per step
        try:
            OdomPacer(self._period, self.idle_rate, self.idle_after)
        except ValueError as e:
            raise ValueError(f"parameter idle_rate_hz / idle_after: {e}") from None
        self._sim_ns = 0
        self.clock_pub = (self.create_publisher(Clock, "/clock", qos.CLOCK)
                          if self.publish_clock else None)
        self.limits = Limits(*limits)
        if len(poses) != 3 * len(robots):
            raise ValueError(f"parameter start_poses: expected {3 * len(robots)} numbers "
                             f"(x, y, theta for each of {len(robots)} robots), got {len(poses)}")
        self.auth = NodeAuth(self, identities=["ideal_driver"])
        self.guard = Guard(self.get_logger())   # a bad command is dropped, not driven
        self.robots: dict[str, _Robot] = {}
        for i, name in enumerate(robots):
            self._add(name, tuple(poses[3 * i:3 * i + 3]))
        self.tf = frames.TfBroadcaster(self)
        self.tf.set_robots(self.robots)
        tf_rate = p("tf_rate_hz", 20.0).value
        if not tf_rate > 0:
            raise ValueError(f"parameter tf_rate_hz: expected Hz > 0, got {tf_rate!r}")
        self._tf_every = max(1, round(rate / tf_rate))
        self._ticks = 0
        self.create_service(SpawnRobot, "~/spawn_robot", self._on_spawn)
        self.create_subscription(RobotNotice, self.names("/fleet/robot_removed"),
                                 self._on_removed, qos.PROTOCOL)
        self._last = None
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=Time(nanoseconds=0).to_msg()))
        self.create_timer(1.0 / rate, self._tick)
        clock = (f", publishing /clock at {self.rtf:g}x real time" if self.publish_clock
                 else "")
        self.get_logger().info(f"ideal driver ready: {len(self.robots)} robots "
                               f"({', '.join(self.robots)}) at {rate:g} Hz{clock}")

    def _add(self, name: str, pose: tuple[float, float, float]) -> _Robot:
        r = _Robot(name, pose, OdomPacer(self._period, self.idle_rate, self.idle_after))
        r.link = DriverLink(self, self.auth, name, self.guard.wrap(
            f"/{name}/cmd_vel", lambda msg, r=r: self._on_cmd(r, msg), lambda _m: name))
        r.estop_srv = EstopServices(self, self.auth, name,
                                    lambda engage, who, why, r=r: self._set_estop(r, engage))
        self.robots[name] = r
        return r

    def _on_spawn(self, req: SpawnRobot.Request, resp: SpawnRobot.Response):
        pose = (req.x, req.y, req.theta)
        if refused := self.auth.refusal(req, "ideal_driver/spawn_robot"):
            resp.error = f"refused: not signed by an operator of the fleet ({refused})"
        elif not _ROS_NAME.match(req.robot):
            resp.error = (f"{req.robot!r} is not a valid robot name (a letter, then letters, "
                          "digits or '_')")
        elif req.robot in self.robots:
            resp.error = (f"robot {req.robot!r} is already in the world of {self.get_name()} "
                          "(remove it from the fleet first: fleet-coord remove-robot "
                          f"{req.robot})")
        elif not all(math.isfinite(v) for v in pose):
            resp.error = f"pose {pose} is not finite"
        elif not self.auth.has_link(req.robot):
            resp.error = (f"no link key for {req.robot!r} in {self.auth.keys.path} (provision "
                          f"it first: fleet-coord keys add CONFIG {req.robot})")
        else:
            self._add(req.robot, pose)
            self.tf.set_robots(self.robots)
            resp.ok = True
            self.get_logger().info(f"spawned {req.robot} at ({req.x:g}, {req.y:g}, "
                                   f"{req.theta:g})")
            return self.auth.sign(resp, "ideal_driver/spawn_robot#response", request=req.auth)
        self.get_logger().warning(f"spawn refused: {resp.error}")
        return self.auth.sign(resp, "ideal_driver/spawn_robot#response", request=req.auth)

    def _on_removed(self, msg: RobotNotice) -> None:
        if not self.auth.check(msg, "fleet/robot_removed"):
            return
        r = self.robots.pop(msg.robot, None)
        if r is None:
            return
        r.link.destroy()
        r.estop_srv.destroy()
        self.tf.set_robots(self.robots)
        self.get_logger().info(f"{msg.robot} removed from the fleet: taken out of the world")

    def now(self) -> Time:
        """The fleet's time: sim time when this driver is the clock, else the node's."""
        if self.clock_pub is not None:
            return Time(nanoseconds=self._sim_ns)
        return self.get_clock().now()

    def _set_estop(self, robot: _Robot, engage: bool) -> tuple[bool, str]:
        robot.estop = engage
        message = (f"{robot.name}: e-stop engaged, motors off" if robot.estop
                   else f"{robot.name}: e-stop released")
        self.get_logger().warning(message)
        return True, message

    def _on_cmd(self, robot: _Robot, msg: Twist) -> None:
        if not (math.isfinite(msg.linear.x) and math.isfinite(msg.angular.z)):
            raise BadInput(f"/{robot.name}/cmd_vel: linear.x = {msg.linear.x!r}, angular.z = "
                           f"{msg.angular.z!r}: expected finite numbers (dropped; the last "
                           "command stands until cmd_timeout)")
        robot.cmd = (msg.linear.x, msg.angular.z)
        robot.cmd_stamp = self.now()

    def _tick(self) -> None:
        if self.clock_pub is not None:
            self._sim_ns += self._step_ns
            now = self.now()
            self.clock_pub.publish(Clock(clock=now.to_msg()))
        else:
            now = self.get_clock().now()
        if self._last is None:
            self._last = now
        dt = (now - self._last).nanoseconds * 1e-9
        self._last = now
        stamp = now.to_msg()
        t = now.nanoseconds * 1e-9
        for r in list(self.robots.values()):
            fresh = (r.cmd_stamp is not None
                     and (now - r.cmd_stamp).nanoseconds * 1e-9 <= self.cmd_timeout)
            v, w = r.cmd if fresh and not r.estop else (0.0, 0.0)
            if dt > 0:
                r.state = step(r.state, v, w, dt, self.limits)
            if r.pacer.due(t, (v, w), (r.state.v, r.state.w)):
                r.link.publish_odom(odometry(r.name, r.state, stamp))
        self._ticks += 1
        if self._ticks % self._tf_every == 0:
            self.tf.publish(stamp, [(r.name, r.state.x, r.state.y, r.state.theta)
                                    for r in self.robots.values()])


_ROS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def odometry(robot: str, s: UnicycleState, stamp) -> Odometry:
    msg = odometry_msg(robot, s.x, s.y, s.theta, s.v, s.w, stamp)
    msg.pose.covariance = frames.EXACT_COVARIANCE
    msg.twist.covariance = frames.EXACT_COVARIANCE
    return msg


def main(args=None) -> None:
    run_nodes(lambda _argv: [IdealDriver()], args)


if __name__ == "__main__":
    main()
