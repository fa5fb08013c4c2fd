"""The link between robot N's agent and its driver, with or without authentication.

Without authentication it is the plain driver interface every ROS robot has: Twist on
`/<robot>/cmd_vel` in, Odometry on `/<robot>/odom` out (Gazebo's diff-drive, Nav2 stacks
and vendor bridges speak it). With authentication (docs/security.md) commands travel as
`SignedTwist` on `/<robot>/cmd_vel_signed` and the driver takes no others; odometry goes
out both plain (for RViz and tools) and as `SignedOdometry` on `/<robot>/odom_signed`,
which is what the agent (and the traffic authority) read. Both are HMAC-SHA256 with the
robot's link key (fleet_coord.auth).

    link = DriverLink(node, auth, "robot_3", on_cmd=lambda twist: ...)   # ideal driver, sim, bridge
    link.publish_odom(odometry_msg)
    link = AgentLink(node, auth, "robot_3", on_odom=lambda odom: ...)    # the robot's agent
    link.publish_cmd(twist)
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fleet_coord_msgs.msg import SignedOdometry, SignedTwist
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry

from fleet_coord import qos
from fleet_coord.namespace import names_of
from fleet_coord.node_auth import NodeAuth


#: s between two looks at who listens to a robot's plain and signed odometry
_LISTENERS_PERIOD = 0.5


class DriverLink:
    """The driver's end of robot N's link (one per robot a driver serves)."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str,
                 on_cmd: Callable[[Twist], None], **sub_kwargs: Any) -> None:
        self.node, self.auth, self.robot = node, auth, robot
        self.cmd_channel = f"{robot}/cmd_vel_signed"
        self.odom_channel = f"{robot}/odom_signed"
        names = names_of(node)
        self.odom_pub = node.create_publisher(Odometry, names(f"/{robot}/odom"), qos.ODOM)
        self.signed_pub = None
        self._envelope = SignedOdometry()
        self._listeners, self._listeners_at = (False, False), 0.0
        if auth.enabled:
            self.signed_pub = node.create_publisher(SignedOdometry, names(f"/{robot}/odom_signed"),
                                                    qos.ODOM)

            def on_signed(msg: SignedTwist) -> None:
                if auth.check_link(msg, robot, self.cmd_channel):
                    on_cmd(msg.twist)
            self.cmd_sub = node.create_subscription(SignedTwist, names(f"/{robot}/cmd_vel_signed"),
                                                    on_signed, qos.COMMAND, **sub_kwargs)
        else:
            self.cmd_sub = node.create_subscription(Twist, names(f"/{robot}/cmd_vel"), on_cmd,
                                                    qos.COMMAND, **sub_kwargs)

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
            # one envelope, reused: publish() has serialised it before it returns, and a
            # new SignedOdometry builds a default Odometry first (~10 us, 50 Hz x robots)
            self._envelope.odom = odom
            signed = self.auth.link_sign(self._envelope, self.robot, self.odom_channel)
            if signed is not None:
                self.signed_pub.publish(signed)

    def destroy(self) -> None:
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

    def on_signed(msg: SignedOdometry) -> None:
        if auth.check_link(msg, robot, channel):
            on_odom(msg.odom)
    return node.create_subscription(SignedOdometry, names(f"/{robot}/odom_signed"), on_signed,
                                    qos.ODOM, **sub_kwargs)


class AgentLink:
    """The agent's end of robot N's link."""

    def __init__(self, node: Any, auth: NodeAuth, robot: str,
                 on_odom: Callable[[Odometry], None], **sub_kwargs: Any) -> None:
        self.node, self.auth, self.robot = node, auth, robot
        self.cmd_channel = f"{robot}/cmd_vel_signed"
        self._envelope = SignedTwist()
        names = names_of(node)
        self.cmd_pub = (node.create_publisher(SignedTwist, names(f"/{robot}/cmd_vel_signed"),
                                              qos.COMMAND) if auth.enabled
                        else node.create_publisher(Twist, names(f"/{robot}/cmd_vel"), qos.COMMAND))
        self.odom_sub = subscribe_odom(node, auth, robot, on_odom, **sub_kwargs)

    def publish_cmd(self, twist: Twist) -> None:
        if self.auth.enabled:
            self._envelope.twist = twist   # reused, as DriverLink's odometry envelope
            signed = self.auth.link_sign(self._envelope, self.robot, self.cmd_channel)
            if signed is not None:
                self.cmd_pub.publish(signed)
        else:
            self.cmd_pub.publish(twist)


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
