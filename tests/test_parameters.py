"""fleet_coord.parameters: the table of every node's parameters (type and bounds) matches
what the nodes declare, their defaults lie inside it, and values outside it are refused
naming the parameter."""
import math

import pytest
from rclpy.parameter import Parameter

from fleet_coord import parameters
from fleet_coord.parameters import ParameterError, check_values, problem
from rosutil import ros_context


def _nodes(ctx, tmp_path):
    """One node of each section, with the parameters it needs to start."""
    from fleet_coord_bridge.bridge_node import SerialBridge
    from fleet_coord.dispatcher import Dispatcher
    from fleet_coord.fleet_monitor import FleetMonitor
    from fleet_coord.ideal_driver import IdealDriver
    from fleet_coord.robot_agent import RobotAgent
    from fleet_coord.traffic import TrafficNode
    from fleet_coord.vda5050.master import Vda5050Master
    from fleet_coord_sim.sim_node import SimNode
    from fleet_coord.recorder import Recorder
    from fleet_coord.web.operator_node import OperatorNode
    return {
        "operator_view": OperatorNode(context=ctx, parameter_overrides=[
            Parameter("port", value=0)]),
        "recorder": Recorder(context=ctx, parameter_overrides=[
            Parameter("output", value=str(tmp_path / "r.mcap"))]),
        "traffic": TrafficNode(context=ctx),
        "dispatcher": Dispatcher(context=ctx, parameter_overrides=[
            Parameter("ledger", value=str(tmp_path / "ledger.db"))]),
        "fleet_monitor": FleetMonitor(context=ctx),
        "robot_agent": RobotAgent("r1", context=ctx),
        "ideal_driver": IdealDriver(context=ctx),
        "sim": SimNode(context=ctx),
        "serial_bridge": SerialBridge(context=ctx, parameter_overrides=[
            Parameter("robot", value="r1"), Parameter("port", value="loop://")]),
        "vda5050_master": Vda5050Master(context=ctx, parameter_overrides=[  # no broker needed
            Parameter("manufacturer", value="acme")]),
    }


def test_every_declared_parameter_has_bounds_and_every_default_is_inside_them(tmp_path):
    with ros_context() as (ctx, _ex):
        nodes = _nodes(ctx, tmp_path)
        assert set(nodes) == set(parameters.SCHEMA)
        for section, node in nodes.items():
            declared = set(node.get_parameters_by_prefix(""))
            known = set(parameters.bounds(section))
            assert declared <= known, (section, sorted(declared - known))
            ghosts = set(parameters.SCHEMA[section]) - declared
            assert not ghosts, (section, sorted(ghosts))
            parameters.check_node(node, section)   # the defaults pass
            node.destroy_node()


@pytest.mark.parametrize("section, name, value, words", [
    ("traffic", "lost_after", 1e300, ["<= 600 s"]),
    ("traffic", "lost_after", -1.0, [">= 0.05"]),
    ("traffic", "lost_after", math.nan, ["nan"]),
    ("traffic", "lost_after", math.inf, ["inf"]),
    ("traffic", "lost_after", "2", ["a number"]),
    ("traffic", "lost_after", True, ["a number"]),
    ("dispatcher", "retry_max_rounds", 0, [">= 1"]),
    ("dispatcher", "retry_max_rounds", 2.5, ["an integer"]),
    ("robot_agent", "bid_objective", "fast", ["one of travel, completion"]),
    ("robot_agent", "max_v", 0.0, ["> 0"]),
    ("robot_agent", "robot", "r 1", ["a robot name"]),
    ("ideal_driver", "robots", ["r1", "bad\x00"], ["robot names"]),
    ("ideal_driver", "start_poses", [0.0, math.nan], ["finite numbers"]),
    ("serial_bridge", "cmd_timeout_ms", 1.5, ["an integer"]),
])
def test_values_outside_the_table_are_refused_naming_what_was_expected(section, name, value,
                                                                      words):
    why = problem(section, name, value)
    assert why is not None
    for w in words:
        assert w in why, why
    with pytest.raises(ParameterError, match=f"parameter '{name}' of {section}"):
        check_values(section, {name: value})


def test_inf_means_no_limit_only_where_the_table_says_so():
    assert problem("robot_agent", "capacity_kg", math.inf) is None
    assert problem("robot_agent", "max_v", math.inf) is not None


def test_unknown_names_get_did_you_mean_and_ints_become_floats():
    with pytest.raises(ParameterError, match="did you mean 'lost_after'"):
        check_values("traffic", {"lostafter": 2.0})
    with pytest.raises(ParameterError, match="did you mean 'lost_after'"):
        check_values("traffic", {"lost_afterr": 2.0})
    assert check_values("traffic", {"lost_after": 2}) == {"lost_after": 2.0}
    assert check_values("robot_agent", {"qos_overrides": {"x": 1}})   # ROS's own


def test_a_node_started_outside_its_bounds_refuses_to_start(tmp_path):
    """The node side: values that did not come through a fleet config (a params file,
    -p, a launch file) are checked too; the error is a CannotStart (exit 78, no restart)."""
    from fleet_coord.core.errors import CannotStart
    from fleet_coord.ideal_driver import IdealDriver
    with ros_context() as (ctx, _ex):
        with pytest.raises(CannotStart, match="'cmd_timeout'.*<= 60 s"):
            IdealDriver(context=ctx, parameter_overrides=[Parameter("cmd_timeout", value=1e300)])
