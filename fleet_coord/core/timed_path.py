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
from typing import TYPE_CHECKING, List, Sequence, Tuple

if TYPE_CHECKING:
    from fleet_coord.core.roadmap import Exclusion, Roadmap

TimedPath = List[Tuple[int, float]]
"""``[(vertex, time), ...]``: where the robot is at each listed time (see module doc)."""

Segment = Tuple[int, float, float]
"""``(resource, t_start, t_end)``: the half-open hold ``[t_start, t_end)`` of a resource."""


def path_to_segments(roadmap: Roadmap, exclusion: Exclusion, path: Sequence[Tuple[int, float]],
                     max_speed: float,
                     *, park_until: float = math.inf) -> List[Segment]:
    """The holds a robot needs to drive ``path`` at up to ``max_speed``.

    A traversal of ``e = u -> v`` departing at ``t`` with duration ``d`` and hold offset
    ``c = exclusion.hold_offset(e, speed)`` holds ``u`` until ``t + c``, the middle of
    ``e`` over ``[t + c, t + d - c)`` (omitted when empty) and ``v`` from ``t + d - c``.
    The first vertex is held from the path's first time; the last one until
    ``park_until`` (default: until released).

    Raises ``ValueError`` when the path is empty, uses a lane the roadmap does not have,
    or leaves a vertex before it arrived there.
    """
    if not path:
        raise ValueError("path_to_segments: the path is empty")
    if not max_speed > 0:
        raise ValueError(f"path_to_segments: max_speed must be > 0, got {max_speed!r}")
    num_vertices = roadmap.num_vertices
    edge_speed = roadmap.edge_speed
    segments: List[Segment] = []
    here, t_here = int(path[0][0]), float(path[0][1])
    hold_from = t_here
    for k in range(1, len(path)):
        v, t_v = int(path[k][0]), float(path[k][1])
        if v == here:  # a wait: the hold on `here` simply goes on
            if t_v < t_here:
                raise ValueError(f"path_to_segments: step {k} goes back in time "
                                 f"({t_v} after {t_here})")
            t_here = t_v
            continue
        e = roadmap.edge_id(here, v)
        if e is None or e < 0:
            raise ValueError(f"path_to_segments: step {k} moves {here} -> {v}, "
                             "which is not a lane of the roadmap")
        duration = roadmap.travel_time(e, max_speed)
        c = exclusion.hold_offset(e, min(float(edge_speed[e]), max_speed))
        depart = t_v - duration
        # Tolerate rounding in the caller's arithmetic, not a real time travel.
        if depart < t_here - 1e-9:
            raise ValueError(f"path_to_segments: step {k} arrives at {v} at {t_v}, so it "
                             f"must leave {here} at {depart}, before it was there ({t_here})")
        depart = max(depart, t_here)
        segments.append((here, hold_from, depart + c))
        if depart + c < depart + duration - c:
            segments.append((num_vertices + e, depart + c, depart + duration - c))
        hold_from = depart + duration - c
        here, t_here = v, t_v
    if park_until <= hold_from:
        raise ValueError(f"path_to_segments: park_until={park_until} is not after the "
                         f"goal hold starts ({hold_from})")
    segments.append((here, hold_from, park_until))
    return segments


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
