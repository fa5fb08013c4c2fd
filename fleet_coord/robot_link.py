"""The link between robot N's agent and its driver, with or without authentication.

Without authentication it is the plain driver interface every ROS robot has: Twist on
`/<robot>/cmd_vel` in, Odometry on `/<robot>/odom` out (Gazebo's diff-drive, Nav2 stacks
and vendor bridges speak it). With authentication (docs/security.md) commands travel as
`SignedTwist` on `/<robot>/cmd_vel_signed` and the driver takes no others; odometry goes
out both plain (for RViz and tools) and as `SignedOdometry` on `/<robot>/odom_signed`,
which is what the agent (and the traffic authority) read. Both are HMAC-SHA256 with the
robot's link key (fleet_coord.auth). A robot that follows paths by itself (a VDA 5050
vehicle, `drive: follow`) gets a timed path instead of commands and reports whether it is
available (`FollowerAgentLink`, `FollowerDriverLink`); authenticated, these are Ed25519
signed by agent N and by N's driver (`bridge_<robot>`) - they are rare, and a path moves a
vehicle for many seconds.

    link = DriverLink(node, auth, "robot_3", on_cmd=lambda twist: ...)   # ideal driver, sim, bridge
    link.publish_odom(odometry_msg)
    link = AgentLink(node, auth, "robot_3", on_odom=lambda odom: ...)    # the robot's agent
    link.publish_cmd(twist)
    link = FollowerDriverLink(node, auth, "agv_1", "bridge_agv_1", on_plan=lambda path: ...)
    link.publish_status(diagnostic_status)                               # VDA 5050 master
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from fleet_coord_msgs.msg import SignedDiagnosticStatus, SignedOdometry, SignedPath, SignedTwist
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path

from fleet_coord import qos
from fleet_coord.auth import stamp_seconds
from fleet_coord.core.trust import RateLimiter
from fleet_coord.namespace import names_of
from fleet_coord.node_auth import NodeAuth


#: s between two looks at who listens to a robot's plain and signed odometry
_LISTENERS_PERIOD = 0.5


class DriverLink:
    """The driver's end of robot N's link (one per robot a driver serves)."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str,
                 on_cmd: Callable[[Twist], None] | None, **sub_kwargs: Any) -> None:
        """`on_cmd` None: a driver of a robot that takes paths, not velocity commands (a
        VDA 5050 master control, `FollowerDriverLink`): odometry only."""
        self.node, self.auth, self.robot = node, auth, robot
        self.cmd_channel = f"{robot}/cmd_vel_signed"
        self.odom_channel = f"{robot}/odom_signed"
        names = names_of(node)
        self.odom_pub = node.create_publisher(Odometry, names(f"/{robot}/odom"), qos.ODOM)
        self.signed_pub = None
        self._listeners, self._listeners_at = (False, False), 0.0
        if auth.enabled:
            self.signed_pub = node.create_publisher(SignedOdometry, names(f"/{robot}/odom_signed"),
                                                    qos.ODOM)
        self.cmd_sub = None if on_cmd is None else self._subscribe_cmd(on_cmd, sub_kwargs)

    def _subscribe_cmd(self, on_cmd: Callable[[Twist], None], sub_kwargs: dict[str, Any]
                       ) -> Any:
        names, auth, robot = names_of(self.node), self.auth, self.robot
        if not auth.enabled:
            return self.node.create_subscription(Twist, names(f"/{robot}/cmd_vel"), on_cmd,
                                                 qos.COMMAND, **sub_kwargs)

        def on_signed(data: bytes) -> None:   # raw: see auth.unpack_link
            twist = auth.take_link(data, SignedTwist, robot, self.cmd_channel)
            if twist is not None:
                on_cmd(twist)
        return self.node.create_subscription(SignedTwist, names(f"/{robot}/cmd_vel_signed"),
                                             on_signed, qos.COMMAND, raw=True, **sub_kwargs)

    def publish_odom(self, odom: Odometry) -> None:
        # each form only when someone listens: authenticated, the fleet reads the signed
        # one and the plain one is for tools (RViz, recorders) - not both at every step
        if self.signed_pub is None:
            self.odom_pub.publish(odom)
            return
        now = time.monotonic()
        if now >= self._listeners_at:   # asked twice a second, not at every step (~2 us each)
            self._listeners_at = now + _LISTENERS_PERIOD
            self._listeners = (self.odom_pub.get_subscription_count() > 0,
                               self.signed_pub.get_subscription_count() > 0)
        plain, signed_ = self._listeners
        if plain:
            self.odom_pub.publish(odom)
        if signed_:
            # serialised here, the envelope never built (auth.LinkSigner.sign_raw)
            signed = self.auth.link_sign_raw(odom, SignedOdometry, self.robot, self.odom_channel)
            if signed is not None:
                self.signed_pub.publish(signed)

    def destroy(self) -> None:
        if self.cmd_sub is not None:
            self.node.destroy_subscription(self.cmd_sub)
        self.node.destroy_publisher(self.odom_pub)
        if self.signed_pub is not None:
            self.node.destroy_publisher(self.signed_pub)


