"""Tracking a reserved timed path with a unicycle (differential-drive) robot.

A timed path and its time model (``time_model.decode``) say, per traversal of a lane
``u -> v``, when the robot leaves ``u`` and on which speed profile it drives, whether it
stops at ``v`` or passes it, and when it holds what: ``u`` until ``t_leave``, the lane's
middle from ``t_mid``, ``v`` from ``t_enter``. The tracker keeps the robot inside what it
holds:

- **at a stop**: turn in place toward the next lane (driving it in reverse when the
  model allows it and that turns less), leave at the departure time (up to ``lead`` s
  early, never earlier than the holds allow);
- **on a run** (lanes passed without stopping up to the next stop): follow the planned
  position ``lead`` s ahead of the clock — the profile's speed plus a correction
  proportional to the distance to it —, never cross a *wall* before the resource
  behind it is held (the robot slows to arrive at a wall when it opens, or brakes to
  stand there), and brake to stand at the stop at the end of the run.

The walls are where the geometries meet: ``L`` past ``u`` (the middle's edge) and ``L``
before ``v`` (the star of ``v``). Holds are widened by the model's ``margin``: the robot
may be up to ``margin`` s behind its plan and still be inside what it holds (the time
model plans accelerations and turns below the robot's limits so that it can keep up).

With ``TimeModel.drive_ahead`` (the conservative stop-and-turn model: every lane at a
slow constant plan speed, ``plan_speed_for``) the robot instead drives at full speed to
the next wall that is not open yet and stands there: ahead of its plan it has the time
to stop and turn at each vertex; one still standing at a stop when even leaving at
once would take it out of the vertex's star after its hold ends is overdue (its agent
stops and plans again, ``PathTracker.overdue``). Reverse driving means no turn is ever
more than a quarter turn. The first departure of a path also needs a turn: the planner counts it
from the robot's heading (``sipp(..., start_heading=)``).

Pure: time is a parameter, no rclpy.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

from fleet_coord.core.kinematics import Limits
from fleet_coord.core.time_model import (Ramp, TimeModel, as_time_model, cover_time, decode,
                                         run_on_speed, turn_time)

if TYPE_CHECKING:
    from fleet_coord.core.roadmap import Exclusion, Roadmap

__all__ = ["Command", "CommandHistory", "Leg", "PathTracker", "cover_time", "turn_time",
           "control_rate_problem", "plan_speed_for", "resolve_time_model", "robot_time_model",
           "stop_and_turn_quarter_turn", "stop_time"]

#: Share of the acceleration limits the tracker assumes when it brakes (keeps the real
#: robot, which ramps at its limits, from overshooting a stop point).
BRAKE_SHARE = 0.7
#: Heading gain and tolerance of the turn in place (gain * control period must stay < 1).
K_HEADING = 12.0
HEADING_TOL = 0.06
#: ... of the stop-and-turn model's turn in place. Its agent compensates one control
#: period of latency (CommandHistory) that the real one may lack or double: the loop
#: then acts on a pose off by up to one command, and a gain of 12 at 20 Hz rings around
#: the heading for a second or more (never settles with a starved loop's late
#: commands). 6 (about HOLD_SHARE / (period + that latency)) settles from 0 to 2x the
#: assumed latency, in the time the plan allows for a turn (``plan_speed_for``).
K_HEADING_STOP = 6.0
#: Heading gain while driving (lower than in place: the lateral loop rides on it, and at
#: speed it must tolerate command latency the delay compensation did not see) and the
#: look-ahead time of the lateral correction (its time constant at speed).
K_DRIVE = 8.0
T_LOOKAHEAD = 0.5
#: ... capped (m): the lanes' holds have no lateral room, an offset must die out quickly.
MAX_LOOKAHEAD = 0.4
#: Share of an error one command may correct before the next one comes (the gains are
#: capped at HOLD_SHARE / period when commands come late).
HOLD_SHARE = 0.6
#: Gain (1/s) of the correction toward the planned position on a run.
K_ALONG = 3.0
#: Gain (1/s) of the last centimetres of a stop, v = k_stop * distance: the real-speed
#: model plans no slack at stops, so its final approach must be prompt (with delay
#: compensation, CommandHistory); the stop-and-turn model has time and stays gentle even
#: without compensation. Times the control period + latency it must stay below 1.
K_STOP = {"real": 8.0, "stop_and_turn": 4.0}
#: Share of the model's margin the robot runs ahead of its plan (lateness eats it first).
LEAD_SHARE = 0.4


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def heading_settle_time(alpha: float, k_heading: float = K_HEADING,
                        heading_tol: float = HEADING_TOL) -> float:
    """Seconds the heading loop needs beyond the trapezoidal turn: it ends on a
    proportional law (``k_heading``) whose exponential tail counts too."""
    err0 = max(2.0 * alpha / (k_heading * k_heading), heading_tol)  # where the law turns linear
    return math.log(err0 / heading_tol) / k_heading + 0.05


def stop_time(distance: float, limits: Limits, k_stop: float = K_STOP["stop_and_turn"],
              pos_tol: float = 0.02, run_on: float = 0.0) -> float:
    """Seconds the tracker takes from standing `distance` m before a stop (at a wall) to
    standing at it (within `pos_tol`): it accelerates at the robot's limit and follows its
    brake law (``PathTracker._brake``), whose last part is proportional (``k_stop``), so
    this is longer than a bang-bang stop (``cover_time``) at high accelerations; with
    `run_on` no faster than it may run on from (``run_on_speed``)."""
    acc = limits.max_acc if math.isfinite(limits.max_acc) else 1e3
    brake_acc = BRAKE_SHARE * acc
    dt, t, d, v = 1e-3, 0.0, float(distance), 0.0
    while d > pos_tol:
        cap = min(limits.max_v, math.sqrt(2.0 * brake_acc * d), max(k_stop * d, 0.05),
                  run_on_speed(d, brake_acc, run_on) if run_on > 0 else math.inf)
        v = min(cap, v + acc * dt)
        d -= v * dt
        t += dt
    return t


def stop_and_turn_quarter_turn(limits: Limits) -> float:
    """Seconds the stop-and-turn tracker's turn in place takes for a quarter turn (what
    ``plan_speed_for`` allows for one): the trapezoidal turn or, when longer, the
    proportional law's (``K_HEADING_STOP``) approach to ``HEADING_TOL`` plus one
    command period."""
    alpha = limits.max_alpha if math.isfinite(limits.max_alpha) else 1e3
    return max(turn_time(math.pi / 2, limits.max_w, BRAKE_SHARE * alpha),
               math.log((math.pi / 2) / HEADING_TOL) / K_HEADING_STOP + 0.05)


def plan_speed_for(limits: Limits, clearance: float, margin: float = 0.25,
                   run_on: float = 0.0) -> float:
    """The plan speed of the conservative stop-and-turn model: the speed that leaves time
    to stop, make a quarter turn and go again inside a vertex star of radius `clearance`
    (see the module docstring). Never above max_v.

    A vertex's star is held for 2 L / speed. A robot ahead of its plan drives up to the
    star's wall and stands there until the star opens, so within that hold it must come
    to the vertex as the tracker stops (``stop_time``), turn and leave the star: the speed
    is also capped so that this fits with `margin` to spare on each side. `run_on`: the
    tracker's approach is no faster than a robot may run on from (``run_on_speed``)."""
    acc = limits.max_acc if math.isfinite(limits.max_acc) else 1e3
    turn = stop_and_turn_quarter_turn(limits)
    arrive_and_turn = cover_time(clearance, limits.max_v, BRAKE_SHARE * acc) + turn
    leave = cover_time(clearance, limits.max_v, acc)
    in_star = stop_time(clearance, limits, run_on=run_on) + turn + leave
    return min(limits.max_v, clearance / (max(arrive_and_turn, leave) + margin),
               2.0 * clearance / (in_star + 2.0 * margin))


