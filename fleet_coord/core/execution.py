"""One robot's execution as a state machine: observations in, actions out.

`Execution` decides everything a robot agent decides: it bids in Contract Net auctions
(a `contract_net.Participant`), holds its spot (park), plans each leg with SIPP against
its table replica, commits it through the traffic authority, drives it (velocity
commands from `tracking.PathTracker`), dwells at stations, reports task status, yields
its spot to robots that need it, notices when the authority cut its reservations, and
recovers its reports after being cut off from the fleet. It knows no ROS: a node (or an
in-process fleet on a virtual clock) hands it core-typed observations with the time and
turns the actions it returns into messages. Time, the random generator and the yield
search memo are parameters, so runs are repeatable.

Inputs (each returns the actions it caused; `now` is the caller's clock in s):
`tick` (the control loop), `on_odometry`, `on_driver`, `on_table_update`,
`on_reserve_answer`, `on_cfp`, `on_award`, `on_rejection`, `on_task_status`,
`on_robot_lost`, `on_robot_removed`, `on_task_list`; `state_report` is what the robot's state message
says (None while removed or unavailable).

Actions: `Reserve` / `Abandon` (a /traffic/reserve call and giving up on one),
`Velocity` (a command for the driver; (0, 0) stops), `FollowPath` (drive "follow": the
robot drives the committed path itself), `StatusReport` (task status),
`contract_net.Proposal` / `contract_net.Refusal` (the bid), `ListOpenTasks` (a
/fleet/list_tasks call: it heard another robot work on a task whose call for proposals
it missed - it started, restarted or was cut off after it - and needs the task's
stations to yield to that robot).

Drive "follow" (a VDA 5050 vehicle, docs/vda5050.md): the committed path goes out as
`FollowPath`; progress, arrival and lateness come from the pose along the path's route
(core.release); a robot that would overstay the piece it is in re-commits the rest of
its holds later (`_follow`, `_retimed`). A robot whose driver says it is unavailable
(`on_driver`) or whose odometry stops for `driver_timeout` s drops its work and falls
silent (the fleet declares it lost) until it is back.

The robot is NO_POSE until its first odometry, then PARKING until the authority granted
its spot held until further notice, then IDLE or WORKING (a `Job`), and REMOVED for good
once the fleet removed it. A job moves through `Phase`s per station:

    PLAN --commit sent--> COMMIT --granted--> DRIVE --arrived--> DWELL --> PLAN (next)
     ^  \\_ no path / refused: retry with back-off (fails after max_plan_attempts)
     |___ commit answered too late, no answer in time, a stop point after a cut

Every /traffic/reserve call is a `ReserveCall` of one `CallKind`; at most one call of
each kind is current, and its answer (the response, or no answer within
`reserve_timeout`) is handled in one place, `_on_answer`. An answer to a call that is no
longer current (given up, superseded) is never applied. A path is granted only by the
authority's answer to this robot's own request: an update on /traffic/updates naming the
robot is not an answer (anyone can publish one). Every request replaces the robot's holds
from its send time on, so sending one again is idempotent. See docs/execution.md for the
transitions in full.

Authority restarts (docs/core-model.md, "Authority restarts"): when the replica follows a
new incarnation of the authority (`Replica.epoch`), the calls to the old one are given
up and the robot re-asserts what it holds (`CallKind.REASSERT`: its committed path from
now on, or its spot); while the new incarnation recovers its table it asks for nothing
else. Its state reports the epoch its holds come from (`table_epoch`) and the tasks it
finished last (`done`), for the authority's recovery and the dispatcher's reconciliation.
"""
from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Collection, Protocol, Union

import numpy as np
import shapely

from fleet_coord.core import contract_net as cn
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.release import Route, build_route, project, retimed, route_vertices
from fleet_coord.core.replica import Replica, TableUpdate
from fleet_coord.core.revocation import (clip, first_uncovered, legs_done_at,
                                        nearest_free_stop, stop_point)
from fleet_coord.core.roadmap import Exclusion, Roadmap
from fleet_coord.core.sipp import motion_model, sipp
from fleet_coord.core.tasks import Task, TaskState
from fleet_coord.core.time_model import TimeModel
from fleet_coord.core.timed_path import Segment, TimedPath, path_to_segments, stop_prefix
from fleet_coord.core.tracking import (TIME_MODELS, CommandHistory, PathTracker,
                                       containment_error, robot_time_model, turn_time)
from fleet_coord.core.yielding import OpenTask, YieldMemo, needed_by, parked_at, yield_target

__all__ = ["Abandon", "Action", "Activity", "Blocked", "CallKind", "Contact", "Drive",
           "Execution", "ExecutionConfig", "Job", "ListOpenTasks", "Odometry", "Phase",
           "Reserve",
           "ReserveAnswer", "ReserveCall", "StateReport", "StatusReport", "Velocity"]

INF = math.inf
#: How long after a cut-off ends the results of that time are sent again (s after the
#: first table update heard): readers rediscover a returning participant over seconds.
RESEND_DELAYS_S = (0.5, 2.0, 5.0)
#: Recent DONE / FAILED reports kept for re-sending after a cut-off.
RESULTS_KEPT, RESULTS_MAX_AGE_S = 20, 600.0
#: Finished tasks listed in the robot's state (the dispatcher takes a missed DONE there).
DONE_REPORTED = 4
#: m a robot may stand off its vertex and count as on it (parks on the vertex alone)
ON_VERTEX_M = 0.02
#: s the stall margin is rounded up to (a handful of distinct models: the lane-time cache)
STALL_QUANTUM = 0.05
#: s a /fleet/list_tasks call may go unanswered before it is asked again; also the least
#: time between two calls (a task the dispatcher does not list is not asked for again)
LIST_RETRY_S = 5.0
#: ended tasks remembered: a late or repeated ACTIVE of one does not start a listing
ENDED_KEPT = 256
#: A driving robot looks for a shorter way to its station (`Execution._check_detour`) at
#: most every DETOUR_CHECK_S s, only while what remains of its plan exceeds the
#: obstacle-free time by DETOUR_FACTOR x plus DETOUR_SLACK_S s (a way round something
#: that blocked the short way when it planned, not ordinary waits), and takes one that
#: arrives at least DETOUR_GAIN_S s earlier.
DETOUR_CHECK_S, DETOUR_FACTOR, DETOUR_SLACK_S, DETOUR_GAIN_S = 1.0, 1.5, 5.0, 2.0


class Phase(str, Enum):
    """Where the job in hand is on its way to its next station."""
    PLAN = "plan"        # plan the next leg once `retry_at` has come
    COMMIT = "commit"    # the planned leg (and an anchor) is being committed
    DRIVE = "drive"      # tracking the committed timed path
    DWELL = "dwell"      # at a station until `dwell_until`

    def __str__(self) -> str:
        return self.value


class Activity(str, Enum):
    """What the robot's state says it does (RobotState.mode)."""
    IDLE = "IDLE"          # no job
    MOVING = "MOVING"      # driving a committed path
    WAITING = "WAITING"    # a job, standing still (planning, committing, dwelling)


class CallKind(str, Enum):
    """What a /traffic/reserve call asks for."""
    PARK = "park"            # the vertex it stands on, until further notice
    COMMIT = "commit"        # a planned leg, plus its start vertex until further notice
    TRIM = "trim"            # the committed leg alone, from now (drops the anchor)
    RECOMMIT = "recommit"    # what is left after a cut: up to a stop point (and on)
    REASSERT = "reassert"    # what it holds, to a new incarnation of the authority

    def __str__(self) -> str:
        return self.value


@dataclass
class ReserveCall:
    """A /traffic/reserve call in flight: `segments` from `sent` on (replace_from)."""
    kind: CallKind
    seq: int
    sent: float
    segments: tuple[Segment, ...]
    path: TimedPath = field(default_factory=list)   # COMMIT / RECOMMIT: the plan
    drive_segments: tuple[Segment, ...] = ()        # COMMIT: the plan's own holds
    model: TimeModel | None = None                  # COMMIT: the model it was planned with


@dataclass(frozen=True)
class ReserveAnswer:
    """The authority's response to call `seq`."""
    seq: int
    ok: bool
    version: int = 0
    message: str = ""
    epoch: int = 0          # the answering incarnation (ReservationSet.epoch)


@dataclass(frozen=True)
class Odometry:
    """The driver's odometry: pose in the map frame, body twist, `stamp` on the caller's
    clock (s)."""
    x: float
    y: float
    theta: float
    v: float = 0.0
    w: float = 0.0
    stamp: float | None = None


@dataclass(frozen=True)
class StatusReport:
    """A task status: this robot's (an action) or another robot's (an input)."""
    task_id: str
    robot: str
    state: TaskState
    round: int = 0
    progress: float = 0.0
    reason: str = ""
    stamp: float = 0.0
    lamport: int = 0


@dataclass(frozen=True)
class StateReport:
    """The robot's state as published (RobotState)."""
    robot: str
    pose: tuple[float, float, float] | None
    twist: tuple[float, float]
    activity: Activity
    task_id: str
    queued: tuple[str, ...]
    vertex: int | None
    lamport: int
    table_epoch: int = 0                # the incarnation its holds come from (0: none)
    done: tuple[str, ...] = ()          # tasks it finished last, newest first


@dataclass(frozen=True)
class Reserve:
    """Send call `seq`: hold `segments` [(resource, t0, t1)], replacing this robot's
    holds from `replace_from` on."""
    seq: int
    kind: CallKind
    segments: tuple[Segment, ...]
    replace_from: float
    reassert: bool = False   # holds granted by an earlier incarnation (Reserve.reassert)


@dataclass(frozen=True)
class Abandon:
    """Call `seq` is given up: drop its response should it still come."""
    seq: int


@dataclass(frozen=True)
class Velocity:
    v: float
    w: float


@dataclass(frozen=True)
class FollowPath:
    """Drive mode "follow": the robot drives `path` by itself (a VDA 5050 vehicle: the
    node hands it to the robot's master control, which releases it as the robot holds
    it). Sent when a leg is committed and whenever its vertices change."""
    path: TimedPath


@dataclass(frozen=True)
class ListOpenTasks:
    """Ask the dispatcher for the tasks it has not ended (/fleet/list_tasks); the answer
    goes to `Execution.on_task_list` with this `seq`."""
    seq: int


Action = Union[Reserve, Abandon, Velocity, FollowPath, StatusReport, cn.Proposal, cn.Refusal,
               ListOpenTasks]


class Log(Protocol):
    """What the core logs through (an rclpy logger or a `logging.Logger` will do)."""
    def info(self, msg: str, /) -> object: ...
    def warning(self, msg: str, /) -> object: ...
    def error(self, msg: str, /) -> object: ...


