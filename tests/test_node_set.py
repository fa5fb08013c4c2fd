"""The node set of a fleet config, and the launch files agree with it.

`launch`/`launch_ros` are not installable from PyPI (docs/install.md), so the launch
files are exercised against a recording stand-in of those two APIs; what they launch is
decided by fleet_coord.node_set, tested here for real.
"""
import importlib.util
import os
import sys
import types

import pytest

from fleet_coord.fleet_config import load_fleet_config
from fleet_coord.launch_support import ARGUMENTS, resolve
from fleet_coord.node_set import (EXECUTABLES, NETWORK_TRANSPORTS, environment, fleet_nodes,
                                  params_yaml, ros_arguments)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_config_node_set():
    specs = fleet_nodes("config/fleet_demo.yaml")
    exes = [s.executable for s in specs]
    assert exes.count("traffic") == exes.count("dispatcher") == exes.count("fleet_monitor") == 1
    assert exes.count("ideal_driver") == 1            # one kinematic world for 5 robots
    agents = [s for s in specs if s.executable == "robot_agent"]
    assert [a.robots for a in agents] == [["robot_1"], ["robot_2"], ["robot_3"], ["robot_4"], ["robot_5"]]
    assert agents[0].arguments == ["--robots", "robot_1"] and agents[0].name == ""
    assert len({s.process_name for s in specs}) == len(specs)  # process labels unique
    drv = next(s for s in specs if s.executable == "ideal_driver")
    assert drv.parameters["start_poses"][:3] == [2.0, 18.0, 0.0]
    assert all(s.parameters["map"].endswith("warehouse.map") for s in specs)
    assert next(s for s in specs if s.name == "traffic").parameters["lost_after"] == 1.5
    assert next(s for s in specs if s.name == "dispatcher").parameters["bid_window"] == 0.3


def test_grouping_robot_count_and_sim_time_overrides():
    specs = fleet_nodes("config/fleet_demo.yaml", robot_count=4, agents_per_process=3,
                        use_sim_time=True)
    agents = [s for s in specs if s.executable == "robot_agent"]
    assert [a.robots for a in agents] == [["robot_1", "robot_2", "robot_3"], ["robot_4"]]
    # the ideal driver is the clock source: it publishes /clock on wall time
    drv = next(s for s in specs if s.executable == "ideal_driver")
    assert drv.parameters["publish_clock"] is True and drv.parameters["use_sim_time"] is False
    assert all(s.parameters["use_sim_time"] for s in specs if s is not drv)
    assert "publish_clock" not in next(s for s in fleet_nodes("config/fleet_demo.yaml")
                                       if s is not drv and s.executable == "ideal_driver"
                                       ).parameters
    with pytest.raises(ValueError, match="use_sim_time: true needs a clock source"):
        fleet_nodes("config/fleet_hardware.yaml", use_sim_time=True)
    with pytest.raises(ValueError, match="robot_count must be 1..5"):
        fleet_nodes("config/fleet_demo.yaml", robot_count=9)


def test_sim_is_the_clock_source_and_serial_robots_get_a_bridge_each():
    sim = fleet_nodes("config/fleet_sim.yaml")
    simnode = next(s for s in sim if s.executable == "sim")
    assert simnode.parameters["use_sim_time"] is False
    assert all(s.parameters["use_sim_time"] for s in sim if s is not simnode)
    hw = fleet_nodes("config/fleet_hardware.yaml")
    bridges = [s for s in hw if s.executable == "serial_bridge"]
    assert [(b.namespace, b.parameters["port"]) for b in bridges] == [
        ("amr_1", "/dev/ttyACM0"), ("amr_2", "/dev/ttyUSB0")]
    # the device clips commands to the limits the robot's agent plans with
    agents = next(s for s in hw if s.executable == "robot_agent" and "amr_1" in s.robots)
    assert bridges[0].parameters["max_v"] == agents.parameters["max_v"] == 0.5
    assert bridges[0].parameters["max_omega"] >= agents.parameters["max_w"]
    assert not any(s.executable in ("ideal_driver", "sim") for s in hw)
    # each agent knows how long its driver runs a last command on: the bridge re-sends it
    # until its cmd_vel_timeout (0.5 s) at cmd_rate_hz (20 Hz); the worlds' watchdog 0.5 s
    assert agents.parameters["driver_cmd_timeout"] == pytest.approx(0.55)
    assert next(s for s in sim if s.executable == "robot_agent"
                ).parameters["driver_cmd_timeout"] == 0.5


def test_environment_non_blocking_udp_only_for_a_fleet_across_hosts():
    """A fleet across hosts gets Fast DDS's default transports (shared memory within a
    host, UDPv4 between hosts) with non-blocking UDP sends: a blocking send stalled a
    cut-off robot's control loop (docs/reliability.md). A single-host fleet keeps Fast
    DDS's defaults; a transport set in the environment is left alone."""
    demo = load_fleet_config(os.path.join(REPO, "config", "fleet_demo.yaml"))
    hw = load_fleet_config(os.path.join(REPO, "config", "fleet_hardware.yaml"))
    assert demo.discovery_range == "LOCALHOST" and hw.discovery_range == "SUBNET"
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in environment(demo, base={})
    env = environment(hw, base={})
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == NETWORK_TRANSPORTS == "DEFAULT?non_blocking=true"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in environment(
        hw, base={"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"})


