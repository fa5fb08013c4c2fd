"""Lifelong operation in discrete steps: the League of Robot Runners benchmark, run by the
fleet's own planner, reservation table and allocation.

The action model is LoRR 2023's: a robot has a cell and a heading (0 = +x, 1 = +y,
2 = -x, 3 = -y); each step it moves one cell forward, turns 90 degrees or waits; all
robots start facing +x. Two robots never share a cell at a step (vertex conflict) and
never swap cells in one step (swap conflict).

Tasks (``lorr.LorrInstance``): ``reveal`` of them are open at a time; a robot assigned a
task visits its errands in order (one per step, counted where the robot stands after
the step); the first visit *opens* the task (from then on it stays with that robot), the
last one finishes it, and the next task of the file is revealed in its place.

Each step:

1. **allocation** (``assignment``): ``roundrobin`` (LoRR 2023: robot ``a`` does tasks
   ``a, a + n, a + 2n, ...`` of the file, one after the other), ``greedy`` (the start
   kit's default scheduler: each free robot, in id order, takes the unassigned task with
   the shortest trip from where it stands through all errands; for good) or
   ``auction`` (``allocation.Rebalancer``: the fleet's Contract Net allocation; robots
   bid the completion time, open unstarted tasks are re-allocated as a batch while
   robots move and free up; a robot about to finish its task bids from where it will
   end and is promised its next one);
2. **planning** (rolling horizon): a robot whose goal changed, whose turn it is (every
   ``replan_every`` steps) or whose reservation ends within ``replan_margin`` steps
   releases its reservation and plans with
   ``grid_sipp.grid_sipp_heading`` against everyone else's (a ``UnitGridTable``): its
   remaining errands, for at most ``horizon`` steps, ending where it may stay for good,
   then commits the plan parked there. A robot that finds no plan keeps what it holds:
   every robot always holds a conflict-free reservation to the end of time, so the
   fleet is collision-free by construction;
3. **yield**: a robot that has made no progress for ``stuck_steps`` steps because
   robots parked for good stand on every way to its goal (a one-cell aisle) asks them,
   most-stuck first, to drive to the nearest spot off its way (``_request_yield``); a
   robot that yielded keeps off that way for ``tabu_steps`` steps. Robots never yield to
   a robot that is yielding, so two robots cannot push each other back and forth;
4. **execution**: every robot takes its reserved step; errands are checked.

Pure core: no rclpy; deterministic (no wall-clock deadlines: searches are bounded by
expansions, not seconds).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from fleet_coord.core.grid_sipp import (NEVER, HeadingGridModel, UnitGridTable,
                                        grid_sipp_heading, unit_grid_model)
from fleet_coord.core.lorr import LorrInstance
from fleet_coord.core.roadmap import Footprint, Roadmap

__all__ = ["ASSIGNMENTS", "LifelongConfig", "LifelongResult", "run_lifelong"]

ASSIGNMENTS = ("auction", "greedy", "roundrobin")
FAR = 65535                       # "unreachable" in the uint16 step tables
_TURNS = np.array([0, 1, 2, 1])   # quarter turns for a heading change of 0..3 (mod 4)
# A disc this small keeps the grid's closed-form exclusion: classic MAPF conflicts.
_RADIUS = 0.1


@dataclass(frozen=True)
class LifelongConfig:
    """Knobs of the runner (defaults measured on the LoRR example instances)."""
    horizon: int = 20            # steps a plan reserves (then it parks and plans again)
    # Plans made against a fresh table are better: measured on MR24-RANDOM-01 (600
    # steps, auction) 538 tasks planning only when the reservation ends within 5 steps,
    # 670 planning every step (4x the CPU).
    replan_every: int = 1        # a robot with a task plans again every this many steps
    replan_margin: int = 5       # ... and when its reservation ends within this many
    max_expansions: int = 4000   # per search; deterministic, unlike a time limit
    weight: float = 1.0          # heuristic inflation of the searches
    stuck_steps: int = 8         # steps without progress before asking robots to yield
    tabu_steps: int = 12         # how long a robot that yielded keeps off that way
    rebalance_every: int = 1     # auction: steps between batch re-allocations
    keep_bonus: float = 2.0      # auction: steps a re-allocation must save
    # auction: a robot whose started task ends within this many steps bids for its next
    # one (measured on maze-example_40, 1000 steps: 0 -> 439 tasks, 20 -> 451, every
    # busy robot -> 438)
    lookahead: int = 20


@dataclass
class RunTask:
    """A task of the run: its errands (vertices), who has it, how far it is."""
    id: int
    errands: list[int]
    revealed: int                # step
    agent: int = -1              # -1: nobody
    done: int = 0                # errands visited; >= 1: opened (stays with its robot)
    finished: Optional[int] = None
    inner: int = 0               # steps between its errands (turns ignored)
    legs: list[int] = field(default_factory=list)  # steps from each errand to the next


@dataclass
class LifelongResult:
    """What a run did: per-agent paths and per-task outcomes, plus measurements."""
    steps: int
    starts: list[tuple[int, int]]
    paths: list[list[tuple[int, int, int]]]      # per agent, steps + 1 entries (x, y, o)
    tasks: list[RunTask]                         # every task revealed (or assigned)
    cells: list[tuple[int, int]]                 # vertex -> (x, y)
    finished_per_step: list[int] = field(default_factory=list)
    cpu_per_step: list[float] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(1 for t in self.tasks if t.finished is not None)

    def document(self) -> dict[str, Any]:
        """``result.json``: the issue's format (x = column, y = row, o = heading)."""
        cells = self.cells
        return {
            "steps": self.steps,
            "agents": [{"start": list(s), "path": [list(p) for p in path]}
                       for s, path in zip(self.starts, self.paths)],
            "tasks": [{"id": t.id, "errands": [list(cells[v]) for v in t.errands],
                       "agent": None if t.agent < 0 else t.agent,
                       "finished_step": t.finished}
                      for t in self.tasks],
            "finished": self.finished,
        }