def subscribe_odom(node: Any, auth: NodeAuth, robot: str, on_odom: Callable[[Odometry], None],
                   **sub_kwargs: Any) -> Any:
    """Robot N's odometry as the fleet reads it: signed by its driver when authenticated
    (`odom_signed`, only what its link key MACs), plain `odom` otherwise."""
    names = names_of(node)
    if not auth.enabled:
        return node.create_subscription(Odometry, names(f"/{robot}/odom"), on_odom, qos.ODOM,
                                        **sub_kwargs)
    channel = f"{robot}/odom_signed"

    def on_signed(data: bytes) -> None:   # raw: taking the envelope costs ~24 us more
        odom = auth.take_link(data, SignedOdometry, robot, channel)
        if odom is not None:
            on_odom(odom)
    return node.create_subscription(SignedOdometry, names(f"/{robot}/odom_signed"), on_signed,
                                    qos.ODOM, raw=True, **sub_kwargs)


class AgentLink:
    """The agent's end of robot N's link."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str,
                 on_odom: Callable[[Odometry], None], **sub_kwargs: Any) -> None:
        self.node, self.auth, self.robot = node, auth, robot
        self.cmd_channel = f"{robot}/cmd_vel_signed"
        names = names_of(node)
        self.cmd_pub = (node.create_publisher(SignedTwist, names(f"/{robot}/cmd_vel_signed"),
                                              qos.COMMAND) if auth.enabled
                        else node.create_publisher(Twist, names(f"/{robot}/cmd_vel"), qos.COMMAND))
        self.odom_sub = subscribe_odom(node, auth, robot, on_odom, **sub_kwargs)

    def publish_cmd(self, twist: Twist) -> None:
        if self.auth.enabled:
            signed = self.auth.link_sign_raw(twist, SignedTwist, self.robot, self.cmd_channel)
            if signed is not None:
                self.cmd_pub.publish(signed)
        else:
            self.cmd_pub.publish(twist)


class FollowerAgentLink:
    """The agent's end of the link of a robot that follows paths by itself (`drive:
    follow`: a VDA 5050 vehicle behind its master control): the committed path out, the
    driver's status (available or not, its limits) in. Authenticated, the path goes out
    signed by agent N (`SignedPath` on `/<robot>/plan_signed`; the plain Path on
    `/<robot>/plan` too, for tools) and only a status signed by N's driver counts
    (`SignedDiagnosticStatus` on `/<robot>/vehicle_signed`)."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str,
                 on_status: Callable[[DiagnosticStatus], None], **sub_kwargs: Any) -> None:
        self.auth, self.robot = auth, robot
        self.plan_channel = f"{robot}/plan_signed"
        self.status_channel = f"{robot}/vehicle_signed"
        names = names_of(node)
        self.plan_pub = node.create_publisher(Path, names(f"/{robot}/plan"), qos.PLAN)
        self.signed_pub = None
        if not auth.enabled:
            self.status_sub = node.create_subscription(
                DiagnosticStatus, names(f"/{robot}/vehicle"), on_status, qos.PLAN, **sub_kwargs)
            return
        self.signed_pub = node.create_publisher(SignedPath, names(f"/{robot}/plan_signed"),
                                                qos.PLAN)

        def on_signed(msg: SignedDiagnosticStatus) -> None:
            if auth.check(msg, self.status_channel, rule="{robot}/vehicle_signed",
                          subjects=[robot]):
                on_status(msg.status)
        self.status_sub = node.create_subscription(
            SignedDiagnosticStatus, names(f"/{robot}/vehicle_signed"), on_signed, qos.PLAN,
            **sub_kwargs)

    def publish_plan(self, path: Path) -> None:
        self.plan_pub.publish(path)   # authenticated: for tools (RViz) only, rare
        if self.signed_pub is not None:
            self.signed_pub.publish(self.auth.sign(SignedPath(path=path), self.plan_channel,
                                                   self.robot))


class FollowerDriverLink:
    """The driver's end of that link (the VDA 5050 master control, signing as
    `identity`, robot N's driver `bridge_<robot>`): the path in, only from agent N when
    authenticated, and only one signed after the newest it took (the topic is latched: a
    driver that restarts gets the last path, and a replayed older one of another session
    of the agent must not undo a newer one); its status out, plain (for tools) and signed.
    Odometry goes through `DriverLink` as for every driver."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str, identity: str,
                 on_plan: Callable[[Path], None], **sub_kwargs: Any) -> None:
        self.node, self.auth, self.robot, self.identity = node, auth, robot, identity
        self.plan_channel = f"{robot}/plan_signed"
        self.status_channel = f"{robot}/vehicle_signed"
        self._on_plan = on_plan
        self._newest = -math.inf      # wall stamp of the newest signed path taken
        self._older = RateLimiter(5.0)
        names = names_of(node)
        self.status_pub = node.create_publisher(DiagnosticStatus, names(f"/{robot}/vehicle"),
                                                qos.PLAN)
        self.signed_pub = None
        if not auth.enabled:
            self.plan_sub = node.create_subscription(Path, names(f"/{robot}/plan"), on_plan,
                                                     qos.PLAN, **sub_kwargs)
            return
        self.signed_pub = node.create_publisher(
            SignedDiagnosticStatus, names(f"/{robot}/vehicle_signed"), qos.PLAN)
        self.plan_sub = node.create_subscription(SignedPath, names(f"/{robot}/plan_signed"),
                                                 self.on_signed_plan, qos.PLAN, **sub_kwargs)

    def on_signed_plan(self, msg: SignedPath) -> bool:
        """Hand the path on if agent N signed it (and it is newer than the last one);
        False: dropped, and logged (rate-limited)."""
        if not self.auth.check(msg, self.plan_channel, rule="{robot}/plan_signed",
                               subjects=[self.robot]):
            return False
        stamp = stamp_seconds(msg.auth)
        if stamp < self._newest and self.auth.enforce:
            held = self._older.allow(msg.auth.signer, time.monotonic())
            if held is not None:
                more = f" (+{held} more since the last report)" if held else ""
                self.node.get_logger().warning(
                    f"dropped {self.plan_channel} claiming to be from {msg.auth.signer!r}: "
                    f"signed {self._newest - stamp:.3f} s before the path already taken "
                    f"(replayed){more}")
            return False
        self._newest = max(self._newest, stamp)
        self._on_plan(msg.path)
        return True

    def publish_status(self, status: DiagnosticStatus) -> None:
        self.status_pub.publish(status)
        if self.signed_pub is not None:
            self.signed_pub.publish(self.auth.sign(SignedDiagnosticStatus(status=status),
                                                   self.status_channel, self.identity))


class EstopServices:
    """Robot N's e-stop, as every driver serves it: `/<robot>/estop` (std_srvs/SetBool:
    true engages, false releases) and `/<robot>/set_estop` (fleet_coord_msgs/SetEstop,
    signed). Stopping is always allowed; while the fleet authenticates a release needs an
    operator's signature: the plain SetBool refuses it and `set_estop` takes it only from
    an operator (docs/security.md). `set_fn(engage, who, why) -> (ok, message)` does it."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str,
                 set_fn: Callable[[bool, str, str], tuple[bool, str]], **srv_kwargs: Any
                 ) -> None:
        from fleet_coord_msgs.srv import SetEstop
        from std_srvs.srv import SetBool
        self.node, self.auth, self.robot, self._set = node, auth, robot, set_fn
        names = names_of(node)
        self.services = [
            node.create_service(SetBool, names(f"/{robot}/estop"), self._on_estop, **srv_kwargs),
            node.create_service(SetEstop, names(f"/{robot}/set_estop"), self._on_set_estop,
                                **srv_kwargs)]

    def _on_estop(self, req: Any, res: Any) -> Any:
        if not req.data and self.auth.enabled:
            res.success, res.message = False, ("refused: releasing an e-stop needs an "
                                               f"operator's signature (/{self.robot}/set_estop)")
            self.node.get_logger().warning(f"unsigned e-stop release {res.message}")
            return res
        res.success, res.message = self._set(bool(req.data), "", "")
        return res

    def _on_set_estop(self, req: Any, res: Any) -> Any:
        op = "engage" if req.engage else "release"
        refused = self.auth.refusal(req, f"{self.robot}/set_estop", rule="{robot}/set_estop",
                                    op=op)
        if refused is None:
            res.ok, res.message = self._set(bool(req.engage), req.auth.signer, req.reason)
        else:
            res.ok, res.message = False, f"refused: {op} not allowed for this sender ({refused})"
        return self.auth.sign(res, f"{self.robot}/set_estop#response", request=req.auth)

    def destroy(self) -> None:
        for s in self.services:
            self.node.destroy_service(s)
