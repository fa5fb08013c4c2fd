"""The time model: how long a robot needs to drive a timed path (docs/core-model.md).

A differential-drive robot drives lanes straight and turns in place at vertices. A
``TimeModel`` says what that costs:

- **straight runs**: lanes that continue one another in the same direction are driven
  without stopping, on a trapezoidal speed profile (``Ramp``): accelerate at ``max_acc``
  up to the cruise speed (``max_v``, capped by each lane's speed limit), cruise, brake;
  the robot passes a vertex inside a run at the **through speed** (the lower cruise speed
  of the two lanes);
- **stops** only where the path stops: its start, a turn, a wait, its end;
- **turns** in place of angle ``a`` take ``turn_time(a)`` (trapezoidal in the angle, with
  ``max_w`` / ``max_alpha``, plus ``turn_extra`` to settle); a robot that may drive in
  ``reverse`` never turns more than a quarter turn;
- every hold is widened by ``margin`` seconds both ways: the robot may run that much
  ahead of or behind its plan (the tracker's promise) and still be inside what it holds;
- **run-on** (``run_on`` s): a robot whose agent dies keeps running at its last command
  until its driver's watchdog stops it. With ``run_on`` > 0 every braking follows the
  reaction-time curve (``run_on_speed``): at any point of the profile, running on for
  ``run_on`` s at the planned speed and then braking at ``max_acc`` ends within
  ``RUN_ON_SLACK`` m of where the plan stops. ``run_on`` 0 is the plain trapezoid.

``TimeModel.constant(speed)`` is the classic model: every lane at one speed, speed
changes and turns take no time (classic MAPF on unit grids; the conservative
stop-and-turn model plans so, at ``tracking.plan_speed_for``, and lets the robot drive
ahead of its plan: ``drive_ahead``). ``TimeModel.of_robot(limits)`` is the model at a
robot's real limits.

Headings are angles in the roadmap frame, ``atan2(dy, dx)``; on a grid map (x = column,
y = row) the LoRR orientation ``o`` is the angle ``o * pi / 2`` (0 = +x, 1 = +y, 2 = -x,
3 = -y). LoRR's action model (forward one cell, 90-degree turn, wait; one step each) is
``TimeModel(max_v=1, max_w=pi/2, reverse=False)`` on a unit grid.

``LaneTimes`` holds per roadmap the lanes' straight continuations and ramps;
``decode`` reads a timed path back into ``Traversal``s (where it stops, how each lane is
driven, when each resource is held), which ``path_to_segments``, ``sipp`` and the tracker
share, so a plan, its reservations and its execution cannot disagree.

Pure: no rclpy, no clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    from .kinematics import Limits
    from .roadmap import Roadmap

INF = math.inf
#: Lanes whose directions differ by less than this (rad) continue one another; turns
#: smaller than this take no time.
ANGLE_TOL = 1e-3
#: Durations may disagree with the model by this much (s): callers' float arithmetic.
TIME_TOL = 1e-6
#: How far (m) a robot that runs on (``TimeModel.run_on``) may end past the point it was to
#: stand at: well inside the safety monitors' 0.1 m, leaving ~0.06 m for what else moves a
#: stop (the tracker's 0.02 m stop tolerance, the delay compensation's prediction error,
#: a lateral offset); larger ends each approach faster (the last bit is crept at
#: ``RUN_ON_SLACK / run_on`` m/s) but eats that room.
RUN_ON_SLACK = 0.04


def run_on_speed(distance: float, acc: float, run_on: float,
                 slack: float = RUN_ON_SLACK) -> float:
    """The highest speed (m/s) a robot ``distance`` m before a point where it must stand
    may drive at, such that running on at it for ``run_on`` s (its agent died; its
    driver's watchdog ends the command) and then braking at ``acc`` ends at most
    ``slack`` m past that point: ``v T + v^2 / 2a <= d + slack``. Within the last
    ``slack^2 / (2 a T^2)`` m (where that speed falls to ``slack / T``) it is the plain
    braking curve ``sqrt(2 a d)``, so the robot stands at the point itself."""
    if distance <= 0.0:
        return 0.0
    if run_on <= 0.0 or not math.isfinite(acc):
        return math.sqrt(2.0 * acc * distance) if math.isfinite(acc) else INF
    at = acc * run_on
    if distance * 2.0 * acc * run_on * run_on < slack * slack:
        return math.sqrt(2.0 * acc * distance)
    return math.sqrt(at * at + 2.0 * acc * (distance + slack)) - at


def run_on_distance(speed: float, acc: float, run_on: float,
                    slack: float = RUN_ON_SLACK) -> float:
    """The inverse of ``run_on_speed``: how far before the point to stand at a robot
    driving ``speed`` must be (0 at standstill)."""
    d = speed * speed / (2.0 * acc)
    if run_on > 0.0 and speed * run_on > slack:
        d += speed * run_on - slack
    return d


def wrap(a: float) -> float:
    """``a`` wrapped to (-pi, pi]."""
    return math.atan2(math.sin(a), math.cos(a))


def turn_time(angle: float, max_w: float, alpha: float) -> float:
    """Seconds to turn ``angle`` radians in place from rest to rest (trapezoidal profile in
    the angle; ``inf`` limits take no time)."""
    angle = abs(angle)
    if angle == 0.0:
        return 0.0
    if not math.isfinite(alpha):
        return angle / max_w if math.isfinite(max_w) else 0.0
    if not math.isfinite(max_w) or angle <= max_w * max_w / alpha:
        return 2.0 * math.sqrt(angle / alpha)
    return angle / max_w + max_w / alpha


def cover_time(distance: float, max_v: float, acc: float) -> float:
    """Seconds to cover ``distance`` from (or to) standstill at acceleration ``acc``, top
    speed ``max_v``."""
    if not math.isfinite(acc):
        return distance / max_v
    d_acc = max_v * max_v / (2.0 * acc)
    if distance <= d_acc:
        return math.sqrt(2.0 * distance / acc)
    return max_v / acc + (distance - d_acc) / max_v


@dataclass(frozen=True, eq=True)
class TimeModel:
    """How long a robot needs (see the module docstring). Speeds in m/s, accelerations in
    m/s^2, angles in rad, times in s; ``inf`` means "takes no time"."""
    max_v: float
    max_acc: float = INF
    max_w: float = INF
    max_alpha: float = INF
    turn_extra: float = 0.0
    margin: float = 0.0
    reverse: bool = True
    #: the robot may drive ahead of its plan up to the edge of what it holds (the
    #: conservative model: planned slowly enough to stop and turn there); otherwise it
    #: follows its plan's profile within ``margin``
    drive_ahead: bool = False
    #: s the robot may keep running at its last command when its agent dies (its
    #: driver's command watchdog plus one command period): every braking follows
    #: ``run_on_speed`` (0: plain braking; docs/core-model.md, "Why a conflict-free table
    #: is a collision-free fleet" 2)
    run_on: float = 0.0

    def __hash__(self) -> int:
        # cached: a model keys the per-roadmap caches looked up on every plan
        h: Optional[int] = self.__dict__.get("_hash")
        if h is None:
            h = hash(tuple(getattr(self, f) for f in _FIELDS))
            object.__setattr__(self, "_hash", h)
        return h

    def __post_init__(self) -> None:
        for name in ("max_v", "max_acc", "max_w", "max_alpha"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"TimeModel.{name} must be > 0, got {value!r}")
        if not math.isfinite(self.max_v):
            raise ValueError(f"TimeModel.max_v must be finite, got {self.max_v!r}")
        for name in ("turn_extra", "margin", "run_on"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"TimeModel.{name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def constant(cls, speed: float) -> "TimeModel":
        """Every lane at ``speed`` (capped by its limit); speed changes and turns take no
        time: the classic model."""
        return cls(max_v=float(speed))

    @classmethod
    def of_robot(cls, limits: Limits, *, margin: float = 0.3, share: float = 0.8,
                 settle: float = 0.15, reverse: bool = True,
                 run_on: float = 0.0) -> "TimeModel":
        """The model at a robot's real limits (``kinematics.Limits``): cruise at its top
        speed, plan accelerations at ``share`` of its limits (the tracker keeps the rest to
        catch up), each turn plus ``settle`` s for the heading loop's last bit; holds
        widened by ``margin`` s (what the tracker may lag or lead); braking safe to run on
        for ``run_on`` s."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        return cls(max_v=float(limits.max_v), max_acc=share * float(limits.max_acc),
                   max_w=float(limits.max_w), max_alpha=share * float(limits.max_alpha),
                   turn_extra=float(settle), margin=float(margin), reverse=reverse,
                   run_on=float(run_on))

    @property
    def passes(self) -> bool:
        """Whether passing a vertex differs from stopping there (finite acceleration)."""
        return math.isfinite(self.max_acc)

    @property
    def turns(self) -> bool:
        """Whether turning in place takes time (the planner then tracks headings)."""
        return math.isfinite(self.max_w) or math.isfinite(self.max_alpha) \
            or self.turn_extra > 0

    def turn_angle(self, heading: float, lane: float) -> float:
        """The angle (rad, >= 0) a robot facing ``heading`` turns to drive a lane of
        direction ``lane`` (forwards, or backwards when ``reverse`` and that turns less)."""
        a = abs(wrap(lane - heading))
        if self.reverse:
            a = min(a, math.pi - a)
        return a

    def turn(self, angle: float) -> float:
        """Seconds for a turn in place of ``angle`` rad (0 below ``ANGLE_TOL``)."""
        if abs(angle) < ANGLE_TOL or not self.turns:
            return 0.0
        # rounded off float noise: a quarter turn at pi/2 rad/s is 1 s, not 1.0000000000000002
        return round(turn_time(angle, self.max_w, self.max_alpha) + self.turn_extra, 9)

    def ramp(self, length: float, v0: float, v1: float, cruise: float) -> Optional["Ramp"]:
        """The profile driving ``length`` m entering at ``v0`` and leaving at ``v1`` with
        at most ``cruise`` m/s; None when the acceleration cannot change the speed that
        much on that length."""
        return Ramp.make(length, v0, v1, cruise, self.max_acc, self.run_on)


