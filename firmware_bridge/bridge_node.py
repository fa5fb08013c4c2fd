"""bridge_node: the serial robot backend behind the driver interface.

Per robot (one node per serial port), under `/<robot>/`:
  - subscribes `cmd_vel` (geometry_msgs/Twist, COMMAND QoS); the latest twist goes to the
    device at `cmd_rate_hz` as VEL_CMD with the watchdog timeout `cmd_timeout_ms`
    (a twist older than `cmd_vel_timeout` is sent as zero: the robot stops under control,
    and if the bridge itself dies the firmware watchdog stops it);
  - publishes `odom` (nav_msgs/Odometry, frame `<robot>/odom`, child `<robot>/base_link`)
    for every odometry frame from the device, with covariances that grow with the
    distance driven and the angle turned since the odometry was anchored (wheel odometry
    drifts; fleet_coord.frames), the same pose on /tf (`<robot>/odom -> <robot>/base_link`)
    and `map -> <robot>/odom` on /tf_static; and `battery` (sensor_msgs/BatteryState).
    The device integrates its pose from (0, 0, 0) at power-on (or its last odometry
    reset); the bridge composes it with `initial_pose`, the robot's map pose at that
    moment, so `<robot>/odom` is anchored at the map as the simulated backends' is (an
    agent reads it as its map pose). A restarted bridge keeps the pose: the device's
    odometry survives reconnects;
  - publishes link and device health on `/diagnostics` (diagnostic_msgs/DiagnosticArray);
  - serves `estop` (std_srvs/SetBool: true engages, false releases; answers once the
    device has confirmed) and `reset_odom` (std_srvs/Trigger: the device's pose back to
    0, 0, 0, i.e. the published pose back to `initial_pose`).

With authentication (parameters `auth_*`, docs/security.md) the commands come signed on
`cmd_vel_signed`, odometry also goes out signed (fleet_coord.robot_link), and `set_estop`
(fleet_coord_msgs/SetEstop) engages for any identity of the fleet but releases only for
an operator; the plain `estop` still engages (stopping is always safe) but refuses a
release.

A managed (lifecycle) node, `/<robot>/serial_bridge` with the standard lifecycle
services (`~/change_state`, `~/get_state`, ...; `ros2 lifecycle set /<robot>/serial_bridge
configure`):
  - unconfigured (at start): the port is closed;
  - configure: opens the port and handshakes; fails (back to unconfigured, the reason in
    the log) when no device answers within `configure_timeout` or the port cannot be
    opened. Once configured, a lost link is reconnected by itself, as before;
  - inactive: odometry, battery, tf and diagnostics flow and the e-stop works, but the
    device is commanded to stand still (zero velocity at `cmd_rate_hz`) and cmd_vel is
    ignored;
  - activate: cmd_vel is accepted; deactivate: the motors are stopped at once (a zero
    command) and cmd_vel is ignored again;
  - cleanup: stops the motors and closes the port; shutdown: the same, from any state.
With `autostart: true` (what `fleet-coord launch` and the launch files set) the node
configures itself as soon as the device answers (the link keeps trying to connect until
then) and activates.

The serial link itself (handshake, heartbeats, reconnects) is `fleet_coord_bridge.link.Link`;
this node only moves messages between it and ROS.
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import ParameterDescriptor
from sensor_msgs.msg import BatteryState
from std_srvs.srv import Trigger

from fleet_coord import frames, parameters, qos
from fleet_coord.convert import odometry_msg
from fleet_coord.core.trust import bridge_identity
from fleet_coord.namespace import FleetNames, robot_of
from fleet_coord.node_auth import NodeAuth
from fleet_coord.robot_link import DriverLink, EstopServices
from fleet_coord.spin import run_nodes
from fleet_coord_bridge import protocol as p
from fleet_coord_bridge.link import Link, LinkConfig, LinkState

DIAGNOSTICS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

#: (name, default, description) of every parameter; device ones also name their Param.
PARAMETERS: list[tuple[str, object, str]] = [
    ("robot", "", "robot name: topics live under /<robot>/; empty = the node's namespace"),
    ("autostart", False, "configure (as soon as the device answers) and activate by "
     "itself; false: wait for the lifecycle transitions (ros2 lifecycle set)"),
    ("configure_timeout", 5.0, "s the configure transition waits for the device's "
     "handshake before it fails"),
    ("port", "/dev/ttyUSB0", "serial device or pyserial URL (socket://host:port) of the "
     "robot's microcontroller"),
    ("baud", 115200, "serial baud rate (ignored by USB CDC and ptys)"),
    ("cmd_rate_hz", 20.0, "rate at which the latest cmd_vel is sent to the device"),
    ("cmd_timeout_ms", 250, "device watchdog: motors are zeroed when no command arrives "
     "for this long"),
    ("cmd_vel_timeout", 0.5, "s; an older cmd_vel is replaced by a zero command"),
    ("heartbeat_period_ms", 100, "heartbeat period, both ways"),
    ("link_timeout_ms", 500, "no frame from the device for this long = link lost; "
     "the bridge reports it and reconnects"),
    ("reconnect_interval_ms", 500, "period of attempts to reopen a lost port"),
    ("device_host_timeout_ms", 1000, "the device ends the session (motors off) after this "
     "much silence from the bridge"),
    ("odom_period_ms", 20, "periodic odometry from the device (besides one per command)"),
    ("status_period_ms", 200, "periodic status (battery, faults, e-stop) from the device"),
    ("diagnostics_period", 1.0, "s between /diagnostics messages"),
    ("initial_pose", [0.0, 0.0, 0.0], "x, y (m), theta (rad): the robot's pose in the map "
     "where its odometry reads (0, 0, 0), i.e. where it was powered on or its odometry "
     "reset; published odom = initial_pose composed with the device's odometry"),
    ("wheel_radius", 0.05, "m"),
    ("track_width", 0.30, "m, distance between the wheels' contact points"),
    ("max_v", 1.0, "m/s, the device clips commands to this"),
    ("max_omega", 3.0, "rad/s, the device clips commands to this"),
    ("max_accel", 2.0, "m/s^2, the device ramps the commanded speed"),
    ("max_alpha", 6.0, "rad/s^2, the device ramps the commanded turn rate"),
]

_DEVICE_PARAMS = {
    "wheel_radius": p.Param.WHEEL_RADIUS, "track_width": p.Param.TRACK_WIDTH,
    "max_v": p.Param.MAX_V, "max_omega": p.Param.MAX_OMEGA,
    "max_accel": p.Param.MAX_ACCEL, "max_alpha": p.Param.MAX_ALPHA,
    "cmd_timeout_ms": p.Param.CMD_TIMEOUT_MS, "odom_period_ms": p.Param.ODOM_PERIOD_MS,
    "status_period_ms": p.Param.STATUS_PERIOD_MS,
    "device_host_timeout_ms": p.Param.HOST_TIMEOUT_MS,
    "heartbeat_period_ms": p.Param.HEARTBEAT_PERIOD_MS,
}

_LEVEL = {LinkState.UP: DiagnosticStatus.OK, LinkState.HANDSHAKE: DiagnosticStatus.WARN,
          LinkState.CONFIGURING: DiagnosticStatus.WARN,
          LinkState.DISCONNECTED: DiagnosticStatus.ERROR,
          LinkState.INCOMPATIBLE: DiagnosticStatus.ERROR, LinkState.STOPPED: DiagnosticStatus.STALE}


#: m between two odometry frames beyond which the device's pose jumped (a reset or a
#: reboot), which is not distance driven (at 1 m/s and 50 Hz a frame moves 2 cm)
_ODOM_JUMP_M = 0.5


class SerialBridge(LifecycleNode):
    def __init__(self, *, link_factory=Link, **kwargs) -> None:
        super().__init__("serial_bridge", **kwargs)
        prm = {}
        for name, default, desc in PARAMETERS:
            prm[name] = self.declare_parameter(
                name, default, ParameterDescriptor(description=desc)).value
        parameters.check_node(self, "serial_bridge")
        self._validate(prm)
        robot = prm["robot"] or robot_of(self.get_namespace())
        if not robot:
            raise ValueError("parameter robot is empty and the node runs in the root "
                             "namespace: set robot:=<name> or run it in a namespace")
        self.robot = robot
        self.configure_timeout = float(prm["configure_timeout"])
        self.lifecycle = "unconfigured"   # the primary state (for diagnostics and logs)
        self._active = False              # cmd_vel is taken (the active state)
        self.cmd_timeout_ms = int(prm["cmd_timeout_ms"])
        self.cmd_vel_timeout = float(prm["cmd_vel_timeout"])
        self._cmd = (0.0, 0.0)
        self._cmd_at: float | None = None  # monotonic time of the last cmd_vel
        self.initial_pose = tuple(float(v) for v in prm["initial_pose"])
        # distance driven and angle turned since the odometry was anchored (covariance)
        self._driven = [0.0, 0.0]
        self._device_pose: tuple[float, float, float] | None = None

        config = LinkConfig(
            port=prm["port"], baud=int(prm["baud"]),
            heartbeat_period=prm["heartbeat_period_ms"] / 1000.0,
            link_timeout=prm["link_timeout_ms"] / 1000.0,
            reconnect_interval=prm["reconnect_interval_ms"] / 1000.0,
            params={param: float(prm[name]) for name, param in _DEVICE_PARAMS.items()})
        self.link = link_factory(config, on_odometry=self._on_odometry,
                                 on_status=self._on_status, on_state=self._on_link_state)

        self.names = FleetNames.of_node(self, robot)
        ns = self.names(f"/{robot}")
        self.auth = NodeAuth(self, identities=[bridge_identity(robot)])
        self._link = DriverLink(self, self.auth, robot, self._on_cmd_vel)
        self._battery_pub = self.create_publisher(BatteryState, f"{ns}/battery",
                                                  qos.state_qos())
        self._diag_pub = self.create_publisher(DiagnosticArray, self.names("/diagnostics"),
                                               DIAGNOSTICS)
        self.tf = frames.TfBroadcaster(self)
        self.tf.set_robots([robot])
        services = MutuallyExclusiveCallbackGroup()  # they block until the device answers
        self._estop = EstopServices(self, self.auth, robot, self._set_estop,
                                    callback_group=services)
        self.create_service(Trigger, f"{ns}/reset_odom", self._on_reset_odom,
                            callback_group=services)
        self.create_timer(1.0 / prm["cmd_rate_hz"], self._send_command)
        self.create_timer(prm["diagnostics_period"], self._publish_diagnostics)
        self._autostart = None
        if prm["autostart"]:
            # the link connects in the background (and logs why it cannot); the node
            # configures and activates once it is up
            self.link.start()
            self._autostart = self.create_timer(config.reconnect_interval, self._autostart_step)

    @staticmethod
    def _validate(prm: dict) -> None:
        for name in ("cmd_rate_hz", "cmd_vel_timeout", "diagnostics_period", "wheel_radius",
                     "track_width", "max_v", "max_omega", "max_accel", "max_alpha",
                     "configure_timeout"):
            if not (isinstance(prm[name], (int, float)) and prm[name] > 0
                    and math.isfinite(prm[name])):
                raise ValueError(f"parameter {name} must be a number > 0, got {prm[name]!r}")
        for name in ("cmd_timeout_ms", "heartbeat_period_ms", "link_timeout_ms",
                     "reconnect_interval_ms", "device_host_timeout_ms", "status_period_ms"):
            if not (isinstance(prm[name], int) and 10 <= prm[name] <= 65535):
                raise ValueError(f"parameter {name} must be an integer in 10..65535 ms, "
                                 f"got {prm[name]!r}")
        pose = prm["initial_pose"]
        if not (len(pose) == 3 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                       for v in pose)):
            raise ValueError(f"parameter initial_pose must be 3 finite numbers [x, y, theta], "
                             f"got {list(pose)!r}")
        if prm["link_timeout_ms"] <= prm["heartbeat_period_ms"]:
            raise ValueError(f"parameter link_timeout_ms ({prm['link_timeout_ms']}) must "
                             f"exceed heartbeat_period_ms ({prm['heartbeat_period_ms']})")
        if 1000.0 / prm["cmd_rate_hz"] >= prm["cmd_timeout_ms"]:
            raise ValueError(f"parameter cmd_timeout_ms ({prm['cmd_timeout_ms']}) must "
                             f"exceed the command period (cmd_rate_hz {prm['cmd_rate_hz']})")

    # --- lifecycle -----------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        failures = self.link.stats.connect_failures
        if not self.link.running:
            self.link.start()
        port = self.link.config.port
        if not self.link.wait_up(self.configure_timeout, failures):
            why = f"{self.link.state.value}: {self.link.reason}"
            self.link.stop()
            self.get_logger().error(f"configure failed: no fleet_bridge device answered on "
                                    f"{port} within {self.configure_timeout:g} s ({why}); "
                                    "the port is closed again")
            return TransitionCallbackReturn.FAILURE
        self.lifecycle = "inactive"
        self.get_logger().info(f"configured: link up on {port}; inactive (commands ignored "
                               "until activated)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cmd_at = None          # a twist from before the activation does not count
        self._active, self.lifecycle = True, "active"
        self.get_logger().info("active: accepting motion commands")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_motors()
        self.lifecycle = "inactive"
        self.get_logger().info("inactive: motors stopped, commands ignored")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        self.lifecycle = "unconfigured"
        self.get_logger().info(f"cleaned up: {self.link.config.port} closed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        self.lifecycle = "finalized"
        self.get_logger().info(f"shut down: motors stopped, {self.link.config.port} closed")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # a transition raised: stop the robot and go back to unconfigured
        self._close()
        self.lifecycle = "unconfigured"
        self.get_logger().error(f"error in a transition from {state.label}: motors "
                                f"stopped, {self.link.config.port} closed; unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _autostart_step(self) -> None:
        if self.lifecycle != "unconfigured":   # configured through the services meanwhile
            self._close_autostart()
            return
        if self.link.state is not LinkState.UP:
            if not self.link.running:   # a configure that failed in between closed it
                self.link.start()
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return   # the link dropped meanwhile: tried again at the next step
        self._close_autostart()
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("autostart: could not activate (see above); waiting "
                                    "for lifecycle transitions")

    def _stop_motors(self) -> None:
        self._active = False
        self._cmd, self._cmd_at = (0.0, 0.0), None
        self.link.send_velocity(0.0, 0.0, self.cmd_timeout_ms)

    def _close_autostart(self) -> None:
        if self._autostart is not None:
            self.destroy_timer(self._autostart)
            self._autostart = None

    def _close(self) -> None:
        self._close_autostart()
        self._stop_motors()
        self.link.stop()

    # --- ROS -> device -------------------------------------------------------------------

    def _on_cmd_vel(self, msg: Twist) -> None:
        if not self._active:
            return
        self._cmd = (msg.linear.x, msg.angular.z)
        self._cmd_at = time.monotonic()

    def _send_command(self) -> None:
        # while configured but inactive this keeps commanding a stop: the device holds
        # still under control rather than by its watchdog
        fresh = (self._active and self._cmd_at is not None
                 and time.monotonic() - self._cmd_at <= self.cmd_vel_timeout)
        v, w = self._cmd if fresh else (0.0, 0.0)
        if not (math.isfinite(v) and math.isfinite(w)):
            v, w = 0.0, 0.0  # the device would refuse it; a stop is the safe reading
        self.link.send_velocity(v, w, self.cmd_timeout_ms)

    def _set_estop(self, engage: bool, who: str = "", why: str = "") -> tuple[bool, str]:
        ok, message = self.link.set_estop(engage)
        text = (f"e-stop {'engage' if engage else 'release'} requested"
                + (f" by {who}" if who else "") + (f" ({why})" if why else "") + f": {message}")
        if engage or not ok:
            self.get_logger().warning(text)
        else:  # rclpy ties one call site to one severity
            self.get_logger().info(text)
        return ok, message

    def _on_reset_odom(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        res.success, res.message = self.link.reset_odometry()
        if res.success:
            self._driven, self._device_pose = [0.0, 0.0], None
            res.message = "odometry reset to (0, 0, 0): the robot is at initial_pose " \
                          "(%g, %g, %g)" % self.initial_pose
        return res

    # --- device -> ROS (called from the link's I/O thread) ------------------------------

    def _on_odometry(self, m: p.Odometry, _rx_time: float) -> None:
        prev, self._device_pose = self._device_pose, (m.x, m.y, m.theta)
        if prev is not None:
            step = math.hypot(m.x - prev[0], m.y - prev[1])
            if step < _ODOM_JUMP_M:   # a bigger step is a device reset, not driving
                turn = (m.theta - prev[2] + math.pi) % (2 * math.pi) - math.pi
                self._driven[0] += step
                self._driven[1] += abs(turn)
        x0, y0, th0 = self.initial_pose
        c, s = math.cos(th0), math.sin(th0)
        x, y, yaw = x0 + c * m.x - s * m.y, y0 + s * m.x + c * m.y, th0 + m.theta
        stamp = self.get_clock().now().to_msg()
        msg = odometry_msg(self.robot, x, y, yaw, m.v, m.omega, stamp)  # twist: body frame
        msg.pose.covariance, msg.twist.covariance = frames.wheel_odometry_covariance(
            *self._driven)
        self._link.publish_odom(msg)
        self.tf.publish(stamp, [(self.robot, x, y, yaw)])

    def _on_status(self, s: p.Status, _rx_time: float) -> None:
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = f"{self.robot}/base_link"
        msg.voltage = s.battery_mv / 1000.0
        msg.percentage = s.battery_pct / 100.0 if s.battery_pct <= 100 else math.nan
        msg.present = True
        for unknown in ("temperature", "current", "charge", "capacity", "design_capacity"):
            setattr(msg, unknown, math.nan)
        msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
        msg.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_UNKNOWN
        self._battery_pub.publish(msg)

    def _on_link_state(self, state: LinkState, reason: str) -> None:
        if state is LinkState.UP:
            self.get_logger().info(f"{self.link.config.port}: link up")
        elif state in (LinkState.DISCONNECTED, LinkState.INCOMPATIBLE):
            self.get_logger().warning(f"{self.link.config.port}: {state.value}: {reason}")
        if state is not LinkState.STOPPED:
            self._publish_diagnostics()

    # --- diagnostics ---------------------------------------------------------------------

    def diagnostics(self) -> list[DiagnosticStatus]:
        link, stats = self.link, self.link.stats
        name = self.get_name()
        ls = DiagnosticStatus(name=f"{name}: serial link ({self.robot})",
                              hardware_id=link.config.port, level=_LEVEL[link.state])
        ls.message = link.state.value + (f": {link.reason}" if link.reason else "")
        if self.lifecycle == "inactive":   # configured, but it will not drive
            ls.level = max(ls.level, DiagnosticStatus.WARN)
            ls.message += "; lifecycle inactive: motion commands ignored"
        info = link.device_info
        age = link.last_rx_age()
        values = {
            "state": link.state.value, "lifecycle": self.lifecycle, "port": link.config.port,
            "firmware": f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}" if info else "",
            "device_id": str(info.device_id) if info else "",
            "protocol_version": str(p.PROTOCOL_VERSION),
            "frames_rx": str(stats.frames_rx), "frames_tx": str(stats.frames_tx),
            "corrupt_frames_rx": str(stats.corrupt_rx), "lost_frames_rx": str(stats.lost_rx),
            "nacks": str(stats.nacks), "connects": str(stats.connects),
            "link_losses": str(stats.link_losses),
            "connect_failures": str(stats.connect_failures),
            "last_rx_age_ms": f"{age * 1000:.0f}" if age is not None else "",
        }
        st = link.last_status
        if st is not None:
            values["device_corrupt_frames_rx"] = str(st.rx_errors)
            values["device_lost_frames_rx"] = str(st.rx_lost)
        ls.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        out = [ls]
        if st is not None:
            flags, faults = p.StateFlag(st.state), p.FaultFlag(st.faults)
            ds = DiagnosticStatus(name=f"{name}: device ({self.robot})",
                                  hardware_id=link.config.port)
            fault_names = [f.name for f in p.FaultFlag if f in faults]
            hard = [f for f in fault_names if f not in ("LOW_BATTERY", "HOST_TIMEOUT")]
            if hard:
                ds.level, ds.message = DiagnosticStatus.ERROR, "faults: " + ", ".join(hard)
            elif p.StateFlag.ESTOP_LATCHED in flags:
                ds.level, ds.message = DiagnosticStatus.WARN, "e-stop engaged"
            elif fault_names:
                ds.level, ds.message = DiagnosticStatus.WARN, ", ".join(fault_names).lower()
            else:
                ds.level, ds.message = DiagnosticStatus.OK, "ok"
            dv = {
                "battery_voltage": f"{st.battery_mv / 1000:.2f}",
                "battery_percent": str(st.battery_pct) if st.battery_pct <= 100 else "",
                "estop_latched": str(p.StateFlag.ESTOP_LATCHED in flags),
                "estop_input": str(p.StateFlag.ESTOP_INPUT in flags),
                "motors_enabled": str(p.StateFlag.MOTORS_ENABLED in flags),
                "watchdog_tripped": str(p.StateFlag.WATCHDOG_TRIPPED in flags),
                "faults": ",".join(fault_names),
            }
            ds.values = [KeyValue(key=k, value=v) for k, v in dv.items()]
            out.append(ds)
        return out

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = self.diagnostics()
        self._diag_pub.publish(msg)

    def destroy_node(self) -> None:
        # stop now rather than after the watchdog timeout (Ctrl-C in any state); no link:
        # the constructor refused its parameters
        if getattr(self, "link", None) is not None:
            self._stop_motors()
            self.link.stop()
        super().destroy_node()


def main(args=None) -> None:
    run_nodes(lambda _argv: [SerialBridge()], args)

if __name__ == "__main__":
    main()
