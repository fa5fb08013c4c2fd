"""What the operator page shows, as JSON-ready documents: the map (roadmap, obstacles,
stations), the robots with the reservations they hold ahead, and the task table.

Pure: plain values in, dicts out; `operator_node` feeds it from the fleet's messages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from fleet_coord.core.roadmap import Roadmap

#: RobotState.mode constants, by value (fleet_coord_msgs/msg/RobotState.msg)
MODES = ("IDLE", "MOVING", "WAITING", "CHARGING", "ESTOP", "LOST", "ERROR")
#: TaskStatus.state constants, by value (fleet_coord_msgs/msg/TaskStatus.msg)
STATES = ("UNKNOWN", "QUEUED", "ANNOUNCED", "AWARDED", "ACTIVE", "DONE", "FAILED",
          "CANCELLED")
FINAL = ("DONE", "FAILED", "CANCELLED")
#: Reservations shown per robot: the next ones in time (a parked robot holds one).
MAX_HOLDS_SHOWN = 40


def _num(x: float) -> float | None:
    """JSON has no inf/nan: None stands for 'held until released' / unknown."""
    return float(x) if math.isfinite(x) else None


def map_document(roadmap: Roadmap) -> dict[str, Any]:
    """The static part of the page: vertices, lanes (a two-way lane once), obstacles of a
    grid map, stations (named vertices that are not plain waypoints) and the bounds."""
    pos = roadmap.pos
    lanes, seen = [], set()
    for u, v in zip(roadmap.edge_from.tolist(), roadmap.edge_to.tolist()):
        key = (min(u, v), max(u, v))
        if key in seen:
            continue
        seen.add(key)
        two_way = roadmap.edge_id(v, u) is not None
        lanes.append([u, v, two_way])
    doc: dict[str, Any] = {
        "title": roadmap.title or "",
        "vertices": [[round(float(x), 3), round(float(y), 3)] for x, y in pos],
        "names": list(roadmap.names),
        "lanes": lanes,
        "stations": [{"name": roadmap.names[v], "kind": roadmap.kinds[v],
                      "x": float(pos[v, 0]), "y": float(pos[v, 1])}
                     for v in range(roadmap.num_vertices) if roadmap.kinds[v] != "waypoint"],
        "obstacles": [],
    }
    xs, ys = pos[:, 0], pos[:, 1]
    bounds = [float(xs.min()) - 1, float(ys.min()) - 1, float(xs.max()) + 1, float(ys.max()) + 1]
    grid = roadmap.grid
    if grid is not None:
        doc["obstacles"] = [[x, y] for y in range(grid.height) for x in range(grid.width)
                            if not grid.free[y, x]]
        bounds = [-0.5, -0.5, grid.width - 0.5, grid.height - 0.5]
    doc["bounds"] = bounds
    return doc


@dataclass
class TaskRow:
    id: str
    kind: str = ""
    stations: list[str] = field(default_factory=list)
    priority: int = 0
    state: str = "UNKNOWN"
    robot: str = ""
    progress: float = 0.0
    reason: str = ""
    submitted: float | None = None   # ROS time, s
    started: float | None = None     # first ACTIVE
    ended: float | None = None       # final state
    lamport: tuple[int, str] = (0, "")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "stations": self.stations,
                "priority": self.priority, "state": self.state, "robot": self.robot,
                "progress": round(self.progress, 3), "reason": self.reason,
                "submitted": self.submitted, "started": self.started, "ended": self.ended}


class FleetView:
    """The fleet as the page sees it. Thread-safety is the caller's (one lock around it)."""

    def __init__(self, roadmap: Roadmap) -> None:
        self.roadmap = roadmap
        self.map = map_document(roadmap)
        self.robots: dict[str, dict[str, Any]] = {}
        self.lost: set[str] = set()
        self.estopped: set[str] = set()
        self.tasks: dict[str, TaskRow] = {}

    # robots -------------------------------------------------------------------------------
    def set_robots(self, robots: Iterable[dict[str, Any]], lost: Iterable[str]) -> None:
        """The fleet monitor's newest FleetState: each robot as {name, x, y, yaw, mode
        (a MODES index), battery, task, queued}; robots absent from it are gone."""
        self.robots = {r["name"]: r for r in robots}
        self.lost = set(lost)

    def remove_robot(self, name: str) -> None:
        self.robots.pop(name, None)
        self.estopped.discard(name)

    # tasks --------------------------------------------------------------------------------
    def task_status(self, task_id: str, state: int, robot: str, reporter: str,
                    progress: float, reason: str, stamp: float, lamport: int) -> None:
        """A TaskStatus update; older updates of a task (by (lamport, reporter)) are ignored."""
        row = self.tasks.setdefault(task_id, TaskRow(task_id))
        order = (lamport, reporter)
        if order < row.lamport or row.state in FINAL:
            return   # older, or after the end (a robot's last ACTIVE crossing a cancel)
        row.lamport = order
        name = STATES[state] if 0 <= state < len(STATES) else str(state)
        if name == "FAILED" and robot and reporter == robot:
            name = "QUEUED"   # a robot's FAILED is a hand-back: the task goes to auction again
        row.state, row.robot = name, robot or row.robot
        row.progress, row.reason = float(progress), reason
        if name == "QUEUED" and row.submitted is None:
            row.submitted = stamp
        if name == "ACTIVE" and row.started is None:
            row.started = stamp
        if name in FINAL:
            row.ended = stamp

    def task_listed(self, task_id: str, kind: str, stations: list[str], priority: int,
                    submitted: float | None, state: int, robot: str, progress: float,
                    reason: str) -> None:
        """A row of the dispatcher's ListTasks reply: the task's definition, and its
        state when no status update was seen (e.g. tasks from before this view started)."""
        row = self.tasks.setdefault(task_id, TaskRow(task_id))
        row.kind, row.stations, row.priority = kind, list(stations), priority
        if submitted:
            row.submitted = submitted
        name = STATES[state] if 0 <= state < len(STATES) else str(state)
        # the dispatcher's word on an ended task is final; otherwise its listing only fills
        # in tasks this view has seen no status of (e.g. from before it started)
        if row.lamport == (0, "") or (name in FINAL and row.state not in FINAL):
            row.state = name
            row.robot, row.progress, row.reason = robot or row.robot, float(progress), reason

    # the document -------------------------------------------------------------------------
    def holds_document(self, holds: Iterable[tuple[str, int, float, float]],
                       now: float) -> dict[str, list[dict[str, Any]]]:
        """Each robot's reservations that have not ended, soonest first: a vertex as
        {at: [x, y]}, a lane as {from: [x, y], to: [x, y]}, with t_start and t_end
        (null: held until released)."""
        rm, pos, nv = self.roadmap, self.roadmap.pos, self.roadmap.num_vertices
        out: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for robot, resource, t0, t1 in holds:
            if t1 <= now:
                continue
            item: dict[str, Any] = {"resource": rm.resource_name(resource),
                                    "t_start": _num(t0), "t_end": _num(t1)}
            if resource < nv:
                item["at"] = [float(pos[resource, 0]), float(pos[resource, 1])]
            else:
                e = resource - nv
                u, v = int(rm.edge_from[e]), int(rm.edge_to[e])
                item["from"] = [float(pos[u, 0]), float(pos[u, 1])]
                item["to"] = [float(pos[v, 0]), float(pos[v, 1])]
            out.setdefault(robot, []).append((t0, item))
        return {r: [i for _, i in sorted(items, key=lambda p: p[0])[:MAX_HOLDS_SHOWN]]
                for r, items in out.items()}

    def state_document(self, now: float, holds: Iterable[tuple[str, int, float, float]]
                       ) -> dict[str, Any]:
        """What the WebSocket pushes: time, robots (with their holds ahead) and tasks."""
        ahead = self.holds_document(holds, now)
        robots = []
        for name in sorted(self.robots):
            r = dict(self.robots[name])
            mode = r.get("mode", 0)
            r["mode"] = "LOST" if name in self.lost else (
                MODES[mode] if 0 <= mode < len(MODES) else str(mode))
            r["estop"] = name in self.estopped
            r["reservations"] = ahead.get(name, [])
            robots.append(r)
        tasks = sorted(self.tasks.values(),
                       key=lambda t: (t.submitted if t.submitted is not None else math.inf, t.id))
        return {"t": now, "robots": robots, "tasks": [t.as_dict() for t in tasks]}