def test_every_executable_is_a_console_script():
    setup = open(os.path.join(REPO, "setup.py")).read()
    for exe, module in EXECUTABLES.items():
        assert f'"{exe} = {module}:main"' in setup


def test_params_file_and_ros_arguments():
    spec = next(s for s in fleet_nodes("config/fleet_hardware.yaml") if s.namespace == "amr_1")
    assert spec.executable == "serial_bridge"
    assert list(params_yaml(spec)) == ["/amr_1/serial_bridge"]
    assert ros_arguments(spec, "/tmp/p.yaml") == [
        "--ros-args", "-r", "__node:=serial_bridge", "-r", "__ns:=/amr_1", "--params-file", "/tmp/p.yaml"]


# -- the launch files, against a recording stand-in of launch / launch_ros -------------------

class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def fake_launch(monkeypatch):
    values = {}
    mods = {name: types.ModuleType(name) for name in
            ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    mods["launch"].LaunchDescription = lambda actions: list(actions)
    for n in ("DeclareLaunchArgument", "SetEnvironmentVariable"):
        setattr(mods["launch.actions"], n, type(n, (_Recorder,), {}))

    class OpaqueFunction(_Recorder):
        def run(self):
            return self.kwargs["function"](None)
    mods["launch.actions"].OpaqueFunction = OpaqueFunction

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return values.get(self.name, "")
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (_Recorder,), {})

    class LifecycleNode(_Recorder):
        # launch_ros's signature (humble .. rolling): name and namespace keyword-only, required
        def __init__(self, *, name, namespace, **kwargs):
            assert isinstance(name, str) and name and isinstance(namespace, str)
            super().__init__(name=name, namespace=namespace, **kwargs)
    mods["launch_ros.actions"].LifecycleNode = LifecycleNode
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return values