class _Fleet:
    """The simulated fleet: robot states, the reservation table, the tasks."""

    def __init__(self, instance: LorrInstance, config: LifelongConfig) -> None:
        self.instance = instance
        self.config = config
        self.roadmap = Roadmap.from_grid(instance.grid)
        exclusion = self.roadmap.exclusion(Footprint(radius=_RADIUS))
        base = unit_grid_model(self.roadmap, exclusion, 1.0)
        if base is None:  # cannot happen for a grid roadmap
            raise RuntimeError("the LoRR grid is not a unit grid")
        self.base = base
        self.model = HeadingGridModel(base, self.roadmap)
        self.table = UnitGridTable(base, 0)
        self.cells = [(int(x), int(y)) for x, y in self.roadmap.pos.astype(int).tolist()]
        n = self.n = instance.team_size
        V = base.num_vertices
        self.pos = [self.vertex_of(c) for c in instance.starts]
        self.head = [0] * n
        self.plan: list[list[tuple[int, int]]] = [[(v, 0)] for v in self.pos]
        self.plan_t0 = [0] * n
        self.task: list[Optional[RunTask]] = [None] * n
        # auction: the task a robot that has started one does after it (unstarted)
        self.next: list[Optional[RunTask]] = [None] * n
        self.replan = [True] * n
        self.last_progress = [0] * n        # last step its distance to the errand shrank
        self.best_h = [NEVER] * n
        self.tabu: dict[int, tuple[int, frozenset[int]]] = {}  # robot -> (until, cells)
        self.yielding: dict[int, int] = {}  # robot -> last step of its yield
        for a, v in enumerate(self.pos):
            self.table.commit(a, [(v, 0)])
        self.tasks: dict[int, RunTask] = {}  # every task ever revealed / assigned
        self.open: dict[int, RunTask] = {}   # revealed, not finished
        # Per unopened open task: steps from every cell to its first errand (uint16, the
        # last entry FAR for "no cell"), what greedy and the auction's bids read.
        self.to_first: dict[int, np.ndarray] = {}
        # Per cell and heading: the cell ahead (V: a wall), to turn the steps into actions.
        self.ahead_of = np.array([V if a is None else a[0] for a in self.model.ahead],
                                 dtype=np.int64).reshape(-1, 4)
        self.next_id = 0
        self.finished = 0
        self.stats = {"plans": 0, "plan_failures": 0, "yields": 0, "reassignments": 0}

    def vertex_of(self, cell: tuple[int, int]) -> int:
        v = self.roadmap.vertex_at(*cell)
        if v is None:
            raise ValueError(f"cell {cell} is not free")
        return int(v)

    # -- tasks --------------------------------------------------------------------------

    def steps_to(self, goal: int) -> np.ndarray:
        """Steps (turns ignored) from every cell to ``goal``, FAR: unreachable; one more
        entry, FAR, for "no cell"."""
        from scipy.sparse.csgraph import dijkstra
        d = dijkstra(self.base._reverse_graph, indices=goal, unweighted=True)
        out = np.full(len(d) + 1, FAR, dtype=np.uint16)
        out[:-1] = np.where(np.isfinite(d), np.minimum(d, FAR), FAR)
        return out

    def new_task(self, task_id: int, t: int) -> RunTask:
        errands = [self.vertex_of(c) for c in self.instance.task(task_id)]
        legs = [int(self.steps_to(q)[p]) for p, q in zip(errands, errands[1:])]
        task = RunTask(task_id, errands, t, inner=sum(legs), legs=legs)
        self.tasks[task_id] = task
        self.open[task_id] = task
        return task

    def reveal(self, t: int) -> None:
        while len(self.open) < self.instance.reveal:
            self.new_task(self.next_id, t)
            self.next_id += 1

    def first_leg(self, task: RunTask) -> np.ndarray:
        """``steps_to`` the task's first errand (cached while the task is unopened)."""
        d = self.to_first.get(task.id)
        if d is None:
            d = self.to_first[task.id] = self.steps_to(task.errands[0])
        return d

    def _take_back(self, task: RunTask) -> None:
        """Take the unstarted ``task`` from the robot holding it (now or next)."""
        b = task.agent
        if b < 0:
            return
        if task.done:
            raise RuntimeError(f"task {task.id} is opened by robot {b}")
        if self.task[b] is task:
            self.task[b] = None
            self.replan[b] = True
            self.best_h[b] = NEVER
        elif self.next[b] is task:
            self.next[b] = None
        task.agent = -1

    def assign(self, a: int, task: Optional[RunTask]) -> None:
        """Give robot ``a`` ``task`` to work on now (None: nothing); its old task,
        unstarted, is free again."""
        old = self.task[a]
        if old is task:
            return
        if old is not None:
            if old.done:
                raise RuntimeError(f"robot {a} would drop task {old.id}, already opened")
            self._take_back(old)
        if task is not None:
            if task.done and task.agent != a:
                raise RuntimeError(f"task {task.id} is opened by robot {task.agent}")
            self._take_back(task)
            task.agent = a
        self.task[a] = task
        self.replan[a] = True
        self.best_h[a] = NEVER

    def award(self, a: int, task: RunTask) -> None:
        """Robot ``a`` won ``task``: it works on it now, or next if it has started one."""
        now = self.task[a]
        if now is None or not now.done:
            self.assign(a, task)
        elif self.next[a] is not task:
            promised = self.next[a]
            if promised is not None:
                self._take_back(promised)
            self._take_back(task)
            task.agent = a
            self.next[a] = task

    def withdraw(self, a: int, task_id: int) -> None:
        """The initiator takes robot ``a``'s unstarted task ``task_id`` back."""
        for held in (self.task[a], self.next[a]):
            if held is not None and held.id == task_id and not held.done:
                self._take_back(held)

    def remaining(self, a: int) -> list[int]:
        task = self.task[a]
        return [] if task is None else task.errands[task.done:]

    # -- planning -------------------------------------------------------------------------

    def plan_end(self, a: int) -> int:
        return self.plan_t0[a] + len(self.plan[a]) - 1

    def try_plan(self, a: int, t: int, errands: list[int],
                 forbidden: Optional[frozenset[int]] = None) -> bool:
        """Plan robot ``a`` from its state at ``t`` and commit; when there is no plan it
        keeps (re-commits) the reservation it had."""
        cfg = self.config
        old = self.table.release(a)
        self.stats["plans"] += 1
        path = grid_sipp_heading(self.model, self.table, self.pos[a], self.head[a], errands,
                                 t, horizon=cfg.horizon, max_expansions=cfg.max_expansions,
                                 weight=cfg.weight, forbidden=forbidden, partial=True)
        if path is None:
            self.stats["plan_failures"] += 1
            self.table.commit(a, old)
            return False
        cells = [(path[0][0], t)]
        for j in range(1, len(path)):
            if path[j][0] != path[j - 1][0]:
                cells.append((path[j][0], t + j))
        self.table.commit(a, cells)
        self.plan[a] = path
        self.plan_t0[a] = t
        return True


