"""The in-process fleet: the same cores the ROS nodes run — dispatcher
(core.dispatch), traffic authority (core.traffic), one execution per robot
(core.execution) — and the ideal kinematic driver (core.kinematics), wired in one process
on a virtual clock through a bus that can delay, drop and reorder (fleet_coord.bus). No
DDS. A run is a pure function of its inputs and seed, and runs as fast as the CPU allows.

What each ROS node does around its core is done here by a few lines of wiring: the
agents' control loop (odometry in, `tick`, velocity commands out), state reports, the
reserve and task-list services, table updates to every replica, the dispatcher's and authority's timers.
Agents are grouped like agents processes (`agents_per_process`): a group shares one table
replica and is one endpoint of the bus, so a cut or a crash takes the whole group. Agents
talk to their robots directly (the on-robot link is not the fleet network); an agent that
stops commanding leaves its robot to the driver's command watchdog.

Faults (`bus.Faults`: latency, jitter, drops, cuts) apply to every fleet message, except
that the channels the nodes publish with RELIABLE QoS (`RELIABLE`: the auction, task
statuses, the authority's lost / removed notices) lose nothing at random and cross a cut
late (bus.Bus: reliable, lease); the robot states (best effort), the services (reserve,
task list) and the table updates lose messages at random and in cuts, which the cores recover from
(state timeouts, reserve_timeout, table versions and snapshots). A crashed process loses
what was sent to it. Crashes
(`Crash`) stop a group of agents, the dispatcher or the authority for a while; each comes
back as a new incarnation from what survives a crash: the ledger (dispatcher), the table
log (authority), nothing (agents: the robot stands where it stopped).

An independent `SafetyMonitor` sees every table update the authority publishes and the
robots' true poses; it counts conflicts and excursions. Used by `fleet-coord demo
--in-process`, the property tests and the large benchmarks (bench/in_process.py).
"""
from __future__ import annotations

import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fleet_coord.bus import Bus, Faults
from fleet_coord.core import contract_net as cn
from fleet_coord.core import dispatch as dp
from fleet_coord.core import execution as ex
from fleet_coord.core import traffic as tc
from fleet_coord.core.event_log import EventLog
from fleet_coord.core.kinematics import Limits, UnicycleState, step
from fleet_coord.core.monitor import SafetyMonitor
from fleet_coord.core.pacing import IDLE_STATE_RATE, StatePacer
from fleet_coord.core.replica import Replica, Resync, TableUpdate
from fleet_coord.core.roadmap import Exclusion, Roadmap
from fleet_coord.core.table_log import TableLog
from fleet_coord.core.tracking import resolve_time_model
from fleet_coord.core.tasks import TERMINAL_STATES, Task, TaskLedger, TaskState
from fleet_coord.core.yielding import YieldMemo

__all__ = ["Crash", "FleetParams", "InProcessFleet", "RunResult"]

DISPATCHER, TRAFFIC, CLIENT = "dispatcher", "traffic", "client"
#: RobotState.mode codes (fleet_coord_msgs), as the report reads them
MODE_CODE = {ex.Activity.IDLE: 0, ex.Activity.MOVING: 1, ex.Activity.WAITING: 2}
#: TaskStatus.state codes (fleet_coord_msgs), as the report reads them
STATE_CODE = {TaskState.QUEUED: 1, TaskState.ANNOUNCED: 2, TaskState.AWARDED: 3,
              TaskState.ACTIVE: 4, TaskState.DONE: 5, TaskState.FAILED: 6,
              TaskState.CANCELLED: 7}


@dataclass(frozen=True)
class Crash:
    """`who` ("dispatcher", "traffic", or a robot: its agents group) stops at `at` and is
    started again `down` s later."""
    who: str
    at: float
    down: float


@dataclass(frozen=True)
class FleetParams:
    """The fleet's parameters: those of the demo's fleet config (fleet_coord.demo) unless
    said otherwise."""
    limits: Limits = field(default_factory=lambda: Limits(max_v=1.0, max_w=4.0, max_acc=4.0,
                                                          max_alpha=20.0))
    turn_margin: float = 0.2
    control_period: float = 0.05        # the agents' control loop (20 Hz)
    state_period: float = 0.1           # RobotState
    #: Hz of a parked robot's RobotState (robot_agent idle_state_rate; core/pacing.py)
    idle_state_rate: float = IDLE_STATE_RATE
    driver_period: float = 0.02         # the ideal driver's integration step
    cmd_timeout: float = 0.5            # the driver stops a robot whose commands stop
    #: s from an agent's command to the driver applying it (rounded up to its steps).
    #: None: what the agents' delay compensation assumes (`control_latency`), as for the
    #: demo's simulator in lock-step with them. A driver much quicker than that makes the
    #: turn-in-place heading loop ring (docs/benchmarks.md, "In-process fleet").
    command_latency: float | None = None
    lost_after: float = 3.0
    snapshot_period: float = 5.0
    keep_history: float = 60.0
    bid_window: float = 0.5
    robot_timeout: float = 3.0
    allocation: str = "pool"            # the dispatcher's (core.dispatch.ALLOCATIONS)
    bid_objective: str = "completion"   # what the agents bid (without `execution`)
    #: the agents' time_model (without `execution`); auto: real when the control loop
    #: holds the robots at their limits (tracking.resolve_time_model)
    time_model: str = "auto"
    agents_per_process: int = 0         # 0: all agents in one group
    monitor_period: float = 0.25        # s between true-pose checks of each robot
    monitor_boundaries: bool = True     # ... and at both ends of each of its holds
    trace_period: float = 0.1           # s between recorded poses (0: none)
    execution: ex.ExecutionConfig | None = None