#: The time models a robot can plan with.
TIME_MODELS = ("real", "stop_and_turn")
#: ... and what an agent's ``time_model`` parameter may say: "auto" (its default) is
#: ``resolve_time_model``'s choice.
TIME_MODEL_CHOICES = ("auto", *TIME_MODELS)


def robot_time_model(limits: Limits, clearance: float, kind: str = "real", *,
                     margin: float = 0.3, turn_margin: float = 0.25,
                     plan_speed: float = 0.0, reverse: bool = True,
                     run_on: float = 0.0) -> TimeModel:
    """The ``TimeModel`` a robot with these limits plans with.

    ``"real"``: at its limits (``TimeModel.of_robot``: accelerations and turns at
    ``BRAKE_SHARE`` of them, turns plus the heading loop's settling, holds widened by
    ``margin`` s). ``"stop_and_turn"``: the conservative model, every lane at
    ``plan_speed`` (0: ``plan_speed_for(limits, clearance, turn_margin)``) and the robot
    driving ahead of its plan (``drive_ahead``). `run_on`: s its driver keeps running its
    last command when the agent stops (the watchdog's timeout plus one command period):
    every braking, planned or driven, is one it may run on from (``TimeModel.run_on``)."""
    if kind == "real":
        alpha = limits.max_alpha if math.isfinite(limits.max_alpha) else 1e3
        return TimeModel.of_robot(limits, margin=margin, share=BRAKE_SHARE,
                                  settle=heading_settle_time(BRAKE_SHARE * alpha),
                                  reverse=reverse, run_on=run_on)
    if kind == "stop_and_turn":
        speed = plan_speed if plan_speed > 0 else plan_speed_for(limits, clearance, turn_margin,
                                                                  run_on)
        return TimeModel(max_v=speed, reverse=reverse, drive_ahead=True, run_on=run_on)
    raise ValueError(f"time model must be one of {', '.join(TIME_MODELS)}, got {kind!r}")


