"""Shared pieces of the VDA 5050 tests: a private Mosquitto, emulator processes, and an
MQTT listener that checks every message it sees against the official schemas."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fleet_coord.launcher import die_with_parent
from fleet_coord.vda5050.broker import Broker, BrokerError, mosquitto_path
from fleet_coord.vda5050.observer import MqttObserver
from fleet_coord.vda5050.protocol import INTERFACE, topic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def broker_or_skip() -> Broker:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed and could not be (scripts/setup.sh installs "
                    "it when run as root: apt-get install mosquitto)")
    try:
        return Broker().start()
    except BrokerError as e:
        pytest.fail(str(e))


class Listener(MqttObserver):
    """The observer (every message of manufacturer "acme", schema-checked) with what the
    tests need on top: wait for a message, inject a bad one."""

    def __init__(self, broker: Broker, manufacturer: str = "acme") -> None:
        super().__init__(broker.host, broker.port, manufacturer)

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "a message"):
        """The first message (topic, msg) seen so far or to come that satisfies
        predicate(topic, msg)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for t, m in self.messages:
                    if predicate(t, m):
                        return t, m
                left = deadline - time.monotonic()
                if left <= 0:
                    last = [(t, m.get("connectionState", "")) for t, m in self.messages[-5:]]
                    raise AssertionError(f"no {what} within {timeout:g} s; last: {last}")
                self._cv.wait(left)

    def clear(self) -> None:
        with self._cv:
            self.messages.clear()

    def publish(self, serial: str, name: str, msg: dict) -> None:
        self.client.publish(topic(INTERFACE, "acme", serial, name), json.dumps(msg), qos=0)

    def inject(self, mqtt_topic: str, payload: bytes) -> None:
        """Publish a (bad) message as if a vehicle sent it; it is not checked here."""
        self.injected.add(payload)
        self.client.publish(mqtt_topic, payload)


def start_emulator(broker: Broker, serial: str, start: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fleet_coord.vda5050.emulator", "--broker", broker.address,
           "--manufacturer", "acme", "--serial-number", serial, "--start", start,
           "--log-level", "WARNING", *extra]
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, preexec_fn=die_with_parent)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=10)


def is_state(serial: str, key: str | None = None, value=None):
    def pred(t: str, m: dict) -> bool:
        return t.endswith(f"/{serial}/state") and (key is None or m.get(key) == value)
    return pred


def is_connection(serial: str, state: str):
    return lambda t, m: t.endswith(f"/{serial}/connection") and m.get("connectionState") == state