@dataclass
class RunResult:
    """What a run did (sim time in s unless said wall)."""
    outcomes: dict[str, str]            # task id -> DONE / FAILED / CANCELLED / "" (open)
    t_end: float
    wall_s: float
    conflicts: int
    excursions: int
    contacts: int                       # robot-robot contacts begun (footprints overlapping)
    monitor_samples: int
    events: int                         # bus events run
    messages: int
    dropped: int


class _Group:
    """One agents process: its agents, their shared replica, its bus endpoint."""

    def __init__(self, name: str, robots: list[str]) -> None:
        self.name = name
        self.robots = robots
        self.agents: dict[str, ex.Execution] = {}
        self.pacers: dict[str, StatePacer] = {}
        self.sent: dict[str, tuple[ex.StateReport, float]] = {}   # the last new state, when
        self.replica: Replica | None = None
        self.resync = Resync()                  # asks for a snapshot while it is stale
        self.up = False
        self.incarnation = 0
        self.calls: dict[str, set[int]] = {}    # robot -> seqs it still wants answers to


#: bus channels the ROS nodes send with RELIABLE QoS (qos.PROTOCOL): never dropped at random
RELIABLE = frozenset({"submit", "bid", "contract", "status", "lost", "removed", "fleet",
                      "resync"})


