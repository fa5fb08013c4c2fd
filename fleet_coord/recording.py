"""Recordings of a fleet in MCAP, the format rosbag2, Foxglove and PlotJuggler read.

A recording holds each topic's messages as their CDR bytes (message encoding ``cdr``),
with the type's full ``ros2msg`` definition as its schema (the message's .msg text, then
each type it uses after a ``====`` line and ``MSG: pkg/Type``, as rosbag2 writes it), so
it is self-describing: `ros2 bag info/play` and Foxglove open it without our packages.
Channel metadata carries the offered QoS like rosbag2's ``offered_qos_profiles``.
Metadata records describe the run (``fleet_coord``: map, robots, and for the demo its
workload), so ``fleet-coord report RECORDING`` can rebuild the report from it alone.

`Writer` writes (used by the recorder node, fleet_coord.recorder); `read_messages` reads
back (topic, ROS message, log time) in log-time order, decoding with the installed
message classes; `message_definition` builds a type's schema text.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from typing import Any, BinaryIO, Iterator

from fleet_coord.share import package_share_dirs

PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16",
              "uint16", "int32", "uint32", "int64", "uint64", "string", "wstring"}
SEPARATOR = "=" * 80


def _share_file(package: str, sub: str, filename: str) -> str:
    for d in package_share_dirs(package):
        path = os.path.join(d, sub, filename)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return f.read()
    raise LookupError(f"no definition of {package}/{sub}/{filename} (looked in "
                      f"{', '.join(package_share_dirs(package))})")


# the messages rosidl derives from an action's .action file, which has three sections
_ACTION_PARTS = {"_Goal": 0, "_Result": 1, "_Feedback": 2}


def _msg_text(package: str, name: str) -> str:
    """The .msg text of package/name; for an action's derived types (Name_Goal, _Result,
    _Feedback and the feedback topic's Name_FeedbackMessage) the text rosidl gives them."""
    try:
        return _share_file(package, "msg", f"{name}.msg")
    except LookupError:
        if name.endswith("_FeedbackMessage"):
            action = name[:-len("_FeedbackMessage")]
            _share_file(package, "action", f"{action}.action")   # it exists, or LookupError
            return f"unique_identifier_msgs/UUID goal_id\n{action}_Feedback feedback\n"
        for suffix, part in _ACTION_PARTS.items():
            if name.endswith(suffix):
                text = _share_file(package, "action", f"{name[:-len(suffix)]}.action")
                sections = re.split(r"^---\s*$", text, flags=re.M)
                if len(sections) == 3:
                    return sections[part].strip("\n") + "\n"
        raise


def _field_types(package: str, text: str) -> list[tuple[str, str]]:
    """(package, Type) of each non-primitive field type in a .msg text."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        typ = line.split()[0]        # constants ("uint8 IDLE=0") have primitive types
        base = re.sub(r"\[.*\]$", "", typ)
        base = re.sub(r"<=\d+$", "", base)           # bounded string<=N
        if base in PRIMITIVES or base.startswith(("string<", "wstring<")):
            continue
        if base == "Header":
            out.append(("std_msgs", "Header"))
        elif "/" in base:
            pkg, _, name = base.partition("/")
            out.append((pkg, name.split("/")[-1]))
        else:
            out.append((package, base))
    return out


def _split_type(type_name: str) -> tuple[str, str, str]:
    """("pkg", "msg" or "action", "Type") of "pkg/msg/Type" or an action's topic type
    ("pkg/action/Name_FeedbackMessage")."""
    for kind in ("msg", "action"):
        package, _, name = type_name.partition(f"/{kind}/")
        if name and package and "/" not in name:
            return package, kind, name
    raise ValueError(f"expected a message type like 'pkg/msg/Type' or "
                     f"'pkg/action/Name_FeedbackMessage', got {type_name!r}")


def message_definition(type_name: str) -> str:
    """The ros2msg schema text of `type_name` ("nav_msgs/msg/Odometry"): its .msg, then
    every type it depends on, each once, breadth-first."""
    package, kind, name = _split_type(type_name)
    root = _msg_text(package, name)
    parts, seen, queue = [root], {(package, name)}, _field_types(package, root)
    while queue:
        pkg, typ = queue.pop(0)
        if (pkg, typ) in seen:
            continue
        seen.add((pkg, typ))
        text = _msg_text(pkg, typ)
        parts.append(f"{SEPARATOR}\nMSG: {pkg}/{typ}\n{text}")
        queue.extend(_field_types(pkg, text))
    return "\n".join(parts)


def message_class(type_name: str) -> Any:
    """The Python class of "pkg/msg/Type" from the installed interfaces."""
    package, kind, name = _split_type(type_name)
    try:
        module = importlib.import_module(f"{package}.{kind}")
        if kind == "action" and name.endswith("_FeedbackMessage"):
            return getattr(module, name[:-len("_FeedbackMessage")]).Impl.FeedbackMessage
        for suffix in _ACTION_PARTS:
            if kind == "action" and name.endswith(suffix):
                return getattr(getattr(module, name[:-len(suffix)]), suffix[1:])
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise LookupError(f"message type {type_name} is not installed") from None


def qos_metadata(profile: Any) -> str:
    """A QoS profile as rosbag2 writes it in a channel's offered_qos_profiles (YAML)."""
    rel = {1: "reliable", 2: "best_effort"}.get(int(profile.reliability), "system_default")
    dur = {1: "transient_local", 2: "volatile"}.get(int(profile.durability), "system_default")
    return (f"- history: keep_last\n  depth: {int(profile.depth)}\n  reliability: {rel}\n"
            f"  durability: {dur}\n  deadline: {{sec: 0, nsec: 0}}\n"
            f"  lifespan: {{sec: 0, nsec: 0}}\n  liveliness: automatic\n"
            f"  liveliness_lease_duration: {{sec: 0, nsec: 0}}\n"
            f"  avoid_ros_namespace_conventions: false\n")


