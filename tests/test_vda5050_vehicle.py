"""The emulated VDA 5050 vehicle (fleet_coord.vda5050.vehicle): the order update rules
of the specification (6.1.2, 6.1.4), driving the base, instant actions. Pure."""
from __future__ import annotations

import copy

import pytest

from fleet_coord.vda5050 import schema
from fleet_coord.vda5050.protocol import Outbox
from fleet_coord.vda5050.vehicle import Vehicle, VehicleSpec

OUT = Outbox("acme", "v1")


def node(nid, seq, x, y, released=True):
    return {"nodeId": nid, "sequenceId": seq, "released": released,
            "nodePosition": {"x": x, "y": y, "mapId": "map"}, "actions": []}


def edge(eid, seq, released=True, speed=1.0):
    return {"edgeId": eid, "sequenceId": seq, "released": released, "maximumSpeed": speed,
            "actions": []}


def order(oid, upd, nodes, edges):
    return OUT.message("order", 100.0, {"orderId": oid, "orderUpdateId": upd,
                                        "nodes": nodes, "edges": edges})


def line(n_released, n_total, seq0=0, x0=0.0, oid="o1", upd=0):
    """Nodes a0.. along +x, 1 m apart, the first `n_released` released."""
    k0 = seq0 // 2
    nodes = [node(f"a{k0 + k}", seq0 + 2 * k, x0 + k, 0.0, k < n_released) for k in range(n_total)]
    edges = [edge(f"e{k0 + k}", seq0 + 2 * k + 1, k + 1 < n_released) for k in range(n_total - 1)]
    return order(oid, upd, nodes, edges)


def vehicle(**kw):
    return Vehicle(VehicleSpec("acme", "v1", **kw), 0.0, 0.0)


def run(v, t0, t1, dt=0.02):
    t = t0
    while t < t1:
        t += dt
        v.step(t)
    return t


def error_types(v):
    return [e["errorType"] for e in v.state_body()["errors"]]


def test_drives_the_base_and_stops_at_the_decision_point():
    v = vehicle()
    assert v.on_order(line(3, 5))
    state = v.state_body()
    assert (state["lastNodeId"], state["lastNodeSequenceId"]) == ("a0", 0)
    assert [n["nodeId"] for n in state["nodeStates"]] == ["a1", "a2", "a3", "a4"]
    run(v, 0.0, 10.0)
    assert (v.x, v.y) == (2.0, 0.0) and not v.driving
    assert v.state_body()["lastNodeId"] == "a2"
    assert [n["nodeId"] for n in v.state_body()["nodeStates"]] == ["a3", "a4"]
    assert not v.idle    # waits for the horizon's release


def test_update_extends_the_base_from_the_decision_point():
    v = vehicle()
    v.on_order(line(2, 4))
    run(v, 0.0, 5.0)
    upd = line(3, 3, seq0=2, x0=1.0, upd=1)     # a1 (decision point), a2, a3 released
    assert v.on_order(upd)
    run(v, 5.0, 10.0)
    assert v.x == 3.0 and v.idle and v.state_body()["orderUpdateId"] == 1


def test_speed_is_the_edges_maximum_times_the_speed_factor():
    v = vehicle(speed_factor=0.5)
    v.on_order(order("o1", 0, [node("a0", 0, 0, 0), node("a1", 2, 1, 0)],
                     [edge("e0", 1, speed=0.4)]))
    run(v, 0.0, 2.0)
    assert v.x == pytest.approx(0.4, abs=0.03)
    assert v.state_body()["velocity"]["vx"] == pytest.approx(0.2)


@pytest.mark.parametrize("mutate,error", [
    (lambda o: o["nodes"].pop(), "VALIDATION_FAILURE"),                      # edges != nodes-1
    (lambda o: o["nodes"][1].update(sequenceId=6), "VALIDATION_FAILURE"),    # not continuous
    (lambda o: o["nodes"][0].update(released=False), "VALIDATION_FAILURE"),
    (lambda o: (o["nodes"][1].update(released=False)), "VALIDATION_FAILURE"),  # released after unreleased
    (lambda o: o.pop("orderId"), "VALIDATION_FAILURE"),                       # schema
    (lambda o: o.update(version="2.0.0"), "VALIDATION_FAILURE"),
    (lambda o: o["nodes"][1]["nodePosition"].update(mapId="floor2"), "UNKNOWN_MAP_ID"),
    (lambda o: o["nodes"][0]["nodePosition"].update(x=5.0), "START_NODE_OUT_OF_RANGE"),
    (lambda o: o["nodes"][1]["actions"].append(
        {"actionId": "p1", "actionType": "pick", "blockingType": "HARD"}), "INVALID_ORDER_ACTION"),
    (lambda o: o.update(orderUpdateId=3), "VALIDATION_FAILURE"),              # new order, not 0
])
def test_a_malformed_or_impossible_order_is_rejected_with_the_specified_error(mutate, error):
    v = vehicle()
    bad = line(3, 3)
    mutate(bad)
    assert not v.on_order(bad)
    assert error_types(v) == [error] and v.idle and v.order_id == ""
    assert schema.errors("state", OUT.message("state", 1.0, v.state_body())) == []
    assert v.on_order(line(3, 3))          # the warning lasts until an order is accepted
    assert error_types(v) == []


