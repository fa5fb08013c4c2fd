"""sim: the ROS 2 node that owns the PyBullet world and is the fleet's clock.

Driver interface (the same as ``fleet_coord.ideal_driver`` and the serial bridge, like
Gazebo's diff-drive plugin), per robot namespace ``/<robot>/``:
  - subscribes ``cmd_vel`` (geometry_msgs/Twist, COMMAND QoS); a robot whose commands
    stop for longer than ``cmd_timeout`` seconds of sim time is stopped (a watchdog);
  - serves ``estop`` (std_srvs/SetBool): true latches the robot's motors off, false
    releases them (as the ideal driver and the serial bridge);
  - publishes ``odom`` (nav_msgs/Odometry, ODOM QoS, frame ``<robot>/odom``, child
    ``<robot>/base_link``, exact covariances) at ``odom_rate`` Hz of sim time, stamped
    with sim time (a robot that has stood with no command for ``idle_after`` s: at
    ``idle_odom_rate`` until its next non-zero command; fleet_coord/core/pacing.py), and
    the same poses on /tf (``<robot>/odom -> <robot>/base_link``, one
    message for all robots) at ``tf_rate`` Hz, with ``map -> <robot>/odom`` on
    /tf_static (fleet_coord.frames).

The clock: it publishes ``/clock`` (rosgraph_msgs/Clock, CLOCK QoS) after every step and
steps at ``real_time_factor`` x wall time (1.0 = real time, N = N times faster, 0 = as
fast as the CPU allows). Every other fleet node runs with ``use_sim_time: true``; this
node's own clock must stay wall time (it paces itself by it), so ``use_sim_time: true``
given to it, e.g. by a launch file setting it for every node, is overridden with a
warning.

Contacts: ``/sim/contacts/robot_robot`` and ``/sim/contacts/robot_obstacle``
(std_msgs/UInt32, reliable + transient-local: a late subscriber gets the current count)
count contact events since start; ``/diagnostics`` (diagnostic_msgs/DiagnosticArray)
carries them with sim time and the measured real-time factor once per wall second.

Parameters: the ideal driver's (``robots``, ``start_poses`` as flat x, y, theta per
robot, ``max_v``, ``max_w``, ``max_acc``, ``max_alpha``, ``cmd_timeout``) plus ``map``
(MovingAI .map or YAML roadmap; empty = bundled warehouse), ``mode`` (kinematic |
physics), ``dt``, ``physics_dt``, ``real_time_factor``, ``odom_rate``, ``idle_odom_rate``,
``idle_after``, ``footprint_radius``, ``gui``, ``max_lead`` (lock-step with the agents: the
sim never runs more than this many sim seconds ahead of the slowest agent's
``/fleet/robot_states`` stamp, among the agents whose robot has a job or moves: an idle
robot's agent reports only at its ``idle_state_rate``, and drives nothing; 0 = off, the
default), ``max_cmd_lead`` (lock-step with each robot's controller:
while a robot drives on a non-zero ``cmd_vel``, the sim never runs more than this many sim
seconds past it, so a starved agent's robot cannot drive on a stale command; a controller
silent for 2 wall seconds no longer holds it; 0 = off, the default).
"""
from __future__ import annotations

import math
import struct
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from fleet_coord_msgs.msg import RobotState
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rcl_interfaces.msg import ParameterDescriptor
from rosgraph_msgs.msg import Clock
from std_msgs.msg import UInt32

from fleet_coord import frames, parameters, qos
from fleet_coord.convert import from_time, odometry_msg, time_from_ns
from fleet_coord.core.pacing import IDLE_AFTER, IDLE_ODOM_RATE, OdomPacer
from fleet_coord.namespace import FleetNames
from fleet_coord.node_auth import NodeAuth
from fleet_coord.robot_link import DriverLink, EstopServices
from fleet_coord.spin import run_nodes
from fleet_coord.core.kinematics import Limits
from fleet_coord_sim.world import MODES, SimWorld

