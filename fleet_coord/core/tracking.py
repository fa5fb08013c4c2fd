"""Tracking a reserved timed path with a unicycle (differential-drive) robot.

A timed path (``[(vertex, time), ...]``, docs/core-model.md) holds, for a traversal of
``u -> v`` departing at ``t`` with duration ``d`` and hold offset ``c``: vertex ``u``
until ``t + c``, the lane's middle over ``[t + c, t + d - c)``, vertex ``v`` from
``t + d - c`` on. The tracker keeps the robot inside what it holds:

- **at a vertex**: rotate in place toward the next lane (driving it in reverse when that
  needs less than a quarter turn), never leave before the departure time;
- **on a lane**: the robot may be in ``u``'s star until ``t + c``, in the middle during
  ``[t + c, t + d - c)`` and in ``v``'s star from ``t + d - c``. The geometries meet at
  two *walls*, ``L`` from ``u`` and ``L`` before ``v``, and the robot must be exactly
  at a wall when the hold changes. So it drives at full speed to the first wall and
  stops there until ``t + c``, to the second wall and stops until ``t + d - c`` (ahead
  of schedule: wait), then on to ``v``, where it stops and turns for the next lane.

Turn-time allowance
-------------------
At a vertex it passes without a planned wait the robot has ``c = L / s`` (plan speed
``s``) from the second wall's opening to the next departure: it must drive the last
``L``, stop and turn in that time, and after the departure drive the first ``L`` of
the next lane in ``c`` again. So the robot is planned at a *conservative* speed
(``plan_speed_for(limits, clearance)``): the largest ``s`` for which ``L / s`` covers
a quarter turn plus the approach, plus a margin for control latency. Reverse driving
means no turn is ever more than a quarter turn. Planning at the robot's top speed would
leave no time to turn. The first departure of a path also needs a turn: the agent
plans it to start ``turn_time`` after now (the robot turns while it holds its start).

Pure: time is a parameter, no rclpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from fleet_coord.core.kinematics import Limits

if TYPE_CHECKING:
    from fleet_coord.core.roadmap import Exclusion, Roadmap

__all__ = ["Command", "CommandHistory", "Leg", "PathTracker", "cover_time", "turn_time",
           "plan_speed_for"]

#: Share of the acceleration limits the tracker assumes when it brakes (keeps the real
#: robot, which ramps at its limits, from overshooting a stop point).
BRAKE_SHARE = 0.7
#: Heading gain and tolerance of the turn in place (gain * control period must stay < 1).
K_HEADING = 12.0
HEADING_TOL = 0.06


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def cover_time(distance: float, max_v: float, acc: float) -> float:
    """Seconds to cover `distance` from (or to) standstill at acceleration `acc`, top
    speed `max_v`."""
    d_acc = max_v * max_v / (2.0 * acc)
    if distance <= d_acc:
        return math.sqrt(2.0 * distance / acc)
    return max_v / acc + (distance - d_acc) / max_v


def turn_time(angle: float, max_w: float, alpha: float) -> float:
    """Seconds to turn `angle` radians in place from rest to rest (trapezoidal profile)."""
    angle = abs(angle)
    if angle <= max_w * max_w / alpha:
        return 2.0 * math.sqrt(angle / alpha)
    return angle / max_w + max_w / alpha


def plan_speed_for(limits: Limits, clearance: float, margin: float = 0.25) -> float:
    """The plan speed that leaves time to stop, make a quarter turn and go again inside a
    vertex star of radius `clearance` (see the module docstring). Never above max_v."""
    acc, alpha = limits.max_acc, limits.max_alpha
    if not math.isfinite(acc):
        acc = 1e3
    if not math.isfinite(alpha):
        alpha = 1e3
    # The turn ends on a proportional law: its exponential tail counts too.
    turn = max(turn_time(math.pi / 2, limits.max_w, BRAKE_SHARE * alpha),
               math.log((math.pi / 2) / HEADING_TOL) / K_HEADING + 0.05)
    arrive_and_turn = cover_time(clearance, limits.max_v, BRAKE_SHARE * acc) + turn
    leave = cover_time(clearance, limits.max_v, acc)
    return min(limits.max_v, clearance / (max(arrive_and_turn, leave) + margin))


@dataclass(frozen=True)
class Leg:
    """One traversal of the path: lane u -> v, leaving at `t_dep`, giving u up at
    `t_leave` (= t_dep + c), holding v from `t_enter` (= t_dep + d - c), arriving (at
    plan speed) at `t_arr`."""
    u: int
    v: int
    t_dep: float
    t_leave: float
    t_enter: float
    t_arr: float
    start: tuple[float, float]
    end: tuple[float, float]
    length: float


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

    `clearance` is the exclusion's L (2 x footprint bounding radius); `plan_speed` the
    speed the path was planned with (lane durations = length / plan speed).
    """

    def __init__(self, roadmap: Roadmap, path: Sequence[tuple[int, float]], plan_speed: float,
                 clearance: float, limits: Limits, *, pos_tol: float = 0.02,
                 heading_tol: float = HEADING_TOL, k_heading: float = K_HEADING,
                 k_lateral: float = 5.0) -> None:
        if not path:
            raise ValueError("PathTracker: the path is empty")
        self.limits = limits
        self.clearance = float(clearance)
        self.pos_tol = pos_tol
        self.heading_tol = heading_tol
        self.k_heading = k_heading
        self.k_lateral = k_lateral
        self.acc = BRAKE_SHARE * (limits.max_acc if math.isfinite(limits.max_acc) else 1e3)
        self.alpha = BRAKE_SHARE * (limits.max_alpha if math.isfinite(limits.max_alpha) else 1e3)
        self.legs: list[Leg] = []
        pos = roadmap.pos
        here = int(path[0][0])
        for v, t_v in path[1:]:
            v = int(v)
            if v == here:
                continue  # a wait: departure times carry it
            e = roadmap.edge_id(here, v)
            if e is None:
                raise ValueError(f"PathTracker: {here} -> {v} is not a lane of the roadmap")
            d = float(roadmap.travel_time(e, plan_speed))
            length = float(roadmap.edge_length[e])
            s = min(float(plan_speed), float(roadmap.edge_speed[e]))
            c = min(self.clearance, length / 2.0) / s
            t_arr = float(t_v)
            t_dep = t_arr - d
            self.legs.append(Leg(here, v, t_dep, t_dep + c, t_dep + d - c, t_arr,
                                 (float(pos[here][0]), float(pos[here][1])),
                                 (float(pos[v][0]), float(pos[v][1])), length))
            here = v
        self.start_vertex = int(path[0][0])
        self.goal = here
        self.index = 0          # the leg being driven or next to drive
        self.driving = False
        self.reverse = False

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
                  self.k_heading * abs(err))
        return math.copysign(mag, err)

    def _cmd(self, v: float, w: float, p: float = 0.0) -> Command:
        return Command(v, w, self._progress(p), self.arrived, self.vertex, self.index,
                       self.driving)

    # -- the control law ------------------------------------------------------------

    def command(self, x: float, y: float, theta: float, t: float) -> Command:
        """The twist to send now, for a robot at (x, y, theta) at time t."""
        if self.index >= len(self.legs):
            return self._cmd(0.0, 0.0)
        leg = self.legs[self.index]
        lane = math.atan2(leg.end[1] - leg.start[1], leg.end[0] - leg.start[0])
        if not self.driving:
            # At a vertex: face the lane (or its reverse), leave at the departure time.
            # Stopped off the vertex (an overshoot, a wheel slip) the robot faces the lane
            # as the lane-following law below would steer it there, so it leaves already
            # merging back onto the lane's centre line (the lane's hold is no wider).
            err = _wrap(lane - theta)
            self.reverse = abs(err) > math.pi / 2 + 1e-6
            ux, uy = ((leg.end[0] - leg.start[0]) / leg.length,
                      (leg.end[1] - leg.start[1]) / leg.length)
            off = ux * (y - leg.start[1]) - uy * (x - leg.start[0])   # > 0: left of it
            err = _wrap(lane + (math.pi if self.reverse else 0.0)
                        - math.atan(self.k_lateral * off) - theta)
            if abs(err) > self.heading_tol or t < leg.t_dep:
                return self._cmd(0.0, self._turn_rate(err) if abs(err) > 1e-3 else 0.0)
            self.driving = True
        ex, ey = ((leg.end[0] - leg.start[0]) / leg.length,
                  (leg.end[1] - leg.start[1]) / leg.length)
        rx, ry = x - leg.start[0], y - leg.start[1]
        p = rx * ex + ry * ey                   # progress along the lane
        lateral = ex * ry - ey * rx             # > 0: left of the lane
        # The walls: the middle is ours from t_leave, v's star from t_enter.
        wall = min(self.clearance, leg.length / 2.0)
        if t >= leg.t_enter:
            stop_at = leg.length
        elif t >= leg.t_leave:
            stop_at = leg.length - wall
        else:
            stop_at = wall
        remaining = stop_at - p
        if t >= leg.t_enter and remaining <= self.pos_tol:
            self.driving = False
            self.index += 1
            return self.command(x, y, theta, t)
        speed = 0.0
        if remaining > 0:
            speed = min(self.limits.max_v, math.sqrt(2.0 * self.acc * remaining),
                        max(4.0 * remaining, 0.05))
        body = lane + (math.pi if self.reverse else 0.0)
        want = body - math.atan(self.k_lateral * lateral)
        err = _wrap(want - theta)
        w = max(-self.limits.max_w, min(self.limits.max_w, self.k_heading * err))
        speed *= max(0.0, math.cos(err)) ** 2
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
        for i, (t0, v, w) in enumerate(cmds):
            t1 = cmds[i + 1][0] if i + 1 < len(cmds) else math.inf
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