class _Greedy:
    """The start kit's default scheduler: each free robot (in id order) takes the
    unassigned open task with the shortest trip from where it stands through all its
    errands (breadth-first distances, turns ignored); for good."""

    def __init__(self, fleet: _Fleet) -> None:
        self.fleet = fleet

    def schedule(self, t: int) -> None:
        fleet = self.fleet
        free = [k for k in sorted(fleet.open) if fleet.open[k].agent < 0]
        for a in range(fleet.n):
            if fleet.task[a] is not None or not free:
                continue
            v = fleet.pos[a]
            best, best_cost = -1, NEVER
            for k in free:
                cost = int(fleet.first_leg(fleet.open[k])[v]) + fleet.open[k].inner
                if cost < best_cost:
                    best, best_cost = k, cost
            free.remove(best)
            fleet.to_first.pop(best, None)
            fleet.assign(a, fleet.open[best])


class _RoundRobin:
    """LoRR 2023: robot ``a``'s ``j``-th task is task ``j * n + a`` of the file."""

    def __init__(self, fleet: _Fleet) -> None:
        self.fleet = fleet
        self.count = [0] * fleet.n

    def schedule(self, t: int) -> None:
        fleet = self.fleet
        for a in range(fleet.n):
            if fleet.task[a] is None:
                task_id = self.count[a] * fleet.n + a
                self.count[a] += 1
                fleet.assign(a, fleet.new_task(task_id, t))


