"""The node set of a fleet: which ROS 2 nodes a fleet config runs, with which parameters.

One function, `fleet_nodes`, decides it. Both ways of starting a fleet use it:
`launch/*.launch.py` turn each NodeSpec into a launch_ros `Node` action (on a ROS 2
install, `ros2 launch fleet_coord fleet.launch.py`), and `fleet-coord launch` starts each
as a process here (fleet_coord.launcher).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from fleet_coord.fleet_config import FleetConfig, load_fleet_config, table_log_path
from fleet_coord.namespace import normalize

PACKAGE = "fleet_coord"

#: console_scripts entry point -> module with main(); keep in step with setup.py.
EXECUTABLES = {
    "traffic": "fleet_coord.traffic",
    "dispatcher": "fleet_coord.dispatcher",
    "fleet_monitor": "fleet_coord.fleet_monitor",
    "robot_agent": "fleet_coord.robot_agent",
    "ideal_driver": "fleet_coord.ideal_driver",
    "sim": "fleet_coord_sim.sim_node",
    "serial_bridge": "fleet_coord_bridge.bridge_node",
    "vda5050_master": "fleet_coord.vda5050.master",
    "operator_view": "fleet_coord.web.operator_node",
    "recorder": "fleet_coord.recorder",
}


@dataclass
class NodeSpec:
    executable: str                      # entry point in package fleet_coord
    name: str                            # node name (unique in the fleet); "" for a process
                                         # hosting several nodes with their own names
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)  # extra CLI args before --ros-args
    package: str = PACKAGE
    robots: list[str] = field(default_factory=list)     # robots this process serves
    label: str = ""                      # process label for logs (default: the node name)
    respawn: bool = False                # restart it when it exits (the config's restart)
    lifecycle: bool = False              # a managed node (launch files: a LifecycleNode)
    fleet_namespace: str = ""            # the fleet's ("/ns" or ""; fleet_coord.namespace)
    remappings: list[tuple[str, str]] = field(default_factory=list)  # ROS name remaps

    @property
    def module(self) -> str:
        return EXECUTABLES[self.executable]

    @property
    def process_name(self) -> str:
        return self.label or self.name

    @property
    def enclave(self) -> str:
        """The process's SROS2 enclave: /fleet_coord/[<namespace>/]<process>."""
        ns = f"/{self.namespace}" if self.namespace else ""
        return f"/fleet_coord{ns}/{self.process_name}"


#: Fast DDS transports of a fleet that spans hosts: the default set (shared memory between
#: the processes of one host, UDPv4 between hosts) with non-blocking UDP sends. A blocking
#: send stalls the publishing thread when a host loses its link: the kernel keeps the
#: datagrams for the unreachable peers queued on neighbour (ARP) resolution, charged to
#: the participant's one UDP send socket, until resolution fails (~3 s); meanwhile the
#: socket's buffer fills and `publish()` blocks (a cut-off robot agent's control loop
#: then lags its timed path). Non-blocking, such a
#: datagram is dropped instead (reliable topics resend it). docs/reliability.md.
NETWORK_TRANSPORTS = "DEFAULT?non_blocking=true"


