"""Revoked reservations: noticing that the table cut a robot's plan, and where to stop.

The traffic authority may take a robot's *future* reservations away (a lost robot's spot
is blocked for good, and the robots that planned to pass there later lose their holds
from the clash on; fleet_coord.core.traffic). The robot learns it from its replica: its
committed holds are no longer all there. It must then never drive past the cut. It
replans from a vertex before the cut, or at worst stops at the last vertex it can still
reach inside what it holds and parks there.

Pure: the table, the path and time are parameters; no rclpy.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence, Union

from fleet_coord.core.time_model import TimeModel
from fleet_coord.core.timed_path import Segment, TimedPath, path_to_segments, stop_prefix

if TYPE_CHECKING:
    from fleet_coord.core.reservations import ReservationTable
    from fleet_coord.core.roadmap import Exclusion, Roadmap

__all__ = ["clip", "first_uncovered", "legs_done_at", "nearest_free_stop", "stop_point"]

_EPS = 1e-9


def first_uncovered(table: ReservationTable, robot: str, segments: Sequence[Segment],
                    t_from: float) -> float | None:
    """The earliest time >= `t_from` at which one of `segments` (what the robot committed)
    is no longer covered by `robot`'s reservations in `table`; None when all still are."""
    mine: dict[int, list[tuple[float, float]]] = {}
    for r in table.reservations(robot):
        mine.setdefault(r.resource, []).append((r.t_start, r.t_end))
    earliest = math.inf
    for res, a, b in segments:
        t = max(a, t_from)
        if b <= t:
            continue
        for s, e in sorted(mine.get(int(res), ())):
            if s <= t + _EPS and e > t:
                t = e
            if t >= b:
                break
        if t < b:
            earliest = min(earliest, t)
    return None if earliest == math.inf else earliest


def legs_done_at(path: TimedPath) -> list[int]:
    """out[k] = lanes driven when the robot stands at step k of `path` (waits skipped)."""
    out, n = [0], 0
    for (u, _), (v, _) in zip(path, path[1:]):
        n += int(v != u)
        out.append(n)
    return out


def clip(segments: Sequence[Segment], t_from: float) -> list[Segment]:
    """The part of `segments` from `t_from` on (what a re-commit with replace_from=t_from
    must hold)."""
    return [(r, max(a, t_from), b) for r, a, b in segments if b > t_from]


def _stop_holds(roadmap: Roadmap, exclusion: Exclusion, path: TimedPath,
                model: Union[TimeModel, float], k: int, done: list[int], legs_driven: int,
                brake_ahead: bool) -> list[Segment] | None:
    """The holds of braking to a stop at step k, or None when it cannot stop there
    (behind it, or a step it passes at speed on the lane it drives)."""
    if done[k] < legs_driven:
        return None
    prefix = stop_prefix(roadmap, exclusion, path, k, model)
    behind = done[k] < legs_driven if brake_ahead else done[k] <= legs_driven
    if prefix is None or (prefix[-1][1] != path[k][1] and behind):
        return None
    return path_to_segments(roadmap, exclusion, prefix, model)


def stop_point(table: ReservationTable, roadmap: Roadmap, exclusion: Exclusion, robot: str,
               path: TimedPath, model: Union[TimeModel, float], t_cut: float,
               legs_driven: int, *, brake_ahead: bool = False) -> int | None:
    """Index k of the last step of `path` where the robot can stop and park: it reaches
    step k within what it holds (every hold of ``stop_prefix(path, k)`` - the path
    braking to a stop at step k - before the goal hold ends by `t_cut`), step k is not
    behind it (`legs_driven` lanes done, or being driven; a step it would pass at speed
    must lie beyond the lane it drives, so it can still brake), and its vertex is free
    for ever from the moment it enters it. None when there is no such step. Drive
    ``stop_prefix(roadmap, exclusion, path, k, model)`` to stop there. `brake_ahead`:
    the caller measured that the robot can still brake before the end of the lane it
    drives, so that end counts too even where the plan passes it at speed."""
    done = legs_done_at(path)
    for k in range(len(path) - 1, -1, -1):
        if done[k] < legs_driven:
            break
        segs = _stop_holds(roadmap, exclusion, path, model, k, done, legs_driven, brake_ahead)
        if segs is None:
            continue
        *before, (v, a, _) = segs
        # the holds on the way there all end by the cut (the cut took only what follows)
        if a > t_cut + _EPS or any(b > t_cut + _EPS for _, _, b in before):
            continue
        if table.is_free(v, a, math.inf, robot=robot):
            return k
    return None


def nearest_free_stop(table: ReservationTable, roadmap: Roadmap, exclusion: Exclusion,
                      robot: str, path: TimedPath, model: Union[TimeModel, float],
                      t_cut: float, legs_driven: int, *, brake_ahead: bool = False) -> int | None:
    """When no stop point lies within what it still holds (`stop_point` is None: a cut
    right ahead of a robot at speed), the nearest step it can brake into whose holds
    past `t_cut` are free in `table`: the re-commit can take them. None when there is
    none. Same arguments as `stop_point`."""
    done = legs_done_at(path)
    for k in range(len(path)):
        segs = _stop_holds(roadmap, exclusion, path, model, k, done, legs_driven, brake_ahead)
        if segs is not None and all(b <= t_cut + _EPS or
                                    table.is_free(r, max(a, t_cut), b, robot=robot)
                                    for r, a, b in segs):
            return k
    return None