#: Contact counters: reliable and latched (transient-local, keep-last 1), so a monitor
#: that starts late still reads the current counts.
CONTACTS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)

# When stepping falls this far behind the requested pace (wall seconds), the debt is
# dropped instead of being worked off in a burst: the sim then runs as fast as it can.
_MAX_LAG_S = 0.25
# At most this many steps per timer callback, so cmd_vel callbacks are served between.
_MAX_STEPS_PER_TICK = 10
# Lock-step: an agent silent this long (wall s) no longer holds the sim back.
_FOLLOW_SILENT_S = 2.0


class SerializedOdometry:
    """One robot's nav_msgs/Odometry kept as its serialized (CDR) bytes, so publishing
    is a few ``struct.pack_into`` and a raw publish.

    Why: rclpy converts a Python Odometry (two 36-double covariances, nested messages)
    field by field on every publish: 25 us a message, measured, against 2 us for the
    bytes. At 100 robots x 50 Hz x 50 times real time that is the difference between
    the odometry fitting in the step budget or being the whole of it. Subscribers see an
    ordinary Odometry. The field offsets are found, not assumed: a template is serialized
    with a distinct sentinel in every field we write, and each sentinel is located.
    """

    _SENTINELS = dict(sec=1_357_924_680, nanosec=864_209_753, x=-1.2345678901e7,
                      y=-2.3456789012e7, qz=-3.4567890123e7, qw=-4.5678901234e7,
                      v=-5.6789012345e7, w=-6.7890123456e7)

    def __init__(self, robot: str) -> None:
        s = self._SENTINELS
        msg = Odometry()
        msg.header.frame_id = frames.odom_frame(robot)
        msg.child_frame_id = frames.base_frame(robot)
        msg.pose.covariance = frames.EXACT_COVARIANCE
        msg.twist.covariance = frames.EXACT_COVARIANCE
        msg.header.stamp.sec, msg.header.stamp.nanosec = s["sec"], s["nanosec"]
        msg.pose.pose.position.x, msg.pose.pose.position.y = s["x"], s["y"]
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = s["qz"], s["qw"]
        msg.twist.twist.linear.x, msg.twist.twist.angular.z = s["v"], s["w"]
        self.template = bytearray(serialize_message(msg))
        if self.template[1] != 1:  # CDR encapsulation: 0x0001 = little-endian
            raise RuntimeError("expected little-endian CDR from serialize_message")

        def where(field: str, fmt: str) -> int:
            packed = struct.pack(fmt, s[field])
            if self.template.count(packed) != 1:
                raise RuntimeError(f"cannot locate Odometry field {field} in its CDR bytes")
            return self.template.find(packed)

        self._stamp = where("sec", "<i")
        self._xy, self._q = where("x", "<d"), where("qz", "<d")
        self._v, self._w = where("v", "<d"), where("w", "<d")
        if (where("nanosec", "<I") != self._stamp + 4 or where("y", "<d") != self._xy + 8
                or where("qw", "<d") != self._q + 8):
            raise RuntimeError("unexpected Odometry CDR layout")

    def pack(self, sec: int, nanosec: int, x: float, y: float, qz: float, qw: float,
             v: float, w: float) -> bytes:
        b = self.template
        struct.pack_into("<iI", b, self._stamp, sec, nanosec)
        struct.pack_into("<dd", b, self._xy, x, y)
        struct.pack_into("<dd", b, self._q, qz, qw)
        struct.pack_into("<d", b, self._v, v)
        struct.pack_into("<d", b, self._w, w)
        return bytes(b)


