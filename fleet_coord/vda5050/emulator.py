"""``vda5050-emulator``: one emulated VDA 5050 3.0 vehicle on an MQTT broker.

The vehicle (``vehicle.py``) behind a paho-mqtt client (MQTT 3.1.1):

- connects with the last will ``connection`` = ``CONNECTION_BROKEN`` (QoS 1, retained),
  then publishes ``connection`` = ``ONLINE`` (retained), its ``factsheet`` and a
  ``state``; on SIGINT / SIGTERM it publishes ``OFFLINE`` and disconnects (6.5);
- subscribes ``order`` and ``instantActions`` (QoS 0, 4.1);
- publishes ``state`` on every event and at least every ``--state-interval`` s (the spec
  asks for at most 30 s), ``visualization`` (position, velocity) every
  ``--visualization-interval`` s;
- ``--speed-factor F`` drives F times the speed it is allowed (F < 1: slower than the
  fleet plans with).

Everything it sends is checked against the official schemas before it goes out.
Time: the wall clock (``time.time``), as a real vehicle's UTC timestamps.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from fleet_coord.vda5050.protocol import (INTERFACE, Inbox, Outbox, Rejected, check_id,
                                          topic)
from fleet_coord.vda5050.vehicle import Vehicle, VehicleSpec

log = logging.getLogger("vda5050_emulator")

STEP_PERIOD_S = 0.02


def parse_broker(text: str) -> tuple[str, int]:
    """``host:port`` (port default 1883)."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"broker must be host:port, got {text!r}") from None
    if not host or not 0 < number < 65536:
        raise ValueError(f"broker must be host:port with a port 1..65535, got {text!r}")
    return host, number


