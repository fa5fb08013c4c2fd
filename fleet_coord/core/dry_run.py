"""A dry run of a fleet workload: the real allocation and the real planner, no robots.

Tasks are allocated by Contract Net bids (`contract_net.sequential_auction`); then every
robot drives its queue leg by leg in event order: when a robot becomes free at time `t`
it plans its next leg with SIPP against everyone's reservations and commits it atomically
into the one `ReservationTable` (replacing its parked hold). A leg whose goal is held by a
parked robot is retried a little later. The result is a conflict-free, timed execution of
the whole workload — what the ROS fleet does with real agents, computed in one process.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from fleet_coord.core.contract_net import RobotState, sequential_auction
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.roadmap import Exclusion, Roadmap
from fleet_coord.core.sipp import sipp
from fleet_coord.core.tasks import Task
from fleet_coord.core.timed_path import TimedPath, path_to_segments

INF = math.inf


@dataclass
class Leg:
    robot: str
    task_id: str          # "" for the final drive home
    path: TimedPath
    planned_at: float
    retries: int


@dataclass
class DryRunResult:
    legs: list[Leg]
    done: dict[str, float]                 # task id -> completion time
    failed: dict[str, str]                 # task id -> reason
    assignment: dict[str, str]             # task id -> robot
    table: ReservationTable = field(repr=False)

    @property
    def makespan(self) -> float:
        return max((leg.path[-1][1] for leg in self.legs), default=0.0)


def dry_run(roadmap: Roadmap, exclusion: Exclusion, robots: dict[str, int], tasks: list[Task], *,
            homes: Optional[dict[str, int]] = None, dwell: float = 2.0, max_speed: float = 1.0,
            retry_after: float = 1.0, max_retries: int = 200,
            progress: Optional[Callable[[int], None]] = None) -> DryRunResult:
    """Allocate `tasks` to `robots` (name -> start vertex) and plan their execution.

    Each robot ends at its home vertex (default: its start). `progress(n)` is called with
    the number of tasks finished so far each time one finishes.
    """
    names = roadmap.names

    def travel_time(a: str, b: str) -> float:
        return float(roadmap.shortest_times(roadmap.vertex(b), max_speed)[roadmap.vertex(a)])

    fleet = {r: RobotState(position=names[v]) for r, v in robots.items()}
    assignment = sequential_auction(tasks, fleet, travel_time)
    homes = dict(robots if homes is None else homes)
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    # every robot holds its start vertex until its first leg replaces the hold
    for r, v in robots.items():
        res = table.commit(r, [(v, 0.0, INF)])
        if not res.ok:
            raise ValueError(f"robots share a start: {res.conflict}")

    # per robot: the list of (goal vertex, task id, is_last_stop_of_task)
    todo: dict[str, list[tuple[int, str, bool]]] = {}
    for r in robots:
        stops = []
        for task in assignment.queues.get(r, []):
            for i, st in enumerate(task.stations):
                stops.append((roadmap.vertex(st), task.id, i == len(task.stations) - 1))
        stops.append((homes[r], "", False))
        todo[r] = stops
    failed = {tid: why for tid, why in assignment.unassigned.items()}
    done: dict[str, float] = {}
    legs: list[Leg] = []
    at = dict(robots)
    events = [(0.0, r, 0) for r in sorted(robots)]
    heapq.heapify(events)
    while events:
        t, r, retries = heapq.heappop(events)
        if not todo[r]:
            continue
        goal, task_id, finishes = todo[r][0]
        path = sipp(roadmap, exclusion, table, r, at[r], goal, t, max_speed, park=True)
        if path is None:
            if retries >= max_retries:
                failed[task_id or f"{r}:home"] = (f"no conflict-free path for {r} to "
                                                  f"{names[goal]} after {retries} retries")
                todo[r].clear()
                continue
            heapq.heappush(events, (t + retry_after, r, retries + 1))
            continue
        segs = path_to_segments(roadmap, exclusion, path, max_speed, park_until=INF)
        res = table.commit(r, segs, replace_from=t)
        if not res.ok:  # cannot happen: SIPP planned against this very table
            raise RuntimeError(f"planned leg of {r} refused: {res.conflict}")
        legs.append(Leg(r, task_id, path, t, retries))
        todo[r].pop(0)
        at[r] = goal
        arrival = path[-1][1]
        if finishes:
            done[task_id] = arrival + dwell
            if progress:
                progress(len(done))
        heapq.heappush(events, (arrival + (dwell if task_id else 0.0), r, 0))
    return DryRunResult(legs, done, failed, dict(assignment.winner), table)


def positions(roadmap: Roadmap, path: TimedPath, times: np.ndarray) -> np.ndarray:
    """Reference-point positions along a timed path at `times` (linear between steps)."""
    ts = np.array([t for _, t in path])
    xy = roadmap.pos[[v for v, _ in path]]
    return np.stack([np.interp(times, ts, xy[:, 0]), np.interp(times, ts, xy[:, 1])], axis=1)