class Writer:
    """An MCAP file of CDR messages, rosbag2-compatible (profile "ros2")."""

    def __init__(self, stream: BinaryIO) -> None:
        from mcap.writer import CompressionType, Writer as McapWriter
        self._w = McapWriter(stream, compression=CompressionType.ZSTD)
        self._w.start(profile="ros2", library="fleet_coord")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[int, int] = {}
        self.count: dict[str, int] = {}

    def add_channel(self, topic: str, type_name: str, qos: str = "") -> None:
        if topic in self._channels:
            return
        if type_name not in self._schemas:
            self._schemas[type_name] = self._w.register_schema(
                name=type_name, encoding="ros2msg",
                data=message_definition(type_name).encode())
        self._channels[topic] = self._w.register_channel(
            topic=topic, message_encoding="cdr", schema_id=self._schemas[type_name],
            metadata={"offered_qos_profiles": qos} if qos else {})
        self.count[topic] = 0

    def write(self, topic: str, data: bytes, log_ns: int, publish_ns: int | None = None) -> None:
        ch = self._channels[topic]
        seq = self._seq[ch] = self._seq.get(ch, 0) + 1
        self._w.add_message(channel_id=ch, log_time=log_ns, data=data,
                            publish_time=log_ns if publish_ns is None else publish_ns,
                            sequence=seq)
        self.count[topic] += 1

    def metadata(self, name: str, data: dict[str, Any]) -> None:
        """A metadata record; each value stored as JSON text (read_metadata decodes it)."""
        self._w.add_metadata(name, {k: json.dumps(v) for k, v in data.items()})

    def finish(self) -> None:
        self._w.finish()


def read_metadata(path: str) -> dict[str, dict[str, Any]]:
    """The recording's metadata records, values decoded from JSON."""
    from mcap.reader import make_reader
    with open(path, "rb") as f:
        return {m.name: {k: json.loads(v) for k, v in m.metadata.items()}
                for m in make_reader(f).iter_metadata()}


def read_messages(path: str, topics: set[str] | None = None
                  ) -> Iterator[tuple[str, Any, int]]:
    """(topic, message, log time ns) of a recording in log-time order, decoded with the
    installed message classes (rclpy's deserializer)."""
    from mcap.reader import make_reader
    from rclpy.serialization import deserialize_message
    classes: dict[int, Any] = {}
    with open(path, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(
                topics=sorted(topics) if topics else None, log_time_order=True):
            cls = classes.get(schema.id)
            if cls is None:
                cls = classes[schema.id] = message_class(schema.name)
            yield channel.topic, deserialize_message(message.data, cls), message.log_time
