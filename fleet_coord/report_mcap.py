"""The demo's report rebuilt from an MCAP recording of the fleet (fleet_coord.recording):
``fleet-coord report RECORDING``.

The recording holds what the demo's own process watched live, so the same code turns it
into the same numbers: task statuses, robot states and odometry become a
`demo.Recording`; the reservation table updates and odometry go through the same
`RunMonitor` (conflicts, excursions) in log order; the protocol topics become the causal
event log through the fleet monitor's own mapping (`fleet_monitor.PROTOCOL_EVENTS`), so
`report.metrics` gives the task outcomes and times, auction and planning statistics and
safety counts of the live run. Wall-clock figures (run time, real-time factor) come from
the recorder's reception times, so they match the demo's own measurement only roughly.

The run's description (robots, map, the demo's workload and settings) is the recording's
``fleet_coord`` metadata; a recording without it (e.g. `fleet-coord launch --record`)
takes robots from the states heard and tasks from the calls for proposals.
"""
from __future__ import annotations

import bisect
import math
from typing import Any

from fleet_coord.namespace import FleetNames
from fleet_coord.recording import read_messages, read_metadata

TRACE_PERIOD_S = 0.1


class _Subscriptions:
    """Stands in for a node in `RunMonitor`: keeps its callbacks by topic, so recorded
    messages can be handed to the monitor's own code (topics as in a fleet without a
    namespace: `_messages` strips the recorded fleet's)."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Any] = {}
        self.names = FleetNames()

    def create_subscription(self, _type, topic, callback, _qos):
        self.callbacks[topic] = callback


def _messages(path: str, names: FleetNames):
    """The recording's messages of the fleet it recorded, topics without its namespace."""
    for topic, msg, log_ns in read_messages(path):
        name = names.bare(topic)
        if name is not None:
            yield name, msg, log_ns


