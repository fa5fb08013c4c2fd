"""FIPA Contract Net: the task auction, as explicit state machines.

Smith, "The Contract Net Protocol", IEEE Trans. Computers 1980; FIPA Contract Net
Interaction Protocol Specification SC00029H (2002). The messages keep the spec's names::

    Initiator (dispatcher)                      Participant (robot)
      cfp(task, round, deadline)  ------------->  bid(): marginal cost of the task
                                  <-------------  propose(cost, eta) | refuse(reason)
      tick() at the deadline, or once every
      participant answered: lowest cost wins
      accept-proposal             ------------->  insert into the queue at the bid position
      reject-proposal (the others)------------->  forget the bid
                                  <-------------  inform-done | failure

One `Initiator` runs one auction round of one task:
``CFP_SENT -> EVALUATING -> AWARDED | NO_BIDS | CANCELLED``. After NO_BIDS the dispatcher
asks `RetryPolicy.after_no_bids` whether to announce again (exponential back-off) or to
fail the task with the reason the robots gave. A `failure` after the award, or a winner
that goes silent, sends the task back to the ledger's QUEUED state and into a new round.

`Participant` is the robot's side: a bid is the *marginal* cost of inserting the task into
the robot's queue at the cheapest position (queue order kept), and the robot refuses what
it cannot do: UNREACHABLE (a station it has no path to), PAYLOAD, BUSY (queue full),
BATTERY (it would fall below its reserve with no charger in reach), DEADLINE.

`sequential_auction` allocates a batch of open tasks with the same participant logic
(sequential single-item auctions, Koenig et al. AAAI 2006 / Lagoudakis et al. RSS 2005).

Pure core: no rclpy, time is a parameter, no randomness.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal, Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from fleet_coord.core.tasks import KINDS, Task

__all__ = [
    "Cfp", "Proposal", "Refusal", "AcceptProposal", "RejectProposal", "InformDone",
    "Failure", "RefuseReason", "InitiatorState", "Initiator", "ContractNetError",
    "RetryPolicy", "Retry", "GiveUp", "explain_no_bids",
    "RobotProfile", "RobotState", "Insertion", "Participant", "route_time", "OBJECTIVES",
    "Assignment", "sequential_auction",
]

TravelTime = Callable[[str, str], float]
INF = math.inf
#: What a bid measures (RobotProfile.objective).
OBJECTIVES = ("travel", "completion")


class ContractNetError(RuntimeError):
    """A protocol step that the current state does not allow."""


# ---------------------------------------------------------------------------------------
# Messages (FIPA performatives)
# ---------------------------------------------------------------------------------------

class RefuseReason(str, Enum):
    """Why a robot refuses; the same codes as fleet_coord_msgs/Refusal (REASON_*)."""
    OTHER = "OTHER"
    UNREACHABLE = "UNREACHABLE"  # a station of the task (or the way on) has no path
    BATTERY = "BATTERY"          # would drop below the reserve with no charger in reach
    PAYLOAD = "PAYLOAD"          # heavier than the robot can carry
    DEADLINE = "DEADLINE"        # cannot be done in time (or would make a queued task late)
    BUSY = "BUSY"                # the robot's queue is full
    UNSUPPORTED_KIND = "UNSUPPORTED_KIND"  # the robot does not do this kind of task
    UNKNOWN_STATION = "UNKNOWN_STATION"    # a station is not on the robot's roadmap
    NOT_READY = "NOT_READY"      # e-stopped, in error, not localised (the agent decides)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Cfp:
    """call-for-proposal: `task`, in auction `round`, answers due by `deadline`."""
    task: Task
    round: int
    deadline: float
    performative = "cfp"


@dataclass(frozen=True)
class Proposal:
    """propose: do `task_id` at marginal `cost` (s), finishing at `eta` (absolute s)."""
    robot: str
    task_id: str
    round: int
    cost: float
    eta: float
    performative = "propose"


@dataclass(frozen=True)
class Refusal:
    """refuse: `reason` code, a human `detail`, the `station` concerned if any."""
    robot: str
    task_id: str
    round: int
    reason: RefuseReason
    detail: str = ""
    station: str | None = None
    performative = "refuse"


@dataclass(frozen=True)
class AcceptProposal:
    robot: str
    task_id: str
    round: int
    performative = "accept-proposal"


@dataclass(frozen=True)
class RejectProposal:
    robot: str
    task_id: str
    round: int
    reason: str = ""
    performative = "reject-proposal"


@dataclass(frozen=True)
class InformDone:
    robot: str
    task_id: str
    performative = "inform-done"


@dataclass(frozen=True)
class Failure:
    robot: str
    task_id: str
    reason: str
    performative = "failure"


Action = Union[AcceptProposal, RejectProposal]


# ---------------------------------------------------------------------------------------
# Initiator
# ---------------------------------------------------------------------------------------

class InitiatorState(str, Enum):
    CFP_SENT = "CFP_SENT"      # collecting propose / refuse until the deadline
    EVALUATING = "EVALUATING"  # bidding closed, award pending
    AWARDED = "AWARDED"        # accept-proposal sent to the winner
    NO_BIDS = "NO_BIDS"        # nobody proposed; see no_bids_reason()
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


def _bid_key(p: Proposal) -> tuple[float, float, str]:
    # Lowest cost; ties: earliest eta, then robot name -- deterministic.
    return (p.cost, p.eta, p.robot)


class Initiator:
    """One auction round of one task (the dispatcher's side of Contract Net).

    Create it when the cfp goes out; feed it the answers; call `tick(now)` regularly.
    `tick` closes the bidding at the deadline -- or earlier once every known participant
    answered -- and awards the lowest-cost proposal. Methods that decide return the
    messages to send (accept-proposal / reject-proposal).

    A dispatcher that allocates several open tasks jointly uses `close()` on each round
    and then `award(robot)` with its own choice (see `sequential_auction`).
    """

    def __init__(self, task: Task, round: int, participants: Iterable[str], now: float,
                 bid_window: float) -> None:
        if not bid_window > 0:
            raise ValueError(f"bid_window must be > 0 seconds, got {bid_window!r}")
        self.task = task
        self.round = round
        self.participants = frozenset(participants)
        self.sent_at = now
        self.deadline = now + bid_window
        self.state = InitiatorState.CFP_SENT
        self.proposals: dict[str, Proposal] = {}
        self.refusals: dict[str, Refusal] = {}
        self.winner: str | None = None
        self.closed_at: float | None = None

    @property
    def cfp(self) -> Cfp:
        """The call for proposals to broadcast."""
        return Cfp(task=self.task, round=self.round, deadline=self.deadline)

    @property
    def answered(self) -> frozenset[str]:
        return frozenset(self.proposals) | frozenset(self.refusals)

    @property
    def all_answered(self) -> bool:
        return bool(self.participants) and self.participants <= self.answered

    def ranking(self) -> list[Proposal]:
        """The proposals, best first."""
        return sorted(self.proposals.values(), key=_bid_key)

    # -- answers ----------------------------------------------------------------------

    def on_propose(self, robot: str, cost: float, eta: float, now: float) -> list[Action]:
        """A propose from `robot`. Returns [] when taken into the evaluation, or a
        reject-proposal when it came late (after the deadline or the decision)."""
        if self.state is not InitiatorState.CFP_SENT or now > self.deadline:
            closed = self.deadline if self.closed_at is None else self.closed_at
            return [RejectProposal(robot, self.task.id, self.round,
                                   reason=f"late: bidding for round {self.round} closed at "
                                          f"{closed:g} s")]
        if not (math.isfinite(cost) and cost >= 0 and math.isfinite(eta)):
            raise ValueError(f"task {self.task.id!r}: proposal from {robot!r} must have a "
                             f"finite cost >= 0 and a finite eta, got cost={cost!r} "
                             f"eta={eta!r} (a robot that cannot do the task refuses)")
        # A robot may revise its bid before the deadline: the newest answer counts.
        self.refusals.pop(robot, None)
        self.proposals[robot] = Proposal(robot, self.task.id, self.round, float(cost),
                                         float(eta))
        return []

    def on_refuse(self, robot: str, reason: RefuseReason | str, now: float,
                  detail: str = "", station: str | None = None) -> list[Action]:
        """A refuse from `robot` (late ones are ignored: nothing to reject)."""
        if self.state is not InitiatorState.CFP_SENT or now > self.deadline:
            return []
        self.proposals.pop(robot, None)
        self.refusals[robot] = Refusal(robot, self.task.id, self.round,
                                       RefuseReason(reason), detail, station)
        return []

    def on_message(self, msg: Proposal | Refusal, now: float) -> list[Action]:
        """Route a propose/refuse message; messages for another task or round are stale
        (a proposal among them is rejected so the robot drops it)."""
        if msg.task_id != self.task.id or msg.round != self.round:
            if isinstance(msg, Proposal):
                return [RejectProposal(msg.robot, msg.task_id, msg.round,
                                       reason=f"stale: round {msg.round} is not the current "
                                              f"round {self.round} of task {self.task.id!r}")]
            return []
        if isinstance(msg, Proposal):
            return self.on_propose(msg.robot, msg.cost, msg.eta, now)
        return self.on_refuse(msg.robot, msg.reason, now, msg.detail, msg.station)

    # -- decision ---------------------------------------------------------------------

    def tick(self, now: float, authentic: Callable[[Proposal], bool] | None = None
             ) -> list[Action]:
        """At the deadline (or once everyone answered): award the lowest cost
        (ties: lowest eta, then robot name) or end in NO_BIDS. `authentic(proposal)`:
        whether it really is its robot's, asked only of the proposal about to win (an
        authenticating fleet checks signatures there, not of every answer); one that is
        not is dropped as if never received, and the next best wins."""
        if self.state is not InitiatorState.CFP_SENT:
            return []
        if now < self.deadline and not self.all_answered:
            return []
        self.close(now)
        for best in self.ranking():
            if authentic is None or authentic(best):
                return self.award(best.robot, now)
            del self.proposals[best.robot]
        self.state = InitiatorState.NO_BIDS
        return []

    def close(self, now: float) -> None:
        """Stop taking answers: CFP_SENT -> EVALUATING."""
        if self.state is not InitiatorState.CFP_SENT:
            raise ContractNetError(f"task {self.task.id!r} round {self.round}: cannot close "
                                   f"the bidding in state {self.state}")
        self.state = InitiatorState.EVALUATING
        self.closed_at = now

    def award(self, robot: str, now: float) -> list[Action]:
        """EVALUATING -> AWARDED to `robot` (which must have proposed): accept-proposal to
        it, reject-proposal to every other bidder."""
        if self.state is InitiatorState.CFP_SENT:
            self.close(now)
        if self.state is not InitiatorState.EVALUATING:
            raise ContractNetError(f"task {self.task.id!r} round {self.round}: cannot award "
                                   f"in state {self.state}")
        if robot not in self.proposals:
            raise ContractNetError(f"task {self.task.id!r} round {self.round}: cannot award "
                                   f"to {robot!r}, which did not propose; bidders: "
                                   f"{sorted(self.proposals) or 'none'}")
        self.state = InitiatorState.AWARDED
        self.winner = robot
        out: list[Action] = [AcceptProposal(robot, self.task.id, self.round)]
        out += [RejectProposal(p.robot, self.task.id, self.round, reason=f"awarded to {robot}")
                for p in self.ranking() if p.robot != robot]
        return out

    def drop(self, robot: str, reason: str) -> list[Action]:
        """Take `robot`'s proposal out of a round still collecting answers (its robot was
        declared lost or removed: it must not win): a reject-proposal to it, or [] when
        it has none here."""
        if self.state is not InitiatorState.CFP_SENT or robot not in self.proposals:
            return []
        del self.proposals[robot]
        return [RejectProposal(robot, self.task.id, self.round, reason=reason)]

    def cancel(self, now: float) -> list[Action]:
        """Withdraw the cfp (task cancelled): reject every proposal received."""
        if self.state not in (InitiatorState.CFP_SENT, InitiatorState.EVALUATING):
            raise ContractNetError(f"task {self.task.id!r} round {self.round}: cannot cancel "
                                   f"in state {self.state}")
        self.state = InitiatorState.CANCELLED
        self.closed_at = now
        return [RejectProposal(p.robot, self.task.id, self.round, reason="cancelled")
                for p in self.ranking()]

    def no_bids_reason(self) -> str:
        return explain_no_bids(self.task, self.refusals.values(), self.participants)


def explain_no_bids(task: Task, refusals: Iterable[Refusal],
                    participants: Iterable[str] = ()) -> str:
    """One sentence for a user: why no robot bid on `task`."""
    refusals = sorted(refusals, key=lambda r: r.robot)
    silent = sorted(set(participants) - {r.robot for r in refusals})
    tail = (f"; no answer from {', '.join(silent)}" if silent else "")
    if not refusals:
        if not silent:
            return f"no robot to bid on task {task.id!r} (empty fleet)"
        return f"no robot answered the cfp for task {task.id!r} ({len(silent)} asked: " \
               f"{', '.join(silent)})"
    reasons = {r.reason for r in refusals}
    if reasons == {RefuseReason.UNREACHABLE}:
        stations = sorted({r.station for r in refusals if r.station})
        if len(stations) == 1:
            return f"no robot can reach station {stations[0]!r}{tail}"
        return (f"no robot can reach the stations of task {task.id!r} ("
                + "; ".join(f"{r.robot}: {r.detail or r.station}" for r in refusals) + f"){tail}")
    if reasons == {RefuseReason.UNKNOWN_STATION}:
        stations = sorted({r.station for r in refusals if r.station})
        return f"no robot knows station{'s' if len(stations) > 1 else ''} " \
               f"{', '.join(repr(s) for s in stations)}{tail}"
    if reasons == {RefuseReason.UNSUPPORTED_KIND}:
        return f"no robot does tasks of kind {task.kind!r}{tail}"
    if reasons == {RefuseReason.PAYLOAD}:
        return f"payload {task.payload_kg:g} kg is over every robot's capacity{tail}"
    if reasons == {RefuseReason.BUSY}:
        return f"every robot's task queue is full{tail}"
    if reasons == {RefuseReason.BATTERY}:
        return (f"no robot has the battery for task {task.id!r} ("
                + "; ".join(f"{r.robot}: {r.detail}" for r in refusals) + f"){tail}")
    if reasons == {RefuseReason.DEADLINE}:
        return f"no robot can finish task {task.id!r} by its deadline {task.deadline:g} s{tail}"
    counts = ", ".join(f"{sum(r.reason is k for r in refusals)} {k}"
                       for k in RefuseReason if k in reasons)
    return (f"no bids for task {task.id!r} ({counts}: "
            + "; ".join(f"{r.robot}: {r.detail or r.reason}" for r in refusals) + f"){tail}")


@dataclass(frozen=True)
class Retry:
    at: float          # announce again at this time
    attempt: int       # the number of the next round (1-based)


@dataclass(frozen=True)
class GiveUp:
    reason: str        # fail the task with this reason


@dataclass(frozen=True)
class RetryPolicy:
    """Re-announce a task nobody bid on after base * factor**(k-1) seconds (k = rounds
    so far, capped at max_delay); give up after `max_attempts` rounds, unless no robot
    asked answered at all (silence is not a refusal: retried for as long as it lasts)."""
    base: float = 2.0
    factor: float = 2.0
    max_attempts: int = 5
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"RetryPolicy.base must be > 0 s, got {self.base!r}")
        if not self.factor >= 1:
            raise ValueError(f"RetryPolicy.factor must be >= 1, got {self.factor!r}")
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, "
                             f"got {self.max_attempts!r}")

    def delay(self, attempt: int) -> float:
        """Wait after the `attempt`-th round (1-based) came back without bids."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt!r}")
        return min(self.base * self.factor ** (attempt - 1), self.max_delay)

    def after_no_bids(self, attempt: int, now: float, initiator: Initiator,
                      reason: str | None = None) -> Retry | GiveUp:
        """Round number `attempt` of a task ended NO_BIDS at `now`: retry when, or give up
        with the reason the robots gave (or `reason`: what the initiator knows better)."""
        if initiator.state is not InitiatorState.NO_BIDS:
            raise ContractNetError(f"task {initiator.task.id!r}: after_no_bids needs a round "
                                   f"that ended NO_BIDS, this one is {initiator.state}")
        if initiator.participants and not initiator.refusals:
            # Nobody answered: the cfp or every answer was lost (a lossy or cut link; a
            # reliable sample can take longer than the bid window to be repaired). No
            # robot said it cannot do the task, so it is asked again (the delay capped at
            # max_delay), never given up on silence.
            return Retry(at=now + self.delay(attempt), attempt=attempt + 1)
        if attempt >= self.max_attempts:
            return GiveUp(f"{reason or initiator.no_bids_reason()} (gave up after {attempt} auction "
                          f"round{'s' if attempt > 1 else ''})")
        return Retry(at=now + self.delay(attempt), attempt=attempt + 1)


