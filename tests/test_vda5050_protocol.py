"""VDA 5050 schemas, topics, headers and the checks on received messages
(fleet_coord.vda5050.schema / protocol). Pure."""
from __future__ import annotations

import json

import pytest

from fleet_coord.vda5050 import schema
from fleet_coord.vda5050.protocol import (Inbox, Outbox, Rejected, parse_timestamp, timestamp,
                                          topic)


def test_every_official_schema_loads_and_is_a_valid_json_schema():
    for name in schema.TOPICS:
        s = schema.schema(name)
        assert s["title"] and "headerId" in s["required"]
        schema.errors(name, {})   # builds (and checks) the validator


def test_trailing_commas_are_dropped_only_outside_strings():
    text = '{"a": [1, 2,], "b": "x, }", "c": {"d": 1,\n }, }'
    assert json.loads(schema._strip_trailing_commas(text)) == \
        {"a": [1, 2], "b": "x, }", "c": {"d": 1}}


def test_schema_errors_name_the_field_and_the_reason():
    problems = schema.errors("connection", {"headerId": "1", "timestamp": "today",
                                            "version": "3.0.0", "manufacturer": "m",
                                            "serialNumber": "s", "connectionState": "UP"})
    assert any(p.startswith("$.headerId:") for p in problems)
    assert any(p.startswith("$.timestamp:") and "date-time" in p for p in problems)
    assert any(p.startswith("$.connectionState:") for p in problems)
    with pytest.raises(schema.SchemaError, match="connection message does not follow"):
        schema.check("connection", {})


def test_topic_layout_and_id_characters():
    assert topic("vda5050", "acme", "AGV-1", "order") == "vda5050/v3/acme/AGV-1/order"
    with pytest.raises(ValueError, match="serialNumber"):
        topic("vda5050", "acme", "AGV/1", "order")
    with pytest.raises(ValueError, match="unknown VDA 5050 topic"):
        topic("vda5050", "acme", "AGV-1", "orders")


def test_timestamps_round_trip_in_utc_milliseconds():
    t = 1_790_000_000.1234
    text = timestamp(t)
    assert text.endswith("Z") and len(text) == len("2026-09-21T12:53:20.123Z")
    assert parse_timestamp(text) == pytest.approx(t, abs=1e-3)


def connection(out, now, state="ONLINE"):
    return json.dumps(out.message("connection", now, {"connectionState": state}))


def test_inbox_drops_invalid_wrong_version_foreign_and_stale_messages():
    out, inbox = Outbox("acme", "v1"), Inbox("acme", "v1")
    first = connection(out, 1.0)
    assert inbox.accept("connection", first)["connectionState"] == "ONLINE"
    with pytest.raises(Rejected, match="not JSON"):
        inbox.accept("connection", b"{oops")
    with pytest.raises(Rejected, match="schema"):
        inbox.accept("connection", json.dumps({"headerId": 1}))
    wrong = json.loads(connection(out, 2.0))
    wrong["version"] = "2.1.0"
    with pytest.raises(Rejected, match="version '2.1.0'"):
        inbox.accept("connection", json.dumps(wrong))
    with pytest.raises(Rejected, match="expected acme/v1"):
        inbox.accept("connection", connection(Outbox("acme", "v2"), 2.0))
    # state: headerIds must grow; the connection topic is exempt (its last will is old)
    st = {"headerId": 5, "timestamp": timestamp(3.0), "version": "3.0.0", "manufacturer": "acme",
          "serialNumber": "v1", "orderId": "", "orderUpdateId": 0, "lastNodeId": "",
          "lastNodeSequenceId": 0, "nodeStates": [], "edgeStates": [], "driving": False,
          "actionStates": [], "instantActionStates": [],
          "powerSupply": {"stateOfCharge": 100.0, "charging": False},
          "operatingMode": "AUTOMATIC", "errors": [],
          "safetyState": {"activeEmergencyStop": "NONE", "fieldViolation": False}}
    assert inbox.accept("state", json.dumps(st))["headerId"] == 5
    with pytest.raises(Rejected, match="stale headerId 5"):
        inbox.accept("state", json.dumps(st))
    st["headerId"] = 3
    with pytest.raises(Rejected, match="stale headerId 3"):
        inbox.accept("state", json.dumps(st))
    assert inbox.accept("connection", first)["headerId"] == 0   # old last will: used
    # a restarted vehicle says ONLINE and counts from 0 again
    inbox.accept("connection", connection(Outbox("acme", "v1"), 4.0))
    st["headerId"] = 0
    assert inbox.accept("state", json.dumps(st))["headerId"] == 0


def test_outbox_counts_header_ids_per_topic_and_refuses_to_send_an_invalid_message():
    out = Outbox("acme", "v1")
    assert [out.header("order", 0.0)["headerId"] for _ in range(3)] == [0, 1, 2]
    assert out.header("instantActions", 0.0)["headerId"] == 0
    with pytest.raises(schema.SchemaError):
        out.message("instantActions", 0.0, {"actions": [{"actionType": "startPause"}]})


def test_errata_validate_by_the_text_where_the_schema_contradicts_it():
    item = schema.official("factsheet")["properties"]["protocolFeatures"]["properties"][
        "mobileRobotActions"]["items"]["properties"]
    assert item["pauseAllowed"]["type"] == "string"      # the published schema
    fixed = schema.schema("factsheet")["properties"]["protocolFeatures"]["properties"][
        "mobileRobotActions"]["items"]["properties"]
    assert fixed["pauseAllowed"]["type"] == "boolean" and fixed["cancelAllowed"]["type"] == "boolean"
    assert len(schema.ERRATA) == 2