def test_update_rules_outdated_same_other_order_and_not_a_continuation():
    v = vehicle()
    v.on_order(line(2, 4))
    v.on_order(line(3, 3, seq0=2, x0=1.0, upd=1))
    assert v.order_update_id == 1
    assert not v.on_order(line(2, 4))                                # upd 0 < 1
    assert error_types(v) == ["OUTDATED_ORDER_UPDATE"]
    assert not v.on_order(line(3, 3, seq0=2, x0=1.0, upd=1))         # same update again
    assert error_types(v) == ["OUTDATED_ORDER_UPDATE"]               # ignored, no new error
    other = line(4, 4, seq0=2, x0=1.0, upd=1)
    assert not v.on_order(other)                                      # same id, other content
    assert error_types(v) == ["SAME_ORDER_UPDATE_ID"]
    assert not v.on_order(line(2, 2, seq0=2, x0=1.0, upd=2))          # not the decision point
    assert error_types(v) == ["VALIDATION_FAILURE"]
    assert not v.on_order(line(2, 2, oid="o2"))                       # another order while busy
    assert error_types(v) == ["OTHER_ORDER_ACTIVE"]


def test_cancel_stops_at_once_clears_the_order_and_refuses_its_updates():
    v = vehicle()
    v.on_order(line(3, 3))
    run(v, 0.0, 0.5)
    x = v.x
    v.on_instant_actions(OUT.message("instantActions", 1.0, {"actions": [
        {"actionId": "c1", "actionType": "cancelOrder", "blockingType": "NONE"}]}))
    run(v, 0.5, 2.0)
    assert v.x == x and v.idle and not v.driving
    assert v.state_body()["instantActionStates"][-1]["actionStatus"] == "FINISHED"
    assert (v.order_id, v.order_update_id) == ("o1", 0)               # kept (6.1.3)
    assert not v.on_order(line(3, 3, seq0=0, upd=1))
    assert error_types(v) == ["ORDER_UPDATE_FOLLOWING_CANCEL"]
    # cancelling with nothing to cancel fails with NO_ORDER_TO_CANCEL
    v.on_instant_actions(OUT.message("instantActions", 2.0, {"actions": [
        {"actionId": "c2", "actionType": "cancelOrder", "blockingType": "NONE"}]}))
    assert v.state_body()["instantActionStates"][-1]["actionStatus"] == "FAILED"
    assert "NO_ORDER_TO_CANCEL" in error_types(v)


def test_pause_and_resume_and_unknown_actions():
    v = vehicle()
    v.on_order(line(3, 3))

    def acts(*kinds):
        return OUT.message("instantActions", 1.0, {"actions": [
            {"actionId": f"i{k}", "actionType": kind, "blockingType": "NONE"}
            for k, kind in enumerate(kinds)]})

    v.on_instant_actions(acts("startPause"))
    run(v, 0.0, 1.0)
    assert v.x == 0.0 and v.state_body()["paused"]
    v.on_instant_actions(acts("stopPause", "liftForks"))
    run(v, 1.0, 2.0)
    assert v.x > 0.5
    states = v.state_body()["instantActionStates"]
    assert [s["actionStatus"] for s in states][-2:] == ["FINISHED", "FAILED"]
    assert "INVALID_INSTANT_ACTION" in error_types(v)
    v.on_instant_actions(acts("clearInstantActions"))
    assert [s["actionType"] for s in v.state_body()["instantActionStates"]] == ["clearInstantActions"]


def test_every_message_it_builds_is_schema_valid():
    v = vehicle()
    v.on_order(line(2, 4))
    run(v, 0.0, 0.6)
    for name, body in (("state", v.state_body()), ("factsheet", v.factsheet_body()),
                       ("visualization", v.visualization_body(0))):
        assert schema.errors(name, OUT.message(name, 1.0, copy.deepcopy(body))) == []