# ---------------------------------------------------------------------------------------
# Participant: the robot's bid (marginal insertion cost) and its refusals
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RobotProfile:
    """What a robot can do. Energy is in any unit (Wh, %, ...) consistent with the rates.

    Driving for `t` seconds carrying `kg` uses ``t * (drain_rate + drain_per_kg * kg)``.
    On arrival at every stop the robot must keep `reserve` energy after driving on to the
    nearest of `chargers` (with no chargers configured: simply keep `reserve`). A charge
    stop takes `charge_time` and fills the battery to `battery_capacity`. Every stop takes
    `dwell` seconds (loading, unloading, docking).

    `objective` is what a bid measures. ``"travel"``: the marginal route time (the robot's
    added driving; a fleet minimising total travel). ``"completion"``: the marginal sum of
    completion times, i.e. how long from now until the new task is done plus how much it
    delays the robot's later tasks. Travel alone lets a busy robot near the work win task
    after task while a farther idle one waits (a long makespan); completion weighs the
    queue the robot already has, so work spreads over the fleet.
    """
    capacity_kg: float = INF
    max_queue: int = 10
    battery_capacity: float = 1.0
    drain_rate: float = 0.0
    drain_per_kg: float = 0.0
    reserve: float = 0.0
    dwell: float = 0.0
    charge_time: float = 0.0
    chargers: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset(KINDS)
    objective: str = "travel"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"RobotProfile.objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        for name in ("capacity_kg", "drain_rate", "drain_per_kg", "reserve", "dwell",
                     "charge_time"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"RobotProfile.{name} must be a number >= 0, got {v!r}")
        if not self.battery_capacity > 0:
            raise ValueError(f"RobotProfile.battery_capacity must be > 0, "
                             f"got {self.battery_capacity!r}")
        if not (isinstance(self.max_queue, int) and self.max_queue >= 0):
            raise ValueError(f"RobotProfile.max_queue must be an int >= 0, "
                             f"got {self.max_queue!r}")
        if isinstance(self.chargers, str):
            raise ValueError(f"RobotProfile.chargers must be a tuple of station names, "
                             f"got the string {self.chargers!r}")


