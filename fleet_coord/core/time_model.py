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
  ahead of or behind its plan (the tracker's promise) and still be inside what it holds.

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
        for name in ("turn_extra", "margin"):
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
                 settle: float = 0.15, reverse: bool = True) -> "TimeModel":
        """The model at a robot's real limits (``kinematics.Limits``): cruise at its top
        speed, plan accelerations at ``share`` of its limits (the tracker keeps the rest to
        catch up), each turn plus ``settle`` s for the heading loop's last bit; holds
        widened by ``margin`` s (what the tracker may lag or lead)."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        return cls(max_v=float(limits.max_v), max_acc=share * float(limits.max_acc),
                   max_w=float(limits.max_w), max_alpha=share * float(limits.max_alpha),
                   turn_extra=float(settle), margin=float(margin), reverse=reverse)

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
        return Ramp.make(length, v0, v1, cruise, self.max_acc)


_FIELDS = ("max_v", "max_acc", "max_w", "max_alpha", "turn_extra", "margin", "reverse",
           "drive_ahead")
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
    """A trapezoidal speed profile over ``length`` m: from ``v0`` accelerate at ``acc`` to
    ``peak`` (<= cruise), hold it, brake to ``v1``. ``acc = inf``: ``cruise`` throughout."""

    __slots__ = ("length", "v0", "v1", "peak", "acc", "x1", "x2", "t1", "t2", "duration")

    def __init__(self, length: float, v0: float, v1: float, peak: float, acc: float) -> None:
        self.length, self.v0, self.v1, self.peak, self.acc = length, v0, v1, peak, acc
        if math.isfinite(acc):
            self.x1 = (peak * peak - v0 * v0) / (2.0 * acc)           # end of accelerating
            self.x2 = length - (peak * peak - v1 * v1) / (2.0 * acc)  # start of braking
            self.t1 = (peak - v0) / acc
            self.t2 = self.t1 + max(0.0, self.x2 - self.x1) / peak
            self.duration = self.t2 + (peak - v1) / acc
        else:
            self.x1, self.x2, self.t1 = 0.0, length, 0.0
            self.t2 = self.duration = length / peak

    @classmethod
    def make(cls, length: float, v0: float, v1: float, cruise: float,
             acc: float) -> Optional["Ramp"]:
        if not math.isfinite(acc):
            return cls(length, cruise, cruise, cruise, acc)
        if abs(v1 * v1 - v0 * v0) > 2.0 * acc * length + 1e-9:
            return None
        peak = min(cruise, math.sqrt(acc * length + 0.5 * (v0 * v0 + v1 * v1)))
        return cls(length, v0, v1, max(peak, v0, v1, 1e-9), acc)

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
        return min(self.length, self.x2 + self.peak * s - 0.5 * a * s * s), self.peak - a * s


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
        self._timing: Dict[Tuple[int, float, float], Optional[LaneTiming]] = {}

    def through(self, e: int) -> float:
        """The speed at which a robot passes the head of ``e`` into ``next[e]``."""
        return min(self.cruise[e], self.cruise[self.next[e]])

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
