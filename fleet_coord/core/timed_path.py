"""Timed paths and the reservations they hold (docs/core-model.md, "Timed paths").

A timed path is a list of ``(vertex, time)`` steps, ``time`` being the moment the robot
is at ``vertex``: the arrival time after a traversal, or the end of a wait when the
vertex repeats. A traversal of ``e = u -> v`` that arrives at ``t'`` departed at
``t = t' - d`` (``d`` its duration); the robot waits at ``u`` from its previous step
until ``t``, so waits may also be left implicit.

``path_to_segments`` turns such a path into the ``(resource, t_start, t_end)`` holds
that the reservation table stores. Everyone (planner, traffic node, robot agents) uses
it, so a plan and its reservations cannot disagree.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

from .time_model import TimeModel, as_time_model, decode, holds, lane_times

if TYPE_CHECKING:
    from fleet_coord.core.roadmap import Exclusion, Roadmap

TimedPath = List[Tuple[int, float]]
"""``[(vertex, time), ...]``: where the robot is at each listed time (see module doc)."""

Segment = Tuple[int, float, float]
"""``(resource, t_start, t_end)``: the half-open hold ``[t_start, t_end)`` of a resource."""


def path_to_segments(roadmap: Roadmap, exclusion: Exclusion, path: Sequence[Tuple[int, float]],
                     model: Union[TimeModel, float], *, park_until: float = math.inf,
                     start_heading: Optional[float] = None) -> List[Segment]:
    """The holds a robot needs to drive ``path`` under ``model`` (a ``TimeModel``, or a
    plain speed in m/s: ``TimeModel.constant``).

    Each traversal of ``e = u -> v`` holds ``u`` until the reference point is ``L`` past
    it, the middle of ``e`` while it is more than ``L`` from both ends (omitted when
    empty) and ``v`` from ``L`` before it, each widened by the model's ``margin``
    (``time_model.decode``); with ``TimeModel.constant(s)``: ``u`` until ``t + c``, the
    middle over ``[t + c, t + d - c)``, ``v`` from ``t + d - c`` (``c = L / s``). The
    first vertex is held from the path's first time; the last one until ``park_until``
    (default: until released).

    Raises ``ValueError`` when the path is empty, uses a lane the roadmap does not have,
    or is faster than the model allows (it leaves a vertex before it arrived and turned).
    """
    if not path:
        raise ValueError("path_to_segments: the path is empty")
    try:
        traversals = decode(roadmap, exclusion.clearance, path, model,
                            start_heading=start_heading)
        return holds(roadmap, path, traversals, park_until)
    except ValueError as e:
        raise ValueError(f"path_to_segments: {e}") from None


def stop_prefix(roadmap: Roadmap, exclusion: Exclusion, path: Sequence[Tuple[int, float]],
                k: int, model: Union[TimeModel, float]) -> Optional[TimedPath]:
    """``path`` up to its step ``k``, the robot stopping there: where it would have passed
    step ``k`` at speed it brakes on the lane into it instead, so that step comes later.
    None when that lane is too short to brake from its speed."""
    prefix = [(int(v), float(t)) for v, t in path[:k + 1]]
    if k == 0 or prefix[-1][0] == prefix[-2][0]:
        return prefix
    traversals = decode(roadmap, exclusion.clearance, path, model)
    moves = sum(1 for (u, _), (v, _) in zip(prefix, prefix[1:]) if u != v)
    last = traversals[moves - 1]
    if last.stops_after:
        return prefix
    model = as_time_model(model)
    timing = lane_times(roadmap, exclusion.clearance, model).timing(last.e, last.ramp.v0, 0.0)
    if timing is None:
        return None
    prefix[-1] = (prefix[-1][0], last.t_dep + timing.d)
    return prefix


def path_cost(path: Sequence[Tuple[int, float]]) -> float:
    """Time from the first step to the last one (the path's contribution to sum of costs)."""
    return float(path[-1][1]) - float(path[0][1]) if path else 0.0


def vertices_at_unit_times(path: Sequence[Tuple[int, float]]) -> List[int]:
    """``out[t]`` = the vertex the robot is at at integer time ``t`` (path starting at 0).

    For unit-duration lanes (MovingAI grids), where every step time is an integer. The
    list ends at the last step. Raises ``ValueError`` for a non-integer step time.
    """
    out: List[int] = []
    for k, (v, t) in enumerate(path):
        ti = int(round(t))
        if abs(t - ti) > 1e-6 or ti < 0:
            raise ValueError(f"step {k} of the path is at time {t}, not a non-negative "
                             "integer; the path is not on a unit-time grid")
        if out and ti < len(out) - 1:
            raise ValueError(f"step {k} of the path goes back in time")
        while out and len(out) < ti:
            out.append(out[-1])  # waiting (explicitly or before a departure)
        if not out:
            out.extend([int(v)] * (ti + 1))
        elif len(out) == ti:
            out.append(int(v))
        elif out[-1] != v:
            raise ValueError(f"step {k} of the path changes vertex without taking time")
    return out