@dataclass
class RobotState:
    """The robot's plan as its agent knows it.

    `position`: where the robot starts its queue (where it stands, or where its current
    leg ends); `free_at`: when it is there and free (absolute s); `queue`: tasks accepted
    but not started, in execution order; `battery`: energy at `position` (None = full);
    `now`: the time of the bid (None = `free_at`: the robot has nothing in hand), the
    reference of the "completion" objective.
    """
    position: str
    queue: list[Task] = field(default_factory=list)
    battery: float | None = None
    free_at: float = 0.0
    now: float | None = None


@dataclass(frozen=True)
class Insertion:
    """Where a task goes in a queue and what it costs there."""
    task: Task
    position: int              # index in the queue (0 = first)
    cost: float                # marginal time: route time with - route time without
    eta: float                 # absolute time the task is done
    queue_ids: tuple[str, ...]  # the queue the insertion was computed against


@dataclass(frozen=True)
class _No:
    reason: RefuseReason
    detail: str
    station: str | None = None


def route_time(position: str, queue: Sequence[Task], travel_time: TravelTime,
               profile: RobotProfile = RobotProfile()) -> float:
    """Total time to drive the queue from `position` (travel + dwell + charge time)."""
    t, here = 0.0, position
    for task in queue:
        t += _task_time(task, here, travel_time, profile)
        here = task.stations[-1]
    return t


