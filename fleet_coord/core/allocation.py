"""Allocation for throughput: batch Contract Net rounds that keep re-balancing open tasks.

What a fleet is paid for is tasks done per hour, so what a robot bids is the
**completion time** of the task if it were its next one (how long until it is free,
plus the drive to the task, plus the task itself), not the marginal driving: a bid on
travel alone lets a robot near the picks win task after task while another stands idle.

One round of the initiator (``Rebalancer.decide``) covers every open task nobody has
started yet -- new ones and ones already awarded -- as a batch:

    cfp(tasks)            -------------->  every robot that could take a next task
                          <--------------  propose: one completion time per task
                                           (inf: refuse -- battery, payload, unreachable)
    minimum-cost matching of robots to tasks (``linear_sum_assignment``), at most one
    next task per robot; a task keeps its current robot unless moving it saves more than
    ``keep_bonus`` (hysteresis: no churn for a second's gain)
    accept-proposal       -------------->  robots that get a task they did not hold
    cancel (``Withdraw``) -------------->  robots whose unstarted task moved to another
    reject-proposal       -------------->  the other bidders

Run a round whenever the fleet changes -- a robot becomes free, a task arrives, a robot
falls behind in traffic (its completion times grow, so its unstarted task moves to a
robot that is now quicker) -- or periodically. A task a robot has started stays with it.

Pure core: no rclpy, time is a parameter, deterministic (ties by order of the inputs).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from fleet_coord.core.contract_net import (AcceptProposal, Participant, Proposal, Refusal,
                                           RejectProposal, RobotState, explain_no_bids)
from fleet_coord.core.tasks import Task

__all__ = ["Withdraw", "BatchProposals", "Rebalancer", "RoundOutcome", "Slot", "TaskPool"]


@dataclass(frozen=True)
class Withdraw:
    """cancel: the initiator takes an awarded, unstarted task back from `robot` (it was
    re-allocated); the robot drops it from its queue and stops driving to it."""
    robot: str
    task_id: str
    round: int
    reason: str = ""
    performative = "cancel"


@dataclass
class BatchProposals:
    """The answers to one batch cfp: ``cost[i, j]`` is robot ``robots[i]``'s completion
    time (s or steps from now) for task ``tasks[j]``; ``inf`` is a refusal."""
    robots: Sequence[str]
    tasks: Sequence[str]
    cost: np.ndarray

    def __post_init__(self) -> None:
        self.cost = np.asarray(self.cost, dtype=float)
        if self.cost.shape != (len(self.robots), len(self.tasks)):
            raise ValueError(f"cost must be {len(self.robots)} robots x {len(self.tasks)} "
                             f"tasks, got shape {self.cost.shape}")
        if np.isnan(self.cost).any() or (self.cost < 0).any():
            raise ValueError("costs must be >= 0 (inf for a refusal), got a negative or NaN")


Action = Union[AcceptProposal, RejectProposal, Withdraw]


@dataclass
class RoundOutcome:
    """What one round decided: the award of every task it covered (``None``: nobody),
    the messages to send, and how many tasks changed robot."""
    award: dict[str, str | None]
    actions: list[Action]
    moved: int


class Rebalancer:
    """The initiator of batch allocation rounds (see the module docstring)."""

    def __init__(self, keep_bonus: float = 2.0) -> None:
        if not (keep_bonus >= 0 and math.isfinite(keep_bonus)):
            raise ValueError(f"keep_bonus must be a number >= 0, got {keep_bonus!r}")
        self.keep_bonus = float(keep_bonus)
        self.round = 0

    def decide(self, proposals: BatchProposals,
               holders: Mapping[str, str]) -> RoundOutcome:
        """Allocate the batch. ``holders`` maps a task of the batch to the robot that
        holds it now (unstarted); a holder not among the bidders loses it."""
        self.round += 1
        robots, tasks = list(proposals.robots), list(proposals.tasks)
        cost = proposals.cost
        R, T = cost.shape
        row = {r: i for i, r in enumerate(robots)}
        col = {t: j for j, t in enumerate(tasks)}
        finite = np.isfinite(cost)
        award: dict[str, str | None] = {t: None for t in tasks}
        if R and T and finite.any():
            big = 1.0 + float(np.abs(cost[finite]).sum()) + self.keep_bonus * (R + T)
            c = np.where(finite, cost, big)
            for t, r in holders.items():
                i, j = row.get(r), col.get(t)
                if i is not None and j is not None and finite[i, j]:
                    c[i, j] -= self.keep_bonus
            rows, cols = linear_sum_assignment(c)
            for i, j in zip(rows.tolist(), cols.tolist()):
                if finite[i, j]:
                    award[tasks[j]] = robots[i]
        actions: list[Action] = []
        moved = 0
        for t in tasks:
            old, new = holders.get(t), award[t]
            if old == new:
                continue
            if old is not None:
                actions.append(Withdraw(old, t, self.round,
                                        reason=f"re-allocated to {new}" if new else
                                        "re-allocated"))
                moved += new is not None
            if new is not None:
                actions.append(AcceptProposal(new, t, self.round))
        # A robot's answer to the batch cfp is accepted for at most one task; one that
        # proposed and got nothing hears one reject for the batch (task id "").
        winners = {r for r in award.values() if r is not None}
        for i, r in enumerate(robots):
            if r not in winners and finite[i].any():
                actions.append(RejectProposal(r, "", self.round,
                                              reason="no task for you in this round"))
        return RoundOutcome(award, actions, moved)


# ---------------------------------------------------------------------------------------
# The dispatcher's pool: one next task per robot, re-balanced by rounds
# ---------------------------------------------------------------------------------------

@dataclass
class Slot:
    """A robot as the pool sees it: where and when its started work ends, the task it is
    executing (None: idle) and the next task awarded to it (unstarted: it can move)."""
    position: str
    free_at: float
    started: str | None = None
    next: str | None = None


class TaskPool:
    """Open tasks awarded for throughput: each robot holds at most one awarded, unstarted
    task -- its next one -- and ``round`` re-allocates all of them as a batch (the
    ``Rebalancer``) from the robots' completion-time bids. A robot that frees up takes
    its next task (``start_next``); the rest wait in the pool, so work spreads over
    the fleet instead of queueing behind the robots nearest to the picks.

    The bids are the robots' own: ``participants[robot]`` is its
    ``contract_net.Participant`` (objective "completion"), asked with an empty queue
    from where and when its started work ends, so it refuses what it cannot do
    (battery, payload, unreachable, unknown station) exactly as in a single auction.

    ``keep_next``: an awarded next task stays with its robot (what the dispatcher's
    pool does, core.dispatch); a round then matches only the tasks nobody holds to the
    robots without a next task.
    """

    def __init__(self, participants: Mapping[str, Participant],
                 keep_bonus: float = 2.0, keep_next: bool = False) -> None:
        self.participants = dict(participants)
        self.rebalancer = Rebalancer(keep_bonus)
        self.keep_next = keep_next
        self.slots: dict[str, Slot] = {}
        self.open: dict[str, Task] = {}          # tasks not started yet, by id
        self.refusals: dict[str, list[Refusal]] = {}

    def add_robot(self, robot: str, position: str, free_at: float) -> None:
        if robot not in self.participants:
            raise ValueError(f"robot {robot!r} has no participant")
        self.slots[robot] = Slot(position, free_at)

    def add_task(self, task: Task) -> None:
        if task.id in self.open or any(s.started == task.id for s in self.slots.values()):
            raise ValueError(f"task {task.id!r} is already in the pool")
        self.open[task.id] = task

    def round(self, now: float) -> RoundOutcome:
        """Ask every robot for its completion time of every unstarted task and
        re-allocate the next tasks; returns the decision and the messages."""
        kept = {s.next for s in self.slots.values() if s.next is not None} \
            if self.keep_next else set()
        robots = sorted(r for r, s in self.slots.items() if not (kept and s.next is not None))
        tasks = sorted(set(self.open) - kept)
        cost = np.full((len(robots), len(tasks)), np.inf)
        self.refusals = {t: [] for t in tasks}
        for i, r in enumerate(robots):
            slot = self.slots[r]
            state = RobotState(position=slot.position, free_at=max(slot.free_at, now), now=now)
            for j, t in enumerate(tasks):
                answer = self.participants[r].bid(self.open[t], state, self.rebalancer.round + 1)
                if isinstance(answer, Proposal):
                    cost[i, j] = answer.cost
                else:
                    self.refusals[t].append(answer)
        holders = {s.next: r for r, s in self.slots.items() if s.next is not None
                   and s.next not in kept}
        outcome = self.rebalancer.decide(BatchProposals(robots, tasks, cost), holders)
        for r in robots:
            self.slots[r].next = None
        for t, winner in outcome.award.items():
            if winner is not None:
                self.slots[winner].next = t
        return outcome

    def why_unawarded(self, task_id: str) -> str:
        """Why nobody bid on ``task_id`` in the last round (refusal reasons)."""
        return explain_no_bids(self.open[task_id], self.refusals.get(task_id, ()),
                               self.slots)

    def start_next(self, robot: str) -> Task | None:
        """``robot`` is free: it starts its next task (None: it has none)."""
        slot = self.slots[robot]
        if slot.next is None:
            return None
        task = self.open.pop(slot.next)
        slot.started, slot.next = task.id, None
        for participant in self.participants.values():
            participant.forget(task.id)
        return task

    def finished(self, robot: str, position: str, free_at: float) -> None:
        """``robot``'s started task ends at ``position`` at ``free_at`` (known once it
        started: the pool bids from there)."""
        slot = self.slots[robot]
        slot.position, slot.free_at, slot.started = position, free_at, None
