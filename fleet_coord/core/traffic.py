"""The traffic authority: the one ReservationTable every robot commits to, plus what a
fleet needs around it — refusing robots that are lost, and keeping a lost robot's spot
blocked.

When a robot is lost its future reservations are released, but the space it physically
occupies (the resources it held at the moment it was declared lost) stays blocked until it
returns or is removed: nobody knows where exactly it stopped, only that it is inside what
it had reserved. Blocking can clash with other robots' *future* reservations of that space
(they planned to pass after the lost robot left); those robots lose their reservations
from the clash on and are told to replan — safety before throughput.
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

    def robot_lost(self, robot: str, now: float) -> LossOutcome:
        """Declare `robot` lost at `now`: release its future, block its spot indefinitely."""
        self.lost.add(robot)
        held = self.held_at(robot, now)
        if not held:
            # Nothing covers `now` (e.g. a lease ran out): it is where its last hold ended.
            past = [r for r in self.table.reservations(robot) if r.t_end <= now]
            held = [max(past, key=lambda r: r.t_end)] if past else []
        spot = sorted({r.resource for r in held})
        outcome = LossOutcome(blocked=spot)
        block = [(res, now, math.inf) for res in spot]
        # Others whose future reservations clash with the block lose them from the clash on;
        # repeat until the block commits (each round removes at least one clash).
        for _ in range(10_000):
            result = self.table.commit(robot, block, replace_from=now)
            if result.ok:
                return outcome
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