def _run_launch_file(name):
    path = os.path.join(REPO, "launch", name)
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    actions = mod.generate_launch_description()
    declared = {a.args[0] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    opaque = [a for a in actions if type(a).__name__ == "OpaqueFunction"]
    produced = [x for a in opaque for x in a.run()]
    return declared, produced


@pytest.mark.parametrize("launch_file, config", [
    ("fleet.launch.py", "fleet_demo.yaml"), ("sim.launch.py", "fleet_sim.yaml"),
    ("hardware.launch.py", "fleet_hardware.yaml")])
def test_launch_files_launch_exactly_the_node_set(fake_launch, launch_file, config):
    declared, produced = _run_launch_file(launch_file)
    assert declared == set(ARGUMENTS)
    nodes = [a.kwargs for a in produced if type(a).__name__ in ("Node", "LifecycleNode")]
    # the serial bridges are managed nodes that bring themselves up (autostart)
    managed = [a.kwargs for a in produced if type(a).__name__ == "LifecycleNode"]
    assert [n["executable"] for n in managed] == [n["executable"] for n in nodes
                                                  if n["executable"] == "serial_bridge"]
    assert all(n["parameters"][0]["autostart"] is True for n in managed)
    env = {a.args[0]: a.args[1] for a in produced if type(a).__name__ == "SetEnvironmentVariable"}
    specs = fleet_nodes(os.path.join(REPO, "config", config))
    assert [(n["executable"], n["name"] or "", n["namespace"] or "", n["parameters"][0],
             n["arguments"]) for n in nodes] == [
        (s.executable, s.name, s.namespace, s.parameters, s.arguments) for s in specs]
    cfg = load_fleet_config(os.path.join(REPO, "config", config))
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == cfg.discovery_range


def test_launch_arguments_reach_the_node_set(fake_launch):
    fake_launch.update(robot_count="2", use_sim_time="true", domain="77", agents_per_process="2")
    _, produced = _run_launch_file("fleet.launch.py")
    nodes = [a.kwargs for a in produced if type(a).__name__ == "Node"]
    agents = [n for n in nodes if n["executable"] == "robot_agent"]
    assert len(agents) == 1 and agents[0]["arguments"] == ["--robots", "robot_1,robot_2"]
    # fleet.launch.py use_sim_time:=true starts a clock source: the ideal driver
    clock = next(n for n in nodes if n["executable"] == "ideal_driver")["parameters"][0]
    assert clock["publish_clock"] is True and clock["use_sim_time"] is False
    assert all(n["parameters"][0]["use_sim_time"] is True for n in nodes
               if n["executable"] != "ideal_driver")
    env = {a.args[0]: a.args[1] for a in produced if type(a).__name__ == "SetEnvironmentVariable"}
    assert env["ROS_DOMAIN_ID"] == "77"


def test_bad_launch_arguments_are_named():
    with pytest.raises(ValueError, match="use_sim_time: expected true or false"):
        resolve({"use_sim_time": "maybe"}, "config/fleet_demo.yaml")
    with pytest.raises(ValueError, match="robot_count: expected an integer"):
        resolve({"robot_count": "two"}, "config/fleet_demo.yaml")
    with pytest.raises(ValueError, match="unknown launch arguments"):
        resolve({"robots": "2"}, "config/fleet_demo.yaml")


def test_the_users_domain_and_discovery_range_stand_unless_the_config_sets_them(tmp_path):
    """The shipped single-machine configs pin LOCALHOST but no domain: a user's
    ROS_DOMAIN_ID is kept. A config that sets neither keeps the user's discovery range."""
    demo = load_fleet_config(os.path.join(REPO, "config", "fleet_demo.yaml"))
    assert demo.domain_id is None
    user = {"ROS_DOMAIN_ID": "17", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert environment(demo, user) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    bare = tmp_path / "bare.yaml"
    bare.write_text("fleet: {map: warehouse.map}\nrobots: [{name: r1, start: [2, 18]}]\n")
    cfg = load_fleet_config(str(bare))
    assert environment(cfg, user)["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert environment(cfg, {})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"   # the safe default
    hw = load_fleet_config(os.path.join(REPO, "config", "fleet_hardware.yaml"))
    assert environment(hw, user)["ROS_DOMAIN_ID"] == "42"      # set by the config: it wins


def test_the_restart_policy_becomes_respawn_in_launch_files(fake_launch, tmp_path):
    _, produced = _run_launch_file("fleet.launch.py")
    nodes = [a.kwargs for a in produced if type(a).__name__ == "Node"]
    assert nodes and all(n["respawn"] is True and n["respawn_delay"] > 0 for n in nodes)
    never = tmp_path / "never.yaml"
    never.write_text("fleet: {map: warehouse.map, restart: never}\n"
                     "robots: [{name: r1, start: [2, 18]}]\n")
    assert not any(s.respawn for s in fleet_nodes(str(never)))


def test_a_namespace_puts_the_whole_fleet_and_its_clock_under_it(fake_launch, tmp_path):
    """fleet-coord launch --namespace / namespace:=: every process's nodes and names under
    /<ns> (fleet_coord.namespace), robots' nodes under /<ns>/<robot>, /clock remapped."""
    specs = fleet_nodes("config/fleet_hardware.yaml", namespace="site_a")
    by_exe = {s.executable: s for s in specs}
    assert all(s.fleet_namespace == "/site_a" for s in specs)
    assert all(s.remappings == [("/clock", "/site_a/clock")] for s in specs)
    assert by_exe["traffic"].namespace == "site_a"
    bridge = next(s for s in specs if s.executable == "serial_bridge")
    assert bridge.namespace == "site_a/amr_1"
    assert list(params_yaml(bridge)) == ["/site_a/amr_1/serial_bridge"]
    assert ros_arguments(bridge, "/tmp/p.yaml")[:7] == [
        "--ros-args", "-r", "__node:=serial_bridge", "-r", "__ns:=/site_a/amr_1",
        "-r", "/clock:=/site_a/clock"]
    agents = [s for s in specs if s.executable == "robot_agent"]
    assert agents[0].arguments == ["--robots", "amr_1", "--namespace", "/site_a"]
    assert agents[0].namespace == ""      # its nodes are /site_a/<robot>/robot_agent
    # no namespace: names as they always were
    plain = fleet_nodes("config/fleet_hardware.yaml")
    assert all(s.fleet_namespace == "" and not s.remappings for s in plain)
    # the launch files' namespace:= reaches the node set
    fake_launch.update(namespace="site_b")
    _, produced = _run_launch_file("fleet.launch.py")
    nodes = [a.kwargs for a in produced if type(a).__name__ in ("Node", "LifecycleNode")]
    traffic = next(n for n in nodes if n["executable"] == "traffic")
    assert traffic["namespace"] == "site_b"
    assert all(n["remappings"] == [("/clock", "/site_b/clock")] for n in nodes)
    # the config's fleet.namespace, and a bad one named
    cfg = tmp_path / "ns.yaml"
    cfg.write_text("fleet: {map: warehouse.map, namespace: site_c}\n"
                   "robots: [{name: r1, start: [2, 18]}]\n")
    assert fleet_nodes(str(cfg))[0].namespace == "site_c"
    assert fleet_nodes(str(cfg), namespace="")[0].namespace == ""   # the launch argument wins
    cfg.write_text("fleet: {map: warehouse.map, namespace: 'site c'}\n"
                   "robots: [{name: r1, start: [2, 18]}]\n")
    from fleet_coord.fleet_config import ConfigError
    with pytest.raises(ConfigError, match="'fleet.namespace'.*'site c'"):
        load_fleet_config(str(cfg))
    with pytest.raises(ValueError, match="namespace 'x y'"):
        fleet_nodes("config/fleet_hardware.yaml", namespace="x y")