#: What one control period may move the robot at its limits before the real-speed model
#: stops holding it inside its reservations under late or jittery commands (measured:
#: 1.5 m/s and 6 rad/s at 20 Hz stay inside, 3 m/s and 20 rad/s do not).
MAX_STEP_M = 0.1
MAX_STEP_RAD = 0.5


def control_rate_problem(limits: Limits, control_rate: float, kind: str = "real") -> Optional[str]:
    """Why the control loop is too slow for the real-speed model at these limits (None
    when it is not): the robot moves more per command than the tracker can correct."""
    if kind != "real" or control_rate <= 0:
        return None
    period = 1.0 / control_rate
    step_m, step_rad = limits.max_v * period, limits.max_w * period
    if step_m <= MAX_STEP_M and step_rad <= MAX_STEP_RAD:
        return None
    return (f"at control_rate {control_rate:g} Hz the robot moves up to {step_m:.2f} m and "
            f"turns up to {step_rad:.2f} rad per command (max_v {limits.max_v:g} m/s, max_w "
            f"{limits.max_w:g} rad/s; the real time model holds it inside its reservations "
            f"up to {MAX_STEP_M:g} m and {MAX_STEP_RAD:g} rad): raise control_rate, lower "
            "the limits or use time_model stop_and_turn")


def resolve_time_model(kind: str, limits: Limits, control_rate: float) -> str:
    """`kind`, or for "auto": "real" when a control loop at `control_rate` Hz holds the
    robot inside its holds at its limits (``control_rate_problem``), else
    "stop_and_turn" (a robot that moves too far per command for the real-speed model)."""
    if kind not in TIME_MODEL_CHOICES:
        raise ValueError(f"time model must be one of {', '.join(TIME_MODEL_CHOICES)}, "
                         f"got {kind!r}")
    if kind != "auto":
        return kind
    return "stop_and_turn" if control_rate_problem(limits, control_rate, "real") else "real"


