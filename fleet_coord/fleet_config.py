"""Fleet configuration: the fleet YAML (robots, backends, per-node parameters; format in
docs/fleet-config.md) and what every fleet node shares, the roadmap and its footprint
exclusion. Every node that needs the roadmap gets it through
`load_roadmap_and_exclusion`, so the traffic authority and all agents index resources
the same way (`roadmap_id` checks that).
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from fleet_coord import parameters
from fleet_coord.core import pacing
from fleet_coord.core.liveness import LivenessTracker
from fleet_coord.core.roadmap import Exclusion, Footprint, MapError, Roadmap, load_movingai_map
from fleet_coord.core.yaml_reader import FileFormatError, YamlReader, compose_yaml, describe
from fleet_coord.share import share_path

DEFAULT_MAP = share_path("config", "maps", "warehouse.map")


def resolve_map(path: str) -> str:
    """An empty path means the bundled warehouse map; a relative path is tried as given,
    then under the package's config/maps."""
    if not path:
        return DEFAULT_MAP
    if os.path.exists(path):
        return path
    bundled = share_path("config", "maps", path)
    if os.path.exists(bundled):
        return bundled
    raise FileNotFoundError(f"map file {path!r} not found (also looked in {os.path.dirname(bundled)})")


def load_roadmap(path: str) -> Roadmap:
    """The roadmap of a map file; MapError for one with nowhere to drive (a grid with no
    free cell, a roadmap without stations), which every node would fail on later."""
    path = resolve_map(path)
    if path.endswith((".yaml", ".yml")):
        roadmap = Roadmap.from_yaml(path)
    else:
        roadmap = Roadmap.from_grid(load_movingai_map(path))
    if roadmap.num_vertices == 0:
        raise MapError("the map has no free cell: there is nowhere for a robot to be "
                       "(every cell is an obstacle)", path)
    return roadmap


@functools.lru_cache(maxsize=8)
def load_roadmap_and_exclusion(path: str, footprint_radius: float) -> tuple[Roadmap, Exclusion, str]:
    """(roadmap, exclusion for a circular footprint, roadmap_id). Cached per process, so
    many agents in one process share one roadmap."""
    path = resolve_map(path)
    roadmap = load_roadmap(path)
    exclusion = roadmap.exclusion(Footprint(radius=footprint_radius))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read() + repr(float(footprint_radius)).encode()).hexdigest()
    return roadmap, exclusion, digest[:16]


# ------------------------------------------------------------------------ fleet configs
BACKENDS = ("ideal", "sim", "serial", "vda5050")
DISCOVERY_RANGES = ("LOCALHOST", "SUBNET", "SYSTEM_DEFAULT", "OFF")
RESTART_POLICIES = ("never", "on-failure", "always")
NODE_SECTIONS = ("traffic", "dispatcher", "robot_agent", "fleet_monitor", "ideal_driver", "sim",
                 "vda5050_master",
                 "serial_bridge", "operator_view", "recorder")
_ROS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
AUTH_MODES = ("off", "permissive", "enforce")


class ConfigError(FileFormatError):
    """A fleet config that cannot be used: names the file, the line, the key and what was
    expected."""


# What a ROS parameter file can hold (rcl's YAML parser): scalars of these tags, lists of
# scalars of one tag, mappings (parameter namespaces).
_PARAM_SCALAR_TAGS = {"tag:yaml.org,2002:" + t: t for t in ("str", "int", "float", "bool")}


