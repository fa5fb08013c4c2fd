"""Liveness: which robots are alive, judged by the age of their last state message.

DDS liveliness (the state publisher's lease, see fleet_coord.qos) makes the nodes check
early; this tracker makes the decision: a robot whose newest state is older than
`lost_after` seconds is declared lost, once, and is alive again when it speaks again.
Time is a parameter (ROS time in the nodes, simulated time in tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LivenessTracker:
    lost_after: float = 1.5
    last_seen: dict[str, float] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.lost_after > 0:
            raise ValueError(f"lost_after must be > 0 seconds, got {self.lost_after!r}")

    def heard(self, robot: str, now: float) -> bool:
        """Record a state message from `robot` at `now`. Returns True when the robot is new
        or comes back from being lost (the caller announces the join)."""
        returning = robot not in self.last_seen or robot in self.lost
        self.last_seen[robot] = max(now, self.last_seen.get(robot, now))
        self.lost.discard(robot)
        return returning

    def check(self, now: float) -> list[str]:
        """Robots newly declared lost at `now` (each reported once until it returns)."""
        newly = [r for r, t in self.last_seen.items()
                 if r not in self.lost and now - t > self.lost_after]
        self.lost.update(newly)
        return sorted(newly)

    def forget(self, robot: str) -> None:
        """A robot removed from the fleet on purpose is neither alive nor lost."""
        self.last_seen.pop(robot, None)
        self.lost.discard(robot)

    def alive(self) -> list[str]:
        return sorted(r for r in self.last_seen if r not in self.lost)
