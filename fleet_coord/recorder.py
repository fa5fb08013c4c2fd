"""recorder: writes the fleet's topics to an MCAP file (fleet_coord.recording), readable
by `ros2 bag`, Foxglove and `fleet-coord report RECORDING`.

It records every topic it discovers (checked every `discovery_period` s), or those named
in `topics` (comma-separated), less `exclude` (comma-separated; default: /rosout,
/parameter_events and /clock — the stamps of the fleet's messages already carry sim time,
and /clock is the busiest topic of a simulated fleet). Each topic is subscribed with the
QoS its publishers offer, as rosbag2 does: reliable when they all are, transient-local
when they all are (so latched topics such as /tf_static and the contact counters
arrive). Messages are stored as received
(CDR bytes; log time = wall time of reception). Parameters: `output` (the .mcap path,
required), `topics`, `exclude`, `discovery_period`, `metadata` (a JSON object stored as
the recording's ``fleet_coord`` metadata: map, robots, ...). Action topics are recorded
like any other (a feedback topic's type is derived from its .action file); a topic whose
type it cannot describe is skipped with a warning.

In a fleet under a namespace (fleet_coord.namespace) it records that fleet's topics
only, and stores the namespace in the metadata (`fleet-coord report` reads the topics
without it).

Started by `fleet-coord launch --record FILE`, `fleet.launch.py record:=FILE` and the
demo. The file is complete (with its index) once the node stops.
"""
from __future__ import annotations

import json
import os
import time

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from fleet_coord.namespace import FleetNames
from fleet_coord.recording import Writer, qos_metadata
from fleet_coord.spin import run_nodes

DEFAULT_EXCLUDE = ["/rosout", "/parameter_events", "/clock"]


def _names(text: str) -> set[str]:
    return {t.strip() for t in text.split(",") if t.strip()}


class Recorder(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        self.names = FleetNames.of_node(self)

        def param(name, default, description):
            return self.declare_parameter(
                name, default, ParameterDescriptor(description=description)).value

        output = param("output", "", "the MCAP file to write")
        self.only = _names(param("topics", "", "topics to record, comma-separated; "
                                               "empty: every topic"))
        self.exclude = _names(param("exclude", ",".join(DEFAULT_EXCLUDE),
                                    "topics never recorded, comma-separated"))
        period = param("discovery_period", 0.5, "s between looks for new topics")
        meta = param("metadata", "{}", "JSON object stored as the 'fleet_coord' metadata")
        if not output:
            raise ValueError("parameter output: the MCAP file to write is required")
        try:
            meta = json.loads(meta)
            assert isinstance(meta, dict)
        except (ValueError, AssertionError):
            raise ValueError(f"parameter metadata: expected a JSON object, got {meta!r}") from None
        os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
        self.path = output
        self._file = open(output, "wb")
        self.writer = Writer(self._file)
        self.writer.metadata("fleet_coord", {**meta, "started_wall_ns": time.time_ns(),
                                             "namespace": self.names.namespace})
        self._subs: dict[str, object] = {}
        self.create_timer(period, self._discover)
        self._discover()
        self.get_logger().info(f"recording to {output}")

    def _qos(self, topic: str) -> QoSProfile | None:
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            return None
        rel = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)
        latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
        # depth 100: a latched topic's publisher may keep a history (the table's updates
        # since its last snapshot), all of which a late recorder needs
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                          reliability=ReliabilityPolicy.RELIABLE if rel
                          else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                          else DurabilityPolicy.VOLATILE)

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            # this fleet's topics (under its namespace); `topics` and `exclude` name them
            # as in a fleet without one
            name = self.names.bare(topic)
            if (topic in self._subs or name is None or name in self.exclude
                    or (self.only and name not in self.only)):
                continue
            if len(types) != 1:
                continue   # a topic with two types is a misconfiguration; not ours to pick
            qos = self._qos(topic)
            if qos is None:
                continue   # only subscribers so far: their publisher's QoS decides later
            try:
                cls = self._class(types[0])
                self.writer.add_channel(topic, types[0], qos_metadata(qos))
            except (LookupError, ValueError) as e:   # a type we cannot describe: skip it
                self.get_logger().warning(f"not recording {topic}: {e}")
                self._subs[topic] = None
                continue
            self._subs[topic] = self.create_subscription(
                cls, topic,
                lambda data, topic=topic: self.writer.write(topic, data, time.time_ns()),
                qos, raw=True)

    @staticmethod
    def _class(type_name: str):
        from fleet_coord.recording import message_class
        return message_class(type_name)

    def destroy_node(self) -> None:
        self.writer.finish()
        self._file.close()
        counts = ", ".join(f"{t} {n}" for t, n in sorted(self.writer.count.items()) if n)
        self.get_logger().info(f"recorded {sum(self.writer.count.values())} messages to "
                               f"{self.path}: {counts}")
        super().destroy_node()


def main(args=None) -> None:
    run_nodes(lambda _argv: [Recorder()], args)


if __name__ == "__main__":
    main()