class Emulator:
    """The MQTT side of one vehicle; `run` blocks until `stop`."""

    def __init__(self, vehicle: Vehicle, host: str, port: int, interface: str = INTERFACE,
                 state_interval: float = 1.0, visualization_interval: float = 0.1,
                 keepalive: int = 2) -> None:
        if not 0 < state_interval <= 30:
            raise ValueError(f"state_interval must be in (0, 30] s (VDA 5050 6.6), got {state_interval}")
        if not visualization_interval > 0:
            raise ValueError(f"visualization_interval must be > 0 s, got {visualization_interval}")
        self.vehicle = vehicle
        spec = vehicle.spec
        self.topics = {name: topic(interface, spec.manufacturer, spec.serial_number, name)
                       for name in ("order", "instantActions", "state", "connection",
                                    "factsheet", "visualization")}
        self.out = Outbox(spec.manufacturer, spec.serial_number)
        self.inbox = Inbox(spec.manufacturer, spec.serial_number)
        self.state_interval = state_interval
        self.visualization_interval = visualization_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"vda5050-{spec.manufacturer}-{spec.serial_number}",
                                  protocol=mqtt.MQTTv311)
        will = self.out.message("connection", time.time(), {"connectionState": "CONNECTION_BROKEN"})
        self.client.will_set(self.topics["connection"], json.dumps(will), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 2.0)
        self.host, self.port, self.keepalive = host, port, keepalive

    # -- MQTT callbacks (paho's network thread) -------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        client.subscribe([(self.topics["order"], 0), (self.topics["instantActions"], 0)])
        self._publish("connection", {"connectionState": "ONLINE"}, qos=1, retain=True)
        with self._lock:
            self._publish("factsheet", self.vehicle.factsheet_body())
            self.vehicle.changed = True
        log.info("online at %s:%d as %s", self.host, self.port, self.topics["state"][:-6])

    def _on_message(self, client, userdata, message) -> None:
        name = message.topic.rsplit("/", 1)[-1]
        with self._lock:
            if name == "order":
                self._on_order(message.payload)
            elif name == "instantActions":
                try:
                    msg = self.inbox.accept("instantActions", message.payload)
                except Rejected as e:
                    log.warning("dropped: %s", e)
                    return
                self.vehicle.on_instant_actions(msg)

    def _on_order(self, payload: bytes) -> None:
        try:
            msg: Any = json.loads(payload)
        except ValueError:
            msg = None
        # a malformed order is reported (VALIDATION_FAILURE, 6.1.4.1), not just dropped
        if self.vehicle.on_order(msg if isinstance(msg, dict) else {}):
            log.info("order %s/%s taken", msg["orderId"], msg["orderUpdateId"])
        elif self.vehicle.errors:
            log.warning("order rejected: %s", self.vehicle.errors[-1]["errorDescription"])

    # -- publishing -----------------------------------------------------------------------

    def _publish(self, name: str, body: dict[str, Any], qos: int = 0, retain: bool = False) -> int:
        """Publish `body` on `name` behind a fresh header; returns its headerId."""
        msg = self.out.message(name, time.time(), body)
        self.client.publish(self.topics[name], json.dumps(msg), qos=qos, retain=retain)
        return int(msg["headerId"])

    def run(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        last_state = last_vis = 0.0
        state_id = -1
        try:
            while not self._stop.is_set():
                now = time.time()
                with self._lock:
                    v = self.vehicle
                    v.step(now)
                    if self.client.is_connected():
                        if v.factsheet_requested:
                            v.factsheet_requested = False
                            self._publish("factsheet", v.factsheet_body())
                        if v.changed or now - last_state >= self.state_interval:
                            v.changed = False
                            state_id = self._publish("state", v.state_body())
                            last_state = now
                        if now - last_vis >= self.visualization_interval and state_id >= 0:
                            self._publish("visualization", v.visualization_body(state_id))
                            last_vis = now
                self._stop.wait(STEP_PERIOD_S)
        finally:
            if self.client.is_connected():
                info = self.client.publish(
                    self.topics["connection"],
                    json.dumps(self.out.message("connection", time.time(),
                                                {"connectionState": "OFFLINE"})),
                    qos=1, retain=True)
                info.wait_for_publish(timeout=2.0)
            self.client.disconnect()
            self.client.loop_stop()

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="vda5050-emulator",
        description="An emulated VDA 5050 3.0 vehicle: drives the base of its orders, "
                    "reports state, connection (with last will) and factsheet over MQTT.")
    p.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker host:port")
    p.add_argument("--interface", default=INTERFACE, help="topic interfaceName (default %(default)s)")
    p.add_argument("--manufacturer", required=True)
    p.add_argument("--serial-number", required=True)
    p.add_argument("--start", required=True, metavar="X,Y[,THETA]",
                   help="start pose on the map (m, m, rad)")
    p.add_argument("--map-id", default="map")
    p.add_argument("--max-speed", type=float, default=1.0, help="m/s (factsheet)")
    p.add_argument("--max-angular-speed", type=float, default=2.0, help="rad/s (factsheet)")
    p.add_argument("--max-acceleration", type=float, default=2.0,
                   help="m/s^2 (factsheet: what the fleet plans with; the emulated vehicle "
                        "changes speed at once)")
    p.add_argument("--radius", type=float, default=0.15, help="outline radius, m (factsheet)")
    p.add_argument("--speed-factor", type=float, default=1.0,
                   help="drive this share of the allowed speed (< 1: slower than planned)")
    p.add_argument("--state-interval", type=float, default=1.0,
                   help="s between states without an event (at most 30)")
    p.add_argument("--visualization-interval", type=float, default=0.1)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"[vda5050_emulator {args.serial_number}] %(levelname)s %(message)s")
    try:
        host, port = parse_broker(args.broker)
        check_id("--manufacturer", args.manufacturer)
        check_id("--serial-number", args.serial_number)
        parts = [float(x) for x in args.start.split(",")]
        if len(parts) not in (2, 3):
            raise ValueError(f"--start must be X,Y or X,Y,THETA, got {args.start!r}")
        spec = VehicleSpec(args.manufacturer, args.serial_number, max_speed=args.max_speed,
                           max_angular_speed=args.max_angular_speed,
                           max_acceleration=args.max_acceleration, radius=args.radius,
                           speed_factor=args.speed_factor, map_id=args.map_id)
        emulator = Emulator(Vehicle(spec, parts[0], parts[1], parts[2] if len(parts) == 3 else 0.0),
                            host, port, args.interface, args.state_interval,
                            args.visualization_interval)
    except ValueError as e:
        print(f"vda5050-emulator: {e}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: emulator.stop())
    emulator.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