_FIELDS = ("max_v", "max_acc", "max_w", "max_alpha", "turn_extra", "margin", "reverse",
           "drive_ahead", "run_on")
_constant: Dict[float, TimeModel] = {}


def as_time_model(model: Union[TimeModel, float]) -> TimeModel:
    """``model`` itself, or ``TimeModel.constant(model)`` for a plain speed (m/s)."""
    if isinstance(model, TimeModel):
        return model
    speed = float(model)
    found = _constant.get(speed)
    if found is None:
        if not speed > 0:
            raise ValueError(f"max_speed must be > 0, got {model!r}")
        if len(_constant) >= 64:
            _constant.clear()
        found = _constant[speed] = TimeModel.constant(speed)
    return found


class Ramp:
    """A speed profile over ``length`` m: from ``v0`` accelerate at ``acc`` to ``peak``
    (<= cruise), hold it, brake to ``v1``. ``acc = inf``: ``cruise`` throughout.

    The braking is plain (at ``acc``) when ``run_on`` is 0; otherwise it follows the
    reaction-time curve ``run_on_speed`` towards the point where braking on to a stop
    would end (``run_on_distance(v1)`` past the lane's end), so a robot that runs on
    ``run_on`` s from any point of it stops within ``RUN_ON_SLACK`` of that point. Time
    along the curve between speeds ``Va > Vb``: ``g(Va) - g(Vb)``, ``g(V) = V / a +
    T ln max(V, slack / T)`` (dt = dD / V, dD = (V / a + T) dV); position at a time has no
    closed form: Newton steps (``at``)."""

    __slots__ = ("length", "v0", "v1", "peak", "acc", "x1", "x2", "t1", "t2", "duration",
                 "run_on", "_end", "_g_peak", "_creep")

    def __init__(self, length: float, v0: float, v1: float, peak: float, acc: float,
                 run_on: float = 0.0) -> None:
        self.length, self.v0, self.v1, self.peak, self.acc = length, v0, v1, peak, acc
        self.run_on = run_on if math.isfinite(acc) else 0.0
        if math.isfinite(acc):
            self.x1 = (peak * peak - v0 * v0) / (2.0 * acc)           # end of accelerating
            self.t1 = (peak - v0) / acc
            if self.run_on > 0.0:
                # the point braking on would stand at, and the speed below which the
                # curve is plain braking
                self._end = length + run_on_distance(v1, acc, run_on)
                self._creep = RUN_ON_SLACK / run_on
                self._g_peak = self._g(peak)
                self.x2 = self._end - run_on_distance(peak, acc, run_on)
                self.t2 = self.t1 + max(0.0, self.x2 - self.x1) / peak
                self.duration = self.t2 + self._g_peak - self._g(v1)
            else:
                self.x2 = length - (peak * peak - v1 * v1) / (2.0 * acc)  # start of braking
                self.t2 = self.t1 + max(0.0, self.x2 - self.x1) / peak
                self.duration = self.t2 + (peak - v1) / acc
        else:
            self.x1, self.x2, self.t1 = 0.0, length, 0.0
            self.t2 = self.duration = length / peak

    def _g(self, v: float) -> float:
        """Time along the run-on braking curve, up to a constant (see the class doc)."""
        return v / self.acc + self.run_on * math.log(max(v, self._creep))

    @classmethod
    def make(cls, length: float, v0: float, v1: float, cruise: float,
             acc: float, run_on: float = 0.0) -> Optional["Ramp"]:
        if not math.isfinite(acc):
            return cls(length, cruise, cruise, cruise, acc)
        if run_on <= 0.0:
            if abs(v1 * v1 - v0 * v0) > 2.0 * acc * length + 1e-9:
                return None
            peak = min(cruise, math.sqrt(acc * length + 0.5 * (v0 * v0 + v1 * v1)))
            return cls(length, v0, v1, max(peak, v0, v1, 1e-9), acc)
        d1 = run_on_distance(v1, acc, run_on)
        if v1 > v0 and v1 * v1 - v0 * v0 > 2.0 * acc * length + 1e-9:
            return None
        if v0 > v1 and run_on_distance(v0, acc, run_on) - d1 > length + 1e-9:
            return None
        # the highest peak whose acceleration and run-on braking fit the lane:
        # (peak^2 - v0^2) / 2a + run_on_distance(peak) = length + d1
        at, room = acc * run_on, length + d1
        peak = 0.5 * (math.sqrt(at * at + 4.0 * acc * (room + RUN_ON_SLACK) + 2.0 * v0 * v0)
                      - at)
        if peak * run_on <= RUN_ON_SLACK:   # on the curve's plain end
            peak = math.sqrt(acc * room + 0.5 * v0 * v0)
        return cls(length, v0, v1, max(min(cruise, peak), v0, v1, 1e-9), acc, run_on)

    def time_at(self, x: float) -> float:
        """Seconds from the start until the robot has covered ``x`` m."""
        if x <= 0.0:
            return 0.0
        if x >= self.length:
            return self.duration
        a = self.acc
        if x < self.x1:
            return (math.sqrt(self.v0 * self.v0 + 2.0 * a * x) - self.v0) / a
        if x <= self.x2:
            return self.t1 + (x - self.x1) / self.peak
        if self.run_on > 0.0:
            v = min(self.peak, run_on_speed(self._end - x, a, self.run_on))
            return self.t2 + self._g_peak - self._g(v)
        y = x - self.x2
        return self.t2 + (self.peak - math.sqrt(max(0.0, self.peak ** 2 - 2.0 * a * y))) / a

    def at(self, t: float) -> Tuple[float, float]:
        """(distance covered, speed) ``t`` seconds after the start."""
        if t <= 0.0:
            return 0.0, self.v0
        if t >= self.duration:
            return self.length, self.v1
        a = self.acc
        if t < self.t1:
            return self.v0 * t + 0.5 * a * t * t, self.v0 + a * t
        if t <= self.t2:
            return self.x1 + (t - self.t1) * self.peak, self.peak
        s = t - self.t2
        if self.run_on > 0.0:
            v = self._speed_after(s)
            x = self._end - run_on_distance(v, a, self.run_on)
            return max(self.x2, min(self.length, x)), v
        return min(self.length, self.x2 + self.peak * s - 0.5 * a * s * s), self.peak - a * s

    def _speed_after(self, s: float) -> float:
        """The speed ``s`` s into the run-on braking: solves ``g(v) = g(peak) - s``."""
        a, T = self.acc, self.run_on
        target = self._g_peak - s
        creep = self._creep
        if target <= creep / a + T * math.log(creep):     # on the plain end
            return max(0.0, a * (target - T * math.log(creep)))
        # h(y) = e^y / a + T y - target is increasing and convex in y = ln v: Newton from
        # the peak (h >= 0 there) falls monotonically onto the root
        y = math.log(self.peak)
        for _ in range(50):
            ey = math.exp(y)
            h = ey / a + T * y - target
            step = h / (ey / a + T)
            y -= step
            if abs(step) < 1e-13:
                break
        return max(creep, min(self.peak, math.exp(y)))


