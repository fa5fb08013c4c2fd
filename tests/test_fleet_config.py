"""Fleet configs load, and every bad one is refused naming the file, line and key."""
import textwrap

import pytest

from fleet_coord.fleet_config import ConfigError, load_fleet_config

GOOD = """\
fleet:
  map: warehouse.map
  backend: ideal
robots:
  - {name: r1, start: [2, 18]}
  - {name: r2, start: [4, 18, 1.57], max_speed: 0.5}
nodes:
  traffic: {lost_after: 1.0}
"""


def write(tmp_path, text):
    p = tmp_path / "fleet.yaml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_shipped_configs_load():
    demo = load_fleet_config("config/fleet_demo.yaml")
    assert len(demo.robots) == 5 and demo.discovery_range == "LOCALHOST"
    hw = load_fleet_config("config/fleet_hardware.yaml")
    assert hw.discovery_range == "SUBNET"
    assert [r.backend for r in hw.robots] == ["serial", "serial"]
    assert hw.robots[0].port == "/dev/ttyACM0"
    assert hw.robots[0].start[:2] == (4.0, -2.0)   # park_1


def test_good_config_with_bundled_map_and_defaults(tmp_path):
    cfg = load_fleet_config(write(tmp_path, GOOD))
    assert cfg.map.endswith("config/maps/warehouse.map")
    assert cfg.robots[1].start == (4.0, 18.0, 1.57) and cfg.robots[1].max_speed == 0.5
    assert cfg.nodes == {"traffic": {"lost_after": 1.0}}
    assert cfg.agents_per_process == 1 and cfg.restart == "on-failure"


@pytest.mark.parametrize("bad, line, words", [
    (GOOD.replace("backend: ideal", "backend: gazebo"), 3, ["fleet.backend", "ideal, sim, serial"]),
    (GOOD.replace("map: warehouse.map", "map: nowhere.map"), 2, ["fleet.map", "nowhere.map"]),
    (GOOD.replace("{name: r2,", "{name: r1,"), 6, ["duplicate robot name 'r1'"]),
    (GOOD.replace("[4, 18, 1.57]", "[2, 18]"), 6, ["starts where r1 starts"]),
    (GOOD.replace("[4, 18, 1.57]", "[0, 0]"), 6, ["not on the roadmap"]),
    (GOOD.replace("[4, 18, 1.57]", "[4, x]"), 6, ["robots[1].start", "number"]),
    (GOOD.replace("max_speed: 0.5", "max_speed: -1"), 6, ["max_speed", "> 0"]),
    (GOOD.replace("max_speed: 0.5", "max_sped: 1"), 6, ["unknown key 'max_sped'"]),
    (GOOD.replace("{name: r2, start: [4, 18, 1.57], max_speed: 0.5}",
                  "{name: r2, start: [4, 18], backend: serial}"), 6, ["needs 'port'"]),
    (GOOD.replace("name: r2", "name: 2nd-robot"), 6, ["not a valid ROS name"]),
    (GOOD.replace("traffic:", "trafic:"), 8, ["unknown key 'trafic'", "did you mean 'traffic'"]),
    # every nodes.* value: its type and bounds, its name ("did you mean"), who sets it
    (GOOD.replace("lost_after: 1.0", "lost_after: 1.0e+300"), 8,
     ["'nodes.traffic.lost_after'", "<= 600 s", "1e+300"]),
    (GOOD.replace("lost_after: 1.0", "lost_after: -1"), 8, ["'nodes.traffic.lost_after'", ">= 0.05"]),
    (GOOD.replace("lost_after: 1.0", "lost_after: .nan"), 8, ["'nodes.traffic.lost_after'", "nan"]),
    (GOOD.replace("lost_after: 1.0", "lost_after: soon"), 8, ["'nodes.traffic.lost_after'", "number"]),
    (GOOD.replace("lost_after: 1.0", "lostafter: 1.0"), 8,
     ["'nodes.traffic.lostafter'", "unknown parameter", "did you mean 'lost_after'"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "dispatcher: {retry_max_rounds: 2.5}"), 8,
     ["'nodes.dispatcher.retry_max_rounds'", "an integer"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "robot_agent: {bid_objective: fastest}"), 8,
     ["'nodes.robot_agent.bid_objective'", "one of travel, completion"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "robot_agent: {max_v: 2.0}"), 8,
     ["'nodes.robot_agent.max_v'", "each robot's max_speed", "set it there"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "ideal_driver: {max_w: 2.0}"), 8,
     ["'nodes.ideal_driver.max_w'", "max_angular_speed"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "dispatcher: {ledger: x.db}"), 8,
     ["'nodes.dispatcher.ledger'", "fleet.ledger"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "traffic: {map: other.map}"), 8,
     ["'nodes.traffic.map'", "fleet.map"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "robot_agent: {max_acc: 0}"), 8,
     ["'nodes.robot_agent.max_acc'", "> 0"]),
    (GOOD.replace("traffic:", "[a, b]:"), 8, ["expected a key name in 'nodes'", "got a list"]),
    # a loss timeout needs >= 3 states per window
    (GOOD + "  robot_agent: {state_rate: 2.0}\n",
     8, ["'nodes.traffic.lost_after' 1 s leaves fewer than 3",
         "'nodes.robot_agent.state_rate' 2 Hz", ">= 3 Hz", ">= 1.5 s"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "fleet_monitor: {lost_after: 0.2}"), 8,
     ["'nodes.fleet_monitor.lost_after' 0.2 s"]),
    (GOOD.replace("traffic: {lost_after: 1.0}", "robot_agent: {state_rate: 1.0}"), 8,
     ["'nodes.traffic.lost_after' 1.5 s", "'nodes.robot_agent.state_rate' 1 Hz"]),
    # ... and an agent's driver_timeout >= 3 odometry messages of a parked robot
    (GOOD.replace("traffic: {lost_after: 1.0}", "robot_agent: {driver_timeout: 1.0}"), 8,
     ["'nodes.robot_agent.driver_timeout' 1 s", "'nodes.ideal_driver.idle_rate_hz' 2 Hz"]),
    (GOOD.split("robots:")[0] + "robots: 3\n", 4, ["'robots' as a list"]),
    (GOOD.replace("  backend: ideal\n", "  backend: [ideal\n"), None, ["invalid YAML"]),
    ("", 1, ["empty file"]),
])
def test_bad_configs_name_file_line_and_key(tmp_path, bad, line, words):
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError) as e:
        load_fleet_config(path)
    msg = str(e.value)
    assert msg.startswith(path)
    if line is not None:
        assert e.value.line == line, msg
    for w in words:
        assert w in msg, msg


