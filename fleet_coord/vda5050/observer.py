"""An independent observer of the VDA 5050 traffic on a broker: every message of one
manufacturer's vehicles, both ways, checked against the official schemas, and the
vehicles' own reports of where they were (for the containment check against the
reservation table). Used by the mixed demo and the tests; it only reads.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt

from fleet_coord.vda5050 import schema
from fleet_coord.vda5050.protocol import INTERFACE, parse_timestamp

__all__ = ["MqttObserver", "vehicle_excursions"]


class MqttObserver:
    """Subscribes to ``<interface>/v3/<manufacturer>/+/#``; keeps (topic, message) in
    arrival order, counts messages per topic name, and lists every schema problem."""

    def __init__(self, host: str, port: int, manufacturer: str,
                 interface: str = INTERFACE) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.problems: list[str] = []
        self.counts: dict[str, int] = {}
        self.injected: set[bytes] = set()     # sent on purpose by a test: not checked
        self._cv = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        pattern = f"{interface}/v3/{manufacturer}/+/#"
        self.client.on_connect = lambda c, *a: c.subscribe(pattern, qos=1)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if bytes(message.payload) in self.injected:
            return
        name = message.topic.rsplit("/", 1)[-1]
        msg: Any
        try:
            msg = json.loads(message.payload)
        except ValueError as e:
            msg = {}
            self.problems.append(f"{message.topic}: not JSON: {e}")
        if not isinstance(msg, dict):
            self.problems.append(f"{message.topic}: not a JSON object")
            msg = {}
        elif name in schema.TOPICS:
            self.problems.extend(f"{message.topic}: {p}" for p in schema.errors(name, msg))
        with self._cv:
            self.messages.append((message.topic, msg))
            self.counts[name] = self.counts.get(name, 0) + 1
            self._cv.notify_all()

    def reports(self, serials: Sequence[str]) -> list[tuple[str, float, float, float]]:
        """(serial, t, x, y) of every position the vehicles reported (state and
        visualization), t from the message's own timestamp."""
        with self._cv:
            msgs = list(self.messages)
        out = []
        for topic, m in msgs:
            serial, name = topic.split("/")[-2:]
            pos = m.get("mobileRobotPosition")
            if serial in serials and name in ("state", "visualization") and pos is not None:
                out.append((serial, parse_timestamp(m["timestamp"]), float(pos["x"]),
                            float(pos["y"])))
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def vehicle_excursions(exclusion: Any, holds_of: Callable[[str], list[tuple[int, float, float]]],
                       reports: Sequence[tuple[str, float, float, float]],
                       tolerance_m: float = 0.1, slack_t: float = 0.05
                       ) -> tuple[list[tuple[str, float, float, float, float]], int]:
    """The reports (serial = robot name) at which a vehicle's footprint sticks out of what
    its robot held at that time by more than `tolerance_m`, and how many were checked (a
    report at a time it held nothing is not: before it parked)."""
    from fleet_coord.core.tracking import containment_error

    out, checked = [], 0
    held = {}
    for serial, t, x, y in reports:
        if serial not in held:
            held[serial] = holds_of(serial)
        holds = held[serial]
        if not any(t0 <= t < t1 for _, t0, t1 in holds):
            continue
        checked += 1
        err = containment_error(exclusion, holds, x, y, t, slack_t=slack_t)
        if err > tolerance_m:
            out.append((serial, round(t, 2), round(x, 3), round(y, 3), err))
    return out, checked