@dataclass(frozen=True)
class LaneTiming:
    """Driving one lane on one profile, times relative to the departure: ``d`` to the far
    end; the reference point is ``wall`` m from the start at ``leave`` and ``wall`` m
    before the end at ``enter`` (the vertex stars' edges, docs/core-model.md). The holds,
    widened by the model's margin: the tail until ``hold_u``, the middle (if
    ``has_middle``) over ``[m0, m1)``, the head from ``w_from``. ``sipp`` and ``decode``
    add exactly these offsets to the departure ``(arrival - d)``, so their float
    arithmetic agrees to the bit."""
    ramp: Ramp
    d: float
    leave: float
    enter: float
    has_middle: bool
    hold_u: float
    m0: float
    m1: float
    w_from: float


class LaneTimes:
    """Per (roadmap, clearance L, time model): each lane's straight continuation, cruise
    speed, direction, and its timings on demand (cached by entry / exit speed)."""

    def __init__(self, roadmap: Roadmap, clearance: float, model: TimeModel) -> None:
        self.roadmap = roadmap
        self.clearance = float(clearance)
        self.model = model
        pos = roadmap.pos
        frm, to = roadmap.edge_from.tolist(), roadmap.edge_to.tolist()
        length = [float(x) for x in roadmap.edge_length]
        self.length = length
        self.edge_from, self.edge_to = frm, to
        self.angle = [math.atan2(float(pos[b][1] - pos[a][1]), float(pos[b][0] - pos[a][0]))
                      for a, b in zip(frm, to)]
        self.cruise = [min(float(s), model.max_v) for s in roadmap.edge_speed]
        #: next[e]: the lane leaving e's head in e's direction (-1: none), when the model
        #: lets the robot pass vertices (else the robot stops everywhere anyway)
        self.next = [-1] * len(frm)
        if model.passes:
            for e, w in enumerate(to):
                for f in roadmap.out_edges[w].tolist():
                    if to[f] != frm[e] and abs(wrap(self.angle[f] - self.angle[e])) < ANGLE_TOL:
                        self.next[e] = int(f)
                        break
        #: through[e]: the speed at which a robot passes the head of e into next[e]: the
        #: lower cruise speed of the two, and with run-on no faster than it can brake
        #: from (run on, then brake) within next[e], where the run may end
        self._through = [0.0] * len(frm)
        for e, f in enumerate(self.next):
            if f >= 0:
                v = min(self.cruise[e], self.cruise[f])
                if model.run_on > 0.0:
                    v = min(v, run_on_speed(length[f], model.max_acc, model.run_on))
                self._through[e] = v
        self._timing: Dict[Tuple[int, float, float], Optional[LaneTiming]] = {}

    def through(self, e: int) -> float:
        """The speed at which a robot passes the head of ``e`` into ``next[e]``."""
        return self._through[e]

    def timing(self, e: int, v0: float, v1: float) -> Optional[LaneTiming]:
        """Lane ``e`` entered at ``v0`` and left at ``v1`` m/s; None when infeasible."""
        key = (e, v0, v1)
        if key in self._timing:
            return self._timing[key]
        ramp = self.model.ramp(self.length[e], v0, v1, self.cruise[e])
        out = None
        if ramp is not None:
            wall = min(self.clearance, self.length[e] / 2.0)
            leave, enter = ramp.time_at(wall), ramp.time_at(self.length[e] - wall)
            margin = self.model.margin
            out = LaneTiming(ramp, ramp.duration, leave, enter,
                             self.length[e] > 2.0 * self.clearance + 1e-9,
                             leave + margin, leave - margin, enter + margin, enter - margin)
        self._timing[key] = out
        return out


