"""What `launch/*.launch.py` do, kept in the package where it is tested.

`resolve(arguments)` turns launch-argument values into the node set and environment
(pure, no `launch` import: `launch` is not installable from PyPI, so tests check this);
`generate_launch_description(config_name)` wraps it in launch / launch_ros actions.
"""
from __future__ import annotations


from fleet_coord.fleet_config import load_fleet_config
from fleet_coord.node_set import NodeSpec, environment, fleet_nodes
from fleet_coord.share import share_path

#: seconds before a node that exited is started again (the config's restart policy)
RESPAWN_DELAY_S = 2.0

#: launch argument -> (default, description). fleet-coord launch has the same options.
ARGUMENTS = {
    "config": ("", "fleet config YAML (default: the launch file's config in share/fleet_coord/config)"),
    "robot_count": ("", "start only the first N robots of the config"),
    "use_sim_time": ("", "true/false: override the config's use_sim_time"),
    "domain": ("", "ROS_DOMAIN_ID override"),
    "agents_per_process": ("", "group N robot agents per process (default: the config's)"),
    "operator_view": ("", "true/false: serve the web operator view (default: the config's)"),
    "operator_port": ("", "port of the web operator view (default: the config's, else 8080)"),
    "record": ("", "also record the fleet's topics to this MCAP file"),
    "namespace": ("", "put the whole fleet under this namespace (default: the config's), "
                      "so that two fleets share a ROS domain"),
}


def share_config(name: str) -> str:
    """A config shipped with the package: the repository's config/ in a source checkout,
    share/fleet_coord/config on a ROS install."""
    return share_path("config", name)


def _bool(name: str, text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError(f"launch argument {name}: expected true or false, got {text!r}")


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"launch argument {name}: expected an integer, got {text!r}") from None


def resolve(values: dict[str, str], default_config: str) -> tuple[list[NodeSpec], dict[str, str]]:
    """(node specs, environment) for launch-argument values ('' = not given)."""
    unknown = set(values) - set(ARGUMENTS)
    if unknown:
        raise ValueError(f"unknown launch arguments {sorted(unknown)}; known: {sorted(ARGUMENTS)}")
    v = {k: values.get(k, "") for k in ARGUMENTS}
    cfg = load_fleet_config(v["config"] or default_config)
    specs = fleet_nodes(
        cfg,
        robot_count=_int("robot_count", v["robot_count"]) if v["robot_count"] else None,
        use_sim_time=_bool("use_sim_time", v["use_sim_time"]) if v["use_sim_time"] else None,
        agents_per_process=(_int("agents_per_process", v["agents_per_process"])
                            if v["agents_per_process"] else None),
        operator_view=_bool("operator_view", v["operator_view"]) if v["operator_view"] else None,
        operator_port=_int("operator_port", v["operator_port"]) if v["operator_port"] else None,
        record=v["record"] or None, namespace=v["namespace"] or None)
    from fleet_coord.keys import check_fleet
    check_fleet(cfg, specs)        # a bad key file: an error naming it, before any node
    env = environment(cfg)
    if v["domain"]:
        env["ROS_DOMAIN_ID"] = str(_int("domain", v["domain"]))
    return specs, env


def generate_launch_description(config_name: str):
    """The LaunchDescription of a launch file whose default config is `config_name`."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    def nodes(context):
        values = {n: LaunchConfiguration(n).perform(context) for n in ARGUMENTS}
        specs, env = resolve(values, share_config(config_name))
        actions = [SetEnvironmentVariable(k, val) for k, val in env.items()]
        sros2 = env.get("ROS_SECURITY_ENABLE") == "true"
        for s in specs:
            common = dict(package=s.package, executable=s.executable, parameters=[s.parameters],
                          arguments=s.arguments, output="screen", emulate_tty=True,
                          respawn=s.respawn, respawn_delay=RESPAWN_DELAY_S,
                          remappings=s.remappings or None,
                          ros_arguments=["--enclave", s.enclave] if sros2 else None)
            if s.lifecycle:
                # a managed node (launch_ros needs its name and namespace). Its `autostart`
                # parameter, not launch's ChangeState events, brings it to active: it
                # configures once its device answers, also when the robot is powered on
                # after the launch or the node is respawned, where events emitted once at
                # launch would leave it unconfigured.
                actions.append(LifecycleNode(name=s.name, namespace=s.namespace, **common))
            else:
                actions.append(Node(name=s.name or None, namespace=s.namespace or None,
                                    **common))
        return actions

    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=d, description=h) for n, (d, h) in ARGUMENTS.items()]
        + [OpaqueFunction(function=nodes)])
