"""Counting contact events: a pair of things that enters contact counts once.

The world reports, after every step, which pairs are touching right now. A pair that was
not touching before counts one *event*; it stays one event for as long as it keeps
touching, and for ``release_steps`` steps after it separates, so a physical robot that
bounces against a wall for a few steps is still one collision, not ten.

Pairs are ``(a, b)`` tuples of robot indices (robot-robot, ``a < b``) or
``(robot, OBSTACLES)`` (robot against any static obstacle: merging obstacle cells into
boxes must not change the count, so all obstacles are one party).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

#: The party standing for every static obstacle in robot-obstacle pairs.
OBSTACLES = -1


@dataclass(frozen=True)
class ContactEvent:
    """One pair entering contact: sim ``time`` (s), ``kind`` ("robot_robot" or
    "robot_obstacle"), and the parties by name (``b`` is "obstacle" for obstacles)."""

    time: float
    kind: str
    a: str
    b: str


@dataclass
class ContactCounter:
    """Contact events since the world was built.

    ``robot_robot`` and ``robot_obstacle`` count events; ``active`` holds the pairs in
    contact after the last step; ``events`` lists every event in order (they are rare in
    a fleet that works, so keeping them all is cheap and lets a report name them).
    """

    release_steps: int = 1
    robot_robot: int = 0
    robot_obstacle: int = 0
    active: frozenset = frozenset()
    events: list[ContactEvent] = field(default_factory=list)
    _armed_after: dict = field(default_factory=dict, repr=False)  # pair -> steps apart

    def __post_init__(self) -> None:
        if not (isinstance(self.release_steps, int) and self.release_steps >= 1):
            raise ValueError(f"release_steps must be an int >= 1, got {self.release_steps!r}")

    @property
    def total(self) -> int:
        return self.robot_robot + self.robot_obstacle

    def update(self, touching: Iterable[tuple[int, int]], time: float,
               names: list[str]) -> list[ContactEvent]:
        """Record the pairs touching after one step; returns the new events."""
        now = frozenset(touching)
        new: list[ContactEvent] = []
        for pair in now:
            if pair in self.active or pair in self._armed_after:
                self._armed_after.pop(pair, None)  # still the same contact
                continue
            a, b = pair
            if b == OBSTACLES:
                self.robot_obstacle += 1
                new.append(ContactEvent(time, "robot_obstacle", names[a], "obstacle"))
            else:
                self.robot_robot += 1
                new.append(ContactEvent(time, "robot_robot", names[a], names[b]))
        # Pairs that just separated wait release_steps steps before they can count again.
        for pair in self.active - now:
            self._armed_after[pair] = 0
        for pair in list(self._armed_after):
            if pair in now:
                continue
            self._armed_after[pair] += 1
            if self._armed_after[pair] >= self.release_steps:
                del self._armed_after[pair]
        self.active = now
        self.events.extend(new)
        return new
