"""The vda5050-emulator program on a real Mosquitto: connection with last will, factsheet,
orders driven, instant actions, every message schema-valid."""
from __future__ import annotations

import signal

import pytest

from fleet_coord.vda5050.protocol import Outbox
from vda5050_util import Listener, broker_or_skip, is_connection, is_state, start_emulator, stop


@pytest.fixture
def mqtt_world():
    broker = broker_or_skip()
    listener = Listener(broker)
    procs = []
    yield broker, listener, procs
    for p in procs:
        stop(p, signal.SIGKILL)
    listener.close()
    broker.stop()


def test_emulator_drives_an_order_and_reports_its_connection_over_mosquitto(mqtt_world):
    broker, listener, procs = mqtt_world
    procs.append(start_emulator(broker, "e1", "1,2,0"))
    listener.wait_for(is_connection("e1", "ONLINE"), what="ONLINE")
    _, fs = listener.wait_for(lambda t, m: t.endswith("/e1/factsheet"), what="factsheet")
    assert fs["physicalParameters"]["maximumSpeed"] == 1.0
    master = Outbox("acme", "e1")

    def node(nid, seq, x, rel=True):
        return {"nodeId": nid, "sequenceId": seq, "released": rel,
                "nodePosition": {"x": x, "y": 2.0, "mapId": "map"}, "actions": []}

    def edge(seq, rel=True):
        return {"edgeId": f"e{seq}", "sequenceId": seq, "released": rel, "maximumSpeed": 2.0,
                "actions": []}

    listener.publish("e1", "order", master.message("order", 0.0, {
        "orderId": "o1", "orderUpdateId": 0,
        "nodes": [node("a", 0, 1.0), node("b", 2, 1.5), node("c", 4, 2.0, False)],
        "edges": [edge(1), edge(3, False)]}))
    _, st = listener.wait_for(lambda t, m: is_state("e1", "lastNodeId", "b")(t, m)
                              and not m["driving"], what="state at b")
    assert st["mobileRobotPosition"]["x"] == pytest.approx(1.5)
    assert [n["nodeId"] for n in st["nodeStates"]] == ["c"]      # waits for the horizon
    # the vehicle says so when an order breaks the update rules
    listener.publish("e1", "order", master.message("order", 0.0, {
        "orderId": "o1", "orderUpdateId": 1, "nodes": [node("a", 0, 1.0)], "edges": []}))
    _, st = listener.wait_for(lambda t, m: is_state("e1")(t, m) and m["errors"],
                              what="a state with the error")
    assert st["errors"][0]["errorType"] == "VALIDATION_FAILURE"
    listener.publish("e1", "instantActions", master.message("instantActions", 0.0, {"actions": [
        {"actionId": "p", "actionType": "startPause", "blockingType": "NONE"}]}))
    listener.wait_for(is_state("e1", "paused", True), what="paused")
    # killed: the broker sends its last will; restarted: ONLINE again
    stop(procs[0], signal.SIGKILL)
    listener.wait_for(is_connection("e1", "CONNECTION_BROKEN"), timeout=10, what="last will")
    listener.clear()
    procs.append(start_emulator(broker, "e1", "1,2,0"))
    listener.wait_for(is_connection("e1", "ONLINE"), what="ONLINE after restart")
    assert stop(procs[1]) == 0
    listener.wait_for(is_connection("e1", "OFFLINE"), what="OFFLINE on SIGTERM")
    assert listener.problems == []