_lane_times: Dict[Tuple[int, float, TimeModel], LaneTimes] = {}


def lane_times(roadmap: Roadmap, clearance: float, model: TimeModel) -> LaneTimes:
    """The cached ``LaneTimes`` of this roadmap, clearance and model."""
    key = (id(roadmap), float(clearance), model)
    lt = _lane_times.get(key)
    if lt is None or lt.roadmap is not roadmap:
        if len(_lane_times) >= 32:
            _lane_times.clear()
        lt = _lane_times[key] = LaneTimes(roadmap, clearance, model)
    return lt


class Traversal(NamedTuple):
    """One lane of a timed path as the robot drives it. ``t_dep``: when it leaves ``u``
    (at ``v0``: 0 after a stop); ``t_arr`` = ``t_dep + d``: when it is at ``v`` (at ``v1``:
    0 when it stops there). Holds (margin included): ``u`` until ``t_leave``, the lane's
    middle over ``[t_mid, t_mid_end)`` (when it has one), ``v`` from ``t_enter``."""
    e: int
    u: int
    v: int
    t_dep: float
    t_arr: float
    timing: LaneTiming
    stops_before: bool
    stops_after: bool
    reverse: bool            # driven backwards (the robot's back leads)
    turn_before: float       # s of turning in place before t_dep (planned)
    t_leave: float
    t_mid: float
    t_mid_end: float
    t_enter: float

    @property
    def ramp(self) -> Ramp:
        return self.timing.ramp


