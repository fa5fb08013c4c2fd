"""Fleet membership: robots join a running fleet by speaking and leave it when removed.

A robot joins when its agent publishes its first RobotState (nothing to register: the
traffic authority and the dispatcher start tracking a robot the first time they hear it).
It leaves on purpose when an operator removes it (`fleet-coord remove-robot`): the
traffic authority releases everything it holds and announces the removal, the dispatcher
stops awarding to it and re-announces its unfinished tasks.

After a removal the robot's old agent may still be running — it missed the announcement,
or it was removed with `--force` while alive — and its states must not make it a member
again: it believes it still holds the vertex it parked on, which is no longer reserved.
So membership remembers, per removed robot, the *incarnation* that spoke for it last (any
token naming one running agent; the nodes use the DDS GID of the agent's state publisher,
new for every agent started). States from that incarnation are ignored; a state from a
new incarnation — an agent started after the removal, `fleet-coord add-robot` — makes the
robot a member again. Likewise an agent replaced by a new incarnation (a restart) is
retired: a late state of it is not heard (the authority keeps a restarted robot's holds
for its new agent, core/traffic.py, and must not see incarnations come and go).

Pure logic, no ROS: the nodes feed it what they hear.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable, Optional

Incarnation = Optional[Hashable]


#: replaced incarnations remembered per robot
RETIRED_KEPT = 64


@dataclass
class Membership:
    #: robot -> the incarnation that spoke for it last (None: never heard)
    incarnation: dict[str, Incarnation] = field(default_factory=dict)
    #: removed robot -> the incarnation that was removed with it (None: any new state
    #: re-admits it)
    removed: dict[str, Incarnation] = field(default_factory=dict)
    #: robot -> incarnations a newer one replaced, oldest first (their straggling states
    #: are not heard)
    retired: dict[str, dict[Incarnation, None]] = field(default_factory=dict)

    def heard(self, robot: str, incarnation: Incarnation = None) -> bool:
        """A state from `robot`, sent by `incarnation`. Returns whether it counts: False
        for the old agent of a removed robot. A removed robot heard from another
        incarnation (or one whose removed incarnation is unknown) is a member again."""
        if robot in self.removed:
            old = self.removed[robot]
            if old is not None and (incarnation is None or incarnation == old):
                return False
            del self.removed[robot]
        if incarnation is not None:
            old = self.incarnation.get(robot)
            if old is not None and old != incarnation:
                retired = self.retired.setdefault(robot, {})
                if incarnation in retired:
                    return False   # a late state of an agent a newer one replaced
                retired[old] = None
                if len(retired) > RETIRED_KEPT:
                    del retired[next(iter(retired))]   # forget the oldest
            self.incarnation[robot] = incarnation
        return True

    def remove(self, robot: str) -> None:
        """`robot` leaves the fleet: its current agent is not heard any more."""
        self.removed[robot] = self.incarnation.pop(robot, None)

    def is_removed(self, robot: str) -> bool:
        return robot in self.removed


def removal_refusal(robot: str, *, known: bool, alive: bool, tasks: Iterable[str] = (),
                    force: bool = False, known_robots: Iterable[str] = ()) -> str | None:
    """Why `robot` may not be removed now, or None when it may.

    - unknown (nobody heard of it, it holds nothing): always refused, naming the robots
      that are known;
    - alive with work (`tasks`: its current and queued task ids): refused unless `force`
      — its agent would be stopped mid-task;
    - lost, or alive and idle: allowed (a lost robot's tasks were already re-announced).
    """
    if not known:
        others = sorted(set(known_robots) - {robot})
        return (f"unknown robot {robot!r}: the fleet has not heard of it"
                + (f" (robots: {', '.join(others)})" if others else " (no robots yet)"))
    tasks = [t for t in tasks if t]
    if alive and tasks and not force:
        return (f"robot {robot!r} is alive and has work ({', '.join(tasks)}); wait until it "
                "is done, cancel its tasks, or force the removal (its tasks go back to "
                "auction)")
    return None


def incarnation_of(message_info: object) -> Incarnation:
    """The incarnation token of a received message: its publisher's GID (rclpy's
    MessageInfo ``publisher_gid``) as bytes, or None when the middleware gives none."""
    gid = (message_info or {}).get("publisher_gid") if isinstance(message_info, dict) else None
    if not gid:
        return None
    data = gid.get("data") if isinstance(gid, dict) else gid
    return bytes(data) if data is not None else None
