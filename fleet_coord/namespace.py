"""A fleet under a namespace: where its topics and services are.

Two fleets share a ROS domain when each runs under its own namespace (`fleet-coord launch
--namespace warehouse_a`, `ros2 launch fleet_coord fleet.launch.py namespace:=warehouse_a`):
then every topic and service of a fleet is under it, `/warehouse_a/fleet/cfp`,
`/warehouse_a/robot_1/cmd_vel`, `/warehouse_a/tf`, and the other fleet's are invisible to
it. Only ROS's own infrastructure (/rosout, /parameter_events) stays global; /clock is
remapped to the namespace for every process by the node set (fleet_coord.node_set).

The code writes each name as it is in a fleet without a namespace and passes it through
`FleetNames`, the one place that puts it under the namespace:

    self.names = FleetNames.of_node(self)              # in a node's constructor
    self.create_publisher(Proposal, self.names("/fleet/proposals"), qos.PROTOCOL)
    self.names(f"/{robot}/cmd_vel")                    # a robot's topic

Relative ROS names cannot do this alone: a robot's nodes live in the robot's namespace
(`/warehouse_a/robot_1/serial_bridge`, `/warehouse_a/robot_1/robot_agent`) and reach the
fleet's topics one level up. A node's fleet namespace is its own namespace, less the
trailing `/<robot>` of a per-robot node (`of_node(node, robot)`); a process hosting the
agents of several robots is told it (`robot_agent --namespace NS`).

Authentication channels (fleet_coord.core.trust) name topics without the namespace: a
signature binds what was said, wherever the fleet runs.
"""
from __future__ import annotations

import re
from typing import Any

#: one token of a ROS name: a letter or underscore, then letters, digits, underscores
_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize(namespace: str) -> str:
    """"" (no namespace) or "/a" / "/a/b": leading slash, no trailing one. Raises ValueError
    naming the namespace when a part is not a ROS name token."""
    parts = [p for p in namespace.strip().strip("/").split("/")] if namespace.strip("/ ") else []
    for p in parts:
        if not _TOKEN.match(p):
            raise ValueError(f"namespace {namespace!r}: {p!r} is not a ROS name (a letter or "
                             "'_', then letters, digits or '_', parts separated by '/')")
    return "".join(f"/{p}" for p in parts)


class FleetNames:
    """The names of one fleet: `names("/fleet/cfp")` -> "/<namespace>/fleet/cfp"."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = normalize(namespace)

    @classmethod
    def of_node(cls, node: Any, robot: str = "") -> FleetNames:
        """The fleet of `node` (rclpy): its namespace, less a trailing `/<robot>`."""
        ns = node.get_namespace().rstrip("/")
        if robot and ns.endswith(f"/{robot}"):
            ns = ns[:-len(robot) - 1]
        return cls(ns)

    def __call__(self, name: str) -> str:
        if not name.startswith("/"):
            raise ValueError(f"FleetNames: {name!r} must be written absolute, as in a fleet "
                             "without a namespace")
        return self.namespace + name

    def bare(self, name: str) -> str | None:
        """`name` as in a fleet without a namespace; None when it is not this fleet's."""
        if not self.namespace:
            return name
        if name.startswith(self.namespace + "/"):
            return name[len(self.namespace):]
        return None

    def __repr__(self) -> str:
        return f"FleetNames({self.namespace!r})"


def robot_of(namespace: str) -> str:
    """The robot of a per-robot node's namespace: its last part ("" at the root)."""
    return namespace.rstrip("/").rsplit("/", 1)[-1]


def names_of(node: Any) -> FleetNames:
    """The FleetNames of `node`: its `names` attribute (every fleet node sets it first
    thing in its constructor), else those of its namespace (a plain node; none for a
    stand-in without one)."""
    names = getattr(node, "names", None)
    if isinstance(names, FleetNames):
        return names
    return FleetNames.of_node(node) if hasattr(node, "get_namespace") else FleetNames()