class _Auction:
    """The fleet's Contract Net allocation (``allocation.Rebalancer`` over the bids of
    ``allocation.TaskPool``), every ``rebalance_every`` steps and whenever a robot is
    free: the robots bid, for every unstarted open task, the steps until they would
    finish it as their next task, and each wins at most one. A robot without a started
    task bids from where it stands (heading-aware first step); one whose started task
    ends within ``lookahead`` steps bids from that task's last errand, its remaining
    steps first, and keeps what it wins as its next task. A robot busy for longer does
    not bid yet: a task promised that far ahead is kept from the robots that free up
    meanwhile, and every open task would be promised to someone, long ones included."""

    def __init__(self, fleet: _Fleet) -> None:
        from fleet_coord.core.allocation import Rebalancer
        self.fleet = fleet
        self.rebalancer = Rebalancer(keep_bonus=fleet.config.keep_bonus)

    def schedule(self, t: int) -> None:
        from fleet_coord.core.allocation import BatchProposals, Withdraw
        from fleet_coord.core.contract_net import AcceptProposal
        fleet = self.fleet
        if t % fleet.config.rebalance_every and all(held is not None for held in fleet.task):
            return
        tasks = [k for k in sorted(fleet.open) if fleet.open[k].done == 0]
        if not tasks:
            return
        robots, origins, ready = [], [], []
        for a, held in enumerate(fleet.task):
            if held is None or not held.done:
                robots.append(a)
                origins.append(fleet.pos[a])
                ready.append(0)
                continue
            e = held.errands[held.done]
            left = (int(fleet.model.distance_to(e)[4 * fleet.pos[a] + fleet.head[a]])
                    + sum(held.legs[held.done:]))
            if left <= fleet.config.lookahead:
                robots.append(a)
                origins.append(held.errands[-1])
                ready.append(left)
        if not robots:
            return
        origin = np.array(origins)
        wait = np.array(ready, dtype=np.int64)
        here_now = wait == 0                    # bids from where it stands, as it stands
        ahead = fleet.ahead_of[origin]                      # (robots, 4) cells ahead
        heads = np.array([fleet.head[a] for a in robots])
        # turns[r, o]: quarter turns from robot r's heading to heading o
        turns = _TURNS[(np.arange(4)[None, :] - heads[:, None]) % 4]
        cost = np.empty((len(robots), len(tasks)))
        for j, k in enumerate(tasks):
            task = fleet.open[k]
            d = fleet.first_leg(task)
            here = d[origin].astype(np.int64)
            # Actions = steps + the turns before the first step (toward a cell one step
            # nearer); the turns at later corners are not counted (cheap, a lower bound).
            # From a last errand the heading is not known yet: no turn counted.
            nearer = d[ahead].astype(np.int64) == here[:, None] - 1
            first = np.where(nearer, turns, 9).min(axis=1)
            first = np.where(here_now & (here > 0), first, 0)
            cost[:, j] = np.where(here >= FAR, np.inf, wait + here + first + task.inner)
        holders = {str(k): str(fleet.open[k].agent) for k in tasks if fleet.open[k].agent >= 0}
        outcome = self.rebalancer.decide(
            BatchProposals([str(a) for a in robots], [str(k) for k in tasks], cost), holders)
        for msg in outcome.actions:
            if isinstance(msg, Withdraw):
                fleet.withdraw(int(msg.robot), int(msg.task_id))
        for msg in outcome.actions:
            if isinstance(msg, AcceptProposal):
                fleet.award(int(msg.robot), fleet.open[int(msg.task_id)])
        fleet.stats["reassignments"] += outcome.moved