class SimNode(Node):
    """Owns a :class:`fleet_coord_sim.world.SimWorld`; see the module docstring for its interface."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim", **kwargs)
        self.names = FleetNames.of_node(self)
        if self.get_parameter("use_sim_time").value:
            self.get_logger().warning(
                "use_sim_time is true for the sim node: overriding it to false, the sim is "
                "the clock source and paces itself by wall time")
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, False)])

        def param(name, default, description):
            return self.declare_parameter(
                name, default, ParameterDescriptor(description=description)).value

        robots = param("robots", ["robot_1"], "robot names; each gets /<name>/cmd_vel, odom")
        poses = param("start_poses", [1.0, 1.0, 0.0],
                      "start pose of every robot: flat x, y, theta (m, m, rad) per robot")
        self.cmd_timeout = param("cmd_timeout", 0.5,
                                 "stop a robot after this many sim seconds without cmd_vel")
        limit_values = dict(max_v=param("max_v", 1.0, "m/s"), max_w=param("max_w", 2.0, "rad/s"),
                            max_acc=param("max_acc", 2.0, "m/s^2"),
                            max_alpha=param("max_alpha", 6.0, "rad/s^2"))
        map_path = param("map", "", "MovingAI .map or YAML roadmap; empty: bundled warehouse")
        mode = param("mode", "kinematic", f"one of {MODES}")
        dt = param("dt", 0.02, "sim seconds per step")
        physics_dt = param("physics_dt", 0.005, "Bullet's internal step in physics mode (s)")
        self.rtf = param("real_time_factor", 1.0,
                         "sim seconds per wall second; 0 = as fast as possible")
        odom_rate = param("odom_rate", 50.0,
                          "odometry messages per robot per sim second; 0 = every step")
        idle_odom_rate = param("idle_odom_rate", IDLE_ODOM_RATE,
                               "odometry messages per sim second of a robot that has stood "
                               "with no command for idle_after s; 0 = odom_rate always")
        idle_after = param("idle_after", IDLE_AFTER,
                           "sim s a robot stands with no command before its odometry slows")
        tf_rate = param("tf_rate", 20.0, "/tf messages (all robots) per sim second")
        radius = param("footprint_radius", 0.15, "robot footprint radius (m)")
        gui = param("gui", False, "open the PyBullet GUI (needs a display)")
        self.max_lead = param(
            "max_lead", 0.0,
            "lock-step with the fleet: never run more than this many sim seconds ahead of "
            "the slowest robot agent (its newest /fleet/robot_states stamp); 0 = off")
        self.max_cmd_lead = param(
            "max_cmd_lead", 0.0,
            "lock-step with each robot's controller: while a robot drives on a non-zero "
            "cmd_vel, never run more than this many sim seconds past that command (a "
            "starved controller would let it drive on a stale one); 0 = off")

        parameters.check_node(self, "sim")
        limits = Limits(**limit_values)
        if len(poses) != 3 * len(robots):
            raise ValueError(f"parameter start_poses: expected {3 * len(robots)} numbers "
                             f"(x, y, theta for each of {len(robots)} robots), got {len(poses)}")
        if not (math.isfinite(self.rtf) and self.rtf >= 0):
            raise ValueError(f"parameter real_time_factor: expected a number >= 0 "
                             f"(0 = as fast as possible), got {self.rtf!r}")
        if not (0 <= self.max_cmd_lead < self.cmd_timeout):
            raise ValueError(f"parameter max_cmd_lead: expected 0 (off) or sim seconds below "
                             f"cmd_timeout ({self.cmd_timeout:g}), got {self.max_cmd_lead!r}")
        if not (math.isfinite(odom_rate) and odom_rate >= 0):
            raise ValueError(f"parameter odom_rate: expected Hz >= 0, got {odom_rate!r}")
        if not (math.isfinite(tf_rate) and tf_rate > 0):
            raise ValueError(f"parameter tf_rate: expected Hz > 0, got {tf_rate!r}")

        self.world = SimWorld(map_path, mode=mode, dt=dt, robot_radius=radius, limits=limits,
                              physics_dt=physics_dt, gui=gui)
        try:
            for i, name in enumerate(robots):
                self.world.add_robot(name, *poses[3 * i:3 * i + 3])
        except BaseException:
            self.world.close()
            raise
        self._dt_ns = round(self.world.dt * 1e9)
        # Odometry goes out on the first step at or after each multiple of 1/odom_rate: the
        # mean rate is exact even when the period is not a whole number of steps.
        self._odom_period_ns = round(1e9 / odom_rate) if odom_rate else 0
        self._next_odom_ns = self._odom_period_ns
        self._tf_period_ns = round(1e9 / tf_rate)
        self._next_tf_ns = 0
        n = len(robots)
        try:
            self._pacers = [OdomPacer(1.0 / odom_rate if odom_rate else dt, idle_odom_rate,
                                      idle_after) for _ in range(n)]
        except ValueError as e:
            raise ValueError(f"parameter idle_odom_rate / idle_after: {e}") from None
        self._cmd_stamp = np.full(n, -math.inf)  # sim time of each robot's last cmd_vel
        self._cmd_wall = np.full(n, -math.inf)   # ... and wall time (time.monotonic)
        self._cmd = np.zeros((n, 2))
        self._estop = np.zeros(n, dtype=bool)    # latched motors-off, per robot

        self._odom_pubs = []
        self._odom_wire = []
        # authenticated: signed commands in, odometry also signed (fleet_coord.robot_link);
        # messages built in Python then, not the prepacked plain odometry below
        self.auth = NodeAuth(self, identities=["sim"])
        self._links = [DriverLink(self, self.auth, name, lambda m, i=i: self._on_cmd(i, m))
                       for i, name in enumerate(robots)] if self.auth.enabled else []
        for i, name in enumerate(robots if not self._links else ()):
            self._odom_pubs.append(self.create_publisher(Odometry, self.names(f"/{name}/odom"),
                                                         qos.ODOM))
            self._odom_wire.append(SerializedOdometry(name))
            self.create_subscription(Twist, self.names(f"/{name}/cmd_vel"),
                                     lambda m, i=i: self._on_cmd(i, m), qos.COMMAND)
        for i, name in enumerate(robots):
            EstopServices(self, self.auth, name,
                          lambda engage, who, why, i=i: self._set_estop(i, engage))
        self.tf = frames.TfBroadcaster(self)
        self.tf.set_robots(robots)
        self._clock_pub = self.create_publisher(Clock, "/clock", qos.CLOCK)
        # /clock goes out every step: published as its 12 CDR bytes, like the odometry.
        self._clock_header = bytes(serialize_message(Clock()))[:4]
        if serialize_message(Clock(clock=time_from_ns(1_234_567_890_123))) != self._clock_bytes(
                1_234_567_890_123):
            raise RuntimeError("unexpected rosgraph_msgs/Clock CDR layout")
        self._contact_pubs = (
            self.create_publisher(UInt32, self.names("/sim/contacts/robot_robot"), CONTACTS_QOS),
            self.create_publisher(UInt32, self.names("/sim/contacts/robot_obstacle"),
                                CONTACTS_QOS))
        self._diag_pub = self.create_publisher(DiagnosticArray, self.names("/diagnostics"), 10)
        self._published_contacts = None
        self.odom_published = 0

        self._anchor_wall = time.monotonic()
        self._anchor_steps = 0
        self._diag_wall, self._diag_sim = self._anchor_wall, 0.0
        self._publish_contacts()
        self._publish_odom(0)  # robots are visible at their start poses at t = 0
        self._clock_pub.publish(self._clock_bytes(0))
        # The node's clock is wall time, so this timer paces the sim by wall time.
        # Lock-step (max_lead > 0): agents follow sim time in other processes; when the
        # CPU is short they fall behind, and a sim that keeps its pace would let robots
        # drive on stale commands. Each agent stamps its state with the sim time its own
        # loop has reached; the sim waits while it leads the slowest agent by more than
        # max_lead. Agents not heard yet (starting up) or silent for _FOLLOW_SILENT_S wall
        # seconds (dead: the traffic authority declares them lost) do not hold it back.
        self._agent_t: dict[str, tuple[float, float]] = {}  # robot -> (sim stamp, wall)
        self.held_steps = 0
        if self.max_lead > 0:
            names = set(robots)

            def on_state(m) -> None:
                if m.robot not in names or not self.auth.check_state(m):
                    return
                if m.mode == RobotState.IDLE and abs(m.twist.linear.x) < 1e-3 \
                        and abs(m.twist.angular.z) < 1e-3:
                    # parked: its agent drives nothing and reports at its idle rate
                    self._agent_t.pop(m.robot, None)
                else:
                    self._agent_t[m.robot] = (from_time(m.header.stamp), time.monotonic())
            self.create_subscription(RobotState, self.names("/fleet/robot_states"), on_state,
                                     qos.state_qos())
        self._timer = self.create_timer(dt / self.rtf if self.rtf > 0 else 0.0, self._tick)
        self.get_logger().info(
            f"{n} robots on {self.world.map_path} ({mode}, dt {dt} s, real-time factor "
            f"{self.rtf if self.rtf > 0 else 'as fast as possible'})")

    # ----- callbacks

    def _set_estop(self, i: int, engage: bool) -> tuple[bool, str]:
        """/<robot>/estop and /<robot>/set_estop (robot_link.EstopServices), as the ideal
        driver and the serial bridge serve them: engaging latches the robot's motors off
        (it stops at its deceleration limit)."""
        self._estop[i] = engage
        message = (f"{self.world.names[i]}: e-stop engaged, motors off" if engage
                   else f"{self.world.names[i]}: e-stop released")
        self.get_logger().warning(message)
        return True, message

    def _on_cmd(self, i: int, msg: Twist) -> None:
        self._cmd[i] = (msg.linear.x, msg.angular.z)
        self._cmd_stamp[i] = self.world.time
        self._cmd_wall[i] = time.monotonic()

    def _held(self) -> bool:
        """Lock-step: is the sim too far ahead of the slowest live agent, or of the last
        command of a robot that drives?"""
        wall = time.monotonic()
        if self.max_cmd_lead > 0:
            # a controller that stops commanding a moving robot is stalled (held here,
            # up to _FOLLOW_SILENT_S wall) or gone (then the cmd_timeout watchdog stops it)
            age = self.world.time - self._cmd_stamp
            late = (age > self.max_cmd_lead) & (age <= self.cmd_timeout) & \
                (wall - self._cmd_wall < _FOLLOW_SILENT_S) & (self._cmd != 0.0).any(axis=1)
            if late.any():
                return True
        if self.max_lead <= 0 or not self._agent_t:
            return False
        live = [t for t, seen in self._agent_t.values() if wall - seen < _FOLLOW_SILENT_S]
        return bool(live) and self.world.time > min(live) + self.max_lead

    def _tick(self) -> None:
        if self._held():
            self.held_steps += 1
            self._anchor_wall, self._anchor_steps = time.monotonic(), self.world.steps
            return
        if self.rtf <= 0:
            self.spin_step()
            return
        now = time.monotonic()
        due = int((now - self._anchor_wall) * self.rtf / self.world.dt) - (
            self.world.steps - self._anchor_steps)
        if due * self.world.dt / self.rtf > _MAX_LAG_S:  # CPU-bound: drop the debt
            self._anchor_wall, self._anchor_steps = now, self.world.steps
            due = 1
        for _ in range(min(due, _MAX_STEPS_PER_TICK)):
            if self._held():
                break
            self.spin_step()

    # ----- stepping

    def spin_step(self) -> None:
        """One sim step: apply fresh commands (stale ones stop their robot), step the
        world, publish /clock, odometry when due, contact counts when they change."""
        world = self.world
        fresh = ((world.time - self._cmd_stamp) <= self.cmd_timeout) & ~self._estop
        world.robots.cmd[:] = np.where(fresh[:, None], self._cmd, 0.0)
        for event in world.step():  # rare in a fleet that works: each one is worth a line
            self.get_logger().warning(
                f"contact at t={event.time:.2f} s: {event.a} hit {event.b} ({event.kind})")
        ns = world.steps * self._dt_ns
        self._clock_pub.publish(self._clock_bytes(ns))
        if ns >= self._next_odom_ns:
            self._publish_odom(ns)
            if self._odom_period_ns:
                self._next_odom_ns += self._odom_period_ns * (
                    (ns - self._next_odom_ns) // self._odom_period_ns + 1)
        if self._published_contacts != (world.contacts.robot_robot,
                                        world.contacts.robot_obstacle):
            self._publish_contacts()
        wall = time.monotonic()
        if wall - self._diag_wall >= 1.0:
            self._publish_diagnostics(wall)

    def _clock_bytes(self, ns: int) -> bytes:
        return self._clock_header + struct.pack("<iI", *divmod(ns, 1_000_000_000))

    def _publish_odom(self, ns: int) -> None:
        sec, nanosec = divmod(ns, 1_000_000_000)
        states = self.world.states()
        half = states[:, 2] * 0.5
        rows = np.column_stack([states[:, 0], states[:, 1], np.sin(half), np.cos(half),
                                states[:, 3], states[:, 4]]).tolist()
        t, cmds = ns * 1e-9, self.world.robots.cmd.tolist()
        due = [p.due(t, (c[0], c[1]), (row[4], row[5]))
               for p, c, row in zip(self._pacers, cmds, rows)]
        for pub, wire, row, d in zip(self._odom_pubs, self._odom_wire, rows, due):
            if d:
                pub.publish(wire.pack(sec, nanosec, *row))
        if self._links:
            stamp = time_from_ns(ns)
            for link, st, d in zip(self._links, states.tolist(), due):
                if d:
                    link.publish_odom(odometry_msg(link.robot, *st[:5], stamp))
        self.odom_published += sum(due)
        if ns >= self._next_tf_ns:
            self._next_tf_ns = ns + self._tf_period_ns
            self.tf.publish(time_from_ns(ns), zip(self.world.names, states[:, 0].tolist(),
                                              states[:, 1].tolist(), states[:, 2].tolist()))

    def _publish_contacts(self) -> None:
        c = self.world.contacts
        self._published_contacts = (c.robot_robot, c.robot_obstacle)
        for pub, count in zip(self._contact_pubs, self._published_contacts):
            pub.publish(UInt32(data=count))

    def _publish_diagnostics(self, wall: float) -> None:
        world, c = self.world, self.world.contacts
        rtf = (world.time - self._diag_sim) / (wall - self._diag_wall)
        self._diag_wall, self._diag_sim = wall, world.time
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name="sim", hardware_id="pybullet",
                                  message=f"{world.mode}, {len(world.names)} robots")
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ("sim_time", f"{world.time:.3f}"), ("steps", world.steps),
            ("real_time_factor", f"{rtf:.2f}"), ("robot_robot_contacts", c.robot_robot),
            ("robot_obstacle_contacts", c.robot_obstacle))]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = time_from_ns(world.steps * self._dt_ns)
        self._diag_pub.publish(msg)

    def destroy_node(self) -> None:
        c = self.world.contacts
        self.get_logger().info(f"stopped at sim time {self.world.time:.2f} s; contacts: "
                               f"{c.robot_robot} robot-robot, {c.robot_obstacle} robot-obstacle")
        self._timer.cancel()
        self.destroy_timer(self._timer)
        self.world.close()
        super().destroy_node()


def _executor():
    # The events executor serves the step timer and cmd_vel with a fraction of the
    # default executor's overhead (measured: 2.6x the steps per second for 2 robots).
    try:
        from rclpy.experimental import EventsExecutor
        return EventsExecutor()
    except ImportError:
        return rclpy.executors.SingleThreadedExecutor()


def main(args=None) -> None:
    # Ctrl-C / SIGTERM end the loop between callbacks (run_nodes' own handlers). rclpy's
    # handler would shut the context down (or raise KeyboardInterrupt) in the middle of a
    # step, and with the step timer always busy that is where a signal lands.
    run_nodes(lambda _argv: [SimNode()], args, executor_factory=_executor)


if __name__ == "__main__":
    main()