def _check_params(rd: YamlReader, node: yaml.Node, where: str,
                  seen: set[int] | None = None) -> None:
    """Refuse a `nodes.<section>` value no ROS node could take as parameters: null, other
    tags (!!binary, timestamps, !!python/...), aliases (rcl: "Will not support aliasing"),
    non-string names, lists of lists / mappings / mixed types."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        raise rd.error(node, f"'{where}': YAML aliases (*name) are not supported in ROS "
                             "parameters; write the value out")
    seen.add(id(node))
    expected = ("a ROS parameter value (a string, number, true/false, a list of one of "
                "those, or a mapping of parameters)")
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if (not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str"
                    or not key.value):
                raise rd.error(key, f"'{where}': expected a parameter name (a string), "
                                    f"got {describe(key)}")
            _check_params(rd, value, f"{where}.{key.value}", seen)
    elif isinstance(node, yaml.SequenceNode):
        tags = set()
        for i, item in enumerate(node.value):
            if not isinstance(item, yaml.ScalarNode) or item.tag not in _PARAM_SCALAR_TAGS:
                raise rd.error(item, f"'{where}[{i}]': expected a string, number or true/false "
                                     f"in a parameter list, got {describe(item)}")
            _check_params(rd, item, f"{where}[{i}]", seen)
            tags.add(item.tag)
        if len(tags) > 1:
            raise rd.error(node, f"'{where}': a parameter list holds values of one type, got "
                                 f"{' and '.join(sorted(_PARAM_SCALAR_TAGS[t] for t in tags))}")
    else:
        if node.tag not in _PARAM_SCALAR_TAGS:
            raise rd.error(node, f"'{where}': expected {expected}, got {describe(node)} "
                                 f"({node.tag.rsplit(':', 1)[-1] if node.tag else 'no tag'})")
        if rd.scalar(node, (node.tag,), lambda _value: True) is None:
            raise rd.error(node, f"'{where}': {describe(node)} is not a valid "
                                 f"{_PARAM_SCALAR_TAGS[node.tag]}")


def _node_parameters(rd: YamlReader, section: str, node: yaml.MappingNode) -> dict[str, Any]:
    """`nodes.<section>` checked against the parameter table (fleet_coord.parameters):
    unknown names (with "did you mean"), names another key sets, values out of bounds."""
    values: dict[str, Any] = {}
    for key, value in node.value:
        name, where = key.value, f"'nodes.{section}.{key.value}'"
        why = parameters.reserved(section, name) or parameters.unknown(section, name)
        if why:
            raise rd.error(key, f"{where}: {why}")
        v = yaml.safe_load(yaml.serialize(value))
        if isinstance(value, yaml.MappingNode) and name not in parameters.PASS_THROUGH:
            raise rd.error(value, f"{where}: expected a parameter value, got a mapping")
        why = parameters.problem(section, name, v)
        if why:
            raise rd.error(value, f"{where}: {why}")
        values[name] = v
    return parameters.check_values(section, values)


def _compose(path: str) -> yaml.Node | None:
    try:
        return compose_yaml(path, ConfigError)
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text: byte {e.object[e.start]:#04x} "
                          f"(file offset {e.start})", path, line) from None


@dataclass
class RobotConfig:
    name: str
    backend: str
    start: tuple[float, float, float]      # x, y (m), theta (rad)
    max_speed: float = 1.0                 # m/s
    max_angular_speed: float = 2.0         # rad/s
    battery_wh: float = math.inf
    payload_kg: float = math.inf
    port: str = ""                         # serial backend
    baud: int = 115200
    manufacturer: str = ""                 # vda5050 backend: the vehicle's topic levels
    serial_number: str = ""                # (default: the robot's name)
    broker: str = "127.0.0.1:1883"         # vda5050 backend: MQTT broker host:port


@dataclass
class AuthConfig:
    """`auth:` of a fleet config (docs/security.md)."""
    mode: str = "off"                      # off | permissive (verify, log, accept) | enforce
    keys: str = ""                         # key directory (absolute; default <config stem>.keys)
    window: float = 30.0                   # s: oldest a message on a volatile channel may be
    tolerance: float = 2.0                 # s: clock skew allowed between hosts
    sros2: bool = False                    # also run the nodes in their SROS2 enclaves

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass
class FleetConfig:
    path: str
    map: str
    footprint_radius: float = 0.15
    discovery_range: str = "LOCALHOST"
    discovery_range_explicit: bool = False  # set by the config (else the user's range wins)
    domain_id: int | None = None           # None: keep the environment's ROS_DOMAIN_ID
    namespace: str = ""                    # every topic under /<namespace> (fleet_coord.namespace)
    use_sim_time: bool = False
    agents_per_process: int = 1
    restart: str = "on-failure"
    ledger: str = ""
    event_log: str = ""
    operator_view: bool = False            # serve the web operator view (nodes.operator_view)
    table_log: str = ""                    # "" = next to the ledger (table_log_path), "off"
    robots: list[RobotConfig] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth: AuthConfig = field(default_factory=AuthConfig)

    def robot(self, name: str) -> RobotConfig:
        for r in self.robots:
            if r.name == name:
                return r
        raise KeyError(f"no robot {name!r} in {self.path}; robots: "
                       f"{', '.join(r.name for r in self.robots)}")


def _vda5050_keys(rd: YamlReader, r: dict, rc: RobotConfig, where: str, node: yaml.Node) -> None:
    """`manufacturer`, `serial_number`, `broker` of a vda5050 robot (docs/vda5050.md)."""
    from fleet_coord.vda5050.protocol import ID_RE

    keys = ("manufacturer", "serial_number", "broker")
    if rc.backend != "vda5050":
        for k in keys:
            if k in r:
                raise rd.error(r[k][0], f"'{where}.{k}' is for backend 'vda5050' only "
                                        f"(this robot's backend is {rc.backend!r})")
        return
    if "manufacturer" not in r:
        raise rd.error(node, f"'{where}': backend 'vda5050' needs 'manufacturer' (the "
                             "vehicle's MQTT topic level, e.g. acme)")
    for k in ("manufacturer", "serial_number"):
        if k in r:
            value = rd.name(r[k][1], f"'{where}.{k}'")
            if not ID_RE.match(value):
                raise rd.error(r[k][1], f"'{where}.{k}': {value!r} may only use A-Z a-z 0-9 "
                                        "_ . : - (VDA 5050 topic levels)")
            setattr(rc, k, value)
    rc.serial_number = rc.serial_number or rc.name
    if "broker" in r:
        from fleet_coord.vda5050.emulator import parse_broker
        rc.broker = rd.name(r["broker"][1], f"'{where}.broker' (host:port)")
        try:
            parse_broker(rc.broker)
        except ValueError as e:
            raise rd.error(r["broker"][1], f"'{where}.broker': {e}") from None


#: Where the traffic authority keeps its table when neither `fleet.table_log` nor
#: `fleet.ledger` nor a config file says.
DEFAULT_TABLE_LOG = os.path.join("~", ".ros", "fleet_coord_table.jsonl")


def table_log_path(cfg: FleetConfig) -> str:
    """The traffic authority's table log for `cfg` ("" = in memory): `fleet.table_log`,
    else next to the ledger (`<ledger>.table.jsonl`), else next to the config file
    (`<config>.table.jsonl`), else DEFAULT_TABLE_LOG. On by default: a restarted authority
    then keeps every reservation it granted (docs/core-model.md, "Authority restarts")."""
    if cfg.table_log == "off":
        return ""
    if cfg.table_log:
        return cfg.table_log
    if cfg.ledger:
        return os.path.splitext(cfg.ledger)[0] + ".table.jsonl"
    if os.path.isfile(cfg.path):
        return os.path.splitext(os.path.abspath(cfg.path))[0] + ".table.jsonl"
    return os.path.expanduser(DEFAULT_TABLE_LOG)


def load_fleet_config(path: str) -> FleetConfig:
    """Load and validate a fleet config YAML (format: docs/fleet-config.md).

    Relative file names inside it (map, ledger, event_log) are relative to the config's
    folder; a map name not found there is looked up among the bundled maps. Every error is
    a ConfigError naming the file, the line, the key and what was expected.
    """
    try:
        return _load_fleet_config(path)
    except RecursionError:
        # PyYAML composes (and we walk) nested collections recursively
        raise ConfigError("collections nested too deeply", path) from None


def _load_fleet_config(path: str) -> FleetConfig:
    root = _compose(path)
    if root is None:
        raise ConfigError("expected a mapping with 'fleet' and 'robots', got an empty file", path, 1)
    rd = YamlReader(path, ConfigError)
    top = rd.mapping(root, "the fleet config", ("fleet", "robots"), ("nodes", "auth"))
    here = os.path.dirname(os.path.abspath(path))

    def rel(p: str) -> str:
        return p if not p or os.path.isabs(p) else os.path.join(here, p)

    f = rd.mapping(top["fleet"][1], "'fleet'", ("map",),
                   ("footprint_radius", "discovery_range", "domain_id", "use_sim_time",
                    "backend", "agents_per_process", "restart", "ledger", "event_log",
                    "operator_view", "table_log", "namespace"))
    map_node = f["map"][1]
    map_name = rd.name(map_node, "'fleet.map' as a map file name")
    map_path = rel(map_name)
    if not os.path.exists(map_path):
        try:
            map_path = resolve_map(map_name)
        except FileNotFoundError:
            raise rd.error(map_node, f"'fleet.map': file {map_name!r} not found next to the config "
                                     "or among the bundled maps") from None
    if not os.path.isfile(map_path):
        raise rd.error(map_node, f"'fleet.map': {map_name!r} is not a file ({map_path})")
    cfg = FleetConfig(path=path, map=map_path)

    def choice(key: str, options: tuple[str, ...]) -> str | None:
        if key not in f:
            return None
        node = f[key][1]
        value = rd.name(node, f"'fleet.{key}'")
        if value not in options:
            raise rd.error(node, f"'fleet.{key}': expected one of {', '.join(options)}, got {value!r}")
        return value

    if "footprint_radius" in f:
        cfg.footprint_radius = rd.number(f["footprint_radius"][1], "'fleet.footprint_radius' (m)")
        if not cfg.footprint_radius > 0:
            raise rd.error(f["footprint_radius"][1], "'fleet.footprint_radius' must be > 0 m")
    cfg.discovery_range = choice("discovery_range", DISCOVERY_RANGES) or cfg.discovery_range
    cfg.discovery_range_explicit = "discovery_range" in f
    cfg.restart = choice("restart", RESTART_POLICIES) or cfg.restart
    default_backend = choice("backend", BACKENDS) or "ideal"
    if "domain_id" in f:
        cfg.domain_id = rd.integer(f["domain_id"][1], "'fleet.domain_id'")
        if not 0 <= cfg.domain_id <= 232:
            raise rd.error(f["domain_id"][1], f"'fleet.domain_id' must be 0..232, got {cfg.domain_id}")
    if "use_sim_time" in f:
        cfg.use_sim_time = rd.boolean(f["use_sim_time"][1], "'fleet.use_sim_time'")
    if "namespace" in f:
        from fleet_coord.namespace import normalize
        ns_node = f["namespace"][1]
        try:
            cfg.namespace = normalize(rd.name(ns_node, "'fleet.namespace'"))
        except ValueError as e:
            raise rd.error(ns_node, f"'fleet.namespace': {e}") from None
    if "operator_view" in f:
        cfg.operator_view = rd.boolean(f["operator_view"][1], "'fleet.operator_view'")
    if "agents_per_process" in f:
        cfg.agents_per_process = rd.integer(f["agents_per_process"][1], "'fleet.agents_per_process'")
        if cfg.agents_per_process < 1:
            raise rd.error(f["agents_per_process"][1], "'fleet.agents_per_process' must be >= 1")
    for key in ("ledger", "event_log"):
        if key in f:
            setattr(cfg, key, rel(rd.name(f[key][1], f"'fleet.{key}' as a file name")))
    if "table_log" in f:
        name = rd.name(f["table_log"][1], "'fleet.table_log' as a file name or off")
        cfg.table_log = "off" if name == "off" else rel(name)

    try:
        roadmap = load_roadmap(cfg.map)
    except (FileFormatError, OSError) as e:
        raise rd.error(map_node, f"'fleet.map': {map_name!r} is not a usable map: {e}") from None
    robots_node = top["robots"][1]
    items = rd.sequence(robots_node, "'robots'")
    if not items:
        raise rd.error(robots_node, "'robots': expected at least one robot")
    seen: dict[str, int] = {}
    starts: dict[tuple[float, float], str] = {}
    for i, node in enumerate(items):
        where = f"robots[{i}]"
        r = rd.mapping(node, where, ("name",),
                       ("backend", "start", "start_station", "max_speed", "max_angular_speed",
                        "battery_wh", "payload_kg", "port", "baud", "manufacturer",
                        "serial_number", "broker"))
        name = rd.name(r["name"][1], f"'{where}.name'")
        if not _ROS_NAME.match(name):
            raise rd.error(r["name"][1], f"'{where}.name': {name!r} is not a valid ROS name "
                                         "(a letter, then letters, digits or '_')")
        if name in seen:
            raise rd.error(r["name"][1], f"'{where}.name': duplicate robot name {name!r} "
                                         f"(also robots[{seen[name]}])")
        seen[name] = i
        backend = default_backend
        if "backend" in r:
            backend = rd.name(r["backend"][1], f"'{where}.backend'")
            if backend not in BACKENDS:
                raise rd.error(r["backend"][1], f"'{where}.backend': expected one of "
                                                f"{', '.join(BACKENDS)}, got {backend!r}")
        if ("start" in r) == ("start_station" in r):
            raise rd.error(node, f"'{where}': give exactly one of 'start' ([x, y, theta]) "
                                 "or 'start_station' (a station name)")
        if "start" in r:
            vals = rd.sequence(r["start"][1], f"'{where}.start' ([x, y] or [x, y, theta])")
            if len(vals) not in (2, 3):
                raise rd.error(r["start"][1], f"'{where}.start': expected [x, y] or [x, y, theta], "
                                              f"got {len(vals)} numbers")
            xyz = [rd.number(v, f"'{where}.start'") for v in vals] + [0.0]
            start = (xyz[0], xyz[1], xyz[2])
            dists = (roadmap.pos[:, 0] - start[0]) ** 2 + (roadmap.pos[:, 1] - start[1]) ** 2
            if dists.min() > 0.25 ** 2:
                raise rd.error(r["start"][1], f"'{where}.start': ({start[0]}, {start[1]}) is not on "
                                              f"the roadmap of {cfg.map} (no vertex within 0.25 m)")
        else:
            st_node = r["start_station"][1]
            st = rd.name(st_node, f"'{where}.start_station'")
            try:
                v = roadmap.vertex(st)
            except KeyError as e:
                raise rd.error(st_node, f"'{where}.start_station': {e}") from None
            start = (float(roadmap.pos[v, 0]), float(roadmap.pos[v, 1]), 0.0)
        key = (round(start[0], 3), round(start[1], 3))
        if key in starts:
            raise rd.error(node, f"'{where}': starts where {starts[key]} starts ({start[0]}, {start[1]})")
        starts[key] = name
        rc = RobotConfig(name=name, backend=backend, start=start)
        # .inf means "no limit" for battery and payload (their defaults), never for a speed
        for k, what, unlimited in (("max_speed", "m/s", False),
                                   ("max_angular_speed", "rad/s", False),
                                   ("battery_wh", "Wh", True), ("payload_kg", "kg", True)):
            if k in r:
                value = rd.number(r[k][1], f"'{where}.{k}' ({what})", allow_inf=unlimited)
                if not value > 0:
                    raise rd.error(r[k][1], f"'{where}.{k}' must be > 0 {what}, got {value}")
                setattr(rc, k, value)
        if "port" in r:
            rc.port = rd.name(r["port"][1], f"'{where}.port' (a serial device path)")
        if "baud" in r:
            rc.baud = rd.integer(r["baud"][1], f"'{where}.baud'")
            if rc.baud <= 0:
                raise rd.error(r["baud"][1], f"'{where}.baud' must be > 0, got {rc.baud}")
        if rc.backend == "serial" and not rc.port:
            raise rd.error(node, f"'{where}': backend 'serial' needs 'port' (e.g. /dev/ttyACM0)")
        _vda5050_keys(rd, r, rc, where, node)
        cfg.robots.append(rc)

    vda = [r.name for r in cfg.robots if r.backend == "vda5050"]
    if vda and cfg.use_sim_time:
        raise rd.error(f["use_sim_time"][1], f"'fleet.use_sim_time': VDA 5050 vehicles "
                       f"({', '.join(vda)}) run on wall time (UTC timestamps); a fleet with "
                       "them needs use_sim_time: false")
    if "nodes" in top:
        sections = rd.mapping(top["nodes"][1], "'nodes'", (), NODE_SECTIONS)
        for section, (_, value) in sections.items():
            if not isinstance(value, yaml.MappingNode):
                raise rd.error(value, f"'nodes.{section}': expected a mapping of ROS parameters, "
                                      f"got {describe(value)}")
            _check_params(rd, value, f"nodes.{section}")
            cfg.nodes[section] = _node_parameters(rd, section, value)
        _check_rates(rd, cfg, {s: v for s, (_, v) in sections.items()})
    cfg.auth = (_auth_section(rd, top["auth"][1], path, rel) if "auth" in top
                else AuthConfig(keys=default_key_dir(path)))
    return cfg


def _check_rates(rd: YamlReader, cfg: FleetConfig, sections: dict[str, yaml.Node]) -> None:
    """Refuse a loss timeout that leaves fewer than 3 messages per window: the agents'
    states (a parked robot's repeat its last one at `state_rate`) for `lost_after`, the
    parked robots' odometry (core/pacing.py) for an agent's `driver_timeout`."""
    def get(section: str, name: str, default: float) -> float:
        return float(cfg.nodes.get(section, {}).get(name, default))

    def where(section: str, name: str) -> yaml.Node:
        node = sections[section]
        assert isinstance(node, yaml.MappingNode)
        return next((k for k, _ in node.value if k.value == name), node)

    state = get("robot_agent", "state_rate", pacing.STATE_RATE)
    timeouts = [(s, "lost_after", get(s, "lost_after", LivenessTracker.lost_after),
                 state, 0.0, "robot_agent.state_rate", "robot_agent.state_rate")
                for s in ("traffic", "fleet_monitor")]
    timeout = get("robot_agent", "driver_timeout", 0.0)
    backends = {r.backend for r in cfg.robots}
    if timeout > 0:
        for backend, section, rate, idle_rate in (
                ("ideal", "ideal_driver", "rate_hz", "idle_rate_hz"),
                ("sim", "sim", "odom_rate", "idle_odom_rate")):
            if backend in backends:   # (both default to 50 Hz; the sim's 0: every step)
                timeouts.append(("robot_agent", "driver_timeout", timeout,
                                 get(section, rate, 50.0) or math.inf,
                                 get(section, idle_rate, pacing.IDLE_ODOM_RATE),
                                 f"{section}.{rate}", f"{section}.{idle_rate}"))
    for section, name, value, rate, idle_rate, rate_name, idle_name in timeouts:
        problem = pacing.rate_problem(value, rate, idle_rate, f"'nodes.{section}.{name}'",
                                      f"'nodes.{rate_name}'", f"'nodes.{idle_name}'")
        if problem:
            rate_section, rate_key = idle_name.split(".")
            if section in sections:
                raise rd.error(where(section, name), problem)
            if rate_section in sections:
                raise rd.error(where(rate_section, rate_key), problem)
            raise ConfigError(problem, cfg.path)


def _auth_section(rd: YamlReader, node: yaml.Node, path: str, rel: Any) -> AuthConfig:
    a = rd.mapping(node, "'auth'", (), ("mode", "keys", "window", "tolerance", "sros2"))
    auth = AuthConfig()
    if "mode" in a:
        auth.mode = rd.name(a["mode"][1], "'auth.mode'")
        if auth.mode not in AUTH_MODES:
            raise rd.error(a["mode"][1], f"'auth.mode': expected one of {', '.join(AUTH_MODES)}, "
                                         f"got {auth.mode!r}")
    if "keys" in a:
        auth.keys = rel(rd.name(a["keys"][1], "'auth.keys' as a directory name"))
    for key, what in (("window", "'auth.window' (s)"), ("tolerance", "'auth.tolerance' (s)")):
        if key in a:
            value = rd.number(a[key][1], what)
            if not value > 0:
                raise rd.error(a[key][1], f"{what} must be > 0, got {value}")
            setattr(auth, key, value)
    if "sros2" in a:
        auth.sros2 = rd.boolean(a["sros2"][1], "'auth.sros2'")
    if not auth.keys:
        auth.keys = default_key_dir(path)
    return auth


def default_key_dir(config_path: str) -> str:
    """Where `fleet-coord keys init CONFIG` puts the keys: `<config stem>.keys/` next to it."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), f"{stem}.keys")