def run_lifelong(instance: LorrInstance, steps: int, assignment: str = "auction", *,
                 config: LifelongConfig = LifelongConfig(),
                 progress: Optional[Callable[[int, int], None]] = None) -> LifelongResult:
    """Run ``instance`` for ``steps`` steps; ``progress(step, finished)`` after each."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {', '.join(ASSIGNMENTS)}, "
                         f"got {assignment!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    fleet = _Fleet(instance, config)
    scheduler: _Greedy | _RoundRobin | _Auction
    if assignment == "roundrobin":
        scheduler = _RoundRobin(fleet)
    else:
        scheduler = _Greedy(fleet) if assignment == "greedy" else _Auction(fleet)
        fleet.reveal(0)
    n = fleet.n
    cells = fleet.cells
    paths = [[(*cells[fleet.pos[a]], 0)] for a in range(n)]
    finished_per_step: list[int] = []
    cpu_per_step: list[float] = []
    for t in range(steps):
        c0 = time.process_time()
        scheduler.schedule(t)
        _plan_step(fleet, t)
        for a in range(n):       # every robot takes its reserved step
            j = t + 1 - fleet.plan_t0[a]
            plan = fleet.plan[a]
            v, o = plan[j] if j < len(plan) else plan[-1]
            fleet.pos[a], fleet.head[a] = v, o
            paths[a].append((*cells[v], o))
        finished_per_step.append(_visit_errands(fleet, t + 1))
        if assignment != "roundrobin":
            fleet.reveal(t + 1)
        cpu_per_step.append(time.process_time() - c0)
        if progress is not None:
            progress(t + 1, fleet.finished)
    tasks = sorted(fleet.tasks.values(), key=lambda task: task.id)
    return LifelongResult(steps=steps, starts=list(instance.starts), paths=paths,
                          tasks=tasks, cells=cells, finished_per_step=finished_per_step,
                          cpu_per_step=cpu_per_step, stats=dict(fleet.stats))


def _visit_errands(fleet: _Fleet, t: int) -> int:
    """Count errands visited at step ``t`` (one per robot); return the tasks finished."""
    done = 0
    for a in range(fleet.n):
        task = fleet.task[a]
        if task is None:
            continue
        if fleet.pos[a] == task.errands[task.done]:
            task.done += 1
            fleet.to_first.pop(task.id, None)
            fleet.best_h[a] = NEVER
            fleet.last_progress[a] = t
            if task.done == len(task.errands):
                task.finished = t
                del fleet.open[task.id]
                fleet.task[a], fleet.next[a] = fleet.next[a], None
                fleet.finished += 1
                fleet.replan[a] = True
                done += 1
            continue
        h = fleet.model.distance_to(task.errands[task.done])[4 * fleet.pos[a] + fleet.head[a]]
        if h < fleet.best_h[a]:
            fleet.best_h[a] = h
            fleet.last_progress[a] = t
    return done


def _plan_step(fleet: _Fleet, t: int) -> None:
    """Plan every robot that needs it at step ``t``, then let stuck robots ask for way."""
    cfg = fleet.config
    due = []
    for a in range(fleet.n):
        end = fleet.plan_end(a)
        if fleet.yielding.get(a, -1) >= t and end > t:
            continue  # still driving to its yield spot
        if fleet.replan[a] or (fleet.task[a] is not None and (
                end - t < cfg.replan_margin or (t + a) % cfg.replan_every == 0)):
            due.append((end, a))
    due.sort()
    for _, a in due:
        tabu = fleet.tabu.get(a)
        forbidden = tabu[1] if tabu is not None and tabu[0] >= t else None
        if fleet.try_plan(a, t, fleet.remaining(a), forbidden):
            fleet.replan[a] = False
    for a in range(fleet.n):
        if (fleet.task[a] is not None and t - fleet.last_progress[a] >= cfg.stuck_steps
                and fleet.yielding.get(a, -1) < t):
            _request_yield(fleet, a, t)


def _parked(fleet: _Fleet, t: int) -> dict[int, int]:
    """cell -> robot, for robots standing where their reservation ends (parked for good)."""
    return {fleet.pos[a]: a for a in range(fleet.n) if fleet.plan_end(a) <= t}


def _way(fleet: _Fleet, a: int, goal: int, parked: dict[int, int]) -> Optional[list[int]]:
    """The cells of a shortest way from robot ``a`` to ``goal`` past the fewest parked
    robots (0-1 breadth-first search: entering a parked robot's cell costs 1)."""
    start = fleet.pos[a]
    neighbours = fleet.base.neighbours
    cost = {start: 0}
    back = {start: -1}
    dq = deque([start])
    while dq:
        u = dq.popleft()
        if u == goal:
            break
        for v, _ in neighbours[u]:
            c = cost[u] + (1 if v in parked and parked[v] != a else 0)
            if c < cost.get(v, NEVER):
                cost[v] = c
                back[v] = u
                if c == cost[u]:
                    dq.appendleft(v)
                else:
                    dq.append(v)
    if goal not in cost:
        return None
    way = [goal]
    while way[-1] != start:
        way.append(back[way[-1]])
    return way[::-1]


def _request_yield(fleet: _Fleet, a: int, t: int) -> None:
    """Robot ``a`` is stuck: the parked robots on its way to its next errand drive to
    the nearest cell off that way and keep off it for ``tabu_steps``."""
    errands = fleet.remaining(a)
    parked = _parked(fleet, t)
    way = _way(fleet, a, errands[0], parked)
    if way is None:
        return
    keep_off = frozenset(way) | frozenset(errands)
    for v in way:
        b = parked.get(v, a)
        if b == a or fleet.yielding.get(b, -1) >= t:
            continue
        target = _yield_target(fleet, b, keep_off, parked)
        if target is None:
            continue
        until = t + fleet.config.tabu_steps
        if fleet.try_plan(b, t, [target], forbidden=None):
            fleet.stats["yields"] += 1
            fleet.yielding[b] = until
            fleet.tabu[b] = (until, keep_off - {target})
            fleet.replan[b] = False
    fleet.last_progress[a] = t       # give the way a chance to clear before asking again


def _yield_target(fleet: _Fleet, b: int, avoid: frozenset[int], parked: dict[int, int]
                  ) -> Optional[int]:
    """The nearest cell robot ``b`` reaches without passing parked robots, off ``avoid``
    and free for good from some time on."""
    start = fleet.pos[b]
    seen = {start}
    dq = deque([start])
    safe = fleet.table.safe
    while dq:
        u = dq.popleft()
        if u not in avoid and u != start and safe[u] and safe[u][-1] == NEVER:
            return u
        for v, _ in fleet.base.neighbours[u]:
            if v in seen or (v in parked and parked[v] != b):
                continue
            seen.add(v)
            dq.append(v)
    return None