class InProcessFleet:
    def __init__(self, roadmap: Roadmap, exclusion: Exclusion, robots: dict[str, int], *,
                 seed: int = 0, faults: Faults | None = None, crashes: Sequence[Crash] = (),
                 params: FleetParams | None = None, workdir: str | None = None,
                 event_log: str | None = None, roadmap_id: str = "",
                 log: logging.Logger | None = None) -> None:
        self.roadmap, self.exclusion, self.roadmap_id = roadmap, exclusion, roadmap_id
        self.p = params if params is not None else FleetParams()
        self.seed = seed
        self.bus = Bus(seed, faults, reliable=RELIABLE)
        self.log = log if log is not None else logging.getLogger("fleet_coord.in_process")
        self._own_workdir = workdir is None
        # the ledger and the table log (what survives a crash); tmpfs when there is one
        self.workdir = workdir or tempfile.mkdtemp(prefix="fleet-coord-inproc-",
                                                   dir="/dev/shm" if os.path.isdir("/dev/shm")
                                                   else None)
        os.makedirs(self.workdir, exist_ok=True)
        self.events = EventLog(event_log, "in_process") if event_log else None
        # the world: the ideal driver's robots
        self.robots = list(robots)
        self.robots_start = dict(robots)   # the authority holds them from its start
        self.state = {r: UnicycleState(float(roadmap.pos[v, 0]), float(roadmap.pos[v, 1]), 0.0)
                      for r, v in robots.items()}
        self.cmd: dict[str, tuple[float, float, float]] = {}   # robot -> (v, w, stamp)
        self._cmd_queue: dict[str, deque[tuple[float, float, float, float]]] = {
            r: deque() for r in robots}                        # (applies at, v, w, stamp)
        # no wall deadline on path searches: the same run whatever the machine's load
        # delay compensation as the ROS agents' default: two control periods at real
        # speed, one with stop_and_turn
        # the agents know how long their driver runs a last command on: its watchdog
        # plus one command period
        kind = resolve_time_model(self.p.time_model, self.p.limits, 1.0 / self.p.control_period)
        self.execution_config = replace(self.p.execution or ex.ExecutionConfig(
            limits=self.p.limits, turn_margin=self.p.turn_margin,
            bid_objective=self.p.bid_objective, time_model=kind,
            control_latency=(2.0 if kind == "real" else 1.0)
            * self.p.control_period, run_on=self.p.cmd_timeout + self.p.control_period),
            plan_deadline=None, control_period=self.p.control_period)
        self.command_latency = self.execution_config.control_latency \
            if self.p.command_latency is None else self.p.command_latency
        self._driven_at = 0.0                                  # time of the poses in `state`
        # the fleet's processes
        per = self.p.agents_per_process or len(self.robots)
        self.groups = [_Group(f"agents{k // per}", self.robots[k:k + per])
                       for k in range(0, len(self.robots), per)]
        self.group_of = {r: g for g in self.groups for r in g.robots}
        self.memo = YieldMemo()
        self.monitor = SafetyMonitor(exclusion, roadmap.num_resources, roadmap_id)
        #: robots whose agent crashed, until its successor holds its spot again: the
        #: robot stands where it stopped while its holds run on (the authority can tell
        #: only after lost_after); they count in `contacts`, not in the monitor's checks
        self.unmonitored: set[str] = set()
        self.contacts = 0               # robot-robot contacts (footprints overlapping) begun
        self._touching: set[tuple[str, str]] = set()
        self._radius = exclusion.footprint.bounding_radius
        self.ledger_path = os.path.join(self.workdir, "tasks.sqlite")
        self.table_log_path = os.path.join(self.workdir, "table.log")
        self.dispatch: dp.Dispatch | None = None
        self.authority: tc.TrafficAuthority | None = None
        self._ledger: TaskLedger | None = None
        self._timers: dict[str, list[Any]] = {}
        # recording (the demo's report)
        self.statuses: list[dict[str, Any]] = []
        self.traces: dict[str, list[tuple[float, float, float, float]]] = {r: [] for r in robots}
        self.states: dict[str, list[tuple[float, int, str]]] = {r: [] for r in robots}
        self.submitted: dict[str, Task] = {}
        self._accepted: set[str] = set()
        self._refused: dict[str, str] = {}
        self._start_authority()
        self._start_dispatcher()
        for g in self.groups:
            self._start_group(g)
        self.bus.every(self.p.driver_period, self._drive)
        if self.p.monitor_period > 0:
            self.bus.every(self.p.monitor_period, self._check_poses)
        if self.p.trace_period > 0:
            self.bus.every(self.p.trace_period, self._trace, first=0.0)
        for c in crashes:
            self.bus.at(c.at, self._crash, c)

    # -- the processes ------------------------------------------------------------------

    def _start_authority(self) -> None:
        self.authority = tc.TrafficAuthority.recover(
            TableLog(self.table_log_path, self.roadmap_id, fsync=False), self.exclusion,
            self.roadmap.num_resources, self.bus.now, roadmap_id=self.roadmap_id,
            lost_after=self.p.lost_after, keep_history=self.p.keep_history,
            log=logging.getLogger("fleet_coord.in_process.traffic"))
        for robot, vertex in self.robots_start.items():
            self.authority.expect(robot, vertex, self.bus.now)
        self._timers[TRAFFIC] = [
            self.bus.every(0.1, self._traffic_tick),
            self.bus.every(self.p.snapshot_period, self._traffic_snapshot, first=self.bus.now)]

    def _start_dispatcher(self) -> None:
        self._ledger = TaskLedger(self.ledger_path)
        config = dp.DispatchConfig(bid_window=self.p.bid_window,
                                   robot_timeout=self.p.robot_timeout,
                                   allocation=self.p.allocation)
        replica = Replica(self.exclusion.of, self.roadmap.num_resources, self.roadmap_id)
        self._dispatch_replica = replica
        self._dispatch_resync = Resync()
        self.dispatch = dp.Dispatch(self._ledger, config, self.bus.now, roadmap=self.roadmap,
                                    exclusion=self.exclusion, replica=replica,
                                    log=logging.getLogger("fleet_coord.in_process.dispatch"))
        self._timers[DISPATCHER] = [self.bus.every(0.05, self._dispatcher_tick)]

    def _start_group(self, g: _Group) -> None:
        g.up = True
        g.incarnation += 1
        g.replica = Replica(self.exclusion.of, self.roadmap.num_resources, self.roadmap_id)
        g.resync = Resync()
        cfg = self.execution_config
        for r in g.robots:
            g.agents[r] = ex.Execution(
                r, self.roadmap, self.exclusion, g.replica, cfg,
                rng=random.Random(f"{self.seed}:{r}:{g.incarnation}"), memo=self.memo,
                log=logging.getLogger(f"fleet_coord.in_process.{r}"))
            g.pacers[r] = StatePacer(self.p.state_period, self.p.idle_state_rate)
            g.sent.pop(r, None)
            g.calls[r] = set()
        self._timers[g.name] = [self.bus.every(self.p.control_period, lambda g=g: self._control(g)),
                                self.bus.every(self.p.state_period, lambda g=g: self._states(g))]

    def _crash(self, c: Crash) -> None:
        if c.who == DISPATCHER:
            self.dispatch = None
            if self._ledger is not None:
                self._ledger.close()
            restart: Callable[[], None] = self._start_dispatcher
        elif c.who == TRAFFIC:
            self.authority = None
            restart = self._start_authority
        else:
            g = self.group_of[c.who]
            if not g.up:
                return
            g.up = False
            g.agents.clear()
            self.unmonitored.update(g.robots)
            g.replica = None

            def restart() -> None:
                self._start_group(g)
        for timer in self._timers.pop(c.who if c.who in (DISPATCHER, TRAFFIC)
                                      else self.group_of[c.who].name, []):
            timer.cancel()
        self.bus.at(self.bus.now + c.down, restart)

    # -- the driver ---------------------------------------------------------------------

    def _drive(self) -> None:
        now, dt, lim = self.bus.now, self.p.driver_period, self.p.limits
        for r, s in self.state.items():
            queue = self._cmd_queue[r]
            while queue and queue[0][0] <= now + 1e-9:
                _, v, w, stamp = queue.popleft()
                self.cmd[r] = (v, w, stamp)
            v, w, stamp = self.cmd.get(r, (0.0, 0.0, -math.inf))
            if now - stamp > self.p.cmd_timeout:
                v, w = 0.0, 0.0
            if v or w or s.v or s.w:
                self.state[r] = step(s, v, w, dt, lim)
        self._driven_at = now

    def _check_poses(self) -> None:
        t = self._driven_at
        for r, s in self.state.items():
            if r not in self.unmonitored:
                self.monitor.on_pose(r, t, s.x, s.y)
        self.contacts += count_contacts({r: (s.x, s.y) for r, s in self.state.items()},
                                        self._radius, self._touching)

    def _check_pose(self, robot: str) -> None:
        s = self.state.get(robot)
        if s is not None and robot not in self.unmonitored:
            self.monitor.on_pose(robot, self._driven_at, s.x, s.y)

    def _watch_boundaries(self, u: TableUpdate) -> None:
        """Check a robot's pose just before each hold of it starts and just after it ends
        (beyond the monitor's slack and one driver step): where a robot early or late
        for its plan would be outside what it holds. Overstays of a few hundredths of a
        second slip between periodic samples."""
        now, eps = self.bus.now, self.monitor.slack_t + 1e-3
        for r in u.added:
            if r.t_start - eps > now:
                self.bus.at(r.t_start - eps, self._check_pose, r.robot)
            if math.isfinite(r.t_end):
                self.bus.at(r.t_end + eps + self.p.driver_period, self._check_pose, r.robot)

    def _trace(self) -> None:
        now = self.bus.now
        for r, s in self.state.items():
            self.traces[r].append((now, s.x, s.y, s.theta))

    # -- agents -------------------------------------------------------------------------

    def _control(self, g: _Group) -> None:
        now = self.bus.now
        self._check_resync(g)
        ready = self.authority is not None
        for r, agent in g.agents.items():
            s = self.state[r]
            if r in self.unmonitored and agent.parked:
                self.unmonitored.discard(r)
            self._act(g, r, agent.on_odometry(now, ex.Odometry(s.x, s.y, s.theta, s.v, s.w, now)))
            self._act(g, r, agent.tick(now, authority_ready=ready))

    def _states(self, g: _Group) -> None:
        now = self.bus.now
        for r, agent in g.agents.items():
            rep = agent.state_report(now)
            if rep is None:
                g.sent.pop(r, None)
                continue
            self.states[r].append((now, MODE_CODE[rep.activity], rep.task_id))
            # parked, nothing new: the last new state again (robot_agent, core/pacing.py)
            if g.pacers[r].due(now, rep) or r not in g.sent:
                g.sent[r] = (rep, now)
            rep, sent = g.sent[r]
            tasks = [rep.task_id, *rep.queued]
            inc = (r, g.incarnation)
            self.bus.send(g.name, DISPATCHER, self._to_dispatcher_state, r, tasks, inc,
                          channel="state")
            self.bus.send(g.name, TRAFFIC, self._to_traffic_state, r, tasks, inc, rep.vertex,
                          sent, channel="state")

    def _act(self, g: _Group, robot: str, actions: Iterable[ex.Action]) -> None:
        now = self.bus.now
        for a in actions:
            if isinstance(a, ex.Velocity):
                self._cmd_queue[robot].append((now + self.command_latency, a.v, a.w, now))
            elif isinstance(a, ex.Reserve):
                g.calls[robot].add(a.seq)
                self.bus.send(g.name, TRAFFIC, self._to_traffic_reserve, g, robot, a,
                              channel=f"reserve:{robot}")
            elif isinstance(a, ex.Abandon):
                g.calls[robot].discard(a.seq)
            elif isinstance(a, ex.StatusReport):
                self._status_out(g.name, a)
            elif isinstance(a, ex.ListOpenTasks):
                self.bus.send(g.name, DISPATCHER, self._to_dispatcher_list, g, g.incarnation,
                              robot, a.seq, channel=f"list:{robot}")
            elif isinstance(a, (cn.Proposal, cn.Refusal)):
                self._event("proposal" if isinstance(a, cn.Proposal) else "refusal", a.task_id,
                            robot=a.robot, round=a.round,
                            **({"cost": a.cost} if isinstance(a, cn.Proposal)
                               else {"reason": str(a.reason)}))
                self.bus.send(g.name, DISPATCHER, self._to_dispatcher_answer, a, channel="bid")

    def _agents(self, g: _Group) -> dict[str, ex.Execution]:
        return g.agents if g.up else {}

    def _to_agents(self, fn: Callable[[ex.Execution, float], list[ex.Action]],
                   robot: str | None = None) -> None:
        """Deliver a broadcast to every group (`robot`: only its group)."""
        groups = [self.group_of[robot]] if robot is not None and robot in self.group_of \
            else self.groups
        for g in groups:
            self.bus.send(DISPATCHER, g.name, self._deliver, g, g.incarnation, fn, robot,
                          channel="contract")

    def _deliver(self, g: _Group, incarnation: int,
                 fn: Callable[[ex.Execution, float], list[ex.Action]], robot: str | None) -> None:
        if not g.up or g.incarnation != incarnation:
            return   # sent to a process that has crashed since
        now = self.bus.now
        for r, agent in list(g.agents.items()):
            if robot is None or r == robot:
                self._act(g, r, fn(agent, now))

    def _status_out(self, src: str, s: ex.StatusReport) -> None:
        self._record_status(s.task_id, s.state, s.robot, s.round, s.reason)
        self.bus.send(src, DISPATCHER, self._to_dispatcher_status, s, channel="status")
        for g in self.groups:
            self.bus.send(src, g.name, self._deliver, g, g.incarnation,
                          lambda a, now, s=s: a.on_task_status(now, s), None, channel="status")

    # -- the dispatcher -----------------------------------------------------------------

    def submit(self, task: Task) -> None:
        """A client submits `task` (retried every 3 s while the dispatcher is down)."""
        self.submitted[task.id] = task
        self.bus.send(CLIENT, DISPATCHER, self._to_dispatcher_submit, task, channel="submit")
        self.bus.at(self.bus.now + 3.0, self._resubmit, task)

    def _resubmit(self, task: Task) -> None:
        """No answer to the submission (lost, or the dispatcher was down): send it again,
        as the demo's client does."""
        if task.id not in self._accepted and task.id not in self._refused:
            self.submit(task)

    def _to_dispatcher_submit(self, task: Task) -> None:
        if self.dispatch is None:
            return
        try:
            self._dispatch_out(self.dispatch.submit(self.bus.now, task))
            self._accepted.add(task.id)
        except dp.Refused as e:
            self._refused[task.id] = str(e)
            self._record_status(task.id, TaskState.FAILED, "", 0, f"refused: {e}")

    def _dispatcher_tick(self) -> None:
        if self.dispatch is not None:
            self._dispatch_out(self.dispatch.tick(self.bus.now))
            self._dispatcher_resync()

    def _dispatcher_resync(self) -> None:
        if self._dispatch_resync.due(self.bus.now, self._dispatch_replica):
            self.bus.send(DISPATCHER, TRAFFIC, self._to_traffic_resync, channel="resync")

    def _to_dispatcher_list(self, g: _Group, incarnation: int, robot: str, seq: int) -> None:
        """/fleet/list_tasks: the tasks not ended, as the dispatcher node lists them."""
        if self.dispatch is None or self._ledger is None:
            return
        tasks = [rec.task for rec in self._ledger.list() if rec.state not in TERMINAL_STATES]
        self.bus.send(DISPATCHER, g.name, self._deliver, g, incarnation,
                      lambda ag, now: ag.on_task_list(now, seq, tasks), robot,
                      channel=f"list:{robot}")

    def _to_dispatcher_answer(self, a: cn.Proposal | cn.Refusal) -> None:
        if self.dispatch is None:
            return
        if isinstance(a, cn.Proposal):
            self._dispatch_out(self.dispatch.on_proposal(self.bus.now, a))
        else:
            self._dispatch_out(self.dispatch.on_refusal(self.bus.now, a))

    def _to_dispatcher_status(self, s: ex.StatusReport) -> None:
        if self.dispatch is not None:
            self._dispatch_out(self.dispatch.on_task_status(
                self.bus.now, s.task_id, s.robot, s.state, reason=s.reason, lamport=s.lamport,
                round=s.round))

    def _to_dispatcher_state(self, robot: str, tasks: list[str], inc: object) -> None:
        if self.dispatch is not None:
            self._dispatch_out(self.dispatch.on_robot_state(self.bus.now, robot, tasks, inc))

    def _to_dispatcher_table(self, u: TableUpdate) -> None:
        if self.dispatch is not None:
            self._dispatch_replica.apply(u)
            self._dispatcher_resync()

    def _dispatch_out(self, actions: Iterable[dp.Action]) -> None:
        for a in actions:
            if isinstance(a, dp.StatusUpdate):
                self._record_status(a.task_id, a.state, a.robot, a.round, a.reason)
                s = ex.StatusReport(a.task_id, a.robot, a.state, a.round, reason=a.reason,
                                    stamp=self.bus.now, lamport=a.lamport)
                for g in self.groups:
                    self.bus.send(DISPATCHER, g.name, self._deliver, g, g.incarnation,
                                  lambda ag, now, s=s: ag.on_task_status(now, s), None,
                                  channel="status")
            elif isinstance(a, dp.CallForProposals):
                self._event("cfp", a.task.id, round=a.round, kind=a.task.kind,
                            stations=list(a.task.stations))
                self._to_agents(lambda ag, now, a=a: ag.on_cfp(now, a.task, a.round, a.excluded))
            elif isinstance(a, dp.Award):
                self._event("award", a.task_id, robot=a.robot, round=a.round)
                self._to_agents(lambda ag, now, a=a: ag.on_award(now, a.robot, a.task_id, a.round),
                                a.robot)
            else:
                self._event("rejection", a.task_id, robot=a.robot, round=a.round)
                self._to_agents(lambda ag, now, a=a: ag.on_rejection(now, a.robot, a.task_id,
                                                                     a.round, a.reason), a.robot)

    # -- the traffic authority ----------------------------------------------------------

    def _to_traffic_reserve(self, g: _Group, robot: str, a: ex.Reserve) -> None:
        if self.authority is None:
            return
        result = self.authority.request(robot, a.segments, replace_from=a.replace_from,
                                        roadmap_id=self.roadmap_id)
        answer = ex.ReserveAnswer(a.seq, result.ok, result.version, result.message)
        self._publish_table()
        self.bus.send(TRAFFIC, g.name, self._to_agent_answer, g, g.incarnation, robot, answer,
                      channel=f"reserve:{robot}")

    def _to_agent_answer(self, g: _Group, incarnation: int, robot: str,
                         answer: ex.ReserveAnswer) -> None:
        agent = g.agents.get(robot) if g.up and g.incarnation == incarnation else None
        if agent is None or answer.seq not in g.calls[robot]:
            return   # the call was given up (or its agent is gone)
        g.calls[robot].discard(answer.seq)
        self._act(g, robot, agent.on_reserve_answer(self.bus.now, answer))

    def _to_traffic_state(self, robot: str, tasks: list[str], inc: object,
                          vertex: int | None, sent: float) -> None:
        if self.authority is not None:
            self._traffic_out(self.authority.on_robot_state(self.bus.now, robot, tasks, inc,
                                                            resource=vertex, sent=sent))
            self._traffic_snapshot_if_due()

    def _traffic_tick(self) -> None:
        if self.authority is not None:
            self._traffic_out(self.authority.tick(self.bus.now))
            self._traffic_snapshot_if_due()
            # a lost robot's odometry (the authority watches it while it locates it)
            for r in list(self.authority.locating):
                s = self.state.get(r)
                if s is not None and self.authority is not None:
                    self._traffic_out(self.authority.on_lost_odometry(
                        self.bus.now, r, s.x, s.y, abs(s.v) > 0.01 or abs(s.w) > 0.05))

    def _traffic_snapshot(self) -> None:
        if self.authority is not None:
            self._broadcast_table(self.authority.snapshot(self.bus.now))

    def _to_traffic_resync(self) -> None:
        """/traffic/resync: a stale replica asks for the table (rate-limited)."""
        if self.authority is not None:
            self.authority.want_snapshot()
            self._traffic_snapshot_if_due()

    def _traffic_snapshot_if_due(self) -> None:
        """A snapshot out of turn that was asked for (rate-limited by the authority)."""
        if self.authority is not None and self.authority.snapshot_due(self.bus.now):
            self._traffic_snapshot()

    def _check_resync(self, g: _Group) -> None:
        """The group's replica found itself stale: ask the authority for a snapshot."""
        if g.up and g.replica is not None and g.resync.due(self.bus.now, g.replica):
            self.bus.send(g.name, TRAFFIC, self._to_traffic_resync, channel="resync")

    def _traffic_out(self, actions: Iterable[tc.Action]) -> None:
        for a in actions:
            if isinstance(a, tc.RobotLost):
                self._event("robot_lost", "", robot=a.robot, by="traffic")
                self._from_traffic(lambda ag, now, r=a.robot: ag.on_robot_lost(now, r))
                self.bus.send(TRAFFIC, DISPATCHER, self._to_dispatcher_lost, a.robot, channel="lost")
            elif isinstance(a, tc.RobotRemoved):
                self._event("robot_removed", "", robot=a.robot)
                self._from_traffic(lambda ag, now, r=a.robot: ag.on_robot_removed(now, r))
                self.bus.send(TRAFFIC, DISPATCHER, self._to_dispatcher_removed, a.robot,
                              channel="removed")
        self._publish_table()

    def _to_dispatcher_lost(self, robot: str) -> None:
        if self.dispatch is not None:
            self._dispatch_out(self.dispatch.on_robot_lost(self.bus.now, robot))

    def _to_dispatcher_removed(self, robot: str) -> None:
        if self.dispatch is not None:
            self._dispatch_out(self.dispatch.on_robot_removed(self.bus.now, robot))

    def _from_traffic(self, fn: Callable[[ex.Execution, float], list[ex.Action]]) -> None:
        for g in self.groups:
            self.bus.send(TRAFFIC, g.name, self._deliver, g, g.incarnation, fn, None, channel="fleet")

    def _publish_table(self) -> None:
        if self.authority is not None:
            self._broadcast_table(self.authority.drain())

    def _broadcast_table(self, updates: list[TableUpdate]) -> None:
        for u in updates:
            self.monitor.on_update(u)            # the monitor's tap: lossless
            if self.p.monitor_boundaries and not u.is_snapshot:
                self._watch_boundaries(u)
            if not u.is_snapshot and (u.added or u.removed):
                seg = lambda rs: [[r.resource, r.t_start, r.t_end] for r in rs]  # noqa: E731
                self._event("reservation", "", robot=u.robot, version=u.version,
                            added=seg(u.added), removed=seg(u.removed))
            self.bus.send(TRAFFIC, DISPATCHER, self._to_dispatcher_table, u, channel="table")
            for g in self.groups:
                self.bus.send(TRAFFIC, g.name, self._table_to_group, g, g.incarnation, u,
                              channel="table")

    def _table_to_group(self, g: _Group, incarnation: int, u: TableUpdate) -> None:
        self._deliver(g, incarnation, lambda ag, now: ag.on_table_update(now, u), None)
        if g.incarnation == incarnation:
            self._check_resync(g)

    # -- recording ----------------------------------------------------------------------

    def _record_status(self, task_id: str, state: TaskState, robot: str, rnd: int,
                       reason: str) -> None:
        self.statuses.append({"task_id": task_id, "state": STATE_CODE[state], "robot": robot,
                              "t": self.bus.now, "round": int(rnd), "reason": reason})
        self._event("status", task_id, robot=robot, state=state.value, reason=reason)

    def _event(self, name: str, task_id: str, /, **detail: Any) -> None:
        if self.events is not None:
            self.events.record(name, t=self.bus.now, task_id=task_id, **detail)

    # -- running ------------------------------------------------------------------------

    def outcomes(self) -> dict[str, str]:
        """Task id -> its final state in the ledger ("" while it is open)."""
        ledger = self._ledger if self._ledger is not None and self.dispatch is not None \
            else TaskLedger(self.ledger_path)
        out = {tid: "" for tid in self.submitted}
        for rec in ledger.list():
            out[rec.task.id] = rec.state.value if rec.state in TERMINAL_STATES else ""
        if ledger is not self._ledger:
            ledger.close()
        return out

    def ended(self) -> int | None:
        """How many submitted tasks have ended (the dispatcher keeps a record of each open
        one), or None while the dispatcher is down."""
        if self.dispatch is None:
            return None
        return len(self._accepted - self.dispatch.entries.keys()) + len(self._refused)

    def final(self) -> dict[str, dict[str, Any]]:
        """Task id -> its final record, as the demo's report reads it."""
        with TaskLedger(self.ledger_path) as ledger:
            return {rec.task.id: {"task_id": rec.task.id, "state": STATE_CODE[rec.state],
                                  "robot": rec.robot or "", "t": rec.updated_at,
                                  "round": rec.round, "reason": rec.reason}
                    for rec in ledger.list() if rec.state in TERMINAL_STATES}

    def run(self, tasks: Sequence[Task], *, submit_at: float = 1.0, interval: float = 0.6,
            max_sim_s: float = math.inf, stall_sim_s: float = 900.0, check_every: float = 1.0,
            progress: Callable[[int, float], None] | None = None) -> RunResult:
        """Submit `tasks` one every `interval` s from `submit_at`, run until every one has
        ended (or `max_sim_s`, or no task ended for `stall_sim_s`)."""
        wall0 = time.perf_counter()
        for i, task in enumerate(tasks):
            self.bus.at(submit_at + i * interval, self.submit, task)
        n, last = 0, (0, submit_at)
        t = self.bus.now
        while True:
            t = min(t + check_every, max_sim_s)
            self.bus.run_until(t)
            ended = self.ended()
            if ended is not None:
                n = ended
            if progress is not None:
                progress(n, t)
            if t >= max_sim_s:
                break
            if ended is None or t < submit_at + len(tasks) * interval:
                continue
            if n != last[0]:
                last = (n, t)
            if n >= len(tasks) or t - last[1] > stall_sim_s:
                break
        outcomes = self.outcomes()
        return RunResult(outcomes=outcomes, t_end=self.bus.now,
                         wall_s=time.perf_counter() - wall0,
                         conflicts=len(self.monitor.conflicts),
                         excursions=len(self.monitor.excursions), contacts=self.contacts,
                         monitor_samples=self.monitor.samples, events=self.bus.stats.events,
                         messages=self.bus.stats.sent, dropped=self.bus.stats.dropped)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
        if self.events is not None:
            self.events.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> InProcessFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def count_contacts(poses: dict[str, tuple[float, float]], radius: float,
                   touching: set[tuple[str, str]]) -> int:
    """Robot-robot contacts (footprint discs overlapping) that begin now; `touching` keeps
    the pairs in contact, so a contact counts once however long it lasts."""
    names = sorted(poses)
    now: set[tuple[str, str]] = set()
    if len(names) > 1:
        from scipy.spatial import cKDTree
        tree = cKDTree([poses[n] for n in names])
        now = {(names[i], names[j]) for i, j in tree.query_pairs(2.0 * radius - 1e-6)}
    new = len(now - touching)
    touching.clear()
    touching.update(now)
    return new