@dataclass(frozen=True)
class ExecutionConfig:
    """A robot's limits and the execution's timings (the agent node's parameters)."""
    limits: Limits = field(default_factory=lambda: Limits(max_v=1.0, max_w=2.0, max_acc=2.0,
                                                          max_alpha=6.0))
    start_margin: float = 0.6          # s from planning to the earliest departure
    reserve_timeout: float = 2.0       # s without an answer before a call is sent again
    silence: float = 11.0              # s without a table update: cut off from the fleet
    control_latency: float = 0.05      # s from a command to its effect, beyond odom age
    max_plan_attempts: int = 20        # refused / failed plans per station before FAILED
    capacity_kg: float = INF
    bid_objective: str = "completion"  # contract_net.OBJECTIVES (the dispatcher's pool)
    dwell: float = 0.0                 # s at each station
    yield_check_period: float = 1.0
    yield_wait: float = 30.0           # s waiting for an idle holder of its station
    yield_wait_busy: float = 180.0     # s waiting for a working holder that progresses not
    yield_tabu: float = 30.0           # s a spot it left (or failed to reach) is avoided
    status_period: float = 2.0         # s between repeats of its task's ACTIVE status
    #: how long a path takes (tracking.robot_time_model): "real" - straight runs at full
    #: speed, turns only where the path turns; "stop_and_turn" - every lane at
    #: `plan_speed`, stopping and turning at every vertex (conservative: for robots that
    #: move too far per command for the real-speed model). The agents' parameter defaults
    #: to "auto" (tracking.resolve_time_model: real where the control loop holds it)
    time_model: str = "stop_and_turn"
    #: an idle robot on a station leaves it for a spot that is no station (off by
    #: default: it changes every run's traffic, and the in-process fleet's fault
    #: schedules then reach an open agent-restart bug, docs/execution.md)
    leave_stations: bool = False
    time_margin: float = 0.3           # s the robot may lead or lag its plan (real model)
    #: s the robot's driver keeps running the last command when the agent stops sending
    #: (its command watchdog, `cmd_timeout`, plus one command period: 0.5 s + 50 ms for
    #: every shipped driver at 20 Hz): every command is one it may run on from and still
    #: stop where it must (tracking.run_on_speed, docs/core-model.md); 0: not modelled
    run_on: float = 0.55
    #: wall s a path search may take before it gives up (a re-commit's: 40 % of it); None
    #: for none: the in-process fleet's virtual clock stands still while it plans, and a
    #: wall deadline would make its runs depend on the machine's load
    plan_deadline: float | None = 0.5
    plan_speed: float = 0.0            # m/s (stop_and_turn); 0 = tracking.plan_speed_for
    turn_margin: float = 0.25          # s of control latency budget per turn (stop_and_turn)
    #: "track": velocity commands along the timed path (PathTracker); "follow": the robot
    #: follows the path by itself (FollowPath), progress from its pose
    drive: str = "track"
    #: follow: re-commit later holds when the robot would leave its current piece less
    #: than this many s before the piece's hold ends
    follow_margin: float = 0.5
    #: s without odometry after which the robot is unavailable (it stops speaking for
    #: the robot: the fleet declares it lost); 0 = never
    driver_timeout: float = 0.0
    #: follow: s a robot may make no progress along its path before its task fails
    follow_stall: float = 60.0
    #: s between control-loop ticks (the agent's 1 / control_rate): a longer gap is a
    #: stall of the loop, during which the robot got no commands
    control_period: float = 0.05
    #: track: the most (s) a new path's holds are widened by for the stalls of the
    #: control loop seen in the last `stall_memory` s (`Execution.stall_margin`); 0: off
    stall_margin_max: float = 1.0
    stall_memory: float = 60.0

    def __post_init__(self) -> None:
        if self.time_model not in TIME_MODELS:
            raise ValueError(f"time_model must be one of {', '.join(TIME_MODELS)}, "
                             f"got {self.time_model!r}")
        if self.bid_objective not in cn.OBJECTIVES:
            raise ValueError(f"bid_objective must be one of {', '.join(cn.OBJECTIVES)}, "
                             f"got {self.bid_objective!r}")
        if self.drive not in ("track", "follow"):
            raise ValueError(f"drive must be track or follow, got {self.drive!r}")
        for name in ("start_margin", "control_latency", "dwell", "yield_check_period",
                     "yield_wait", "yield_wait_busy", "yield_tabu", "plan_speed",
                     "turn_margin", "capacity_kg", "time_margin", "follow_margin",
                     "driver_timeout", "follow_stall", "run_on", "stall_margin_max"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and not math.isnan(v)):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if self.stall_margin_max > 10.0:
            raise ValueError(f"stall_margin_max must be at most 10 s, "
                             f"got {self.stall_margin_max!r}")
        for name in ("reserve_timeout", "silence", "status_period", "control_period",
                     "stall_memory"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (isinstance(self.max_plan_attempts, int) and self.max_plan_attempts >= 1):
            raise ValueError(f"max_plan_attempts must be an integer >= 1, "
                             f"got {self.max_plan_attempts!r}")

    @property
    def active_expiry(self) -> float:
        """s after which another robot's open task not heard ACTIVE again is forgotten:
        its owner repeats the status every `status_period` s, so its end was missed."""
        return 4.0 * self.status_period + 1.0


@dataclass
class Blocked:
    """A job's station is held for good by `holder` (parked there, or ending its task
    there): the job waits for it to yield."""
    since: float
    holder_idle_since: float | None = None    # ... while the holder works on no task
    holder_progress: tuple[tuple[str, float], ...] = ()   # how far its tasks were
    holder_moved_at: float | None = None      # ... when that last changed


@dataclass
class Job:
    """The task being executed (or a yield move: `task` None): stations left to visit
    and the phase of the leg to the next one."""
    task: Task | None
    round: int
    stations: list[int]
    dwell: float = 0.0
    phase: Phase = Phase.PLAN
    attempts: int = 0          # refused / failed plans for the current station
    retry_at: float = 0.0
    dwell_until: float = 0.0
    legs_total: int = 1
    blocked: Blocked | None = None

    @property
    def task_id(self) -> str:
        return self.task.id if self.task is not None else ""

    @property
    def progress(self) -> float:
        """Stations reached / stations of the task."""
        return (self.legs_total - len(self.stations)) / self.legs_total


@dataclass
class Contact:
    """Contact with the fleet: cut off after `silence` s without a table update; the
    DONE / FAILED reports of that time are sent again once it hears the fleet (DDS drops
    what a participant sent while a partition outlasted its lease)."""
    silence: float
    heard_at: float | None = None
    cut_off_since: float | None = None
    results: list[StatusReport] = field(default_factory=list)   # recent DONE / FAILED
    resend_at: list[float] = field(default_factory=list)
    resend_since: float = 0.0

    def sent(self, report: StatusReport) -> None:
        kept = [r for r in self.results if report.stamp - r.stamp < RESULTS_MAX_AGE_S]
        self.results = kept[-(RESULTS_KEPT - 1):] + [report]

    def heard(self, now: float) -> float | None:
        """A table update came; returns how long it was cut off if that ends now (the
        results are then sent again a few times while the fleet's readers rediscover it)."""
        since, self.cut_off_since, self.heard_at = self.cut_off_since, None, now
        if since is None:
            return None
        self.resend_at = [now + d for d in RESEND_DELAYS_S]
        self.resend_since = since - 1.0
        return now - since

    def check(self, now: float) -> tuple[bool, list[StatusReport]]:
        """(cut off just now, the results to send again now)."""
        cut = self.heard_at is not None and self.cut_off_since is None \
            and now - self.heard_at > self.silence
        if cut:
            self.cut_off_since = self.heard_at
        if self.resend_at and now >= self.resend_at[0]:
            self.resend_at.pop(0)
            return cut, [r for r in self.results if r.stamp >= self.resend_since]
        return cut, []


@dataclass
class Follow:
    """Drive mode "follow": the committed leg's route (core.release), the holds of its
    pieces (one per piece, as committed or last re-committed), how far the robot is
    along it, the speed it was seen driving, and a pending re-commit."""
    route: Route
    holds: list[Segment]
    s: float = 0.0
    speed: float = 0.0            # m/s seen driving (0: not yet)
    retime_seq: int = -1          # the re-commit that retimes the holds
    retime_first: int = 0
    retime_shift: float = 0.0     # ... by how much (s)
    #: what the pending re-commit holds: "rest" (the rest of the path, later), "stop"
    #: (only the way to the next vertex, where it stops) or "stand" (where it stands, for
    #: good): each the fallback when the one before is refused (`Execution._retimed`)
    retime_kind: str = "rest"
    retry_at: float = 0.0
    moved_at: float | None = None  # when it last got further along its route


@dataclass
class Drive:
    """The committed leg being driven: its tracker (drive "track") or route (drive
    "follow") and timed path, the holds it committed, and the replica version that shows
    them."""
    tracker: PathTracker | None
    path: TimedPath
    segments: list[Segment]
    commit_version: int
    checked_version: int = -1
    follow: Follow | None = None
    #: the time model `path` was planned with (its margin may differ from the robot's
    #: current one): everything derived from the path - tracker, cut, re-commit - uses it
    model: TimeModel = field(kw_only=True)
    #: the shorter way (`Execution._check_detour`): the re-commit asking for it, the
    #: step of `path` it leaves from, the next check's time and the table it last checked
    detour_seq: int = -1
    detour_step: int = 0
    detour_check_at: float = 0.0
    detour_version: int = -1


class Execution:
    """One robot's execution (see the module docstring)."""

    def __init__(self, robot: str, roadmap: Roadmap, exclusion: Exclusion, replica: Replica,
                 config: ExecutionConfig | None = None, *, rng: random.Random | None = None,
                 memo: YieldMemo | None = None, log: Log | None = None) -> None:
        self.robot = robot
        self.roadmap = roadmap
        self.exclusion = exclusion
        self.replica = replica
        self.config = config if config is not None else ExecutionConfig()
        self.rng = rng if rng is not None else random.Random(robot)
        #: the yield checks' searches; agents on replicas of one authority may share one
        self.memo = memo if memo is not None else YieldMemo()
        self.log: Log = log if log is not None else logging.getLogger(f"execution.{robot}")
        cfg = self.config
        self._configured_limits = cfg.limits
        #: how long its paths take and what they hold (core/time_model.py); a robot that
        #: drives its path by itself (follow) has a profile the fleet does not know: it
        #: is planned with the conservative model, slowed to the speed it is seen driving
        self.model = self._make_model(cfg.limits)
        #: the speed its travel-time estimates for yielding run at
        self.plan_speed = self.model.max_v
        #: stop-and-turn: time to turn a quarter before departing, budgeted into every
        #: commit (the real model plans the first turn from the robot's heading)
        self.turn_allowance = turn_time(math.pi / 2, cfg.limits.max_w,
                                        0.7 * cfg.limits.max_alpha) + 0.1 \
            if self.model.drive_ahead else 0.0
        #: what made or showed the robot late, the last `stall_memory` s of it: (when, s)
        #: of each stall of the control loop and each stop left after the plan did
        #: (`stall_margin`)
        self._late: deque[tuple[float, float]] = deque()
        self._tick_at: float | None = None
        self.participant = cn.Participant(robot, self._travel_time, cn.RobotProfile(
            capacity_kg=cfg.capacity_kg, objective=cfg.bid_objective))

        # the robot
        self.pose: tuple[float, float, float] | None = None
        self.twist = (0.0, 0.0)
        self.odom_t: float | None = None          # stamp of the last odometry
        self.here: int | None = None              # vertex stood on / parked at
        self.parked = False                       # its vertex held until further notice
        #: what the park holds: its vertex, or, standing off it, also what it stands on
        self.spot: tuple[int, ...] = ()
        self.settling = False                     # parked off its vertex: `_settle`
        self.removed = False                      # removed from the fleet: stands down
        self.unavailable = False                  # its driver fell silent (driver_timeout)
        self._odom_at: float | None = None        # when the last odometry came (our clock)
        self._driver_down = False                 # the driver said so (on_driver)
        self.commands = CommandHistory()
        self._idle_stop_sent = False
        # its work
        self.queue: list[Task] = []               # awarded, not started
        self._rounds: dict[str, int] = {}         # award round of each queued task
        self.job: Job | None = None
        self.suspended: Job | None = None         # a task job set aside for a yield move
        self.drive: Drive | None = None
        self._last_status = 0.0
        # the traffic authority
        self.calls: dict[CallKind, ReserveCall] = {}   # the current call of each kind
        self._seq = 0
        self._hold_version = 0                    # replica version showing our last grant
        self._holds_epoch = 0                     # the incarnation that granted them
        self._epoch_seen: int | None = None       # the incarnation the replica followed
        self.done: deque[str] = deque(maxlen=DONE_REPORTED)
        self._odd_holds_since: float | None = None
        self.contact = Contact(cfg.silence)
        # the others (for yielding)
        #: the stations of the tasks announced and not ended (from cfps)
        self.task_stations: dict[str, list[int]] = {}
        #: every vertex a task has named as a station (from cfps): shared resources an
        #: idle robot does not park on
        self.stations: set[int] = set()
        #: another robot's open task -> (robot, progress, when last heard ACTIVE)
        self.active: dict[str, tuple[str, float, float]] = {}
        #: as `active`, for tasks whose stations it does not know (their cfp came before
        #: it started, or while it was cut off): asked of the dispatcher (`ListOpenTasks`)
        self.unknown_active: dict[str, tuple[str, float, float]] = {}
        self._ended: dict[str, None] = {}                # recently ended tasks, oldest first
        self._listing: tuple[int, float] | None = None   # (seq, sent) of the call in flight
        self._list_seq = 0
        self._next_listing = 0.0
        #: nothing in `active` / `unknown_active` expires before this (`_expire_active`)
        self._expires_at = INF
        self._tabu: dict[int, float] = {}                # vertex -> avoided until
        self._next_yield_check = 0.0
        self._lamport = 0
        self._out: list[Action] = []

    # -- views ------------------------------------------------------------------------

    @property
    def phase(self) -> Phase | None:
        return self.job.phase if self.job is not None else None

    @property
    def activity(self) -> Activity:
        if self.job is None:
            return Activity.IDLE
        return Activity.MOVING if self.job.phase is Phase.DRIVE else Activity.WAITING

    def open_tasks(self) -> list[OpenTask]:
        """The other robots' open tasks as this robot knows them: where each heads next."""
        out = []
        for tid, (robot, progress, _) in sorted(self.active.items()):
            stations = self.task_stations.get(tid)
            if not stations:
                continue
            k = min(int(progress * len(stations) + 1e-6), len(stations) - 1)
            out.append(OpenTask(tid, robot, stations[k], tuple(stations[k + 1:])))
        return out

    def state_report(self, now: float) -> StateReport | None:
        """What the robot's state message says now; None once removed (it stands down) and
        while its driver is silent (the fleet then declares it lost)."""
        if self.removed or self.unavailable:
            return None
        # a task set aside for a yield move is still this robot's: the dispatcher's
        # reconciliation takes a task its robot stops reporting for lost
        job = self.job if self.job is not None and self.job.task is not None \
            else self.suspended if self.suspended is not None else self.job
        return StateReport(self.robot, self.pose, self.twist, self.activity,
                           job.task_id if job is not None else "",
                           tuple(t.id for t in self.queue), self.here, self._tick_lamport(),
                           self._holds_epoch, tuple(self.done))

    # -- inputs -----------------------------------------------------------------------

    def on_odometry(self, now: float, odom: Odometry) -> list[Action]:
        """A pose and twist of the robot; one with a non-finite number is refused
        (ValueError naming it) and changes nothing: the robot stays where it was known."""
        for name in ("x", "y", "theta", "v", "w", "stamp"):
            value = getattr(odom, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"odometry of {self.robot}: {name} = {value!r}, "
                                 "expected a finite number")
        self.pose = (odom.x, odom.y, odom.theta)
        self.twist = (odom.v, odom.w)
        self.odom_t = odom.stamp
        self._odom_at = now
        if self.here is None or self.unavailable:
            self.here = self._nearest_vertex(odom.x, odom.y)
        if self.unavailable and not self._driver_down:
            self._back(now, "odometry again")
        return self._flush()

    def on_driver(self, now: float, available: bool,
                  limits: Limits | None = None) -> list[Action]:
        """The driver says whether the robot is available (a VDA 5050 master control: the
        vehicle's connection, mode and errors). Unavailable: as after `driver_timeout`
        without odometry, at once. `limits`: what the robot says it can do (a VDA 5050
        factsheet); the robot plans within these and its configured ones, whichever are
        lower (plans in the table keep the speed they were made with)."""
        if limits is not None:
            self._driver_limits(limits)
        self._driver_down = not available
        if not available and not self.unavailable:
            self._gone(now, "its driver reports it unavailable")
        elif available and self.unavailable and self.pose is not None:
            self._back(now, "its driver reports it available")
        return self._flush()

    def _driver_limits(self, said: Limits) -> None:
        own = self._configured_limits
        limits = Limits(*(min(getattr(own, k), getattr(said, k))
                          for k in ("max_v", "max_w", "max_acc", "max_alpha")))
        if limits == self.config.limits:
            return
        self.config = replace(self.config, limits=limits)
        model = self._make_model(limits)
        if model.drive_ahead:   # never faster than it was seen driving
            model = replace(model, max_v=min(self.plan_speed, model.max_v, limits.max_v))
        self.model, self.plan_speed = model, model.max_v
        self.turn_allowance = turn_time(math.pi / 2, limits.max_w,
                                        0.7 * limits.max_alpha) + 0.1 \
            if model.drive_ahead else 0.0
        self.log.info(f"{self.robot}'s driver reports max {said.max_v:g} m/s, "
                      f"{said.max_w:g} rad/s, {said.max_acc:g} m/s^2: planning at "
                      f"{self.plan_speed:.3f} m/s")

    def _make_model(self, limits: Limits) -> TimeModel:
        cfg = self.config
        track = cfg.drive == "track"
        # a robot that follows its path by itself (drive "follow") runs no agent's
        # velocity commands on
        return robot_time_model(limits, self.exclusion.clearance,
                                cfg.time_model if track else "stop_and_turn",
                                margin=cfg.time_margin, turn_margin=cfg.turn_margin,
                                plan_speed=cfg.plan_speed, run_on=cfg.run_on if track else 0.0)

    def _back(self, now: float, why: str) -> None:
        assert self.pose is not None
        self.unavailable = False
        self.here = self._nearest_vertex(self.pose[0], self.pose[1])
        self.log.warning(f"{why}: {self.robot} is back at {self.roadmap.names[self.here]}; "
                         "parking there")

    def _check_driver(self, now: float) -> None:
        """No odometry for `driver_timeout` s: the robot is gone (a VDA 5050 vehicle whose
        connection broke)."""
        timeout = self.config.driver_timeout
        if timeout <= 0 or self.unavailable or self._odom_at is None \
                or now - self._odom_at <= timeout:
            return
        self._gone(now, f"no odometry for {now - self._odom_at:.1f} s")

    def _drop_work(self) -> list[str]:
        """Forget the job, the queue and every pending call; returns the tasks dropped
        (the dispatcher re-announces them)."""
        dropped = ([self.job.task_id] if self.job is not None and self.job.task_id else []) \
            + [t.id for t in self.queue]
        self.job, self.drive, self.suspended = None, None, None
        self.queue.clear()
        for kind in list(self.calls):
            self._abandon(kind)
        return dropped

    def _gone(self, now: float, why: str) -> None:
        """The robot is unavailable: it drops its work (the fleet re-auctions it once it
        declares the robot lost) and stops speaking for the robot until it is back."""
        self.unavailable = True
        dropped = self._drop_work()
        self.parked = False
        self.log.error(f"{self.robot} is unavailable ({why}): silent until it is back "
                       f"(tasks dropped: {dropped or 'none'})")

    def on_table_update(self, now: float, update: TableUpdate) -> list[Action]:
        """An update of the authority: into the replica (shared replicas take it once),
        contact with the fleet, and a new incarnation of the authority noticed (its holds
        re-asserted). Never an answer to a call: only the authority's response is."""
        self.replica.apply(update)
        cut_off = self.contact.heard(now)
        if cut_off is not None:   # (a DONE of an ended task is ignored: resending is safe)
            self.log.warning(f"heard the fleet again after {cut_off:.1f} s; "
                             "re-sending my results")
        epoch = self.replica.epoch
        if epoch is not None and epoch != self._epoch_seen and not self.replica.stale:
            if self._epoch_seen is not None:
                self._restarted(now, self._epoch_seen, epoch)
            self._epoch_seen = epoch
        return self._flush()

    def on_reserve_answer(self, now: float, answer: ReserveAnswer) -> list[Action]:
        """The response to a call; one to a call given up on or superseded is dropped."""
        call = next((c for c in self.calls.values() if c.seq == answer.seq), None)
        if call is not None:
            if answer.ok:
                self._holds_epoch = answer.epoch
            self._on_answer(call, now, answer.ok, answer.version, answer.message)
        return self._flush()

    def _restarted(self, now: float, old: int, new: int) -> None:
        """The authority restarted (a new epoch): what the old incarnation was asked is
        given up (it will never answer), and what the robot holds - its committed path
        from now on, else its spot - is re-asserted to the new one (core/traffic.py)."""
        for kind in list(self.calls):
            self._abandon(kind)
        job, drive = self.job, self.drive
        if job is not None and job.phase is Phase.COMMIT:
            job.phase, job.retry_at = Phase.PLAN, now   # its commit died with the old one
        holds = clip(drive.segments, now) if drive is not None and job is not None and \
            job.phase in (Phase.DRIVE, Phase.DWELL) else []
        if not holds and self.parked and self.here is not None:
            # `spot` is what its last park held; a robot that has driven since stands on
            # its vertex (`here`), which its path's end held for good
            holds = [(r, now, INF) for r in (self.spot if self.settling else (self.here,))]
        self._hold_version = 0
        self.log.warning(f"traffic authority restarted (epoch {old} -> {new}): re-asserting "
                         f"{len(holds)} hold(s)")
        if holds:
            self._send(CallKind.REASSERT, now, holds)

    def on_cfp(self, now: float, task: Task, round: int,
               excluded: Collection[str] = ()) -> list[Action]:
        """A call for proposals: propose the marginal cost, or refuse saying why."""
        try:
            self.task_stations[task.id] = [self.roadmap.vertex(s) for s in task.stations]
            self.stations.update(self.task_stations[task.id])
        except KeyError:
            pass
        self._ended.pop(task.id, None)
        if self.robot in excluded or self.removed:
            return self._flush()
        if self.here is None or self.unavailable:
            # (an unavailable robot is silent: the fleet declares it lost; an award it won
            # would never be confirmed)
            why = "is unavailable" if self.unavailable else "has no odometry yet"
            self._out.append(cn.Refusal(self.robot, task.id, round, cn.RefuseReason.NOT_READY,
                                        f"{self.robot} {why}"))
            return self._flush()
        for s in task.stations:
            try:
                self.roadmap.vertex(s)
            except KeyError as e:
                self._out.append(cn.Refusal(self.robot, task.id, round,
                                            cn.RefuseReason.UNKNOWN_STATION, str(e), s))
                return self._flush()
        self._out.append(self.participant.bid(task, self._plan_state(now), round))
        return self._flush()

    def on_award(self, now: float, robot: str, task_id: str, round: int) -> list[Action]:
        """accept-proposal (for `robot`: only this robot's are taken)."""
        if robot != self.robot or self.removed:
            return self._flush()
        in_hand = next((j for j in (self.job, self.suspended)
                        if j is not None and j.task_id == task_id), None)
        if in_hand is not None:
            # A duplicate award of the task in hand, or it was awarded again in a later
            # round (its confirmation of the first came late, the dispatcher re-auctioned
            # it and it won again): the later round is the one it holds, so a withdrawal
            # of the earlier round arriving after it is ignored.
            in_hand.round = max(in_hand.round, round)
            self.participant.forget(task_id)
            return self._flush()
        if self.unavailable:       # it bid before its driver went: give the task back
            self._status(now, task_id, TaskState.FAILED, round,
                         reason=f"{self.robot} is unavailable")
            return self._flush()
        state = self._plan_state(now)
        state.queue = self.queue   # on_accept_proposal inserts into it in place
        result = self.participant.on_accept_proposal(
            cn.AcceptProposal(self.robot, task_id, round), state)
        if isinstance(result, cn.Failure):
            self._status(now, task_id, TaskState.FAILED, round, reason=result.reason)
        else:
            self._rounds[task_id] = max(self._rounds.get(task_id, 0), round)
            self.log.info(f"awarded {task_id} (round {round}), queue "
                          f"{[t.id for t in self.queue]}")
        return self._flush()

    def on_rejection(self, now: float, robot: str, task_id: str, round: int,
                     reason: str = "") -> list[Action]:
        """reject-proposal (for `robot`); after the accept of the same round it withdraws
        the award (the robot the task was taken from finished it after all)."""
        if robot != self.robot:
            return self._flush()
        if self._holds(task_id) == round:
            self._withdraw(task_id, f"award withdrawn: {reason}")
        else:
            self.participant.on_reject_proposal(cn.RejectProposal(self.robot, task_id, round))
        return self._flush()

    def on_task_status(self, now: float, s: StatusReport) -> list[Action]:
        """Any robot's (or the dispatcher's) task status: who works on what, and how far
        (for yielding); a task it holds that another robot did is dropped."""
        other = bool(s.robot) and s.robot != self.robot
        if s.state is TaskState.DONE and other and self._holds(s.task_id) is not None:
            self._withdraw(s.task_id, f"{s.robot} reported it done")
        if s.state is TaskState.ACTIVE and other:
            if s.task_id in self.task_stations:
                self._heard(self.active, s.task_id, (s.robot, float(s.progress), now))
            elif s.task_id not in self._ended:   # its stations are asked for (`tick`)
                self._heard(self.unknown_active, s.task_id, (s.robot, float(s.progress), now))
        elif s.state in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED):
            self.active.pop(s.task_id, None)
            self.unknown_active.pop(s.task_id, None)
            # a robot's FAILED sends the task back to auction; DONE, CANCELLED and the
            # dispatcher's FAILED (no robot: it gave up) end it
            if s.state is not TaskState.FAILED or not s.robot:
                self.task_stations.pop(s.task_id, None)
                self.participant.forget(s.task_id)
                self._forget_ended(s.task_id)
        return self._flush()

    def on_task_list(self, now: float, seq: int, tasks: Collection[Task]) -> list[Action]:
        """The dispatcher's answer to `ListOpenTasks` `seq`: the tasks it has not ended.
        Their stations are learned; an open task heard ACTIVE meanwhile becomes known
        (`active`: this robot yields to it); one it does not list has ended."""
        if self._listing is None or self._listing[0] != seq:
            return self._flush()   # given up on, or superseded
        self._listing = None
        for task in tasks:
            if task.id in self._ended or task.id in self.task_stations:
                continue   # its end was heard while the answer was on its way
            try:
                stations = [self.roadmap.vertex(s) for s in task.stations]
            except KeyError:
                continue   # (a station not on this robot's map: it never bids for it)
            self.task_stations[task.id] = stations
            self.stations.update(stations)
        for tid, entry in self.unknown_active.items():
            if tid in self.task_stations:
                self._heard(self.active, tid, entry)
                self.log.info(f"learned {tid} of {entry[0]} from the dispatcher's task list")
            else:
                self._forget_ended(tid)
        self.unknown_active.clear()
        return self._flush()

    def _forget_ended(self, task_id: str) -> None:
        self._ended[task_id] = None
        while len(self._ended) > ENDED_KEPT:
            del self._ended[next(iter(self._ended))]

    def _ask_tasks(self, now: float) -> None:
        """Another robot works on a task whose stations this robot does not know: ask the
        dispatcher for its open tasks (one call at a time, at most every LIST_RETRY_S s;
        an unanswered call is asked again). Without them, parked on such a task's station,
        it would never yield it."""
        if self._listing is not None and now - self._listing[1] > LIST_RETRY_S:
            self._listing = None
        if not self.unknown_active or self._listing is not None or now < self._next_listing:
            return
        self._list_seq += 1
        self._listing = (self._list_seq, now)
        self._next_listing = now + LIST_RETRY_S
        self._out.append(ListOpenTasks(self._list_seq))

    def on_robot_lost(self, now: float, robot: str) -> list[Action]:
        """The authority declared `robot` lost: its open tasks go back to auction."""
        for known in (self.active, self.unknown_active):
            for tid, (r, _, _) in list(known.items()):
                if r == robot:
                    del known[tid]
        return self._flush()

    def on_robot_removed(self, now: float, robot: str) -> list[Action]:
        """`robot` was removed from the fleet. This robot: stop, drop everything (the
        dispatcher re-announces its tasks) and stand down for good."""
        if robot != self.robot:
            return self.on_robot_lost(now, robot)
        if self.removed:
            return self._flush()
        self.removed = True
        dropped = self._drop_work()
        self._stop()
        self.log.warning(
            f"{self.robot} was removed from the fleet: stopped and standing down (tasks "
            f"dropped, the dispatcher re-announces them: {dropped or 'none'}); start a new "
            "agent for it to rejoin")
        return self._flush()

    def tick(self, now: float, *, authority_ready: bool = True) -> list[Action]:
        """The control loop (`control_rate` Hz). `authority_ready`: the reserve service is
        there (a robot does not ask to park before)."""
        self._check_driver(now)
        self._observe_tick(now)
        if self.pose is None or self.here is None or self.removed or self.unavailable:
            return self._flush()
        timeout = self.config.reserve_timeout
        for call in list(self.calls.values()):
            if self.calls.get(call.kind) is call and now - call.sent > timeout:
                self._out.append(Abandon(call.seq))
                self._on_answer(call, now, False, 0, "", gave_up=True)
        self._check_contact(now)
        self._expire_active(now)
        self._ask_tasks(now)
        if not self.parked and CallKind.PARK not in self.calls and authority_ready \
                and not self.replica.recovering:
            self._send(CallKind.PARK, now, [(r, now, INF) for r in self._standing_spot()])
        if self.parked and self.settling:
            self._settle()
            return self._flush()
        if self.job is None and self.queue and self.parked:
            self._start(self.queue.pop(0), now)
        self._repeat_status(now)
        if now >= self._next_yield_check and (
                (self.job is None and self.parked) or self._waiting(self.job)):
            # on the period's grid: the agents sharing a memo check in the same tick, on
            # the same table version, and share the searches
            p = self.config.yield_check_period
            self._next_yield_check = (math.floor(now / p) + 1) * p if p > 0 else now
            if self.job is None:
                self._check_footprint(now)
            if self.parked and not (self.job is None and self.config.leave_stations
                                    and self.here in self.stations
                                    and self._leave_station(now)):
                self._maybe_yield(now)   # (a station it found nowhere to leave for too)
        job = self.job
        if job is None:
            if not self._idle_stop_sent:
                self._stop()
                self._idle_stop_sent = True
            return self._flush()
        self._idle_stop_sent = False
        if job.phase is Phase.PLAN and now >= job.retry_at and self.parked:
            # not before it holds where it stands again: a park granted after a commit
            # replaces the committed path (it kept driving a plan it no longer held)
            self._plan(job, now)
        elif job.phase is Phase.DRIVE:
            self._drive(job, now)
        elif job.phase is Phase.DWELL and now >= job.dwell_until:
            self._next_station(job, now)
        if job.phase is not Phase.DRIVE:
            self._stop()
        return self._flush()

    # -- reserve calls --------------------------------------------------------------

    def _send(self, kind: CallKind, now: float, segments: list[Segment],
              path: TimedPath | None = None,
              drive_segments: list[Segment] | None = None) -> ReserveCall:
        """Send `segments` as this robot's holds from `now` on; supersedes the current
        call of the same kind."""
        self._abandon(kind)
        self._seq += 1
        call = ReserveCall(kind, self._seq, now, tuple(segments), list(path or []),
                           tuple(drive_segments or ()))
        self.calls[kind] = call
        self._out.append(Reserve(call.seq, kind, call.segments, now,
                                 reassert=kind is CallKind.REASSERT))
        return call

    def _abandon(self, kind: CallKind) -> None:
        call = self.calls.pop(kind, None)
        if call is not None:
            self._out.append(Abandon(call.seq))

    def _on_answer(self, call: ReserveCall, now: float, ok: bool, version: int,
                   message: str, gave_up: bool = False) -> None:
        """The one place a reserve answer is handled: granted (`ok`), refused, or no
        answer within `reserve_timeout` (`gave_up`: send again, not a refusal)."""
        if self.calls.get(call.kind) is not call:
            return
        del self.calls[call.kind]
        job, drive = self.job, self.drive
        if call.kind is CallKind.PARK:
            spot = self.roadmap.names[call.segments[0][0]]
            if ok:
                self.parked = True
                self.spot = tuple(r for r, _, _ in call.segments)
                self._hold_version = version
                self.settling = self._off_vertex()
                if self.settling:
                    under = ', '.join(self.roadmap.resource_name(r) for r in self.spot[1:])
                    self.log.warning(f"parked at {spot} standing off it: holding "
                                     f"{under or 'nothing else'} too until it has driven "
                                     "onto it")
                else:
                    self.log.info(f"parked at {spot}")
            elif gave_up:   # holding where it stands is idempotent: the next tick asks again
                self.log.warning(f"no answer from /traffic/reserve for "
                                 f"{self.config.reserve_timeout:g} s; asking again")
            else:
                self.log.warning(f"cannot hold my start vertex {spot}: {message}; retrying")
        elif call.kind is CallKind.COMMIT:
            if job is not None and job.phase is Phase.COMMIT:
                self._committed(job, call, now, ok, version, message, gave_up)
        elif call.kind is CallKind.TRIM:
            # refused: part of the path was revoked meanwhile; the cut check deals with it
            # (its re-commit drops the anchor as well)
            if gave_up and drive is not None and job is not None and job.phase is Phase.DRIVE:
                self._send_trim(drive, now)
        elif call.kind is CallKind.RECOMMIT:
            if drive is not None and job is not None and job.phase is Phase.DRIVE:
                if drive.follow is not None and drive.follow.retime_seq == call.seq:
                    self._retimed(drive, call, now, ok, version, message, gave_up)
                elif drive.detour_seq == call.seq:
                    self._detoured(drive, call, now, ok, version, gave_up)
                else:
                    self._recommitted(job, drive, call, now, ok, version, message, gave_up)
        elif call.kind is CallKind.REASSERT:
            if ok:
                self._hold_version = version
            elif gave_up:   # ask the new incarnation again, with what is held by now
                self._restarted(now, self._holds_epoch, self._epoch_seen or 0)
            else:
                # the new incarnation gave what it held to someone else: stop where it
                # is and hold that spot (the cut check would find the path gone too)
                self.log.error(f"the restarted traffic authority refused my holds: "
                               f"{message}; stopping here")
                if job is not None and job.phase is Phase.DRIVE:
                    self._stop_here(job, now)
                else:
                    self.parked = False

    def _committed(self, job: Job, call: ReserveCall, now: float, ok: bool, version: int,
                   message: str, gave_up: bool) -> None:
        if gave_up:
            # A lost request or response. If the authority did grant it, the table says
            # the robot leaves while it stands here: plan again at once, the new commit
            # supersedes it. Not a refusal: no attempt counted.
            self.log.warning(f"no answer from /traffic/reserve for "
                             f"{self.config.reserve_timeout:g} s; planning again")
            job.phase, job.retry_at = Phase.PLAN, now
            return
        if not ok:
            self._retry(job, now, f"reservation refused: {message}")
            return
        # The parking hold was replaced by the path; it parks again at the path's end.
        path = call.path
        model = call.model or self.model
        first_departure = next((t for (v, t), (w, _) in zip(path[1:], path[2:]) if w != v),
                               path[-1][1])
        # Too late to start on time: the stop-and-turn model must still make a quarter
        # turn before the departure; the real model turns from the plan's start on and
        # may lag it by its margin (the tracker runs a little ahead to make up for it).
        late = first_departure - self.turn_allowance if self.model.drive_ahead else \
            path[1][1] + 0.5 * model.margin
        if now > late:
            self.log.warning(f"commit answered {now - first_departure:.2f} s after the "
                             "planned departure; replanning")
            job.phase = Phase.PLAN
            return
        if self.config.drive == "follow":
            drive = Drive(None, list(path), list(call.drive_segments), version,
                          follow=Follow(self._route(path), list(call.drive_segments)),
                          model=model)
            self._out.append(FollowPath(list(path)))
        else:
            drive = Drive(self._tracker(path, model), list(path), list(call.drive_segments),
                          version, model=model)
        self.drive = drive
        self._hold_version = version
        self._abandon(CallKind.RECOMMIT)
        job.phase = Phase.DRIVE
        self._send_trim(drive, now)

    def _send_trim(self, drive: Drive, now: float) -> None:
        """Hold exactly the committed path from now on (drops the commit's anchor)."""
        self._send(CallKind.TRIM, now, clip(drive.segments, now))

    # -- planning -------------------------------------------------------------------

    def _start(self, task: Task, now: float) -> None:
        stations = [self.roadmap.vertex(s) for s in task.stations]
        self.job = Job(task=task, round=self._rounds.pop(task.id, 0), stations=stations,
                       dwell=self.config.dwell, legs_total=len(stations))
        self._status(now, task.id, TaskState.ACTIVE, self.job.round, 0.0)

    def _plan(self, job: Job, now: float) -> None:
        assert self.here is not None
        if self.replica.recovering or CallKind.REASSERT in self.calls:
            job.retry_at = now + 0.2   # a new authority re-learns the table: nothing new yet
            return
        goal = job.stations[0]
        if goal == self.here:
            self._arrived(job, now)
            return
        holder = parked_at(self.replica.table, self.exclusion, goal, self.robot)
        if holder is not None and job.task is not None:
            self._wait_for_holder(job, holder, goal, now)
            return
        job.blocked = None
        t_start = now + self.config.start_margin + self.turn_allowance
        model = self.plan_model(now)
        path = sipp(self.roadmap, self.exclusion, self.replica.table, self.robot, self.here,
                    goal, t_start, model, deadline_s=self.config.plan_deadline,
                    start_heading=self._heading())
        if path is None:
            self._retry(job, now, f"no conflict-free path from {self.roadmap.names[self.here]} "
                                  f"to station {self.roadmap.names[goal]} (it may be occupied)")
            return
        path = [(self.here, now)] + path
        segments = path_to_segments(self.roadmap, self.exclusion, path, model)
        # The anchor: its start vertex stays held until further notice until it knows
        # the answer. Should the answer be late or lost while the authority granted the
        # path, the table then still covers the robot standing here (otherwise it would
        # say the robot left at the planned departure and could give the vertex to
        # someone else); a granted commit is trimmed once the robot drives it.
        self._abandon(CallKind.TRIM)
        call = self._send(CallKind.COMMIT, now, segments + [(self.here, now, INF)], path,
                          segments)
        call.model = model
        job.phase = Phase.COMMIT

    def _wait_for_holder(self, job: Job, holder: str, goal: int, now: float) -> None:
        """A robot holds the station for good: parked there, or heading there as the end
        of its task. It yields (core.yielding) once it is idle; waiting costs no plan
        attempt. The wait is bounded by `yield_wait` s of the holder being idle (it
        should have yielded: nowhere to go, lost) and by `yield_wait_busy` s of its tasks
        not progressing (two working robots waiting for each other; a holder driving to
        the station across a crowded map may take minutes); then the task fails here and
        goes back to auction."""
        cfg = self.config
        name = self.roadmap.names[goal]
        b = job.blocked
        if b is None:
            b = job.blocked = Blocked(since=now)
            self.log.info(f"station {name} is held by {holder}; waiting for it to yield")
        if self._working(holder):
            b.holder_idle_since = None
        elif b.holder_idle_since is None:
            b.holder_idle_since = now
        progress = self._progress_of(holder)
        if b.holder_moved_at is None or progress != b.holder_progress:
            b.holder_progress, b.holder_moved_at = progress, now
        idle = b.holder_idle_since is not None and now - b.holder_idle_since > cfg.yield_wait
        if idle or now - b.holder_moved_at > cfg.yield_wait_busy:
            self._finish(job, TaskState.FAILED, now,
                         f"station {name} stayed held by {holder} for {now - b.since:.0f} s" +
                         (f" ({cfg.yield_wait:g} s while it was idle)" if idle else
                          f", its task stuck for {now - b.holder_moved_at:.0f} s "
                          f"(yield_wait_busy {cfg.yield_wait_busy:g} s)"))
        else:
            job.retry_at = now + 0.3

    def _retry(self, job: Job, now: float, reason: str) -> None:
        """A plan failed or was refused: again after a randomised exponential back-off,
        or fail the job after `max_plan_attempts`."""
        job.attempts += 1
        if job.attempts >= self.config.max_plan_attempts:
            self._finish(job, TaskState.FAILED, now,
                         f"{reason}; gave up after {job.attempts} attempts")
            return
        job.phase = Phase.PLAN
        job.retry_at = now + min(2.0, 0.1 * 1.5 ** job.attempts) * (0.5 + self.rng.random())

    # -- driving --------------------------------------------------------------------

    def _tracker(self, path: TimedPath, model: TimeModel) -> PathTracker:
        return PathTracker(self.roadmap, path, model, self.exclusion.clearance,
                           self.config.limits)

    def _observe_tick(self, now: float) -> None:
        """Record a stall of the control loop: a tick more than half a period late."""
        last, self._tick_at = self._tick_at, now
        if last is None or now <= last:
            return
        late = now - last - self.config.control_period
        if late > 0.5 * self.config.control_period:
            # its last command ran on meanwhile: a turn in place went past its heading by
            # up to as long again, which it must turn back
            self._late.append((now, 2.0 * late))
        while self._late and now - self._late[0][0] > self.config.stall_memory:
            self._late.popleft()

    def stall_margin(self, now: float) -> float:
        """s a new path's holds are widened by, beyond the model's margin: the longest
        stall of the control loop, or the most the robot left a vertex after its plan did,
        in the last `stall_memory` s (rounded up to 0.05 s, at most `stall_margin_max`).
        A stalled loop sends no commands: the driver runs the last one until its watchdog
        stops the robot, which then stands until the loop resumes, and a turn it ran on
        past its heading must be undone - late for its plan by the stall and more. A host
        that starved its loop once is likely to again (docs/core-model.md, step 2)."""
        cap = self.config.stall_margin_max
        if cap <= 0 or self.config.drive != "track":
            return 0.0
        worst = max((late for t, late in self._late
                     if now - t <= self.config.stall_memory), default=0.0)
        return min(cap, math.ceil(worst / STALL_QUANTUM - 1e-9) * STALL_QUANTUM)

    def plan_model(self, now: float) -> TimeModel:
        """The model a path planned now is planned with: the robot's, its margin widened
        by `stall_margin`."""
        extra = self.stall_margin(now)
        return replace(self.model, margin=self.model.margin + extra) if extra > 0 \
            else self.model

    def _route(self, path: TimedPath) -> Route:
        return build_route(self.roadmap, self.exclusion.clearance, route_vertices(path),
                           self.config.limits.max_v)

    def _drive(self, job: Job, now: float) -> None:
        drive = self.drive
        assert drive is not None and self.pose is not None
        if CallKind.RECOMMIT not in self.calls:
            self._check_cut(job, drive, now)
        if job.phase is not Phase.DRIVE:
            return
        if drive.follow is not None:
            self._follow(job, drive, drive.follow, now)
            return
        assert drive.tracker is not None
        self._check_detour(job, drive, now)
        x, y, th = self.pose
        # Act on where the robot will be when this command takes effect (CommandHistory).
        # An odometry stamp far from our clock (a driver on another clock) is not
        # trusted: then the pose is taken as of now.
        t_odom = self.odom_t if self.odom_t is not None and abs(self.odom_t - now) < 1.0 \
            else now
        t_apply = max(now, t_odom) + self.config.control_latency
        x, y, th = self.commands.predict(x, y, th, t_odom, t_apply)
        cmd = drive.tracker.command(x, y, th, t_apply)
        for late in drive.tracker.take_lateness():
            self._late.append((now, late))
        if drive.tracker.overdue(t_apply):
            # it will be outside its holds before it can leave: stop, hold where it
            # stands and plan again from here (a retry: counts as an attempt)
            leg = drive.tracker.legs[drive.tracker.index]
            self.log.warning(f"still at {self.roadmap.names[leg.u]} "
                             f"{t_apply - leg.t_dep:.2f} s after my planned departure; "
                             "stopping and planning again from here")
            self._stop_here(job, now)
            return
        self.commands.record(t_apply, cmd.v, cmd.w)
        self.here = cmd.vertex
        self._out.append(Velocity(float(cmd.v), float(cmd.w)))
        if now - self._last_status > 0.5 and job.task is not None:
            done = job.legs_total - len(job.stations)
            self._status(now, job.task.id, TaskState.ACTIVE, job.round,
                         (done + cmd.progress) / job.legs_total)
        if cmd.arrived:
            self.here = drive.tracker.goal
            self.drive = None
            if self.here == job.stations[0]:
                self._arrived(job, now)
            else:   # a stop point after a cut: plan on from here
                job.phase, job.retry_at = Phase.PLAN, now

    def _follow(self, job: Job, drive: Drive, f: Follow, now: float) -> None:
        """Drive mode "follow": the robot drives by itself; its progress comes from its
        pose, and when it would overstay the piece it is in, the rest of its holds are
        re-committed later (core.release.retimed)."""
        assert self.pose is not None
        x, y, _ = self.pose
        s = project(f.route, x, y, f.s)
        if f.moved_at is None or s > f.s + 1e-3:
            f.moved_at = now
        f.s = s
        if now - f.moved_at > self.config.follow_stall:
            # a vehicle that does not drive what it is given (rejects its orders, paused,
            # an error): the task goes back to auction instead of waiting forever
            self.here = [n.vertex for n in f.route.nodes
                         if n.vertex is not None and n.s <= f.s + 1e-6][-1]
            self.drive = None
            self._abandon(CallKind.RECOMMIT)
            self.parked = False
            self._finish(job, TaskState.FAILED, now, f"{self.robot} made no progress along "
                         f"its path for {now - f.moved_at:.0f} s")
            return
        v = abs(self.twist[0])
        if v > 0.05:   # the speed it really drives at: a slow vehicle is planned for
            seen = min(v, self.config.limits.max_v)
            f.speed = seen if f.speed <= 0 else 0.8 * f.speed + 0.2 * seen
        passed = [n.vertex for n in f.route.nodes if n.vertex is not None and n.s <= f.s + 1e-6]
        self.here = passed[-1] if passed else self.here
        total = f.route.nodes[-1].s
        if now - self._last_status > 0.5 and job.task is not None:
            done = job.legs_total - len(job.stations)
            # the leg counts as done once the robot stopped at its end (arrival), not
            # while it still rolls onto it
            leg = min(f.s / total, 0.99) if total > 0 else 0.0
            self._status(now, job.task.id, TaskState.ACTIVE, job.round,
                         (done + leg) / job.legs_total)
        if f.s >= total - 0.02 and v < 0.02:
            if 0 < f.speed < self.plan_speed:
                self.plan_speed = 0.9 * f.speed
                self.model = replace(self.model, max_v=self.plan_speed)
                self.log.warning(f"{self.robot} drives slower than planned: planning at "
                                 f"{self.plan_speed:.3f} m/s from now on")
            self.here = route_vertices(drive.path)[-1]
            self.drive = None
            if self.here == job.stations[0]:
                self._arrived(job, now)
            else:   # a stop point after a cut: plan on from here
                job.phase, job.retry_at = Phase.PLAN, now
            return
        if CallKind.RECOMMIT in self.calls or now < f.retry_at:
            return
        first = f.route.piece_at(f.s)
        _, t_in, t_out = f.holds[first]
        if not math.isfinite(t_out):
            return
        speed = f.speed if f.speed > 0 else self.config.limits.max_v
        need = f.route.time_at(f.s, f.route.pieces[first].s_out, speed)
        # a piece not entered yet (it waits on the wall before it) is entered at t_in
        start = now if f.s > f.route.pieces[first].s_in + 1e-6 else max(now, t_in)
        late = start + need - t_out + self.config.follow_margin
        if late <= 0:
            return
        shift = late + self.config.follow_margin
        segs = retimed(f.holds, first, now, shift)
        plan = [(v_, t + shift) for v_, t in drive.path]
        self.log.warning(f"behind my holds at {self.roadmap.resource_name(f.route.pieces[first].resource)}: "
                         f"re-committing the rest {shift:.2f} s later")
        call = self._send(CallKind.RECOMMIT, now, segs, plan, segs)
        f.retime_seq, f.retime_first, f.retime_shift, f.retime_kind = call.seq, first, shift, "rest"

    def _retimed(self, drive: Drive, call: ReserveCall, now: float, ok: bool, version: int,
                 message: str, gave_up: bool) -> None:
        """The answer to a re-commit of `_follow`. The rest of the path refused (another
        robot holds part of it from then on: typically one that parked on it for good
        after its hold there ended): it asks for the way to the next vertex only, stops
        there and plans again from there, like a robot stopped by a cut; that refused
        too: for where it stands, for good, and tries the rest again. Either way the
        table says where the robot is, so a robot parked in its way sees that and yields
        (core.yielding); asking for the same path again and again, it left its old holds
        to run out, the last one its goal held for good: the table put it at its goal,
        nobody was in its way, and it stood until `follow_stall`."""
        f = drive.follow
        assert f is not None
        f.retime_seq = -1
        if ok:
            drive.commit_version, drive.checked_version = version, -1
            self._hold_version = version
            drive.segments = list(call.drive_segments)
            if f.retime_kind == "stand":
                # it holds where it stands; `holds` stay the plan it tries to get back to
                f.retry_at = now + 1.0
                return
            if f.retime_kind == "stop":
                f.route = self._route(call.path)
                f.holds = f.holds[:f.retime_first] + list(call.drive_segments)
                self._out.append(FollowPath(list(call.path)))
            else:
                f.holds[f.retime_first:] = list(call.drive_segments)
            drive.path = list(call.path)
            return
        if gave_up:
            return   # `_follow` asks again, from where the robot is by then
        if f.retime_kind == "rest":
            stop = self._retime_to_stop(drive, f, now)
            if stop is not None:
                self.log.warning(f"cannot hold my path later: {message}; stopping at "
                                 f"{self.roadmap.names[stop]} instead, to plan again from "
                                 "there")
                return
        if f.retime_kind != "stand":
            self.log.warning(f"cannot hold my path later: {message}; holding where I "
                             "stand, trying again")
            self._retime_stand(f, now)
            return
        self.log.error(f"cannot hold my path later nor where I stand: {message}; "
                       "trying again")
        f.retry_at = now + 0.5

    def _retime_to_stop(self, drive: Drive, f: Follow, now: float) -> int | None:
        """Re-commit, as late as the refused re-commit, only the way to the next vertex
        ahead, held there for good: the robot stops there (`_follow` then plans from
        there). The vertex; None when it ends the path (nothing shorter to ask for)."""
        route, first, shift = f.route, f.retime_first, f.retime_shift
        ahead = [i for i, n in enumerate(route.nodes) if n.vertex is not None
                 and n.s > f.s + 1e-6]
        if not ahead or ahead[0] == len(route.nodes) - 1:
            return None
        s_stop = route.nodes[ahead[0]].s
        last = next(k for k in range(first, len(route.pieces))
                    if route.pieces[k].s_out >= s_stop - 1e-6)
        segs = retimed(f.holds, first, now, shift)[:last - first + 1]
        r, t0, _ = segs[-1]
        segs[-1] = (r, t0, INF)
        # the timed path up to its arrival there: the route's vertex `target` (waits
        # do not count)
        target = sum(1 for n in route.nodes[:ahead[0]] if n.vertex is not None)
        plan: TimedPath = []
        for v_, t in drive.path:
            if plan and plan[-1][0] != v_:
                target -= 1
            plan.append((v_, t + shift))
            if target == 0:
                break
        call = self._send(CallKind.RECOMMIT, now, segs, plan, segs)
        f.retime_seq, f.retime_kind = call.seq, "stop"
        return plan[-1][0]

    def _retime_stand(self, f: Follow, now: float) -> None:
        """Hold, from now on for good, the piece the robot is in (waiting on the wall
        before one: the piece behind the wall, which it has not left)."""
        k = f.retime_first
        if k > 0 and f.s <= f.route.pieces[k].s_in + 1e-6:
            k -= 1
        segs = [(f.route.pieces[k].resource, now, INF)]
        call = self._send(CallKind.RECOMMIT, now, segs, [], segs)
        f.retime_seq, f.retime_kind = call.seq, "stand"

    def _legs_driven(self, drive: Drive) -> int:
        if drive.follow is not None:
            f = drive.follow
            return sum(1 for n in f.route.nodes[1:] if n.vertex is not None
                       and n.s <= f.s + 1e-6) + int(f.s > 0 and any(
                           n.vertex is not None and n.s > f.s + 1e-6 for n in f.route.nodes))
        assert drive.tracker is not None
        return drive.tracker.index + int(drive.tracker.driving)

    def _check_cut(self, job: Job, drive: Drive, now: float) -> None:
        """Did the authority take part of the committed plan away (revocation)? Then stop
        before the cut, and go on from there when SIPP finds a way."""
        rep = self.replica
        # A stale replica (a delta lost, the next snapshot up to snapshot_period away) still
        # holds what it applied, the authority's word at its version: a cut in it is real.
        # Only another incarnation's table (a restart) says nothing about these holds.
        if (rep.stale and rep.epoch != self._holds_epoch) or \
                rep.version < drive.commit_version or rep.version == drive.checked_version:
            return
        drive.checked_version = rep.version
        cut = first_uncovered(rep.table, self.robot, drive.segments, now)
        if cut is None:
            return
        path = drive.path
        model = drive.model
        # at real speed the plan passes the end of the lane it drives: it may still stop
        # there when it can brake in time (else it would find no stop point at all)
        brake_ahead = drive.tracker is not None and self.pose is not None and \
            drive.tracker.can_stop_ahead(self.pose[0], self.pose[1], self.twist[0],
                                         self.config.control_latency)
        k = stop_point(rep.table, self.roadmap, self.exclusion, self.robot, path,
                       model, cut, self._legs_driven(drive), brake_ahead=brake_ahead)
        name = self.roadmap.names
        if k is None:
            k = nearest_free_stop(rep.table, self.roadmap, self.exclusion, self.robot, path,
                                  model, cut, self._legs_driven(drive),
                                  brake_ahead=brake_ahead)
            if k is not None:
                self.log.warning(f"my reservations were revoked from t={cut:.2f}, too soon "
                                 "to stop within what I still hold: braking to the nearest "
                                 "stop, which is free")
        if k is None:
            self.log.error(f"my reservations were revoked from t={cut:.2f} and I cannot "
                           "reach a free stop point; stopping here")
            self._stop_here(job, now)
            return
        # (where it would have passed step k at speed, it brakes into it)
        prefix = stop_prefix(self.roadmap, self.exclusion, path, k, model)
        assert prefix is not None   # stop_point only picks steps it can stop at
        self.log.warning(f"my reservations were revoked from t={cut:.2f}: stopping at "
                         f"{name[prefix[-1][0]]} and replanning")
        # Stop there whatever the authority answers: everything up to it is still ours.
        self._set_path(drive, prefix)
        drive.segments = clip(path_to_segments(self.roadmap, self.exclusion, prefix,
                                               model), now)
        plan = prefix
        goal = job.stations[0]
        v, t_v = prefix[-1]
        if v != goal:
            t0 = max(t_v, now + self.config.start_margin + self.turn_allowance)
            # the continuation is part of the same path: the same model
            cont = sipp(self.roadmap, self.exclusion, rep.table, self.robot, v, goal, t0,
                        model, deadline_s=self._deadline(0.4),
                        start_heading=self._arrival_heading(prefix))
            if cont is not None:
                plan = prefix + [(v, t0)] + cont[1:] if t0 > t_v else prefix + cont[1:]
        self._send_recommit(drive, plan, now)

    def _check_detour(self, job: Job, drive: Drive, now: float) -> None:
        """A robot driving a long way round - planned while the short way was blocked
        (a lost robot's block, a robot parked there, traffic) - takes the short way once
        it is free, instead of driving the whole detour. From the first step of its path
        that it reaches no sooner than `reserve_timeout` s from now and where it stops
        anyway (the prefix up to there keeps its holds: nothing it drives changes before
        the answer comes), SIPP plans to the station again; a path arriving at least
        DETOUR_GAIN_S earlier is re-committed: that prefix + the new way. Refused, it
        drives on as committed. Track mode only: a VDA 5050 vehicle's released base
        cannot be changed."""
        cfg, rep = self.config, self.replica
        if now < drive.detour_check_at or rep.stale or rep.version == drive.detour_version \
                or CallKind.RECOMMIT in self.calls or CallKind.TRIM in self.calls \
                or drive.path[-1][0] != job.stations[0]:
            return
        drive.detour_check_at = now + DETOUR_CHECK_S
        drive.detour_version = rep.version
        path, goal = drive.path, job.stations[0]
        done, legs = legs_done_at(path), self._legs_driven(drive)
        k = next((k for k in range(1, len(path) - 1)
                  if done[k] > legs and path[k][1] >= now + cfg.reserve_timeout), None)
        if k is None:
            return
        v, t_v = path[k]
        t_end = path[-1][1]
        free = float(self._times_to(goal)[v])
        if not t_end - t_v > DETOUR_FACTOR * free + DETOUR_SLACK_S:
            return
        model = drive.model   # the continuation is part of the path
        prefix = stop_prefix(self.roadmap, self.exclusion, path, k, model)
        if prefix is None or prefix[-1][1] != t_v:
            return   # it passes v at speed: stopping there would change what it drives
        cont = sipp(self.roadmap, self.exclusion, rep.table, self.robot, v, goal, t_v,
                    model, deadline_s=self._deadline(0.4),
                    start_heading=self._arrival_heading(prefix))
        if cont is None or cont[-1][1] > t_end - DETOUR_GAIN_S:
            return
        plan = prefix + cont[1:]
        # the new way must start from a stop at v too (not pass it at speed: then the
        # prefix's holds and profile would change under the robot)
        again = stop_prefix(self.roadmap, self.exclusion, plan, k, model)
        if again is None or again[-1][1] != t_v:
            return
        name = self.roadmap.names
        self.log.info(f"a shorter way to {name[goal]} is free: from {name[v]} at "
                      f"t={t_v:.2f}, there at t={cont[-1][1]:.2f} instead of {t_end:.2f}")
        segs = clip(path_to_segments(self.roadmap, self.exclusion, plan, model), now)
        call = self._send(CallKind.RECOMMIT, now, segs, plan, segs)
        drive.detour_seq, drive.detour_step = call.seq, k

    def _detoured(self, drive: Drive, call: ReserveCall, now: float, ok: bool,
                  version: int, gave_up: bool) -> None:
        drive.detour_seq = -1
        if not ok and not gave_up:
            return   # taken meanwhile: it drives on as committed (its holds unchanged)
        done = legs_done_at(drive.path)
        if ok and self._legs_driven(drive) < done[drive.detour_step] \
                and now < drive.path[drive.detour_step][1]:
            drive.commit_version, drive.checked_version = version, -1
            self._hold_version = version
            self._set_path(drive, call.path)
            drive.segments = list(call.drive_segments)
            return
        # no answer in time, or granted when the robot had come too close to leave the
        # old path there: hold the path it drives again (replaces a late grant)
        self._send_trim(drive, now)

    def _deadline(self, share: float) -> float | None:
        d = self.config.plan_deadline
        return None if d is None else share * d

    def _send_recommit(self, drive: Drive, plan: TimedPath, now: float) -> None:
        """Hold `plan` (the drive's path, changed) from now on (replaces everything from
        now, the anchor too)."""
        segs = clip(path_to_segments(self.roadmap, self.exclusion, plan,
                                     drive.model), now)
        self._abandon(CallKind.TRIM)
        self._send(CallKind.RECOMMIT, now, segs, plan, segs)

    def _recommitted(self, job: Job, drive: Drive, call: ReserveCall, now: float, ok: bool,
                     version: int, message: str, gave_up: bool) -> None:
        plan, stop = call.path, drive.path
        if gave_up:
            # lost: ask again for what it drives now (the stop point; a given-up call the
            # authority did grant is superseded)
            self.log.warning(f"no answer to my re-commit for "
                             f"{self.config.reserve_timeout:g} s; sending it again")
            self._send_recommit(drive, stop, now)
            return
        if ok:
            drive.commit_version, drive.checked_version = version, -1
            self._hold_version = version
            if len(plan) > len(stop):
                # the continuation: only if the robot has not passed the stop point yet
                # and the next departure is still ahead
                departures = [t for (u, _), (w, t) in zip(plan[len(stop) - 1:],
                                                          plan[len(stop):]) if w != u]
                if self._legs_driven(drive) <= legs_done_at(stop)[-1] and departures:
                    self._set_path(drive, plan)
            drive.segments = list(call.drive_segments)
            return
        if len(plan) > len(stop):
            self._send_recommit(drive, stop, now)   # at least the stop point
            return
        self.log.error(f"cannot hold my stop point: {message}; stopping here")
        self._stop_here(job, now)

    def _set_path(self, drive: Drive, path: TimedPath) -> None:
        if drive.follow is not None:   # the robot goes on along the same vertices
            f = drive.follow
            f.route = self._route(path)
            f.holds = path_to_segments(self.roadmap, self.exclusion, path,
                                       drive.model)
            drive.path = list(path)
            self._out.append(FollowPath(list(path)))
            return
        assert drive.tracker is not None
        # follow `path` from where the tracker is (same leg, direction, command period)
        new = self._tracker(path, drive.model)
        new.take_over(drive.tracker)
        drive.tracker, drive.path = new, list(path)

    def _stop_here(self, job: Job, now: float) -> None:
        self._stop()
        if self.drive is not None and self.drive.tracker is not None:
            self.here = self.drive.tracker.vertex
        self.drive = None
        self._abandon(CallKind.RECOMMIT)
        self._abandon(CallKind.TRIM)
        job.phase, job.retry_at = Phase.PLAN, now + 0.5
        self.parked = False   # hold where it stands again before anything else

    def _stop(self) -> None:
        self._out.append(Velocity(0.0, 0.0))
        self.commands.clear()

    def _standing_spot(self) -> list[int]:
        """What the robot holds when it parks: its vertex when the vertex's star holds its
        footprint; off it - stopped on a lane by its driver when its agent died, or braked
        short of a stop - also every resource near the vertex its footprint overlaps (it
        then settles onto the vertex, `_settle`). A vertex alone would leave it standing
        outside what it holds while others are granted the lane it stands on."""
        if not self._off_vertex():
            assert self.here is not None
            return [self.here]
        assert self.pose is not None and self.here is not None
        x, y, _ = self.pose
        ex, here = self.exclusion, self.here
        disc = shapely.Point(x, y).buffer(ex.footprint.bounding_radius, quad_segs=8)
        near = {here, *(int(r) for r in ex.of(here))}
        near |= {int(q) for r in list(near) for q in ex.of(r)}
        return [here, *sorted(r for r in near - {here}
                              if shapely.intersection(ex.geometry(r), disc).area > 1e-6)]

    def _off_vertex(self) -> bool:
        """Whether the robot stands outside its vertex's star (track mode: a robot that
        follows its path by itself is placed by its own controller)."""
        assert self.here is not None
        if self.pose is None or self.config.drive != "track":
            return False
        x, y, _ = self.pose
        return containment_error(self.exclusion, [(self.here, 0.0, INF)], x, y,
                                 0.0) > ON_VERTEX_M

    def _settle(self) -> None:
        """Parked off its vertex, holding the vertex and what it stands on: drive straight
        onto the vertex (inside those holds), slowly; there, park on the vertex alone."""
        assert self.pose is not None and self.here is not None
        x, y, theta = self.pose
        vx, vy = (float(c) for c in self.roadmap.pos[self.here])
        d = math.hypot(vx - x, vy - y)
        if d <= ON_VERTEX_M / 2:
            self._stop()
            self.settling = False
            self.parked = False   # the next tick parks on the vertex alone
            return
        lim = self.config.limits
        err = math.remainder(math.atan2(vy - y, vx - x) - theta, math.tau)
        w = max(-0.5 * lim.max_w, min(0.5 * lim.max_w, 4.0 * err))
        # facing the vertex first: it drives along the lane, not across it
        v = 0.0 if abs(err) > 0.02 else min(0.3 * lim.max_v, max(0.05, 1.5 * d))
        self._out.append(Velocity(v, w))

    # -- stations and the end of a job ----------------------------------------------

    def _arrived(self, job: Job, now: float) -> None:
        job.stations.pop(0)
        job.attempts = 0
        job.phase, job.dwell_until = Phase.DWELL, now + job.dwell
        if job.stations and job.task is not None:
            # tell the others where it heads next (they may be parked there)
            self._status(now, job.task.id, TaskState.ACTIVE, job.round, job.progress)

    def _next_station(self, job: Job, now: float) -> None:
        if job.stations:
            job.phase, job.retry_at = Phase.PLAN, now
        else:
            self._finish(job, TaskState.DONE, now)

    def _finish(self, job: Job, state: TaskState, now: float, reason: str = "") -> None:
        self.job = None
        if job.task is None:   # a yield move: nobody to report to
            if state is TaskState.FAILED:
                self.log.warning(f"could not yield: {reason}")
                if job.stations:   # pick another spot next time
                    self._tabu[job.stations[0]] = now + self.config.yield_tabu
            resumed, self.suspended = self.suspended, None
            if resumed is not None:   # back to the task it waited in
                resumed.phase, resumed.retry_at = Phase.PLAN, 0.0
                self.job = resumed
                self.log.info(f"resuming {resumed.task_id} after yielding")
            return
        self._status(now, job.task.id, state, job.round,
                     1.0 if state is TaskState.DONE else 0.0, reason)
        if state is TaskState.DONE:
            self.done.appendleft(job.task.id)
        if self.config.leave_stations:
            self._next_yield_check = now   # idle now: leave the station at the next tick
        if state is TaskState.FAILED:
            self.log.warning(f"task {job.task.id} failed: {reason}")

    def _holds(self, task_id: str) -> int | None:
        """The round it was awarded `task_id` in, if it is queued or being done here."""
        if self.job is not None and self.job.task_id == task_id:
            return self.job.round
        if self.suspended is not None and self.suspended.task_id == task_id:
            return self.suspended.round
        if any(t.id == task_id for t in self.queue):
            return self._rounds.get(task_id, 0)
        return None

    def _withdraw(self, task_id: str, why: str) -> None:
        """Drop a task someone else has done: from the queue, or the current job. A job
        whose commit is in flight or that is driving finishes the leg it committed (as a
        move without a task: nobody hears of it) and parks at its end, so the robot stays
        inside what it holds; otherwise it stops being a job at once."""
        if any(t.id == task_id for t in self.queue):
            self.queue[:] = [t for t in self.queue if t.id != task_id]
            self._rounds.pop(task_id, None)
            self.log.info(f"dropped queued {task_id}: {why}")
            return
        if self.suspended is not None and self.suspended.task_id == task_id:
            self.suspended = None   # the yield move goes on; nothing to resume after it
            self.log.info(f"dropped {task_id} (set aside while yielding): {why}")
            return
        job = self.job
        if job is None or job.task_id != task_id:
            return
        if job.phase in (Phase.COMMIT, Phase.DRIVE) and job.stations:
            self.job = Job(task=None, round=0, stations=[job.stations[0]], phase=job.phase)
        else:
            self.job = None
            self.parked = False   # hold where it stands again (idempotent)
        self.log.info(f"dropped {task_id} (it was {job.phase}): {why}")

    # -- task status and contact with the fleet -------------------------------------

    def _tick_lamport(self) -> int:
        self._lamport += 1
        return self._lamport

    def _status(self, now: float, task_id: str, state: TaskState, rnd: int,
                progress: float = 0.0, reason: str = "") -> None:
        report = StatusReport(task_id, self.robot, state, rnd, float(progress), reason, now,
                              self._tick_lamport())
        self._out.append(report)
        if state is TaskState.ACTIVE:
            self._last_status = now
        elif state in (TaskState.DONE, TaskState.FAILED):
            self.contact.sent(report)

    def _repeat_status(self, now: float) -> None:
        """Say again that it works on its task (ACTIVE, how far) every `status_period` s.
        The others yield on what they last heard: one that missed the status, or dropped
        it when this robot was declared lost for a moment, would otherwise never learn
        that this robot waits for its spot."""
        job = self.job if self.job is not None and self.job.task is not None \
            else self.suspended
        if job is None or job.task is None or \
                now - self._last_status < self.config.status_period:
            return
        self._status(now, job.task.id, TaskState.ACTIVE, job.round, job.progress)

    def _check_contact(self, now: float) -> None:
        cut, again = self.contact.check(now)
        if cut and self.contact.heard_at is not None:
            self.log.warning(f"no word from the traffic authority for "
                             f"{now - self.contact.heard_at:.1f} s")
        self._out.extend(again)

    # -- the others, yielding ---------------------------------------------------------

    def _expire_active(self, now: float) -> None:
        """Forget the open tasks of others not heard of for `active_expiry` s. A working
        agent repeats its ACTIVE every `status_period` s, so only a task whose end this
        agent missed goes quiet (a reliable reader still drops messages when its history
        overflows while its process is stalled)."""
        if now <= self._expires_at:
            return   # (every tick of every agent: a scan of a 200-robot fleet's tasks)
        expiry, soonest = self.config.active_expiry, INF
        for known in (self.active, self.unknown_active):
            for tid, (_, _, heard) in list(known.items()):
                if now - heard > expiry:
                    del known[tid]
                else:
                    soonest = min(soonest, heard)
        self._expires_at = soonest + expiry

    def _heard(self, known: dict[str, tuple[str, float, float]], task_id: str,
               entry: tuple[str, float, float]) -> None:
        known[task_id] = entry
        self._expires_at = min(self._expires_at, entry[2] + self.config.active_expiry)

    def _working(self, robot: str) -> bool:
        """`robot` is executing a task (heard ACTIVE, not yet ended, lost or removed)."""
        return any(r == robot for r, _, _ in self.active.values())

    def _progress_of(self, robot: str) -> tuple[tuple[str, float], ...]:
        """How far along `robot` is with the tasks it works on: (task, progress) pairs."""
        return tuple(sorted((tid, round(p, 3)) for tid, (r, p, _) in self.active.items()
                            if r == robot))

    @staticmethod
    def _waiting(job: Job | None) -> bool:
        """A task job standing still until its next station frees up: it waits on a robot
        holding the station, or its plans were refused. Such a robot yields its own spot
        like an idle one (two robots waiting on each other's spots would otherwise block
        until `yield_wait_busy`), and resumes the task after the move."""
        return job is not None and job.task is not None and job.phase is Phase.PLAN \
            and (job.blocked is not None or job.attempts > 0)

    def _maybe_yield(self, now: float) -> None:
        assert self.here is not None
        tasks = self.open_tasks()
        if not tasks or self.replica.stale:
            return
        table = self.replica.table
        need = needed_by(self.robot, self.here, tasks, table, self.roadmap, self.exclusion,
                         now, self.plan_speed, memo=self.memo)
        if need is None:
            return
        tabu = [v for v, until in self._tabu.items() if until > now]
        target = yield_target(self.robot, self.here, tasks, table, self.roadmap,
                              self.exclusion, now, self.plan_speed, tabu=tabu, memo=self.memo)
        name = self.roadmap.names
        if target is None:
            self.log.warning(f"{need.robot} needs my spot {name[self.here]} for "
                             f"{need.task_id} but there is nowhere to yield to")
            return
        self.log.info(f"yielding {name[self.here]} to {need.robot} ({need.task_id}, "
                      f"heading to {name[need.goal]}): moving to {name[target]}")
        self._tabu[self.here] = now + self.config.yield_tabu
        if self.job is not None:   # a task waiting for its station: resumed after the move
            self.suspended = self.job
        self.job = Job(task=None, round=0, stations=[target])

    def _leave_station(self, now: float) -> bool:
        """An idle robot standing on a station (a vertex some task names) leaves it for
        the next robot: it parks at the nearest vertex that is no station and not in the
        way of an open task (`yield_target`), instead of waiting there until someone
        needs it. Stays when there is no such spot (False: yielding still moves it when
        needed, to any spot off the open tasks)."""
        assert self.here is not None
        if self.replica.stale:
            return False
        tabu = {v for v, until in self._tabu.items() if until > now} | self.stations
        target = yield_target(self.robot, self.here, self.open_tasks(), self.replica.table,
                              self.roadmap, self.exclusion, now, self.plan_speed, tabu=tabu,
                              memo=self.memo)
        if target is None:
            return False
        name = self.roadmap.names
        self.log.info(f"done at station {name[self.here]}: leaving it for the next robot, "
                      f"parking at {name[target]}")
        self.job = Job(task=None, round=0, stations=[target])
        return True

    def _check_footprint(self, now: float) -> None:
        """An idle parked robot should hold exactly its spot for good in the table. It may
        hold more: the traffic authority blocks, for good, everything a robot held around
        the time it was declared lost (a stall of its process is enough), and an idle robot
        never commits again to replace that block; nobody else can take those resources
        and nothing would ever free them. Or less: its spot was cut. Either way, seen on
        two checks in a row (the replica may lag a call by a moment), it parks again: a
        hold of its spot from now on, replacing everything else it holds."""
        if self.replica.stale or CallKind.PARK in self.calls or \
                self.replica.version < self._hold_version:
            return   # the replica does not show our last hold yet
        mine = [r for r in self.replica.table.reservations(self.robot) if r.t_end > now]
        odd = [r for r in mine if r.t_end == INF and r.resource != self.here]
        if odd or not any(r.resource == self.here and r.t_end == INF for r in mine):
            if self._odd_holds_since is None:
                self._odd_holds_since = now
                return
            held = ', '.join(self.roadmap.resource_name(r.resource) for r in odd)
            assert self.here is not None
            self.log.warning(f"idle at {self.roadmap.names[self.here]} but holding "
                             f"{held or 'not my spot'} for good: parking again")
            self.parked = False
        self._odd_holds_since = None

    # -- bidding ----------------------------------------------------------------------

    def _times_to(self, goal: int) -> list[float]:
        """The time the model needs from every vertex to stand at `goal`, turns and stops
        counted (no traffic): what bids and the plan's end estimate."""
        return motion_model(self.roadmap, self.exclusion, self.model).vertex_times_to(goal)

    def _travel_time(self, a: str, b: str) -> float:
        va, vb = self.roadmap.vertex(a), self.roadmap.vertex(b)
        return float(self._times_to(vb)[va])

    def _plan_state(self, now: float) -> cn.RobotState:
        """The plan as the Participant sees it: where the current job ends and when."""
        assert self.here is not None
        names = self.roadmap.names
        if self.job is not None:
            position = names[self.job.stations[-1]] if self.job.stations else names[self.here]
            remaining = 0.0
            here = self.drive.tracker.next_vertex if self.drive is not None \
                and self.drive.tracker is not None else self.here
            for v in self.job.stations:
                remaining += float(self._times_to(v)[here])
                here = v
            free_at = now + remaining
        else:
            position, free_at = names[self.here], now
        return cn.RobotState(position=position, queue=list(self.queue), free_at=free_at,
                             now=now)

    def _heading(self) -> float | None:
        """The robot's heading for the first turn of a plan (the stop-and-turn model
        budgets that turn as `turn_allowance` instead)."""
        return None if self.model.drive_ahead or self.pose is None else self.pose[2]

    def _arrival_heading(self, path: TimedPath) -> float | None:
        """The heading a robot stops in at the end of `path`: along its last lane (the
        model's heading classes make driving it backwards the same)."""
        moves = [(u, v) for (u, _), (v, _) in zip(path, path[1:]) if u != v]
        if self.model.drive_ahead or not moves:
            return self._heading()
        u, v = moves[-1]
        d = self.roadmap.pos[v] - self.roadmap.pos[u]
        return math.atan2(float(d[1]), float(d[0]))

    def _nearest_vertex(self, x: float, y: float) -> int:
        pos = np.asarray(self.roadmap.pos)
        d = (pos[:, 0] - x) ** 2 + (pos[:, 1] - y) ** 2
        return int(d.argmin())

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out
