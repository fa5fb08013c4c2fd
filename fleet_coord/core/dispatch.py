"""The dispatcher's decisions: accept tasks, auction them (Contract Net), follow their
execution, give them back to auction when their robot fails, is lost or removed.

A pure state machine like `contract_net.Initiator`: inputs are method calls with the
time as a parameter (submissions, proposals and refusals, robots' task statuses, robot
states, losses and removals, `tick`), outputs are actions for the node to send
(`CallForProposals`, `Award`, `Rejection`, `StatusUpdate`). The only other effect is the
`TaskLedger` (core.tasks), written before any action leaves: every accepted task is in
it before the client hears "accepted", and a restarted `Dispatch` rebuilds itself from
it (pending tasks are announced again, in-flight ones must be confirmed by their robot
within `confirm_window` seconds).

Per open task there is ONE record, `TaskEntry`, deleted when the task ends.

Auctions. One `Initiator` per open task and round: cfp with a bid window; a round
without bids is retried with back-off (`RetryPolicy`) and finally fails with the reason
the robots gave. A robot declared lost or removed is not asked and does not win: its
bids (also those sent before the loss) are rejected until it is heard again (a
partitioned robot may still hear cfps, and an award it cannot confirm would cost the
task one of its `max_task_attempts`). In an authenticating fleet the node checks a
proposal's signature only when it is about to win (`authentic`): a forged one is dropped
there and the next best wins. Who wins (`DispatchConfig.allocation`):

- ``"pool"`` (the default; core.allocation): the rounds that close together are
  allocated as a batch, a minimum-cost matching of tasks to robots over the bids (the
  robots' completion times, `bid_objective` "completion"), and a robot is awarded at
  most one task it has not started (its next one). A task that gets bids but no free
  robot goes back to QUEUED and waits in the pool; the pool is announced again as one
  batch whenever a robot's next-task slot frees (it started its next task, a task
  ended, a robot joined) and every `pool_period` s. So the unstarted work is
  re-allocated as the fleet changes instead of queueing behind the robots nearest to
  the picks.
- ``"per_task"``: each round awards its lowest bid on its own, whatever the winner
  already holds. A robot's failure, loss or removal sends
its tasks back to auction (at most `max_task_attempts` times); the robots that gave a
task back are not asked again, except one that gave it back by being lost: it is asked
again once it is heard again and no longer lists the task (its agent restarted, or it
dropped it). A lost robot may well be able to do the task, and excluding it for good left
tasks to the robots never lost while the others stood idle. A task one of whose stations
a lost robot holds for good (it stands there, or its committed path ends there) is not
announced until that robot is heard again or removed: it stays QUEUED with the reason
(docs/reliability.md, Known gap 4).

Late results. The traffic authority cannot tell a dead agent from a partitioned one, so
a task whose robot was declared lost goes back to auction while that robot may still be
driving it. In Contract Net terms the contract was withdrawn unilaterally, but the first
contractor's inform-done still reports real work: a DONE from a robot the task was taken
from on loss, while the task has not ended, is accepted (first completion wins,
`TaskLedger.complete_late`). A running re-auction is cancelled, a pending retry dropped,
and a re-award withdrawn by a reject-proposal to the new robot, which drops the task. A
DONE from the new robot that comes first ends the task as usual and the late one is
ignored. With a partition a task is done at least once, never "exactly once"; the ledger
records it done once. A former holder's ACTIVE statuses are ignored, but when its states
are heard again listing the task before another robot won it, the task is given back to
it (awarded to it in a new round): it was cut off, not dead, and another robot would only
wait at the task's stations for it to yield.

Reconciliation. Messages get lost (a full reader history, a partition, a restart), so the
dispatcher compares, continuously, what each robot reports in its RobotState (its current
task, its queue, the tasks it finished last) with the ledger, and repairs a disagreement
within seconds (`reconcile_after`), each repair an event in the ledger's history:
- a task the ledger gives the robot that it does not report: an award it never
  acknowledged is sent again once, then the task goes back to auction; an ACTIVE task it
  no longer knows (and did not report done) goes back to auction;
- a DONE the dispatcher missed (the robot reports it among its finished tasks) is
  accepted;
- a task the robot reports that the ledger gives to another robot, or that ended, is
  withdrawn from it (a reject-proposal for the round it was awarded: it drops the task).

Bad storage. A ledger write that fails (a full disk: `LedgerFull`) refuses the
submission with the ledger's message and leaves everything else as it was; the
dispatcher keeps serving and retries its own transitions on the next `tick`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, Union

import numpy as np

from fleet_coord.core import contract_net as cn
from fleet_coord.core.allocation import BatchProposals, Rebalancer
from fleet_coord.core.membership import Incarnation, Membership
from fleet_coord.core.replica import Replica
from fleet_coord.core.roadmap import Exclusion, Roadmap
from fleet_coord.core.tasks import (TERMINAL_STATES, DuplicateTask, LedgerError, Task,
                                    TaskError, TaskLedger, TaskRecord, TaskState)
from fleet_coord.core.yielding import parked_at

__all__ = ["ALLOCATIONS", "Action", "Award", "CallForProposals", "Dispatch", "DispatchConfig", "Refused",
           "Rejection", "StatusUpdate", "TaskEntry"]


class Log(Protocol):
    """What the core says about its decisions (rclpy's node logger, `logging.Logger`)."""

    def info(self, msg: str) -> object: ...
    def warning(self, msg: str) -> object: ...


class Refused(Exception):
    """A submission or cancellation the dispatcher refuses; `str()` is the client's error."""


#: How the dispatcher picks winners (DispatchConfig.allocation; module doc).
ALLOCATIONS = ("pool", "per_task")


#: s between the rounds of a task nobody answered (silence is retried, never given up:
#: cn.RetryPolicy); short enough that a healed link is used within seconds.
SILENT_RETRY_MAX_DELAY = 10.0


@dataclass(frozen=True)
class DispatchConfig:
    bid_window: float = 0.3             # s a cfp waits for answers
    retry: cn.RetryPolicy = cn.RetryPolicy(base=1.0, factor=2.0, max_attempts=4,
                                           max_delay=SILENT_RETRY_MAX_DELAY)
    max_task_attempts: int = 3          # robots a task may be given to before it fails
    robot_timeout: float = 2.0          # s without a RobotState: not asked in auctions
    confirm_window: float = 3.0         # s a robot has to confirm an in-flight task at restart
    # s a restarted dispatcher waits to hear the robot of an in-flight task at all (its
    # confirm_window starts then): a new participant's discovery takes seconds on a busy host
    restart_grace: float = 10.0
    name: str = "dispatcher"            # the initiator named in cfps, awards, rejections
    start_delay: float = 0.5            # s before re-announcing at restart (robots to discover)
    no_robot_grace: float = 5.0         # s a due task waits for a robot before it is announced anyway
    defer_recheck: float = 1.0          # s between checks of a task held back by a lost robot
    allocation: str = "pool"            # "pool" | "per_task" (module doc)
    pool_period: float = 5.0            # s between pool rounds when no slot freed
    pool_batch: int = 0                 # pooled tasks announced per free robot (0: all)
    reconcile_after: float = 3.0        # s a robot's states may disagree with the ledger

    def __post_init__(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"dispatcher allocation must be one of {', '.join(ALLOCATIONS)}, "
                             f"got {self.allocation!r}")
        for name in ("bid_window", "robot_timeout", "confirm_window", "pool_period",
                     "reconcile_after", "restart_grace"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"dispatcher {name} must be a finite number of seconds > 0, "
                                 f"got {value!r}")
        if not (isinstance(self.pool_batch, int) and self.pool_batch >= 0):
            raise ValueError(f"dispatcher pool_batch must be an integer >= 0, got "
                             f"{self.pool_batch!r}")
        if not (isinstance(self.max_task_attempts, int) and self.max_task_attempts >= 1):
            raise ValueError(f"dispatcher max_task_attempts must be an integer >= 1, got "
                             f"{self.max_task_attempts!r}")


# -- actions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallForProposals:
    """cfp: bid on `task` in auction `round` by `bid_deadline`; `excluded` may not bid."""
    task: Task
    round: int
    bid_deadline: float
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Award:
    """accept-proposal: `robot` won `round` of `task_id`."""
    task_id: str
    round: int
    robot: str


@dataclass(frozen=True)
class Rejection:
    """reject-proposal to `robot` for `round` of `task_id`; for the robot holding the task
    (a withdrawn award) it means: drop it."""
    task_id: str
    round: int
    robot: str
    winner: str = ""
    reason: str = ""


@dataclass(frozen=True)
class StatusUpdate:
    """The dispatcher's own task status (QUEUED, ANNOUNCED, AWARDED, FAILED, CANCELLED);
    `robot` only with AWARDED (and CANCELLED of a held task)."""
    task_id: str
    state: TaskState
    robot: str = ""
    round: int = 0
    reason: str = ""
    lamport: int = 0


Action = Union[CallForProposals, Award, Rejection, StatusUpdate]


@dataclass
class TaskEntry:
    """Everything the dispatcher keeps about one open task besides its ledger record."""
    initiator: cn.Initiator | None = None   # the auction round running now
    announce_at: float | None = None        # (re)announce at this time; None: not due
    no_bid_rounds: int = 0                  # rounds in a row nobody bid in
    gave_back: set[str] = field(default_factory=set)     # gave it back (history)
    lost_holders: set[str] = field(default_factory=set)  # gave it back lost: a late DONE counts
    unable: set[str] = field(default_factory=set)        # gave it back otherwise: not asked again
    confirm_by: float | None = None         # awarded / in flight at a restart: its robot
    unconfirmed: str = ""                   # confirms by then (why, for the re-queue's reason)
    # the confirmation may just not have reached us (an award or states lost on the way,
    # a dispatcher restart): its re-queue is not an attempt of a robot at the task
    unheard: bool = False
    # in flight at a restart, its robot not heard since: confirm_window starts when it is
    await_holder: bool = False
    deferred: str = ""                      # why it is held back (a lost robot holds a station)
    pooled: bool = False                    # had bids but no free robot: waits for a pool round
    holder: str | None = None               # the robot the ledger gives it to (AWARDED/ACTIVE)
    round: int = 0                          # ... in this auction round
    held_since: float = 0.0                 # ... since
    unlisted_since: float | None = None     # its holder's states have not listed it since
    award_resent: bool = False


class Dispatch:
    """The dispatcher (see the module doc). Restarted on a ledger it picks up where the
    ledger says: construct it at `now` and `tick` it."""

    def __init__(self, ledger: TaskLedger, config: DispatchConfig, now: float, *,
                 roadmap: Roadmap | None = None, exclusion: Exclusion | None = None,
                 replica: Replica | None = None, log: Log | None = None,
                 authentic: Callable[[cn.Proposal], bool] | None = None) -> None:
        self.ledger = ledger
        #: whether a proposal about to win is really its robot's (`Initiator.tick`)
        self.authentic = authentic
        self.config = config
        self.roadmap, self.exclusion, self.replica = roadmap, exclusion, replica
        self.log: Log = log if log is not None else logging.getLogger("fleet_coord.dispatch")
        self.entries: dict[str, TaskEntry] = {}
        self.robots: dict[str, float] = {}      # robot -> when its last state came
        self.lost: set[str] = set()             # declared lost, not heard since
        self.membership = Membership()
        self.lamport = 0
        self.rebalancer = Rebalancer()
        self._pool_at = now                     # next pool round (allocation "pool")
        self.holding: dict[str, set[str]] = {}      # robot -> tasks the ledger gives it
        self.listed: dict[str, set[str]] = {}       # robot -> tasks its last state listed
        self.reports_done: set[str] = set()         # robots whose states list finished tasks
        self._withdrawn: dict[tuple[str, str], float] = {}   # (task, robot) -> when
        pending, in_flight = ledger.pending(), ledger.in_flight()
        for rec in pending:
            self._entry(rec.task.id).announce_at = now + config.start_delay
        self._started = now
        for rec in in_flight:
            self._entry(rec.task.id).confirm_by = now + config.confirm_window
            self._entry(rec.task.id).unheard = True
            self._entry(rec.task.id).await_holder = bool(rec.robot)
            if rec.robot:
                self._hold(rec.task.id, rec.robot, rec.round, now)
        for rec in [*pending, *in_flight]:
            gave, lost, other = ledger.given_back(rec.task.id)
            entry = self._entry(rec.task.id)
            entry.gave_back, entry.lost_holders, entry.unable = gave, lost, other
        if pending or in_flight:
            self.log.info(f"restart: {len(pending)} pending task(s) to announce, "
                          f"{len(in_flight)} in flight to confirm")

    def _entry(self, task_id: str) -> TaskEntry:
        entry = self.entries.get(task_id)
        if entry is None:
            entry = self.entries[task_id] = TaskEntry()
        return entry

    def alive_robots(self, now: float) -> list[str]:
        return sorted(r for r, t in self.robots.items() if now - t <= self.config.robot_timeout)

    def _status(self, task_id: str, state: TaskState, robot: str = "", rnd: int = 0,
                reason: str = "") -> StatusUpdate:
        self.lamport += 1
        return StatusUpdate(task_id, state, robot, rnd, reason, self.lamport)

    def _ended(self, task_id: str) -> None:
        """The task reached a final state: forget it (a long run must not grow with the
        tasks it has seen)."""
        self._unhold(task_id)
        self.entries.pop(task_id, None)
        self._slot_freed()

    def _hold(self, task_id: str, robot: str, rnd: int, now: float) -> None:
        entry = self._entry(task_id)
        self._unhold(task_id)
        entry.holder, entry.round, entry.held_since = robot, rnd, now
        entry.unlisted_since, entry.award_resent = now, False   # not listed yet
        self.holding.setdefault(robot, set()).add(task_id)

    def _unhold(self, task_id: str) -> None:
        entry = self.entries.get(task_id)
        if entry is None or entry.holder is None:
            return
        held = self.holding.get(entry.holder)
        if held is not None:
            held.discard(task_id)
            if not held:
                del self.holding[entry.holder]
        entry.holder = None

    # -- clients ------------------------------------------------------------------------

    def submit(self, now: float, task: Task) -> list[Action]:
        """Accept `task` (validated by the caller against the roadmap). Idempotent: the
        same task again (a client retrying after a lost response) is accepted again;
        the same id with other content is refused."""
        try:
            self.ledger.submit(task, now)
        except DuplicateTask as e:
            prev = self.ledger.get(task.id)
            if prev is not None and \
                    replace(prev.task, submitted_at=0.0) == replace(task, submitted_at=0.0):
                return []
            raise Refused(str(e)) from None
        except (TaskError, LedgerError, ValueError) as e:
            raise Refused(str(e)) from None
        self._entry(task.id).announce_at = now
        return [self._status(task.id, TaskState.QUEUED)]

    def cancel(self, now: float, task_id: str, reason: str = "") -> list[Action]:
        rec = self.ledger.get(task_id)
        if rec is None:
            raise Refused(f"no task {task_id!r}")
        if rec.state in TERMINAL_STATES:
            raise Refused(f"task {task_id!r} already ended ({rec.state})")
        try:
            self.ledger.transition(task_id, TaskState.CANCELLED, now,
                                   reason=reason or "cancelled by a client")
        except LedgerError as e:
            raise Refused(str(e)) from None
        out: list[Action] = self._stop_auction(task_id, now)
        self._ended(task_id)
        out.append(self._status(task_id, TaskState.CANCELLED, rec.robot or "", rec.round, reason))
        return out

    # -- auctions -----------------------------------------------------------------------

    def _stop_auction(self, task_id: str, now: float) -> list[Action]:
        """End a running auction round of `task_id` without award (its bidders get
        reject-proposal)."""
        entry = self.entries.get(task_id)
        init = entry.initiator if entry else None
        if entry is None or init is None:
            return []
        entry.initiator = None
        if init.state in (cn.InitiatorState.CFP_SENT, cn.InitiatorState.EVALUATING):
            return self._send(init, init.cancel(now))
        return []

    def _send(self, init: cn.Initiator, actions: Iterable[cn.Action]) -> list[Action]:
        out: list[Action] = []
        for a in actions:
            if isinstance(a, cn.AcceptProposal):
                out.append(Award(a.task_id, a.round, a.robot))
            else:
                out.append(Rejection(a.task_id, a.round, a.robot, winner=init.winner or "",
                                     reason=a.reason))
        return out

    def _excluded(self, task_id: str, entry: TaskEntry) -> set[str]:
        """Who may not bid on `task_id`: the robots that gave it back, except one that gave
        it back only by being lost and is back without it (heard since the loss, its
        states do not list the task). One that still lists it drives it on after a
        partition: its late DONE counts, and a bid would insert the task twice."""
        back = {r for r in entry.lost_holders - entry.unable
                if r in self.robots and task_id not in self.listed.get(r, ())}
        return entry.gave_back - back

    def _announce(self, task_id: str, entry: TaskEntry, now: float) -> list[Action]:
        rec = self.ledger.transition(task_id, TaskState.ANNOUNCED, now)
        excluded = self._excluded(task_id, entry)
        robots = [r for r in self.alive_robots(now) if r not in excluded]
        init = cn.Initiator(rec.task, rec.round, robots, now, self.config.bid_window)
        entry.initiator = init
        return [CallForProposals(rec.task, rec.round, init.deadline, tuple(sorted(excluded))),
                self._status(task_id, TaskState.ANNOUNCED, rnd=rec.round)]

    def _answer(self, now: float, msg: cn.Proposal | cn.Refusal) -> list[Action]:
        entry = self.entries.get(msg.task_id)
        init = entry.initiator if entry else None
        if init is None or entry is None or self.membership.is_removed(msg.robot):
            return []
        if msg.robot in self._excluded(msg.task_id, entry):   # the cfp excluded it
            if isinstance(msg, cn.Proposal):
                return [Rejection(msg.task_id, msg.round, msg.robot,
                                  reason="excluded: it gave this task back")]
            return []
        if msg.robot in self.lost:   # not asked; it may win again once it is heard again
            if isinstance(msg, cn.Proposal):
                return [Rejection(msg.task_id, msg.round, msg.robot,
                                  reason=f"refused: {msg.robot} is declared lost; it bids "
                                         "again once its state is heard")]
            return []
        try:
            return self._send(init, init.on_message(msg, now))
        except ValueError as e:
            self.log.warning(f"bad proposal from {msg.robot}: {e}")
            return []

    def on_proposal(self, now: float, proposal: cn.Proposal) -> list[Action]:
        return self._answer(now, proposal)

    def on_refusal(self, now: float, refusal: cn.Refusal) -> list[Action]:
        return self._answer(now, refusal)

    def tick(self, now: float) -> list[Action]:
        """Announce what is due, close auctions at their deadline, and give back in-flight
        tasks nobody confirmed after a restart."""
        out: list[Action] = []
        if self.config.allocation == "pool":
            self._pool_round(now)
        alive = bool(self.alive_robots(now))
        for task_id, entry in list(self.entries.items()):
            at = entry.announce_at
            if at is None or now < at or not (alive or now - at > self.config.no_robot_grace):
                continue
            deferred, actions = self._defer(task_id, entry, now)
            out += actions
            if deferred:
                continue
            entry.announce_at = None
            try:
                out += self._announce(task_id, entry, now)
            except LedgerError as e:
                self.log.warning(f"cannot announce {task_id}: {e}")
        out += self._close_auctions(now)
        for task_id, entry in list(self.entries.items()):
            if entry.confirm_by is not None and now >= entry.confirm_by:
                if entry.await_holder and now < self._started + self.config.restart_grace:
                    continue   # its robot's states may not reach the new dispatcher yet
                entry.confirm_by = None
                rec = self.ledger.get(task_id)
                reason = ("its robot did not confirm it after "
                          + (entry.unconfirmed or "a dispatcher restart"))
                out += self._requeue(task_id, None, reason, now, attempt=not entry.unheard)
                # its robot may hold it after all (only its states were lost): withdrawn,
                # so that the task is not worked on twice
                if rec is not None and rec.robot and rec.state in (TaskState.AWARDED,
                                                                   TaskState.ACTIVE):
                    out.append(Rejection(task_id, rec.round, rec.robot,
                                         reason=f"withdrawn: {reason}"))
        return out

    def _close_auctions(self, now: float) -> list[Action]:
        """Each running round that is over: award its winner (alone, or with the rounds
        closing with it as a batch), or retry / fail it."""
        if self.config.allocation == "pool":
            return self._close_batch(now)
        out: list[Action] = []
        for task_id, entry in list(self.entries.items()):
            init = entry.initiator
            if init is None:
                continue
            actions = init.tick(now, self.authentic)
            if init.state is cn.InitiatorState.AWARDED and actions:
                out += self._award(task_id, entry, init, actions, now)
            elif init.state is cn.InitiatorState.NO_BIDS:
                out += self._no_bids(task_id, entry, init, now)
        return out

    def _close_batch(self, now: float) -> list[Action]:
        """Allocation "pool": close the rounds that are over together and match them."""
        running = [(t, e, e.initiator) for t, e in self.entries.items()
                   if e.initiator is not None
                   and e.initiator.state is cn.InitiatorState.CFP_SENT]
        # Rounds announced together close together (a batch): at their deadline, or
        # once every robot answered all of them.
        everyone = all(init.all_answered for _, _, init in running)
        out: list[Action] = []
        batch: list[tuple[str, TaskEntry, cn.Initiator]] = []
        for task_id, entry, init in running:
            if now < init.deadline and not everyone:
                continue
            if init.proposals:
                init.close(now)
                batch.append((task_id, entry, init))
            else:
                init.tick(now)   # -> NO_BIDS
                out += self._no_bids(task_id, entry, init, now)
        if not batch:
            return out
        # At most one unstarted task per robot: a robot holding its next task already
        # gets no other; what finds no free robot waits in the pool.
        award = self._match(batch, self._holding_next())
        for task_id, entry, init in batch:
            winner = award[task_id]
            if winner is not None:
                out += self._award(task_id, entry, init, init.award(winner, now), now)
                continue
            if not init.proposals:   # every bid was forged: a round without bids
                init.state = cn.InitiatorState.NO_BIDS
                out += self._no_bids(task_id, entry, init, now)
                continue
            entry.initiator = None
            why = (f"in the pool: the {len(init.proposals)} robot(s) that bid hold their "
                   "next task already or won another task of the batch")
            out += [Rejection(task_id, init.round, bid.robot, reason=why)
                    for bid in init.ranking()]
            try:
                self.ledger.transition(task_id, TaskState.QUEUED, now, reason=why)
            except LedgerError as e:
                self.log.warning(f"cannot put {task_id} back in the pool: {e}")
                continue
            entry.pooled, entry.no_bid_rounds = True, 0
            out.append(self._status(task_id, TaskState.QUEUED, rnd=init.round, reason=why))
        return out

    def _match(self, batch: list[tuple[str, TaskEntry, cn.Initiator]],
               held: set[str]) -> dict[str, str | None]:
        """The batch's minimum-cost matching of tasks to the robots not in `held`. In an
        authenticating fleet only the winners' bids are checked (`authentic`); a forged
        one is dropped and the batch matched again without it."""
        tasks = [task_id for task_id, _, _ in batch]
        checked: set[tuple[str, str]] = set()
        while True:
            robots = sorted({r for _, _, init in batch for r in init.proposals} - held)
            cost = np.full((len(robots), len(tasks)), np.inf)
            for j, (_, _, init) in enumerate(batch):
                for i, robot in enumerate(robots):
                    bid = init.proposals.get(robot)
                    if bid is not None:
                        cost[i, j] = bid.cost
            award = self.rebalancer.decide(BatchProposals(robots, tasks, cost), {}).award
            if self.authentic is None:
                return award
            forged = False
            for task_id, _, init in batch:
                winner = award[task_id]
                if winner is None or (task_id, winner) in checked:
                    continue
                if self.authentic(init.proposals[winner]):
                    checked.add((task_id, winner))
                else:
                    del init.proposals[winner]
                    forged = True
            if not forged:
                return award

    def _holding_next(self) -> set[str]:
        """The robots holding an awarded task they have not started."""
        return {rec.robot for rec in self.ledger.in_flight()
                if rec.state is TaskState.AWARDED and rec.robot}

    def _award(self, task_id: str, entry: TaskEntry, init: cn.Initiator,
               actions: list[cn.Action], now: float) -> list[Action]:
        entry.initiator = None
        try:
            self.ledger.transition(task_id, TaskState.AWARDED, now, robot=init.winner,
                                   auction_round=init.round)
        except LedgerError as e:
            self.log.warning(f"award of {task_id} refused: {e}")
            return []
        if init.winner:
            self._hold(task_id, init.winner, init.round, now)
        out = self._send(init, actions)
        out.append(self._status(task_id, TaskState.AWARDED, init.winner or "", init.round))
        entry.no_bid_rounds = 0
        # the winner's states list the task once the award arrived; an award lost on the
        # way would leave it AWARDED to a robot that never heard of it
        entry.confirm_by = now + self.config.confirm_window
        entry.unconfirmed, entry.unheard = "its award (lost on the way?)", True
        return out

    def _no_bids(self, task_id: str, entry: TaskEntry, init: cn.Initiator,
                 now: float) -> list[Action]:
        entry.initiator = None
        entry.no_bid_rounds += 1
        why = init.no_bids_reason()
        left = sorted(set(self.alive_robots(now)) & self._excluded(task_id, entry))
        if not init.participants and left:
            # every robot there gave the task back ("empty fleet" would mislead)
            why = f"no robot left to ask for task {task_id!r}: {', '.join(left)} gave it back"
        decision = self.config.retry.after_no_bids(entry.no_bid_rounds, now, init, why)
        if isinstance(decision, cn.GiveUp):
            return self._fail(task_id, decision.reason, now)
        try:
            self.ledger.transition(task_id, TaskState.QUEUED, now, reason=why)
        except LedgerError as e:
            # stays ANNOUNCED in the ledger; announced again (a new round) later
            self.log.warning(f"cannot queue {task_id} again: {e}")
        entry.announce_at = decision.at
        return []

    def _slot_freed(self) -> None:
        """A robot may take a next task again (allocation "pool"): a pool round at the
        next tick."""
        self._pool_at = -math.inf

    def _pool_round(self, now: float) -> None:
        """Announce the pool again, as one batch, when a robot is free to take a task."""
        if now < self._pool_at:
            return
        self._pool_at = now + self.config.pool_period
        pooled = [e for e in self.entries.values() if e.pooled]
        free = set(self.alive_robots(now)) - self._holding_next()
        if not pooled or not free:
            return
        # The oldest first (entries keep submission order), at most pool_batch per free
        # robot: every robot answers every cfp, and a big fleet's whole pool announced at
        # each start of a task would be thousands of bids for one or two free robots.
        limit = self.config.pool_batch * len(free) if self.config.pool_batch else len(pooled)
        for entry in pooled[:limit]:
            entry.pooled, entry.announce_at = False, now

    def _defer(self, task_id: str, entry: TaskEntry, now: float) -> tuple[bool, list[Action]]:
        """Hold back a task while one of its stations is held for good by a lost robot:
        whoever won it would wait at that station for a robot that cannot yield, and fail
        it after `yield_wait`, again and again. It stays QUEUED, with the reason in a
        status, until the robot is heard again (it yields like any idle robot), is
        removed (its holds are released), or is located elsewhere by the authority."""
        why = ""
        replica, roadmap, exclusion = self.replica, self.roadmap, self.exclusion
        rec = self.ledger.get(task_id) if self.lost else None
        if rec is not None and replica is not None and not replica.stale \
                and roadmap is not None and exclusion is not None:
            for station in rec.task.stations:
                holder = parked_at(replica.table, exclusion, roadmap.vertex(station), "")
                if holder in self.lost:
                    why = (f"waiting: station {station} is held by lost robot {holder} "
                           f"(announced when it is back or removed)")
                    break
        if not why:
            if entry.deferred:
                entry.deferred = ""
                self.log.info(f"task {task_id}: its stations are free of lost robots; "
                              f"announcing it")
            return False, []
        out: list[Action] = []
        if entry.deferred != why:
            entry.deferred = why
            self.log.warning(f"task {task_id} {why}")
            out.append(self._status(task_id, TaskState.QUEUED, reason=why))
        entry.announce_at = now + self.config.defer_recheck
        return True, out

    def _fail(self, task_id: str, reason: str, now: float) -> list[Action]:
        try:
            self.ledger.transition(task_id, TaskState.FAILED, now, reason=reason)
        except LedgerError as e:
            self.log.warning(f"cannot fail {task_id}: {e}")
            return []
        self._ended(task_id)
        self.log.warning(f"task {task_id} failed: {reason}")
        return [self._status(task_id, TaskState.FAILED, reason=reason)]

    def _requeue(self, task_id: str, robot: str | None, reason: str, now: float, *,
                 lost: bool = False, attempt: bool = True) -> list[Action]:
        """Give an in-flight task back to auction (`robot` gave it back), or fail it when
        it has been given to `max_task_attempts` robots. `attempt=False`: no robot failed
        it (its confirmation went unheard), not counted: messages lost under heavy loss
        are retried for as long as it lasts, as silent auction rounds are."""
        rec = self.ledger.get(task_id)
        if rec is None or rec.state not in (TaskState.AWARDED, TaskState.ACTIVE):
            return []
        if attempt and rec.attempts + 1 >= self.config.max_task_attempts:
            return self._fail(task_id, f"{reason} (after {rec.attempts + 1} attempts)", now)
        try:
            self.ledger.transition(task_id, TaskState.QUEUED, now, robot=robot or None,
                                   reason=reason, lost=lost and bool(robot), attempt=attempt)
        except LedgerError as e:
            self.log.warning(f"cannot give {task_id} back to auction ({reason}): {e}")
            return []
        entry = self._entry(task_id)
        self._unhold(task_id)
        if robot:
            entry.gave_back.add(robot)
            (entry.lost_holders if lost else entry.unable).add(robot)
        entry.announce_at = now
        self._slot_freed()
        self.log.info(f"task {task_id} back to auction: {reason}")
        return []

    # -- execution ----------------------------------------------------------------------

    def on_task_status(self, now: float, task_id: str, robot: str, state: TaskState, *,
                       reason: str = "", lamport: int | None = None,
                       round: int = 0) -> list[Action]:
        """A robot's report on a task it holds (ACTIVE, DONE, FAILED); others are ignored,
        and so is a FAILED of an earlier `round` than the one the robot holds (0: not
        said)."""
        if not robot or state not in (TaskState.ACTIVE, TaskState.DONE, TaskState.FAILED):
            return []
        rec = self.ledger.get(task_id)
        if rec is None or rec.state in TERMINAL_STATES:
            return []
        entry = self._entry(task_id)
        if rec.robot != robot:
            if state is TaskState.DONE and robot in entry.lost_holders:
                return self._late_done(rec, robot, now, lamport)
            return []
        if state is TaskState.FAILED and 0 < round < rec.round:
            # its answer to an award of an earlier round that reached it late (resent
            # after its proposal had expired): the round it has won since stands
            self.log.info(f"task {task_id}: {robot} failed round {round}, it holds round "
                          f"{rec.round}: ignored ({reason})")
            return []
        entry.confirm_by = None
        try:
            if state is TaskState.ACTIVE and rec.state is TaskState.AWARDED:
                self.ledger.transition(task_id, TaskState.ACTIVE, now, robot=robot,
                                       remote_lamport=lamport)
                self._slot_freed()   # it started its next task
            elif state is TaskState.DONE:
                if rec.state is TaskState.AWARDED:
                    self.ledger.transition(task_id, TaskState.ACTIVE, now, robot=robot)
                self.ledger.transition(task_id, TaskState.DONE, now, robot=robot,
                                       remote_lamport=lamport)
                self._ended(task_id)
            elif state is TaskState.FAILED:
                return self._requeue(task_id, robot, f"{robot} failed: {reason}", now)
        except LedgerError as e:
            self.log.warning(f"status {state} of {task_id} from {robot}: {e}")
        return []

    def _late_done(self, rec: TaskRecord, robot: str, now: float,
                   lamport: int | None) -> list[Action]:
        """`robot`, which the task was taken from when it was lost, finished it (see the
        module doc: late results)."""
        task_id = rec.task.id
        out = self._stop_auction(task_id, now)
        try:
            self.ledger.complete_late(task_id, robot, now, remote_lamport=lamport)
        except LedgerError as e:
            self.log.warning(f"late DONE of {task_id} from {robot}: {e}")
            return out
        self._ended(task_id)
        if rec.state in (TaskState.AWARDED, TaskState.ACTIVE) and rec.robot:
            out.append(Rejection(task_id, rec.round, rec.robot, winner=robot,
                                 reason=f"withdrawn: done by {robot}"))
        self.log.info(f"task {task_id} done by {robot}, which it had been taken from when it "
                      f"was lost (it was {rec.state}{' with ' + rec.robot if rec.robot else ''}"
                      f"{', award withdrawn' if rec.robot else ''})")
        return out

    def on_robot_state(self, now: float, robot: str, task_ids: Sequence[str] = (),
                       incarnation: Incarnation = None,
                       done: Sequence[str] = ()) -> list[Action]:
        """A RobotState: `robot` is alive and holds `task_ids` (current, then queued); it
        finished `done` last. Reconciled with the ledger (module doc). A state from a new
        incarnation (its agent restarted, maybe too quickly to be declared lost) must
        confirm the robot's in-flight tasks within `confirm_window`: a new agent knows
        nothing of its predecessor's awards."""
        before = self.membership.incarnation.get(robot)
        if not self.membership.heard(robot, incarnation):
            return []   # the old agent of a removed robot
        if robot not in self.robots:
            self._slot_freed()   # a robot joined or is back
            # first heard since a restart: its in-flight tasks' confirm windows start now
            # (its DONE may have been lost with the old dispatcher; its states say so)
            for held_id in self.holding.get(robot, ()):
                awaited = self.entries[held_id]
                if awaited.await_holder and awaited.confirm_by is not None:
                    awaited.confirm_by = max(awaited.confirm_by, now + self.config.confirm_window)
                awaited.await_holder = False
        self.robots[robot] = now
        self.lost.discard(robot)
        if before is not None and incarnation is not None and incarnation != before:
            listed = set(task_ids)
            for held in self.ledger.in_flight():
                open_entry = self._entry(held.task.id)
                if held.robot == robot and held.task.id not in listed \
                        and open_entry.confirm_by is None:
                    open_entry.confirm_by = now + self.config.confirm_window
                    open_entry.unconfirmed = f"a restart of {robot}'s agent"
                    open_entry.unheard = False   # it forgot the task: an attempt
                    self.log.info(f"{robot}'s agent restarted: {held.task.id} goes back to "
                                  f"auction unless it confirms it within "
                                  f"{self.config.confirm_window:g} s")
        for task_id in task_ids:
            entry = self.entries.get(task_id) if task_id else None
            if entry is not None and entry.confirm_by is not None:
                rec = self.ledger.get(task_id)
                if rec is not None and rec.robot == robot:
                    entry.confirm_by = None
        if done:
            self.reports_done.add(robot)
        self.listed[robot] = {t for t in task_ids if t}
        return self._reconcile(now, robot, {t for t in task_ids if t}, [t for t in done if t])

    # -- reconciliation -----------------------------------------------------------------

    def _reconcile(self, now: float, robot: str, listed: set[str],
                   done: list[str]) -> list[Action]:
        out: list[Action] = []
        for task_id in done:                          # a DONE we missed
            entry = self.entries.get(task_id)
            if entry is not None and (entry.holder == robot or robot in entry.lost_holders):
                out += self._repair_done(task_id, robot, now)
        wait = self.config.reconcile_after
        for task_id in list(self.holding.get(robot, ())):   # given to it, not reported
            entry = self.entries[task_id]
            if task_id in listed:
                entry.unlisted_since = None
                continue
            if entry.unlisted_since is None:
                entry.unlisted_since = now
            if now - entry.unlisted_since < wait:
                continue
            out += self._repair_unlisted(task_id, entry, robot, now)
        for task_id in listed:                        # reported, not given to it
            entry = self.entries.get(task_id)
            if entry is not None and entry.holder == robot:
                continue   # its own
            if entry is not None and robot in entry.lost_holders:
                # a former holder, heard again, drives it on (a false loss): it gets it
                # back unless another robot won it meanwhile (its late result counts)
                out += self._restore(task_id, entry, robot, now)
                continue
            out += self._withdraw(task_id, robot, now)
        return out

    def _restore(self, task_id: str, entry: TaskEntry, robot: str,
                 now: float) -> list[Action]:
        """Give `task_id` back to `robot`, which it was taken from when it was declared lost
        and which still holds it (it was cut off, not dead): another robot awarded it would
        only wait at its stations for it to yield, or do it a second time."""
        rec = self.ledger.get(task_id)
        if rec is None or rec.state not in (TaskState.QUEUED, TaskState.ANNOUNCED) \
                or robot in entry.unable:
            return []
        out = self._stop_auction(task_id, now)
        try:
            if rec.state is TaskState.QUEUED:
                rec = self.ledger.transition(task_id, TaskState.ANNOUNCED, now)
            # the loss was a false one (it drove on): not an attempt that failed
            self.ledger.transition(task_id, TaskState.AWARDED, now, robot=robot,
                                   auction_round=rec.round, refund=True,
                                   reason=f"reconciled: {robot}, heard again after its loss, "
                                          "still holds it; given back to it")
        except LedgerError as e:
            self.log.warning(f"cannot give {task_id} back to {robot}: {e}")
            return out
        entry.announce_at, entry.pooled, entry.deferred = None, False, ""
        entry.no_bid_rounds, entry.confirm_by = 0, None
        self._hold(task_id, robot, rec.round, now)
        entry.unlisted_since = None   # it lists it
        self.log.info(f"task {task_id}: {robot}, heard again after its loss, still holds "
                      f"it; given back to it (round {rec.round})")
        return out + [Award(task_id, rec.round, robot),
                      self._status(task_id, TaskState.AWARDED, robot, rec.round)]

    def _note(self, task_id: str, event: str, now: float, robot: str, why: str) -> None:
        try:
            self.ledger.note(task_id, event, now, robot, {"reason": why})
        except LedgerError as e:
            self.log.warning(f"cannot record the repair of {task_id}: {e}")
        self.log.warning(f"task {task_id}: {why}")

    def _repair_done(self, task_id: str, robot: str, now: float) -> list[Action]:
        rec = self.ledger.get(task_id)
        if rec is None or rec.state in TERMINAL_STATES:
            return []
        if rec.robot != robot:
            return self._late_done(rec, robot, now, None)
        try:
            if rec.state is TaskState.AWARDED:
                self.ledger.transition(task_id, TaskState.ACTIVE, now, robot=robot)
            self.ledger.transition(task_id, TaskState.DONE, now, robot=robot,
                                   reason=f"reconciled: {robot} reports it done (its DONE "
                                          "was not heard)")
        except LedgerError as e:
            self.log.warning(f"reconciled DONE of {task_id} from {robot}: {e}")
            return []
        self.log.warning(f"task {task_id}: {robot} reports it done, its DONE was not heard; "
                         "accepted")
        self._ended(task_id)
        return []

    def _repair_unlisted(self, task_id: str, entry: TaskEntry, robot: str,
                         now: float) -> list[Action]:
        rec = self.ledger.get(task_id)
        if rec is None or rec.robot != robot or rec.state not in (TaskState.AWARDED,
                                                                  TaskState.ACTIVE):
            self._unhold(task_id)
            return []
        if rec.state is TaskState.AWARDED and not entry.award_resent:
            entry.award_resent, entry.unlisted_since = True, now
            self._note(task_id, "award_resent", now, robot,
                       f"reconciled: {robot} does not report its award of round "
                       f"{entry.round}; sending it again")
            return [Award(task_id, entry.round, robot)]
        if rec.state is TaskState.ACTIVE and robot not in self.reports_done:
            return []   # it may have finished it: without its finished list, never guess
        why = (f"reconciled: {robot} never acknowledged the award" if rec.state is
               TaskState.AWARDED else f"reconciled: {robot} no longer reports it")
        self.log.warning(f"task {task_id}: {why}")
        return self._requeue(task_id, robot, why, now)

    def _withdraw(self, task_id: str, robot: str, now: float) -> list[Action]:
        key = (task_id, robot)
        last = self._withdrawn.get(key)
        if last is not None and now - last < self.config.reconcile_after:
            return []
        if len(self._withdrawn) > 10_000:   # a long run: forget old repairs
            self._withdrawn = {k: t for k, t in self._withdrawn.items()
                               if now - t < self.config.reconcile_after}
        rec = self.ledger.get(task_id)
        rnd = self.ledger.last_award(task_id, robot) if rec is not None else None
        if rec is None or rnd is None:
            return []   # never given to it: nothing to withdraw (a bogus report)
        self._withdrawn[key] = now
        what = (f"it ended ({rec.state})" if rec.state in TERMINAL_STATES
                else f"the ledger gives it to {rec.robot}" if rec.robot
                else f"it is {rec.state} (back to auction)")
        self._note(task_id, "withdrawn", now, robot,
                   f"reconciled: {robot} reports it but {what}; withdrawn from {robot}")
        return [Rejection(task_id, rnd, robot, winner=rec.robot or "",
                          reason=f"withdrawn: {what}")]

    def _drop_bids(self, robot: str, reason: str) -> list[Action]:
        """`robot`'s proposals in the rounds still running no longer count (it was lost or
        removed): a round closing later must not award a robot that cannot confirm."""
        out: list[Action] = []
        for entry in self.entries.values():
            if entry.initiator is not None:
                out += self._send(entry.initiator, entry.initiator.drop(robot, reason))
        return out

    def on_robot_lost(self, now: float, robot: str) -> list[Action]:
        self.robots.pop(robot, None)
        self.lost.add(robot)
        out = self._drop_bids(robot, f"refused: {robot} was declared lost")
        for rec in self.ledger.in_flight():
            if rec.robot == robot:
                out += self._requeue(rec.task.id, robot, f"robot {robot} was lost", now,
                                     lost=True)
        return out

    def on_robot_removed(self, now: float, robot: str) -> list[Action]:
        self.robots.pop(robot, None)
        self.listed.pop(robot, None)
        self.lost.discard(robot)
        self.membership.remove(robot)
        out = self._drop_bids(robot, f"refused: {robot} was removed from the fleet")
        requeued = []
        for rec in self.ledger.in_flight():
            if rec.robot == robot:
                out += self._requeue(rec.task.id, robot,
                                     f"robot {robot} was removed from the fleet", now)
                requeued.append(rec.task.id)
        self.log.info(f"robot {robot} removed from the fleet; tasks back to auction: "
                      f"{requeued or 'none'}")
        return out

    # -- views --------------------------------------------------------------------------

    def open_tasks(self) -> Mapping[str, TaskEntry]:
        return self.entries

    def excluded(self) -> dict[str, set[str]]:
        """task -> the robots not asked now (they gave it back; `_excluded`)."""
        out = {t: self._excluded(t, e) for t, e in self.entries.items()}
        return {t: robots for t, robots in out.items() if robots}

    def deferred(self) -> dict[str, str]:
        """task -> why it is held back (a station held by a lost robot)."""
        return {t: e.deferred for t, e in self.entries.items() if e.deferred}

    def former_holders(self) -> dict[str, set[str]]:
        """task -> the robots it was taken from on loss (their late DONE counts)."""
        return {t: set(e.lost_holders) for t, e in self.entries.items() if e.lost_holders}