@dataclass(frozen=True)
class Leg:
    """One traversal of the path: lane u -> v, leaving u at `t_dep` (on `ramp`), at v at
    `t_arr`; u held until `t_leave`, the middle from `t_mid`, v from `t_enter`;
    `stops_after`: the robot stops at v (else it passes v into the next leg)."""
    u: int
    v: int
    t_dep: float
    t_leave: float
    t_mid: float
    t_enter: float
    t_arr: float
    start: tuple[float, float]
    end: tuple[float, float]
    length: float
    wall: float
    has_middle: bool
    stops_after: bool
    ramp: Ramp


@dataclass(frozen=True)
class Command:
    v: float            # m/s (negative: reverse)
    w: float            # rad/s
    progress: float     # 0..1 over the path's lanes
    arrived: bool       # at the last vertex of the path
    vertex: int         # the vertex the robot is at or left last
    leg: int            # index of the lane being driven / next to drive
    driving: bool       # on a lane (False: at a vertex, turning or waiting)


class PathTracker:
    """Follow one committed timed path: `command(x, y, theta, t) -> Command`.

    `model` is the path's time model (a ``TimeModel``, or a plain plan speed: the
    conservative model at that speed); `clearance` the exclusion's L (2 x footprint
    bounding radius). `lead`: how far (s) ahead of its plan the robot runs (default:
    ``LEAD_SHARE`` of the margin; inf with ``drive_ahead``).
    """

    def __init__(self, roadmap: Roadmap, path: Sequence[tuple[int, float]],
                 model: Union[TimeModel, float], clearance: float,
                 limits: Limits, *, lead: Optional[float] = None, pos_tol: float = 0.02,
                 heading_tol: float = HEADING_TOL, k_heading: Optional[float] = None,
                 k_lateral: float = 5.0, k_along: float = K_ALONG,
                 t_lookahead: Optional[float] = None, k_drive: Optional[float] = None,
                 k_stop: Optional[float] = None) -> None:
        if not path:
            raise ValueError("PathTracker: the path is empty")
        if not isinstance(model, TimeModel):
            model = TimeModel(max_v=as_time_model(model).max_v, drive_ahead=True)
        self.model = model
        self.limits = limits
        self.clearance = float(clearance)
        self.pos_tol = pos_tol
        self.heading_tol = heading_tol
        self.k_heading = k_heading if k_heading is not None else \
            (K_HEADING_STOP if model.drive_ahead else K_HEADING)
        self.k_lateral = k_lateral
        # the stop-and-turn model drives short bursts ahead: it steers back at once
        self.t_lookahead = (0.0 if model.drive_ahead else T_LOOKAHEAD) \
            if t_lookahead is None else t_lookahead
        # the stop-and-turn model keeps its tuning: stand at a wall until it opens (it is
        # ahead of its plan anyway), steer back hard
        self.k_drive = K_HEADING if model.drive_ahead and k_drive is None else \
            (k_drive or K_DRIVE)
        self.glide = not model.drive_ahead
        self.k_along = k_along
        self.k_stop = k_stop or K_STOP["stop_and_turn" if model.drive_ahead else "real"]
        if lead is None:
            lead = math.inf if model.drive_ahead else LEAD_SHARE * model.margin
        self.lead = lead
        #: how early it may leave a stop: never before its holds allow
        self.early = min(lead, model.margin)
        self.acc = BRAKE_SHARE * (limits.max_acc if math.isfinite(limits.max_acc) else 1e3)
        #: every command is one the robot may run on for this long (its agent dies: the
        #: driver's watchdog) and still stop where it must (docs/core-model.md)
        self.run_on = model.run_on
        self.alpha = BRAKE_SHARE * (limits.max_alpha if math.isfinite(limits.max_alpha) else 1e3)
        try:
            traversals = decode(roadmap, clearance, path, model)
        except ValueError as e:
            raise ValueError(f"PathTracker: {e}") from None
        pos = roadmap.pos
        self.legs: list[Leg] = []
        for tr in traversals:
            length = float(roadmap.edge_length[tr.e])
            self.legs.append(Leg(
                tr.u, tr.v, tr.t_dep, tr.t_leave, tr.t_mid, tr.t_enter, tr.t_arr,
                (float(pos[tr.u][0]), float(pos[tr.u][1])),
                (float(pos[tr.v][0]), float(pos[tr.v][1])), length,
                min(self.clearance, length / 2.0), tr.timing.has_middle, tr.stops_after,
                tr.ramp))
        self.start_vertex = int(path[0][0])
        self.goal = self.legs[-1].v if self.legs else self.start_vertex
        self.index = 0          # the leg being driven or next to drive
        self.driving = False
        self.reverse = False
        self._speed = 0.0       # the last speed commanded (m/s)
        self._turn_err = 0.0    # |heading error| (rad) of the last command at a stop
        #: the real-speed model adapts its gains to how often it is asked (`period`)
        self.adaptive = not model.drive_ahead
        self.period: Optional[float] = None   # s between commands, as observed
        self._t_last: Optional[float] = None
        #: s the robot left stops' (and passed vertices') stars after its plan did, one
        #: entry per leg it was late on (`take_lateness`); early departures are not listed
        self.lateness: list[float] = []
        self._left = -1         # the last leg whose leaving was measured

    # -- helpers --------------------------------------------------------------------

    @property
    def arrived(self) -> bool:
        return self.index >= len(self.legs) and not self.driving

    @property
    def vertex(self) -> int:
        """The vertex the robot is at, or the one it left last."""
        if self.index >= len(self.legs):
            return self.goal
        return self.legs[self.index].u

    @property
    def next_vertex(self) -> int:
        """Where the robot is going next (its current vertex when it is waiting there)."""
        if self.index >= len(self.legs):
            return self.goal
        return self.legs[self.index].v if self.driving else self.legs[self.index].u

    def _progress(self, p: float = 0.0) -> float:
        if not self.legs:
            return 1.0
        frac = 0.0
        if self.driving and self.index < len(self.legs):
            frac = max(0.0, min(1.0, p / self.legs[self.index].length))
        return min(1.0, (self.index + frac) / len(self.legs))

    def _turn_rate(self, err: float) -> float:
        mag = min(self.limits.max_w, math.sqrt(2.0 * self.alpha * abs(err)),
                  self._gain(self.k_heading) * abs(err))
        return math.copysign(mag, err)

    def _gain(self, k: float) -> float:
        """Gain `k` (1/s), lowered so that a command held until the next one (`period`)
        does no more than HOLD_SHARE of the correction: a starved agent's commands come
        late, and a stiff law then rings (at a stop, a turn that never settles)."""
        if self.period is None:
            return k
        return min(k, HOLD_SHARE / self.period)

    def _observe(self, t: float) -> None:
        """Track the command period from the times asked for (quick to rise, slow to
        fall: one late tick says more ticks will be late)."""
        if self.adaptive and self._t_last is not None and t > self._t_last:
            dt = min(t - self._t_last, 0.5)
            self.period = dt if self.period is None else max(dt, 0.9 * self.period + 0.1 * dt)
        self._t_last = t

    def _cmd(self, v: float, w: float, p: float = 0.0) -> Command:
        return Command(v, w, self._progress(p), self.arrived, self.vertex, self.index,
                       self.driving)

    def _brake(self, distance: float) -> float:
        """The speed from which the robot still stops within `distance` (and creeps the
        last centimetres proportionally, so one control period cannot overshoot); with
        run-on, also if this command is its last (``run_on_speed``)."""
        if distance <= 0.0:
            return 0.0
        v = min(math.sqrt(2.0 * self.acc * distance),
                max(self._gain(self.k_stop) * distance, 0.05))
        if self.run_on > 0.0:
            v = min(v, run_on_speed(distance, self.acc, self.run_on))
        return v

    def _speed_cap(self, p: float, t: float) -> tuple[float, float]:
        """(highest safe speed, distance to the stop ending this run) for a robot `p` m
        along the current leg at time `t`: it must stop at the run's end and reach no
        wall before the resource behind it is held."""
        cap = self.limits.max_v
        # walls farther off cannot bind
        horizon = cap * cap / (2.0 * self.acc) + cap * (1.0 + self.run_on)
        base = 0.0
        for j in range(self.index, len(self.legs)):
            leg = self.legs[j]
            walls: tuple[tuple[float, float], ...]
            if leg.has_middle:
                walls = ((leg.wall, leg.t_mid), (leg.length - leg.wall, leg.t_enter))
            else:
                walls = ((leg.length / 2.0, leg.t_enter),)
            for x, opens in walls:
                if t < opens:
                    # slow to arrive when it opens, or brake to stand in front of it (past
                    # it already, an overshoot: stand still, do not make it worse)
                    ahead = base + x - p
                    glide = ahead / (opens - t) if self.glide else 0.0
                    cap = min(cap, max(self._brake(ahead), glide))
            if leg.stops_after:
                stop = base + leg.length - p
                return min(cap, self._brake(stop)), stop
            base += leg.length
            if base - p > horizon:
                break
        return cap, math.inf

    def _reference(self, t: float) -> tuple[float, float]:
        """(planned position relative to the current leg's start, planned speed) at `t`."""
        base = 0.0
        for j in range(self.index, len(self.legs)):
            leg = self.legs[j]
            if t <= leg.t_arr or leg.stops_after or j == len(self.legs) - 1:
                x, v = leg.ramp.at(t - leg.t_dep)
                return base + x, v
            base += leg.length
        return base, 0.0

    def overdue(self, t: float) -> bool:
        """The robot still stands at a stop when it can no longer keep to what it holds
        (a turn that did not settle, commands that came late, a stalled loop): the
        real-speed model more than the margin after its planned departure, the
        stop-and-turn model (which leaves when it is ready, ahead of its plan) when even
        leaving now at full speed would take it out of the stop's star after its hold of
        it ends (``Leg.t_leave``, margin included), the rest of its turn counted too.
        The caller stops and plans again from where the robot stands."""
        if self.driving or self.index >= len(self.legs):
            return False
        leg = self.legs[self.index]
        if self.model.drive_ahead:
            return t + self._turn_left() + cover_time(leg.wall, self.limits.max_v,
                                                      self.acc / BRAKE_SHARE) > leg.t_leave
        return t > leg.t_dep + self.model.margin

    def _turn_left(self) -> float:
        """s the turn in place still takes (as ``plan_speed_for`` counts a turn) from the
        heading error of the last command at the stop."""
        err = self._turn_err
        if err <= self.heading_tol:
            return 0.0
        return max(turn_time(err, self.limits.max_w, self.alpha),
                   math.log(err / self.heading_tol) / self.k_heading)

    def can_stop_ahead(self, x: float, y: float, speed: float, latency: float) -> bool:
        """Whether a robot at (x, y) driving at `speed` on its current lane can still
        brake to stand at the lane's end (the next command acts after `latency` s and
        holds for a command period)."""
        if not self.driving or self.index >= len(self.legs):
            return False
        leg = self.legs[self.index]
        ex, ey = ((leg.end[0] - leg.start[0]) / leg.length,
                  (leg.end[1] - leg.start[1]) / leg.length)
        left = leg.length - ((x - leg.start[0]) * ex + (y - leg.start[1]) * ey)
        v = abs(speed)
        need = v * (latency + (self.period or 0.0)) + v * v / (2.0 * self.acc)
        return left - need >= self.pos_tol

    def take_over(self, old: "PathTracker") -> None:
        """Continue where `old` (the same route, re-timed or cut) was: the same leg and
        direction, the same observed command period."""
        self.index, self.driving, self.reverse = old.index, old.driving, old.reverse
        self.period, self._t_last, self._speed = old.period, old._t_last, old._speed
        self._left = old._left

    def take_lateness(self) -> list[float]:
        """How late (s) the robot left the vertices it left since the last call."""
        out, self.lateness = self.lateness, []
        return out

    # -- the control law ------------------------------------------------------------

    def command(self, x: float, y: float, theta: float, t: float) -> Command:
        """The twist to send now, for a robot at (x, y, theta) at time t."""
        self._observe(t)
        if self.index >= len(self.legs):
            return self._cmd(0.0, 0.0)
        leg = self.legs[self.index]
        lane = math.atan2(leg.end[1] - leg.start[1], leg.end[0] - leg.start[0])
        if not self.driving:
            # At a stop: face the lane (or its reverse), leave at the departure time.
            # Stopped off the vertex (an overshoot, a wheel slip) the robot faces the lane
            # as the lane-following law below would steer it there, so it leaves already
            # merging back onto the lane's centre line (the lane's hold is no wider).
            err = _wrap(lane - theta)
            self.reverse = self.model.reverse and abs(err) > math.pi / 2 + 1e-6
            ux, uy = ((leg.end[0] - leg.start[0]) / leg.length,
                      (leg.end[1] - leg.start[1]) / leg.length)
            off = ux * (y - leg.start[1]) - uy * (x - leg.start[0])   # > 0: left of it
            err = _wrap(lane + (math.pi if self.reverse else 0.0)
                        - math.atan(self.k_lateral * off) - theta)
            self._turn_err = abs(err)
            if abs(err) > self.heading_tol or t < leg.t_dep - self.early:
                self._speed = 0.0
                return self._cmd(0.0, self._turn_rate(err) if abs(err) > 1e-3 else 0.0)
            self.driving = True
        ex, ey = ((leg.end[0] - leg.start[0]) / leg.length,
                  (leg.end[1] - leg.start[1]) / leg.length)
        rx, ry = x - leg.start[0], y - leg.start[1]
        p = rx * ex + ry * ey                   # progress along the lane
        while p >= leg.length and not leg.stops_after and self.index + 1 < len(self.legs):
            # passed v without stopping: on along the next lane of the run
            self.index += 1
            leg = self.legs[self.index]
            ex, ey = ((leg.end[0] - leg.start[0]) / leg.length,
                      (leg.end[1] - leg.start[1]) / leg.length)
            rx, ry = x - leg.start[0], y - leg.start[1]
            p = rx * ex + ry * ey
        lateral = ex * ry - ey * rx             # > 0: left of the lane
        if p >= leg.wall and self._left < self.index:
            # out of u's star: when the plan was (its hold of u ends `margin` later)
            self._left = self.index
            late = t - (leg.t_leave - self.model.margin)
            if late > 0.0:
                self.lateness.append(late)
        cap, stop = self._speed_cap(p, t)
        if stop <= self.pos_tol and t >= leg.t_enter:
            self.driving = False
            self.index += 1
            return self.command(x, y, theta, t)
        if math.isinf(self.lead):
            want = self.limits.max_v
        else:
            s_ref, v_ref = self._reference(t + self.lead)
            want = v_ref + self.k_along * (s_ref - p)
            if v_ref <= 0.0 and s_ref >= p + stop - self.pos_tol:
                want = cap   # the plan stands at the stop already: brake into it, no later
        speed = max(0.0, min(want, cap))
        body = math.atan2(ey, ex) + (math.pi if self.reverse else 0.0)
        # Steer back onto the lane over a look-ahead distance that grows with speed, so the
        # lateral loop stays as slow (1 / T_LOOKAHEAD) at 1 m/s as at a crawl and tolerates
        # command latency the delay compensation did not see.
        lookahead = max(1.0 / self.k_lateral, min(self.t_lookahead * self._speed, MAX_LOOKAHEAD))
        want_heading = body - math.atan(lateral / lookahead)
        err = _wrap(want_heading - theta)
        w = max(-self.limits.max_w, min(self.limits.max_w, self._gain(self.k_drive) * err))
        speed *= max(0.0, math.cos(err)) ** 2
        self._speed = speed
        return self._cmd(-speed if self.reverse else speed, w, p)


