"""Pacing: how often a robot that stands still says something new.

A parked robot's state and odometry repeat themselves: at 10 Hz (states, each signed with
the robot's key and checked by every node that hears it) and 20-50 Hz (odometry, MAC-ed on
the driver link). So:

- `StatePacer` (the robot agent's RobotState): a new state at every state tick
  (`state_rate`) while the robot has a job or moves, and whenever anything the state says
  changes (its job, task, queue, mode, vertex, done list, table epoch, its pose by more
  than `POSE_TOLERANCE`); at `idle_rate` while it stands idle and nothing changes. In
  between, the agent sends its last state again, unchanged (no new signature; the nodes
  take an exact copy within 1 s without checking it again, fleet_coord.node_auth), so
  the state still arrives at every tick: loss detection keeps `state_rate` x `lost_after`
  chances per window (the fleet runs on lossy links: 2 Hz would leave 3 per 1.5 s, and a
  link losing 30 % of its packets loses all 3 about every 20 s per robot).
- `OdomPacer` (a driver's odometry): every step while the robot is commanded or moves,
  and for `idle_after` s after it last was (the stop itself at full rate); then at
  `idle_rate` until the first non-zero command, which brings the full rate back at once
  (the agent's tracker acts on fresh odometry when it drives). Nothing judges a parked
  robot's liveness by its odometry unless an agent's `driver_timeout` is set.

`rate_problem` says when a loss timeout leaves fewer than `MIN_STATES_PER_LOSS` messages
per window (one or two late or lost ones would make a robot look dead). Pure: time is a
parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fleet_coord.core.execution import Activity, StateReport

#: Hz: the robot agent's defaults (`state_rate`, `idle_state_rate`) and the drivers'
#: (`idle_rate_hz` / `idle_odom_rate`, after `idle_after` s)
STATE_RATE = 10.0
IDLE_STATE_RATE = 2.0
IDLE_ODOM_RATE = 2.0
IDLE_AFTER = 1.0
#: Messages per loss-timeout window at least (best-effort delivery and a late timer may
#: cost one or two of them).
MIN_STATES_PER_LOSS = 3
#: m, rad: a pose closer than this to the one last sent is no news (sim physics jitter)
POSE_TOLERANCE = (0.01, 0.01)
#: m/s, rad/s: slower than this the robot stands
STILL = (1e-3, 1e-3)


def _still(v: float, w: float) -> bool:
    return abs(v) < STILL[0] and abs(w) < STILL[1]


def check_rate(name: str, value: float) -> None:
    """An idle rate is > 0 Hz and finite, or 0 (off: always the full rate)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of Hz >= 0 (0 = off), got {value!r}")


def rate_problem(timeout: float, rate: float, idle_rate: float, who: str,
                 rate_name: str, idle_name: str) -> str:
    """Why messages at `idle_rate` while the robot stands idle (0: at `rate`) are too few
    for a node that takes `timeout` s without one for a dead robot (`who`, e.g.
    "traffic.lost_after"), naming the rates' parameters; "" when they are enough
    (`MIN_STATES_PER_LOSS` per window)."""
    slow, name = (idle_rate, idle_name) if 0 < idle_rate < rate else (rate, rate_name)
    if slow * timeout >= MIN_STATES_PER_LOSS - 1e-9:
        return ""
    return (f"{who} {timeout:g} s leaves fewer than {MIN_STATES_PER_LOSS} messages of a "
            f"parked robot per window ({name} {slow:g} Hz): raise {name} to "
            f">= {MIN_STATES_PER_LOSS / timeout:g} Hz or {who} to "
            f">= {MIN_STATES_PER_LOSS / slow:g} s")


@dataclass(frozen=True)
class _Said:
    """What a state says besides its pose and counter: a change of it is news."""
    activity: Activity
    task_id: str
    queued: tuple[str, ...]
    vertex: int | None
    table_epoch: int
    done: tuple[str, ...]


class StatePacer:
    """Whether a robot's state goes out at this state tick. `period`: the state timer's
    (1 / state_rate); `idle_rate`: Hz while it stands idle and nothing changes (0: every
    tick)."""

    def __init__(self, period: float, idle_rate: float) -> None:
        check_rate("idle_state_rate", idle_rate)
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"state period must be > 0 s, got {period!r}")
        self.period = period
        # the timer jitters: the idle period is met at the tick closest to it
        self.idle_period = max(period, 1.0 / idle_rate) - 0.5 * period if idle_rate else 0.0
        self._said: _Said | None = None
        self._pose: tuple[float, float, float] | None = None
        self._sent_at: float | None = None

    def due(self, now: float, report: StateReport) -> bool:
        """`report`: the StateReport (core.execution) it would send now. True: send it
        (the pacer takes it as sent)."""
        said = _Said(report.activity, report.task_id, tuple(report.queued), report.vertex,
                     report.table_epoch, tuple(report.done))
        pose = report.pose
        quiet = (self.idle_period > 0 and report.activity is Activity.IDLE
                 and _still(*report.twist)
                 and said == self._said and self._sent_at is not None
                 and now - self._sent_at < self.idle_period
                 and not self._moved(pose))
        if quiet:
            return False
        self._said, self._pose, self._sent_at = said, pose, now
        return True

    def _moved(self, pose: tuple[float, float, float] | None) -> bool:
        if pose is None or self._pose is None:
            return pose is not self._pose
        (x, y, th), (x0, y0, th0) = pose, self._pose
        turn = abs((th - th0 + math.pi) % (2 * math.pi) - math.pi)
        return math.hypot(x - x0, y - y0) > POSE_TOLERANCE[0] or turn > POSE_TOLERANCE[1]


class OdomPacer:
    """Whether a robot's odometry goes out at this driver step. `period`: the driver's
    step (1 / its rate); `idle_rate`: Hz once it has stood with no command for
    `idle_after` s (0: every step)."""

    def __init__(self, period: float, idle_rate: float, idle_after: float = 1.0) -> None:
        check_rate("idle odometry rate", idle_rate)
        if not (math.isfinite(idle_after) and idle_after >= 0):
            raise ValueError(f"idle_after must be a finite number of s >= 0, got {idle_after!r}")
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"odometry period must be > 0 s, got {period!r}")
        self.idle_period = max(period, 1.0 / idle_rate) - 0.5 * period if idle_rate else 0.0
        self.idle_after = idle_after
        self._active_at: float | None = None   # last time commanded or moving
        self._sent_at: float | None = None

    def due(self, now: float, cmd: tuple[float, float], twist: tuple[float, float]) -> bool:
        """`cmd`: the command the driver applies now ((0, 0): none, or stopped by its
        watchdog or e-stop); `twist`: the robot's speed. True: publish (taken as sent)."""
        if not (_still(*cmd) and _still(*twist)) or self._active_at is None:
            self._active_at = now
        quiet = (self.idle_period > 0 and now - self._active_at >= self.idle_after
                 and self._sent_at is not None and now - self._sent_at < self.idle_period)
        if quiet:
            return False
        self._sent_at = now
        return True