def _sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def load(path: str):
    """(Recording, tasks, DemoSpec, events) of a recording, ready for `report.metrics`."""
    from fleet_coord.core.event_log import EventLog
    from fleet_coord.core.tasks import Task
    from fleet_coord.demo import DemoSpec, Recording
    from fleet_coord.fleet_config import load_roadmap_and_exclusion
    from fleet_coord.fleet_monitor import PROTOCOL_EVENTS, reservation_event
    from fleet_coord.run_monitor import RunMonitor
    from fleet_coord.table_replica import TableReplica

    meta = read_metadata(path).get("fleet_coord", {})
    started_ns = int(meta.get("started_wall_ns", 0))
    demo = meta.get("demo", {})
    map_path = meta.get("map", "")
    radius = float(meta.get("footprint_radius", 0.15))
    names = FleetNames(meta.get("namespace", ""))
    # 1. sim time at each reception: the odometry's stamps against its log times
    clock: list[tuple[int, float]] = []
    robots: list[str] = list(meta.get("robots", []))
    for topic, msg, log_ns in _messages(path, names):
        if topic.endswith("/odom"):
            clock.append((log_ns, _sec(msg.header.stamp)))
        elif topic == "/fleet/robot_states" and msg.robot not in robots and not meta.get("robots"):
            robots.append(msg.robot)
    clock.sort()
    wall = [w for w, _ in clock]
    newest = []   # the newest sim time heard by each reception
    for _, t in clock:
        newest.append(max(t, newest[-1]) if newest else t)

    def sim_at(log_ns: int) -> float:
        i = bisect.bisect_right(wall, log_ns) - 1
        return newest[i] if i >= 0 else 0.0

    # 2. the same recording and checks as the live demo
    rec = Recording(robots=robots)
    rec.traces = {r: [] for r in robots}
    rec.states = {r: [] for r in robots}
    subs = _Subscriptions()
    monitor = RunMonitor(subs, robots, map_path, footprint_radius=radius)
    _roadmap, exclusion, rid = load_roadmap_and_exclusion(map_path, radius)
    replica = TableReplica(exclusion.of, _roadmap.num_resources, rid)
    # rows as the monitor's EventLog writes them (the same JSON-safe values)
    log = EventLog(None, "fleet_monitor")
    events: list[dict[str, Any]] = []
    cfps: dict[str, Task] = {}
    queued_wall: dict[str, int] = {}
    final_wall: list[int] = []
    DONE, FAILED, CANCELLED, QUEUED = 5, 6, 7, 1
    for topic, msg, log_ns in _messages(path, names):
        if topic in subs.callbacks and topic.endswith("/odom"):
            r = topic.split("/")[1]
            subs.callbacks[topic](msg)
            t, p = _sec(msg.header.stamp), msg.pose.pose
            trace = rec.traces[r]
            if not trace or t - trace[-1][0] >= TRACE_PERIOD_S - 1e-6:
                trace.append((t, p.position.x, p.position.y,
                              2.0 * math.atan2(p.orientation.z, p.orientation.w)))
        elif topic == "/traffic/updates":
            subs.callbacks[topic](msg)
            if replica.apply(msg) and not msg.is_snapshot:
                events.append(log.record("reservation", t=sim_at(log_ns),
                                         **reservation_event(msg)))
        elif topic == "/fleet/robot_states" and msg.robot in rec.states:
            rec.states[msg.robot].append((_sec(msg.header.stamp), int(msg.mode), msg.task_id))
        elif topic == "/sim/contacts/robot_robot":
            rec.contacts_robot_robot = msg.data
        elif topic == "/sim/contacts/robot_obstacle":
            rec.contacts_robot_obstacle = msg.data
        if topic in PROTOCOL_EVENTS:
            kind, _type, fields, _who = PROTOCOL_EVENTS[topic]
            detail = fields(msg)
            tid = detail.pop("task_id", getattr(msg, "task_id", ""))
            events.append(log.record(kind, t=sim_at(log_ns), task_id=tid,
                                     lamport=getattr(msg, "lamport", None) or None, **detail))
            if kind == "cfp" and msg.task.id not in cfps:
                cfps[msg.task.id] = Task(id=msg.task.id, kind=msg.task.kind,
                                         stations=list(msg.task.stations))
            if kind == "status":
                row = {"task_id": msg.task_id, "state": int(msg.state), "robot": msg.robot,
                       "t": _sec(msg.stamp), "round": int(msg.round), "reason": msg.reason}
                rec.statuses.append(row)
                if msg.state == QUEUED:
                    queued_wall.setdefault(msg.task_id, log_ns)
                if msg.state in (DONE, CANCELLED) or (msg.state == FAILED and not msg.robot):
                    if msg.task_id not in rec.final:
                        rec.final[msg.task_id] = row
                        final_wall.append(log_ns)
    rec.conflicts, rec.excursions = monitor.conflicts, monitor.excursions
    rec.monitor_samples, rec.monitor_gaps = monitor.samples, monitor.gaps

    tasks = ([Task(id=t["id"], kind=t["kind"], stations=list(t["stations"]))
              for t in demo["tasks"]] if "tasks" in demo else list(cfps.values()))
    queued_t = [r["t"] for r in rec.statuses if r["state"] == QUEUED]
    rec.t_submit = min(queued_t, default=0.0)
    rec.t_end = max((r["t"] for r in rec.final.values()), default=rec.t_submit)
    if queued_wall and final_wall:
        rec.wall_run_s = (max(final_wall) - min(queued_wall.values())) * 1e-9
        rec.sim_rtf = (rec.t_end - rec.t_submit) / rec.wall_run_s if rec.wall_run_s > 0 else 0.0
        if started_ns:   # the recorder starts with the fleet: launch -> first task accepted
            rec.wall_startup_s = max(0.0, (min(queued_wall.values()) - started_ns) * 1e-9)
    unfinished = [t.id for t in tasks if t.id not in rec.final]
    rec.ended = "completed" if not unfinished else "incomplete"
    rec.stop_reason = "" if not unfinished else f"{len(unfinished)} task(s) had not ended"
    spec = DemoSpec(robots=len(robots), tasks=len(tasks), map=demo.get("map", ""),
                    seed=int(demo.get("seed", 0)), mode=demo.get("mode", "kinematic"),
                    rtf=float(demo.get("rtf", 0.0)),
                    agents_per_process=int(demo.get("agents_per_process", 0)))
    return rec, tasks, spec, events