def run_demo(args: Any, roadmap: Roadmap, exclusion: Exclusion, robots: dict[str, int],
             tasks: list[Task], roadmap_id: str = "") -> int:
    """``fleet-coord demo --in-process``: the demo's workload on the in-process fleet, with
    the demo's summary and report. Exit 0 when every task is done with no collision and
    no reservation violation."""
    from tqdm import tqdm

    from fleet_coord import report
    from fleet_coord.core.event_log import read_log
    from fleet_coord.demo import (SUBMIT_INTERVAL_S, DemoSpec, Recording, summary,
                                  write_report)

    out = args.out
    os.makedirs(out, exist_ok=True)
    event_log = os.path.join(out, "events.jsonl")
    if os.path.exists(event_log):
        os.unlink(event_log)
    per = args.agents_per_process or len(robots)
    print(f"demo: {len(robots)} robots, {len(tasks)} pick-and-drop tasks on "
          f"{os.path.relpath(roadmap.grid.path) if roadmap.grid else 'the roadmap'} "
          f"(seed {args.seed}); in-process fleet (no DDS, virtual clock, ideal kinematic "
          f"robots), {per} agent(s) per process")
    wall0 = time.perf_counter()
    # per_task: the dispatcher and bids before the pool (one award per auction, travel)
    before = getattr(args, "allocation", "pool") == "per_task"
    params = FleetParams(agents_per_process=per, allocation="per_task" if before else "pool",
                         bid_objective="travel" if before else "completion",
                         time_model=getattr(args, "time_model", "auto"))
    bar = tqdm(total=len(tasks), unit="task", desc="tasks ended", leave=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def progress(n: int, sim: float) -> None:
        if n != bar.n:
            bar.update(n - bar.n)
        bar.set_postfix_str(f"sim {sim:.0f} s", refresh=False)

    with InProcessFleet(roadmap, exclusion, robots, seed=args.seed, params=params,
                        event_log=event_log, roadmap_id=roadmap_id) as fleet:
        t_submit = 1.0
        result = fleet.run(tasks, submit_at=t_submit, interval=SUBMIT_INTERVAL_S,
                           max_sim_s=math.inf, progress=progress)
        bar.close()
        final = fleet.final()
        rec = Recording(robots=list(robots), statuses=fleet.statuses, traces=fleet.traces,
                        states=fleet.states)
        rec.final = final
        rec.contacts_robot_robot = fleet.contacts
        m = fleet.monitor
        rec.conflicts = [(c.robot, c.resource, c.t_start, c.t_end, c.existing)
                         for c in m.conflicts]
        rec.excursions = [(e.robot, e.t, e.x, e.y, e.outside_m) for e in m.excursions]
        rec.monitor_samples, rec.monitor_gaps = m.samples, m.gaps
        rec.t_submit = t_submit
        rec.t_end = max((f["t"] for f in final.values()), default=t_submit)
        rec.wall_run_s = result.wall_s
        rec.wall_total_s = time.perf_counter() - wall0
        rec.sim_rtf = (result.t_end - t_submit) / result.wall_s if result.wall_s > 0 else 0.0
        if len(final) < len(tasks):
            rec.ended, rec.stop_reason = "stalled", "no task ended for 900 s of sim time"
        rec.event_log = event_log
    spec = DemoSpec(robots=len(robots), tasks=len(tasks), map=args.map, seed=args.seed,
                    out=out, agents_per_process=per)
    metrics = report.metrics(rec, tasks, spec, read_log([event_log]))
    metrics.update(mode="in-process", real_time_factor_cap=0.0,
                   bus_events=result.events, messages=result.messages)
    ok, files = write_report(rec, roadmap, tasks, metrics, out, "in-process",
                             gif=not args.no_gif)
    files.append("events.jsonl")
    print(summary(metrics))
    print(f"report: {out}/ " + ", ".join(files))
    return 0 if ok else 1
