"""fleet_coord.namespace: a fleet's names under its namespace, and what a bad namespace
is told. (Two fleets under namespaces in one domain: tests/test_sim_time.py.)"""
import pytest

from fleet_coord.namespace import FleetNames, names_of, normalize, robot_of


class _Node:
    def __init__(self, ns):
        self.ns = ns

    def get_namespace(self):
        return self.ns


def test_names_go_under_the_namespace_and_come_back_out():
    assert normalize("") == normalize("/") == ""
    assert normalize("warehouse_a") == normalize("/warehouse_a/") == "/warehouse_a"
    assert normalize("site/hall_2") == "/site/hall_2"
    a = FleetNames("warehouse_a")
    assert a("/fleet/cfp") == "/warehouse_a/fleet/cfp"
    assert a("/robot_1/cmd_vel") == "/warehouse_a/robot_1/cmd_vel"
    assert FleetNames()("/fleet/cfp") == "/fleet/cfp"          # no namespace: unchanged
    assert a.bare("/warehouse_a/fleet/state") == "/fleet/state"
    assert a.bare("/warehouse_b/fleet/state") is None          # another fleet's
    assert a.bare("/warehouse_ab/fleet/state") is None
    assert FleetNames().bare("/fleet/state") == "/fleet/state"
    with pytest.raises(ValueError, match="absolute"):
        a("fleet/cfp")


def test_a_nodes_fleet_is_its_namespace_less_its_robot():
    assert FleetNames.of_node(_Node("/a")).namespace == "/a"
    assert FleetNames.of_node(_Node("/a/robot_1"), "robot_1").namespace == "/a"
    assert FleetNames.of_node(_Node("/robot_1"), "robot_1").namespace == ""
    assert FleetNames.of_node(_Node("/"), "robot_1").namespace == ""
    assert FleetNames.of_node(_Node("/a"), "robot_1").namespace == "/a"  # robot set by parameter
    assert robot_of("/a/robot_1") == "robot_1" and robot_of("/") == ""
    node = _Node("/x")
    node.names = FleetNames("b")
    assert names_of(node).namespace == "/b" and names_of(_Node("/x")).namespace == "/x"
    assert names_of(object()).namespace == ""                   # a stand-in without one


@pytest.mark.parametrize("bad", ["a b", "1st", "a//b", "a/-", "fleet.a"])
def test_a_bad_namespace_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="namespace") as e:
        normalize(bad)
    assert repr(bad) in str(e.value)
