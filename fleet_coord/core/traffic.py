"""The traffic authority: the one ReservationTable every robot commits to, plus what a
fleet needs around it — refusing robots that are lost, and keeping a lost robot's spot
blocked.

A robot is declared lost when nobody has heard it for a while. The authority cannot tell
why: its agent may have crashed (the driver's watchdog then stops the robot somewhere on
the path it had committed, after it was last heard) or its host may be cut off (its
agent cannot hear anyone and drives on to the end of what it committed, where it parks).
Either way the robot is inside what it holds from the moment it was last heard on, so:

- nothing it committed is released: a cut-off robot may still be driving it;
- every resource it held since it was last heard stays blocked until it returns or is
  removed (`robot_lost`);
- once its true position is known — its odometry shows it standing still, e.g. a crashed
  agent on a live robot — the rest is released and only the spot it stands on stays
  blocked (`robot_located`).

Blocking can clash with other robots' *future* reservations of that space (they planned
to pass after the lost robot left); those robots lose their reservations from the clash
on and must replan (they see it in their replica) — safety before throughput.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from fleet_coord.core.reservations import CommitResult, Reservation, ReservationTable


@dataclass
class LossOutcome:
    blocked: list[int]                                   # resources kept blocked
    revoked: dict[str, float] = field(default_factory=dict)  # robot -> revoked from time t


class RobotLostError(RuntimeError):
    pass


class TrafficAuthority:
    def __init__(self, table: ReservationTable) -> None:
        self.table = table
        self.lost: set[str] = set()

    def reserve(self, robot: str, segments: Iterable[tuple[int, float, float]], *,
                replace_from: float | None = None,
                lease_expiry: float = math.inf) -> CommitResult:
        """Atomic commit on behalf of `robot`. A lost robot cannot reserve until it returns."""
        if robot in self.lost:
            raise RobotLostError(f"robot {robot!r} is declared lost; it must rejoin before reserving")
        return self.table.commit(robot, list(segments), replace_from=replace_from,
                                 lease_expiry=lease_expiry)

    def release(self, robot: str, after: float | None = None) -> int:
        return self.table.release(robot, after=after)

    def held_at(self, robot: str, t: float) -> list[Reservation]:
        return [r for r in self.table.reservations(robot) if r.t_start <= t < r.t_end]

    def robot_lost(self, robot: str, now: float, last_seen: float | None = None) -> LossOutcome:
        """Declare `robot` lost at `now` (last heard at `last_seen`, default `now`): keep
        what it committed, block what it held since it was last heard, indefinitely."""
        self.lost.add(robot)
        since = now if last_seen is None else min(last_seen, now)
        mine = self.table.reservations(robot)
        held = [r for r in mine if r.t_start <= now and r.t_end > since]
        if not held:
            # Nothing covers that time (e.g. a lease ran out): it is where its last hold ended.
            past = [r for r in mine if r.t_end <= now]
            held = [max(past, key=lambda r: r.t_end)] if past else []
        spot = sorted({r.resource for r in held})
        outcome = LossOutcome(blocked=spot)
        self._block(robot, spot, now, outcome, replace=False)
        return outcome

    def robot_located(self, robot: str, spot: Iterable[int], now: float) -> LossOutcome:
        """A lost robot is known to stand still inside `spot` (resources): release the rest
        of what it holds from `now` on, keep `spot` blocked indefinitely."""
        spot = sorted(set(int(r) for r in spot))
        outcome = LossOutcome(blocked=spot)
        if robot not in self.lost or not spot:
            return outcome
        self._block(robot, spot, now, outcome, replace=True)
        return outcome

    def _block(self, robot: str, spot: list[int], now: float, outcome: LossOutcome, *,
               replace: bool) -> None:
        block = [(res, now, math.inf) for res in spot]
        if not replace:
            # Its own holds of these resources would clash with the block: cut them at
            # `now` only where the block extends them (its future elsewhere stays).
            keep = [r for r in self.table.reservations(robot)
                    if not (r.resource in spot and r.t_end > now)]
            block = [(r.resource, max(r.t_start, now), r.t_end) for r in keep if r.t_end > now] + block
        # Others whose future reservations clash with the block lose them from the clash on;
        # repeat until the block commits (each round removes at least one clash).
        for _ in range(10_000):
            result = self.table.commit(robot, block, replace_from=now)
            if result.ok:
                return
            assert result.conflict is not None   # a refused commit names its conflict
            other = result.conflict.existing
            cut = max(now, other.t_start)
            self.table.release(other.robot, after=cut)
            prev = outcome.revoked.get(other.robot, math.inf)
            outcome.revoked[other.robot] = min(prev, cut)
        raise RuntimeError(f"could not block the spot of lost robot {robot!r}")  # pragma: no cover

    def robot_returned(self, robot: str) -> None:
        """The robot speaks again: it may reserve again (its block stays until it replans)."""
        self.lost.discard(robot)

    def robot_removed(self, robot: str) -> int:
        """The robot was taken out of the fleet on purpose: everything it held is freed."""
        self.lost.discard(robot)
        return self.table.release(robot)