def test_vda5050_robots_need_a_manufacturer_wall_time_and_get_a_master(tmp_path):
    from fleet_coord.fleet_config import ConfigError, load_fleet_config
    from fleet_coord.node_set import fleet_nodes

    def write(robot_extra, fleet_extra=""):
        p = tmp_path / "f.yaml"
        p.write_text("fleet:\n  map: warehouse_small.yaml\n" + fleet_extra +
                     "robots:\n  - {name: a, start_station: park_1}\n"
                     "  - {name: v, start_station: park_2, backend: vda5050" + robot_extra + "}\n")
        return str(p)

    with pytest.raises(ConfigError, match="needs 'manufacturer'"):
        load_fleet_config(write(""))
    with pytest.raises(ConfigError, match="may only use"):
        load_fleet_config(write(", manufacturer: 'ac/me'"))
    with pytest.raises(ConfigError, match="broker"):
        load_fleet_config(write(", manufacturer: acme, broker: 'localhost:x'"))
    with pytest.raises(ConfigError, match="wall time"):
        load_fleet_config(write(", manufacturer: acme", "  use_sim_time: true\n"))
    # authenticated: the master control is the vehicle's driver, bridge_v (docs/security.md)
    path = write(", manufacturer: acme")
    with open(path, "a") as f:
        f.write("auth: {mode: enforce}\n")
    from fleet_coord.keys import fleet_identities, node_credentials
    cfg = load_fleet_config(path)
    assert "bridge_v" in {i.name for i in fleet_identities(cfg)}
    master = [s for s in fleet_nodes(cfg) if s.executable == "vda5050_master"]
    assert node_credentials(master[0]) == (["bridge_v"], ["v"])
    assert master[0].parameters["auth_mode"] == "enforce"
    cfg = load_fleet_config(write(", manufacturer: acme, broker: '127.0.0.1:1999'"))
    v = cfg.robot("v")
    assert (v.manufacturer, v.serial_number, v.broker) == ("acme", "v", "127.0.0.1:1999")
    specs = fleet_nodes(cfg)
    master = [s for s in specs if s.executable == "vda5050_master"]
    assert [(m.namespace, m.parameters["manufacturer"]) for m in master] == [("v", "acme")]
    agents = [s for s in specs if s.executable == "robot_agent"]
    assert [(s.robots, s.parameters.get("drive", "track")) for s in agents] == \
        [(["a"], "track"), (["v"], "follow")]


@pytest.mark.parametrize("nodes", [
    "traffic: {lost_after: 1.0}\n  robot_agent: {idle_state_rate: 1.0}",
    "traffic: {lost_after: 0.3}",
    "robot_agent: {driver_timeout: 1.0}\n  ideal_driver: {idle_rate_hz: 0.0}",
    "robot_agent: {driver_timeout: 2.0}",
])
def test_loss_timeouts_that_leave_a_parked_robot_enough_messages_load(tmp_path, nodes):
    load_fleet_config(write(tmp_path, GOOD.replace("traffic: {lost_after: 1.0}", nodes)))


def test_an_int_for_a_float_parameter_is_made_a_float(tmp_path):
    """rclpy keeps a parameter's declared type: `lost_after: 2` (an int) for a float
    parameter would stop the node at start."""
    cfg = load_fleet_config(write(tmp_path, GOOD.replace("lost_after: 1.0", "lost_after: 2")))
    assert cfg.nodes["traffic"]["lost_after"] == 2.0
    assert isinstance(cfg.nodes["traffic"]["lost_after"], float)


def test_a_map_with_no_free_cell_is_a_clear_error(tmp_path):
    (tmp_path / "wall.map").write_text("type octile\nheight 3\nwidth 4\nmap\n@@@@\n@@@@\n@@@@\n")
    path = write(tmp_path, "fleet: {map: wall.map}\nrobots:\n  - {name: r0, start: [1, 1]}\n")
    with pytest.raises(ConfigError, match="'fleet.map'.*no free cell"):
        load_fleet_config(path)
