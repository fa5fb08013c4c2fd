"""A dry run of a fleet workload: the fleet's allocation and planner, no robots.

What it models is what the fleet does:

- **tasks arrive** as the demo submits them, one every ``submit_interval`` seconds;
- **allocation**, ``"pool"`` (the default, ``allocation.TaskPool``, what the dispatcher
  does): each robot holds at most one awarded, unstarted task; a batch round of
  completion-time bids allocates the open tasks to the robots without one whenever a
  task arrives or a robot frees up. ``"pool_rebalance"``: the rounds also move awarded,
  unstarted tasks to robots that are now quicker (``Rebalancer`` with holders; not in
  the dispatcher yet). ``"per_task"``: one Contract Net
  auction per task as it arrives (``contract_net.Participant`` bids against the robot's
  queue with ``objective``; lowest cost wins and the task joins the winner's queue for
  good) -- what the dispatcher did before the pool;
- **execution** at the agents' plan speed ``speed`` (m/s; what
  ``core.tracking.plan_speed_for`` gives the demo robot): a robot that starts a task
  plans each leg with SIPP against everyone's reservations and commits it atomically
  into the one ``ReservationTable`` (replacing its parked hold) and dwells ``dwell``
  seconds at each station. A robot with nothing to do next leaves the station for its
  home (stations are shared: a robot parked on a drop would block it for good). A leg
  whose goal is held by a parked robot is retried a little later.

The result is a conflict-free, timed execution of the whole workload with what a
warehouse pays for -- makespan, task time (submitted -> done), tasks per hour -- next to
what travel bids minimise: the fleet's total route time.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from fleet_coord.core.allocation import TaskPool
from fleet_coord.core.contract_net import (AcceptProposal, Insertion, Participant, Proposal,
                                           RobotProfile, RobotState)
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.roadmap import Exclusion, Roadmap
from fleet_coord.core.sipp import motion_model, sipp
from fleet_coord.core.tasks import Task
from fleet_coord.core.time_model import TimeModel
from fleet_coord.core.timed_path import TimedPath, path_to_segments

INF = math.inf
ALLOCATIONS = ("pool", "pool_rebalance", "per_task")
_STEP_ASIDE_AFTER = 5     # failed plans of a leg before the robot clears out for home


@dataclass
class Leg:
    robot: str
    task_id: str
    path: TimedPath       # [(vertex, time), ...]
    planned_at: float
    retries: int


@dataclass
class DryRunResult:
    legs: list[Leg]
    done: dict[str, float]                 # task id -> completion time
    failed: dict[str, str]                 # task id -> reason
    assignment: dict[str, str]             # task id -> robot that did it
    table: ReservationTable = field(repr=False)
    submitted: dict[str, float] = field(default_factory=dict)   # task id -> time

    @property
    def makespan(self) -> float:
        """From the first submission until the last task is done (s)."""
        return max(self.done.values(), default=0.0)

    @property
    def task_times(self) -> list[float]:
        """Per done task: submitted -> done (s)."""
        return [t - self.submitted.get(k, 0.0) for k, t in self.done.items()]

    @property
    def tasks_per_hour(self) -> float:
        return 3600.0 * len(self.done) / self.makespan if self.makespan > 0 else 0.0

    @property
    def route_time(self) -> float:
        """The fleet's driving time: sum over legs of their duration, waits included."""
        return float(sum(leg.path[-1][1] - leg.path[0][1] for leg in self.legs))

    def tasks_per_robot(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for robot in self.assignment.values():
            out[robot] = out.get(robot, 0) + 1
        return out


def dry_run(roadmap: Roadmap, exclusion: Exclusion, robots: dict[str, int], tasks: list[Task],
            *, homes: Optional[dict[str, int]] = None, dwell: float = 2.0,
            speed: float | TimeModel = 1.0, submit_interval: float = 0.0,
            allocation: str = "pool", objective: Optional[str] = None,
            retry_after: float = 1.0, max_retries: int = 200,
            progress: Optional[Callable[[int], None]] = None) -> DryRunResult:
    """Allocate and execute ``tasks`` (the k-th submitted at ``k * submit_interval``)
    with ``robots`` (name -> start vertex; idle robots park at ``homes``, default their
    starts). ``progress(n)`` is called with the number of
    tasks done so far each time one finishes. ``objective`` is what the robots bid
    (default: "completion" for the pool, "travel" -- the agents' default -- per task)."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, "
                         f"got {allocation!r}")
    names = roadmap.names

    motion = motion_model(roadmap, exclusion, speed)

    def travel_time(a: str, b: str) -> float:
        return float(motion.vertex_times_to(roadmap.vertex(b))[roadmap.vertex(a)])

    if objective is None:
        objective = "travel" if allocation == "per_task" else "completion"
    profile = RobotProfile(dwell=dwell, max_queue=10**6, objective=objective)
    parts = {r: Participant(r, travel_time, profile) for r in robots}
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    for r, v in robots.items():     # every robot holds its start until its first leg
        if not table.commit(r, [(v, 0.0, INF)]).ok:
            raise ValueError(f"robots share a start vertex {names[v]}")
    submitted = {task.id: k * submit_interval for k, task in enumerate(tasks)}
    by_id = {task.id: task for task in tasks}
    at = dict(robots)                               # where each robot is (or will park)
    home = dict(robots if homes is None else homes)
    free_at = {r: 0.0 for r in robots}
    pool = None if allocation == "per_task" else \
        TaskPool(parts, keep_next=allocation == "pool")
    queues: dict[str, list[Task]] = {r: [] for r in robots}     # per_task: awarded
    if pool is not None:
        for r in sorted(robots):
            pool.add_robot(r, names[robots[r]], 0.0)
    result = DryRunResult([], {}, {}, {}, table, submitted)
    # events: (time, order, kind, name); kinds: "task" arrives, "free" robot, "leg" retry
    events: list[tuple[float, int, str, str]] = []
    order = 0

    def push(t: float, kind: str, name: str) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, kind, name))

    for task in tasks:
        push(submitted[task.id], "task", task.id)
    for r in sorted(robots):
        push(0.0, "free", r)
    # per robot: the stops left of its started task: (vertex, task id, last stop?)
    stops: dict[str, list[tuple[int, str, bool]]] = {r: [] for r in robots}
    retries = {r: 0 for r in robots}

    def start(r: str, task: Task, now: float) -> None:
        stops[r] = [(roadmap.vertex(st), task.id, i == len(task.stations) - 1)
                    for i, st in enumerate(task.stations)]
        result.assignment[task.id] = r
        if pool is not None:
            # The pool bids for the robot's next task from where and when this one ends
            # (the robot's own estimate; corrected when it is done).
            eta = parts[r].bid(task, RobotState(names[at[r]], free_at=now, now=now))
            end = eta.eta if isinstance(eta, Proposal) else now
            pool.finished(r, task.stations[-1], end)
            pool.slots[r].started = task.id
        push(now, "leg", r)

    def idle(r: str, now: float) -> bool:
        return not stops[r] and free_at[r] <= now

    def ready(r: str, now: float) -> tuple[str, float]:
        """Where and when robot ``r``'s started work ends (its queue starts there)."""
        here, t = at[r], max(free_at[r], now)
        for goal, _, _ in stops[r]:
            t += travel_time(names[here], names[goal]) + dwell
            here = goal
        return names[here], t

    while events:
        now, _, kind, name = heapq.heappop(events)
        if kind == "task":
            task = by_id[name]
            if pool is not None:
                pool.add_task(task)
            else:
                _auction(task, parts, queues, ready, now, result)
        elif kind == "free":
            if pool is not None:
                pool.finished(name, names[at[name]], now)
        elif kind == "leg":
            _drive(name, now, stops, at, home, free_at, retries, table, roadmap, exclusion, speed,
                   dwell, max_retries, retry_after, result, push, progress)
            continue
        # hand out work to idle robots
        if pool is not None:
            pool.round(now)
            for r in sorted(robots):
                if idle(r, now):
                    taken = pool.start_next(r)
                    if taken is not None:
                        start(r, taken, now)
        else:
            for r in sorted(robots):
                if idle(r, now) and queues[r]:
                    start(r, queues[r].pop(0), now)
        for r in sorted(robots):
            if idle(r, now) and at[r] != home[r] and kind == "free" and name == r:
                stops[r] = [(home[r], "", False)]     # leave the station for its home
                push(now, "leg", r)
    if pool is not None:
        for task_id in sorted(pool.open):
            result.failed[task_id] = pool.why_unawarded(task_id)
    for r, queue in queues.items():
        for task in queue:
            result.failed.setdefault(task.id, f"never started by {r}")
    return result


def _auction(task: Task, parts: dict[str, Participant], queues: dict[str, list[Task]],
             ready: Callable[[str, float], tuple[str, float]], now: float,
             result: DryRunResult) -> None:
    """One Contract Net round for ``task``: every robot bids against its queue (from
    where and when its current work ends), the lowest cost wins (ties: eta, name)."""
    best: tuple[float, float, str] | None = None
    for r in sorted(parts):
        position, free = ready(r, now)
        answer = parts[r].bid(task, RobotState(position, list(queues[r]), free_at=free,
                                               now=now))
        if isinstance(answer, Proposal) and (best is None or
                                             (answer.cost, answer.eta, r) < best):
            best = (answer.cost, answer.eta, r)
    if best is None:
        result.failed[task.id] = "no robot proposed"
        return
    r = best[2]
    position, free = ready(r, now)
    state = RobotState(position, queues[r], free_at=free, now=now)
    placed = parts[r].on_accept_proposal(AcceptProposal(r, task.id, 0), state)
    if not isinstance(placed, Insertion):
        result.failed[task.id] = placed.reason


def _drive(r: str, now: float, stops: dict[str, list[tuple[int, str, bool]]],
           at: dict[str, int], home: dict[str, int], free_at: dict[str, float],
           retries: dict[str, int],
           table: ReservationTable, roadmap: Roadmap, exclusion: Exclusion,
           speed: float | TimeModel,
           dwell: float, max_retries: int, retry_after: float, result: DryRunResult,
           push: Callable[[float, str, str], None],
           progress: Optional[Callable[[int], None]]) -> None:
    """Plan and commit robot ``r``'s next leg at ``now`` (or retry later)."""
    if not stops[r]:
        return
    goal, task_id, last = stops[r][0]
    free = table.safe_intervals(goal, robot=r, t_from=now)
    path = None
    if free and free[-1][1] == INF:   # else a robot parks on the goal: no search can help
        path = sipp(roadmap, exclusion, table, r, at[r], goal, now, speed, park=True)
    if path is None and retries[r] == _STEP_ASIDE_AFTER and at[r] != home[r]:
        # Blocked for a while (its goal or the way held by parked robots, maybe waiting
        # for the station it stands on): leave it for home first, as an agent yields.
        stops[r].insert(0, (home[r], "", False))
        retries[r] += 1
        push(now, "leg", r)
        return
    if path is None:
        if retries[r] >= max_retries:
            result.failed[task_id] = (f"no conflict-free path for {r} to "
                                      f"{roadmap.names[goal]} after {retries[r]} retries")
            stops[r] = []
            push(now, "free", r)
            return
        retries[r] += 1
        push(now + retry_after, "leg", r)
        return
    segs = path_to_segments(roadmap, exclusion, path, speed, park_until=INF)
    res = table.commit(r, segs, replace_from=now)
    if not res.ok:  # cannot happen: SIPP planned against this very table
        raise RuntimeError(f"planned leg of {r} refused: {res.conflict}")
    result.legs.append(Leg(r, task_id, path, now, retries[r]))
    retries[r] = 0
    stops[r].pop(0)
    at[r] = goal
    arrival = path[-1][1] + dwell
    free_at[r] = arrival
    if last:
        result.done[task_id] = arrival
        if progress:
            progress(len(result.done))
        push(arrival, "free", r)
    elif not task_id:                 # home (no dwell): go on, or be free
        free_at[r] = path[-1][1]
        push(free_at[r], "leg" if stops[r] else "free", r)
    else:
        push(arrival, "leg", r)


def positions(roadmap: Roadmap, path: TimedPath, times: np.ndarray) -> np.ndarray:
    """Reference-point positions along a timed path at `times` (linear between steps)."""
    ts = np.array([t for _, t in path])
    xy = roadmap.pos[[v for v, _ in path]]
    return np.stack([np.interp(times, ts, xy[:, 0]), np.interp(times, ts, xy[:, 1])], axis=1)