class CommandHistory:
    """Delay compensation (a Smith predictor for the unicycle).

    The pose an agent reads is old by the time its command acts: the odometry was sampled
    at ``t_odom``, and the command reaches the wheels at ``t_apply`` (transport, the
    driver's command period, a simulator running ahead in lock-step). A heading loop with
    gain ``K_HEADING`` and 0.1-0.2 s of such delay oscillates (turns in place that never
    settle, wobbling on lanes) and the robot falls behind its timed path, i.e. out of its
    reservations. The agent records each command with the time it applies from and
    predicts the pose at ``t_apply`` by integrating the commands in force between the
    odometry sample and then; the tracker then works on that pose and time. Before the
    first recorded command (or after `clear()`, when the agent sent a stop) the robot is
    taken as standing still."""

    def __init__(self, horizon: float = 2.0) -> None:
        self.horizon = horizon
        self._cmds: list[tuple[float, float, float]] = []   # (t_apply, v, w), sorted

    def clear(self) -> None:
        self._cmds.clear()

    def record(self, t_apply: float, v: float, w: float) -> None:
        while self._cmds and self._cmds[-1][0] >= t_apply:
            self._cmds.pop()   # a newer decision for the same instant replaces the old
        self._cmds.append((t_apply, v, w))
        cut = 0
        while cut < len(self._cmds) - 1 and self._cmds[cut + 1][0] < t_apply - self.horizon:
            cut += 1
        del self._cmds[:cut]

    def predict(self, x: float, y: float, theta: float, t_from: float,
                t_to: float) -> tuple[float, float, float]:
        """The pose at `t_to` of a robot at (x, y, theta) at `t_from` that follows the
        recorded commands (each in force from its time until the next one's)."""
        if t_to <= t_from or not self._cmds:
            return x, y, theta
        cmds = self._cmds
        # only the commands in force over (t_from, t_to) contribute: start at the last one
        # applied at or before t_from (called every control tick on ~2 s of history)
        n = len(cmds)
        for i in range(max(0, bisect.bisect_right(cmds, (t_from, math.inf, math.inf)) - 1), n):
            t0, v, w = cmds[i]
            if t0 >= t_to:
                break
            t1 = cmds[i + 1][0] if i + 1 < n else math.inf
            a, b = max(t0, t_from), min(t1, t_to)
            if b <= a:
                continue
            dt = b - a
            if abs(w) < 1e-9:
                x += v * dt * math.cos(theta)
                y += v * dt * math.sin(theta)
            else:   # exact arc
                th1 = theta + w * dt
                x += v / w * (math.sin(th1) - math.sin(theta))
                y -= v / w * (math.cos(th1) - math.cos(theta))
                theta = th1
        return x, y, _wrap(theta)


def containment_error(exclusion: Exclusion, holds: Sequence[tuple[int, float, float]], x: float, y: float,
                      t: float, slack_t: float = 0.0) -> float:
    """How far (m) a robot at (x, y) at time t sticks out of the resources it holds:
    0 when its footprint (circle of the bounding radius) lies inside the union of the
    geometries of `holds` = [(resource, t_start, t_end)] active at t (each widened by
    `slack_t` seconds both ways); inf when it holds nothing at t.

    Used by tests and monitors to check "never outside its reservations"."""
    import shapely

    shapes = [exclusion.geometry(res) for res, t0, t1 in holds
              if t0 - slack_t <= t < t1 + slack_t]
    if not shapes:
        return math.inf
    held = shapely.union_all(shapes)
    r = exclusion.footprint.bounding_radius
    # The farthest point of the disc outside `held` (a vertex of the difference).
    disc = shapely.Point(x, y).buffer(r, quad_segs=8)
    outside = shapely.difference(disc, held)
    if outside.is_empty or outside.area < 1e-9:
        return 0.0
    return float(max(shapely.distance(shapely.points(shapely.get_coordinates(outside)),
                                      held)))