def _task_time(task: Task, start: str, tt: TravelTime, profile: RobotProfile) -> float:
    t, here = 0.0, start
    for s in task.stations:
        t += tt(here, s) + profile.dwell
        here = s
    if task.kind == "charge":
        t += profile.charge_time
    return t


def _inner_time(task: Task, tt: TravelTime, profile: RobotProfile) -> float:
    """Time from arriving at the task's first station to leaving its last one."""
    return _task_time(task, task.stations[0], tt, profile)


class Participant:
    """A robot's side of Contract Net.

    `bid(task, state)` proposes the marginal cost of the task at the cheapest feasible
    insertion position of the robot's queue (existing order kept; a task's stations stay
    together: a robot carries one load at a time) or refuses with a reason.
    `on_accept_proposal` inserts the task where it was bid -- or, if the queue changed
    since, where it is now cheapest -- or answers `failure` when it no longer fits.
    """

    def __init__(self, name: str, travel_time: TravelTime,
                 profile: RobotProfile = RobotProfile(),
                 stations: Collection[str] | None = None) -> None:
        self.name = name
        self.travel_time = travel_time
        self.profile = profile
        self.stations = stations  # the robot's roadmap stations; None: travel_time knows all
        self._bids: dict[str, tuple[int, Insertion]] = {}  # task id -> (round, insertion)

    # -- the cost model ---------------------------------------------------------------

    def _simulate(self, state: RobotState, queue: Sequence[Task],
                  check_deadlines_of: Iterable[str] | None) -> tuple[dict[str, float], _No | None]:
        """Drive `queue` in thought: finish time of each task, and the first problem
        (battery below reserve, a deadline missed by a task in `check_deadlines_of`)."""
        tt, p = self.travel_time, self.profile
        battery = p.battery_capacity if state.battery is None else state.battery
        t, here = state.free_at, state.position
        finish: dict[str, float] = {}
        check = None if check_deadlines_of is None else set(check_deadlines_of)
        for task in queue:
            for i, s in enumerate(task.stations):
                # The load is on board between the task's first and last station.
                load = task.payload_kg if i > 0 else 0.0
                leg = tt(here, s)
                t += leg + p.dwell
                battery -= leg * (p.drain_rate + p.drain_per_kg * load)
                here = s
                if p.drain_rate > 0 or p.drain_per_kg > 0:
                    on_board = task.payload_kg if i < len(task.stations) - 1 else 0.0
                    if p.chargers:
                        escape = min(tt(s, c) for c in p.chargers)
                        if not math.isfinite(escape):
                            return finish, _No(RefuseReason.BATTERY,
                                               f"no charger reachable from station {s!r}", s)
                        need = escape * (p.drain_rate + p.drain_per_kg * on_board)
                    else:
                        need = 0.0
                    if battery - need < p.reserve:
                        left = (f"battery would fall to {battery:.3g} at station {s!r}"
                                if not p.chargers else
                                f"after station {s!r} the robot would reach a charger with "
                                f"{battery - need:.3g}")
                        return finish, _No(RefuseReason.BATTERY,
                                           f"{left}, below the reserve {p.reserve:g}", s)
            if task.kind == "charge":
                t += p.charge_time
                battery = p.battery_capacity
            finish[task.id] = t
            if (task.deadline is not None and t > task.deadline
                    and (check is None or task.id in check)):
                return finish, _No(RefuseReason.DEADLINE,
                                   f"task {task.id!r} would finish at {t:.1f} s, after its "
                                   f"deadline {task.deadline:g} s", None)
        return finish, None

    def _evaluate(self, task: Task, state: RobotState) -> Insertion | _No:
        tt, p, queue = self.travel_time, self.profile, state.queue
        if task.kind not in p.kinds:
            return _No(RefuseReason.UNSUPPORTED_KIND,
                       f"{self.name} does not do {task.kind!r} tasks (does: "
                       f"{', '.join(sorted(p.kinds))})")
        if self.stations is not None:
            for st in task.stations:
                if st not in self.stations:
                    return _No(RefuseReason.UNKNOWN_STATION,
                               f"station {st!r} is not on {self.name}'s roadmap", st)
        if task.payload_kg > p.capacity_kg:
            return _No(RefuseReason.PAYLOAD,
                       f"payload {task.payload_kg:g} kg over capacity {p.capacity_kg:g} kg")
        inner = _inner_time(task, tt, p)
        for a, b in zip(task.stations, task.stations[1:]):
            if not math.isfinite(tt(a, b)):
                return _No(RefuseReason.UNREACHABLE,
                           f"cannot reach station {b!r} from {a!r}", b)
        first, last = task.stations[0], task.stations[-1]
        # Marginal cost of each position i (before queue[i]; i = n appends): the detour
        # prev -> task -> next replaces the leg prev -> next.
        ends = [state.position] + [q.stations[-1] for q in queue]
        candidates: list[tuple[float, int]] = []
        for i, prev in enumerate(ends):
            delta = tt(prev, first) + inner
            if i < len(queue):
                nxt = queue[i].stations[0]
                delta += tt(last, nxt) - tt(prev, nxt)
            if not math.isfinite(delta):  # inf, or nan from a queue that is already broken
                continue
            candidates.append((delta, i))
        if not candidates:
            # Appending has no leg out of the task, so the way in must be what is missing.
            return _No(RefuseReason.UNREACHABLE,
                       f"cannot reach station {first!r} from {ends[-1]!r}", first)
        # After UNREACHABLE: "no robot can reach X" tells a user more than "all busy".
        if len(queue) >= p.max_queue:
            return _No(RefuseReason.BUSY, f"queue full ({len(queue)}/{p.max_queue} tasks)")
        # The robot's own plan: tasks already late without the new one do not block it.
        base_finish, _ = self._simulate(state, queue, check_deadlines_of=())
        on_time = [q.id for q in queue if q.deadline is None
                   or base_finish.get(q.id, INF) <= q.deadline] + [task.id]
        ids = tuple(q.id for q in queue)
        first_problem: _No | None = None
        if p.objective == "completion":
            ref = state.free_at if state.now is None else state.now
            best: tuple[float, int, float] | None = None
            for _delta, i in candidates:
                new_queue = list(queue[:i]) + [task] + list(queue[i:])
                finish, problem = self._simulate(state, new_queue, on_time)
                if problem is not None:
                    first_problem = first_problem or problem
                    continue
                cost = finish[task.id] - ref + sum(finish[q.id] - base_finish.get(q.id, 0.0)
                                                   for q in queue[i:])
                if best is None or (cost, i) < best[:2]:
                    best = (cost, i, finish[task.id])
            if best is not None:
                return Insertion(task, best[1], max(best[0], 0.0), best[2], ids)
            assert first_problem is not None
            return first_problem
        for delta, i in sorted(candidates):
            new_queue = list(queue[:i]) + [task] + list(queue[i:])
            finish, problem = self._simulate(state, new_queue, on_time)
            if problem is None:
                # >= 0 on the wire; below 0 only when travel times break the triangle
                # inequality (or by rounding).
                return Insertion(task, i, max(delta, 0.0), finish[task.id], ids)
            first_problem = first_problem or problem
        assert first_problem is not None
        return first_problem

    # -- the protocol -----------------------------------------------------------------

    def bid(self, task: Task, robot_state: RobotState, round: int = 0) -> Proposal | Refusal:
        """Answer a cfp: propose the marginal cost of `task`, or refuse with the reason."""
        if any(q.id == task.id for q in robot_state.queue):
            return Refusal(self.name, task.id, round, RefuseReason.BUSY,
                           f"task {task.id!r} is already in the queue of {self.name}")
        result = self._evaluate(task, robot_state)
        if isinstance(result, _No):
            self._bids.pop(task.id, None)
            return Refusal(self.name, task.id, round, result.reason, result.detail,
                           result.station)
        self._bids[task.id] = (round, result)
        return Proposal(self.name, task.id, round, result.cost, result.eta)

    def on_cfp(self, cfp: Cfp, robot_state: RobotState) -> Proposal | Refusal:
        return self.bid(cfp.task, robot_state, cfp.round)

    def on_accept_proposal(self, msg: AcceptProposal,
                           robot_state: RobotState) -> Insertion | Failure:
        """Put the awarded task into `robot_state.queue` (in place). Returns where it
        went, or a `failure` (the dispatcher re-announces the task)."""
        for i, q in enumerate(robot_state.queue):
            if q.id == msg.task_id:  # a duplicate accept: already ours, change nothing
                finish, _ = self._simulate(robot_state, robot_state.queue, ())
                return Insertion(q, i, 0.0, finish.get(q.id, INF),
                                 tuple(t.id for t in robot_state.queue))
        held = self._bids.get(msg.task_id)
        if held is None or held[0] != msg.round:
            return Failure(self.name, msg.task_id,
                           f"{self.name} has no open proposal for task {msg.task_id!r} in "
                           f"round {msg.round}")
        del self._bids[msg.task_id]
        _, ins = held
        ids = tuple(t.id for t in robot_state.queue)
        if ids != ins.queue_ids:
            # The queue changed since the bid (another award, a task done): bid again.
            now = self._evaluate(ins.task, robot_state)
            if isinstance(now, _No):
                return Failure(self.name, msg.task_id,
                               f"{now.reason}: {now.detail} (the queue changed since the bid)")
            ins = now
        robot_state.queue.insert(ins.position, ins.task)
        return ins

    def on_reject_proposal(self, msg: RejectProposal) -> None:
        held = self._bids.get(msg.task_id)
        if held is not None and held[0] == msg.round:
            del self._bids[msg.task_id]

    def forget(self, task_id: str) -> None:
        """The task ended (done, cancelled, given up): drop any open proposal for it (a
        reject that never arrived would otherwise keep it for good)."""
        self._bids.pop(task_id, None)

    def open_proposals(self) -> int:
        return len(self._bids)

    def inform_done(self, task_id: str) -> InformDone:
        return InformDone(self.name, task_id)

    def failure(self, task_id: str, reason: str) -> Failure:
        return Failure(self.name, task_id, reason)


