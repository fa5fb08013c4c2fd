"""VDA 5050 3.0 framing shared by the master control and the emulator: MQTT topics,
headers, timestamps, and the checks every received message passes before it is used.

Pure: no MQTT, no ROS; time is a parameter (seconds since the Unix epoch, UTC).

- Topic (specification 4.2): ``<interfaceName>/v3/<manufacturer>/<serialNumber>/<topic>``.
- Header (7.2): ``headerId`` counts per topic and sender, ``timestamp`` is ISO 8601 UTC
  with milliseconds, ``version`` is ``3.0.0``.
- :class:`Inbox` decides whether a received message is used: valid JSON, valid against
  the official schema, protocol major version 3, addressed to this vehicle (manufacturer
  and serial number match the topic), and not stale (its ``headerId`` above the last one
  used from that sender on that topic). ``connection`` is exempt from the staleness rule
  (its last will is written at connect time, so its headerId is always old, 6.5), and an
  ``ONLINE`` connection message starts a new session of the sender: a restarted vehicle
  counts its headerIds from 0 again.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from fleet_coord.vda5050 import schema

__all__ = ["VERSION", "MAJOR", "INTERFACE", "ID_RE", "Rejected", "Inbox", "Outbox",
           "check_id", "topic", "timestamp", "parse_timestamp"]

VERSION = "3.0.0"
MAJOR = "v3"
INTERFACE = "vda5050"
#: Characters the specification recommends for ids and topic levels (4.2, 7.1.2).
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
UINT32_MAX = 2 ** 32 - 1


def check_id(what: str, value: str) -> str:
    """`value` if it may be a topic level / id, else ValueError naming `what`."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ValueError(f"{what} must be a non-empty string of A-Z a-z 0-9 _ . : - "
                         f"(VDA 5050 4.2), got {value!r}")
    return value


def topic(interface: str, manufacturer: str, serial_number: str, name: str) -> str:
    """The MQTT topic of `name` (``order``, ``state``, ...) for one vehicle."""
    if name not in schema.TOPICS:
        raise ValueError(f"unknown VDA 5050 topic {name!r}; expected one of "
                         f"{', '.join(schema.TOPICS)}")
    return "/".join((check_id("interfaceName", interface), MAJOR,
                     check_id("manufacturer", manufacturer),
                     check_id("serialNumber", serial_number), name))


def timestamp(t: float) -> str:
    """``YYYY-MM-DDTHH:mm:ss.fffZ`` for `t` seconds since the epoch (UTC)."""
    d = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 timestamp with a time zone."""
    d = _dt.datetime.fromisoformat(text.replace("z", "Z"))
    if d.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return d.timestamp()


@dataclass
class Outbox:
    """Headers of what one sender publishes: a headerId counter per topic."""
    manufacturer: str
    serial_number: str
    _next: dict[str, int] = field(default_factory=dict)

    def header(self, topic_name: str, now: float) -> dict[str, Any]:
        n = self._next.get(topic_name, 0)
        self._next[topic_name] = (n + 1) % (UINT32_MAX + 1)
        return {"headerId": n, "timestamp": timestamp(now), "version": VERSION,
                "manufacturer": self.manufacturer, "serialNumber": self.serial_number}

    def message(self, topic_name: str, now: float, body: dict[str, Any]) -> dict[str, Any]:
        """`body` behind a fresh header, checked against the official schema (a message
        we build wrong is our bug: it raises instead of going out)."""
        msg = {**self.header(topic_name, now), **body}
        schema.check(topic_name, msg)
        return msg


class Rejected(ValueError):
    """A received message that is not used; the text says why (for the log)."""


@dataclass
class Inbox:
    """What one receiver accepts from one sender (see the module doc)."""
    manufacturer: str
    serial_number: str
    _last: dict[str, int] = field(default_factory=dict)

    def accept(self, topic_name: str, payload: bytes | str) -> dict[str, Any]:
        """The parsed message, or :class:`Rejected` saying why it is dropped."""
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise Rejected(f"{topic_name}: not JSON ({e})") from None
        if not isinstance(msg, dict):
            raise Rejected(f"{topic_name}: expected a JSON object, got {type(msg).__name__}")
        problems = schema.errors(topic_name, msg)
        if problems:
            raise Rejected(str(schema.SchemaError(topic_name, problems)))
        version = str(msg["version"])
        if version.split(".")[0] != "3":
            raise Rejected(f"{topic_name}: protocol version {version!r}, expected 3.x.y")
        who = (msg["manufacturer"], msg["serialNumber"])
        if who != (self.manufacturer, self.serial_number):
            raise Rejected(f"{topic_name}: sent as {who[0]}/{who[1]}, expected "
                           f"{self.manufacturer}/{self.serial_number}")
        header_id = msg["headerId"]
        if not 0 <= header_id <= UINT32_MAX:
            raise Rejected(f"{topic_name}: headerId {header_id} is not a uint32")
        if topic_name == "connection":
            if msg["connectionState"] == "ONLINE":
                self._last.clear()   # a new session: headerIds start again
            return msg
        last = self._last.get(topic_name)
        if last is not None and header_id <= last:
            raise Rejected(f"{topic_name}: stale headerId {header_id} (last used {last})")
        self._last[topic_name] = header_id
        return msg
