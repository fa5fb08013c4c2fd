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

from fleet_coord.core.contract_net import AcceptProposal, RejectProposal

__all__ = ["Withdraw", "BatchProposals", "Rebalancer", "RoundOutcome"]


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