def environment(cfg: FleetConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every process of the fleet runs with (discovery range, domain, and
    for a fleet across hosts, discovery range SUBNET or SYSTEM_DEFAULT, Fast DDS's
    transports: NETWORK_TRANSPORTS unless `base` (default: this process's environment)
    sets FASTDDS_BUILTIN_TRANSPORTS itself)."""
    base = os.environ if base is None else base
    # the config's discovery range when it sets one, else the user's, else LOCALHOST; the
    # domain only when the config sets it (the user's ROS_DOMAIN_ID stands otherwise)
    rng = (cfg.discovery_range if cfg.discovery_range_explicit
           else base.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or cfg.discovery_range)
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": rng}
    if cfg.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(cfg.domain_id)
    if cfg.auth.sros2:
        # DDS Security with the keystore `fleet-coord keys sros2` writes (a ROS install
        # whose DDS has the Security plugins; each process names its enclave)
        env.update(ROS_SECURITY_KEYSTORE=os.path.join(cfg.auth.keys, "sros2"),
                   ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce")
    if rng in ("SUBNET", "SYSTEM_DEFAULT") \
            and not base.get("FASTDDS_BUILTIN_TRANSPORTS"):
        env["FASTDDS_BUILTIN_TRANSPORTS"] = NETWORK_TRANSPORTS
    return env


def auth_parameters(cfg: FleetConfig) -> dict[str, Any]:
    """The parameters every node of an authenticating fleet gets (docs/security.md): it
    signs and checks with the keys of this directory. None when auth is off."""
    if not cfg.auth.enabled:
        return {}
    return {"auth_mode": cfg.auth.mode, "auth_keys": cfg.auth.keys,
            "auth_window": cfg.auth.window, "auth_tolerance": cfg.auth.tolerance}


def fleet_nodes(config: FleetConfig | str, *, robot_count: int | None = None,
                use_sim_time: bool | None = None, agents_per_process: int | None = None,
                operator_view: bool | None = None, operator_port: int | None = None,
                record: str | None = None, record_metadata: dict[str, Any] | None = None,
                namespace: str | None = None) -> list[NodeSpec]:
    """The nodes of a fleet. `robot_count` keeps only the first N robots of the config;
    `use_sim_time`, `agents_per_process`, `operator_view` (serve the web operator view),
    `operator_port` (its port) and `namespace` (the whole fleet under it: two fleets share
    a domain; fleet_coord.namespace) override the config (launch arguments). `record`:
    also run a recorder writing the fleet's topics to this MCAP file, with the fleet's map,
    footprint and robots (and `record_metadata`) as the recording's metadata."""
    cfg = load_fleet_config(config) if isinstance(config, str) else config
    ns = normalize(cfg.namespace if namespace is None else namespace)   # "" or "/a/b"
    rel = ns.lstrip("/")                                                # as NodeSpec.namespace
    robots = cfg.robots
    if robot_count is not None:
        if not 1 <= robot_count <= len(cfg.robots):
            raise ValueError(f"robot_count must be 1..{len(cfg.robots)} for {cfg.path}, "
                             f"got {robot_count}")
        robots = robots[:robot_count]
    sim_time = cfg.use_sim_time if use_sim_time is None else use_sim_time
    per_process = cfg.agents_per_process if agents_per_process is None else agents_per_process
    if per_process < 1:
        raise ValueError(f"agents_per_process must be >= 1, got {per_process}")
    common = {"use_sim_time": sim_time, "map": cfg.map,
              "footprint_radius": cfg.footprint_radius}
    common.update(auth_parameters(cfg))

    def params(section: str, **own: Any) -> dict[str, Any]:
        return {**common, **own, **cfg.nodes.get(section, {})}

    nodes = [
        NodeSpec("traffic", "traffic", rel, parameters=params(
            "traffic", table_log=table_log_path(cfg), robots=[r.name for r in robots],
            start_poses=[float(v) for r in robots for v in r.start])),
        NodeSpec("dispatcher", "dispatcher", rel,
                 parameters=params("dispatcher", **({"ledger": cfg.ledger} if cfg.ledger else {}))),
        NodeSpec("fleet_monitor", "fleet_monitor", rel,
                 parameters=params("fleet_monitor", event_log=cfg.event_log or "")),
    ]
    if cfg.operator_view if operator_view is None else operator_view:
        if operator_port is not None and not 0 <= operator_port <= 65535:
            raise ValueError(f"operator_port must be 0..65535, got {operator_port}")
        p = params("operator_view")
        if operator_port is not None:
            p["port"] = operator_port
        nodes.append(NodeSpec("operator_view", "operator_view", rel, parameters=p))
    if record:
        meta = {"map": cfg.map, "footprint_radius": cfg.footprint_radius,
                "robots": [r.name for r in robots], **(record_metadata or {})}
        nodes.append(NodeSpec("recorder", "recorder", rel, parameters=params(
            "recorder", output=os.path.abspath(record), metadata=json.dumps(meta))))
    # robot backends: one ideal driver and one simulator for all their robots (they are the
    # "world"); one serial bridge per physical robot, in the robot's namespace.
    # On sim time one of the worlds is the clock source (the sim if there is one, else the
    # ideal driver): it publishes /clock and itself runs on wall time, which paces it.
    backends = {r.backend for r in robots}
    clock = "sim" if "sim" in backends else "ideal" if "ideal" in backends else None
    if sim_time and clock is None:
        raise ValueError(f"use_sim_time: true needs a clock source, a simulated world (robots "
                         f"with backend sim or ideal); the robots of {cfg.path} are all "
                         "physical (serial), which run on wall time")
    for backend, exe in (("ideal", "ideal_driver"), ("sim", "sim")):
        group = [r for r in robots if r.backend == backend]
        if group:
            poses = [float(v) for r in group for v in r.start]
            own = dict(robots=[r.name for r in group], start_poses=poses,
                       max_v=max(r.max_speed for r in group),
                       max_w=max(r.max_angular_speed for r in group))
            p = params(exe, **own)
            if sim_time and backend == clock:
                p["use_sim_time"] = False
                if backend == "ideal":
                    p.setdefault("publish_clock", True)
            nodes.append(NodeSpec(exe, exe, rel, parameters=p, robots=own["robots"]))
    for r in robots:
        if r.backend == "serial":
            # the device's odometry starts at 0: the bridge anchors it at the start pose;
            # the device clips to the robot's limits, the ones its agent plans with. A
            # managed node: autostart brings it to active once its device answers (a
            # config may set nodes.serial_bridge.autostart: false to manage it by hand)
            nodes.append(NodeSpec("serial_bridge", "serial_bridge",
                                  namespace=f"{rel}/{r.name}" if rel else r.name,
                                  parameters=params("serial_bridge", autostart=True,
                                                    port=r.port, baud=r.baud,
                                                    initial_pose=[float(v) for v in r.start],
                                                    max_v=r.max_speed,
                                                    max_omega=r.max_angular_speed),
                                  robots=[r.name], lifecycle=True))
        elif r.backend == "vda5050":
            # VDA 5050 master control: the vehicle drives itself along released orders
            nodes.append(NodeSpec("vda5050_master", "vda5050_master",
                                  namespace=f"{rel}/{r.name}" if rel else r.name,
                                  parameters=params("vda5050_master", robot=r.name,
                                                    manufacturer=r.manufacturer,
                                                    serial_number=r.serial_number,
                                                    broker=r.broker, max_speed=r.max_speed),
                                  robots=[r.name]))
    # robot agents: each process hosts the agents of a group of robots (one robot per
    # process by default, as on real robots); the nodes are /<robot>/robot_agent, so the
    # process is not renamed and its parameters apply to all its nodes (conservative
    # limits: the slowest robot of the group). VDA 5050 robots are grouped apart: their
    # agents hand timed paths to the vehicle instead of tracking them (drive: follow).
    groups = 0
    for drive, members in (("track", [r for r in robots if r.backend != "vda5050"]),
                           ("follow", [r for r in robots if r.backend == "vda5050"])):
        for i in range(0, len(members), per_process):
            group = members[i:i + per_process]
            groups += 1
            label = f"agent_{group[0].name}" if per_process == 1 else f"agents_{groups}"
            own: dict[str, Any] = {"max_v": min(r.max_speed for r in group),
                                   "max_w": min(r.max_angular_speed for r in group)}
            if drive == "follow":
                # the master control reports the vehicle unavailable at once; silent
                # odometry for 2 s (the master's own threshold is 3 s) is the fallback
                own.update(drive=drive, driver_timeout=2.0)
            else:
                # how long a driver runs an agent's last command on (its watchdog)
                own["driver_cmd_timeout"] = max(_watchdog(cfg, r.backend) for r in group)
            # the agents' nodes are /<namespace>/<robot>/robot_agent: the process is told
            # the namespace (a process-wide __ns would put them all in one namespace)
            nodes.append(NodeSpec(
                "robot_agent", "", label=label, parameters=params("robot_agent", **own),
                arguments=["--robots", ",".join(r.name for r in group)]
                + (["--namespace", ns] if ns else []),
                robots=[r.name for r in group]))
    # the config's restart policy, for launch files (launch's respawn restarts on every
    # exit, so on-failure and always both map to it; fleet-coord launch tells them apart)
    for n in nodes:
        n.respawn = cfg.restart != "never"
        n.fleet_namespace = ns
        if ns:   # the fleet's clock (sim time) under its namespace too; rclpy reads /clock
            n.remappings = [("/clock", f"{ns}/clock")]
    return nodes


def ros_arguments(spec: NodeSpec, params_file: str | None = None, sros2: bool = False
                  ) -> list[str]:
    """`--ros-args` for a process started without launch: node name, namespace, the SROS2
    enclave (`sros2`) and either a params file (written by the caller) or -p assignments."""
    args = ["--ros-args"]
    if sros2:
        args += ["--enclave", spec.enclave]
    if spec.name:
        args += ["-r", f"__node:={spec.name}"]
    if spec.namespace:
        args += ["-r", f"__ns:=/{spec.namespace}"]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    if params_file:
        args += ["--params-file", params_file]
    return args


def _watchdog(cfg: FleetConfig, backend: str) -> float:
    """s a robot of `backend` keeps running its agent's last velocity command: the
    driver's watchdog (the nodes' defaults unless the config sets them); a serial robot's
    bridge re-sends it to the device until its cmd_vel_timeout, at cmd_rate_hz."""
    if backend == "serial":
        bridge = cfg.nodes.get("serial_bridge", {})
        return float(bridge.get("cmd_vel_timeout", 0.5)) + \
            1.0 / float(bridge.get("cmd_rate_hz", 20.0))
    section = {"ideal": "ideal_driver", "sim": "sim"}.get(backend)
    return float(cfg.nodes.get(section, {}).get("cmd_timeout", 0.5)) if section else 0.5


def params_yaml(spec: NodeSpec) -> dict[str, Any]:
    """The ROS params-file content for one process: keyed by the node's full name, or
    `/**` (every node of the process) when the process hosts several nodes."""
    if not spec.name:
        full = "/**"
    else:
        full = f"/{spec.namespace}/{spec.name}" if spec.namespace else spec.name
    return {full: {"ros__parameters": dict(spec.parameters)}}


def as_dict(spec: NodeSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def default_config_path() -> str:
    from fleet_coord.share import share_path
    return share_path("config", "fleet_demo.yaml")