# ---------------------------------------------------------------------------------------
# Batch allocation: sequential single-item auctions
# ---------------------------------------------------------------------------------------

@dataclass
class Assignment:
    """The outcome of allocating a batch of tasks."""
    queues: dict[str, list[Task]]   # robot -> its queue afterwards
    winner: dict[str, str]          # task id -> robot
    unassigned: dict[str, str]      # task id -> why nobody took it
    total_cost: float = 0.0         # increase of the fleet's summed route time (s)
    rounds: int = 0                 # auction rounds (one award each)
    moves: int = 0                  # tasks moved by the improvement step


AwardRule = Literal["matching", "cheapest", "assignment"]


class _BidTable:
    """Every robot's current bid on every task, re-asked only from robots whose queue
    changed (a bid depends on nothing else)."""

    def __init__(self, tasks: Sequence[Task], names: list[str],
                 parts: dict[str, Participant], states: dict[str, RobotState]) -> None:
        self.tasks, self.names, self.parts, self.states = tasks, names, parts, states
        self.cost = np.full((len(tasks), len(names)), INF)
        self.eta = np.full((len(tasks), len(names)), INF)
        self.answer: list[list[Proposal | Refusal | None]] = [[None] * len(names)
                                                              for _ in tasks]
        self.fresh = np.zeros((len(tasks), len(names)), dtype=bool)
        self.round = 0

    def invalidate(self, j: int) -> None:
        self.fresh[:, j] = False

    def ask(self, rows: Iterable[int], cols: Iterable[int] | None = None) -> None:
        cols = range(len(self.names)) if cols is None else cols
        for j in cols:
            r = self.names[j]
            for i in rows:
                if not self.fresh[i, j]:
                    self.set(i, j, self.parts[r].bid(self.tasks[i], self.states[r], self.round))

    def set(self, i: int, j: int, answer: Proposal | Refusal) -> None:
        self.answer[i][j] = answer
        self.cost[i, j] = answer.cost if isinstance(answer, Proposal) else INF
        self.eta[i, j] = answer.eta if isinstance(answer, Proposal) else INF
        self.fresh[i, j] = True

    def best(self, pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
        # Lowest cost; ties: eta, robot name, task order.
        return min(pairs, key=lambda p: (self.cost[p], self.eta[p], self.names[p[1]], p[0]))


def sequential_auction(tasks: Sequence[Task], robots: Mapping[str, RobotState],
                       travel_time: TravelTime, *,
                       profiles: Mapping[str, RobotProfile] | RobotProfile | None = None,
                       award: AwardRule = "matching", improve: bool = True,
                       max_passes: int = 10) -> Assignment:
    """Allocate a batch of open tasks to `robots` by rounds of Contract Net bids.

    Sequential single-item auction (Koenig et al. 2006; Lagoudakis et al. 2005): each
    round every robot bids (`Participant.bid`: the marginal cost of the task in its queue)
    on every unassigned task, one (task, robot) pair is awarded, the winner's queue grows,
    only the winner bids again. The award rule -- the initiator's choice -- is:

    - ``"matching"`` (default): solve a minimum-cost matching of open tasks to robots over
      the current bids (`linear_sum_assignment`, at most one task per robot) and award the
      cheapest pair *of that matching*. The matching keeps a robot from taking a task
      another robot needs more; with one task per robot (queues of length 1) the result is
      the optimal assignment.
    - ``"cheapest"``: the globally cheapest pair (plain SSI). A greedy matching: a few %
      worse than optimal when every robot takes one task.
    - ``"assignment"``: award the whole matching every round (one task per robot per
      round). Fastest; worse on batches, because it spreads tasks over all robots.

    `improve` then re-auctions each task in turn (a robot gives it back; every robot,
    itself included, bids for it again) and moves it when another insertion is cheaper
    than what giving it back saves, until a pass moves nothing (or `max_passes`).

    Ties break on (cost, eta, robot name, task order); the result is deterministic.
    `robots` is not modified.
    """
    if award not in ("matching", "cheapest", "assignment"):
        raise ValueError(f"award must be 'matching', 'cheapest' or 'assignment', "
                         f"got {award!r}")
    seen: set[str] = set()
    for t in tasks:
        if t.id in seen:
            raise ValueError(f"task id {t.id!r} appears twice in the batch")
        seen.add(t.id)

    def profile_of(name: str) -> RobotProfile:
        if profiles is None:
            return RobotProfile()
        if isinstance(profiles, RobotProfile):
            return profiles
        return profiles[name]

    names = sorted(robots)
    states = {r: replace(robots[r], queue=list(robots[r].queue)) for r in names}
    parts = {r: Participant(r, travel_time, profile_of(r)) for r in names}
    start = {r: route_time(states[r].position, states[r].queue, travel_time, parts[r].profile)
             for r in names}
    table = _BidTable(tasks, names, parts, states)
    result = Assignment(queues={}, winner={}, unassigned={})
    holder: dict[int, int] = {}  # task index -> robot index

    def give(i: int, j: int) -> None:
        r = names[j]
        bid = table.answer[i][j]
        assert isinstance(bid, Proposal)
        got = parts[r].on_accept_proposal(AcceptProposal(r, bid.task_id, bid.round), states[r])
        assert isinstance(got, Insertion), got  # bid against this very queue
        holder[i] = j
        table.invalidate(j)

    open_rows = list(range(len(tasks)))
    while open_rows:
        table.round += 1
        table.ask(open_rows)
        sub = table.cost[open_rows]
        if not np.isfinite(sub).any():
            break
        if award == "cheapest":
            pairs = [(open_rows[a], b) for a, b in zip(*np.nonzero(sub == sub.min()))]
            winners = [table.best(pairs)]
        else:
            finite = np.isfinite(sub)
            big = 1.0 + np.abs(sub[finite]).sum()
            rows, cols = linear_sum_assignment(np.where(finite, sub, big))
            matched = [(open_rows[a], b) for a, b in zip(rows, cols) if finite[a, b]]
            winners = [table.best(matched)] if award == "matching" else matched
        for i, j in winners:
            give(i, j)
        result.rounds += 1
        taken = {i for i, _ in winners}
        open_rows = [i for i in open_rows if i not in taken]

    if improve:
        result.moves = _reauction(tasks, names, parts, states, table, holder, give, max_passes)

    for i in open_rows:
        refusals = [b for b in table.answer[i] if isinstance(b, Refusal)]
        result.unassigned[tasks[i].id] = explain_no_bids(tasks[i], refusals, names)
    result.winner = {tasks[i].id: names[j] for i, j in sorted(holder.items())}
    result.queues = {r: states[r].queue for r in names}
    result.total_cost = float(sum(
        route_time(states[r].position, states[r].queue, travel_time, parts[r].profile)
        - start[r] for r in names))
    return result


def _reauction(tasks: Sequence[Task], names: list[str], parts: dict[str, Participant],
               states: dict[str, RobotState], table: _BidTable, holder: dict[int, int],
               give: Callable[[int, int], None], max_passes: int) -> int:
    """Improvement step: give each awarded task back and re-auction it alone."""
    moves = 0
    for _ in range(max_passes):
        moved = False
        for i in sorted(holder):
            a = holder[i]
            robot_a, task = names[a], tasks[i]
            kept = [q for q in states[robot_a].queue if q.id != task.id]
            without = replace(states[robot_a], queue=kept)
            p = parts[robot_a]
            if p._simulate(without, kept, check_deadlines_of=())[1] is not None:
                continue  # e.g. a charge stop the rest of the queue depends on
            saving = (route_time(without.position, states[robot_a].queue, p.travel_time,
                                 p.profile)
                      - route_time(without.position, kept, p.travel_time, p.profile))
            table.round += 1
            own = p.bid(task, without, table.round)
            others = [j for j in range(len(names)) if j != a]
            table.ask([i], others)
            table.set(i, a, own)
            _, j = table.best((i, b) for b in range(len(names)))
            if not table.cost[i, j] < saving - 1e-9 * max(1.0, abs(saving)):
                table.fresh[i, a] = False  # that bid was against a queue without the task
                continue
            states[robot_a] = without
            table.invalidate(a)
            table.set(i, a, own)  # still the right bid for the queue without the task
            give(i, j)
            moves += 1
            moved = True
        if not moved:
            break
    return moves