def decode(roadmap: Roadmap, clearance: float, path: Sequence[Tuple[int, float]],
           model: Union[TimeModel, float],
           *, start_heading: Optional[float] = None) -> List[Traversal]:
    """The traversals of a timed path under ``model`` (see ``Traversal``).

    The robot passes a vertex without stopping when the lanes in and out continue one
    another, the path has no wait step there, and the times fit the pass (a pass is
    strictly faster than a stop); it stops everywhere else. Raises ``ValueError`` naming
    the step when the path uses a lane the roadmap lacks, goes back in time, or is
    faster than the model allows (a departure before the robot has arrived and turned;
    the turn at the start only when ``start_heading`` is given).
    """
    model = as_time_model(model)
    lt = lane_times(roadmap, clearance, model)
    if not path:
        raise ValueError("the path is empty")
    # The moves: (step index of the arrival, lane, index of the last step at its tail,
    # index of the first step there).
    moves: List[Tuple[int, int, int, int]] = []
    here, t_here, last, first = int(path[0][0]), float(path[0][1]), 0, 0
    for k in range(1, len(path)):
        v, t_v = int(path[k][0]), float(path[k][1])
        if v == here:
            if t_v < t_here - TIME_TOL:
                raise ValueError(f"step {k} goes back in time ({t_v} after {t_here})")
            t_here, last = max(t_v, t_here), k
            continue
        e = roadmap.edge_id(here, v)
        if e is None or e < 0:
            raise ValueError(f"step {k} moves {here} -> {v}, which is not a lane of the roadmap")
        moves.append((k, int(e), last, first))
        here, t_here, last, first = v, t_v, k, k
    # Which vertices it passes: decided from the end (a lane's exit speed depends on
    # whether the robot passes its head).
    n = len(moves)
    passes = [False] * (n + 1)          # passes[i]: passes the tail of move i
    exit_speed = [0.0] * n
    timings: List[Optional[LaneTiming]] = [None] * n
    for i in range(n - 1, -1, -1):
        k, e, tail, _ = moves[i]
        v1 = lt.through(e) if passes[i + 1] else 0.0
        exit_speed[i] = v1
        t_arr = float(path[k][1])
        if i > 0 and model.passes:
            k_prev, e_prev = moves[i - 1][:2]
            if tail == k_prev and lt.next[e_prev] == e:
                v0 = lt.through(e_prev)
                pass_t = lt.timing(e, v0, v1)
                if pass_t is not None and \
                        abs(t_arr - float(path[tail][1]) - pass_t.d) <= TIME_TOL:
                    passes[i] = True
                    timings[i] = pass_t
                    continue
        timings[i] = lt.timing(e, 0.0, v1)
        if timings[i] is None:
            raise ValueError(f"step {k}: lane {roadmap.resource_name(roadmap.num_vertices + e)} "
                             f"is too short to reach {v1:g} m/s from a stop")
    out: List[Traversal] = []
    heading = start_heading
    turns = model.turns
    for i, (k, e, tail, arrived) in enumerate(moves):
        timing = timings[i]
        assert timing is not None
        t_arr = float(path[k][1])
        t_dep = t_arr - timing.d
        reverse = False
        turn = 0.0
        if passes[i]:
            reverse = out[-1].reverse
        else:
            lane = lt.angle[e]
            if heading is not None and turns:
                ahead = abs(wrap(lane - heading))
                reverse = model.reverse and ahead > math.pi / 2 + ANGLE_TOL
                turn = model.turn(model.turn_angle(heading, lane))
            # the stop before: it arrived (path[arrived]), turned, and was there until
            # the last wait step (path[tail])
            t_ready = max(float(path[arrived][1]) + turn, float(path[tail][1]))
            if t_dep < t_ready - TIME_TOL:
                why = (f"before it has turned there ({float(path[arrived][1]):.6g} + {turn:.3f} s)"
                       if turn and t_ready > float(path[tail][1])
                       else f"before it was there ({t_ready:.6g})")
                raise ValueError(
                    f"step {k} arrives at {roadmap.names[int(path[k][0])]} at {t_arr:.6g}, so it "
                    f"must leave {roadmap.names[lt.edge_from[e]]} at {t_dep:.6g}, {why}")
        heading = lt.angle[e] + (math.pi if reverse else 0.0)
        out.append(Traversal(
            e, lt.edge_from[e], lt.edge_to[e], t_dep, t_arr, timing, not passes[i],
            not passes[i + 1], reverse, turn, t_dep + timing.hold_u, t_dep + timing.m0,
            t_dep + timing.m1, t_dep + timing.w_from))
    return out


def holds(roadmap: Roadmap, path: Sequence[Tuple[int, float]], traversals: Sequence[Traversal],
          park_until: float = INF) -> List[Tuple[int, float, float]]:
    """The ``(resource, t_start, t_end)`` holds of a decoded path: the first vertex from
    the path's first time, each lane's middle and its endpoints as ``Traversal`` says, the
    last vertex until ``park_until``."""
    num_vertices = roadmap.num_vertices
    out: List[Tuple[int, float, float]] = []
    here = int(path[0][0])
    hold_from = float(path[0][1])
    for tr in traversals:
        out.append((here, hold_from, max(tr.t_leave, hold_from)))
        if tr.timing.has_middle:
            out.append((num_vertices + tr.e, tr.t_mid, tr.t_mid_end))
        here, hold_from = tr.v, tr.t_enter
    if not park_until > hold_from:
        raise ValueError(f"park_until={park_until} is not after the goal hold starts "
                         f"({hold_from})")
    out.append((here, hold_from, park_until))
    return out
