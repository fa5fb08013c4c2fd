"""What each fleet node's ROS parameters may be: type and bounds, in one table.

A fleet config's `nodes.<node>` values are checked against it when the config is loaded
(fleet_coord.fleet_config: an unknown name gets "did you mean", a value out of bounds
names the parameter, the bounds and the unit), and a node checks the values it was
started with (`check_node`: from a params file, `-p`, a launch file), so a typo or an
impossible value is refused where it is written, instead of being ignored (an unknown
name), crashing the node at start (-1, NaN) or silently switching a safety off
(`traffic.lost_after: 1e300`: no robot is ever declared lost).

Bounds are what is physically or operationally sane, not what the code happens to
survive: a `lost_after` of an hour is refused as much as one of 1e300.

Parameters derived from other parts of the config are not set under `nodes` (`RESERVED`):
`fleet.map` sets every node's `map`, each robot's `max_speed` its agent's and driver's
`max_v`. Setting them under `nodes` too would make one value silently override the other
(`nodes.robot_agent.max_v` used to override every robot's `max_speed`), so it is an error
that names the key to set instead.

No rclpy here (the config loader uses it); `check_node` takes any object with rclpy's
`get_parameters_by_prefix`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fleet_coord.core.errors import CannotStart
from fleet_coord.core.names import robot_name_problem, short_repr
from fleet_coord.core.yaml_reader import did_you_mean

__all__ = ["Bound", "SCHEMA", "RESERVED", "ParameterError", "problem", "unknown",
           "reserved", "check_values", "check_node", "PASS_THROUGH"]

INF = math.inf


@dataclass(frozen=True)
class Bound:
    """One parameter: `kind` float | int | bool | str | robot | floats | robots; numbers
    within [lo, hi] (`above`: lo excluded); `inf_ok`: .inf allowed (= no limit);
    `choices` for a str; `unit` for messages."""

    kind: str
    lo: float = -INF
    hi: float = INF
    above: bool = False
    inf_ok: bool = False
    choices: tuple[str, ...] = ()
    unit: str = ""

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        what = {"float": "a number", "int": "an integer", "bool": "true or false",
                "str": "a string", "robot": "a robot name", "floats": "a list of numbers",
                "robots": "a list of robot names"}[self.kind]
        if self.kind in ("float", "int"):
            lo = f"> {self.lo:g}" if self.above else f">= {self.lo:g}"
            rng = lo if self.hi == INF else f"{lo} and <= {self.hi:g}"
            what += f" {rng}" + (f" {self.unit}" if self.unit else "")
            if self.inf_ok:
                what += " (.inf: no limit)"
        return what


def F(lo: float, hi: float, unit: str = "", *, above: bool = False,
      inf_ok: bool = False) -> Bound:
    return Bound("float", lo, hi, above=above, inf_ok=inf_ok, unit=unit)


def I(lo: int, hi: int, unit: str = "") -> Bound:  # noqa: E743 - reads as the table's type
    return Bound("int", lo, hi, unit=unit)


BOOL, STR = Bound("bool"), Bound("str")
_S = 24 * 3600.0                                   # a day: the longest sane period
_SPEED, _TURN = F(0, 20, "m/s", above=True), F(0, 100, "rad/s", above=True)
_ACC, _ALPHA = F(0, 1000, "m/s^2", above=True), F(0, 10_000, "rad/s^2", above=True)

#: Parameters every fleet node takes (fleet_coord.node_set gives them from `fleet` and
#: `auth`; docs/security.md for auth_*).
COMMON: dict[str, Bound] = {
    "use_sim_time": BOOL, "map": STR, "footprint_radius": F(0, 10, "m", above=True),
    "auth_mode": Bound("str", choices=("off", "permissive", "enforce")),
    "auth_keys": STR, "auth_window": F(0, 3600, "s", above=True),
    "auth_tolerance": F(0, 600, "s"),
    "start_type_description_service": BOOL,     # rclpy's own
}

#: node section -> parameter -> bound (besides COMMON). Keep in step with the nodes'
#: declarations (tests/test_parameters.py checks each node's against this).
SCHEMA: dict[str, dict[str, Bound]] = {
    "traffic": {
        "lost_after": F(0.05, 600, "s", above=False),
        "snapshot_period": F(0.05, 600, "s"),
        "keep_history": F(0, _S, "s"),
        "table_log": STR, "table_fsync": BOOL, "recovery_window": F(0, 600, "s"),
        "discovery_grace": F(0, 600, "s"), "brake_horizon": F(0, 60, "s"),
        "robots": Bound("robots"), "start_poses": Bound("floats"),
    },
    "dispatcher": {
        "ledger": STR, "bid_window": F(0.01, 600, "s"),
        "retry_base": F(0.01, _S, "s"), "retry_max_rounds": I(1, 1000),
        "max_task_attempts": I(1, 1000), "robot_timeout": F(0.05, 600, "s"),
        "confirm_window": F(0.05, 600, "s"), "restart_grace": F(0.05, 600, "s"),
        "allocation": Bound("str", choices=("pool", "per_task")),
        "pool_period": F(0.05, 3600, "s"), "pool_batch": I(0, 1_000_000),
    },
    "fleet_monitor": {"lost_after": F(0.05, 600, "s"), "event_log": STR},
    "robot_agent": {
        "robot": Bound("robot"), "max_v": _SPEED, "max_w": _TURN, "max_acc": _ACC,
        "max_alpha": _ALPHA, "control_rate": F(1, 1000, "Hz"),
        "state_rate": F(0.1, 1000, "Hz"), "idle_state_rate": F(0, 1000, "Hz"),
        "start_margin": F(0, 60, "s"),
        "reserve_timeout": F(0.05, 600, "s"), "silence": F(0.1, _S, "s"),
        "control_latency": F(0, 10, "s"), "driver_cmd_timeout": F(0, 60, "s"),
        "max_plan_attempts": I(1, 100_000),
        "capacity_kg": F(0, INF, "kg", above=True, inf_ok=True),
        "bid_objective": Bound("str", choices=("travel", "completion")),
        "dwell": F(0, _S, "s"), "yield_check_period": F(0.05, _S, "s"),
        "yield_wait": F(0, _S, "s"), "yield_wait_busy": F(0, _S, "s"),
        "yield_tabu": F(0, _S, "s"), "status_period": F(0.05, 600, "s"),
        "plan_speed": F(0, 20, "m/s"), "turn_margin": F(0, 60, "s"),
        "time_model": Bound("str", choices=("auto", "real", "stop_and_turn")),
        "time_margin": F(0, 10, "s"), "leave_stations": BOOL,
        "drive": Bound("str", choices=("track", "follow")),
        "follow_margin": F(0, 60, "s"), "driver_timeout": F(0, 600, "s"),
        "follow_stall": F(1, _S, "s"), "stall_margin_max": F(0, 10, "s"),
        "stall_memory": F(1, _S, "s"),
    },
    "ideal_driver": {
        "robots": Bound("robots"), "start_poses": Bound("floats"),
        "rate_hz": F(1, 10_000, "Hz"), "cmd_timeout": F(0.01, 60, "s"),
        "publish_clock": BOOL, "real_time_factor": F(0, 1000, above=True),
        "max_v": _SPEED, "max_w": _TURN, "max_acc": _ACC, "max_alpha": _ALPHA,
        "tf_rate_hz": F(0, 10_000, "Hz", above=True),
        "idle_rate_hz": F(0, 10_000, "Hz"), "idle_after": F(0, 600, "s"),
    },
    "sim": {
        "robots": Bound("robots"), "start_poses": Bound("floats"),
        "cmd_timeout": F(0.01, 60, "s"), "max_v": _SPEED, "max_w": _TURN, "max_acc": _ACC,
        "max_alpha": _ALPHA, "mode": Bound("str", choices=("kinematic", "physics")),
        "dt": F(1e-4, 1, "s", above=False), "physics_dt": F(1e-5, 0.1, "s"),
        "real_time_factor": F(0, 1000), "odom_rate": F(0, 10_000, "Hz"), "gui": BOOL,
        "idle_odom_rate": F(0, 10_000, "Hz"), "idle_after": F(0, 600, "s"),
        "max_lead": F(0, 600, "s"), "max_cmd_lead": F(0, 600, "s"),
        "tf_rate": F(0, 10_000, "Hz", above=True),
    },
    "serial_bridge": {
        "robot": Bound("str"), "port": STR, "baud": I(1, 10_000_000), "autostart": BOOL,
        "configure_timeout": F(0.1, 600, "s"),
        "cmd_rate_hz": F(0.1, 1000, "Hz"), "cmd_timeout_ms": I(1, 60_000, "ms"),
        "cmd_vel_timeout": F(0.01, 60, "s"), "heartbeat_period_ms": I(1, 60_000, "ms"),
        "link_timeout_ms": I(1, 600_000, "ms"), "reconnect_interval_ms": I(1, 600_000, "ms"),
        "device_host_timeout_ms": I(1, 600_000, "ms"), "odom_period_ms": I(1, 60_000, "ms"),
        "status_period_ms": I(1, 600_000, "ms"), "diagnostics_period": F(0.01, 3600, "s"),
        "initial_pose": Bound("floats"), "wheel_radius": F(0, 10, "m", above=True),
        "track_width": F(0, 100, "m", above=True), "max_v": _SPEED, "max_omega": _TURN,
        "max_accel": _ACC, "max_alpha": _ALPHA,
    },
    "operator_view": {
        "host": STR, "port": I(0, 65535), "push_hz": F(0, 100, "Hz", above=True),
        "task_poll_s": F(0, 600, "s", above=True),
        "service_timeout_s": F(0, 600, "s", above=True),
    },
    "recorder": {"output": STR, "metadata": STR, "discovery_period": F(0.01, 60, "s"),
                 "topics": STR, "exclude": STR},
    "vda5050_master": {
        "robot": Bound("robot"), "manufacturer": STR, "serial_number": STR, "broker": STR,
        "interface": STR, "max_speed": _SPEED, "rate": F(0.1, 1000, "Hz"),
        "silence": F(0.1, 600, "s"), "map_id": STR,
    },
}

#: node section -> parameter -> the config key that sets it (not settable under `nodes`).
_FROM_FLEET = {"map": "fleet.map", "footprint_radius": "fleet.footprint_radius",
               "use_sim_time": "fleet.use_sim_time", "auth_mode": "auth.mode",
               "auth_keys": "auth.keys", "auth_window": "auth.window",
               "auth_tolerance": "auth.tolerance"}
_WORLD = {"robots": "the robots list", "start_poses": "each robot's start",
          "max_v": "each robot's max_speed", "max_w": "each robot's max_angular_speed"}
RESERVED: dict[str, dict[str, str]] = {
    "traffic": {"table_log": "fleet.table_log", "robots": _WORLD["robots"],
                "start_poses": _WORLD["start_poses"]},
    "dispatcher": {"ledger": "fleet.ledger"},
    "fleet_monitor": {"event_log": "fleet.event_log"},
    "robot_agent": {"robot": "the robot's name", "max_v": "each robot's max_speed",
                    "max_w": "each robot's max_angular_speed",
                    "drive": "each robot's backend (vda5050: follow)"},
    "ideal_driver": dict(_WORLD), "sim": dict(_WORLD),
    "serial_bridge": {"robot": "the robot's name", "port": "each robot's port",
                      "baud": "each robot's baud", "initial_pose": "each robot's start",
                      "max_v": "each robot's max_speed",
                      "max_omega": "each robot's max_angular_speed"},
    "operator_view": {},
    "recorder": {"output": "--record FILE (fleet-coord launch) or record:=FILE",
                 "metadata": "the fleet config (map, robots)"},
    "vda5050_master": {"robot": "the robot's name", "manufacturer": "each robot's manufacturer",
                       "serial_number": "each robot's serial_number",
                       "broker": "each robot's broker", "max_speed": "each robot's max_speed"},
}
for _section in RESERVED:
    RESERVED[_section] = {**_FROM_FLEET, **RESERVED[_section]}

#: ROS's own parameter namespace for QoS overrides, passed through as it is.
PASS_THROUGH = ("qos_overrides",)


class ParameterError(CannotStart, ValueError):
    """A node parameter is unknown or out of bounds; the message names it."""


def bounds(section: str) -> dict[str, Bound]:
    return {**COMMON, **SCHEMA.get(section, {})}


def unknown(section: str, name: str) -> str | None:
    """None when `name` is a parameter of `section`, else what to say."""
    known = bounds(section)
    if name in known or name.split(".")[0] in PASS_THROUGH:
        return None
    own = sorted(set(SCHEMA.get(section, {})) - set(RESERVED.get(section, {})))
    return (f"unknown parameter {name!r} of {section}{did_you_mean(name, sorted(known))} "
            f"(its parameters: {', '.join(own)})")


def reserved(section: str, name: str) -> str | None:
    """None when `nodes.<section>.<name>` may be set, else which key sets it instead."""
    where = RESERVED.get(section, {}).get(name)
    if where is None:
        return None
    return f"{name!r} of {section} is set by {where}; set it there (not under nodes)"


def problem(section: str, name: str, value: Any) -> str | None:
    """None when `value` is a valid `name` of `section` (an int for a float is fine),
    else what is wrong and what is expected. Unknown names: see `unknown`."""
    b = bounds(section).get(name)
    if b is None:
        return None
    expected = f"expected {b.describe()}, got {short_repr(value)}"
    if b.kind == "bool":
        return None if isinstance(value, bool) else expected
    if b.kind == "str":
        if not isinstance(value, str):
            return expected
        return None if not b.choices or value in b.choices else expected
    if b.kind == "robot":
        return None if isinstance(value, str) and (
            not value or robot_name_problem(value) is None) else expected
    if b.kind == "robots":
        ok = isinstance(value, list) and all(
            isinstance(v, str) and robot_name_problem(v) is None for v in value)
        return None if ok else expected
    if b.kind == "floats":
        ok = isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value)
        return None if ok else f"expected a list of finite numbers, got {short_repr(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return expected
    if b.kind == "int" and not isinstance(value, int):
        return expected
    if isinstance(value, float) and math.isnan(value):
        return expected
    if value == INF and b.inf_ok:
        return None
    if not math.isfinite(value) or value > b.hi or value < b.lo or (b.above and value == b.lo):
        return expected
    return None


def check_values(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with ints given for float parameters made floats (a ROS parameter keeps
    the type of its default: `lost_after: 2` would be refused by rclpy at start). Raises
    ParameterError naming the first unknown or invalid one."""
    out = dict(values)
    for name, value in values.items():
        why = unknown(section, name) or problem(section, name, value)
        if why:
            raise ParameterError(f"parameter {name!r} of {section}: {why}")
        b = bounds(section).get(name)
        if b is not None and b.kind == "float" and isinstance(value, int) \
                and not isinstance(value, bool):
            out[name] = float(value)
        elif b is not None and b.kind == "floats":
            out[name] = [float(v) for v in value]
    return out


def check_node(node: Any, section: str) -> None:
    """Check the parameters a node was started with (after it declared them) against the
    table: raises ParameterError (a CannotStart: the process stops with the message, no
    restart loop) naming the node, the parameter and the bounds."""
    name = node.get_fully_qualified_name()
    for pname, param in node.get_parameters_by_prefix("").items():
        why = problem(section, pname, param.value)
        if why:
            raise ParameterError(f"node {name}: parameter {pname!r}: {why}")
